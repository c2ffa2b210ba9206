//! The handle layer as event loops and bindings use it: pollable
//! descriptors, coalesced callbacks, non-blocking connect, low-water
//! writability, datagrams on the same port, graceful close with an outcome,
//! and delivery when a process exits right after writing.

#[path = "runtime_common.rs"]
mod runtime_common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use runtime_common::*;
use utp_core::runtime::error::{errno_name, errno_of};
use utp_core::runtime::{
    Interest, RuntimeConfig, StreamHandle, UtpContext, UtpListener, UtpStream, Wait,
};

/// `poll(2)` on one descriptor: true when it is readable within `ms`.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r == 1 && p.revents & libc::POLLIN != 0
}

fn connected_pair() -> (UtpListener, StreamHandle, StreamHandle) {
    let listener = UtpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
    let client = ctx.handle().connect(addr, None).unwrap();
    // The accepted side exists once the client's first packet after the
    // handshake arrived.
    let server = listener
        .context()
        .handle()
        .accept(Some(Duration::from_secs(10)))
        .unwrap();
    (listener, client, server)
}

#[test]
fn stream_fd_is_level_triggered_on_readable() {
    with_timeout(30, || {
        let (_l, client, server) = connected_pair();
        let fd = server.poll_fd(Interest::READABLE).unwrap();
        assert_eq!(server.poll_fd(Interest::READABLE).unwrap(), fd, "same fd");
        assert!(!readable(fd, 50), "nothing to read yet");
        client.write(b"hello", Wait::Forever).unwrap();
        assert!(readable(fd, 5000), "data makes it readable");
        // Level-triggered: stays readable until the data is consumed.
        assert!(readable(fd, 0));
        assert!(readable(fd, 0));
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf, Wait::NonBlocking).unwrap(), 5);
        assert!(!readable(fd, 0), "drained: no longer readable");
        client.shutdown_write().unwrap();
        assert!(readable(fd, 5000), "end of stream is readable");
        assert_eq!(server.read(&mut buf, Wait::NonBlocking).unwrap(), 0);
        assert!(readable(fd, 0), "EOF stays readable");
    });
}

#[test]
fn writable_needs_the_low_water_mark() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = RuntimeConfig {
            stream_send_buffer: 64 << 10,
            ..RuntimeConfig::default()
        };
        let ctx = UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let client = ctx.handle().connect(addr, None).unwrap();
        client.set_send_low_water(16 << 10);
        let fd = client.poll_fd(Interest::WRITABLE).unwrap();
        assert!(readable(fd, 0), "empty buffer: writable");
        assert!(client.readiness().writable);
        // Nobody accepts or reads, so the peer's window fills and the
        // handle's buffer stays full after a while.
        let chunk = vec![7u8; 8 << 10];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match client.write(&chunk, Wait::NonBlocking) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(Instant::now() < deadline, "send buffer never filled");
        }
        // One free byte is not enough: below the low-water mark it is not
        // writable.
        let r = client.readiness();
        assert!(!r.writable, "{r:?}");
        assert!(!readable(fd, 0));
        // The reader drains: room comes back and the descriptor fires.
        let (server, _) = listener.accept().unwrap();
        let reader = thread::spawn(move || {
            let mut s = server;
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
        assert!(readable(fd, 10_000), "room came back");
        let q = client.queued_send_bytes();
        assert!(64 * 1024 - q >= 16 << 10, "queued {q}");
        drop(client);
        drop(ctx);
        reader.join().unwrap();
    });
}

#[test]
fn start_connect_returns_at_once_and_reports_through_readiness() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let s = ctx.handle().start_connect(addr).unwrap();
        assert!(start.elapsed() < Duration::from_millis(50));
        // Bytes written before the handshake completed are kept.
        s.write(b"early bytes", Wait::NonBlocking).unwrap();
        let fd = s.poll_fd(Interest::WRITABLE | Interest::CLOSED).unwrap();
        assert!(readable(fd, 5000), "connected");
        let r = s.readiness();
        assert!(r.connected && r.writable && !r.error, "{r:?}");
        assert!(!s.is_connecting());
        let (mut server, _) = listener.accept().unwrap();
        let mut buf = [0u8; 11];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"early bytes");

        // A closed port: the failure arrives through readiness too.
        let dead = closed_port();
        let f = ctx.handle().start_connect(dead).unwrap();
        let fd = f.poll_fd(Interest::WRITABLE | Interest::CLOSED).unwrap();
        assert!(readable(fd, 10_000), "failure reported");
        let r = f.readiness();
        assert!(r.error && r.closed && !r.connected, "{r:?}");
        let e = f.take_error().unwrap();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(errno_name(errno_of(&e)), "ECONNREFUSED");
    });
}

#[test]
fn readiness_callback_coalesces_until_readiness_is_read() {
    with_timeout(30, || {
        let (_l, client, server) = connected_pair();
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        server.set_readiness_callback(Some(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
        })));
        // Many separate writes, each a separate packet and wake-up...
        for _ in 0..200 {
            client.write(&[1u8; 100], Wait::Forever).unwrap();
            client.flush(Wait::Forever).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.buffered_recv_bytes() < 20_000 {
            assert!(Instant::now() < deadline);
            thread::sleep(Duration::from_millis(5));
        }
        // ...yet one notification, since nobody looked at readiness.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(server.readiness().readable);
        client.write(b"x", Wait::Forever).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "re-armed callback never ran");
            thread::sleep(Duration::from_millis(5));
        }
        server.set_readiness_callback(None);
    });
}

#[test]
fn context_fd_signals_acceptable_connections() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let h = listener.context().handle().clone();
        let fd = h.poll_fd(Interest::ACCEPTABLE).unwrap();
        assert!(!readable(fd, 50));
        let mut c = UtpStream::connect(addr).unwrap();
        c.write_all(b"hi").unwrap();
        assert!(readable(fd, 5000));
        let s = h.accept(Some(Duration::ZERO)).unwrap();
        assert!(!readable(fd, 0), "queue empty again");
        // Closing the listener wakes pollers and fails later accepts.
        h.close();
        assert!(readable(fd, 0));
        let e = h.accept(Some(Duration::from_secs(1))).unwrap_err();
        assert_eq!(errno_of(&e), libc::EBADF);
        drop(s);
    });
}

#[test]
fn plain_datagrams_share_the_port() {
    with_timeout(30, || {
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let h = ctx.handle();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // Out: from the context's port.
        h.send_datagram(b"ping", udp.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, ctx.local_addr().unwrap());
        // In: dropped unless the queue is on.
        udp.send_to(b"lost", from).unwrap();
        thread::sleep(Duration::from_millis(100));
        assert!(h.try_recv_datagram().is_none());
        h.set_datagram_queue(true);
        let fd = h.poll_fd(Interest::DATAGRAM).unwrap();
        udp.send_to(b"pong", from).unwrap();
        assert!(readable(fd, 5000));
        let (d, src) = h.try_recv_datagram().unwrap();
        assert_eq!(
            (d.as_slice(), src),
            (&b"pong"[..], udp.local_addr().unwrap())
        );
        assert!(!readable(fd, 0));
        // Absurd sizes are refused, not truncated.
        let e = h.send_datagram(&vec![0u8; 70_000], from).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn not_accepting_ignores_syns() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.context().handle().set_accepting(false);
        let start = Instant::now();
        let e = UtpStream::connect_timeout(&addr, Duration::from_millis(700)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(600));
        listener.context().handle().set_accepting(true);
        UtpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    });
}

#[test]
fn close_reports_delivery() {
    with_timeout(60, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got.len()
        });
        let mut s = UtpStream::connect(addr).unwrap();
        s.write_all(&vec![3u8; 2 << 20]).unwrap();
        s.close().unwrap();
        assert_eq!(reader.join().unwrap(), 2 << 20);
    });
}

#[test]
fn close_reports_a_vanished_peer() {
    with_timeout(60, || {
        // The peer accepts, then its whole context is gone without a word:
        // our FIN is never acknowledged.
        let mut config = RuntimeConfig::default();
        config.endpoint.linger_us = 2_000_000;
        let ctx = UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        drop(udp); // nobody there: ICMP port unreachable
        let s = ctx.handle().start_connect(addr).unwrap();
        let e = s.close(Wait::Until(Instant::now() + Duration::from_secs(10)));
        let e = e.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::TimedOut),
            "{e}"
        );
        // The handle is closed now.
        let e = s.write(b"x", Wait::NonBlocking).unwrap_err();
        assert_eq!(errno_of(&e), libc::EBADF);
    });
}

#[test]
fn local_addr_is_the_route_source_not_the_wildcard() {
    with_timeout(30, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = UtpStream::connect(addr).unwrap();
        let local = s.local_addr().unwrap();
        assert_eq!(local.ip().to_string(), "127.0.0.1", "{local}");
        assert_ne!(local.port(), 0);
    });
}

/// Reads at most 16 KiB per millisecond.
struct SlowReader<'a>(&'a UtpStream);

impl Read for SlowReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        thread::sleep(Duration::from_millis(1));
        let n = buf.len().min(16 << 10);
        self.0.read(&mut buf[..n])
    }
}

/// Run as a child process by `exiting_writer_still_delivers`: connects,
/// writes 10 MB, drops the stream and returns from the test (the process
/// exits right after).
#[test]
#[ignore = "run as a child process by exiting_writer_still_delivers"]
fn child_writes_then_exits() {
    let Ok(addr) = std::env::var("UTP_TEST_CHILD_PEER") else {
        return;
    };
    let addr: SocketAddr = addr.parse().unwrap();
    let s = UtpStream::connect(addr).unwrap();
    write_pattern(&s, 9, 10 << 20).unwrap();
    drop(s);
}

#[test]
fn exiting_writer_still_delivers() {
    with_timeout(120, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_writes_then_exits", "--quiet"])
            .env("UTP_TEST_CHILD_PEER", addr.to_string())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let (s, _) = listener.accept_timeout(Duration::from_secs(20)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        // A slow reader (about 16 MB/s), so that the writer finishes while
        // a megabyte or more still waits in its buffers.
        let r = read_pattern(SlowReader(&s), 9, 10 << 20);
        let status = child.wait().unwrap();
        r.unwrap();
        assert!(status.success());
        // And the stream ended cleanly after the last byte.
        assert_eq!((&s).read(&mut [0u8; 8]).unwrap(), 0);
    });
}

/// Many blocking readers on one context take turns receiving datagrams for
/// everyone (one at a time; the rest wait on their condition variables):
/// no reader is left waiting for data that arrived.
#[test]
fn many_blocking_readers_share_one_context() {
    with_timeout(120, || {
        const CONNS: usize = 48;
        const ROUNDS: usize = 50;
        let server = UtpContext::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let srv = server.clone();
        let echo = thread::spawn(move || {
            let mut workers = Vec::new();
            for _ in 0..CONNS {
                let (s, _) = srv.accept_timeout(Duration::from_secs(30)).unwrap();
                workers.push(thread::spawn(move || {
                    let mut s = s;
                    let mut buf = [0u8; 256];
                    loop {
                        match s.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => s.write_all(&buf[..n]).unwrap(),
                            Err(e) => panic!("server read: {e}"),
                        }
                    }
                }));
            }
            for w in workers {
                w.join().unwrap();
            }
        });
        let client = UtpContext::bind("127.0.0.1:0").unwrap();
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                let ctx = client.clone();
                thread::spawn(move || {
                    let mut s = ctx.connect(addr).unwrap();
                    // Readers wait in slices, as bindings do to stay
                    // interruptible.
                    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    let mut back = [0u8; 64];
                    for r in 0..ROUNDS {
                        let msg = [(i * 7 + r) as u8; 64];
                        s.write_all(&msg).unwrap();
                        let mut got = 0;
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while got < msg.len() {
                            match s.read(&mut back[got..]) {
                                Ok(0) => panic!("early EOF"),
                                Ok(n) => got += n,
                                Err(e) if e.kind() == ErrorKind::TimedOut => {
                                    assert!(Instant::now() < deadline, "reply never came");
                                }
                                Err(e) => panic!("client read: {e}"),
                            }
                        }
                        assert_eq!(back, msg);
                    }
                    s.shutdown(std::net::Shutdown::Write).unwrap();
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        echo.join().unwrap();
    });
}

/// A reader waiting in short slices while a bulk writer streams: every
/// byte arrives in order, whoever happens to receive the datagrams.
#[test]
fn sliced_reader_receives_a_bulk_stream() {
    with_timeout(120, || {
        let listener = UtpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = thread::spawn(move || {
            let s = UtpStream::connect(addr).unwrap();
            write_pattern(&s, 5, 20 << 20).unwrap();
            s.close().unwrap();
        });
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        struct Sliced<'a>(&'a UtpStream);
        impl Read for Sliced<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                loop {
                    match self.0.read(buf) {
                        Err(e) if e.kind() == ErrorKind::TimedOut => continue,
                        r => return r,
                    }
                }
            }
        }
        read_pattern(Sliced(&s), 5, 20 << 20).unwrap();
        writer.join().unwrap();
    });
}
