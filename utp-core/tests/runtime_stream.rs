//! End-to-end tests of the threaded runtime over loopback.

#[path = "runtime_common.rs"]
mod runtime_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use runtime_common::*;
use utp_core::runtime::{UtpContext, UtpListener, UtpStream};

const MB: u64 = 1 << 20;

#[test]
fn ten_mb_each_way_at_once() {
    with_timeout(120, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = thread::spawn(move || {
            let s = UtpStream::connect(addr).unwrap();
            let w = s.try_clone().unwrap();
            let writer = thread::spawn(move || {
                write_pattern(&w, 1, 10 * MB).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            });
            read_pattern(&s, 2, 10 * MB).unwrap();
            writer.join().unwrap();
            // Everything was read, so the engine counted it all; what we
            // wrote may still be in flight.
            let stats = s.stats().unwrap();
            assert!(stats.bytes_received >= 10 * MB, "{stats:?}");
            assert!(stats.bytes_sent > 0, "{stats:?}");
            s.exit_watch()
        });
        let (s, peer) = listener.accept().unwrap();
        assert_eq!(s.peer_addr().unwrap(), peer);
        let w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            write_pattern(&w, 2, 10 * MB).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        read_pattern(&s, 1, 10 * MB).unwrap();
        writer.join().unwrap();
        let client_watch = client.join().unwrap();
        let server_watch = listener.context().exit_watch();
        drop(s);
        drop(listener);
        assert_exits(&[client_watch, server_watch], 20);
    });
}

#[test]
fn connect_to_closed_port_is_refused_quickly() {
    with_timeout(60, || {
        let addr = closed_port();
        let start = Instant::now();
        let err = UtpStream::connect(addr).unwrap_err();
        let took = start.elapsed();
        eprintln!("connect to closed port: {:?} after {:?}", err.kind(), took);
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        // ICMP port unreachable makes this immediate.
        assert!(took < Duration::from_secs(2), "took {took:?}");
    });
}

#[test]
fn refused_connect_does_not_keep_the_context_alive() {
    with_timeout(30, || {
        let addr = closed_port();
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let err = ctx.connect(addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        let watch = ctx.exit_watch();
        let start = Instant::now();
        drop(ctx);
        assert!(
            watch.wait(Duration::from_secs(5)),
            "I/O thread still running"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "exit took {:?}",
            start.elapsed()
        );
    });
}

#[test]
fn connect_to_silent_port_times_out() {
    with_timeout(30, || {
        // Something is bound there but never answers: no ICMP, no SYN-ACK.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let start = Instant::now();
        let err = UtpStream::connect_timeout(&addr, Duration::from_millis(500)).unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "took {took:?}"
        );
    });
}

#[test]
fn half_close_then_reply() {
    with_timeout(30, || {
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let addr = ctx.local_addr().unwrap();
        let server = {
            let ctx = ctx.clone();
            thread::spawn(move || {
                let (mut s, _) = ctx.accept().unwrap();
                let mut req = Vec::new();
                s.read_to_end(&mut req).unwrap();
                assert_eq!(req, b"request: please answer after my FIN");
                s.write_all(b"reply: ").unwrap();
                s.write_all(&req).unwrap();
                // Dropping closes gracefully; the reply still arrives.
            })
        };
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"request: please answer after my FIN").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let err = c.write(b"more").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenPipe);
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"reply: request: please answer after my FIN");
        server.join().unwrap();
        let watches = [c.exit_watch(), ctx.exit_watch()];
        drop(c);
        drop(ctx);
        assert_exits(&watches, 20);
    });
}

#[test]
fn many_connections_in_one_context() {
    const N: usize = 200;
    const LEN: u64 = 20_000;
    with_timeout(120, || {
        let server = UtpContext::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let client = UtpContext::bind("127.0.0.1:0").unwrap();
        let echoed = Arc::new(AtomicUsize::new(0));

        // Server: echo every connection back, one thread each.
        let acceptor = {
            let server = server.clone();
            let echoed = echoed.clone();
            thread::spawn(move || {
                let mut workers = Vec::new();
                for _ in 0..N {
                    let (s, _) = server.accept_timeout(Duration::from_secs(60)).unwrap();
                    let echoed = echoed.clone();
                    workers.push(thread::spawn(move || {
                        let mut data = Vec::new();
                        (&s).read_to_end(&mut data).unwrap();
                        (&s).write_all(&data).unwrap();
                        s.shutdown(Shutdown::Write).unwrap();
                        echoed.fetch_add(1, Ordering::SeqCst);
                        // Keep the stream until the client read everything.
                        let mut rest = [0u8; 1];
                        let _ = (&s).read(&mut rest);
                    }));
                }
                for w in workers {
                    w.join().unwrap();
                }
            })
        };

        let mut clients = Vec::new();
        for i in 0..N {
            let s = client.connect(addr).unwrap();
            clients.push(thread::spawn(move || {
                let w = s.try_clone().unwrap();
                let seed = 1000 + i as u64;
                let writer = thread::spawn(move || {
                    write_pattern(&w, seed, LEN).unwrap();
                    w.shutdown(Shutdown::Write).unwrap();
                });
                read_pattern(&s, seed, LEN).unwrap();
                writer.join().unwrap();
            }));
        }
        for c in clients {
            c.join().unwrap();
        }
        acceptor.join().unwrap();
        assert_eq!(echoed.load(Ordering::SeqCst), N);
        let watches = [client.exit_watch(), server.exit_watch()];
        drop(client);
        drop(server);
        assert_exits(&watches, 30);
    });
}

#[test]
fn drop_without_close_still_delivers() {
    const LEN: u64 = 2 * MB;
    with_timeout(60, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client_watch = {
            let s = UtpStream::connect(addr).unwrap();
            write_pattern(&s, 7, LEN).unwrap();
            s.exit_watch()
            // `s` (and its private context) dropped here, data still queued.
        };
        let (s, _) = listener.accept().unwrap();
        read_pattern(&s, 7, LEN).unwrap();
        drop(s);
        let server_watch = listener.context().exit_watch();
        drop(listener);
        assert_exits(&[client_watch, server_watch], 20);
    });
}

#[test]
fn nonblocking_read_would_block_then_readiness() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap(); // lets the server side see the connection
        let (s, _) = listener.accept().unwrap();
        let mut one = [0u8; 1];
        (&s).read_exact(&mut one).unwrap();

        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let err = (&s).read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WouldBlock);
        assert!(!s.readiness().readable);

        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        s.set_readiness_callback(Some(Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        })));
        c.write_all(b"hello").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.len() < 5 {
            assert!(Instant::now() < deadline, "no data");
            let _ = rx.recv_timeout(Duration::from_millis(100));
            match (&s).read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"hello");
        s.set_readiness_callback(None);
    });
}

#[test]
fn read_timeout_expires() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let (_s, _) = listener.accept().unwrap();
        assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(200)));
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let err = c.read(&mut buf).unwrap_err();
        let took = start.elapsed();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(3),
            "{took:?}"
        );
    });
}

#[test]
fn shared_port_listens_and_connects() {
    with_timeout(30, || {
        // Two contexts, each listening and each connecting to the other from
        // its own listening port.
        let a = UtpContext::bind("127.0.0.1:0").unwrap();
        let b = UtpContext::bind("127.0.0.1:0").unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut ab = a.connect(b_addr).unwrap();
        let mut ba = b.connect(a_addr).unwrap();
        assert_eq!(ab.local_addr().unwrap(), a_addr);
        ab.write_all(b"from a").unwrap();
        ba.write_all(b"from b").unwrap();
        let (mut at_b, from) = b.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(from, a_addr);
        let (mut at_a, from) = a.accept_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(from, b_addr);
        let mut buf = [0u8; 6];
        at_b.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from a");
        at_a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"from b");
        at_a.write_all(b"ok").unwrap();
        at_b.write_all(b"ok").unwrap();
        let mut ok = [0u8; 2];
        ba.read_exact(&mut ok).unwrap();
        ab.read_exact(&mut ok).unwrap();
        let watches = [a.exit_watch(), b.exit_watch()];
        drop((ab, ba, at_a, at_b, a, b));
        assert_exits(&watches, 20);
    });
}

#[test]
fn ipv6_loopback() {
    with_timeout(30, || {
        let listener = UtpListener::bind("[::1]:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.is_ipv6());
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"over v6").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (mut s, peer) = listener.accept().unwrap();
        assert!(peer.is_ipv6());
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"over v6");
    });
}

#[test]
fn dual_stack_context_accepts_ipv4_peers() {
    with_timeout(30, || {
        let ctx = UtpContext::bind("[::]:0").unwrap();
        let port = ctx.local_addr().unwrap().port();
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut c = UtpStream::connect(target).unwrap();
        c.write_all(b"v4 to dual").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (mut s, peer) = ctx.accept_timeout(Duration::from_secs(10)).unwrap();
        assert!(peer.is_ipv4(), "{peer}");
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"v4 to dual");
    });
}

#[test]
fn slow_reader_pushes_back_on_writer() {
    with_timeout(60, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let c = UtpStream::connect(addr).unwrap();
        (&c).write_all(b"x").unwrap();
        let (s, _) = listener.accept().unwrap();
        // Nobody reads on `s`: the writer must stall after a bounded amount.
        c.set_nonblocking(true).unwrap();
        let chunk = vec![0x5a; 64 * 1024];
        let mut written = 0u64;
        let mut stalled_since = None;
        let start = Instant::now();
        loop {
            match (&c).write(&chunk) {
                Ok(n) => {
                    written += n as u64;
                    stalled_since = None;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "writer never stalled ({written} bytes)"
            );
            assert!(
                written < 64 * MB,
                "no backpressure: {written} bytes accepted"
            );
        }
        eprintln!("writer stalled after {written} bytes");
        // Now read it all; the writer gets going again.
        c.set_nonblocking(false).unwrap();
        let reader = thread::spawn(move || {
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = (&s).read(&mut buf).unwrap();
                if n == 0 {
                    return total;
                }
                total += n as u64;
            }
        });
        (&c).write_all(&chunk).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let total = reader.join().unwrap();
        assert_eq!(total, 1 + written + chunk.len() as u64);
    });
}

#[test]
fn accept_timeout_and_nonblocking_accept() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let err = listener
            .accept_timeout(Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(90));
        listener.set_nonblocking(true).unwrap();
        assert_eq!(listener.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
        let watch = listener.context().exit_watch();
        drop(listener);
        assert_exits(&[watch], 10);
    });
}

#[test]
fn invalid_input() {
    with_timeout(30, || {
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let err = ctx.connect("0.0.0.0:0").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = ctx.connect("[::1]:9").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn server_speaks_first() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        listener.set_readiness_callback(Some(Box::new(move || {
            let _ = tx.lock().unwrap().send(());
        })));
        let client = thread::spawn(move || {
            let mut c = UtpStream::connect(addr).unwrap();
            let mut banner = [0u8; 6];
            c.read_exact(&mut banner).unwrap();
            assert_eq!(&banner, b"hello\n");
            c.write_all(b"hi").unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, b"bye");
        });
        // The accept callback fires when the connection is queued.
        rx.recv_timeout(Duration::from_secs(10))
            .expect("accept callback");
        listener.set_nonblocking(true).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"hello\n").unwrap();
        let mut hi = Vec::new();
        s.read_to_end(&mut hi).unwrap();
        assert_eq!(hi, b"hi");
        s.write_all(b"bye").unwrap();
        drop(s);
        client.join().unwrap();
    });
}

#[test]
fn connect_to_closed_ipv6_port_is_refused_quickly() {
    with_timeout(60, || {
        let addr = std::net::UdpSocket::bind("[::1]:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let start = Instant::now();
        let err = UtpStream::connect(addr).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
    });
}

#[test]
fn close_is_bounded_by_linger_when_peer_never_reads() {
    use utp_core::runtime::RuntimeConfig;
    with_timeout(60, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = RuntimeConfig::default();
        config.endpoint.linger_us = 500_000;
        let ctx = UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let c = ctx.connect(addr).unwrap();
        (&c).write_all(b"x").unwrap();
        let (s, _) = listener.accept().unwrap();
        // Fill every buffer on the way; `s` never reads.
        c.set_nonblocking(true).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        let start = Instant::now();
        let mut stalled = 0;
        while stalled < 50 {
            match (&c).write(&chunk) {
                Ok(_) => stalled = 0,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    stalled += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
            assert!(start.elapsed() < Duration::from_secs(20));
        }
        let watch = ctx.exit_watch();
        let closed_at = Instant::now();
        drop(c);
        drop(ctx);
        assert!(
            watch.wait(Duration::from_secs(10)),
            "context did not give up"
        );
        let took = closed_at.elapsed();
        eprintln!("close with unread data gave up after {took:?}");
        assert!(took >= Duration::from_millis(400), "{took:?}");
        drop(s);
    });
}

/// CPU time (clock ticks) used so far by this process's thread called `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        return Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?);
    }
    None
}

#[test]
fn idle_io_thread_does_not_spin() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let (s, _) = listener.accept().unwrap();
        let mut one = [0u8; 1];
        (&s).read_exact(&mut one).unwrap();
        let name = format!("utp-io-{}", addr.port());
        let before = thread_cpu_ticks(&name).expect("server I/O thread");
        thread::sleep(Duration::from_millis(1500));
        let after = thread_cpu_ticks(&name).unwrap();
        // Clock ticks are 10 ms; a spinning thread would burn ~150.
        assert!(
            after - before <= 10,
            "idle I/O thread used {} ticks in 1.5 s",
            after - before
        );
        drop((c, s));
    });
}

/// A 20-byte uTP header (BEP 29), no extensions.
fn utp_header(kind: u8, conn_id: u16, seq: u16, ack: u16) -> Vec<u8> {
    let mut p = vec![(kind << 4) | 1, 0];
    p.extend_from_slice(&conn_id.to_be_bytes());
    p.extend_from_slice(&1u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0u32.to_be_bytes()); // timestamp difference
    p.extend_from_slice(&(1u32 << 20).to_be_bytes()); // window
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p
}

const ST_STATE: u8 = 2;
const ST_RESET: u8 = 3;
const ST_SYN: u8 = 4;

/// Waits for a SYN on `peer`; returns (sender, its connection id, its seq_nr).
fn recv_syn(peer: &std::net::UdpSocket) -> (SocketAddr, u16, u16) {
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 2048];
    loop {
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        if n >= 20 && buf[0] >> 4 == ST_SYN {
            let conn_id = u16::from_be_bytes([buf[2], buf[3]]);
            let seq = u16::from_be_bytes([buf[16], buf[17]]);
            return (from, conn_id, seq);
        }
    }
}

#[test]
fn reset_in_answer_to_syn_is_refused() {
    with_timeout(30, || {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = peer.local_addr().unwrap();
        let t = thread::spawn(move || {
            let (from, conn_id, seq) = recv_syn(&peer);
            peer.send_to(&utp_header(ST_RESET, conn_id, 1000, seq), from)
                .unwrap();
        });
        let err = UtpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
        t.join().unwrap();
    });
}

#[test]
fn reset_after_connect_is_connection_reset() {
    with_timeout(30, || {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = peer.local_addr().unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = thread::spawn(move || {
            let (from, conn_id, seq) = recv_syn(&peer);
            peer.send_to(&utp_header(ST_STATE, conn_id, 1000, seq), from)
                .unwrap();
            go_rx.recv().unwrap();
            peer.send_to(&utp_header(ST_RESET, conn_id, 1001, seq), from)
                .unwrap();
        });
        let mut c = UtpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        go_tx.send(()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 16];
        let err = c.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        let err = c.write(b"after reset").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert!(c.readiness().error);
        t.join().unwrap();
    });
}

#[test]
fn ipv4_mapped_destination_and_flush() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ctx = UtpContext::bind("[::]:0").unwrap();
        let mapped: SocketAddr = format!("[::ffff:127.0.0.1]:{port}").parse().unwrap();
        let mut c = ctx.connect(mapped).unwrap();
        assert_eq!(c.peer_addr().unwrap(), listener.local_addr().unwrap());
        c.write_all(&[9u8; 100_000]).unwrap();
        c.flush().unwrap();
        assert_eq!(c.handle().queued_send_bytes(), 0);
        c.shutdown(Shutdown::Write).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 100_000);
        // Shutdown(Read): reads now return 0 at once.
        s.shutdown(Shutdown::Read).unwrap();
        assert_eq!(s.read(&mut [0u8; 4]).unwrap(), 0);
    });
}

#[test]
fn blocking_calls_from_a_callback_do_not_deadlock() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let (s, _) = listener.accept().unwrap();
        let s = Arc::new(s);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let weak = Arc::downgrade(&s);
        s.set_readiness_callback(Some(Box::new(move || {
            if let Some(s) = weak.upgrade() {
                // A blocking read on the I/O thread is refused, not hung;
                // statistics never wait, so they work there too.
                let mut buf = [0u8; 64];
                let r = (&*s).read(&mut buf).map(|n| n.to_string());
                let st = s.stats().map(|_| ());
                let _ = tx.lock().unwrap().send((r.is_ok(), st.is_ok()));
            }
        })));
        c.write_all(b"more").unwrap();
        let (_read_ok, stats_ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(stats_ok);
        s.set_readiness_callback(None);
    });
}
