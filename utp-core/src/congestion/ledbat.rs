//! LEDBAT (BEP 29 / RFC 6817), as libutp runs it, with a few deliberate
//! departures documented on the constants below.
//!
//! Per ACK acknowledging `acked` new bytes, with `delay` the filtered queuing
//! delay (capped by the smallest RTT the ACK measured, like libutp's
//! `min(our_current, min_rtt)`):
//!
//! * **Slow start** (initially on, `ssthresh = max_window`): while
//!   `delay < 0.9·target` (or unknown), `cwnd += min(acked, cwnd)`: the
//!   window doubles per RTT. Once `delay ≥ 0.9·target`, slow start ends with
//!   `ssthresh = cwnd`; it also ends when `cwnd` reaches `ssthresh`.
//! * **Congestion avoidance**:
//!   `off_target = clamp((target − delay)/target, −1, 1)`,
//!   growth `gain = GAIN · mss · min(acked, cwnd) / cwnd` when at or below
//!   the target (one `mss` per RTT, not scaled by `off_target` as RFC 6817
//!   does: LEDBAT++), and a decrease `DECREASE_GAIN · off_target · acked`
//!   above it, proportional to the window: at twice the target or more the
//!   window halves per RTT (RFC 6817 §2.4.2's bound), so a queue left by
//!   slow start drains in a few RTTs. The queue swings a little around the
//!   target, and each time above it the bigger windows shrink more: flows
//!   sharing a bottleneck converge to equal shares. With an unknown delay,
//!   `off_target = 1`.
//! * Growth of either kind happens only when `window_limited`; decreases
//!   always apply.
//! * **Loss** (`on_loss`): `cwnd = max(cwnd/2, min)`, `ssthresh = cwnd`,
//!   leave slow start; at most once per smoothed RTT (100 ms if unknown).
//! * **Timeout**: `ssthresh = max(cwnd/2, 2·mss)`, `cwnd = mss`, re-enter
//!   slow start.
//! * **Periodic slowdown** (LEDBAT++): two RTTs after slow start, and then
//!   every nine times the previous slowdown's duration, the window is held at
//!   two packets for two RTTs and slow-starts back, so every flow measures
//!   the true base delay (otherwise a latecomer starves earlier flows).
//! * The window always stays within `[mss, max_window]`.

use super::{within_loss_interval, AckSample, CongestionConfig, CongestionControl};

/// Window growth per RTT while the queuing delay is below the target, in
/// MSS. RFC 6817 scales it by how far below the target the delay is; like
/// LEDBAT++ we do not (see `on_ack`), so that flows sharing a queue even out.
///
/// libutp grows by a fixed `MAX_CWND_INCREASE_PER_RTT` = 3000 bytes per RTT
/// (about two packets). We scale by the MSS instead so the ramp follows the
/// packet size; one MSS per RTT matches TCP's additive increase, and the
/// slow-start phase (which libutp also has) does the fast ramp-up to link
/// speed. At 10–20 Mbit/s and 50 ms RTT the bandwidth-delay product is
/// 45–90 packets, which slow start reaches in 5–6 RTTs.
pub const GAIN: f64 = 1.0;

/// Fraction of the window removed per RTT when the delay is twice the
/// target or more (proportionally less closer to the target): RFC 6817 allows
/// up to halving per RTT.
pub const DECREASE_GAIN: f64 = 0.5;

/// Slow start ends once the queuing delay reaches this fraction of the target
/// (libutp's value).
pub const SLOW_START_EXIT_FRACTION: f64 = 0.9;

/// The minimum window, in MSS.
///
/// libutp lets the window shrink to 10 bytes, which with Nagle-sized packets
/// stalls the connection until a timeout. One full packet is the smallest
/// window that always lets the oldest packet go out, and it is also the
/// window after a timeout, so loss and delay never push below what a
/// timeout gives.
pub const MIN_WINDOW_MSS: usize = 1;

/// The initial window, in MSS.
pub const INITIAL_WINDOW_MSS: usize = 2;

/// The floor of `ssthresh` after a timeout, in MSS (as TCP, RFC 5681).
pub const MIN_SSTHRESH_MSS: usize = 2;

/// LEDBAT congestion controller.
#[derive(Clone, Debug)]
pub struct Ledbat {
    mss: usize,
    max_window: usize,
    target_us: u32,
    /// Congestion window, bytes; fractional so small gains accumulate.
    cwnd: f64,
    ssthresh: usize,
    slow_start: bool,
    /// When the window was last cut for a loss or timeout.
    last_cut_us: Option<u64>,
    slowdown: Slowdown,
}

/// LEDBAT++'s periodic slowdown (draft-irtf-iccrg-ledbat-plus-plus §4.4).
///
/// A flow that starts while another already keeps a queue measures that
/// queue as part of its base delay, aims its target on top of it, and starves
/// the first flow (the "latecomer" problem). So now and then each flow holds
/// its window at two packets for two RTTs: the queue drains, every flow sees
/// the true base delay, and then it slow-starts back to where it was. The
/// first slowdown comes two RTTs after the initial slow start; each next one
/// waits nine times as long as the last took, so it costs under a tenth of
/// the link.
#[derive(Clone, Debug, Default)]
struct Slowdown {
    /// When the next slowdown starts.
    next_us: Option<u64>,
    /// Holding the window low until then.
    frozen_until_us: Option<u64>,
    /// Start of the slowdown in progress (frozen or ramping back up).
    started_us: Option<u64>,
    /// Window to ramp back to.
    resume_window: usize,
    /// The first slow start ended (slowdowns are scheduled from then on).
    armed: bool,
}

/// Windows held during a slowdown, in MSS.
pub const SLOWDOWN_WINDOW_MSS: usize = 2;
/// How long a slowdown holds the window low, in RTTs.
pub const SLOWDOWN_RTTS: u64 = 2;
/// The next slowdown comes this many times the last one's duration later.
pub const SLOWDOWN_INTERVAL_FACTOR: u64 = 9;

impl Ledbat {
    /// A controller in slow start with a window of [`INITIAL_WINDOW_MSS`]
    /// packets and `ssthresh` at the (clamped) `max_window`; a `target_delay_us`
    /// of 0 means [`DEFAULT_TARGET_DELAY_US`](super::DEFAULT_TARGET_DELAY_US).
    pub fn new(cfg: CongestionConfig) -> Self {
        let mss = cfg.effective_mss();
        let max_window = cfg.effective_max_window();
        let mut l = Ledbat {
            mss,
            max_window,
            target_us: cfg.effective_target_us(),
            cwnd: (INITIAL_WINDOW_MSS * mss) as f64,
            ssthresh: max_window,
            slow_start: true,
            last_cut_us: None,
            slowdown: Slowdown::default(),
        };
        l.clamp();
        l
    }

    /// The smallest window this controller will use (bytes).
    pub fn min_window(&self) -> usize {
        MIN_WINDOW_MSS * self.mss
    }

    /// The target queuing delay in use (µs).
    pub fn target_delay_us(&self) -> u32 {
        self.target_us
    }

    /// Slow start just ended: schedule the next slowdown.
    fn left_slow_start(&mut self, now_us: u64, rtt_us: u64) {
        let sd = &mut self.slowdown;
        if let Some(started) = sd.started_us.take() {
            let took = now_us.saturating_sub(started).max(rtt_us);
            sd.next_us = Some(now_us + SLOWDOWN_INTERVAL_FACTOR * took);
        } else if !sd.armed {
            sd.next_us = Some(now_us + SLOWDOWN_RTTS * rtt_us);
        }
        sd.armed = true;
    }

    /// Run the slowdown clock; true while the window is held low.
    ///
    /// The hold lasts the full two RTTs: a flow cannot tell from its own
    /// delay estimate that the queue drained, since a latecomer's estimate
    /// is relative to the inflated base it is trying to correct.
    fn slowdown_step(&mut self, now_us: u64, rtt_us: u64) -> bool {
        if let Some(until) = self.slowdown.frozen_until_us {
            if now_us < until {
                return true;
            }
            // Ramp back up by slow start to the window we had.
            self.slowdown.frozen_until_us = None;
            self.ssthresh = self.slowdown.resume_window.max(self.min_window());
            self.slow_start = true;
            return false;
        }
        if self.slowdown.next_us.is_some_and(|t| now_us >= t) && !self.slow_start {
            self.slowdown.next_us = None;
            self.slowdown.started_us = Some(now_us);
            self.slowdown.resume_window = self.window();
            self.slowdown.frozen_until_us = Some(now_us + SLOWDOWN_RTTS * rtt_us);
            self.cwnd = (SLOWDOWN_WINDOW_MSS * self.mss) as f64;
            return true;
        }
        false
    }

    fn clamp(&mut self) {
        let lo = self.min_window() as f64;
        let hi = self.max_window as f64;
        self.cwnd = self.cwnd.clamp(lo, hi);
        self.ssthresh = self.ssthresh.min(self.max_window);
    }
}

impl CongestionControl for Ledbat {
    fn on_ack(&mut self, s: &AckSample) {
        if s.bytes_acked == 0 {
            return;
        }
        let target = self.target_us as f64;
        let delay = s.queuing_delay_us.map(|d| {
            let d = d as u64;
            s.min_rtt_us.map_or(d, |rtt| d.min(rtt)) as f64
        });
        // One ACK never counts for more than a whole window.
        let acked = (s.bytes_acked as f64).min(self.cwnd);
        let rtt_us = s.srtt_us.or(s.min_rtt_us).unwrap_or(100_000).max(1_000);
        if self.slowdown_step(s.now_us, rtt_us) {
            self.clamp();
            return;
        }

        if self.slow_start && delay.is_some_and(|d| d >= SLOW_START_EXIT_FRACTION * target) {
            self.slow_start = false;
            self.ssthresh = self.window();
            self.left_slow_start(s.now_us, rtt_us);
        }

        if self.slow_start {
            if s.window_limited {
                self.cwnd += acked;
                if self.cwnd >= self.ssthresh as f64 {
                    self.cwnd = self.ssthresh as f64;
                    self.slow_start = false;
                    self.left_slow_start(s.now_us, rtt_us);
                }
            }
        } else {
            let off_target = delay.map_or(1.0, |d| ((target - d) / target).clamp(-1.0, 1.0));
            let gain = if off_target >= 0.0 {
                // GAIN packets per RTT below the target, however close to it
                // (LEDBAT++): growth scaled by the distance to the target
                // (RFC 6817) approaches it from below and never triggers the
                // decrease, so flows that share a queue keep whatever
                // split they started with. Crossing the target a little
                // every cycle lets the proportional decrease even them out.
                if s.window_limited {
                    GAIN * self.mss as f64 * acked / self.cwnd
                } else {
                    0.0
                }
            } else {
                // Shrinking is proportional to the window, so a queue built
                // by slow start drains within a few RTTs instead of the
                // minutes one packet per RTT would take on a fast link; at
                // twice the target or more the window halves per RTT.
                DECREASE_GAIN * off_target * acked
            };
            self.cwnd += gain;
        }
        self.clamp();
    }

    fn on_loss(&mut self, now_us: u64, srtt_us: Option<u64>) {
        if within_loss_interval(self.last_cut_us, now_us, srtt_us) {
            return;
        }
        self.last_cut_us = Some(now_us);
        self.cwnd /= 2.0;
        if self.slow_start {
            self.left_slow_start(now_us, srtt_us.unwrap_or(100_000));
        }
        self.slow_start = false;
        self.slowdown.frozen_until_us = None;
        self.clamp();
        self.ssthresh = self.window();
    }

    fn on_timeout(&mut self, now_us: u64) {
        self.last_cut_us = Some(now_us);
        self.ssthresh = (self.window() / 2).max(MIN_SSTHRESH_MSS * self.mss);
        self.cwnd = self.min_window() as f64;
        self.slow_start = true;
        self.slowdown.frozen_until_us = None;
        self.clamp();
    }

    fn window(&self) -> usize {
        self.cwnd as usize
    }

    fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    fn name(&self) -> &'static str {
        "ledbat"
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn set_max_window(&mut self, max_window: usize) {
        let old = self.max_window;
        self.max_window = max_window.max(self.min_window());
        if self.ssthresh >= old {
            // Still the initial "no threshold" value: follow the buffer.
            self.ssthresh = self.max_window;
        }
        self.clamp();
    }

    fn set_target_delay_us(&mut self, target_delay_us: u32) {
        self.target_us = CongestionConfig {
            target_delay_us,
            ..CongestionConfig::default()
        }
        .effective_target_us();
    }

    fn on_base_delay_raised(&mut self, rise_us: u32) {
        // A rise past the target means the delay we backed off from was
        // the path, not a queue (a route change, or a queue that stood for
        // the whole history): slow-start back up; the delay ends it.
        if rise_us >= self.target_us && !self.slow_start {
            self.slow_start = true;
            self.ssthresh = self.max_window;
            self.slowdown.frozen_until_us = None;
        }
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
        self.max_window = self.max_window.max(self.min_window());
        self.clamp();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1400;
    const MS: u64 = 1000;
    const RTT: u64 = 50 * MS;

    fn cfg() -> CongestionConfig {
        CongestionConfig {
            mss: MSS,
            max_window: 1 << 20,
            target_delay_us: 100_000,
        }
    }

    fn ack(bytes: usize, delay_us: Option<u32>, window_limited: bool, now_us: u64) -> AckSample {
        AckSample {
            now_us,
            bytes_acked: bytes,
            bytes_in_flight: bytes,
            queuing_delay_us: delay_us,
            min_rtt_us: Some(RTT + delay_us.unwrap_or(0) as u64),
            srtt_us: Some(RTT),
            window_limited,
        }
    }

    /// Acknowledge one full window, one MSS per ACK.
    fn ack_one_window(c: &mut Ledbat, delay_us: Option<u32>, window_limited: bool, now: u64) {
        let packets = c.window().div_ceil(MSS);
        for _ in 0..packets {
            c.on_ack(&ack(MSS, delay_us, window_limited, now));
        }
    }

    /// A controller out of slow start with window `w`.
    fn in_avoidance(w: usize) -> Ledbat {
        let mut c = Ledbat::new(cfg());
        c.cwnd = w as f64;
        c.slow_start = false;
        c.ssthresh = w;
        c
    }

    #[test]
    fn ledbat_initial_state() {
        let c = Ledbat::new(cfg());
        assert_eq!(c.window(), 2 * MSS);
        assert!(c.in_slow_start());
        assert_eq!(c.ssthresh(), 1 << 20);
        assert_eq!(c.name(), "ledbat");
        assert_eq!(c.min_window(), MSS);
    }

    #[test]
    fn ledbat_zero_target_means_100ms() {
        let c = Ledbat::new(CongestionConfig {
            target_delay_us: 0,
            ..cfg()
        });
        assert_eq!(c.target_delay_us(), 100_000);
    }

    #[test]
    fn ledbat_slow_start_doubles_per_rtt_at_low_delay() {
        let mut c = Ledbat::new(cfg());
        let mut now = 0;
        for _ in 0..4 {
            let before = c.window();
            ack_one_window(&mut c, Some(5_000), true, now);
            assert_eq!(c.window(), 2 * before);
            assert!(c.in_slow_start());
            now += RTT;
        }
        assert_eq!(c.window(), 32 * MSS);
    }

    #[test]
    fn ledbat_slow_start_with_unknown_delay() {
        let mut c = Ledbat::new(cfg());
        ack_one_window(&mut c, None, true, 0);
        assert_eq!(c.window(), 4 * MSS);
        assert!(c.in_slow_start());
    }

    #[test]
    fn ledbat_leaves_slow_start_near_target() {
        let mut c = Ledbat::new(cfg());
        for i in 0..3 {
            ack_one_window(&mut c, Some(10_000), true, i * RTT);
        }
        assert!(c.in_slow_start());
        let w = c.window();
        c.on_ack(&ack(MSS, Some(90_000), true, 3 * RTT));
        assert!(!c.in_slow_start());
        assert_eq!(c.ssthresh(), w);
        // Now growth is LEDBAT's: small, not a whole MSS per ACK.
        assert!(c.window() < w + MSS / 4, "{} vs {}", c.window(), w);
        // 89 ms would not have ended it.
        let mut c = Ledbat::new(cfg());
        c.on_ack(&ack(MSS, Some(89_000), true, 0));
        assert!(c.in_slow_start());
    }

    #[test]
    fn ledbat_slow_start_ends_at_ssthresh() {
        let mut c = Ledbat::new(CongestionConfig {
            max_window: 10 * MSS,
            ..cfg()
        });
        let mut i = 0;
        while c.in_slow_start() && i < 10 {
            ack_one_window(&mut c, Some(0), true, i * RTT);
            i += 1;
        }
        assert_eq!(c.window(), 10 * MSS);
        assert!(!c.in_slow_start());
    }

    #[test]
    fn ledbat_periodic_slowdown_holds_two_packets_then_ramps_back() {
        let mut c = Ledbat::new(cfg());
        // Slow start until the delay reaches the target.
        let mut now = 0;
        for _ in 0..5 {
            ack_one_window(&mut c, Some(0), true, now);
            now += RTT;
        }
        ack_one_window(&mut c, Some(95_000), true, now);
        assert!(!c.in_slow_start());
        let before = c.window();
        assert!(before >= 32 * MSS, "{before}");
        // Two RTTs later the first slowdown holds the window at two packets.
        now += 2 * RTT;
        c.on_ack(&ack(MSS, Some(95_000), true, now));
        assert_eq!(c.window(), 2 * MSS);
        let started = now;
        now += RTT;
        c.on_ack(&ack(MSS, Some(0), true, now));
        assert_eq!(c.window(), 2 * MSS, "held for two RTTs");
        // Then it slow-starts back to the window it had.
        now = started + 2 * RTT;
        while c.window() < before && now < started + 40 * RTT {
            ack_one_window(&mut c, Some(0), true, now);
            now += RTT;
        }
        assert!(c.window() >= before, "{} < {before}", c.window());
        let took = now - started;
        // The next slowdown waits about nine times as long as this one took.
        let mut t = now;
        while t < now + 6 * took {
            ack_one_window(&mut c, Some(50_000), true, t);
            assert!(c.window() > 2 * MSS, "slowdown too soon");
            t += RTT;
        }
        while t < now + 11 * took && c.window() > 2 * MSS {
            c.on_ack(&ack(MSS, Some(50_000), true, t));
            t += RTT;
        }
        assert_eq!(c.window(), 2 * MSS, "second slowdown missing");
    }

    #[test]
    fn ledbat_grows_below_target_when_window_limited() {
        let mut c = in_avoidance(20 * MSS);
        ack_one_window(&mut c, Some(0), true, 0);
        // One MSS per RTT at zero delay (GAIN = 1), within rounding.
        let w = c.window();
        assert!((20 * MSS + MSS * 9 / 10 + 1..=21 * MSS).contains(&w), "{w}");
        // Half the target, and at the target itself: still one MSS
        // (LEDBAT++; RFC 6817 would scale it down to half and to nothing).
        for delay in [50_000, 100_000] {
            let mut c = in_avoidance(20 * MSS);
            ack_one_window(&mut c, Some(delay), true, 0);
            let w = c.window();
            assert!((20 * MSS + MSS * 9 / 10 + 1..=21 * MSS).contains(&w), "{w}");
        }
    }

    #[test]
    fn ledbat_does_not_grow_when_not_window_limited() {
        let mut c = in_avoidance(20 * MSS);
        for i in 0..10 {
            ack_one_window(&mut c, Some(0), false, i * RTT);
        }
        assert_eq!(c.window(), 20 * MSS);
        // Nor in slow start.
        let mut c = Ledbat::new(cfg());
        for i in 0..10 {
            ack_one_window(&mut c, Some(0), false, i * RTT);
        }
        assert_eq!(c.window(), 2 * MSS);
        assert!(c.in_slow_start());
    }

    #[test]
    fn ledbat_shrinks_above_target_even_when_not_window_limited() {
        for limited in [true, false] {
            let mut c = in_avoidance(20 * MSS);
            ack_one_window(&mut c, Some(150_000), limited, 0);
            // off_target = -0.5 → a quarter of the window per RTT (DECREASE_GAIN 0.5).
            let w = c.window();
            assert!(
                (20 * MSS * 70 / 100..20 * MSS * 82 / 100).contains(&w),
                "{w}"
            );
        }
    }

    #[test]
    fn ledbat_decrease_is_bounded() {
        // Far above target: off_target clamps at -1; the window at most halves per RTT.
        let mut c = in_avoidance(20 * MSS);
        ack_one_window(&mut c, Some(5_000_000), true, 0);
        let w = c.window();
        assert!((10 * MSS..20 * MSS * 70 / 100).contains(&w), "{w}");
        // A single huge ACK on a small window halves at most.
        let mut c = in_avoidance(4 * MSS);
        c.on_ack(&ack(4 * MSS, Some(5_000_000), true, 0));
        assert!(c.window() >= 2 * MSS, "{}", c.window());
    }

    #[test]
    fn ledbat_decrease_evens_out_shared_queues() {
        // Growth is the same for every window (one MSS per RTT below the
        // target) and the decrease above it is proportional: the bigger
        // window loses more, which is what evens out flows that share a
        // queue as it swings around the target. 10 % above: 5 % per RTT.
        let mut small = in_avoidance(50 * MSS);
        let mut big = in_avoidance(150 * MSS);
        for i in 0..4 {
            ack_one_window(&mut small, Some(110_000), true, i * RTT);
            ack_one_window(&mut big, Some(110_000), true, i * RTT);
        }
        let (ls, lb) = (50 * MSS - small.window(), 150 * MSS - big.window());
        assert!(ls > 0 && lb > 2 * ls, "small lost {ls}, big lost {lb}");
        let ratio = big.window() as f64 / small.window() as f64;
        assert!((2.9..3.1).contains(&ratio), "{ratio}");
        for i in 4..8 {
            ack_one_window(&mut small, Some(90_000), true, i * RTT);
            ack_one_window(&mut big, Some(90_000), true, i * RTT);
        }
        // Back below the target both gain the same: the ratio drops.
        assert!((big.window() as f64 / small.window() as f64) < ratio - 0.1);
    }

    #[test]
    fn ledbat_delay_capped_by_min_rtt() {
        // A 500 ms "queuing delay" with a 30 ms RTT is clock skew: treat as 30 ms.
        let mut c = in_avoidance(20 * MSS);
        let mut s = ack(MSS, Some(500_000), true, 0);
        s.min_rtt_us = Some(30 * MS);
        for _ in 0..20 {
            c.on_ack(&s);
        }
        assert!(c.window() > 20 * MSS);
    }

    #[test]
    fn ledbat_halves_at_most_once_per_rtt_on_repeated_losses() {
        let mut c = in_avoidance(40 * MSS);
        let t0 = 10_000_000;
        c.on_loss(t0, Some(RTT));
        assert_eq!(c.window(), 20 * MSS);
        assert!(!c.in_slow_start());
        assert_eq!(c.ssthresh(), 20 * MSS);
        // More losses of the same window: ignored.
        c.on_loss(t0 + MS, Some(RTT));
        c.on_loss(t0 + RTT - 1, Some(RTT));
        assert_eq!(c.window(), 20 * MSS);
        // One RTT later, a new loss cuts again.
        c.on_loss(t0 + RTT, Some(RTT));
        assert_eq!(c.window(), 10 * MSS);
    }

    #[test]
    fn ledbat_loss_interval_defaults_to_100ms() {
        let mut c = in_avoidance(40 * MSS);
        c.on_loss(0, None);
        c.on_loss(99 * MS, None);
        assert_eq!(c.window(), 20 * MSS);
        c.on_loss(100 * MS, None);
        assert_eq!(c.window(), 10 * MSS);
    }

    #[test]
    fn ledbat_loss_leaves_slow_start_and_floors_at_one_packet() {
        let mut c = Ledbat::new(cfg());
        assert!(c.in_slow_start());
        c.on_loss(0, Some(RTT));
        assert!(!c.in_slow_start());
        assert_eq!(c.window(), MSS);
        c.on_loss(RTT, Some(RTT));
        assert_eq!(c.window(), MSS);
    }

    #[test]
    fn ledbat_one_packet_after_timeout() {
        let mut c = in_avoidance(40 * MSS);
        c.on_timeout(1_000_000);
        assert_eq!(c.window(), MSS);
        assert!(c.in_slow_start());
        assert_eq!(c.ssthresh(), 20 * MSS);
        // A loss right after the timeout does not cut further.
        c.on_loss(1_000_000 + MS, Some(RTT));
        assert!(c.in_slow_start());
        assert_eq!(c.window(), MSS);
        // Slow start back up to ssthresh, then avoidance.
        let mut now = 1_000_000 + RTT;
        let mut acks = 0;
        while c.in_slow_start() {
            c.on_ack(&ack(MSS, Some(0), true, now));
            now += MS;
            acks += 1;
        }
        assert_eq!(c.window(), 20 * MSS);
        assert_eq!(acks, 19);
        // Repeated timeouts keep ssthresh at 2 MSS or more.
        for _ in 0..5 {
            c.on_timeout(now);
            now += 1_000_000;
        }
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 2 * MSS);
    }

    #[test]
    fn ledbat_respects_max_window() {
        let max = 30 * MSS + 123;
        let mut c = Ledbat::new(CongestionConfig {
            max_window: max,
            ..cfg()
        });
        for i in 0..200 {
            ack_one_window(&mut c, Some(0), true, i * RTT);
            assert!(c.window() <= max);
        }
        assert_eq!(c.window(), max);
        // Shrinking the buffer clamps at once.
        c.set_max_window(10 * MSS);
        assert_eq!(c.window(), 10 * MSS);
        // A max below one packet still leaves one packet.
        let c = Ledbat::new(CongestionConfig {
            max_window: 100,
            ..cfg()
        });
        assert_eq!(c.window(), MSS);
    }

    #[test]
    fn ledbat_base_delay_rise_past_target_restarts_slow_start() {
        let mut c = in_avoidance(2 * MSS);
        // Drift-sized rises change nothing.
        c.on_base_delay_raised(5_000);
        assert!(!c.in_slow_start());
        c.on_base_delay_raised(600_000);
        assert!(c.in_slow_start());
        assert_eq!(c.ssthresh(), 1 << 20);
        // At zero queuing delay the window doubles per RTT again.
        ack_one_window(&mut c, Some(0), true, 0);
        assert_eq!(c.window(), 4 * MSS);
    }

    #[test]
    fn ledbat_zero_byte_ack_changes_nothing() {
        let mut c = Ledbat::new(cfg());
        c.on_ack(&ack(0, Some(500_000), true, 0));
        assert_eq!(c.window(), 2 * MSS);
        assert!(c.in_slow_start());
    }

    #[test]
    fn ledbat_target_and_mss_setters() {
        let mut c = in_avoidance(20 * MSS);
        c.set_target_delay_us(200_000);
        assert_eq!(c.target_delay_us(), 200_000);
        // 150 ms is now below target: growth.
        ack_one_window(&mut c, Some(150_000), true, 0);
        assert!(c.window() > 20 * MSS);
        c.set_target_delay_us(0);
        assert_eq!(c.target_delay_us(), 100_000);
        c.set_mss(1000);
        assert_eq!(c.min_window(), 1000);
    }

    #[test]
    fn ledbat_reaches_link_rate_quickly() {
        // 20 Mbit/s, 50 ms RTT: BDP ≈ 125 kB ≈ 90 packets. Slow start at low
        // delay gets there within 6 RTTs.
        let mut c = Ledbat::new(cfg());
        let mut rtts = 0;
        while c.window() < 125_000 {
            ack_one_window(&mut c, Some(2_000), true, rtts * RTT);
            rtts += 1;
        }
        assert!(rtts <= 6, "{rtts} RTTs");
    }
}
