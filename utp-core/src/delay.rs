//! One-way delay bookkeeping for LEDBAT: base delay (sliding minimum) and the
//! current filtered delay.
//!
//! INTERFACE STUB: bodies filled in by the congestion-control work.

/// Delay samples of one direction.
#[derive(Clone, Debug)]
pub struct DelayHistory {
    _private: (),
}

impl DelayHistory {
    pub fn new() -> Self {
        unimplemented!()
    }
    /// Add a raw one-way delay sample (µs, wrapping u32 clock difference) taken at `now_us`.
    pub fn add_sample(&mut self, _sample_us: u32, _now_us: u64) {
        unimplemented!()
    }
    /// Sample minus base delay, filtered over the last few samples; None until there are samples.
    pub fn queuing_delay_us(&self) -> Option<u32> {
        unimplemented!()
    }
    /// The base delay (minimum over about two minutes).
    pub fn base_delay_us(&self) -> Option<u32> {
        unimplemented!()
    }
    /// Shift the base delay up by `delta_us` (clock-drift compensation).
    pub fn shift_base(&mut self, _delta_us: u32) {
        unimplemented!()
    }
}

impl Default for DelayHistory {
    fn default() -> Self {
        Self::new()
    }
}
