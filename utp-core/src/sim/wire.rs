//! A minimal, independent look at BEP 29 headers for link filters and traces
//! (the simulator does not depend on the engine's codec, so a codec bug
//! cannot hide itself from the tests).

/// Type nibble of a DATA packet (payload).
pub const ST_DATA: u8 = 0;
/// Type nibble of a FIN packet (end of the sender's stream).
pub const ST_FIN: u8 = 1;
/// Type nibble of a STATE packet (pure ACK).
pub const ST_STATE: u8 = 2;
/// Type nibble of a RESET packet (abort).
pub const ST_RESET: u8 = 3;
/// Type nibble of a SYN packet (connection request).
pub const ST_SYN: u8 = 4;

/// The fields of a uTP datagram a test filter typically needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peek {
    /// The type nibble, one of the `ST_*` constants.
    pub packet_type: u8,
    /// The header's connection id.
    pub connection_id: u16,
    /// The header's sequence number.
    pub seq_nr: u16,
    /// The header's acknowledgement number.
    pub ack_nr: u16,
    /// Bytes after the header and the extension chain.
    pub payload_len: usize,
}

/// Decode the header of a version-1 uTP datagram; `None` if it is not one
/// (too short, wrong version, type >= 5, extension chain overruns).
pub fn peek(d: &[u8]) -> Option<Peek> {
    if d.len() < 20 || d[0] & 0x0f != 1 || d[0] >> 4 > 4 {
        return None;
    }
    let mut ext = d[1];
    let mut pos = 20;
    while ext != 0 {
        if pos + 2 > d.len() {
            return None;
        }
        ext = d[pos];
        let len = d[pos + 1] as usize;
        pos += 2 + len;
        if pos > d.len() {
            return None;
        }
    }
    Some(Peek {
        packet_type: d[0] >> 4,
        connection_id: u16::from_be_bytes([d[2], d[3]]),
        seq_nr: u16::from_be_bytes([d[16], d[17]]),
        ack_nr: u16::from_be_bytes([d[18], d[19]]),
        payload_len: d.len() - pos,
    })
}

/// Short name of a packet type for traces.
pub fn type_name(t: u8) -> &'static str {
    match t {
        ST_DATA => "DATA",
        ST_FIN => "FIN",
        ST_STATE => "STATE",
        ST_RESET => "RESET",
        ST_SYN => "SYN",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeks_header_and_skips_extensions() {
        let mut d = vec![0u8; 20];
        d[0] = (ST_DATA << 4) | 1;
        d[1] = 1; // SACK follows
        d[2..4].copy_from_slice(&0x1234u16.to_be_bytes());
        d[16..18].copy_from_slice(&7u16.to_be_bytes());
        d[18..20].copy_from_slice(&9u16.to_be_bytes());
        d.extend_from_slice(&[0, 4, 0xff, 0, 0, 0]);
        d.extend_from_slice(b"hello");
        let p = peek(&d).unwrap();
        assert_eq!(
            p,
            Peek {
                packet_type: ST_DATA,
                connection_id: 0x1234,
                seq_nr: 7,
                ack_nr: 9,
                payload_len: 5
            }
        );
        assert_eq!(peek(&d[..23]), None);
        assert_eq!(peek(&d[..19]), None);
        d[0] = (5 << 4) | 1;
        assert_eq!(peek(&d), None);
        d[0] = ST_DATA << 4 | 2;
        assert_eq!(peek(&d), None);
    }
}
