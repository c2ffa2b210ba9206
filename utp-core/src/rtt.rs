//! Round-trip time estimate and retransmission timeout, as BEP 29 gives them.
//!
//! INTERFACE STUB: bodies filled in by the congestion-control work.

/// Smoothed RTT, its variance, and the retransmission timeout derived from them.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    _private: (),
}

impl RttEstimator {
    /// Before any sample the timeout is `initial_rto_us`; it never drops below `min_rto_us`.
    pub fn new(_initial_rto_us: u64, _min_rto_us: u64) -> Self {
        unimplemented!()
    }
    /// Feed a sample from a packet that was sent exactly once (Karn's rule is the caller's job).
    pub fn on_sample(&mut self, _sample_us: u64) {
        unimplemented!()
    }
    /// Smoothed RTT, if any sample arrived.
    pub fn srtt_us(&self) -> Option<u64> {
        unimplemented!()
    }
    /// RTT variance estimate.
    pub fn rttvar_us(&self) -> u64 {
        unimplemented!()
    }
    /// Current retransmission timeout (before back-off).
    pub fn rto_us(&self) -> u64 {
        unimplemented!()
    }
}
