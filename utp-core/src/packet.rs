//! Wire format of BEP 29 version 1 packets: parse and emit.
//!
//! INTERFACE STUB: the bodies are filled in by the codec work; the signatures
//! are what the rest of the engine codes against.

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

/// The five packet types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Data = 0,
    Fin = 1,
    State = 2,
    Reset = 3,
    Syn = 4,
}

/// The 20-byte header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub packet_type: PacketType,
    pub connection_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
}

/// A parsed datagram borrowing from the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// Selective-ACK bitmask bytes, if the chain carried one (length >= 4, multiple of 4 when we emit).
    pub sack: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid uTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer than 20 bytes.
    TooShort { len: usize },
    /// Version nibble is not 1.
    BadVersion(u8),
    /// Type nibble is 5 or more.
    BadType(u8),
    /// An extension header or body runs past the end of the datagram.
    ExtensionOverrun,
    /// A selective-ACK extension with length 0 (or not a multiple of 4).
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
    pub fn parse(_buf: &'a [u8]) -> Result<Packet<'a>, ParseError> {
        unimplemented!()
    }
}

impl Header {
    /// Append header, optional SACK extension and payload to `out`.
    pub fn encode(&self, _sack: Option<&[u8]>, _payload: &[u8], _out: &mut Vec<u8>) {
        unimplemented!()
    }
}

/// True when bit `i` of a SACK bitmask is set (bit i of byte i/8, LSB first),
/// i.e. packet `ack_nr + 2 + i` was received.
pub fn sack_bit(mask: &[u8], i: usize) -> bool {
    mask.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Build a SACK bitmask covering offsets `0..nbits` (rounded up to a multiple
/// of 32 bits): bit i is set when `received(i)` is true.
pub fn build_sack(_nbits: usize, _received: impl Fn(usize) -> bool) -> Vec<u8> {
    unimplemented!()
}
