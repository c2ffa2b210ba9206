//! Helpers shared by the runtime end-to-end tests (loopback only).

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use utp_core::runtime::ExitWatch;

/// Runs `f` on its own thread and fails the test if it takes longer than `secs`.
pub fn with_timeout<F: FnOnce() + Send + 'static>(secs: u64, f: F) {
    let (tx, rx) = mpsc::channel();
    let t = thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test did not finish within {secs} s"),
    }
}

/// A deterministic byte pattern: byte `i` of stream `seed`.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = (offset + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03);
        *b = (x >> 29) as u8;
    }
}

/// Writes `len` bytes of `pattern(seed)`.
pub fn write_pattern<W: Write>(mut w: W, seed: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        pattern(seed, off, &mut buf[..n]);
        w.write_all(&buf[..n])?;
        off += n as u64;
    }
    Ok(())
}

/// Reads to the end and checks it is exactly `len` bytes of `pattern(seed)`.
pub fn read_pattern<R: Read>(mut r: R, seed: u64, len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut expect = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        assert!(off + n as u64 <= len, "more than {len} bytes received");
        pattern(seed, off, &mut expect[..n]);
        if buf[..n] != expect[..n] {
            let i = buf[..n]
                .iter()
                .zip(&expect[..n])
                .position(|(a, b)| a != b)
                .unwrap();
            panic!("stream {seed}: wrong byte at offset {}", off + i as u64);
        }
        off += n as u64;
    }
    assert_eq!(off, len, "stream {seed}: short stream");
    Ok(())
}

/// A loopback UDP port with nobody behind it (bound, then released).
pub fn closed_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// Asserts that the I/O threads behind `watches` exit within `secs`.
pub fn assert_exits(watches: &[ExitWatch], secs: u64) {
    for w in watches {
        assert!(
            w.wait(Duration::from_secs(secs)),
            "I/O thread still running after {secs} s"
        );
    }
}
