//! Loopback throughput of the threaded runtime.
//!
//! Ignored by default (it is a measurement, not a check); run with
//! `cargo test --release -p utp-core --test runtime_throughput -- --ignored --nocapture`.
//! `UTP_BENCH_MB` sets the size (default 100).

#[path = "runtime_common.rs"]
mod runtime_common;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use runtime_common::*;
use utp_core::runtime::{UtpListener, UtpStream};

fn size_mb() -> u64 {
    std::env::var("UTP_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

#[test]
#[ignore]
fn throughput_one_way() {
    let mb = size_mb();
    with_timeout(600, move || {
        let len = mb << 20;
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = thread::spawn(move || {
            let mut s = UtpStream::connect(addr).unwrap();
            let chunk = vec![0xa5u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                s.write_all(&chunk[..n]).unwrap();
                left -= n as u64;
            }
            s.shutdown(Shutdown::Write).unwrap();
            // Wait for the receiver's close so the stats cover everything.
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            s.stats().ok()
        });
        let (mut s, _) = listener.accept().unwrap();
        let start = Instant::now();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        drop(s);
        let stats = sender.join().unwrap();
        assert_eq!(total, len);
        println!(
            "one way: {mb} MB in {secs:.3} s = {:.1} MB/s ({:.0} Mbit/s)",
            mb as f64 / secs,
            total as f64 * 8.0 / secs / 1e6
        );
        if let Some(st) = stats {
            println!(
                "sender stats: packets {} timeouts {} fast retransmits {} rtt {} us cwnd {}",
                st.packets_sent, st.timeouts, st.fast_retransmits, st.rtt_us, st.cwnd
            );
        }
    });
}

#[test]
#[ignore]
fn throughput_both_ways_verified() {
    let mb = size_mb();
    with_timeout(600, move || {
        let len = mb << 20;
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let start = Instant::now();
        let client = thread::spawn(move || {
            let s = UtpStream::connect(addr).unwrap();
            let w = s.try_clone().unwrap();
            let writer = thread::spawn(move || {
                write_pattern(&w, 11, len).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            });
            read_pattern(&s, 12, len).unwrap();
            writer.join().unwrap();
        });
        let (s, _) = listener.accept().unwrap();
        let w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            write_pattern(&w, 12, len).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        read_pattern(&s, 11, len).unwrap();
        writer.join().unwrap();
        client.join().unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "both ways (byte-checked): {mb} MB each in {secs:.3} s = {:.1} MB/s per direction",
            mb as f64 / secs
        );
        let _ = Duration::ZERO;
    });
}
