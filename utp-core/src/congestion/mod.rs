//! Congestion control behind a small trait, so controllers can be swapped
//! without touching the connection code.
//!
//! Two controllers, both counting in bytes:
//!
//! * [`Ledbat`] (default): delay-based, yields to other traffic (BEP 29,
//!   RFC 6817), halves on loss, one packet after a timeout.
//! * [`Reno`]: TCP Reno-style slow start / congestion avoidance / fast
//!   recovery entry; ignores delay.
//!
//! Both only grow the window when [`AckSample::window_limited`] is set, and
//! keep it within `[mss, max_window]`.

use std::fmt::Debug;

pub mod ledbat;
pub mod reno;

pub use ledbat::Ledbat;
pub use reno::Reno;

/// LEDBAT target queuing delay used when the configuration says 0 (µs).
pub const DEFAULT_TARGET_DELAY_US: u32 = 100_000;
/// Spacing of loss reactions when no smoothed RTT is known yet (µs); libutp
/// uses this fixed value always.
pub const DEFAULT_LOSS_INTERVAL_US: u64 = 100_000;

/// What an incoming acknowledgement tells the controller.
#[derive(Clone, Copy, Debug)]
pub struct AckSample {
    /// Engine time of the ACK's arrival (µs).
    pub now_us: u64,
    /// Payload bytes newly acknowledged by this packet (cumulative + selective).
    pub bytes_acked: usize,
    /// Bytes in flight before this ACK was applied.
    pub bytes_in_flight: usize,
    /// Our filtered one-way queuing delay, if known.
    pub queuing_delay_us: Option<u32>,
    /// Smallest RTT among the packets this ACK covered (Karn: only first transmissions).
    pub min_rtt_us: Option<u64>,
    /// Smoothed RTT, if known.
    pub srtt_us: Option<u64>,
    /// True when the send window was full at some point in the last second
    /// (growth is pointless when the application does not fill the window).
    pub window_limited: bool,
}

/// A congestion controller: a window in bytes, driven by ACKs, losses and timeouts.
pub trait CongestionControl: Debug + Send {
    /// An ACK acknowledged `sample.bytes_acked` bytes.
    fn on_ack(&mut self, sample: &AckSample);
    /// A loss was detected by duplicate/selective ACKs. Implementations
    /// react at most once per RTT.
    fn on_loss(&mut self, now_us: u64, srtt_us: Option<u64>);
    /// The retransmission timer fired.
    fn on_timeout(&mut self, now_us: u64);
    /// The congestion window, bytes.
    fn window(&self) -> usize;
    /// True while in slow start.
    fn in_slow_start(&self) -> bool;
    /// Name for statistics and logs.
    fn name(&self) -> &'static str;
    /// Slow-start threshold, bytes (`usize::MAX` if the controller has none).
    fn ssthresh(&self) -> usize {
        usize::MAX
    }
    /// The send buffer changed: new upper clamp on the window.
    fn set_max_window(&mut self, _max_window: usize) {}
    /// The target delay changed (µs, 0 = default). Ignored by loss-based controllers.
    fn set_target_delay_us(&mut self, _target_delay_us: u32) {}
    /// The maximum payload per packet changed (e.g. path-MTU discovery).
    fn set_mss(&mut self, _mss: usize) {}
    /// The base delay was re-learned higher by at least `rise_us` (the old
    /// minimum aged out of the history): the path changed, so a delay-based
    /// controller may ramp up again quickly instead of by its slow increase.
    fn on_base_delay_raised(&mut self, _rise_us: u32) {}
}

/// Which controller a connection uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionKind {
    /// LEDBAT (BEP 29): yields to other traffic. The default.
    #[default]
    Ledbat,
    /// TCP Reno-style: competes like TCP.
    Reno,
}

/// Settings shared by the controllers.
#[derive(Clone, Copy, Debug)]
pub struct CongestionConfig {
    /// Maximum payload per packet (bytes).
    pub mss: usize,
    /// Upper clamp on the window and initial slow-start threshold (the send buffer).
    pub max_window: usize,
    /// LEDBAT target queuing delay (µs).
    pub target_delay_us: u32,
}

impl Default for CongestionConfig {
    /// 1400-byte payloads, libutp's 1 MiB send buffer, 100 ms target.
    fn default() -> Self {
        CongestionConfig {
            mss: 1400,
            max_window: 1 << 20,
            target_delay_us: DEFAULT_TARGET_DELAY_US,
        }
    }
}

impl CongestionConfig {
    /// `mss` at least 1 byte.
    pub(crate) fn effective_mss(&self) -> usize {
        self.mss.max(1)
    }
    /// `max_window`, but never below one `mss` (the minimum window).
    pub(crate) fn effective_max_window(&self) -> usize {
        self.max_window.max(self.effective_mss())
    }
    /// `target_delay_us`, with 0 meaning [`DEFAULT_TARGET_DELAY_US`].
    pub(crate) fn effective_target_us(&self) -> u32 {
        if self.target_delay_us == 0 {
            DEFAULT_TARGET_DELAY_US
        } else {
            self.target_delay_us
        }
    }
}

/// Build a controller of the given kind.
pub fn new_controller(kind: CongestionKind, cfg: CongestionConfig) -> Box<dyn CongestionControl> {
    match kind {
        CongestionKind::Ledbat => Box::new(Ledbat::new(cfg)),
        CongestionKind::Reno => Box::new(Reno::new(cfg)),
    }
}

/// True when a loss reaction at `now_us` falls within one RTT (or
/// [`DEFAULT_LOSS_INTERVAL_US`]) of the previous one at `last_cut_us`.
pub(crate) fn within_loss_interval(
    last_cut_us: Option<u64>,
    now_us: u64,
    srtt_us: Option<u64>,
) -> bool {
    let interval = srtt_us.unwrap_or(DEFAULT_LOSS_INTERVAL_US);
    last_cut_us.is_some_and(|last| now_us.saturating_sub(last) < interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_factory_builds_requested_kind() {
        let cfg = CongestionConfig::default();
        let l = new_controller(CongestionKind::Ledbat, cfg);
        assert_eq!(l.name(), "ledbat");
        assert!(l.in_slow_start());
        assert_eq!(l.window(), 2 * cfg.mss);
        let r = new_controller(CongestionKind::Reno, cfg);
        assert_eq!(r.name(), "reno");
        assert!(r.in_slow_start());
        assert_eq!(r.window(), 2 * cfg.mss);
        assert_eq!(r.ssthresh(), cfg.max_window);
        assert_eq!(CongestionKind::default(), CongestionKind::Ledbat);
    }

    #[test]
    fn congestion_config_zero_target_means_default() {
        let cfg = CongestionConfig {
            target_delay_us: 0,
            ..CongestionConfig::default()
        };
        assert_eq!(cfg.effective_target_us(), DEFAULT_TARGET_DELAY_US);
        let cfg = CongestionConfig {
            mss: 0,
            max_window: 0,
            target_delay_us: 5,
        };
        assert_eq!(cfg.effective_mss(), 1);
        assert_eq!(cfg.effective_max_window(), 1);
        assert_eq!(cfg.effective_target_us(), 5);
    }

    #[test]
    fn congestion_loss_interval() {
        assert!(!within_loss_interval(None, 0, None));
        assert!(within_loss_interval(Some(1_000), 50_000, None));
        assert!(!within_loss_interval(Some(1_000), 101_000, None));
        assert!(within_loss_interval(Some(1_000), 20_000, Some(20_000)));
        assert!(!within_loss_interval(Some(1_000), 21_000, Some(20_000)));
    }
}
