//! One-way delay bookkeeping for LEDBAT: base delay (sliding minimum) and the
//! current filtered delay.
//!
//! Samples are differences of two unrelated 32-bit microsecond clocks, so
//! their absolute value means nothing and they wrap; only differences between
//! samples matter. All comparisons are therefore wrapping: `a` is smaller
//! than `b` when `a.wrapping_sub(b) as i32 < 0` (valid while samples stay
//! within ±35 minutes of each other, which they do).
//!
//! * **Base delay**: the minimum over a sliding window of about two minutes.
//!   The window is a ring of [`BASE_BUCKETS`] buckets of [`BASE_BUCKET_US`]
//!   (12 × 10 s) each holding the minimum of the samples that arrived during
//!   its slot; the base is the minimum over the ring. A sample is therefore
//!   forgotten between 110 and 120 s after it arrived. (libutp uses 13
//!   one-minute buckets, i.e. 12–13 minutes; BEP 29/DESIGN.md ask for about
//!   two minutes, and 10 s slots keep the expiry close to that figure.)
//!   Buckets rotate by the `now_us` given with each sample, so a long silence
//!   expires everything at once.
//! * **Current delay**: the minimum of the last [`CURRENT_SAMPLES`] samples
//!   minus the base, never negative.

/// Number of base-delay buckets.
pub const BASE_BUCKETS: usize = 12;
const _: () = assert!(BASE_BUCKETS <= 32, "DelayHistory::filled is a u32 bit set");
/// Length of one base-delay bucket (µs).
pub const BASE_BUCKET_US: u64 = 10_000_000;
/// Span of the base-delay history (µs): about two minutes.
pub const BASE_HISTORY_US: u64 = BASE_BUCKETS as u64 * BASE_BUCKET_US;
/// Number of recent samples the current delay is filtered over.
pub const CURRENT_SAMPLES: usize = 3;

/// `a < b` on the wrapping u32 clock.
#[inline]
fn wrapping_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// The smaller of `a` and `b` on the wrapping u32 clock.
#[inline]
fn wrapping_min(a: u32, b: u32) -> u32 {
    if wrapping_lt(a, b) {
        a
    } else {
        b
    }
}

/// Delay samples of one direction.
#[derive(Clone, Debug)]
pub struct DelayHistory {
    /// Per-slot minima, valid where `filled` has the slot's bit. (Plain
    /// integers rather than `Option`s: every byte is initialised, so
    /// Valgrind has nothing to report on the optimised minimum.)
    buckets: [u32; BASE_BUCKETS],
    /// Bit `i` set: slot `i` has at least one sample.
    filled: u32,
    /// Index of the slot now being filled.
    cur_bucket: usize,
    /// Start time of the current slot (µs, engine clock).
    bucket_start_us: u64,
    /// Minimum over `buckets` (wrapping), `None` before the first sample.
    base: Option<u32>,
    /// The last few raw samples, ring buffer.
    recent: [u32; CURRENT_SAMPLES],
    recent_len: usize,
    recent_next: usize,
    /// Most recent raw sample.
    last: Option<u32>,
}

impl DelayHistory {
    /// An empty history: no base and no current delay until the first sample.
    pub fn new() -> Self {
        DelayHistory {
            buckets: [0; BASE_BUCKETS],
            filled: 0,
            cur_bucket: 0,
            bucket_start_us: 0,
            base: None,
            recent: [0; CURRENT_SAMPLES],
            recent_len: 0,
            recent_next: 0,
            last: None,
        }
    }

    /// Add a raw one-way delay sample (µs, wrapping u32 clock difference) taken at `now_us`.
    pub fn add_sample(&mut self, sample_us: u32, now_us: u64) {
        if self.base.is_none() {
            self.bucket_start_us = now_us;
            self.cur_bucket = 0;
            self.filled = 0;
        } else {
            self.rotate(now_us);
        }

        let (i, bit) = (self.cur_bucket, 1u32 << self.cur_bucket);
        self.buckets[i] = if self.filled & bit != 0 {
            wrapping_min(self.buckets[i], sample_us)
        } else {
            sample_us
        };
        self.filled |= bit;
        self.recompute_base();

        self.recent[self.recent_next] = sample_us;
        self.recent_next = (self.recent_next + 1) % CURRENT_SAMPLES;
        self.recent_len = (self.recent_len + 1).min(CURRENT_SAMPLES);
        self.last = Some(sample_us);
    }

    /// Sample minus base delay, filtered over the last few samples; None until there are samples.
    pub fn queuing_delay_us(&self) -> Option<u32> {
        let base = self.base?;
        let current = self.recent[..self.recent_len]
            .iter()
            .copied()
            .reduce(wrapping_min)?;
        let d = current.wrapping_sub(base);
        Some(if (d as i32) < 0 { 0 } else { d })
    }

    /// The base delay (minimum over about two minutes).
    pub fn base_delay_us(&self) -> Option<u32> {
        self.base
    }

    /// Shift the base delay up by `delta_us` (clock-drift compensation).
    ///
    /// Every bucket moves, so the shift survives bucket rotation (as in
    /// libutp). Later samples below the shifted base pull it down again.
    pub fn shift_base(&mut self, delta_us: u32) {
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if self.filled & (1 << i) != 0 {
                *b = b.wrapping_add(delta_us);
            }
        }
        if let Some(base) = self.base.as_mut() {
            *base = base.wrapping_add(delta_us);
        }
    }

    /// The most recent raw sample, if any.
    pub fn last_sample_us(&self) -> Option<u32> {
        self.last
    }

    /// Forget everything (e.g. when the peer's clock is known to have restarted).
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Advance the bucket ring to the slot containing `now_us`, emptying the
    /// slots that are skipped or reused.
    fn rotate(&mut self, now_us: u64) {
        let elapsed = now_us.saturating_sub(self.bucket_start_us);
        let steps = elapsed / BASE_BUCKET_US;
        if steps == 0 {
            return;
        }
        let clear = steps.min(BASE_BUCKETS as u64) as usize;
        for _ in 0..clear {
            self.cur_bucket = (self.cur_bucket + 1) % BASE_BUCKETS;
            self.filled &= !(1u32 << self.cur_bucket);
        }
        self.bucket_start_us += steps * BASE_BUCKET_US;
    }

    fn recompute_base(&mut self) {
        let filled = self.filled;
        self.base = (0..BASE_BUCKETS)
            .filter(|i| filled & (1 << i) != 0)
            .map(|i| self.buckets[i])
            .reduce(wrapping_min);
    }
}

impl Default for DelayHistory {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    #[test]
    fn delay_empty_history() {
        let h = DelayHistory::new();
        assert_eq!(h.base_delay_us(), None);
        assert_eq!(h.queuing_delay_us(), None);
        assert_eq!(h.last_sample_us(), None);
    }

    #[test]
    fn delay_first_sample_is_base_and_zero_queuing() {
        let mut h = DelayHistory::new();
        h.add_sample(5_000_000, 0);
        assert_eq!(h.base_delay_us(), Some(5_000_000));
        assert_eq!(h.queuing_delay_us(), Some(0));
    }

    #[test]
    fn delay_queuing_is_min_of_last_three_minus_base() {
        let mut h = DelayHistory::new();
        h.add_sample(1000, 0);
        h.add_sample(1500, 1);
        h.add_sample(1300, 2);
        h.add_sample(1200, 3);
        // last three: 1500, 1300, 1200 → min 1200 - base 1000
        assert_eq!(h.queuing_delay_us(), Some(200));
        h.add_sample(9000, 4);
        h.add_sample(9000, 5);
        // last three: 1200, 9000, 9000 → 200 (a spike is filtered out)
        assert_eq!(h.queuing_delay_us(), Some(200));
        h.add_sample(9000, 6);
        assert_eq!(h.queuing_delay_us(), Some(8000));
        assert_eq!(h.base_delay_us(), Some(1000));
    }

    #[test]
    fn delay_lower_sample_lowers_base() {
        let mut h = DelayHistory::new();
        h.add_sample(50_000, 0);
        h.add_sample(60_000, SEC);
        h.add_sample(40_000, 2 * SEC);
        assert_eq!(h.base_delay_us(), Some(40_000));
        assert_eq!(h.queuing_delay_us(), Some(0));
    }

    #[test]
    fn delay_handles_u32_clock_wrap() {
        let mut h = DelayHistory::new();
        let base = u32::MAX - 1000;
        h.add_sample(base, 0);
        // The clock wraps: 500 is 1501 µs after `base`.
        h.add_sample(500, SEC);
        h.add_sample(600, SEC);
        h.add_sample(700, SEC);
        assert_eq!(h.base_delay_us(), Some(base));
        assert_eq!(h.queuing_delay_us(), Some(1501));
        // A sample just before the wrap is smaller than the wrapped ones.
        h.add_sample(u32::MAX - 2000, 2 * SEC);
        assert_eq!(h.base_delay_us(), Some(u32::MAX - 2000));
        assert_eq!(h.queuing_delay_us(), Some(0));
        // And the other way round: base after the wrap, a pre-wrap sample is smaller.
        let mut h = DelayHistory::new();
        h.add_sample(10, 0);
        h.add_sample(u32::MAX - 9, SEC); // 20 µs earlier than 10
        assert_eq!(h.base_delay_us(), Some(u32::MAX - 9));
    }

    #[test]
    fn delay_base_expires_after_about_two_minutes() {
        let mut h = DelayHistory::new();
        h.add_sample(10_000, 0);
        // One sample per second at a higher delay.
        let mut t = SEC;
        while t < 110 * SEC {
            h.add_sample(30_000, t);
            assert_eq!(h.base_delay_us(), Some(10_000), "forgot too early at {t}");
            t += SEC;
        }
        while t <= 121 * SEC {
            h.add_sample(30_000, t);
            t += SEC;
        }
        assert_eq!(h.base_delay_us(), Some(30_000));
        assert_eq!(h.queuing_delay_us(), Some(0));
    }

    #[test]
    fn delay_base_kept_for_at_least_110_seconds_exactly() {
        let mut h = DelayHistory::new();
        h.add_sample(10_000, 0);
        h.add_sample(30_000, BASE_HISTORY_US - BASE_BUCKET_US - 1);
        assert_eq!(h.base_delay_us(), Some(10_000));
        h.add_sample(30_000, BASE_HISTORY_US);
        assert_eq!(h.base_delay_us(), Some(30_000));
    }

    #[test]
    fn delay_long_silence_expires_everything() {
        let mut h = DelayHistory::new();
        h.add_sample(10_000, 0);
        h.add_sample(12_000, 50 * SEC);
        h.add_sample(40_000, 3600 * SEC);
        assert_eq!(h.base_delay_us(), Some(40_000));
        assert_eq!(h.queuing_delay_us(), Some(0));
    }

    #[test]
    fn delay_shift_base_moves_base_and_survives_rotation() {
        let mut h = DelayHistory::new();
        h.add_sample(10_000, 0);
        h.add_sample(11_000, 30 * SEC);
        h.add_sample(12_000, 60 * SEC);
        h.add_sample(13_000, 60 * SEC);
        assert_eq!(h.queuing_delay_us(), Some(1000));
        h.shift_base(500);
        assert_eq!(h.base_delay_us(), Some(10_500));
        assert_eq!(h.queuing_delay_us(), Some(500));
        // Shift past the current samples: queuing delay clamps at zero.
        h.shift_base(5_000);
        assert_eq!(h.queuing_delay_us(), Some(0));
        // After the first bucket expires the base is the (shifted) 30 s bucket.
        let mut h = DelayHistory::new();
        h.add_sample(10_000, 0);
        h.add_sample(11_000, 30 * SEC);
        h.shift_base(500);
        h.add_sample(20_000, 125 * SEC);
        assert_eq!(h.base_delay_us(), Some(11_500));
    }

    #[test]
    fn delay_shift_base_wraps() {
        let mut h = DelayHistory::new();
        h.add_sample(u32::MAX - 10, 0);
        h.shift_base(20);
        assert_eq!(h.base_delay_us(), Some(9));
        h.add_sample(100, SEC);
        h.add_sample(100, SEC);
        h.add_sample(100, SEC);
        assert_eq!(h.queuing_delay_us(), Some(91));
    }

    #[test]
    fn delay_clock_going_backwards_is_harmless() {
        let mut h = DelayHistory::new();
        h.add_sample(1000, 100 * SEC);
        h.add_sample(900, 50 * SEC);
        assert_eq!(h.base_delay_us(), Some(900));
    }
}
