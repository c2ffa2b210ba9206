//! Sequences of datagrams, some arbitrary and some mutated from a real
//! connection's packets, against an endpoint that has a live connection.
//! The endpoint must never panic, and must keep its output bounded.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use utp_core::{Endpoint, EndpointConfig};

fuzz_target!(|data: &[u8]| {
    let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    let mut a = Endpoint::new(EndpointConfig::default(), 1);
    let mut b = Endpoint::new(EndpointConfig::default(), 2);
    let mut now = 1_000_000u64;
    let h = a.connect(now, b_addr);
    // Handshake and some data, keeping copies of real packets to mutate.
    let mut real: Vec<Vec<u8>> = Vec::new();
    for round in 0..6 {
        let _ = a.write(now, h, &[round as u8; 3000]);
        while let Some(t) = a.poll_transmit() {
            b.handle_datagram(now, a_addr, &t.contents);
            real.push(t.contents);
        }
        b.flush_acks(now);
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, b_addr, &t.contents);
            real.push(t.contents);
        }
        a.flush_acks(now);
        now += 10_000;
    }
    // The input: records of [selector][len][bytes...]. Selector picks raw
    // bytes or a real packet with some bytes overwritten, and the target.
    let mut rest = data;
    while rest.len() >= 2 {
        let (sel, len) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let chunk = &rest[..len.min(rest.len())];
        rest = &rest[chunk.len()..];
        let dgram = if sel & 1 == 0 || real.is_empty() {
            chunk.to_vec()
        } else {
            let mut v = real[(sel as usize >> 2) % real.len()].clone();
            for pair in chunk.chunks(2) {
                if let [pos, val] = pair {
                    if !v.is_empty() {
                        let i = *pos as usize % v.len();
                        v[i] = *val;
                    }
                }
            }
            v
        };
        now += 1000 * (sel as u64 >> 4);
        if sel & 2 == 0 {
            b.handle_datagram(now, a_addr, &dgram);
        } else {
            a.handle_datagram(now, b_addr, &dgram);
        }
        a.flush_acks(now);
        b.flush_acks(now);
        a.handle_timeout(now);
        b.handle_timeout(now);
        let mut out = 0;
        while a.poll_transmit().is_some() || b.poll_transmit().is_some() {
            out += 1;
        }
        assert!(out < 2000, "datagram storm: {out}");
        while a.poll_event().is_some() || b.poll_event().is_some() {}
        let _ = a.write(now, h, b"more");
        let mut buf = [0u8; 4096];
        let _ = a.read(now, h, &mut buf);
    }
});
