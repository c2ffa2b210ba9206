//! Sequence and acknowledgement numbers: 16-bit counters compared modulo 2^16.
//!
//! `a` is "before" `b` when the forward distance from `a` to `b` is less than
//! half the number space, the same serial-number arithmetic as RFC 1982.

use std::fmt;

/// A 16-bit wrapping sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u16);

impl Seq {
    /// The number `n` steps after this one (wrapping).
    #[inline]
    pub fn plus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_add(n))
    }

    /// The number `n` steps before this one (wrapping).
    #[inline]
    pub fn minus(self, n: u16) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }

    /// Forward distance from `earlier` to `self`, modulo 2^16.
    #[inline]
    pub fn distance_from(self, earlier: Seq) -> u16 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Signed distance `self - other` in (-32768, 32767].
    #[inline]
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i16 as i32
    }

    /// True when `self` comes strictly before `other`.
    #[inline]
    pub fn lt(self, other: Seq) -> bool {
        self.diff(other) < 0
    }

    /// True when `self` comes before or equals `other`.
    #[inline]
    pub fn le(self, other: Seq) -> bool {
        self.diff(other) <= 0
    }

    /// True when `self` comes strictly after `other`.
    #[inline]
    pub fn gt(self, other: Seq) -> bool {
        self.diff(other) > 0
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordering_across_the_wrap() {
        assert!(Seq(65535).lt(Seq(0)));
        assert!(Seq(65530).lt(Seq(3)));
        assert!(Seq(3).gt(Seq(65530)));
        assert_eq!(Seq(2).diff(Seq(65534)), 4);
        assert_eq!(Seq(65534).diff(Seq(2)), -4);
        assert_eq!(Seq(65535).plus(1), Seq(0));
        assert_eq!(Seq(0).minus(1), Seq(65535));
        assert_eq!(Seq(1).distance_from(Seq(65535)), 2);
        assert!(Seq(7).le(Seq(7)) && !Seq(7).lt(Seq(7)));
    }

    proptest! {
        #[test]
        fn add_then_diff_is_identity(a in any::<u16>(), n in 0u16..32767) {
            let s = Seq(a);
            prop_assert_eq!(s.plus(n).diff(s), n as i32);
            prop_assert_eq!(s.diff(s.plus(n)), -(n as i32));
            prop_assert!(s.le(s.plus(n)));
            prop_assert_eq!(s.plus(n).minus(n), s);
            prop_assert_eq!(s.plus(n).distance_from(s), n);
        }

        #[test]
        fn exactly_one_order_holds(a in any::<u16>(), b in any::<u16>()) {
            let (x, y) = (Seq(a), Seq(b));
            let d = b.wrapping_sub(a);
            prop_assume!(d != 32768);
            let n = [x.lt(y), x == y, x.gt(y)].iter().filter(|v| **v).count();
            prop_assert_eq!(n, 1);
        }
    }
}
