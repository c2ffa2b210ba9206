//! What a handle is ready for ([`Readiness`]) and what a waiter cares about
//! ([`Interest`]).

use std::ops::{BitOr, BitOrAssign};

/// A set of readiness conditions a waiter cares about: for
/// [`StreamHandle::wait`](super::StreamHandle::wait) and the pollable
/// descriptors ([`StreamHandle::poll_fd`](super::StreamHandle::poll_fd),
/// [`ContextHandle::poll_fd`](super::ContextHandle::poll_fd)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// No condition.
    pub const NONE: Interest = Interest(0);
    /// Stream: a read would not block (data, end of stream, or an error).
    pub const READABLE: Interest = Interest(1);
    /// Stream: the connection is established and a write of the low-water
    /// mark would not block (or an error waits to be reported).
    pub const WRITABLE: Interest = Interest(2);
    /// Stream: the connection is finished or failed.
    pub const CLOSED: Interest = Interest(4);
    /// Context: `accept` would not block.
    pub const ACCEPTABLE: Interest = Interest(8);
    /// Context: a non-uTP datagram is queued (see
    /// [`ContextHandle::set_datagram_queue`](super::ContextHandle::set_datagram_queue)).
    pub const DATAGRAM: Interest = Interest(16);

    /// The bits, as the C and binding layers pass them.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// From bits; unknown bits are dropped.
    pub const fn from_bits(bits: u8) -> Interest {
        Interest(bits & 31)
    }

    /// True when every condition of `other` is in `self`.
    pub const fn contains(self, other: Interest) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when `self` and `other` share a condition.
    pub const fn intersects(self, other: Interest) -> bool {
        self.0 & other.0 != 0
    }

    /// True for the empty set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

impl BitOrAssign for Interest {
    fn bitor_assign(&mut self, rhs: Interest) {
        self.0 |= rhs.0;
    }
}

/// Current readiness of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read would not block (data, end of stream, or an error).
    pub readable: bool,
    /// A write would not block: the connection is established and has room
    /// for at least the low-water mark, or an error waits to be reported.
    pub writable: bool,
    /// The peer finished sending and everything was read.
    pub eof: bool,
    /// The connection failed (or the runtime stopped).
    pub error: bool,
    /// The handshake completed (stays true once set, even after a failure).
    pub connected: bool,
    /// The connection is over: it failed, or it finished its close.
    pub closed: bool,
    /// Our write half is done and acknowledged: the peer has every byte we
    /// wrote, and our FIN.
    pub finished: bool,
}

impl Readiness {
    /// The conditions that hold, as an [`Interest`] set.
    pub fn as_interest(&self) -> Interest {
        let mut i = Interest::NONE;
        if self.readable {
            i |= Interest::READABLE;
        }
        if self.writable {
            i |= Interest::WRITABLE;
        }
        if self.closed || self.error {
            i |= Interest::CLOSED;
        }
        i
    }

    /// True when a condition of `interest` holds.
    pub fn matches(&self, interest: Interest) -> bool {
        self.as_interest().intersects(interest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_sets() {
        let rw = Interest::READABLE | Interest::WRITABLE;
        assert!(rw.contains(Interest::READABLE));
        assert!(!rw.contains(Interest::CLOSED));
        assert!(rw.intersects(Interest::WRITABLE | Interest::CLOSED));
        assert_eq!(Interest::from_bits(0xff).bits(), 31);
        assert!(Interest::NONE.is_empty());
    }

    #[test]
    fn readiness_matches_interest() {
        let r = Readiness {
            readable: true,
            ..Default::default()
        };
        assert!(r.matches(Interest::READABLE));
        assert!(!r.matches(Interest::WRITABLE | Interest::CLOSED));
        let failed = Readiness {
            error: true,
            ..Default::default()
        };
        assert!(failed.matches(Interest::CLOSED));
    }
}
