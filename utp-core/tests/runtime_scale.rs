//! Many connections in one context: the BitTorrent pattern of one UDP port
//! for every peer. The 1,000-connection test runs in CI; the 10,000 one is
//! `#[ignore]`d (run it with `-- --ignored --nocapture`) and prints
//! handshakes per second and memory per connection.

mod runtime_common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use runtime_common::with_timeout;
use utp_core::runtime::{UtpContext, UtpStream};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|v| v.parse().unwrap_or(0)))
        })
        .unwrap_or(0)
}

/// Open `n` connections from one client context to one server context, send
/// a small message on each and check every one arrives; report the figures.
fn open_many(n: usize) {
    let server = UtpContext::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let client = UtpContext::bind("127.0.0.1:0").unwrap();
    let rss_before = rss_kib();

    let acceptor = {
        let server = server.clone();
        std::thread::spawn(move || {
            let mut accepted = Vec::with_capacity(n);
            for _ in 0..n {
                let (s, _) = server.accept_timeout(Duration::from_secs(60)).unwrap();
                accepted.push(s);
            }
            accepted
        })
    };
    let start = Instant::now();
    let mut streams: Vec<UtpStream> = Vec::with_capacity(n);
    for _ in 0..n {
        streams.push(client.connect(addr).unwrap());
    }
    let handshake_time = start.elapsed();
    let accepted = acceptor.join().unwrap();
    assert_eq!(accepted.len(), n);

    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(format!("hello {i:08}").as_bytes()).unwrap();
    }
    let mut seen = vec![false; n];
    for s in &accepted {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 14];
        (&*s).read_exact(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(text.starts_with("hello "), "{text}");
        let i: usize = text[6..].parse().unwrap();
        assert!(!seen[i], "message {i} twice");
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
    let rss_after = rss_kib();
    let per_conn = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / (2 * n) as f64;
    println!(
        "{n} connections in one context: handshakes {:.0}/s ({:.2} s), memory {:.1} KiB per connection end ({} KiB RSS growth for {} ends)",
        n as f64 / handshake_time.as_secs_f64(),
        handshake_time.as_secs_f64(),
        per_conn / 1024.0,
        rss_after.saturating_sub(rss_before),
        2 * n
    );
}

#[test]
fn a_thousand_connections_in_one_context() {
    with_timeout(120, || open_many(1000));
}

#[test]
#[ignore = "scale run: cargo test --release -p utp-core --test runtime_scale -- --ignored --nocapture"]
fn ten_thousand_connections_in_one_context() {
    with_timeout(600, || open_many(10_000));
}
