//! Pacing: a connection's packets leave spread over the round trip at the
//! congestion window's rate, not in window-sized bursts.
//!
//! A token bucket in payload bytes fills at `gain · window / SRTT` and
//! holds at most a burst allowance. A packet may leave while the bucket is
//! not empty (it may overdraw by less than one packet, so a short packet
//! never waits for a whole packet's worth). Once empty, the connection
//! waits until the bucket is three quarters full again: a burst released
//! that way still leaves in GSO sends (the runtime groups a connection's
//! consecutive datagrams), and a timer that fires up to a third of the
//! wait late loses nothing.
//!
//! Nothing is paced before the first RTT sample (no rate to pace at).

/// Pacing rate over `window / SRTT` in slow start, percent: the window
/// doubles every round trip, so the pace runs ahead of it (Linux: 2).
pub const SLOW_START_GAIN_PERCENT: u64 = 200;
/// Pacing rate over `window / SRTT` after slow start, percent (Linux and
/// quinn: 1.25): a little above the window's rate, so the pacer smooths
/// bursts without holding the flow below what its window allows.
pub const GAIN_PERCENT: u64 = 125;
/// Smallest burst allowance, packets: small enough that a hundred flows
/// bursting at once stay within a receiver's socket buffer, large enough
/// that a burst is still one GSO send worth making.
pub const MIN_BURST_PACKETS: u64 = 10;
/// Largest burst allowance, packets (four GSO sends of 64). With 64, a
/// single flow on loopback (8-11 Gbit/s) woke every ~70 µs and spent 20 %
/// more sender CPU per GB; with 256, none more than before pacing.
pub const MAX_BURST_PACKETS: u64 = 256;
/// Between those bounds the allowance is what the rate sends in this long
/// (µs): a fast flow is released in bursts this far apart rather than a
/// few packets at a time, since the I/O thread cannot usefully wake more
/// often than every few hundred microseconds.
pub const BURST_INTERVAL_US: u64 = 1_000;

/// A token bucket that spaces a connection's data packets.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Payload bytes that may leave now; below zero after an overdraw,
    /// never above the burst allowance once a rate is known.
    tokens: f64,
    /// When `tokens` was last brought up to date (µs).
    refilled_at_us: u64,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// A full bucket: the first burst leaves at once.
    pub fn new() -> Self {
        Pacer {
            tokens: f64::INFINITY,
            refilled_at_us: 0,
        }
    }

    /// Bytes per microsecond at which the bucket fills.
    fn rate(srtt_us: u64, window: usize, mss: usize, slow_start: bool) -> f64 {
        let gain = if slow_start {
            SLOW_START_GAIN_PERCENT
        } else {
            GAIN_PERCENT
        };
        gain as f64 / 100.0 * window.max(mss) as f64 / srtt_us.max(1) as f64
    }

    /// The burst allowance (bytes) at `rate` bytes/µs.
    pub fn burst_bytes(rate: f64, mss: usize) -> f64 {
        let min = (MIN_BURST_PACKETS * mss as u64) as f64;
        let max = (MAX_BURST_PACKETS * mss as u64) as f64;
        (rate * BURST_INTERVAL_US as f64).clamp(min, max)
    }

    /// When a data packet may leave: `None` for now, or the instant (µs)
    /// to try again. `window` is the congestion window (bytes), `mss` the
    /// largest payload; without an RTT sample nothing is paced.
    pub fn wait_until(
        &mut self,
        now_us: u64,
        srtt_us: Option<u64>,
        window: usize,
        mss: usize,
        slow_start: bool,
    ) -> Option<u64> {
        let srtt_us = srtt_us?;
        let rate = Self::rate(srtt_us, window, mss, slow_start);
        let burst = Self::burst_bytes(rate, mss);
        let elapsed = now_us.saturating_sub(self.refilled_at_us) as f64;
        self.refilled_at_us = now_us;
        if window as f64 <= burst {
            // The whole window is one allowed burst: pacing could only hold
            // back what the ACK clock releases (under heavy loss the window
            // is a few packets, and waiting for a 3/4-full bucket of ten
            // cost 60 % of the goodput through a 10 %-loss relay).
            self.tokens = burst;
            return None;
        }
        self.tokens = (self.tokens + rate * elapsed).min(burst);
        if self.tokens > 0.0 {
            return None;
        }
        let refill_us = ((burst * 3.0 / 4.0 - self.tokens) / rate).ceil();
        Some(now_us + (refill_us as u64).max(1))
    }

    /// `bytes` of payload left (whether or not the pacer was asked).
    pub fn on_sent(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// Sends full packets whenever the pacer allows, waking at the times it
    /// asks for, from `start` until `end`; returns (time, packets) per burst.
    fn run(
        pacer: &mut Pacer,
        srtt: u64,
        window: usize,
        slow_start: bool,
        start: u64,
        end: u64,
    ) -> Vec<(u64, usize)> {
        let mut bursts = vec![];
        let mut now = start;
        while now < end {
            let mut sent = 0;
            let next = loop {
                match pacer.wait_until(now, Some(srtt), window, MSS, slow_start) {
                    None => {
                        pacer.on_sent(MSS);
                        sent += 1;
                        assert!(sent < 100_000, "never held back");
                    }
                    Some(t) => break t,
                }
            };
            bursts.push((now, sent));
            assert!(next > now);
            now = next;
        }
        bursts
    }

    #[test]
    fn nothing_is_paced_without_an_rtt_sample() {
        let mut p = Pacer::new();
        for _ in 0..1000 {
            assert_eq!(p.wait_until(0, None, 10 * MSS, MSS, false), None);
            p.on_sent(MSS);
        }
    }

    #[test]
    fn first_burst_is_the_allowance_then_spacing_follows_the_rate() {
        // 100 packets per 100 ms at gain 1.25: 1.25 packets/ms, so the
        // allowance is the 10-packet floor; the bucket, once empty, is
        // three quarters full (7.5 packets) again 6 ms later, and from then
        // on 8 packets leave every 6.4 ms (the eighth overdraws by half).
        let mut p = Pacer::new();
        let bursts = run(&mut p, 100_000, 100 * MSS, false, 1_000_000, 1_200_000);
        assert_eq!(bursts[0], (1_000_000, 10), "first burst: {bursts:?}");
        for w in bursts[1..].windows(2) {
            let gap = w[1].0 - w[0].0;
            assert!((6_000..=6_400).contains(&gap), "gap {gap} µs: {bursts:?}");
            assert_eq!(w[1].1, 8, "{bursts:?}");
        }
        // Over the 200 ms, the rate (plus the first burst) bounds what left.
        let total: usize = bursts.iter().map(|b| b.1).sum();
        assert!((255..=262).contains(&total), "{total} packets in 200 ms");
    }

    #[test]
    fn slow_start_paces_at_twice_the_window_rate() {
        let mut p = Pacer::new();
        let bursts = run(&mut p, 100_000, 100 * MSS, true, 0, 1_000_000);
        let total: usize = bursts.iter().map(|b| b.1).sum();
        // 2 windows per RTT: 2,000 packets in a second, plus the first burst.
        assert!((2_000..=2_020).contains(&total), "{total} packets in 1 s");
        assert!(bursts.iter().all(|b| b.1 <= 10), "{bursts:?}");
    }

    #[test]
    fn a_fast_flow_gets_a_millisecond_of_burst_up_to_the_cap() {
        // 1,250 packets per ms: the allowance is capped at 256 packets.
        let mut p = Pacer::new();
        let bursts = run(&mut p, 1_000, 1_000 * MSS, false, 0, 10_000);
        assert!(bursts.iter().all(|b| b.1 <= 256), "{bursts:?}");
        assert_eq!(bursts[0].1, 256);
        // Woken when 192 packets accrued (rounded up to the microsecond).
        assert!(
            bursts[1..].iter().all(|b| (192..=193).contains(&b.1)),
            "{bursts:?}"
        );
        // 40 packets per ms: 40 packets a millisecond apart (30 on wakes).
        let mut p = Pacer::new();
        let bursts = run(&mut p, 2_500, 80 * MSS, false, 0, 100_000);
        assert_eq!(bursts[0].1, 40, "{bursts:?}");
        assert!(bursts[1..].iter().all(|b| b.1 == 30), "{bursts:?}");
    }

    #[test]
    fn a_window_within_the_allowance_is_not_paced() {
        // 10 packets per 100 ms: the whole window fits the 10-packet floor.
        let mut p = Pacer::new();
        for now in 0..1000 {
            assert_eq!(p.wait_until(now, Some(100_000), 10 * MSS, MSS, false), None);
            p.on_sent(MSS);
        }
        // Once the window outgrows the allowance, pacing starts from a full
        // bucket, not from the overdraft of the unpaced packets.
        let bursts = run(&mut p, 100_000, 100 * MSS, false, 1_000, 2_000);
        assert_eq!(bursts[0], (1_000, 10), "{bursts:?}");
    }

    #[test]
    fn idle_time_does_not_bank_more_than_one_burst() {
        let mut p = Pacer::new();
        run(&mut p, 100_000, 100 * MSS, false, 0, 50_000);
        let bursts = run(&mut p, 100_000, 100 * MSS, false, 10_000_000, 10_000_001);
        assert_eq!(bursts, vec![(10_000_000, 10)]);
    }

    #[test]
    fn a_late_wake_up_sends_what_accrued_up_to_the_allowance() {
        let mut p = Pacer::new();
        let bursts = run(&mut p, 100_000, 100 * MSS, false, 0, 1);
        let t = bursts.len();
        assert_eq!(t, 1);
        let next = p
            .wait_until(0, Some(100_000), 100 * MSS, MSS, false)
            .unwrap();
        // Woken 2 ms late: 7.5 + 2.5 packets, the whole allowance.
        let mut sent = 0;
        while p
            .wait_until(next + 2_000, Some(100_000), 100 * MSS, MSS, false)
            .is_none()
        {
            p.on_sent(MSS);
            sent += 1;
        }
        assert_eq!(sent, 10);
    }

    #[test]
    fn a_short_packet_overdraws_rather_than_waits() {
        let mut p = Pacer::new();
        assert_eq!(p.wait_until(0, Some(100_000), 100 * MSS, MSS, false), None);
        p.on_sent(9 * MSS + 1);
        // 999 bytes left: a whole packet may still go.
        assert_eq!(p.wait_until(0, Some(100_000), 100 * MSS, MSS, false), None);
        p.on_sent(MSS);
        assert!(p
            .wait_until(0, Some(100_000), 100 * MSS, MSS, false)
            .is_some());
    }
}
