//! The few header facts the C layer reads itself (bytewise: no alignment).
//! Full parsing is the engine's job; this only classifies and routes.

pub(crate) const HEADER_LEN: usize = 20;
pub(crate) const ST_DATA: u8 = 0;
pub(crate) const ST_FIN: u8 = 1;
pub(crate) const ST_STATE: u8 = 2;
pub(crate) const ST_RESET: u8 = 3;
pub(crate) const ST_SYN: u8 = 4;

/// libutp's test for "this is a uTP packet" (`utp_process_udp` returns 1):
/// at least 20 bytes, type < 5, first extension type < 3, version 1.
pub(crate) fn is_utp(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && (buf[0] >> 4) < 5 && buf[1] < 3 && (buf[0] & 0x0f) == 1
}

/// Packet type and connection id.
pub(crate) fn type_and_connid(buf: &[u8]) -> Option<(u8, u16)> {
    (buf.len() >= HEADER_LEN).then(|| (buf[0] >> 4, u16::from_be_bytes([buf[2], buf[3]])))
}

pub(crate) fn seq_nr(buf: &[u8]) -> Option<u16> {
    (buf.len() >= HEADER_LEN).then(|| u16::from_be_bytes([buf[16], buf[17]]))
}

/// Payload bytes after the header and its extension chain (0 if malformed).
pub(crate) fn payload_len(buf: &[u8]) -> usize {
    if buf.len() < HEADER_LEN {
        return 0;
    }
    let mut next = buf[1];
    let mut off = HEADER_LEN;
    while next != 0 {
        if off + 2 > buf.len() {
            return 0;
        }
        next = buf[off];
        off += 2 + buf[off + 1] as usize;
    }
    buf.len().saturating_sub(off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_libutp() {
        let mut h = [0u8; 20];
        h[0] = 0x41; // SYN v1
        assert!(is_utp(&h));
        assert!(!is_utp(&h[..19]));
        h[0] = 0x51;
        assert!(!is_utp(&h));
        h[0] = 0x02;
        assert!(!is_utp(&h));
        h[0] = 0x01;
        h[1] = 3;
        assert!(!is_utp(&h));
        h[1] = 2;
        assert!(is_utp(&h));
    }

    #[test]
    fn payload_after_extensions() {
        let mut p = vec![0u8; 20];
        p[0] = 0x01;
        p.extend_from_slice(b"abc");
        assert_eq!(payload_len(&p), 3);
        let mut q = vec![0u8; 20];
        q[1] = 1;
        q.extend_from_slice(&[0, 4, 1, 2, 3, 4]);
        q.extend_from_slice(b"xy");
        assert_eq!(payload_len(&q), 2);
        q.truncate(21);
        assert_eq!(payload_len(&q), 0);
    }
}
