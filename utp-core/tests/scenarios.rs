//! End-to-end scenarios: two or more endpoints on the deterministic simulated
//! network of `utp_core::sim`.
//!
//! Every scenario is reproducible from its seed: failures print it, and
//! `UTP_SIM_SEED=<seed>` reruns a scenario with that seed. Each scenario
//! prints one `SUMMARY` line; collect them with
//!
//! ```text
//! cargo test -p utp-core --release --test scenarios -- --nocapture --test-threads=1 | grep SUMMARY
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use utp_core::sim::{
    self, millis, secs, wire, Flow, FlowPlan, LinkConfig, LinkId, Network, NodeId,
};
use utp_core::{CongestionKind, ConnectionError, EndpointConfig, Event};

// ---------------------------------------------------------------------------
// Helpers

const KB: u64 = 1024;
const MB: u64 = 1024 * 1024;

/// A two-node setup: `a` connects to `b`.
struct Pair {
    seed: u64,
    net: Network,
    a: NodeId,
    b: NodeId,
    /// Link a -> b and b -> a.
    ab: LinkId,
    ba: LinkId,
    wall: Instant,
}

impl Pair {
    fn new(seed: u64, a_to_b: LinkConfig, b_to_a: LinkConfig) -> Self {
        Self::with_configs(
            seed,
            a_to_b,
            b_to_a,
            EndpointConfig::default(),
            EndpointConfig::default(),
        )
    }

    fn with_configs(
        seed: u64,
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
        cfg_a: EndpointConfig,
        cfg_b: EndpointConfig,
    ) -> Self {
        let mut net = Network::new(seed);
        let a = net.add_node(sim::addr(1), cfg_a);
        let b = net.add_node(sim::addr(2), cfg_b);
        let (ab, ba) = net.connect_nodes(a, b, a_to_b, b_to_a);
        Pair {
            seed,
            net,
            a,
            b,
            ab,
            ba,
            wall: Instant::now(),
        }
    }

    /// `a` sends `a_bytes` to `b` while `b` sends `b_bytes` to `a`; both shut
    /// down their write half when done. Runs until both saw EOF; panics with
    /// the network state if the deadline passes first.
    fn bidirectional(&mut self, name: &str, a_bytes: u64, b_bytes: u64, deadline: u64) -> u64 {
        self.net.accept_with(self.b, FlowPlan::send(b_bytes));
        self.net
            .connect(self.a, sim::addr(2), FlowPlan::send(a_bytes));
        let (a, b) = (self.a, self.b);
        let seed = self.seed;
        self.net
            .run_until_done(deadline, |n| {
                n.peer(a).all_finished() && n.peer(b).all_finished()
            })
            .unwrap_or_else(|e| panic!("{name}: seed {seed}: transfer did not finish: {e}"))
    }

    /// `a` sends `bytes` to a `b` that only receives; runs until `b` saw
    /// EOF (or an error) and checks the stream.
    fn upload(&mut self, name: &str, bytes: u64, deadline: u64) {
        self.net.accept_with(self.b, FlowPlan::sink());
        self.net
            .connect(self.a, sim::addr(2), FlowPlan::send(bytes));
        self.wait_for_b_to_finish(name, deadline, "B never saw EOF");
        assert_exact(name, &self.net, self.flow_b(), bytes);
    }

    /// Run until B's first flow saw EOF or an error; returns when. Panics
    /// with `what` if that does not happen by `deadline`.
    fn wait_for_b_to_finish(&mut self, name: &str, deadline: u64, what: &str) -> u64 {
        let (b, seed) = (self.b, self.seed);
        self.net
            .run_until_done(deadline, |n| {
                n.peer(b)
                    .flows
                    .first()
                    .is_some_and(|f| f.eof_at.is_some() || f.error.is_some())
            })
            .unwrap_or_else(|e| panic!("{name}: seed {seed}: {what}: {e}"))
    }

    /// Run until both nodes finished every flow (plans set up by the caller).
    fn bidirectional_wait(&mut self, name: &str, deadline: u64) -> u64 {
        let (a, b) = (self.a, self.b);
        let seed = self.seed;
        self.net
            .run_until_done(deadline, |n| {
                n.peer(a).all_finished() && n.peer(b).all_finished()
            })
            .unwrap_or_else(|e| panic!("{name}: seed {seed}: transfer did not finish: {e}"))
    }

    fn flow_a(&self) -> &Flow {
        self.net.peer(self.a).first()
    }
    fn flow_b(&self) -> &Flow {
        self.net.peer(self.b).first()
    }
}

/// Assert that `f` received exactly the `expected` bytes of its peer's stream, then EOF, and no error.
fn assert_exact(name: &str, net: &Network, f: &Flow, expected: u64) {
    let seed = net.seed();
    assert!(
        f.mismatch.is_none(),
        "{name}: seed {seed}: stream corrupted at offset {:?}\n{}",
        f.mismatch,
        net.describe()
    );
    assert_eq!(
        f.received,
        expected,
        "{name}: seed {seed}: wrong byte count\n{}",
        net.describe()
    );
    assert!(
        f.eof_at.is_some(),
        "{name}: seed {seed}: no EOF\n{}",
        net.describe()
    );
    assert!(
        f.read_end_at.is_some(),
        "{name}: seed {seed}: read never returned 0\n{}",
        net.describe()
    );
    assert!(
        f.error.is_none(),
        "{name}: seed {seed}: error {:?}\n{}",
        f.error,
        net.describe()
    );
}

/// Retransmissions (timeout + fast) over every flow of every node.
fn total_retransmits(net: &Network) -> (u64, u64) {
    let mut rto = 0;
    let mut fast = 0;
    for n in net.nodes() {
        let olds = n.previous.iter().map(|(_, p)| p);
        for p in std::iter::once(&n.app).chain(olds) {
            for f in &p.flows {
                if let Some(s) = &f.stats {
                    rto += s.timeout_retransmits;
                    fast += s.fast_retransmits;
                }
            }
        }
    }
    (rto, fast)
}

/// Goodput must reach `floor_mbps`: set at about 60 % of what the scenario
/// measured on its default seed, so a slower recovery fails the test.
fn assert_goodput(name: &str, net: &Network, thr_bps: f64, floor_mbps: f64) {
    assert!(
        thr_bps >= floor_mbps * 1e6,
        "{name}: seed {}: goodput {:.2} Mbit/s below {floor_mbps} Mbit/s\n{}",
        net.seed(),
        thr_bps / 1e6,
        net.describe()
    );
}

/// The one-line summary of a scenario: throughput, queueing delay on `link`
/// over `[from, to)`, retransmissions and wall time.
fn summary(
    name: &str,
    net: &Network,
    thr_bps: f64,
    link: LinkId,
    from: u64,
    to: u64,
    wall: Instant,
) {
    let st = net.link(link).stats();
    let ms = |p: f64| {
        st.queue_delay_percentile(from, to, p)
            .map_or(f64::NAN, |d| d as f64 / 1000.0)
    };
    let (rto, fast) = total_retransmits(net);
    println!(
        "SUMMARY {name:<34} seed={:<20} vt={:>7.2}s thr={:>6.2} Mbit/s qdelay med={:>6.1} p95={:>6.1} ms retx={} (rto {rto}, fast {fast}) link_lost={} qdrops={} wall={}ms",
        net.seed(),
        net.now() as f64 / 1e6,
        thr_bps / 1e6,
        ms(50.0),
        ms(95.0),
        rto + fast,
        st.wire_losses(),
        st.queue_drops,
        wall.elapsed().as_millis(),
    );
}

/// Goodput of a finished flow: bytes over the time from its start to EOF.
fn transfer_rate(f: &Flow) -> f64 {
    match f.eof_at {
        Some(t) if t > f.started_at => f.received as f64 * 8e6 / (t - f.started_at) as f64,
        _ => 0.0,
    }
}

/// A 10 Mbit/s, 25 ms one-way link with a queue of `queue_ms`.
fn ten_mbit(queue_ms: u64) -> LinkConfig {
    LinkConfig::new().mbps(10.0).delay_ms(25).queue_ms(queue_ms)
}

/// Run a bidirectional transfer over links with impairments in both
/// directions, check both streams byte by byte, and require the summed
/// goodput of both directions to reach `min_mbps`.
fn impaired_transfer(
    name: &str,
    default_seed: u64,
    link: LinkConfig,
    bytes: u64,
    deadline: u64,
    min_mbps: f64,
) -> Pair {
    let seed = sim::seed_from_env(default_seed);
    let mut p = Pair::new(seed, link.clone(), link);
    p.bidirectional(name, bytes, bytes, deadline);
    assert_exact(name, &p.net, p.flow_b(), bytes);
    assert_exact(name, &p.net, p.flow_a(), bytes);
    let thr = transfer_rate(p.flow_b()) + transfer_rate(p.flow_a());
    summary(name, &p.net, thr, p.ab, 0, u64::MAX, p.wall);
    assert!(
        thr >= min_mbps * 1e6,
        "{name}: seed {seed}: goodput {:.2} Mbit/s below {min_mbps} Mbit/s\n{}",
        thr / 1e6,
        p.net.describe()
    );
    p
}

// ---------------------------------------------------------------------------
// Clean transfers

#[test]
fn clean_bidirectional_4mb() {
    let name = "clean_bidirectional_4mb";
    let seed = sim::seed_from_env(0xC1EA);
    let link = LinkConfig::new().mbps(20.0).delay_ms(10).queue_ms(200);
    let mut p = Pair::new(seed, link.clone(), link);
    p.bidirectional(name, 4 * MB, 4 * MB, secs(60));
    assert_exact(name, &p.net, p.flow_b(), 4 * MB);
    assert_exact(name, &p.net, p.flow_a(), 4 * MB);
    let (a, b) = (p.flow_a(), p.flow_b());
    assert!(a.connected_at.is_some() && b.connected_at.is_some());
    // Both directions at once: each at least a quarter of the 20 Mbit/s.
    for f in [a, b] {
        assert!(
            transfer_rate(f) > 5e6,
            "{name}: seed {seed}: slow transfer {:.2} Mbit/s\n{}",
            transfer_rate(f) / 1e6,
            p.net.describe()
        );
    }
    summary(
        name,
        &p.net,
        transfer_rate(a) + transfer_rate(b),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
}

#[test]
fn clean_transfer_then_close_both() {
    let name = "clean_transfer_then_close_both";
    let seed = sim::seed_from_env(0xC105E);
    let link = LinkConfig::new().mbps(20.0).delay_ms(10).queue_ms(200);
    let mut p = Pair::new(seed, link.clone(), link);
    p.net.accept_with(p.b, FlowPlan::send(MB).and_close());
    p.net
        .connect(p.a, sim::addr(2), FlowPlan::send(MB).and_close());
    let (a, b) = (p.a, p.b);
    let done = |n: &Network| {
        [a, b]
            .iter()
            .all(|&x| n.peer(x).flows.iter().all(|f| f.closed_at.is_some()))
    };
    p.net
        .run_until_done(secs(120), done)
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: both sides should see Closed: {e}"));
    assert_exact(name, &p.net, p.flow_b(), MB);
    assert_exact(name, &p.net, p.flow_a(), MB);
    let closed = p.net.now();
    // The engine may keep a closed connection a little while (to answer a
    // retransmitted FIN), but not forever.
    let gone = p
        .net
        .run_until_done(closed + secs(10), |n| {
            n.endpoint(a).connection_count() + n.endpoint(b).connection_count() == 0
        })
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: connections left 10 s after Closed: {e}"));
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
    println!(
        "  {name}: both Closed at {:.3} s, connection state released {:.3} s later",
        closed as f64 / 1e6,
        (gone - closed) as f64 / 1e6
    );
}

#[test]
fn clean_transfer_is_deterministic() {
    let name = "clean_transfer_is_deterministic";
    let seed = sim::seed_from_env(0xDE7);
    let run = || {
        let link = ten_mbit(200).loss(0.02).reorder(0.05, millis(20));
        let mut p = Pair::new(seed, link.clone(), link);
        let t = p.bidirectional(name, 512 * KB, 512 * KB, secs(120));
        let a = p.flow_a().clone();
        let b = p.flow_b().clone();
        (
            t,
            a.recv_log,
            b.recv_log,
            a.stats,
            b.stats,
            p.net.link(p.ab).stats().clone(),
        )
    };
    let first = run();
    assert!(
        first == run(),
        "{name}: seed {seed}: two runs with the same seed differ"
    );
    println!(
        "SUMMARY {name:<34} seed={seed:<20} vt={:>7.2}s identical=true",
        first.0 as f64 / 1e6
    );
}

// ---------------------------------------------------------------------------
// Impairments

#[test]
fn loss_1_percent() {
    impaired_transfer(
        "loss_1_percent",
        0x1,
        ten_mbit(100).loss(0.01),
        2 * MB,
        secs(120),
        // Measured 5.06 Mbit/s both ways together (2026-12-05); ~60% of it.
        3.0,
    );
}

#[test]
fn loss_5_percent() {
    impaired_transfer(
        "loss_5_percent",
        0x5,
        ten_mbit(100).loss(0.05),
        MB,
        secs(180),
        // Measured 2.12 Mbit/s both ways together (2026-12-05); ~60% of it.
        1.2,
    );
}

#[test]
fn loss_20_percent() {
    impaired_transfer(
        "loss_20_percent",
        0x20,
        ten_mbit(100).loss(0.20),
        256 * KB,
        secs(600),
        // Measured 0.42 Mbit/s both ways together (2026-12-05); ~60% of it.
        0.2,
    );
}

#[test]
fn burst_loss() {
    // Bad state ~3% of the time, bursts of ~3 datagrams, ~2.6% loss overall.
    impaired_transfer(
        "burst_loss",
        0xB0,
        ten_mbit(100).burst_loss(0.01, 0.3, 0.8),
        MB,
        secs(180),
        // Measured 7.61 Mbit/s both ways together (2026-12-05); ~60% of it.
        4.5,
    );
}

#[test]
fn reordering() {
    // 10% of datagrams held back by up to 30 ms (more than the 25 ms path delay).
    let p = impaired_transfer(
        "reordering",
        0x0D,
        ten_mbit(100).reorder(0.10, millis(30)),
        2 * MB,
        secs(120),
        // Measured 2.80 Mbit/s both ways together (2026-12-05); ~60% of it.
        1.6,
    );
    assert!(p.net.link(p.ab).stats().reordered > 100);
}

#[test]
fn duplication() {
    let p = impaired_transfer(
        "duplication",
        0xD0,
        ten_mbit(100).duplicate(0.05),
        2 * MB,
        secs(120),
        // Measured 10.00 Mbit/s both ways together (2026-12-05); ~60% of it.
        6.0,
    );
    let dup_rx: u64 = [p.flow_a(), p.flow_b()]
        .iter()
        .filter_map(|f| f.stats.as_ref())
        .map(|s| s.duplicates_received)
        .sum();
    println!("  duplication: link duplicated {} datagrams, endpoints counted {dup_rx} duplicate data packets", p.net.link(p.ab).stats().duplicated + p.net.link(p.ba).stats().duplicated);
}

#[test]
fn everything_at_once() {
    let link = ten_mbit(150)
        .loss(0.01)
        .burst_loss(0.005, 0.3, 0.7)
        .reorder(0.05, millis(20))
        .duplicate(0.02);
    // Measured 2.64 Mbit/s both ways together (2026-12-05); ~60% of it.
    impaired_transfer("everything_at_once", 0xA11, link, MB, secs(300), 1.5);
}

/// A filter that corrupts a fraction `p` of the datagrams in ways every uTP
/// parser must reject: bad version, bad type, shorter than a header, or an
/// extension chain that runs past the end. These must behave like losses.
fn detectable_corruption(p: f64, counter: Rc<RefCell<u64>>) -> sim::LinkFilter {
    use rand::Rng;
    Box::new(move |_, d, rng| {
        if d.len() < 20 || !rng.gen_bool(p) {
            return true;
        }
        *counter.borrow_mut() += 1;
        match rng.gen_range(0..4) {
            0 => d[0] = (d[0] & 0xf0) | [0u8, 2, 3, 15][rng.gen_range(0..4)],
            1 => d[0] = (rng.gen_range(5u8..16) << 4) | (d[0] & 0x0f),
            2 => d.truncate(rng.gen_range(0..20)),
            _ => {
                // Extension "SACK" whose length runs far past the end.
                d.truncate(20);
                d[1] = 1;
                d.extend_from_slice(&[0, 200, 0, 0]);
            }
        }
        true
    })
}

#[test]
fn corruption_detectable_behaves_like_loss() {
    let name = "corruption_detectable";
    let seed = sim::seed_from_env(0xC0);
    let mut p = Pair::new(seed, ten_mbit(100), ten_mbit(100));
    let count = Rc::new(RefCell::new(0));
    p.net
        .set_link_filter(p.ab, detectable_corruption(0.03, count.clone()));
    p.net
        .set_link_filter(p.ba, detectable_corruption(0.03, count.clone()));
    p.bidirectional(name, MB, MB, secs(180));
    assert_exact(name, &p.net, p.flow_b(), MB);
    assert_exact(name, &p.net, p.flow_a(), MB);
    assert!(
        *count.borrow() > 20,
        "{name}: seed {seed}: only {} corrupted",
        count.borrow()
    );
    println!("  {name}: {} datagrams corrupted", count.borrow());
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
}

/// uTP has no checksum (UDP's catches corruption on real networks), so a
/// flipped payload byte cannot be detected by any implementation. With
/// corruption anywhere the engine must not panic or livelock; the outcome is
/// reported, not asserted.
#[test]
fn corruption_anywhere_no_panic() {
    let name = "corruption_anywhere";
    let base = 0xC1;
    let seeds = sweep_seeds(base, 8);
    let wall = Instant::now();
    let mut outcomes = BTreeMap::new();
    for seed in seeds {
        let link = ten_mbit(100).corrupt(0.02);
        let mut p = Pair::new(seed, link.clone(), link);
        p.net.accept_with(p.b, FlowPlan::send(256 * KB));
        p.net.connect(p.a, sim::addr(2), FlowPlan::send(256 * KB));
        let (a, b) = (p.a, p.b);
        let r = p.net.run_until_done(secs(300), |n| {
            n.peer(a).all_ended() && n.peer(b).all_ended()
        });
        if let Err(e) = &r {
            assert_ne!(
                e.reason,
                sim::StopReason::Livelock,
                "{name}: seed {seed}: {e}"
            );
        }
        let f = |x: NodeId| p.net.peer(x).flows.first().cloned();
        let describe = |f: Option<Flow>| match f {
            None => "no connection".to_string(),
            Some(f) if f.error.is_some() => format!("error {:?}", f.error.unwrap().1),
            Some(f) if f.mismatch.is_some() => "corrupted stream".to_string(),
            Some(f) if f.eof_at.is_some() && f.received == 256 * KB => "exact".to_string(),
            Some(f) if f.eof_at.is_some() => format!("EOF after {} bytes", f.received),
            Some(f) => format!("stuck at {} bytes", f.received),
        };
        let key = format!("a:{} / b:{}", describe(f(a)), describe(f(b)));
        *outcomes.entry(key).or_insert(0) += 1;
    }
    println!(
        "SUMMARY {name:<34} seed={base:<20} outcomes={outcomes:?} wall={}ms",
        wall.elapsed().as_millis()
    );
}

/// Seeds for a sweep: just the one from `UTP_SIM_SEED` if set, else `runs`
/// consecutive ones from `base` (`UTP_SIM_RUNS` overrides `runs`).
fn sweep_seeds(base: u64, runs: u64) -> Vec<u64> {
    if std::env::var(sim::SEED_ENV).is_ok() {
        return vec![sim::seed_from_env(base)];
    }
    let runs = std::env::var("UTP_SIM_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(runs);
    (0..runs).map(|i| base + i).collect()
}

/// Many seeds, small transfers, all impairments: a net for rare bugs.
#[test]
fn chaos_sweep() {
    let name = "chaos_sweep";
    let base = 0xCA05;
    let seeds = sweep_seeds(base, 16);
    let wall = Instant::now();
    let mut vt = Vec::new();
    for seed in seeds {
        let link = ten_mbit(80)
            .loss(0.03)
            .burst_loss(0.01, 0.4, 0.6)
            .reorder(0.08, millis(40))
            .duplicate(0.03);
        let mut p = Pair::new(seed, link.clone(), link);
        let bytes = 128 * KB + seed % 5000;
        let t = p.bidirectional(name, bytes, bytes / 2, secs(600));
        assert_exact(name, &p.net, p.flow_b(), bytes);
        assert_exact(name, &p.net, p.flow_a(), bytes / 2);
        vt.push(t as f64 / 1e6);
    }
    vt.sort_by(f64::total_cmp);
    println!(
        "SUMMARY {name:<34} seed={base:<20} runs={} vt_median={:.2}s vt_max={:.2}s wall={}ms",
        vt.len(),
        vt[vt.len() / 2],
        vt[vt.len() - 1],
        wall.elapsed().as_millis()
    );
}

// ---------------------------------------------------------------------------
// Bottleneck: LEDBAT and Reno

const TARGET_US: u64 = 100_000;

/// Senders `addr(1..)` with the given controllers, all sending to `addr(100)`
/// through one 10 Mbit/s, 1 s-buffer, 50 ms-RTT bottleneck.
struct Dumbbell {
    seed: u64,
    net: Network,
    senders: Vec<NodeId>,
    receiver: NodeId,
    up: LinkId,
    wall: Instant,
}

impl Dumbbell {
    fn new(seed: u64, kinds: &[CongestionKind]) -> Self {
        Self::new_at(seed, kinds, 0)
    }

    fn new_at(seed: u64, kinds: &[CongestionKind], start: u64) -> Self {
        let mut net = Network::new_at(seed, start);
        let receiver = net.add_node(sim::addr(100), EndpointConfig::default());
        let up = net.add_link(ten_mbit(1000));
        let down = net.add_link(ten_mbit(1000));
        let senders = kinds
            .iter()
            .enumerate()
            .map(|(i, &congestion)| {
                let s = net.add_node(
                    sim::addr(1 + i as u8),
                    EndpointConfig {
                        congestion,
                        ..Default::default()
                    },
                );
                net.route(s, receiver, up);
                net.route(receiver, s, down);
                s
            })
            .collect();
        net.accept_with(receiver, FlowPlan::sink());
        Dumbbell {
            seed,
            net,
            senders,
            receiver,
            up,
            wall: Instant::now(),
        }
    }

    /// Start backlogged flows at the given times, then run until `end`.
    fn run(&mut self, name: &str, starts: &[u64], end: u64) {
        let mut order: Vec<(u64, NodeId)> = starts
            .iter()
            .copied()
            .zip(self.senders.iter().copied())
            .collect();
        order.sort();
        for (t, s) in order {
            self.net
                .run_until(t)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            self.net.connect(s, sim::addr(100), FlowPlan::unbounded());
        }
        self.net
            .run_until(end)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let seed = self.seed;
        for f in &self.net.peer(self.receiver).flows {
            assert!(
                f.mismatch.is_none() && f.error.is_none(),
                "{name}: seed {seed}: {f}"
            );
        }
    }

    /// Goodput (bits/s) of sender `i` measured at the receiver over `[from, to)`.
    fn goodput(&self, i: usize, from: u64, to: u64) -> f64 {
        let addr = self.net.addr(self.senders[i]);
        let peer = self.net.peer(self.receiver);
        let f = peer.flows.iter().find(|f| f.remote == Some(addr));
        f.map_or(0.0, |f| f.goodput_bps(from, to))
    }

    fn qdelay_ms(&self, from: u64, to: u64, p: f64) -> f64 {
        self.net
            .link(self.up)
            .stats()
            .queue_delay_percentile(from, to, p)
            .unwrap_or(0) as f64
            / 1000.0
    }

    fn utilisation(&self, from: u64, to: u64) -> f64 {
        self.net.link(self.up).stats().throughput_bps(from, to) / 10e6
    }
}

#[test]
fn bottleneck_ledbat_keeps_delay_near_target() {
    let name = "bottleneck_ledbat_alone";
    let seed = sim::seed_from_env(0x1EDBA7);
    let mut d = Dumbbell::new(seed, &[CongestionKind::Ledbat]);
    let (from, to) = (secs(10), secs(40));
    d.run(name, &[0], to);
    let (med, p95, util) = (
        d.qdelay_ms(from, to, 50.0),
        d.qdelay_ms(from, to, 95.0),
        d.utilisation(from, to),
    );
    summary(name, &d.net, d.goodput(0, from, to), d.up, from, to, d.wall);
    let target = TARGET_US as f64 / 1000.0;
    assert!(
        (0.5 * target..=1.5 * target).contains(&med),
        "{name}: seed {seed}: median queueing delay {med:.1} ms (p95 {p95:.1}), target {target} ms\n{}",
        d.net.describe()
    );
    assert!(
        util >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%\n{}",
        util * 100.0,
        d.net.describe()
    );
}

#[test]
fn bottleneck_reno_fills_the_buffer() {
    let name = "bottleneck_reno_alone";
    let seed = sim::seed_from_env(0x2E40);
    let mut d = Dumbbell::new(seed, &[CongestionKind::Reno]);
    let (from, to) = (secs(10), secs(40));
    d.run(name, &[0], to);
    let (med, util) = (d.qdelay_ms(from, to, 50.0), d.utilisation(from, to));
    summary(name, &d.net, d.goodput(0, from, to), d.up, from, to, d.wall);
    // The default 1 MiB send/receive buffers cap Reno at ~0.8 s of queue.
    assert!(
        med > 3.0 * TARGET_US as f64 / 1000.0,
        "{name}: seed {seed}: Reno kept the queue at {med:.1} ms\n{}",
        d.net.describe()
    );
    assert!(
        util >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%\n{}",
        util * 100.0,
        d.net.describe()
    );
}

#[test]
fn bottleneck_ledbat_yields_to_reno() {
    let name = "bottleneck_ledbat_vs_reno";
    let seed = sim::seed_from_env(0x1E7D);
    let mut d = Dumbbell::new(seed, &[CongestionKind::Ledbat, CongestionKind::Reno]);
    let (from, to) = (secs(15), secs(45));
    // LEDBAT first (it has the link to itself), Reno joins.
    d.run(name, &[0, secs(5)], to);
    let (ledbat, reno) = (d.goodput(0, from, to), d.goodput(1, from, to));
    let share = reno / (ledbat + reno);
    summary(name, &d.net, ledbat + reno, d.up, from, to, d.wall);
    for &s in &d.senders {
        println!("  {name}: sender {}", d.net.peer(s).first());
    }
    println!(
        "  {name}: ledbat {:.2} Mbit/s, reno {:.2} Mbit/s, reno share {:.1}%",
        ledbat / 1e6,
        reno / 1e6,
        share * 100.0
    );
    assert!(
        share >= 0.75,
        "{name}: seed {seed}: Reno only got {:.1}% (LEDBAT {:.2} Mbit/s, Reno {:.2} Mbit/s)\n{}",
        share * 100.0,
        ledbat / 1e6,
        reno / 1e6,
        d.net.describe()
    );
    assert!(
        d.utilisation(from, to) >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%",
        d.utilisation(from, to) * 100.0
    );
}

#[test]
fn bottleneck_two_ledbat_share_fairly() {
    let name = "bottleneck_two_ledbat";
    let seed = sim::seed_from_env(0x2_1EDBA7);
    let mut d = Dumbbell::new(seed, &[CongestionKind::Ledbat, CongestionKind::Ledbat]);
    let (from, to) = (secs(15), secs(45));
    d.run(name, &[0, 0], to);
    let x = [d.goodput(0, from, to), d.goodput(1, from, to)];
    let jain = sim::jain_index(&x);
    summary(name, &d.net, x[0] + x[1], d.up, from, to, d.wall);
    println!(
        "  {name}: flows {:.2} / {:.2} Mbit/s, Jain index {jain:.3}",
        x[0] / 1e6,
        x[1] / 1e6
    );
    assert!(
        jain >= 0.95,
        "{name}: seed {seed}: unfair: {:.2} vs {:.2} Mbit/s (Jain {jain:.3})\n{}",
        x[0] / 1e6,
        x[1] / 1e6,
        d.net.describe()
    );
    assert!(
        d.utilisation(from, to) >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%",
        d.utilisation(from, to) * 100.0
    );
}

// ---------------------------------------------------------------------------
// Failures and connection teardown

/// Run until the first flow of `node` reports an error; returns its time and kind.
fn wait_for_error(
    name: &str,
    net: &mut Network,
    node: NodeId,
    deadline: u64,
) -> (u64, ConnectionError) {
    let seed = net.seed();
    net.run_until_done(deadline, |n| {
        n.peer(node)
            .flows
            .first()
            .is_some_and(|f| f.error.is_some())
    })
    .unwrap_or_else(|e| panic!("{name}: seed {seed}: expected a connection error: {e}"));
    net.peer(node).first().error.expect("checked")
}

fn connect_timeout_case(name: &str, seed: u64, config: EndpointConfig, blackhole_node: bool) {
    let timeout = config.connect_timeout_us;
    let mut net = Network::new(seed);
    net.trace = true;
    let wall = Instant::now();
    let a = net.add_node(sim::addr(1), config);
    let link = if blackhole_node {
        let b = net.add_node(sim::addr(2), EndpointConfig::default());
        let (ab, _) = net.connect_nodes(a, b, ten_mbit(100), ten_mbit(100));
        net.link_mut(ab).set_up(false);
        ab
    } else {
        net.add_link(ten_mbit(100))
    };
    let h = net.connect(a, sim::addr(2), FlowPlan::send(MB));
    let (t, err) = wait_for_error(name, &mut net, a, timeout + secs(60));
    let syns = net
        .trace_log()
        .iter()
        .filter(|e| !e.delivered && e.header.is_some_and(|h| h.packet_type == wire::ST_SYN))
        .count();
    summary(name, &net, 0.0, link, 0, u64::MAX, wall);
    println!(
        "  {name}: {err:?} after {:.3} s (connect timeout {:.3} s), {syns} SYNs sent",
        t as f64 / 1e6,
        timeout as f64 / 1e6
    );
    assert!(
        matches!(err, ConnectionError::TimedOut | ConnectionError::Refused),
        "{name}: seed {seed}: {err:?}"
    );
    assert!(
        t >= timeout * 9 / 10 && t <= timeout + secs(1),
        "{name}: seed {seed}: gave up after {:.3} s, connect timeout is {:.3} s",
        t as f64 / 1e6,
        timeout as f64 / 1e6
    );
    assert!(
        syns >= 2,
        "{name}: seed {seed}: the SYN was never retransmitted ({syns} sent)"
    );
    let f = net.peer(a).first();
    assert!(f.connected_at.is_none() && f.handle == h);
    assert!(f
        .events
        .iter()
        .all(|(_, e)| !matches!(e, Event::Connected(_))));
}

#[test]
fn connect_to_nobody_times_out() {
    let seed = sim::seed_from_env(0x0B0D1);
    connect_timeout_case(
        "connect_to_nobody_default",
        seed,
        EndpointConfig::default(),
        false,
    );
}

#[test]
fn connect_timeout_follows_config() {
    let seed = sim::seed_from_env(0x0B0D2);
    let config = EndpointConfig {
        connect_timeout_us: secs(5),
        ..Default::default()
    };
    connect_timeout_case("connect_to_nobody_5s", seed, config, false);
}

#[test]
fn connect_with_syns_dropped_times_out() {
    let seed = sim::seed_from_env(0x0B0D3);
    connect_timeout_case(
        "connect_syns_dropped",
        seed,
        EndpointConfig::default(),
        true,
    );
}

#[test]
fn connect_to_non_accepting_node_fails() {
    let name = "connect_non_accepting";
    let seed = sim::seed_from_env(0x0B0D4);
    let cfg_b = EndpointConfig {
        accept_incoming: false,
        ..Default::default()
    };
    let mut p = Pair::with_configs(
        seed,
        ten_mbit(100),
        ten_mbit(100),
        EndpointConfig::default(),
        cfg_b,
    );
    p.net.connect(p.a, sim::addr(2), FlowPlan::send(MB));
    let timeout = EndpointConfig::default().connect_timeout_us;
    let (t, err) = wait_for_error(name, &mut p.net, p.a, timeout + secs(60));
    summary(name, &p.net, 0.0, p.ab, 0, u64::MAX, p.wall);
    println!("  {name}: {err:?} after {:.3} s", t as f64 / 1e6);
    assert!(
        matches!(err, ConnectionError::TimedOut | ConnectionError::Refused),
        "{name}: seed {seed}: {err:?}"
    );
    assert!(
        t <= timeout + secs(1),
        "{name}: seed {seed}: took {:.3} s",
        t as f64 / 1e6
    );
    assert!(
        p.net.peer(p.b).flows.is_empty(),
        "{name}: seed {seed}: B accepted a connection"
    );
}

#[test]
fn peer_vanishes_mid_transfer() {
    let name = "peer_vanishes_mid_transfer";
    let seed = sim::seed_from_env(0x7A815);
    let mut p = Pair::new(seed, ten_mbit(100), ten_mbit(100));
    p.net.connect(p.a, sim::addr(2), FlowPlan::unbounded());
    let vanish = secs(3);
    p.net
        .run_until(vanish)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let before = p.flow_b().received;
    assert!(
        before > 100 * KB,
        "{name}: seed {seed}: only {before} bytes before the peer vanished\n{}",
        p.net.describe()
    );
    p.net.link_mut(p.ab).set_up(false);
    p.net.link_mut(p.ba).set_up(false);
    let (t, err) = wait_for_error(name, &mut p.net, p.a, vanish + secs(120));
    summary(
        name,
        &p.net,
        p.flow_b().goodput_bps(0, vanish),
        p.ab,
        0,
        vanish,
        p.wall,
    );
    println!(
        "  {name}: {err:?} {:.3} s after the peer vanished ({before} bytes delivered)",
        (t - vanish) as f64 / 1e6
    );
    assert_eq!(err, ConnectionError::TimedOut, "{name}: seed {seed}");
    // libutp gives up after ~31 RTOs' worth of back-off (about 31 s with a 1 s RTO).
    assert!(
        t - vanish <= secs(60),
        "{name}: seed {seed}: took {:.3} s to give up",
        (t - vanish) as f64 / 1e6
    );
    assert!(
        p.flow_b().mismatch.is_none(),
        "{name}: seed {seed}: corrupted stream"
    );
}

#[test]
fn peer_restarts_mid_transfer_reset() {
    let name = "peer_restarts_reset";
    let seed = sim::seed_from_env(0x2E5E7);
    let mut p = Pair::new(seed, ten_mbit(100), ten_mbit(100));
    p.net.connect(p.a, sim::addr(2), FlowPlan::unbounded());
    let restart = secs(3);
    p.net
        .run_until(restart)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        p.flow_b().received > 100 * KB,
        "{name}: seed {seed}: transfer did not start\n{}",
        p.net.describe()
    );
    p.net.trace = true;
    p.net.restart_node(p.b, EndpointConfig::default());
    let (t, err) = wait_for_error(name, &mut p.net, p.a, restart + secs(30));
    let resets = p
        .net
        .trace_log()
        .iter()
        .filter(|e| !e.delivered && e.header.is_some_and(|h| h.packet_type == wire::ST_RESET))
        .count();
    summary(name, &p.net, 0.0, p.ab, 0, restart, p.wall);
    println!(
        "  {name}: {err:?} {:.3} s after the restart, {resets} RESETs sent",
        (t - restart) as f64 / 1e6
    );
    assert_eq!(
        err,
        ConnectionError::Reset,
        "{name}: seed {seed}\n{}",
        p.net.describe()
    );
    assert!(
        t - restart <= secs(5),
        "{name}: seed {seed}: took {:.3} s",
        (t - restart) as f64 / 1e6
    );
    assert!(
        p.net.peer(p.b).flows.is_empty(),
        "{name}: seed {seed}: the restarted node accepted a stale connection"
    );
}

/// Watches the a->b link: drops the first transmission of the data packets
/// that carry stream offsets `[lo, hi)`, and notes when the FIN and the
/// retransmissions of the dropped packets pass.
#[derive(Debug, Default)]
struct HoleProbe {
    next_offset: u64,
    first_seen: BTreeSet<u16>,
    dropped: BTreeSet<u16>,
    retransmitted_at: BTreeMap<u16, u64>,
    fin_at: Option<u64>,
}

#[test]
fn fin_arrives_before_missing_data() {
    let name = "fin_with_missing_data";
    let seed = sim::seed_from_env(0xF1);
    let total = 300 * KB;
    let (lo, hi) = (total - 10 * 1400, total - 2 * 1400);
    let mut p = Pair::new(seed, ten_mbit(100), ten_mbit(100));
    let probe = Rc::new(RefCell::new(HoleProbe::default()));
    let pr = probe.clone();
    p.net.set_link_filter(
        p.ab,
        Box::new(move |now, d, _| {
            let Some(h) = wire::peek(d) else { return true };
            let mut pr = pr.borrow_mut();
            match h.packet_type {
                wire::ST_FIN => {
                    pr.fin_at.get_or_insert(now);
                    true
                }
                wire::ST_DATA if h.payload_len > 0 => {
                    if !pr.first_seen.insert(h.seq_nr) {
                        if pr.dropped.contains(&h.seq_nr) {
                            pr.retransmitted_at.entry(h.seq_nr).or_insert(now);
                        }
                        return true;
                    }
                    let off = pr.next_offset;
                    pr.next_offset += h.payload_len as u64;
                    if (lo..hi).contains(&off) {
                        pr.dropped.insert(h.seq_nr);
                        return false;
                    }
                    true
                }
                _ => true,
            }
        }),
    );
    p.upload(name, total, secs(60));
    let pr = probe.borrow();
    let fb = p.flow_b();
    assert!(
        !pr.dropped.is_empty(),
        "{name}: seed {seed}: no packet was dropped: {pr:?}"
    );
    assert_eq!(
        pr.dropped.len(),
        pr.retransmitted_at.len(),
        "{name}: seed {seed}: not every hole was retransmitted: {pr:?}"
    );
    let last_fix = *pr.retransmitted_at.values().max().expect("non-empty");
    let fin_at = pr.fin_at.expect("assert_exact saw EOF, so a FIN passed");
    let eof = fb.eof_at.expect("checked");
    summary(name, &p.net, transfer_rate(fb), p.ab, 0, u64::MAX, p.wall);
    // Measured 4.60 Mbit/s (2026-12-05).
    assert_goodput(name, &p.net, transfer_rate(fb), 2.7);
    println!(
        "  {name}: dropped {} packets, FIN passed at {:.3} s, last hole filled at {:.3} s, EOF at {:.3} s",
        pr.dropped.len(),
        fin_at as f64 / 1e6,
        last_fix as f64 / 1e6,
        eof as f64 / 1e6
    );
    assert!(
        fin_at < last_fix,
        "{name}: seed {seed}: scenario shape: the FIN was only sent after the holes were filled"
    );
    assert!(
        eof > last_fix,
        "{name}: seed {seed}: EOF at {eof} before the last missing packet ({last_fix})"
    );
}

#[test]
fn bottleneck_ledbat_across_timestamp_wrap() {
    // The 32-bit microsecond timestamps on the wire wrap 10 s into the run.
    let name = "bottleneck_ledbat_ts_wrap";
    let seed = sim::seed_from_env(0x3A9);
    let start = (1u64 << 32) - secs(10);
    let mut d = Dumbbell::new_at(seed, &[CongestionKind::Ledbat], start);
    let (from, to) = (start + secs(10), start + secs(40));
    d.run(name, &[start], to);
    let (med, p95, util) = (
        d.qdelay_ms(from, to, 50.0),
        d.qdelay_ms(from, to, 95.0),
        d.utilisation(from, to),
    );
    summary(name, &d.net, d.goodput(0, from, to), d.up, from, to, d.wall);
    let target = TARGET_US as f64 / 1000.0;
    assert!(
        (0.5 * target..=1.5 * target).contains(&med),
        "{name}: seed {seed}: median queueing delay {med:.1} ms (p95 {p95:.1}) after the timestamp wrap\n{}",
        d.net.describe()
    );
    assert!(
        util >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%\n{}",
        util * 100.0,
        d.net.describe()
    );
}

// ---------------------------------------------------------------------------
// Stream semantics

#[test]
fn receiver_stops_reading_zero_window() {
    zero_window_case("zero_window_pause_10s", 0x2E20, secs(10));
}

#[test]
fn receiver_stops_reading_two_minutes() {
    // A receiver that stops reading for two minutes (disk full, application
    // busy) is alive and acknowledging: the sender must wait, not give up.
    zero_window_case("zero_window_pause_120s", 0x2E21, secs(120));
}

fn zero_window_case(name: &str, default_seed: u64, pause: u64) {
    let seed = sim::seed_from_env(default_seed);
    let cfg_b = EndpointConfig {
        recv_buffer: 64 * 1024,
        ..Default::default()
    };
    let link = LinkConfig::new().mbps(20.0).delay_ms(10).queue_ms(200);
    let mut p = Pair::with_configs(seed, link.clone(), link, EndpointConfig::default(), cfg_b);
    let total = 2 * MB;
    p.net.peer_mut(p.b).pause_reads = true;
    p.net.connect(p.a, sim::addr(2), FlowPlan::send(total));
    let resume = pause;
    p.net
        .run_until(resume)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let fa = p.flow_a().clone();
    assert!(
        fa.error.is_none(),
        "{name}: seed {seed}: sender failed while the receiver paused: {fa}"
    );
    let in_flight = fa.stats.as_ref().map_or(0, |s| s.bytes_in_flight);
    let peer_window = fa.stats.as_ref().map_or(0, |s| s.peer_window);
    let sent_during_pause = p.net.link(p.ab).stats().offered_datagrams;
    let b = p.b;
    let h = p.flow_b().handle;
    p.net.peer_mut(b).pause_reads = false;
    p.net.with_node(b, |ep, app, now| app.pump(ep, now, h));
    let t = p
        .net
        .run_until_done(resume + secs(30), |n| n.peer(b).first().eof_at.is_some())
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: no EOF after reading resumed: {e}"));
    assert_exact(name, &p.net, p.flow_b(), total);
    let fb = p.flow_b();
    let first_after = fb
        .recv_log
        .iter()
        .find(|(at, n)| *at >= resume && *n > 64 * KB)
        .map(|(at, _)| *at);
    summary(
        name,
        &p.net,
        fb.goodput_bps(resume, t),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
    // Measured 12.65 Mbit/s from resuming to EOF, both pauses (2026-12-05).
    assert_goodput(name, &p.net, fb.goodput_bps(resume, t), 7.5);
    println!(
        "  {name}: during the {} s pause: {sent_during_pause} datagrams sent, peer window {peer_window}, in flight {in_flight}; after resuming: more than the buffer read at +{:.3} s, EOF at +{:.3} s",
        pause / 1_000_000,
        first_after.map_or(f64::NAN, |t| (t - resume) as f64 / 1e6),
        (t - resume) as f64 / 1e6
    );
    assert!(
        t - resume < secs(10),
        "{name}: seed {seed}: {:.3} s to finish 2 MB after resuming",
        (t - resume) as f64 / 1e6
    );
}

#[test]
fn server_pushes_to_silent_client() {
    // The initiator never writes: the accepted side must still be able to send.
    let name = "server_push_silent_client";
    let seed = sim::seed_from_env(0x5E2F);
    let mut p = Pair::new(seed, ten_mbit(1000), ten_mbit(1000));
    p.net.accept_with(p.b, FlowPlan::send(MB));
    p.net.connect(p.a, sim::addr(2), FlowPlan::sink());
    let a = p.a;
    p.net
        .run_until_done(secs(60), |n| {
            n.peer(a).flows.first().is_some_and(|f| f.eof_at.is_some())
        })
        .unwrap_or_else(|e| {
            panic!("{name}: seed {seed}: the client never got the server's data: {e}")
        });
    assert_exact(name, &p.net, p.flow_a(), MB);
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()),
        p.ba,
        0,
        u64::MAX,
        p.wall,
    );
    // Measured 5.09 Mbit/s (2026-12-05).
    assert_goodput(name, &p.net, transfer_rate(p.flow_a()), 3.0);
}

#[test]
fn half_close_first_then_download() {
    // The initiator sends nothing but a FIN right after connecting, then
    // downloads 2 MB: its peer must deliver the EOF and keep sending.
    let name = "half_close_then_download";
    let seed = sim::seed_from_env(0x4A1F);
    let mut p = Pair::new(seed, ten_mbit(1000), ten_mbit(1000));
    p.net.accept_with(p.b, FlowPlan::send(2 * MB));
    p.net.connect(p.a, sim::addr(2), FlowPlan::fin_only());
    let t = p.bidirectional_wait(name, secs(60));
    assert_exact(name, &p.net, p.flow_b(), 0);
    assert_exact(name, &p.net, p.flow_a(), 2 * MB);
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()),
        p.ba,
        0,
        u64::MAX,
        p.wall,
    );
    // Measured 6.67 Mbit/s (2026-12-05).
    assert_goodput(name, &p.net, transfer_rate(p.flow_a()), 4.0);
    println!(
        "  {name}: B saw EOF at {:.3} s, A finished at {:.3} s",
        p.flow_b().eof_at.unwrap_or(0) as f64 / 1e6,
        t as f64 / 1e6
    );
}

#[test]
fn many_connections_both_ways() {
    let name = "many_connections";
    let seed = sim::seed_from_env(0x3A7);
    let mut p = Pair::new(seed, ten_mbit(1000).loss(0.005), ten_mbit(1000).loss(0.005));
    let bytes = 128 * KB;
    p.net.accept_with(p.a, FlowPlan::send(bytes));
    p.net.accept_with(p.b, FlowPlan::send(bytes));
    for _ in 0..8 {
        p.net.connect(p.a, sim::addr(2), FlowPlan::send(bytes));
        p.net.connect(p.b, sim::addr(1), FlowPlan::send(bytes));
    }
    let (a, b) = (p.a, p.b);
    p.net
        .run_until_done(secs(120), |n| {
            [a, b]
                .iter()
                .all(|&x| n.peer(x).flows.len() == 16 && n.peer(x).all_finished())
        })
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: not every connection finished: {e}"));
    for x in [a, b] {
        for f in &p.net.peer(x).flows {
            assert_exact(name, &p.net, f, bytes);
        }
        assert_eq!(
            p.net.endpoint(x).connection_count(),
            16,
            "{name}: seed {seed}"
        );
    }
    let thr = p
        .net
        .peer(a)
        .flows
        .iter()
        .chain(&p.net.peer(b).flows)
        .map(|f| f.received)
        .sum::<u64>() as f64
        * 8e6
        / p.net.now() as f64;
    summary(name, &p.net, thr, p.ab, 0, u64::MAX, p.wall);
    // Measured 14.92 Mbit/s, both directions together (2026-12-05).
    assert_goodput(name, &p.net, thr, 9.0);
}

#[test]
fn idle_connection_then_transfer() {
    // Connected, then silent for three minutes (longer than the base-delay
    // window and any keep-alive), then a transfer.
    let name = "idle_then_transfer";
    let seed = sim::seed_from_env(0x1D1E);
    let mut p = Pair::new(seed, ten_mbit(1000), ten_mbit(1000));
    p.net.accept_with(p.b, FlowPlan::sink());
    let h = p.net.connect(p.a, sim::addr(2), FlowPlan::sink());
    let idle_end = secs(180);
    p.net
        .run_until(idle_end)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let during_idle =
        p.net.link(p.ab).stats().offered_datagrams + p.net.link(p.ba).stats().offered_datagrams;
    assert!(
        p.flow_a().connected_at.is_some() && p.flow_a().error.is_none(),
        "{name}: seed {seed}: {}",
        p.net.describe()
    );
    let bytes = 512 * KB;
    p.net.with_node(p.a, |ep, app, now| {
        app.set_plan(ep, now, h, FlowPlan::send(bytes))
    });
    let t = p.wait_for_b_to_finish(
        name,
        idle_end + secs(60),
        "transfer after idle did not finish",
    );
    assert_exact(name, &p.net, p.flow_b(), bytes);
    assert!(
        p.flow_a().error.is_none(),
        "{name}: seed {seed}: {}",
        p.flow_a()
    );
    summary(
        name,
        &p.net,
        p.flow_b().goodput_bps(idle_end, t),
        p.ab,
        idle_end,
        u64::MAX,
        p.wall,
    );
    println!(
        "  {name}: {during_idle} datagrams during 180 s idle; 512 KiB took {:.3} s after",
        (t - idle_end) as f64 / 1e6
    );
}

#[test]
fn long_transfer_wraps_sequence_numbers() {
    // More than 65536 packets: the 16-bit sequence numbers wrap at least once.
    let name = "seq_wrap_100mb";
    let seed = sim::seed_from_env(0x5E9);
    let link = LinkConfig::new().mbps(100.0).delay_ms(5).queue_ms(200);
    let mut p = Pair::new(seed, link.clone(), link);
    let total = 100 * MB;
    p.upload(name, total, secs(120));
    let packets = p.flow_a().stats.as_ref().map_or(0, |s| s.packets_sent);
    assert!(
        packets > 65_536,
        "{name}: seed {seed}: only {packets} packets"
    );
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
}

#[test]
fn close_under_loss() {
    let name = "close_under_loss";
    let base = 0xC105;
    let wall = Instant::now();
    let mut outcomes = BTreeMap::new();
    for seed in sweep_seeds(base, 8) {
        let link = ten_mbit(1000).loss(0.05);
        let mut p = Pair::new(seed, link.clone(), link);
        p.net.accept_with(p.b, FlowPlan::send(256 * KB).and_close());
        p.net
            .connect(p.a, sim::addr(2), FlowPlan::send(256 * KB).and_close());
        let (a, b) = (p.a, p.b);
        let ended = |n: &Network, x: NodeId| {
            n.peer(x)
                .flows
                .first()
                .is_some_and(|f| f.closed_at.is_some() || f.error.is_some())
        };
        p.net
            .run_until_done(secs(300), |n| ended(n, a) && ended(n, b))
            .unwrap_or_else(|e| panic!("{name}: seed {seed}: a side never finished closing: {e}"));
        assert_exact(name, &p.net, p.flow_b(), 256 * KB);
        assert_exact(name, &p.net, p.flow_a(), 256 * KB);
        let desc = |f: &Flow| match (f.closed_at, f.error) {
            (Some(_), None) => "Closed".to_string(),
            (_, Some((_, e))) => format!("{e:?}"),
            _ => "?".to_string(),
        };
        *outcomes
            .entry(format!("a:{} b:{}", desc(p.flow_a()), desc(p.flow_b())))
            .or_insert(0) += 1;
        // assert_exact has required no error on either side: both must
        // have finished their close, and promptly once the data was in (a
        // few RTOs at 5 % loss, not the 30 s linger).
        for f in [p.flow_a(), p.flow_b()] {
            let (Some(eof), Some(closed)) = (f.eof_at, f.closed_at) else {
                panic!("{name}: seed {seed}: not closed: {f}");
            };
            let took = closed.saturating_sub(eof);
            assert!(
                took <= secs(10),
                "{name}: seed {seed}: close took {took} µs after EOF: {f}"
            );
        }
    }
    println!(
        "SUMMARY {name:<34} seed={base:<20} outcomes={outcomes:?} wall={}ms",
        wall.elapsed().as_millis()
    );
}

/// 20% loss each way plus reordering over many seeds. Giving up with
/// `TimedOut` after repeated timeouts is legitimate at this loss rate; a
/// corrupted stream, a stall while both sides are alive, or an EOF before
/// all data is not.
#[test]
fn heavy_loss_sweep() {
    let name = "heavy_loss_sweep";
    let base = 0x4EA7;
    let wall = Instant::now();
    let mut outcomes = BTreeMap::new();
    for seed in sweep_seeds(base, 8) {
        let link = ten_mbit(200).loss(0.2).reorder(0.05, millis(30));
        let mut p = Pair::new(seed, link.clone(), link);
        let bytes = 64 * KB;
        p.net.accept_with(p.b, FlowPlan::send(bytes));
        p.net.connect(p.a, sim::addr(2), FlowPlan::send(bytes));
        let (a, b) = (p.a, p.b);
        let done = |n: &Network, x: NodeId| {
            n.peer(x)
                .flows
                .first()
                .is_some_and(|f| f.finished() || f.error.is_some())
        };
        let r = p.net.run_until_done(secs(900), |n| {
            // Done when both ended, or one failed (its peer may legitimately
            // wait forever: a receiver with nothing outstanding has no timer).
            let failed = |x: NodeId| n.peer(x).flows.first().is_some_and(|f| f.error.is_some());
            (done(n, a) && done(n, b))
                || failed(a)
                || failed(b)
                || (n.peer(b).flows.is_empty() && failed(a))
        });
        if let Err(e) = r {
            panic!("{name}: seed {seed}: stalled: {e}");
        }
        let mut key = String::new();
        for (side, f) in [
            ("a", p.net.peer(a).flows.first()),
            ("b", p.net.peer(b).flows.first()),
        ] {
            let Some(f) = f else {
                key += &format!("{side}:none ");
                continue;
            };
            assert!(
                f.mismatch.is_none(),
                "{name}: seed {seed}: corrupted stream: {f}"
            );
            if f.eof_at.is_some() {
                assert_eq!(
                    f.received, bytes,
                    "{name}: seed {seed}: EOF before all data: {f}"
                );
            }
            key += &match f.error {
                Some((_, e)) => format!("{side}:{e:?} "),
                None if f.finished() => format!("{side}:ok "),
                None => format!("{side}:waiting "),
            };
        }
        *outcomes.entry(key.trim().to_string()).or_insert(0) += 1;
    }
    println!(
        "SUMMARY {name:<34} seed={base:<20} outcomes={outcomes:?} wall={}ms",
        wall.elapsed().as_millis()
    );
}

/// Drop the first `n` datagrams of type `packet_type` on a link.
fn drop_first(packet_type: u8, n: usize) -> sim::LinkFilter {
    let mut seen = 0;
    Box::new(move |_, d, _| {
        if wire::peek(d).is_some_and(|h| h.packet_type == packet_type) {
            seen += 1;
            return seen > n;
        }
        true
    })
}

#[test]
fn handshake_survives_lost_syn_ack() {
    // The first SYN-ACK (a STATE packet from the acceptor) is lost; the SYN
    // is retransmitted and must be answered again. (libutp ignores a SYN
    // for a connection it already has, so there the initiator times out.)
    let name = "lost_syn_ack";
    let seed = sim::seed_from_env(0x5A);
    let mut p = Pair::new(seed, ten_mbit(200), ten_mbit(200));
    p.net.set_link_filter(p.ba, drop_first(wire::ST_STATE, 1));
    p.bidirectional(name, 256 * KB, 256 * KB, secs(60));
    assert_exact(name, &p.net, p.flow_b(), 256 * KB);
    assert_exact(name, &p.net, p.flow_a(), 256 * KB);
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
    // Measured 2.32 Mbit/s both ways, the SYN's retransmission included (2026-12-05).
    assert_goodput(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        1.4,
    );
    println!(
        "  {name}: connected after {:.3} s",
        p.flow_a().connected_at.unwrap_or(0) as f64 / 1e6
    );
}

#[test]
fn handshake_survives_lost_first_data() {
    // The acceptor's view of the connection completes with the initiator's
    // first DATA; lose it (and the first SYN too).
    let name = "lost_syn_and_first_data";
    let seed = sim::seed_from_env(0x5B);
    let mut p = Pair::new(seed, ten_mbit(200), ten_mbit(200));
    let mut data_seen = 0;
    let mut syn_seen = 0;
    p.net.set_link_filter(
        p.ab,
        Box::new(move |_, d, _| match wire::peek(d).map(|h| h.packet_type) {
            Some(wire::ST_SYN) => {
                syn_seen += 1;
                syn_seen > 1
            }
            Some(wire::ST_DATA) => {
                data_seen += 1;
                data_seen > 1
            }
            _ => true,
        }),
    );
    p.bidirectional(name, 256 * KB, 256 * KB, secs(60));
    assert_exact(name, &p.net, p.flow_b(), 256 * KB);
    assert_exact(name, &p.net, p.flow_a(), 256 * KB);
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
    // Measured 2.63 Mbit/s both ways, the SYN's retransmission included (2026-12-05).
    assert_goodput(
        name,
        &p.net,
        transfer_rate(p.flow_a()) + transfer_rate(p.flow_b()),
        1.5,
    );
}

#[test]
fn rtt_increase_is_learned_reno() {
    rtt_jump_case("rtt_jump_reno", 0x277, CongestionKind::Reno);
}

#[test]
fn rtt_increase_is_learned_ledbat() {
    // With LEDBAT the window is small here (the old base delay makes the new
    // path look congested for up to the base-delay window), so every packet
    // in flight may be retransmitted before its ACK arrives: only a kept
    // back-off lets a packet be sent once and acknowledged.
    rtt_jump_case("rtt_jump_ledbat", 0x278, CongestionKind::Ledbat);
}

fn rtt_jump_case(name: &str, default_seed: u64, congestion: CongestionKind) {
    // The path RTT jumps from 50 ms to 1.25 s mid-transfer (above the RTO of
    // the short path). After some back-off the sender must take a valid RTT
    // sample and stop timing out spuriously: with Karn's rule, samples only
    // come from packets sent once, so the backed-off RTO has to be kept
    // until one arrives (RFC 6298 5.7).
    let seed = sim::seed_from_env(default_seed);
    let cfg = EndpointConfig {
        congestion,
        ..Default::default()
    };
    let mut p = Pair::with_configs(
        seed,
        ten_mbit(1000),
        ten_mbit(1000),
        cfg,
        EndpointConfig::default(),
    );
    p.net.accept_with(p.b, FlowPlan::sink());
    p.net.connect(p.a, sim::addr(2), FlowPlan::unbounded());
    let jump = secs(5);
    p.net
        .run_until(jump)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for l in [p.ab, p.ba] {
        let cfg = p.net.link(l).config().clone().delay_ms(625);
        p.net.link_mut(l).set_config(cfg);
    }
    let settle = jump + secs(30);
    p.net
        .run_until(settle)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let s0 = p.flow_a().stats.clone().unwrap_or_default();
    let end = settle + secs(30);
    p.net
        .run_until(end)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let s1 = p.flow_a().stats.clone().unwrap_or_default();
    let timeouts = s1.timeouts - s0.timeouts;
    summary(
        name,
        &p.net,
        p.flow_b().goodput_bps(settle, end),
        p.ab,
        settle,
        end,
        p.wall,
    );
    println!(
        "  {name}: over the last 30 s: {timeouts} timeouts, {} timeout retransmits, srtt {:.0} ms, rto {:.0} ms, goodput {:.2} Mbit/s; wire losses {}",
        s1.timeout_retransmits - s0.timeout_retransmits,
        s1.rtt_us as f64 / 1e3,
        s1.rto_us as f64 / 1e3,
        p.flow_b().goodput_bps(settle, end) / 1e6,
        p.net.link(p.ab).stats().wire_losses() + p.net.link(p.ab).stats().queue_drops,
    );
    assert!(
        p.flow_a().error.is_none(),
        "{name}: seed {seed}: {}",
        p.flow_a()
    );
    assert!(
        s1.rtt_us >= 1_000_000,
        "{name}: seed {seed}: srtt {} ms never learned the 1.25 s path\n{}",
        s1.rtt_us / 1000,
        p.net.describe()
    );
    assert!(
        timeouts <= 3,
        "{name}: seed {seed}: {timeouts} spurious timeouts in 30 s on a loss-free path\n{}",
        p.net.describe()
    );
    match congestion {
        // Reno is limited by the 1 MB window: 6.7 Mbit/s at 1.25 s.
        CongestionKind::Reno => {
            let goodput = p.flow_b().goodput_bps(settle, end);
            assert!(
                goodput >= 6.0e6,
                "{name}: seed {seed}: {:.2} Mbit/s on the new path",
                goodput / 1e6
            );
        }
        // LEDBAT takes the longer path's extra delay for a queue and stays
        // at its minimum window until the old base delay ages out of the
        // two-minute history; the base then rises by more than the target,
        // which is read as a path change: slow start back up (measured
        // 3.13 Mbit/s 140-150 s after the jump; 0.01 without it).
        CongestionKind::Ledbat => {
            let (from, to) = (jump + secs(140), jump + secs(150));
            p.net
                .run_until(to)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let goodput = p.flow_b().goodput_bps(from, to);
            println!(
                "  {name}: 140-150 s after the jump: {:.2} Mbit/s",
                goodput / 1e6
            );
            assert!(
                goodput >= 2.0e6,
                "{name}: seed {seed}: {:.2} Mbit/s 140-150 s after the path changed\n{}",
                goodput / 1e6,
                p.net.describe()
            );
        }
    }
}

#[test]
fn long_rtt_path_transfer() {
    // A geostationary-satellite-like path: 1.25 s RTT from the start, longer
    // than the initial RTO. The transfer must finish, and with no loss on the
    // path there should be few timeouts once the RTT is known.
    let name = "long_rtt_path";
    let seed = sim::seed_from_env(0x5A7);
    let link = LinkConfig::new().mbps(10.0).delay_ms(625).queue_ms(1000);
    let mut p = Pair::new(seed, link.clone(), link);
    p.bidirectional(name, 512 * KB, 0, secs(300));
    assert_exact(name, &p.net, p.flow_b(), 512 * KB);
    let s = p.flow_a().stats.clone().unwrap_or_default();
    summary(
        name,
        &p.net,
        transfer_rate(p.flow_b()),
        p.ab,
        0,
        u64::MAX,
        p.wall,
    );
    println!(
        "  {name}: {} timeouts, {} timeout retransmits, {} duplicates at the receiver, srtt {:.0} ms, rto {:.0} ms",
        s.timeouts,
        s.timeout_retransmits,
        p.flow_b().stats.as_ref().map_or(0, |s| s.duplicates_received),
        s.rtt_us as f64 / 1e3,
        s.rto_us as f64 / 1e3
    );
    assert!(
        s.timeouts <= 5,
        "{name}: seed {seed}: {} timeouts on a loss-free path (srtt {} ms)\n{}",
        s.timeouts,
        s.rtt_us / 1000,
        p.net.describe()
    );
}

#[test]
fn bottleneck_ledbat_latecomer_does_not_starve_the_first_flow() {
    // A second LEDBAT flow joining 10 s later measures its base delay on a
    // queue the first one already keeps at the target: the known LEDBAT
    // "latecomer advantage" (RFC 6817 4.4). LEDBAT++'s periodic slowdowns
    // drain the queue so the latecomer learns the true base; without them
    // the first flow starved (0.05 of 9.86 Mbit/s). LEDBAT++'s growth of one
    // packet per RTT right up to the target then evens the two out.
    let name = "bottleneck_ledbat_latecomer";
    let seed = sim::seed_from_env(0x1A7E);
    let mut d = Dumbbell::new(seed, &[CongestionKind::Ledbat, CongestionKind::Ledbat]);
    let (from, to) = (secs(30), secs(60));
    d.run(name, &[0, secs(10)], to);
    let x = [d.goodput(0, from, to), d.goodput(1, from, to)];
    let jain = sim::jain_index(&x);
    summary(name, &d.net, x[0] + x[1], d.up, from, to, d.wall);
    println!(
        "  {name}: first {:.2} / latecomer {:.2} Mbit/s, Jain index {jain:.3}",
        x[0] / 1e6,
        x[1] / 1e6,
    );
    assert!(
        jain >= 0.95,
        "{name}: seed {seed}: unfair: first {:.2} vs latecomer {:.2} Mbit/s (Jain {jain:.3})\n{}",
        x[0] / 1e6,
        x[1] / 1e6,
        d.net.describe()
    );
    assert!(
        d.utilisation(from, to) >= 0.9,
        "{name}: seed {seed}: link utilisation {:.1}%",
        d.utilisation(from, to) * 100.0
    );
}

/// B closes while A is still writing: B answers A's next data with a RESET,
/// so A's writer learns within about a round trip that nobody reads.
fn close_under_writer_case(name: &str, seed: u64, reset_data_after_close: bool) -> Option<u64> {
    let cfg_b = EndpointConfig {
        reset_data_after_close,
        ..Default::default()
    };
    let mut p = Pair::with_configs(
        seed,
        ten_mbit(100),
        ten_mbit(100),
        EndpointConfig::default(),
        cfg_b,
    );
    p.net.connect(p.a, sim::addr(2), FlowPlan::unbounded());
    p.net
        .run_until(secs(2))
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: {e}"));
    let received_before = p.net.peer(p.b).first().received;
    assert!(received_before > 0, "{name}: seed {seed}: nothing arrived");
    let closed_at = p.net.with_node(p.b, |ep, peer, now| {
        ep.close(now, peer.first().handle);
        now
    });
    let sent_before = p.net.peer(p.a).first().sent;
    let _ = p
        .net
        .run_until_done(closed_at + secs(3), |n| n.peer(p.a).first().error.is_some());
    let flow = p.net.peer(p.a).first();
    println!(
        "  {name}: A error {:?}, written after B's close {} bytes",
        flow.error
            .map(|(t, e)| (t.saturating_sub(closed_at) as f64 / 1e6, e)),
        flow.sent - sent_before
    );
    flow.error.map(|(t, e)| {
        assert_eq!(e, ConnectionError::Reset, "{name}: seed {seed}");
        t - closed_at
    })
}

#[test]
fn data_after_close_gets_a_reset_within_a_round_trip() {
    let seed = sim::seed_from_env(0x0C105E);
    let after = close_under_writer_case("data_after_close_reset", seed, true)
        .unwrap_or_else(|| panic!("seed {seed}: the writer never saw a RESET"));
    // Base RTT 50 ms plus up to 100 ms of queue each way: two round trips
    // are at most 500 ms.
    assert!(after <= 500_000, "seed {seed}: RESET after {after} µs");
}

#[test]
fn data_after_close_is_dropped_silently_in_libutp_mode() {
    let seed = sim::seed_from_env(0x0C105F);
    let err = close_under_writer_case("data_after_close_libutp", seed, false);
    assert_eq!(err, None, "seed {seed}: libutp mode must keep acking");
}

/// A receives only; B sends a little, idles (keep-alives only) long past the
/// idle timeout, then vanishes. A must stay up while B lives and fail with
/// `TimedOut` within the idle timeout once B is gone.
#[test]
fn receive_only_side_detects_a_vanished_peer() {
    let name = "vanished_peer";
    let seed = sim::seed_from_env(0x0DEAD);
    let mut p = Pair::new(seed, ten_mbit(100), ten_mbit(100));
    p.net.accept_with(p.b, FlowPlan::send(MB).no_shutdown());
    p.net.connect(p.a, sim::addr(2), FlowPlan::sink());
    p.net
        .run_until(secs(150))
        .unwrap_or_else(|e| panic!("{name}: seed {seed}: {e}"));
    let flow = p.net.peer(p.a).first();
    assert_eq!(flow.received, MB, "{name}: seed {seed}");
    assert_eq!(flow.error, None, "{name}: seed {seed}: a live idle peer");
    let vanished_at = p.net.now();
    p.net.remove_node(p.b);
    let idle = EndpointConfig::default().idle_timeout_us;
    let (t, err) = wait_for_error(name, &mut p.net, p.a, vanished_at + idle + secs(10));
    println!(
        "  {name}: {err:?} {:.3} s after the peer vanished",
        (t - vanished_at) as f64 / 1e6
    );
    assert_eq!(err, ConnectionError::TimedOut, "{name}: seed {seed}");
    assert!(t <= vanished_at + idle, "{name}: seed {seed}: after {t}");
}

/// 10 % random loss each way with 2 % duplication and reordering on a fast,
/// short path (what `scripts/test-matrix.sh` runs through its lossy relay):
/// most losses are recovered by fast retransmits and tail-loss probes (up
/// to 3 in a row), not by the retransmission timer. Measured on the 10
/// default seeds: 41 timeouts in all, slowest 2 MB transfer 3.74 s (30
/// seeds: 115, 3.85 s). Bounds with margin; a regression guard for the
/// probe logic.
#[test]
fn random_loss_is_recovered_mostly_without_timeouts() {
    let name = "random_loss_is_recovered_mostly_without_timeouts";
    let wall = Instant::now();
    let (mut timeouts, mut slowest) = (0, 0u64);
    for seed in sweep_seeds(0x10_55, 10) {
        let link = LinkConfig::new()
            .mbps(1000.0)
            .delay_us(50)
            .queue_ms(50)
            .loss(0.10)
            .duplicate(0.02)
            .reorder(0.02, 100);
        let mut p = Pair::new(seed, link.clone(), link);
        p.upload(name, 2 * MB, secs(60));
        let fb = p.flow_b();
        let took = fb.eof_at.unwrap() - fb.started_at;
        slowest = slowest.max(took);
        timeouts += p.flow_a().stats.as_ref().map_or(0, |s| s.timeouts);
        assert!(took <= secs(3), "{name}: seed {seed}: took {took} µs");
    }
    // Measured 2 timeouts, slowest 1.40 s (2026-12-05; 41 and 3.74 s
    // before tail-loss probes could leave past a congestion window full of
    // packets lost beyond the SACK's reach).
    assert!(
        timeouts <= 10,
        "{name}: {timeouts} retransmission timeouts over 10 seeds"
    );
    println!(
        "SUMMARY {name:<34} timeouts={timeouts} slowest={:.2}s wall={}ms",
        slowest as f64 / 1e6,
        wall.elapsed().as_millis()
    );
}

#[test]
fn receiver_queue_drops_bursts_without_timeouts() {
    // A receiver whose socket buffer holds ~150 packets (Linux's default
    // 208 KiB holds about that many) behind a fast path: slow start overruns it and whole bursts
    // are dropped, more than the peer's SACK bitmask covers. Every hole must
    // be resent from SACK and time-based detection, never by waiting for
    // the retransmission timer.
    let name = "receiver_queue_drops_bursts";
    let wall = Instant::now();
    let (mut timeouts, mut drops, mut slowest) = (0, 0, 0u64);
    for seed in sweep_seeds(0xD20B, 20) {
        // Receivers drain at different speeds: 200 Mbit/s to 1 Gbit/s,
        // 100 to 180 packets of buffer.
        let to_receiver = LinkConfig::new()
            .mbps(200.0 + 100.0 * (seed % 9) as f64)
            .delay_us(50 + 10 * (seed % 7))
            .queue_bytes(1500 * (100 + 10 * (seed % 9) as usize));
        let back = LinkConfig::new().mbps(1000.0).delay_us(50).queue_ms(50);
        let mut p = Pair::new(seed, to_receiver, back);
        p.upload(name, 2 * MB, secs(60));
        let fb = p.flow_b();
        slowest = slowest.max(fb.eof_at.unwrap() - fb.started_at);
        let t = p.flow_a().stats.as_ref().map_or(0, |s| s.timeouts);
        let d = p.net.link(p.ab).stats().queue_drops;
        println!("  {name}: seed {seed}: {d} datagrams dropped, {t} timeouts");
        timeouts += t;
        drops += d;
    }
    println!(
        "SUMMARY {name:<34} drops={drops} timeouts={timeouts} slowest={:.3}s wall={}ms",
        slowest as f64 / 1e6,
        wall.elapsed().as_millis()
    );
    assert!(drops > 0, "{name}: the receiver queue never overflowed");
    assert_eq!(timeouts, 0, "{name}: retransmission timeouts over 20 seeds");
}
