//! The first program to run: moves real data over real UDP between two uTP
//! endpoints on loopback, checks every byte, and prints what it measured.
//!
//! ```text
//! cargo run --release --example transfer            # 64 MB
//! cargo run --release --example transfer -- 256     # 256 MB
//! ```
//!
//! A listener context binds 127.0.0.1; a client connects, sends the data,
//! half-closes, and waits for the listener's reply: the byte count and a
//! checksum of what arrived.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use utp_core::runtime::{UtpContext, UtpStream};

/// The byte at offset `i`: a pattern the receiver can check without a copy.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn main() -> std::io::Result<()> {
    let megabytes: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a size in MB: {a}"),
            )
        })?,
        None => 64,
    };
    let total = megabytes * 1024 * 1024;

    let listener = UtpContext::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    println!("listening on {addr} (uTP over UDP)");

    let server = std::thread::spawn(move || -> std::io::Result<(u64, u64)> {
        let (mut stream, peer) = listener.accept()?;
        println!("accepted {peer}");
        let mut buf = vec![0u8; 256 * 1024];
        let (mut received, mut bad) = (0u64, 0u64);
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            for (k, b) in buf[..n].iter().enumerate() {
                if *b != pattern(received + k as u64) {
                    bad += 1;
                }
            }
            received += n as u64;
        }
        stream.write_all(format!("{received} {bad}").as_bytes())?;
        stream.shutdown(Shutdown::Write)?;
        Ok((received, bad))
    });

    let start = Instant::now();
    let mut client = UtpStream::connect(addr)?;
    println!(
        "connected from {} in {:?}",
        client.local_addr()?,
        start.elapsed()
    );
    let mut chunk = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.len().min((total - sent) as usize);
        for (k, b) in chunk[..n].iter_mut().enumerate() {
            *b = pattern(sent + k as u64);
        }
        client.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    client.shutdown(Shutdown::Write)?;
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    let elapsed = start.elapsed();
    let stats = client.stats()?;
    let (received, bad) = server.join().expect("server thread panicked")?;

    let mbit = received as f64 * 8.0 / elapsed.as_secs_f64() / 1e6;
    println!(
        "sent {sent} bytes, listener received {received} bytes, {bad} wrong (reply: {reply:?})"
    );
    println!(
        "{:.1} MB in {:.2} s: {:.0} Mbit/s; {} packets, {} retransmitted after timeout, {} fast; RTT {} µs",
        received as f64 / 1048576.0,
        elapsed.as_secs_f64(),
        mbit,
        stats.packets_sent,
        stats.timeout_retransmits,
        stats.fast_retransmits,
        stats.rtt_us
    );
    if received != total || bad != 0 {
        eprintln!("error: transfer was not byte-exact");
        std::process::exit(1);
    }
    println!("ok: byte-exact");
    Ok(())
}
