//! The receive side of a connection: in-order bytes waiting for the
//! application, and a bounded reorder buffer for packets that arrived early.
//!
//! The free space of both together is the window we advertise, and it is
//! enforced: a packet that does not fit is dropped (unacknowledged), so a
//! sender that ignores our window cannot make us buffer without bound.

use std::collections::VecDeque;

use super::REORDER_LIMIT;
use crate::packet::build_sack;
use crate::seq::Seq;

/// What happened to an incoming DATA or FIN packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In order: delivered, with whatever it released from the reorder buffer.
    Delivered { bytes: usize },
    /// Early: kept in the reorder buffer.
    Buffered,
    /// Already received.
    Duplicate,
    /// Would overflow the receive buffer: dropped.
    NoRoom,
    /// Too far ahead, or after the FIN: dropped.
    OutOfRange,
}

#[derive(Clone, Debug)]
struct Early {
    fin: bool,
    payload: Vec<u8>,
}

/// Receive buffer and reorder buffer.
#[derive(Debug)]
pub struct RecvBuffer {
    capacity: usize,
    /// In-order bytes not yet read by the application.
    data: VecDeque<u8>,
    /// Last sequence number received in order.
    ack_nr: Seq,
    initial_ack: Seq,
    /// Index i holds sequence `ack_nr + 1 + i`; index 0 is always empty (the gap).
    reorder: VecDeque<Option<Early>>,
    reorder_bytes: usize,
    eof_seq: Option<Seq>,
    eof_reached: bool,
    /// The application closed: keep acknowledging, drop the bytes.
    discard: bool,
}

impl RecvBuffer {
    /// An empty buffer that accepts up to `capacity` bytes the application has not read.
    pub fn new(capacity: usize) -> Self {
        RecvBuffer {
            capacity: capacity.max(1),
            data: VecDeque::new(),
            ack_nr: Seq(0),
            initial_ack: Seq(0),
            reorder: VecDeque::new(),
            reorder_bytes: 0,
            eof_seq: None,
            eof_reached: false,
            discard: false,
        }
    }

    /// Resize the buffer (bytes already held stay held).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// The sequence number before the peer's first packet.
    pub fn set_initial_ack(&mut self, seq: Seq) {
        self.ack_nr = seq;
        self.initial_ack = seq;
    }

    /// The sequence number the connection started from (the SYN's).
    pub fn initial_ack(&self) -> Seq {
        self.initial_ack
    }

    /// The last sequence number received in order (what our ACKs carry).
    pub fn ack_nr(&self) -> Seq {
        self.ack_nr
    }

    /// In-order bytes waiting to be read.
    pub fn readable(&self) -> usize {
        self.data.len()
    }

    /// The window to advertise.
    pub fn free_space(&self) -> usize {
        self.capacity
            .saturating_sub(self.data.len() + self.reorder_bytes)
    }

    /// Every packet up to and including the peer's FIN arrived.
    pub fn eof_reached(&self) -> bool {
        self.eof_reached
    }

    /// Drop unread bytes and everything that arrives from now on.
    pub fn discard_unread(&mut self) {
        self.data.clear();
        self.discard = true;
    }

    /// Copy out up to `buf.len()` in-order bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.data.len());
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        buf[..from_a].copy_from_slice(&a[..from_a]);
        buf[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.data.drain(..n);
        n
    }

    /// Take an incoming DATA/FIN packet.
    pub fn on_packet(&mut self, seq: Seq, fin: bool, payload: &[u8], discard: bool) -> Outcome {
        self.discard |= discard;
        if self.eof_reached {
            return if seq.le(self.ack_nr) {
                Outcome::Duplicate
            } else {
                Outcome::OutOfRange
            };
        }
        let d = seq.distance_from(self.ack_nr.plus(1));
        if d >= u16::MAX - REORDER_LIMIT {
            // At or before ack_nr: the sender missed our ACK.
            return Outcome::Duplicate;
        }
        if d > REORDER_LIMIT {
            return Outcome::OutOfRange;
        }
        if let Some(eof) = self.eof_seq {
            if seq.gt(eof) {
                return Outcome::OutOfRange;
            }
        }
        if d == 0 {
            // In order. Reordered bytes are not counted here, or a full
            // reorder buffer could block the very packet that drains it.
            if !self.discard && self.data.len() + payload.len() > self.capacity {
                return Outcome::NoRoom;
            }
            if fin {
                self.eof_seq = Some(seq);
            }
            let mut bytes = self.deliver(seq, fin, payload);
            self.reorder.pop_front();
            while let Some(Some(_)) = self.reorder.front() {
                let early = self.reorder.pop_front().flatten().expect("checked");
                self.reorder_bytes -= early.payload.len();
                let next = self.ack_nr.plus(1);
                bytes += self.deliver(next, early.fin, &early.payload);
                if self.eof_reached {
                    break;
                }
            }
            if self.eof_reached {
                self.reorder.clear();
                self.reorder_bytes = 0;
            }
            return Outcome::Delivered { bytes };
        }
        let d = d as usize;
        if self.reorder.len() > d && self.reorder[d].is_some() {
            return Outcome::Duplicate;
        }
        if self.data.len() + self.reorder_bytes + payload.len() > self.capacity {
            return Outcome::NoRoom;
        }
        if fin {
            self.eof_seq = Some(seq);
            // Anything buffered beyond the FIN is bogus.
            self.reorder.truncate(d);
            self.reorder_bytes = self.reorder.iter().flatten().map(|e| e.payload.len()).sum();
        }
        if self.reorder.len() <= d {
            self.reorder.resize_with(d + 1, || None);
        }
        self.reorder_bytes += payload.len();
        self.reorder[d] = Some(Early {
            fin,
            payload: payload.to_vec(),
        });
        Outcome::Buffered
    }

    fn deliver(&mut self, seq: Seq, fin: bool, payload: &[u8]) -> usize {
        self.ack_nr = seq;
        if !self.discard {
            self.data.extend(payload);
        }
        if fin || self.eof_seq == Some(seq) {
            self.eof_reached = true;
        }
        payload.len()
    }

    /// Selective-ACK bitmask for the packets held beyond the gap, if any.
    pub fn sack(&self) -> Option<Vec<u8>> {
        if self.eof_reached || self.reorder.len() < 2 {
            return None;
        }
        // Bit i acknowledges ack_nr + 2 + i, which is reorder index i + 1.
        let nbits = self.reorder.len() - 1;
        Some(build_sack(nbits, |i| {
            self.reorder.get(i + 1).is_some_and(|e| e.is_some())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::sack_bit;

    fn rb(cap: usize) -> RecvBuffer {
        let mut r = RecvBuffer::new(cap);
        r.set_initial_ack(Seq(65533));
        r
    }

    fn read_all(r: &mut RecvBuffer) -> Vec<u8> {
        let mut buf = vec![0u8; r.readable()];
        let n = r.read(&mut buf);
        buf.truncate(n);
        buf
    }

    #[test]
    fn in_order_across_the_wrap() {
        let mut r = rb(1000);
        for (i, s) in [65534u16, 65535, 0, 1].iter().enumerate() {
            assert_eq!(
                r.on_packet(Seq(*s), false, &[i as u8], false),
                Outcome::Delivered { bytes: 1 }
            );
        }
        assert_eq!(read_all(&mut r), vec![0, 1, 2, 3]);
        assert_eq!(r.ack_nr(), Seq(1));
    }

    #[test]
    fn reorders_duplicates_and_sacks() {
        let mut r = rb(1000);
        assert_eq!(r.on_packet(Seq(0), false, b"c", false), Outcome::Buffered);
        assert_eq!(r.on_packet(Seq(0), false, b"c", false), Outcome::Duplicate);
        assert_eq!(r.on_packet(Seq(2), false, b"e", false), Outcome::Buffered);
        // ack_nr 65533; held: 0 (= ack_nr + 3 → bit 1) and 2 (bit 3).
        let mask = r.sack().expect("sack");
        assert_eq!(mask.len(), 4);
        assert!(
            !sack_bit(&mask, 0) && sack_bit(&mask, 1) && !sack_bit(&mask, 2) && sack_bit(&mask, 3)
        );
        assert_eq!(
            r.on_packet(Seq(65534), false, b"a", false),
            Outcome::Delivered { bytes: 1 }
        );
        assert_eq!(
            r.on_packet(Seq(65535), false, b"b", false),
            Outcome::Delivered { bytes: 2 }
        );
        assert_eq!(
            r.on_packet(Seq(1), false, b"d", false),
            Outcome::Delivered { bytes: 2 }
        );
        assert_eq!(read_all(&mut r), b"abcde");
        assert!(r.sack().is_none());
        assert_eq!(
            r.on_packet(Seq(65535), false, b"b", false),
            Outcome::Duplicate
        );
    }

    #[test]
    fn eof_only_after_every_packet_before_the_fin() {
        let mut r = rb(1000);
        assert_eq!(r.on_packet(Seq(65535), true, b"", false), Outcome::Buffered);
        assert!(!r.eof_reached());
        // Beyond the FIN: dropped.
        assert_eq!(r.on_packet(Seq(0), false, b"x", false), Outcome::OutOfRange);
        assert_eq!(
            r.on_packet(Seq(65534), false, b"a", false),
            Outcome::Delivered { bytes: 1 }
        );
        assert!(r.eof_reached());
        assert_eq!(read_all(&mut r), b"a");
    }

    #[test]
    fn window_is_enforced() {
        let mut r = rb(10);
        assert_eq!(
            r.on_packet(Seq(65534), false, &[0; 8], false),
            Outcome::Delivered { bytes: 8 }
        );
        assert_eq!(r.free_space(), 2);
        assert_eq!(
            r.on_packet(Seq(65535), false, &[0; 8], false),
            Outcome::NoRoom
        );
        assert_eq!(r.on_packet(Seq(0), false, &[0; 8], false), Outcome::NoRoom);
        assert_eq!(read_all(&mut r).len(), 8);
        assert_eq!(
            r.on_packet(Seq(65535), false, &[0; 8], false),
            Outcome::Delivered { bytes: 8 }
        );
    }

    #[test]
    fn far_ahead_is_dropped() {
        let mut r = rb(1 << 20);
        assert_eq!(
            r.on_packet(Seq(65533).plus(1 + REORDER_LIMIT + 1), false, b"x", false),
            Outcome::OutOfRange
        );
        assert_eq!(
            r.on_packet(Seq(65533).plus(1 + REORDER_LIMIT), false, b"x", false),
            Outcome::Buffered
        );
        let mask = r.sack().unwrap();
        assert!(sack_bit(&mask, REORDER_LIMIT as usize - 1));
    }
}
