//! A peer that stops reading or vanishes: the other side must learn it in
//! bounded time.

#[path = "runtime_common.rs"]
mod runtime_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use runtime_common::*;
use utp_core::runtime::{RuntimeConfig, UtpContext, UtpListener, UtpStream};

#[test]
fn writer_gets_connection_reset_soon_after_the_reader_drops() {
    with_timeout(60, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut got = 0usize;
            while got < 1 << 20 {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "early EOF");
                got += n;
            }
            drop(s);
            let dropped_at = Instant::now();
            (listener, dropped_at)
        });
        let mut s = UtpStream::connect(addr).unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut written_total = 0u64;
        let mut written_at_drop = None;
        let mut reader = Some(reader);
        let mut listener = None;
        let mut dropped_at = None;
        let err = loop {
            match s.write(&chunk) {
                Ok(n) => written_total += n as u64,
                Err(e) => break e,
            }
            if reader.as_ref().is_some_and(|r| r.is_finished()) {
                let (l, t) = reader.take().unwrap().join().unwrap();
                listener = Some(l);
                dropped_at = Some(t);
                written_at_drop = Some(written_total);
            }
        };
        if let Some(r) = reader.take() {
            // The error came just as the reader returned.
            let (l, t) = r.join().unwrap();
            listener = Some(l);
            dropped_at = Some(t);
            written_at_drop = Some(written_total);
        }
        drop(listener);
        let dropped_at = dropped_at.expect("checked");
        let after = dropped_at.elapsed();
        let wasted = written_total - written_at_drop.unwrap();
        println!("ConnectionReset {after:?} after the drop; {wasted} bytes written after it");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert!(after < Duration::from_secs(1), "{after:?}");
        // Only what fits the send buffer plus a round trip of loopback.
        assert!(wasted < 8 << 20, "{wasted} bytes accepted after the drop");
    });
}

/// A UDP relay on loopback that can stop forwarding (the peer "vanishes").
struct Blackholable {
    addr: SocketAddr,
    forwarding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Blackholable {
    fn start(target: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let forwarding = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let client = Arc::new(Mutex::new(None::<SocketAddr>));
        let pump = |rx: UdpSocket, tx: UdpSocket, to_server: bool| {
            let (forwarding, stop, client) = (forwarding.clone(), stop.clone(), client.clone());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = rx.recv_from(&mut buf) else {
                        continue;
                    };
                    let dest = if to_server {
                        *client.lock().unwrap() = Some(from);
                        Some(target)
                    } else {
                        *client.lock().unwrap()
                    };
                    if let (Some(dest), true) = (dest, forwarding.load(Ordering::Relaxed)) {
                        let _ = tx.send_to(&buf[..n], dest);
                    }
                }
            })
        };
        let threads = vec![
            pump(front.try_clone().unwrap(), back.try_clone().unwrap(), true),
            pump(back, front, false),
        ];
        Blackholable {
            addr,
            forwarding,
            stop,
            threads,
        }
    }
}

impl Drop for Blackholable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn blocked_reader_gets_timed_out_when_the_peer_vanishes() {
    with_timeout(60, || {
        let idle = Duration::from_secs(2);
        let config = || {
            let mut c = RuntimeConfig::default();
            c.endpoint.idle_timeout_us = idle.as_micros() as u64;
            c
        };
        let server =
            UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config()).unwrap();
        let relay = Blackholable::start(server.local_addr().unwrap());
        let client =
            UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config()).unwrap();
        let mut c = client.connect(relay.addr).unwrap();
        let (mut s, _) = server.accept().unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        relay.forwarding.store(false, Ordering::Relaxed);
        let vanished = Instant::now();
        let err = c.read(&mut buf).expect_err("the peer is gone");
        let after = vanished.elapsed();
        println!(
            "read failed with {:?} {after:?} after the peer vanished",
            err.kind()
        );
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(after <= idle + Duration::from_secs(1), "{after:?}");
        drop((c, s, relay));
    });
}
