//! One direction of a simulated path: a drop-tail bottleneck queue drained at
//! a fixed bit rate, followed by a wire that adds propagation delay and may
//! lose, reorder, duplicate or corrupt datagrams.
//!
//! The model, per offered datagram (in this order):
//! 1. link down (blackhole) or a test filter may drop or rewrite it;
//! 2. drop-tail admission: dropped when the bytes already in the queue (the
//!    datagram being serialised included) plus this one exceed the limit;
//! 3. serialisation: it starts when the previous one finished and takes
//!    `len * 8 / bandwidth` seconds; the wait before it starts is recorded as
//!    a queueing-delay sample;
//! 4. on the wire: random loss, Gilbert-Elliott burst loss, corruption;
//! 5. arrival `= end of serialisation + propagation delay`, plus a random
//!    extra delay for the datagrams picked for reordering; a duplicate copy
//!    may arrive too.
//!
//! The link is driven by [`Link::send`], which returns the arrivals it
//! schedules; the [`Network`](super::Network) puts those on its clock.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Gilbert-Elliott two-state burst-loss model. Datagrams are lost with
/// `loss_in_bad` while in the bad state (never in the good state; add
/// [`LinkConfig::loss`] for that).
///
/// The chain moves one step per datagram, or one step per `step_us` of time
/// since the previous datagram if that is more, so a burst is also bounded
/// in time: with sparse traffic (a lone retransmission every few seconds)
/// a purely per-datagram chain would stretch one burst over many seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving good -> bad, per step.
    pub p_good_to_bad: f64,
    /// Probability of moving bad -> good, per step.
    pub p_bad_to_good: f64,
    /// Loss probability while in the bad state.
    pub loss_in_bad: f64,
    /// Time worth one step of the chain (µs); 0: steps per datagram only.
    pub step_us: u64,
}

impl GilbertElliott {
    /// Long-run fraction of time in the bad state.
    pub fn bad_fraction(&self) -> f64 {
        self.p_good_to_bad / (self.p_good_to_bad + self.p_bad_to_good)
    }
    /// Long-run fraction of datagrams lost (with back-to-back traffic).
    pub fn mean_loss(&self) -> f64 {
        self.bad_fraction() * self.loss_in_bad
    }
    /// Probability of being in the bad state after `n` steps.
    fn p_bad_after(&self, bad_now: bool, n: u64) -> f64 {
        let pi = self.bad_fraction();
        let decay = (1.0 - self.p_good_to_bad - self.p_bad_to_good).powf(n as f64);
        let p = if bad_now {
            pi + (1.0 - pi) * decay
        } else {
            pi * (1.0 - decay)
        };
        p.clamp(0.0, 1.0)
    }
}

/// How the bottleneck queue is bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    /// No limit.
    Unbounded,
    /// At most this many bytes queued (the one being serialised included).
    Bytes(usize),
    /// As many bytes as the bandwidth drains in this many microseconds.
    Time(u64),
}

/// Settings of one direction of a link. Build with the chained setters:
///
/// ```
/// use utp_core::sim::LinkConfig;
/// let cfg = LinkConfig::new().mbps(10.0).delay_ms(25).queue_ms(1000).loss(0.01);
/// assert_eq!(cfg.queue_limit_bytes(), Some(1_250_000));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Serialisation rate in bits per second; `None` means infinitely fast (no queue).
    pub bandwidth_bps: Option<u64>,
    /// One-way propagation delay (µs).
    pub delay_us: u64,
    /// Drop-tail limit of the bottleneck queue.
    pub queue: QueueLimit,
    /// Independent random loss probability per datagram.
    pub loss: f64,
    /// Optional burst loss.
    pub burst: Option<GilbertElliott>,
    /// Probability that a datagram gets an extra delay (and so may be overtaken).
    pub reorder: f64,
    /// The extra delay is uniform in `1..=reorder_max_us`.
    pub reorder_max_us: u64,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// The duplicate arrives up to this much later than the original (µs).
    pub duplicate_max_us: u64,
    /// Probability that a datagram is corrupted (one random byte flipped, or truncated).
    pub corrupt: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            bandwidth_bps: None,
            delay_us: 10_000,
            queue: QueueLimit::Time(100_000),
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_max_us: 10_000,
            duplicate: 0.0,
            duplicate_max_us: 1_000,
            corrupt: 0.0,
        }
    }
}

impl LinkConfig {
    /// Infinite bandwidth, 10 ms delay, no impairments (a 100 ms queue once a
    /// bandwidth is set).
    pub fn new() -> Self {
        Self::default()
    }
    /// An ideal link: no delay, infinite bandwidth.
    pub fn ideal() -> Self {
        Self::new().delay_us(0)
    }
    /// Bandwidth in bits per second. Panics if `bps` is 0.
    pub fn bandwidth_bps(mut self, bps: u64) -> Self {
        assert!(bps > 0, "bandwidth must be positive");
        self.bandwidth_bps = Some(bps);
        self
    }
    /// Bandwidth in Mbit/s (10^6 bits per second).
    pub fn mbps(self, mbps: f64) -> Self {
        self.bandwidth_bps((mbps * 1e6).round() as u64)
    }
    /// One-way propagation delay (µs).
    pub fn delay_us(mut self, us: u64) -> Self {
        self.delay_us = us;
        self
    }
    /// One-way propagation delay (ms).
    pub fn delay_ms(self, ms: u64) -> Self {
        self.delay_us(ms * 1000)
    }
    /// Drop-tail queue of at most `bytes` bytes.
    pub fn queue_bytes(mut self, bytes: usize) -> Self {
        self.queue = QueueLimit::Bytes(bytes);
        self
    }
    /// Queue sized to hold `ms` milliseconds of traffic at the bandwidth.
    pub fn queue_ms(mut self, ms: u64) -> Self {
        self.queue = QueueLimit::Time(ms * 1000);
        self
    }
    /// A queue that never drops.
    pub fn unbounded_queue(mut self) -> Self {
        self.queue = QueueLimit::Unbounded;
        self
    }
    /// Independent loss probability per datagram. Panics outside `0..=1`.
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = check_prob(p);
        self
    }
    /// Gilbert-Elliott burst loss (see [`GilbertElliott`]) with one chain
    /// step per millisecond or per datagram. Panics if a probability is
    /// outside `0..=1`.
    pub fn burst_loss(mut self, p_good_to_bad: f64, p_bad_to_good: f64, loss_in_bad: f64) -> Self {
        self.burst = Some(GilbertElliott {
            p_good_to_bad: check_prob(p_good_to_bad),
            p_bad_to_good: check_prob(p_bad_to_good),
            loss_in_bad: check_prob(loss_in_bad),
            step_us: 1000,
        });
        self
    }
    /// Time worth one step of the burst-loss chain (0: per datagram only).
    pub fn burst_step_us(mut self, step_us: u64) -> Self {
        if let Some(ge) = self.burst.as_mut() {
            ge.step_us = step_us;
        }
        self
    }
    /// With probability `p` a datagram is held back by up to `max_extra_us`.
    pub fn reorder(mut self, p: f64, max_extra_us: u64) -> Self {
        self.reorder = check_prob(p);
        self.reorder_max_us = max_extra_us.max(1);
        self
    }
    /// Probability that a datagram is delivered twice (the copy up to
    /// [`duplicate_max_us`](Self::duplicate_max_us) later). Panics outside `0..=1`.
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = check_prob(p);
        self
    }
    /// Probability that a datagram is corrupted (see [`corrupt`]). Panics
    /// outside `0..=1`.
    pub fn corrupt(mut self, p: f64) -> Self {
        self.corrupt = check_prob(p);
        self
    }
    /// The queue limit in bytes, if bounded (a time limit needs a bandwidth).
    pub fn queue_limit_bytes(&self) -> Option<usize> {
        match (self.queue, self.bandwidth_bps) {
            (QueueLimit::Unbounded, _) | (QueueLimit::Time(_), None) => None,
            (QueueLimit::Bytes(b), _) => Some(b),
            (QueueLimit::Time(us), Some(bps)) => {
                Some((bps as u128 * us as u128 / 8_000_000) as usize)
            }
        }
    }
    /// Time to serialise `len` bytes (µs, rounded up); 0 without a bandwidth.
    pub fn serialisation_us(&self, len: usize) -> u64 {
        match self.bandwidth_bps {
            None => 0,
            Some(bps) => {
                let bits = len as u128 * 8 * 1_000_000;
                bits.div_ceil(bps as u128) as u64
            }
        }
    }
}

fn check_prob(p: f64) -> f64 {
    assert!((0.0..=1.0).contains(&p), "probability {p} outside 0..=1");
    p
}

/// Counters of one link direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkStats {
    /// Datagrams offered by [`Link::send`], whatever became of them.
    pub offered_datagrams: u64,
    /// Bytes of the offered datagrams.
    pub offered_bytes: u64,
    /// Arrivals scheduled at the far end (duplicates included).
    pub delivered_datagrams: u64,
    /// Bytes of the scheduled arrivals (as delivered, so after corruption).
    pub delivered_bytes: u64,
    /// Tail drops at the bottleneck queue.
    pub queue_drops: u64,
    /// Bytes of the tail-dropped datagrams.
    pub queue_drop_bytes: u64,
    /// Independent random losses.
    pub random_losses: u64,
    /// Losses in the bad state of the burst model.
    pub burst_losses: u64,
    /// Dropped while the link was down.
    pub down_drops: u64,
    /// Dropped by a test filter.
    pub filtered: u64,
    /// Datagrams given an extra delay (they may be overtaken).
    pub reordered: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Datagrams corrupted on the wire.
    pub corrupted: u64,
    /// Largest queue occupancy seen (bytes, including the datagram being serialised).
    pub max_queue_bytes: usize,
    /// `(time a datagram entered the queue, µs it waited before serialisation)`.
    pub queue_delay: Vec<(u64, u64)>,
    /// `(time serialisation finished, bytes)` of every datagram that used the link.
    pub departures: Vec<(u64, u32)>,
}

impl LinkStats {
    /// Datagrams lost on the wire (random + burst).
    pub fn wire_losses(&self) -> u64 {
        self.random_losses + self.burst_losses
    }
    /// Queueing-delay samples (µs) of datagrams that entered the queue in `[from_us, to_us)`.
    pub fn queue_delays_between(&self, from_us: u64, to_us: u64) -> Vec<u64> {
        self.queue_delay
            .iter()
            .filter(|(t, _)| *t >= from_us && *t < to_us)
            .map(|&(_, d)| d)
            .collect()
    }
    /// Percentile `p` (0..=100) of the queueing delay (µs) of datagrams that
    /// entered the queue in `[from_us, to_us)`; `None` without samples.
    pub fn queue_delay_percentile(&self, from_us: u64, to_us: u64, p: f64) -> Option<u64> {
        percentile(&mut self.queue_delays_between(from_us, to_us), p)
    }
    /// Bytes whose serialisation finished in `[from_us, to_us)`.
    pub fn bytes_departed_between(&self, from_us: u64, to_us: u64) -> u64 {
        self.departures
            .iter()
            .filter(|(t, _)| *t >= from_us && *t < to_us)
            .map(|&(_, b)| b as u64)
            .sum()
    }
    /// Rate (bits/s) of the traffic that left the queue in `[from_us, to_us)`.
    pub fn throughput_bps(&self, from_us: u64, to_us: u64) -> f64 {
        if to_us <= from_us {
            return 0.0;
        }
        self.bytes_departed_between(from_us, to_us) as f64 * 8.0 * 1e6 / (to_us - from_us) as f64
    }
}

/// Percentile `p` (0..=100, nearest rank) of `samples`; sorts them in place.
pub fn percentile(samples: &mut [u64], p: f64) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// A test hook that sees every offered datagram before the queue: it may
/// rewrite it in place; returning `false` drops it.
pub type LinkFilter = Box<dyn FnMut(u64, &mut Vec<u8>, &mut ChaCha8Rng) -> bool>;

/// One direction of a link; see the module documentation for the model.
pub struct Link {
    config: LinkConfig,
    queue_limit: Option<usize>,
    rng: ChaCha8Rng,
    up: bool,
    filter: Option<LinkFilter>,
    /// `(finish time, bytes)` of datagrams admitted and not yet fully serialised.
    in_queue: std::collections::VecDeque<(u64, usize)>,
    queued_bytes: usize,
    busy_until: u64,
    burst_bad: bool,
    burst_last_us: Option<u64>,
    stats: LinkStats,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("config", &self.config)
            .field("up", &self.up)
            .field("filter", &self.filter.is_some())
            .field("queued_bytes", &self.queued_bytes)
            .field("busy_until", &self.busy_until)
            .field("burst_bad", &self.burst_bad)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link whose randomness comes from `seed` alone.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Link {
            queue_limit: config.queue_limit_bytes(),
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            up: true,
            filter: None,
            in_queue: Default::default(),
            queued_bytes: 0,
            busy_until: 0,
            burst_bad: false,
            burst_last_us: None,
            stats: LinkStats::default(),
        }
    }

    /// The current settings.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }
    /// Replace the settings; datagrams already scheduled are not affected.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.queue_limit = config.queue_limit_bytes();
        self.config = config;
    }
    /// Counters since the link was made.
    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }
    /// False while the link is down (see [`set_up`](Self::set_up)).
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// Take the link down (everything offered is dropped) or bring it back.
    /// Datagrams already on the wire still arrive.
    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }
    /// Install a filter that sees every offered datagram (replacing any
    /// previous one).
    pub fn set_filter(&mut self, filter: LinkFilter) {
        self.filter = Some(filter);
    }
    /// Remove the filter.
    pub fn clear_filter(&mut self) {
        self.filter = None;
    }

    /// Bytes in the queue at `now_us` (the datagram being serialised included).
    pub fn queued_bytes(&mut self, now_us: u64) -> usize {
        self.drain_queue(now_us);
        self.queued_bytes
    }

    fn drain_queue(&mut self, now_us: u64) {
        while let Some(&(finish, len)) = self.in_queue.front() {
            if finish > now_us {
                break;
            }
            self.in_queue.pop_front();
            self.queued_bytes -= len;
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p)
    }

    /// Offer a datagram at `now_us`; returns the arrivals at the far end as
    /// `(time, contents)` (none if it was dropped, two if duplicated).
    pub fn send(&mut self, now_us: u64, mut data: Vec<u8>) -> Vec<(u64, Vec<u8>)> {
        self.stats.offered_datagrams += 1;
        self.stats.offered_bytes += data.len() as u64;
        if !self.up {
            self.stats.down_drops += 1;
            return Vec::new();
        }
        if let Some(filter) = self.filter.as_mut() {
            if !filter(now_us, &mut data, &mut self.rng) {
                self.stats.filtered += 1;
                return Vec::new();
            }
        }

        // Bottleneck queue.
        let len = data.len();
        let finish = if self.config.bandwidth_bps.is_some() {
            self.drain_queue(now_us);
            if let Some(limit) = self.queue_limit {
                if self.queued_bytes + len > limit {
                    self.stats.queue_drops += 1;
                    self.stats.queue_drop_bytes += len as u64;
                    return Vec::new();
                }
            }
            let start = self.busy_until.max(now_us);
            let finish = start + self.config.serialisation_us(len);
            self.busy_until = finish;
            self.in_queue.push_back((finish, len));
            self.queued_bytes += len;
            self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(self.queued_bytes);
            self.stats.queue_delay.push((now_us, start - now_us));
            finish
        } else {
            self.stats.queue_delay.push((now_us, 0));
            now_us
        };
        self.stats.departures.push((finish, len as u32));

        // On the wire.
        if let Some(ge) = self.config.burst {
            let idle = self.burst_last_us.map_or(0, |t| finish.saturating_sub(t));
            self.burst_last_us = Some(finish);
            let steps = idle.checked_div(ge.step_us).unwrap_or(0).max(1);
            let p_bad = ge.p_bad_after(self.burst_bad, steps);
            self.burst_bad = self.chance(p_bad);
            if self.burst_bad && self.chance(ge.loss_in_bad) {
                self.stats.burst_losses += 1;
                return Vec::new();
            }
        }
        if self.chance(self.config.loss) {
            self.stats.random_losses += 1;
            return Vec::new();
        }
        if self.chance(self.config.corrupt) {
            self.stats.corrupted += 1;
            corrupt(&mut self.rng, &mut data);
        }
        let mut at = finish + self.config.delay_us;
        if self.chance(self.config.reorder) {
            self.stats.reordered += 1;
            at += self.rng.gen_range(1..=self.config.reorder_max_us);
        }
        let mut out = Vec::with_capacity(1);
        if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let later = self.rng.gen_range(0..=self.config.duplicate_max_us);
            out.push((at + later, data.clone()));
        }
        out.insert(0, (at, data));
        for (_, d) in &out {
            self.stats.delivered_datagrams += 1;
            self.stats.delivered_bytes += d.len() as u64;
        }
        out
    }
}

/// Flip one random byte (XOR with a non-zero mask) or, one time in four,
/// truncate to a random shorter length.
pub fn corrupt(rng: &mut ChaCha8Rng, data: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if rng.gen_range(0..4) == 0 {
        let keep = rng.gen_range(0..data.len());
        data.truncate(keep);
    } else {
        let i = rng.gen_range(0..data.len());
        data[i] ^= rng.gen_range(1..=255u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dgram(len: usize) -> Vec<u8> {
        vec![0xAB; len]
    }

    #[test]
    fn ten_mbit_serialises_1250_byte_datagrams_1ms_apart() {
        let mut link = Link::new(
            LinkConfig::new().mbps(10.0).delay_us(0).unbounded_queue(),
            1,
        );
        let arrivals: Vec<u64> = (0..10).map(|_| link.send(0, dgram(1250))[0].0).collect();
        let expected: Vec<u64> = (1..=10).map(|i| i * 1000).collect();
        assert_eq!(arrivals, expected);
        // Queueing delay: each waits for the ones before it.
        let waits: Vec<u64> = link.stats().queue_delay.iter().map(|&(_, d)| d).collect();
        assert_eq!(waits, (0..10).map(|i| i * 1000).collect::<Vec<_>>());
        assert_eq!(link.stats().bytes_departed_between(0, 10_001), 12_500);
        assert_eq!(link.stats().throughput_bps(1, 10_001), 10e6);
    }

    #[test]
    fn idle_link_does_not_carry_backlog() {
        let mut link = Link::new(LinkConfig::new().mbps(10.0).delay_us(0), 1);
        assert_eq!(link.send(0, dgram(1250))[0].0, 1000);
        // Sent after the first finished: no waiting.
        assert_eq!(link.send(5000, dgram(1250))[0].0, 6000);
        // Sent while the second is on the wire: waits for it.
        assert_eq!(link.send(5500, dgram(1250))[0].0, 7000);
        assert_eq!(link.stats().queue_delay[2], (5500, 500));
    }

    #[test]
    fn propagation_delay_is_added() {
        let mut link = Link::new(LinkConfig::new().delay_ms(25), 1);
        assert_eq!(link.send(1_000, dgram(100)), vec![(26_000, dgram(100))]);
        let mut link = Link::new(LinkConfig::new().mbps(10.0).delay_ms(25), 1);
        assert_eq!(link.send(1_000, dgram(1250))[0].0, 1_000 + 1_000 + 25_000);
    }

    #[test]
    fn queue_overflow_tail_drops() {
        let mut link = Link::new(
            LinkConfig::new().mbps(10.0).delay_us(0).queue_bytes(5000),
            1,
        );
        let delivered: Vec<bool> = (0..10)
            .map(|_| !link.send(0, dgram(1250)).is_empty())
            .collect();
        assert_eq!(delivered.iter().filter(|d| **d).count(), 4);
        assert!(
            delivered[..4].iter().all(|d| *d),
            "first four fit: {delivered:?}"
        );
        let s = link.stats();
        assert_eq!(
            (s.queue_drops, s.queue_drop_bytes, s.delivered_datagrams),
            (6, 7500, 4)
        );
        assert_eq!(s.max_queue_bytes, 5000);
        // After one datagram left (t = 1 ms) there is room for exactly one more.
        assert!(!link.send(1000, dgram(1250)).is_empty());
        assert!(link.send(1000, dgram(1250)).is_empty());
    }

    #[test]
    fn queue_limit_in_time() {
        let cfg = LinkConfig::new().mbps(10.0).queue_ms(1000);
        assert_eq!(cfg.queue_limit_bytes(), Some(1_250_000));
        assert_eq!(LinkConfig::new().queue_ms(5).queue_limit_bytes(), None);
    }

    #[test]
    fn random_loss_rate_matches_configuration() {
        let n = 100_000;
        let mut link = Link::new(LinkConfig::new().loss(0.05), 7);
        let delivered = (0..n)
            .filter(|&i| !link.send(i, dgram(100)).is_empty())
            .count();
        let loss = 1.0 - delivered as f64 / n as f64;
        assert!((0.045..0.055).contains(&loss), "loss {loss}");
        assert_eq!(link.stats().random_losses as usize, n as usize - delivered);
    }

    #[test]
    fn burst_loss_is_bursty_and_averages_out() {
        let n = 200_000;
        let mut link = Link::new(LinkConfig::new().burst_loss(0.01, 0.25, 0.9), 11);
        let lost: Vec<bool> = (0..n)
            .map(|i| link.send(i, dgram(100)).is_empty())
            .collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / n as f64;
        let expected = link.config().burst.unwrap().mean_loss();
        assert!(
            (rate - expected).abs() < expected * 0.15,
            "loss {rate}, expected {expected}"
        );
        // Mean run length of consecutive losses: well above the ~1 of independent loss.
        let runs = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_run = lost.iter().filter(|l| **l).count() as f64 / runs as f64;
        assert!(mean_run > 2.0, "mean loss run {mean_run}");
    }

    #[test]
    fn bursts_end_with_time_even_without_traffic() {
        // Sparse traffic (one datagram a second) sees independent losses at
        // about the mean rate, not second-long bursts.
        let n = 20_000;
        let cfg = LinkConfig::new().burst_loss(0.05, 0.2, 1.0);
        let expected = cfg.burst.unwrap().mean_loss();
        let mut link = Link::new(cfg.clone(), 13);
        let lost: Vec<bool> = (0..n)
            .map(|i| link.send(i * 1_000_000, dgram(100)).is_empty())
            .collect();
        let rate = lost.iter().filter(|l| **l).count() as f64 / n as f64;
        assert!(
            (rate - expected).abs() < 0.03,
            "loss {rate}, expected {expected}"
        );
        let pairs = |lost: &[bool]| {
            lost.windows(2).filter(|w| w[0] && w[1]).count() as f64 / (n - 1) as f64
        };
        let both = pairs(&lost);
        assert!(
            (both - expected * expected).abs() < 0.02,
            "P(two in a row) {both}"
        );
        // Per-datagram stepping keeps the bursts.
        let mut link = Link::new(cfg.burst_step_us(0), 13);
        let lost: Vec<bool> = (0..n)
            .map(|i| link.send(i * 1_000_000, dgram(100)).is_empty())
            .collect();
        assert!(pairs(&lost) > 0.1, "P(two in a row) {}", pairs(&lost));
    }

    #[test]
    fn reordering_duplication_corruption() {
        let cfg = LinkConfig::new()
            .reorder(0.1, 20_000)
            .duplicate(0.05)
            .corrupt(0.02);
        let mut link = Link::new(cfg, 3);
        let n = 20_000u64;
        let mut arrivals = Vec::new();
        for i in 0..n {
            let payload = i.to_be_bytes().repeat(4);
            for (at, d) in link.send(i * 100, payload.clone()) {
                arrivals.push((at, i, d != payload));
            }
        }
        let s = link.stats().clone();
        let frac = |x: u64| x as f64 / n as f64;
        assert!((0.09..0.11).contains(&frac(s.reordered)), "{s:?}");
        assert!((0.04..0.06).contains(&frac(s.duplicated)), "{s:?}");
        assert!((0.015..0.025).contains(&frac(s.corrupted)), "{s:?}");
        assert_eq!(arrivals.len() as u64, n + s.duplicated);
        // A corrupted datagram that is also duplicated arrives corrupted twice.
        let corrupted_arrivals = arrivals.iter().filter(|a| a.2).count() as u64;
        assert!((s.corrupted..=s.corrupted * 2).contains(&corrupted_arrivals));
        arrivals.sort();
        let overtaken = arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(overtaken > 100, "only {overtaken} datagrams overtaken");
    }

    #[test]
    fn corruption_changes_the_datagram() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..1000 {
            let orig = dgram(64);
            let mut d = orig.clone();
            corrupt(&mut rng, &mut d);
            assert_ne!(d, orig);
        }
    }

    #[test]
    fn down_link_and_filter_drop() {
        let mut link = Link::new(LinkConfig::new(), 1);
        link.set_up(false);
        assert!(link.send(0, dgram(10)).is_empty());
        link.set_up(true);
        link.set_filter(Box::new(|_, d, _| {
            d[0] = 1;
            d.len() > 5
        }));
        assert!(link.send(0, dgram(5)).is_empty());
        assert_eq!(link.send(0, dgram(6))[0].1[0], 1);
        let s = link.stats();
        assert_eq!((s.down_drops, s.filtered, s.offered_datagrams), (1, 1, 3));
    }

    fn run(seed: u64) -> (Vec<(u64, Vec<u8>)>, LinkStats) {
        let cfg = LinkConfig::new()
            .mbps(1.0)
            .queue_bytes(20_000)
            .loss(0.05)
            .burst_loss(0.02, 0.3, 0.7)
            .reorder(0.1, 5_000)
            .duplicate(0.05)
            .corrupt(0.05);
        let mut link = Link::new(cfg, seed);
        let mut out = Vec::new();
        for i in 0..5_000u64 {
            let len = 50 + (i as usize * 37) % 1400;
            out.extend(link.send(i * 1_000, vec![i as u8; len]));
        }
        (out, link.stats().clone())
    }

    #[test]
    fn same_seed_same_outcome() {
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a.0, run(43).0);
        assert!(a.1.queue_drops > 0 && a.1.wire_losses() > 0, "{:?}", a.1);
    }

    #[test]
    fn percentiles() {
        assert_eq!(percentile(&mut [], 50.0), None);
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50));
        assert_eq!(percentile(&mut v, 95.0), Some(95));
        assert_eq!(percentile(&mut v, 0.0), Some(1));
        assert_eq!(percentile(&mut v, 100.0), Some(100));
    }
}
