//! Any datagram either fails to parse or survives encode -> parse unchanged.
//!
//! Parsing must never panic; re-encoding drops skipped extensions (unknown
//! types, extension bits) and extra SACKs, so equality is checked on the
//! parsed form, not the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use utp_core::packet::{encoded_len, Header, Packet};

fuzz_target!(|data: &[u8]| {
    let header_only = Header::parse(data);
    let Ok(packet) = Packet::parse(data) else {
        return;
    };
    // The header-only parse must agree with the full one.
    assert_eq!(header_only, Ok(packet.header));

    let mut out = Vec::new();
    packet.header.encode(packet.sack, packet.payload, &mut out);
    assert_eq!(out.len(), encoded_len(packet.sack, packet.payload.len()));
    let again = Packet::parse(&out).expect("re-encoded packet must parse");
    assert_eq!(again.header, packet.header);
    assert_eq!(again.sack, packet.sack);
    assert_eq!(again.payload, packet.payload);
});
