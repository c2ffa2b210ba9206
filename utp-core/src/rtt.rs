//! Round-trip time estimate and retransmission timeout, as BEP 29 gives them.
//!
//! First sample `s`: `rtt = s`, `rtt_var = s/2`. Later samples:
//!
//! ```text
//! delta    = rtt - s
//! rtt_var += (|delta| - rtt_var) / 4
//! rtt     += (s - rtt) / 8
//! rto      = max(rtt + 4 * rtt_var, min_rto)
//! ```
//!
//! Before any sample the timeout is the configured initial value. Exponential
//! back-off after a timeout is the connection's business, not this type's.
//! Integer arithmetic, truncating toward zero, like libutp.

/// Least margin of the timeout over the smoothed RTT (RFC 6298's clock
/// granularity G): on a path with steady delay the variance decays to
/// nearly zero, and a timeout right at the RTT fires on the slightest jitter.
pub const RTO_GRANULARITY_US: u64 = 50_000;

/// Smoothed RTT, its variance, and the retransmission timeout derived from them.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    /// Smoothed RTT (µs); `None` until the first sample.
    srtt_us: Option<u64>,
    /// Mean deviation estimate (µs).
    rttvar_us: u64,
    initial_rto_us: u64,
    min_rto_us: u64,
    /// Smallest sample seen so far (µs).
    min_sample_us: Option<u64>,
    /// Most recent sample (µs).
    latest_us: Option<u64>,
}

impl RttEstimator {
    /// Before any sample the timeout is `initial_rto_us`; it never drops below `min_rto_us`.
    pub fn new(initial_rto_us: u64, min_rto_us: u64) -> Self {
        RttEstimator {
            srtt_us: None,
            rttvar_us: 0,
            initial_rto_us,
            min_rto_us,
            min_sample_us: None,
            latest_us: None,
        }
    }

    /// Feed a sample from a packet that was sent exactly once (Karn's rule is the caller's job).
    pub fn on_sample(&mut self, sample_us: u64) {
        // Keep the arithmetic in i64; clamp absurd samples so nothing overflows.
        let s = sample_us.min(i64::MAX as u64 / 16);
        match self.srtt_us {
            None => {
                self.srtt_us = Some(s);
                self.rttvar_us = s / 2;
            }
            Some(rtt) => {
                let (rtt, s_i, var) = (rtt as i64, s as i64, self.rttvar_us as i64);
                let delta = rtt - s_i;
                let var = var + (delta.abs() - var) / 4;
                let rtt = rtt + (s_i - rtt) / 8;
                self.rttvar_us = var.max(0) as u64;
                self.srtt_us = Some(rtt.max(0) as u64);
            }
        }
        self.min_sample_us = Some(self.min_sample_us.map_or(s, |m| m.min(s)));
        self.latest_us = Some(s);
    }

    /// Smoothed RTT, if any sample arrived.
    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us
    }

    /// RTT variance estimate.
    pub fn rttvar_us(&self) -> u64 {
        self.rttvar_us
    }

    /// Current retransmission timeout (before back-off).
    pub fn rto_us(&self) -> u64 {
        match self.srtt_us {
            None => self.initial_rto_us.max(self.min_rto_us),
            Some(rtt) => rtt
                .saturating_add(self.rttvar_us.saturating_mul(4).max(RTO_GRANULARITY_US))
                .max(self.min_rto_us),
        }
    }

    /// Smallest sample seen over the connection's life, if any.
    pub fn min_rtt_us(&self) -> Option<u64> {
        self.min_sample_us
    }

    /// The most recent sample, if any.
    pub fn latest_us(&self) -> Option<u64> {
        self.latest_us
    }

    /// The floor applied to [`rto_us`](Self::rto_us).
    pub fn min_rto_us(&self) -> u64 {
        self.min_rto_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    #[test]
    fn rtt_initial_rto_before_samples() {
        let r = RttEstimator::new(1000 * MS, 500 * MS);
        assert_eq!(r.srtt_us(), None);
        assert_eq!(r.rttvar_us(), 0);
        assert_eq!(r.rto_us(), 1000 * MS);
        // The initial value is still subject to the floor.
        let r = RttEstimator::new(100 * MS, 500 * MS);
        assert_eq!(r.rto_us(), 500 * MS);
    }

    #[test]
    fn rtt_first_sample_sets_rtt_and_half_var() {
        let mut r = RttEstimator::new(1000 * MS, 10 * MS);
        r.on_sample(200 * MS);
        assert_eq!(r.srtt_us(), Some(200 * MS));
        assert_eq!(r.rttvar_us(), 100 * MS);
        assert_eq!(r.rto_us(), 600 * MS);
        assert_eq!(r.min_rtt_us(), Some(200 * MS));
    }

    #[test]
    fn rtt_second_sample_follows_bep29_formula() {
        let mut r = RttEstimator::new(1000 * MS, 10 * MS);
        r.on_sample(100_000);
        r.on_sample(180_000);
        // delta = 100000 - 180000 = -80000; var = 50000 + (80000 - 50000)/4 = 57500
        // rtt = 100000 + (180000 - 100000)/8 = 110000
        assert_eq!(r.rttvar_us(), 57_500);
        assert_eq!(r.srtt_us(), Some(110_000));
        assert_eq!(r.rto_us(), 110_000 + 4 * 57_500);
        // A smaller sample: delta = 110000 - 50000 = 60000;
        // var = 57500 + (60000 - 57500)/4 = 58125; rtt = 110000 + (50000 - 110000)/8 = 102500
        r.on_sample(50_000);
        assert_eq!(r.rttvar_us(), 58_125);
        assert_eq!(r.srtt_us(), Some(102_500));
        assert_eq!(r.min_rtt_us(), Some(50_000));
        assert_eq!(r.latest_us(), Some(50_000));
    }

    #[test]
    fn rtt_converges_and_rto_respects_min() {
        let mut r = RttEstimator::new(1000 * MS, 500 * MS);
        for _ in 0..200 {
            r.on_sample(20 * MS);
        }
        let srtt = r.srtt_us().unwrap();
        assert!(srtt.abs_diff(20 * MS) <= 8, "srtt {srtt}");
        assert!(r.rttvar_us() < MS, "var {}", r.rttvar_us());
        // rtt + 4 var ≈ 20 ms, far below the floor.
        assert_eq!(r.rto_us(), 500 * MS);
    }

    #[test]
    fn rtt_rto_above_min_on_slow_path() {
        let mut r = RttEstimator::new(1000 * MS, 500 * MS);
        r.on_sample(400 * MS);
        // 400 + 4 * 200 = 1200 ms
        assert_eq!(r.rto_us(), 1200 * MS);
    }

    #[test]
    fn rtt_variance_grows_with_jitter() {
        let mut steady = RttEstimator::new(1000 * MS, 0);
        let mut jittery = RttEstimator::new(1000 * MS, 0);
        for i in 0..100 {
            steady.on_sample(50 * MS);
            jittery.on_sample(if i % 2 == 0 { 20 * MS } else { 80 * MS });
        }
        assert!(jittery.rttvar_us() > steady.rttvar_us() + 10 * MS);
        assert!(jittery.rto_us() > steady.rto_us());
    }

    #[test]
    fn rtt_huge_sample_does_not_overflow() {
        let mut r = RttEstimator::new(1000 * MS, 500 * MS);
        r.on_sample(u64::MAX);
        r.on_sample(0);
        r.on_sample(u64::MAX);
        assert!(r.rto_us() >= 500 * MS);
    }
}
