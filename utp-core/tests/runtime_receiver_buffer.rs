//! A receiver with Linux's default socket buffer (208 KiB, ~150 packets):
//! the sender's slow-start bursts overrun it and the kernel drops whole
//! runs of datagrams. Every hole must be resent from SACK and time-based
//! loss detection; no transfer may wait for the retransmission timer.

#[path = "runtime_common.rs"]
mod runtime_common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;

use runtime_common::*;
use utp_core::runtime::{RuntimeConfig, SocketOptions, UtpContext, UtpStream};

/// Transfers in the test, and bytes in each.
const RUNS: usize = 20;
const BYTES: usize = 2 << 20;

/// `SO_RCVBUF` request the kernel doubles to its default 212,992 bytes.
const DEFAULT_RCVBUF_REQUEST: usize = 106_496;

/// The kernel's count of UDP datagrams dropped for a full receive buffer
/// (every socket on the machine: a lower bound on ours is what it gives).
fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

fn one_transfer(receiver: &UtpContext, addr: SocketAddr, data: &'static [u8]) -> u64 {
    let sender = thread::spawn(move || {
        let mut s = UtpStream::connect(addr).unwrap();
        s.write_all(data).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // The receiver closes once it has everything: our data is acked.
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0);
        s.stats().unwrap().timeouts
    });
    let (mut s, _) = receiver.accept().unwrap();
    let mut got = Vec::with_capacity(BYTES);
    s.read_to_end(&mut got).unwrap();
    assert!(got == data, "received bytes differ from those sent");
    drop(s);
    sender.join().unwrap()
}

#[test]
fn default_receive_buffer_overruns_are_recovered_without_timeouts() {
    with_timeout(120, || {
        let config = RuntimeConfig {
            socket: SocketOptions {
                buffer_size: DEFAULT_RCVBUF_REQUEST,
                ..SocketOptions::default()
            },
            ..RuntimeConfig::default()
        };
        let receiver =
            UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), config).unwrap();
        let addr = receiver.local_addr().unwrap();
        let mut data = vec![0u8; BYTES];
        pattern(0x5eed, 0, &mut data);
        let data: &'static [u8] = Box::leak(data.into_boxed_slice());
        let drops_before = rcvbuf_errors();
        let timeouts: Vec<u64> = (0..RUNS)
            .map(|_| one_transfer(&receiver, addr, data))
            .collect();
        let drops = rcvbuf_errors().zip(drops_before).map(|(a, b)| a - b);
        println!(
            "{RUNS} x {BYTES} B to a receiver with a default socket buffer: \
             timeouts per run {timeouts:?}; datagrams dropped by full buffers on the machine: {drops:?}"
        );
        assert_eq!(
            timeouts.iter().sum::<u64>(),
            0,
            "retransmission timeouts per run: {timeouts:?}"
        );
    });
}
