//! Wire format of BEP 29 version 1 packets: parse and emit.
//!
//! Parsing borrows from the datagram and never panics, whatever the bytes:
//! every read goes through slice patterns or checked splits, and the only
//! arithmetic is on lengths already known to fit. Emitting appends to a
//! caller-owned `Vec` so the engine can reuse one buffer per transmit.
//!
//! The extension chain is read more leniently than libutp does: extension
//! types we do not know are skipped by their length wherever they appear
//! (libutp drops a packet whose *first* extension is 3 or more, which breaks
//! peers such as libtorrent that send a close-reason extension).

use std::fmt;

/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// The only protocol version on the wire.
pub const VERSION: u8 = 1;
/// Extension type: end of the chain.
pub const EXT_NONE: u8 = 0;
/// Extension type: selective ACK bitmask.
pub const EXT_SACK: u8 = 1;
/// Extension type: the 8-byte "extension bits" block (recorded, unused).
pub const EXT_BITS: u8 = 2;

/// Longest SACK mask [`build_sack`] produces: the largest multiple of 4 that
/// fits the one-byte extension length.
pub const MAX_SACK_LEN: usize = 252;
/// Number of packets a [`build_sack`] mask can describe.
pub const MAX_SACK_BITS: usize = MAX_SACK_LEN * 8;

/// The five packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `ST_DATA`: carries payload and takes a sequence number.
    Data = 0,
    /// `ST_FIN`: the sender's last packet; its `seq_nr` ends the stream.
    Fin = 1,
    /// `ST_STATE`: a pure ACK; no payload, does not advance `seq_nr`.
    State = 2,
    /// `ST_RESET`: terminates the connection abruptly.
    Reset = 3,
    /// `ST_SYN`: opens a connection; its `connection_id` is the sender's
    /// receive id.
    Syn = 4,
}

impl PacketType {
    /// Checked conversion from the header's type nibble; values 5..=15 are
    /// not packet types, so an out-of-range value is `None` rather than UB.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(PacketType::Data),
            1 => Some(PacketType::Fin),
            2 => Some(PacketType::State),
            3 => Some(PacketType::Reset),
            4 => Some(PacketType::Syn),
            _ => None,
        }
    }
}

/// The 20-byte header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The type nibble of byte 0 (the version nibble is always [`VERSION`]).
    pub packet_type: PacketType,
    /// Connection id. A SYN carries the sender's receive id; every later
    /// packet carries the receiver's id (the sender's send id, which is the
    /// SYN's id + 1 on the initiating side).
    pub connection_id: u16,
    /// Low 32 bits of the sender's microsecond clock when it sent the packet (µs).
    pub timestamp_us: u32,
    /// The sender's last one-way delay sample (µs): its receive time of our
    /// latest packet minus that packet's `timestamp_us`, wrapping. LEDBAT's
    /// input.
    pub timestamp_diff_us: u32,
    /// The sender's free receive buffer space (bytes): how much more it will
    /// accept beyond `ack_nr`.
    pub wnd_size: u32,
    /// Sequence number of this packet (DATA, FIN, SYN); a STATE packet
    /// carries the next number without consuming it.
    pub seq_nr: u16,
    /// Sequence number of the last packet the sender received in order.
    pub ack_nr: u16,
}

/// A parsed datagram borrowing from the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed 20-byte header.
    pub header: Header,
    /// Selective-ACK bitmask bytes, if the chain carried one. Never empty;
    /// any length 1..=255 a peer sends is kept (we emit multiples of 4).
    /// Bit i (see [`sack_bit`]) acknowledges `ack_nr + 2 + i`.
    pub sack: Option<&'a [u8]>,
    /// Everything after the extension chain: the DATA payload (empty for
    /// other types, though not enforced here).
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid uTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than 20 bytes.
    TooShort {
        /// Length of the datagram (bytes).
        len: usize,
    },
    /// Version nibble is not 1; holds the nibble.
    BadVersion(u8),
    /// Type nibble is 5 or more; holds the nibble.
    BadType(u8),
    /// An extension header or body runs past the end of the datagram.
    ExtensionOverrun,
    /// A selective-ACK extension with length 0: it acknowledges nothing and
    /// no conforming peer sends one. Other lengths are accepted.
    BadSackLength(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}
impl std::error::Error for ParseError {}

impl<'a> Packet<'a> {
    /// Parse a datagram. Never panics.
    ///
    /// Header checks are those of [`Header::parse`]. When several SACK
    /// extensions appear the first wins; a zero-length one anywhere in the
    /// chain rejects the packet. Extension bits (type 2) and unknown types are
    /// skipped by their length.
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        let header = Header::parse(buf)?;
        let (first_ext, mut rest) = match buf.split_first_chunk::<HEADER_LEN>() {
            Some(([_, ext, ..], rest)) => (*ext, rest),
            None => return Err(ParseError::TooShort { len: buf.len() }),
        };

        // Each step consumes at least the 2-byte extension header, so the
        // loop ends within buf.len() / 2 iterations even on hostile input.
        let mut ext = first_ext;
        let mut sack = None;
        while ext != EXT_NONE {
            let [next, len, body @ ..] = rest else {
                return Err(ParseError::ExtensionOverrun);
            };
            let Some((data, tail)) = body.split_at_checked(usize::from(*len)) else {
                return Err(ParseError::ExtensionOverrun);
            };
            if ext == EXT_SACK {
                if data.is_empty() {
                    return Err(ParseError::BadSackLength(*len));
                }
                sack.get_or_insert(data);
            }
            ext = *next;
            rest = tail;
        }

        Ok(Packet {
            header,
            sack,
            payload: rest,
        })
    }
}

/// The mask that will actually go on the wire: an empty mask would be
/// rejected by the receiver, so it is dropped, and the length byte caps it at
/// 255 bytes. Shared by `encode` and `encoded_len` so they cannot disagree.
fn wire_sack(sack: Option<&[u8]>) -> Option<&[u8]> {
    let mask = sack.filter(|m| !m.is_empty())?;
    debug_assert!(
        mask.len() <= usize::from(u8::MAX),
        "SACK mask of {} bytes does not fit the extension length byte",
        mask.len()
    );
    Some(mask.get(..usize::from(u8::MAX)).unwrap_or(mask))
}

impl Header {
    /// Decode only the fixed 20-byte header, ignoring the extension chain
    /// and payload. For datagrams quoted back in ICMP errors, which are
    /// often cut short after the header; [`Packet::parse`] would reject those.
    /// Never panics.
    pub fn parse(buf: &[u8]) -> Result<Header, ParseError> {
        let Some((fixed, _)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Err(ParseError::TooShort { len: buf.len() });
        };
        let [b0, _, c0, c1, t0, t1, t2, t3, d0, d1, d2, d3, w0, w1, w2, w3, s0, s1, a0, a1] =
            *fixed;

        // The type nibble of a non-v1 packet means nothing, so check the
        // version first.
        let version = b0 & 0x0f;
        if version != VERSION {
            return Err(ParseError::BadVersion(version));
        }
        let packet_type = PacketType::from_u8(b0 >> 4).ok_or(ParseError::BadType(b0 >> 4))?;

        Ok(Header {
            packet_type,
            connection_id: u16::from_be_bytes([c0, c1]),
            timestamp_us: u32::from_be_bytes([t0, t1, t2, t3]),
            timestamp_diff_us: u32::from_be_bytes([d0, d1, d2, d3]),
            wnd_size: u32::from_be_bytes([w0, w1, w2, w3]),
            seq_nr: u16::from_be_bytes([s0, s1]),
            ack_nr: u16::from_be_bytes([a0, a1]),
        })
    }

    /// Append header, optional SACK extension and payload to `out`.
    ///
    /// An empty `sack` is treated as `None` (the peer would reject it), and a
    /// mask longer than 255 bytes is truncated to 255 (higher bits are
    /// lost, which only weakens the ACK; debug builds assert instead).
    pub fn encode(&self, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
        let sack = wire_sack(sack);
        out.reserve(encoded_len(sack, payload.len()));

        out.push(((self.packet_type as u8) << 4) | VERSION);
        out.push(if sack.is_some() { EXT_SACK } else { EXT_NONE });
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(mask) = sack {
            // wire_sack capped the length at 255, so this never saturates.
            let len = u8::try_from(mask.len()).unwrap_or(u8::MAX);
            out.extend_from_slice(&[EXT_NONE, len]);
            out.extend_from_slice(mask);
        }
        out.extend_from_slice(payload);
    }
}

/// Bytes [`Header::encode`] appends for this SACK and payload length, so
/// callers can check a packet against the MTU before building it.
pub fn encoded_len(sack: Option<&[u8]>, payload_len: usize) -> usize {
    let ext = wire_sack(sack).map_or(0, |m| 2 + m.len());
    (HEADER_LEN + ext).saturating_add(payload_len)
}

/// True when bit `i` of a SACK bitmask is set (bit i of byte i/8, LSB first),
/// i.e. packet `ack_nr + 2 + i` was received.
pub fn sack_bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Build a SACK bitmask covering offsets `0..nbits` (rounded up to a multiple
/// of 32 bits): bit i is set when `received(i)` is true.
///
/// libutp and BEP 29 expect whole 32-bit words, so the mask is at least 4
/// bytes even for `nbits == 0`. `nbits` is clamped to [`MAX_SACK_BITS`] so
/// the length fits the extension's length byte. `received` is called once for
/// each `i` in `0..nbits`, in increasing order.
pub fn build_sack(nbits: usize, received: impl Fn(usize) -> bool) -> Vec<u8> {
    let nbits = nbits.min(MAX_SACK_BITS);
    let len = nbits.div_ceil(32).max(1) * 4;
    let mut mask = vec![0u8; len];
    for (j, byte) in mask.iter_mut().enumerate() {
        for bit in 0..8 {
            let i = j * 8 + bit;
            if i < nbits && received(i) {
                *byte |= 1 << bit;
            }
        }
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(packet_type: PacketType) -> Header {
        Header {
            packet_type,
            connection_id: 0x1234,
            timestamp_us: 0xdead_beef,
            timestamp_diff_us: 0x0102_0304,
            wnd_size: 0x0010_0000,
            seq_nr: 0xabcd,
            ack_nr: 0x4321,
        }
    }

    /// A bare 20-byte STATE header whose byte 1 names `first_ext`, followed
    /// by `tail` (the extension chain and payload), built by hand.
    fn raw(first_ext: u8, tail: &[u8]) -> Vec<u8> {
        let mut v = vec![0x21, first_ext];
        v.extend_from_slice(&[0; 18]);
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn too_short() {
        assert_eq!(Packet::parse(&[]), Err(ParseError::TooShort { len: 0 }));
        let mut buf = Vec::new();
        header(PacketType::Data).encode(None, &[], &mut buf);
        assert_eq!(
            Packet::parse(&buf[..19]),
            Err(ParseError::TooShort { len: 19 })
        );
        assert!(Packet::parse(&buf).is_ok());
    }

    #[test]
    fn bad_version() {
        let mut buf = raw(0, &[]);
        for (b0, v) in [(0x20, 0), (0x22, 2), (0x2f, 15)] {
            buf[0] = b0;
            assert_eq!(Packet::parse(&buf), Err(ParseError::BadVersion(v)));
        }
        // Version is checked first: the type nibble of a non-v1 packet is
        // meaningless.
        buf[0] = 0x52;
        assert_eq!(Packet::parse(&buf), Err(ParseError::BadVersion(2)));
    }

    #[test]
    fn bad_type() {
        let mut buf = raw(0, &[]);
        for t in 5..=15u8 {
            buf[0] = (t << 4) | VERSION;
            assert_eq!(Packet::parse(&buf), Err(ParseError::BadType(t)));
        }
        for t in 0..5u8 {
            buf[0] = (t << 4) | VERSION;
            let p = Packet::parse(&buf).unwrap();
            assert_eq!(p.header.packet_type as u8, t);
        }
    }

    #[test]
    fn extension_overrun() {
        // Chain announced, but no extension header at all.
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[])),
            Err(ParseError::ExtensionOverrun)
        );
        // Only half of the 2-byte extension header.
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[0])),
            Err(ParseError::ExtensionOverrun)
        );
        // Body one byte short.
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[0, 4, 1, 2, 3])),
            Err(ParseError::ExtensionOverrun)
        );
        // Unknown extension bodies are bounds-checked too.
        assert_eq!(
            Packet::parse(&raw(7, &[0, 255, 1, 2, 3])),
            Err(ParseError::ExtensionOverrun)
        );
        // A complete extension whose next-type points at nothing.
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[EXT_BITS, 4, 1, 2, 3, 4])),
            Err(ParseError::ExtensionOverrun)
        );
    }

    #[test]
    fn bad_sack_length() {
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[0, 0])),
            Err(ParseError::BadSackLength(0))
        );
        // Also when an empty SACK follows a good one.
        assert_eq!(
            Packet::parse(&raw(EXT_SACK, &[EXT_SACK, 4, 1, 2, 3, 4, 0, 0])),
            Err(ParseError::BadSackLength(0))
        );
    }

    #[test]
    fn header_parse_ignores_the_chain() {
        // A truncated SACK (as in a short ICMP quote) still yields the header.
        let mut buf = Vec::new();
        let h = header(PacketType::State);
        h.encode(Some(&[1, 2, 3, 4]), &[], &mut buf);
        assert_eq!(Packet::parse(&buf[..23]), Err(ParseError::ExtensionOverrun));
        assert_eq!(Header::parse(&buf[..23]), Ok(h));
        assert_eq!(Header::parse(&buf[..20]), Ok(h));
        assert_eq!(
            Header::parse(&buf[..19]),
            Err(ParseError::TooShort { len: 19 })
        );
        buf[0] = 0x61;
        assert_eq!(Header::parse(&buf), Err(ParseError::BadType(6)));
    }

    #[test]
    fn parse_error_display() {
        assert_eq!(
            ParseError::TooShort { len: 3 }.to_string(),
            "TooShort { len: 3 }"
        );
    }

    /// The libutp SYN from the contract doc, section 10.2:
    /// `SYN connid 51293 seq 54738 ack 0 wnd 1048576 ts 1000000000 tsdiff 0`.
    #[test]
    fn libutp_syn_bytes() {
        let syn = Header {
            packet_type: PacketType::Syn,
            connection_id: 51293,
            timestamp_us: 1_000_000_000,
            timestamp_diff_us: 0,
            wnd_size: 1_048_576,
            seq_nr: 54738,
            ack_nr: 0,
        };
        let mut buf = Vec::new();
        syn.encode(None, &[], &mut buf);
        #[rustfmt::skip]
        let expect = [
            0x41, 0x00,             // SYN, v1; no extension
            0xc8, 0x5d,             // connection id 51293
            0x3b, 0x9a, 0xca, 0x00, // timestamp 1_000_000_000
            0x00, 0x00, 0x00, 0x00, // timestamp diff
            0x00, 0x10, 0x00, 0x00, // window 1 MiB
            0xd5, 0xd2,             // seq_nr 54738
            0x00, 0x00,             // ack_nr 0
        ];
        assert_eq!(buf, expect);
        assert_eq!(encoded_len(None, 0), 20);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.header, syn);
        assert_eq!(p.sack, None);
        assert!(p.payload.is_empty());
    }

    /// libutp's selective ACK is 26 bytes: byte 1 = 1, then `00 04` and the mask.
    #[test]
    fn sack_packet_bytes() {
        let h = header(PacketType::State);
        let mut buf = vec![0xee]; // encode appends; existing bytes are kept
        h.encode(Some(&[1, 2, 3, 4]), &[], &mut buf);
        assert_eq!(buf.len(), 1 + 26);
        assert_eq!(buf[0], 0xee);
        let buf = &buf[1..];
        assert_eq!(&buf[..2], &[0x21, EXT_SACK]);
        assert_eq!(&buf[20..], &[EXT_NONE, 4, 1, 2, 3, 4]);
        assert_eq!(encoded_len(Some(&[1, 2, 3, 4]), 0), 26);
        let p = Packet::parse(buf).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.sack, Some(&[1, 2, 3, 4][..]));
        assert!(p.payload.is_empty());
    }

    #[test]
    fn data_payload_follows_header() {
        let h = header(PacketType::Data);
        let mut buf = Vec::new();
        h.encode(None, b"hello", &mut buf);
        assert_eq!(buf.len(), 25);
        assert_eq!(encoded_len(None, 5), 25);
        assert_eq!(Packet::parse(&buf).unwrap().payload, b"hello");
    }

    #[test]
    fn unknown_first_extension_skipped() {
        // libtorrent's close-reason extension (type 3) as the first one:
        // libutp drops this packet, we read past it.
        let buf = raw(3, &[EXT_NONE, 4, 0, 0, 0, 7, b'x', b'y']);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, None);
        assert_eq!(p.payload, b"xy");

        // Unknown type, then extension bits (any length), then a SACK.
        let buf = raw(
            200,
            &[
                EXT_BITS, 1, 9, //
                EXT_SACK, 8, 0, 0, 0, 0, 0, 0, 0, 0, //
                EXT_NONE, 4, 0xaa, 0xbb, 0xcc, 0xdd, //
                b'p',
            ],
        );
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, Some(&[0xaa, 0xbb, 0xcc, 0xdd][..]));
        assert_eq!(p.payload, b"p");

        // An unknown extension with an empty body is fine too.
        let buf = raw(9, &[EXT_NONE, 0]);
        let p = Packet::parse(&buf).unwrap();
        assert!(p.payload.is_empty());
    }

    #[test]
    fn first_sack_wins() {
        let buf = raw(
            EXT_SACK,
            &[EXT_SACK, 4, 1, 1, 1, 1, EXT_NONE, 4, 2, 2, 2, 2],
        );
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, Some(&[1, 1, 1, 1][..]));
        assert!(p.payload.is_empty());
    }

    #[test]
    fn sack_longer_than_four_bytes() {
        // Eight bytes: bits for ack_nr + 2 .. ack_nr + 65.
        let mut mask = [0u8; 8];
        mask[7] = 0x80;
        let h = header(PacketType::State);
        let mut buf = Vec::new();
        h.encode(Some(&mask), &[], &mut buf);
        assert_eq!(buf.len(), 20 + 2 + 8);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, Some(&mask[..]));
        assert!(sack_bit(p.sack.unwrap(), 63));
        assert!(!sack_bit(p.sack.unwrap(), 64));

        // Lengths that are not a multiple of 4 are honoured as sent.
        let buf = raw(EXT_SACK, &[EXT_NONE, 5, 1, 2, 3, 4, 5, 0xff]);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, Some(&[1, 2, 3, 4, 5][..]));
        assert_eq!(p.payload, &[0xff]);

        // The longest a length byte allows.
        let mut tail = vec![EXT_NONE, 255];
        tail.extend([0x55; 255]);
        let buf = raw(EXT_SACK, &tail);
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack.map(<[u8]>::len), Some(255));
    }

    #[test]
    fn sack_bit_layout() {
        // Bit i of byte j acknowledges ack_nr + 2 + 8j + i.
        let ack_nr: u16 = 65530;
        let held = [ack_nr.wrapping_add(2), ack_nr.wrapping_add(2 + 9), 27];
        let mask = build_sack(32, |i| {
            held.contains(&ack_nr.wrapping_add(2).wrapping_add(i as u16))
        });
        // 27 = 65530 + 2 + 31 (mod 2^16): bit 7 of byte 3.
        assert_eq!(mask, [0b0000_0001, 0b0000_0010, 0, 0b1000_0000]);
        for j in 0..4 {
            for i in 0..8 {
                let seq = ack_nr.wrapping_add(2 + 8 * j + i);
                assert_eq!(
                    sack_bit(&mask, usize::from(8 * j + i)),
                    held.contains(&seq),
                    "byte {j} bit {i}"
                );
            }
        }
        assert!(!sack_bit(&mask, 32));
        assert!(!sack_bit(&[], 0));
    }

    #[test]
    fn build_sack_lengths() {
        assert_eq!(build_sack(0, |_| true), [0, 0, 0, 0]);
        assert_eq!(build_sack(1, |_| true), [1, 0, 0, 0]);
        assert_eq!(build_sack(30, |_| true), [0xff, 0xff, 0xff, 0x3f]);
        assert_eq!(build_sack(32, |_| true).len(), 4);
        assert_eq!(
            build_sack(33, |_| true),
            [0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0]
        );
        assert_eq!(build_sack(MAX_SACK_BITS, |_| false).len(), MAX_SACK_LEN);
        let huge = build_sack(usize::MAX, |_| true);
        assert_eq!(huge.len(), MAX_SACK_LEN);
        assert!(huge.iter().all(|&b| b == 0xff));
    }

    #[test]
    fn encode_degenerate_sacks() {
        let h = header(PacketType::State);
        // An empty mask would be rejected by the receiver, so none is sent.
        let mut buf = Vec::new();
        h.encode(Some(&[]), &[], &mut buf);
        assert_eq!(buf.len(), 20);
        assert_eq!(buf[1], EXT_NONE);
        assert_eq!(encoded_len(Some(&[]), 0), 20);
        // 255 bytes is the most the length byte can say.
        let mask = [0x0f; 255];
        let mut buf = Vec::new();
        h.encode(Some(&mask), b"z", &mut buf);
        assert_eq!(buf.len(), encoded_len(Some(&mask), 1));
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.sack, Some(&mask[..]));
        assert_eq!(p.payload, b"z");
    }

    #[test]
    fn packet_type_from_u8() {
        for v in 0..=255u8 {
            match PacketType::from_u8(v) {
                Some(t) => assert_eq!(t as u8, v),
                None => assert!(v >= 5),
            }
        }
    }

    fn arb_header() -> impl Strategy<Value = Header> {
        (
            0..5u8,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(t, connection_id, ts, tsd, wnd, seq_nr, ack_nr)| Header {
                packet_type: PacketType::from_u8(t).unwrap(),
                connection_id,
                timestamp_us: ts,
                timestamp_diff_us: tsd,
                wnd_size: wnd,
                seq_nr,
                ack_nr,
            })
    }

    /// Bytes that get past the version and type checks often enough to
    /// exercise the extension chain.
    fn plausible_datagram() -> impl Strategy<Value = Vec<u8>> {
        (
            0..6u8,
            0..5u8,
            proptest::collection::vec(any::<u8>(), 18),
            proptest::collection::vec(prop_oneof![0..4u8, any::<u8>()], 0..64),
        )
            .prop_map(|(t, ext, fixed, tail)| {
                let mut v = vec![(t << 4) | VERSION, ext];
                v.extend(fixed);
                v.extend(tail);
                v
            })
    }

    /// What the fuzz target checks: whatever parses survives a re-encode.
    fn reencode_matches(buf: &[u8]) {
        let parsed = Packet::parse(buf);
        if let Ok(p) = parsed {
            assert_eq!(Header::parse(buf), Ok(p.header));
        }
        if let Ok(p) = parsed {
            let mut out = Vec::new();
            p.header.encode(p.sack, p.payload, &mut out);
            assert_eq!(out.len(), encoded_len(p.sack, p.payload.len()));
            assert_eq!(Packet::parse(&out), Ok(p));
        }
    }

    proptest! {
        #[test]
        fn encode_parse_round_trip(
            h in arb_header(),
            sack in proptest::option::of(
                (1..=16usize).prop_flat_map(|w| proptest::collection::vec(any::<u8>(), w * 4))
            ),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
        ) {
            let mut buf = Vec::new();
            h.encode(sack.as_deref(), &payload, &mut buf);
            prop_assert_eq!(buf.len(), encoded_len(sack.as_deref(), payload.len()));
            let p = Packet::parse(&buf).unwrap();
            prop_assert_eq!(p.header, h);
            prop_assert_eq!(p.sack, sack.as_deref());
            prop_assert_eq!(p.payload, &payload[..]);
        }

        #[test]
        fn parse_arbitrary_bytes_never_panics(
            buf in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            reencode_matches(&buf);
        }

        #[test]
        fn parse_plausible_bytes_never_panics(buf in plausible_datagram()) {
            reencode_matches(&buf);
        }

        #[test]
        fn build_sack_round_trip(
            nbits in 0..2200usize,
            bits in proptest::collection::vec(any::<bool>(), 2200),
        ) {
            let mask = build_sack(nbits, |i| bits[i]);
            let covered = nbits.min(MAX_SACK_BITS);
            prop_assert_eq!(mask.len() % 4, 0);
            prop_assert_eq!(mask.len(), covered.div_ceil(32).max(1) * 4);
            for i in 0..mask.len() * 8 + 8 {
                let expect = i < covered && bits.get(i) == Some(&true);
                prop_assert_eq!(sack_bit(&mask, i), expect);
            }
        }
    }
}
