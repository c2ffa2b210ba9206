//! TCP Reno-style congestion control (RFC 5681), byte-counted (RFC 3465).
//! Ignores delay; competes with TCP on equal terms.
//!
//! * **Slow start** (`cwnd < ssthresh`, initial `ssthresh = max_window`):
//!   `cwnd += min(acked, cwnd)` per ACK, i.e. doubling per RTT, capped at
//!   `ssthresh`.
//! * **Congestion avoidance**: appropriate byte counting — acknowledged bytes
//!   accumulate and each time a whole window's worth has been acknowledged
//!   `cwnd += mss` (≈ `mss·acked/cwnd` per ACK without rounding loss).
//! * **Loss** (triple duplicate / selective ACK; fast-recovery entry):
//!   `ssthresh = max(cwnd/2, 2·mss)`, `cwnd = ssthresh`, at most once per
//!   smoothed RTT (100 ms if unknown). No window inflation: the connection
//!   does not do NewReno partial-ACK bookkeeping.
//! * **Timeout**: `ssthresh = max(cwnd/2, 2·mss)`, `cwnd = mss`, slow start.
//! * Growth only when `window_limited` (congestion-window validation,
//!   RFC 7661 in spirit); the window stays within `[mss, max_window]`.

use super::{within_loss_interval, AckSample, CongestionConfig, CongestionControl};

/// Initial window, in MSS.
pub const INITIAL_WINDOW_MSS: usize = 2;
/// Floor of `ssthresh` after a loss or timeout, in MSS.
pub const MIN_SSTHRESH_MSS: usize = 2;

/// TCP Reno-style controller.
#[derive(Clone, Debug)]
pub struct Reno {
    mss: usize,
    max_window: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since the last increase.
    acked_accum: usize,
    /// When the window was last cut for a loss or timeout.
    last_cut_us: Option<u64>,
}

impl Reno {
    /// A controller in slow start with a window of two packets
    /// ([`INITIAL_WINDOW_MSS`]) and
    /// `ssthresh` at the (clamped) `max_window`.
    pub fn new(cfg: CongestionConfig) -> Self {
        let mss = cfg.effective_mss();
        let max_window = cfg.effective_max_window();
        let mut r = Reno {
            mss,
            max_window,
            cwnd: INITIAL_WINDOW_MSS * mss,
            ssthresh: max_window,
            acked_accum: 0,
            last_cut_us: None,
        };
        r.clamp();
        r
    }

    fn clamp(&mut self) {
        self.cwnd = self.cwnd.clamp(self.mss, self.max_window);
        self.ssthresh = self.ssthresh.min(self.max_window);
    }

    fn cut_ssthresh(&self) -> usize {
        (self.cwnd / 2).max(MIN_SSTHRESH_MSS * self.mss)
    }
}

impl CongestionControl for Reno {
    fn on_ack(&mut self, s: &AckSample) {
        if s.bytes_acked == 0 || !s.window_limited {
            return;
        }
        let acked = s.bytes_acked.min(self.cwnd);
        if self.cwnd < self.ssthresh {
            self.cwnd = (self.cwnd + acked).min(self.ssthresh);
        } else {
            self.acked_accum += acked;
            if self.acked_accum >= self.cwnd {
                self.acked_accum -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
        self.clamp();
    }

    fn on_loss(&mut self, now_us: u64, srtt_us: Option<u64>) {
        if within_loss_interval(self.last_cut_us, now_us, srtt_us) {
            return;
        }
        self.last_cut_us = Some(now_us);
        self.ssthresh = self.cut_ssthresh();
        self.cwnd = self.ssthresh;
        self.acked_accum = 0;
        self.clamp();
    }

    fn on_timeout(&mut self, now_us: u64) {
        self.last_cut_us = Some(now_us);
        self.ssthresh = self.cut_ssthresh();
        self.cwnd = self.mss;
        self.acked_accum = 0;
        self.clamp();
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    fn name(&self) -> &'static str {
        "reno"
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn set_max_window(&mut self, max_window: usize) {
        let old = self.max_window;
        self.max_window = max_window.max(self.mss);
        if self.ssthresh >= old {
            self.ssthresh = self.max_window;
        }
        self.clamp();
    }

    fn set_mss(&mut self, mss: usize) {
        self.mss = mss.max(1);
        self.max_window = self.max_window.max(self.mss);
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

    fn ack(bytes: usize, window_limited: bool, delay_us: Option<u32>) -> AckSample {
        AckSample {
            now_us: 0,
            bytes_acked: bytes,
            bytes_in_flight: bytes,
            queuing_delay_us: delay_us,
            min_rtt_us: Some(RTT),
            srtt_us: Some(RTT),
            window_limited,
        }
    }

    fn ack_one_window(c: &mut Reno, window_limited: bool) {
        let packets = c.window().div_ceil(MSS);
        for _ in 0..packets {
            c.on_ack(&ack(MSS, window_limited, None));
        }
    }

    fn in_avoidance(w: usize) -> Reno {
        let mut c = Reno::new(cfg());
        c.cwnd = w;
        c.ssthresh = w;
        c
    }

    #[test]
    fn reno_initial_state() {
        let c = Reno::new(cfg());
        assert_eq!(c.window(), 2 * MSS);
        assert_eq!(c.ssthresh(), 1 << 20);
        assert!(c.in_slow_start());
        assert_eq!(c.name(), "reno");
    }

    #[test]
    fn reno_slow_start_doubles_per_rtt() {
        let mut c = Reno::new(cfg());
        for _ in 0..5 {
            let before = c.window();
            ack_one_window(&mut c, true);
            assert_eq!(c.window(), 2 * before);
        }
        assert_eq!(c.window(), 64 * MSS);
        assert!(c.in_slow_start());
        // Delayed/stretch ACKs covering several packets count the same.
        let mut c = Reno::new(cfg());
        c.on_ack(&ack(2 * MSS, true, None));
        assert_eq!(c.window(), 4 * MSS);
    }

    #[test]
    fn reno_slow_start_stops_at_ssthresh() {
        let mut c = Reno::new(cfg());
        c.ssthresh = 10 * MSS;
        for _ in 0..4 {
            ack_one_window(&mut c, true);
        }
        assert!(!c.in_slow_start());
        // 2 → 4 → 8 → 10 (capped), then one avoidance window: 11.
        assert_eq!(c.window(), 11 * MSS);
    }

    #[test]
    fn reno_linear_growth_in_avoidance() {
        let mut c = in_avoidance(20 * MSS);
        assert!(!c.in_slow_start());
        for i in 1..=10 {
            ack_one_window(&mut c, true);
            assert_eq!(c.window(), (20 + i) * MSS);
        }
        // Half a window of ACKs: no increase yet.
        for _ in 0..15 {
            c.on_ack(&ack(MSS, true, None));
        }
        assert_eq!(c.window(), 30 * MSS);
    }

    #[test]
    fn reno_ignores_delay() {
        let mut a = in_avoidance(20 * MSS);
        let mut b = in_avoidance(20 * MSS);
        for _ in 0..100 {
            a.on_ack(&ack(MSS, true, Some(0)));
            b.on_ack(&ack(MSS, true, Some(2_000_000)));
        }
        assert_eq!(a.window(), b.window());
        assert!(a.window() > 20 * MSS);
    }

    #[test]
    fn reno_no_growth_when_not_window_limited() {
        let mut c = Reno::new(cfg());
        for _ in 0..10 {
            ack_one_window(&mut c, false);
        }
        assert_eq!(c.window(), 2 * MSS);
    }

    #[test]
    fn reno_halves_on_loss_once_per_rtt() {
        let mut c = in_avoidance(40 * MSS);
        c.on_loss(1_000_000, Some(RTT));
        assert_eq!(c.window(), 20 * MSS);
        assert_eq!(c.ssthresh(), 20 * MSS);
        assert!(!c.in_slow_start());
        c.on_loss(1_000_000 + RTT / 2, Some(RTT));
        assert_eq!(c.window(), 20 * MSS);
        c.on_loss(1_000_000 + RTT, Some(RTT));
        assert_eq!(c.window(), 10 * MSS);
        // Floor at 2 MSS.
        for i in 2..10 {
            c.on_loss(1_000_000 + i * RTT, Some(RTT));
        }
        assert_eq!(c.window(), 2 * MSS);
    }

    #[test]
    fn reno_loss_in_slow_start_ends_it() {
        let mut c = Reno::new(cfg());
        for _ in 0..4 {
            ack_one_window(&mut c, true);
        }
        assert_eq!(c.window(), 32 * MSS);
        c.on_loss(0, None);
        assert_eq!(c.window(), 16 * MSS);
        assert!(!c.in_slow_start());
    }

    #[test]
    fn reno_one_mss_on_timeout_then_slow_start() {
        let mut c = in_avoidance(40 * MSS);
        c.on_timeout(5_000_000);
        assert_eq!(c.window(), MSS);
        assert_eq!(c.ssthresh(), 20 * MSS);
        assert!(c.in_slow_start());
        // A loss report right after does not cut further.
        c.on_loss(5_000_000 + MS, Some(RTT));
        assert_eq!(c.window(), MSS);
        // 1 → 2 → 4 → 8 → 16 → 20.
        for _ in 0..5 {
            ack_one_window(&mut c, true);
        }
        assert_eq!(c.window(), 20 * MSS);
        assert!(!c.in_slow_start());
    }

    #[test]
    fn reno_respects_max_window() {
        let max = 25 * MSS + 7;
        let mut c = Reno::new(CongestionConfig {
            max_window: max,
            ..cfg()
        });
        for _ in 0..100 {
            ack_one_window(&mut c, true);
            assert!(c.window() <= max);
        }
        assert_eq!(c.window(), max);
        c.set_max_window(5 * MSS);
        assert_eq!(c.window(), 5 * MSS);
        assert_eq!(c.ssthresh(), 5 * MSS);
    }
}
