//! A real peer connects, and is accepted, through a flood of forged SYNs on
//! loopback: 100,000 SYNs per second from sockets on random 127/8
//! addresses, each with a fresh connection id, none of which ever answers.
//! Before half-open eviction the forged SYNs filled the accept backlog and
//! the half-open cap, and the real connect was refused or timed out.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use utp_core::runtime::{UtpContext, UtpStream};

const SYNS_PER_SECOND: u64 = 100_000;

/// A bare SYN (BEP 29 header, version 1, no extensions).
fn syn(id: u16, seq: u16) -> [u8; 20] {
    let mut p = [0u8; 20];
    p[0] = 0x41;
    p[2..4].copy_from_slice(&id.to_be_bytes());
    p[4..8].copy_from_slice(&1u32.to_be_bytes());
    p[12..16].copy_from_slice(&65535u32.to_be_bytes());
    p[16..18].copy_from_slice(&seq.to_be_bytes());
    p
}

/// Sends forged SYNs to `target` at SYNS_PER_SECOND until `stop`.
fn flood(target: SocketAddr, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(29);
    let sockets: Vec<UdpSocket> = (0..64)
        .filter_map(|_| {
            let ip = Ipv4Addr::new(
                127,
                rng.gen_range(1..=254),
                rng.gen(),
                rng.gen_range(1..=254),
            );
            UdpSocket::bind((ip, 0)).ok()
        })
        .collect();
    assert!(
        sockets.len() >= 32,
        "could not bind forged sources on 127/8"
    );
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Keep to the rate: catch up in bursts, then wait for the clock.
        let due = start.elapsed().as_micros() as u64 * SYNS_PER_SECOND / 1_000_000;
        if n >= due {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        let s = &sockets[n as usize % sockets.len()];
        let _ = s.send_to(&syn(rng.gen(), rng.gen()), target);
        n += 1;
        sent.store(n, Ordering::Relaxed);
    }
}

#[test]
fn a_real_peer_connects_and_is_accepted_through_a_syn_flood() {
    let server = UtpContext::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || flood(addr, stop, sent))
    };
    // Let the flood fill the backlog (nobody accepts yet) and the half-open cap.
    thread::sleep(Duration::from_millis(500));

    let t0 = Instant::now();
    let connected = UtpStream::connect_timeout(&addr, Duration::from_secs(1));
    let connect_time = t0.elapsed();
    let result = connected.and_then(|mut c| {
        use std::io::Write;
        c.write_all(b"real")?;
        let me = c.local_addr()?;
        // The server application accepts: the real connection must come out
        // of the queue within a second, among forged ones.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "real connection not accepted",
                ));
            }
            match server.accept_timeout(left) {
                Ok((s, peer)) if peer == me => return Ok((c, s)),
                Ok(_) => {} // forged: dropped
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            }
        }
    });
    let accept_time = t0.elapsed();
    let flood_rate = sent.load(Ordering::Relaxed) as f64 / (0.5 + accept_time.as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    flooder.join().unwrap();
    let (_client, mut conn) = result.unwrap_or_else(|e| {
        panic!("through the flood: {e} (connect took {connect_time:?}, {flood_rate:.0} SYN/s)")
    });
    let mut buf = [0u8; 4];
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Read::read_exact(&mut conn, &mut buf).unwrap();
    assert_eq!(&buf, b"real");
    println!(
        "connected in {connect_time:?}, accepted in {accept_time:?}, under {flood_rate:.0} forged SYN/s"
    );
    // The flood really ran at (nearly) its rate.
    assert!(
        flood_rate > 0.5 * SYNS_PER_SECOND as f64,
        "{flood_rate:.0} SYN/s"
    );
    assert!(accept_time < Duration::from_secs(2));
    // Closing the server does not wait for the forged connections it
    // accepted and dropped (they never answered; nothing was written).
    drop((conn, _client));
    let t = Instant::now();
    drop(server);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closing took {:?}",
        t.elapsed()
    );
}
