//! Congestion control behind a small trait, so controllers can be swapped
//! without touching the connection code.
//!
//! INTERFACE STUB: controllers filled in by the congestion-control work.

use std::fmt::Debug;

/// What an incoming acknowledgement tells the controller.
#[derive(Clone, Copy, Debug)]
pub struct AckSample {
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

/// Build a controller of the given kind.
pub fn new_controller(_kind: CongestionKind, _cfg: CongestionConfig) -> Box<dyn CongestionControl> {
    unimplemented!()
}
