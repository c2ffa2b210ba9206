//! Nodes (an [`Endpoint`] plus a [`Peer`] application each, bound to a
//! simulated address), one-directional [`Link`]s, routes that map node pairs
//! onto links (several pairs may share one bottleneck), and the event loop on
//! a virtual clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::net::SocketAddr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::app::{FlowPlan, Peer};
use super::link::{Link, LinkConfig, LinkFilter};
use crate::endpoint::{ConnectionHandle, Endpoint, EndpointConfig};

/// Index of a node in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// Index of a one-directional link in a [`Network`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkId(pub usize);

/// A simulated host.
#[derive(Debug)]
pub struct Node {
    /// The node's address: the source of its datagrams and the key routes use.
    pub addr: SocketAddr,
    /// The sans-IO engine the network feeds datagrams and time.
    pub endpoint: Endpoint,
    /// The application that drives the endpoint's connections.
    pub app: Peer,
    /// False once removed: datagrams to it vanish, its timers stop.
    pub alive: bool,
    /// Datagrams delivered to the endpoint.
    pub datagrams_in: u64,
    /// Of those, the ones the endpoint reported as
    /// [`DatagramKind::NotUtp`](crate::endpoint::DatagramKind::NotUtp).
    pub not_utp_in: u64,
    /// Endpoints replaced by [`Network::restart_node`], oldest first.
    pub previous: Vec<(Endpoint, Peer)>,
}

/// A datagram handed to a node: sender and contents.
type Arrival = (SocketAddr, Vec<u8>);

/// A datagram on its way.
#[derive(Debug)]
struct InFlight {
    at: u64,
    seq: u64,
    to: NodeId,
    from: SocketAddr,
    data: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Why a run stopped before its goal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The virtual deadline passed.
    Deadline,
    /// Nothing left to happen: no datagram in flight, no timer armed.
    Idle,
    /// Too many steps without the clock moving (an endpoint keeps asking to
    /// be woken at a time that has passed).
    Livelock,
}

/// A failed run: why, when, and a dump of the whole network.
#[derive(Clone, Debug)]
pub struct SimError {
    /// Why the run stopped.
    pub reason: StopReason,
    /// The network's seed, to replay the run (`UTP_SIM_SEED`).
    pub seed: u64,
    /// Virtual time of the stop (µs).
    pub now_us: u64,
    /// [`Network::describe`] at the stop: nodes, flows, links, trace tail.
    pub state: String,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation stopped ({:?}) at t={:.6}s, seed {} (rerun with UTP_SIM_SEED={})\n{}",
            self.reason,
            self.now_us as f64 / 1e6,
            self.seed,
            self.seed,
            self.state
        )
    }
}

impl std::error::Error for SimError {}

/// Counters of the network as a whole.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    /// Calls of [`Network::step`] that found something to do.
    pub steps: u64,
    /// Datagrams sent to an address without a (live) node.
    pub unroutable: u64,
    /// Datagrams between nodes with no route.
    pub no_route: u64,
    /// Datagrams that arrived at a removed node.
    pub dropped_at_dead_node: u64,
}

/// A deterministic network on a virtual clock (µs).
pub struct Network {
    seed: u64,
    rng: ChaCha8Rng,
    now: u64,
    nodes: Vec<Node>,
    by_addr: BTreeMap<SocketAddr, NodeId>,
    links: Vec<Link>,
    routes: BTreeMap<(NodeId, NodeId), LinkId>,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    stats: NetStats,
    same_time_steps: u64,
    /// Steps allowed without the clock advancing before [`StopReason::Livelock`].
    pub livelock_limit: u64,
    /// Record every datagram sent and delivered (see [`TraceEntry`]); on by
    /// default when `UTP_SIM_TRACE` is set, and the tail of the trace is
    /// then part of [`Network::describe`].
    pub trace: bool,
    trace_log: Vec<TraceEntry>,
}

/// One datagram as seen by the network: when it was sent or delivered.
#[derive(Clone, Debug)]
pub struct TraceEntry {
    /// Virtual time of the send or delivery (µs).
    pub at: u64,
    /// True for a delivery to `to`, false for a send by `from`.
    pub delivered: bool,
    /// Sender's address.
    pub from: SocketAddr,
    /// Destination address.
    pub to: SocketAddr,
    /// Datagram length (bytes).
    pub len: usize,
    /// The decoded uTP header, `None` if the datagram is not uTP.
    pub header: Option<super::wire::Peek>,
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>12.6} {} {} -> {} len={}",
            self.at as f64 / 1e6,
            if self.delivered { "rx" } else { "tx" },
            self.from,
            self.to,
            self.len
        )?;
        match self.header {
            Some(h) => write!(
                f,
                " {} conn={} seq={} ack={} payload={}",
                super::wire::type_name(h.packet_type),
                h.connection_id,
                h.seq_nr,
                h.ack_nr,
                h.payload_len
            ),
            None => write!(f, " (not uTP)"),
        }
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("links", &self.links)
            .field("in_flight", &self.queue.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// An empty network whose every random choice derives from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::new_at(seed, 0)
    }

    /// Like [`Network::new`], with the clock starting at `start_us` (e.g.
    /// just before the 32-bit microsecond timestamps wrap).
    pub fn new_at(seed: u64, start_us: u64) -> Self {
        Network {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: start_us,
            nodes: Vec::new(),
            by_addr: BTreeMap::new(),
            links: Vec::new(),
            routes: BTreeMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            stats: NetStats::default(),
            same_time_steps: 0,
            livelock_limit: 1_000_000,
            trace: std::env::var_os(super::TRACE_ENV).is_some_and(|v| v != "0"),
            trace_log: Vec::new(),
        }
    }

    /// The seed the network was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Virtual time (µs).
    pub fn now(&self) -> u64 {
        self.now
    }
    /// Network-wide counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }
    /// Every datagram sent and delivered while [`trace`](Self::trace) was on.
    pub fn trace_log(&self) -> &[TraceEntry] {
        &self.trace_log
    }

    /// Add a node with a fresh endpoint at `addr`.
    pub fn add_node(&mut self, addr: SocketAddr, config: EndpointConfig) -> NodeId {
        assert!(!self.by_addr.contains_key(&addr), "address {addr} taken");
        let id = NodeId(self.nodes.len());
        let endpoint = Endpoint::new(config, self.rng.gen());
        self.nodes.push(Node {
            addr,
            endpoint,
            app: Peer::new(addr),
            alive: true,
            datagrams_in: 0,
            not_utp_in: 0,
            previous: Vec::new(),
        });
        self.by_addr.insert(addr, id);
        id
    }

    /// The node `id`. Panics for an id this network did not issue (as do
    /// the other accessors by id).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }
    /// The node `id`, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.0]
    }
    /// Every node, in the order added (index = [`NodeId`]).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
    /// The endpoint of node `id`.
    pub fn endpoint(&self, id: NodeId) -> &Endpoint {
        &self.nodes[id.0].endpoint
    }
    /// The application of node `id`.
    pub fn peer(&self, id: NodeId) -> &Peer {
        &self.nodes[id.0].app
    }
    /// The application of node `id`, mutably (to change plans, hooks).
    pub fn peer_mut(&mut self, id: NodeId) -> &mut Peer {
        &mut self.nodes[id.0].app
    }
    /// The address of node `id`.
    pub fn addr(&self, id: NodeId) -> SocketAddr {
        self.nodes[id.0].addr
    }

    /// Take a node off the network: datagrams to it vanish and its timers
    /// stop (the host lost power).
    pub fn remove_node(&mut self, id: NodeId) {
        self.nodes[id.0].alive = false;
    }

    /// Replace a node's endpoint with a fresh one (the process restarted and
    /// lost all connection state); the old endpoint and application are kept
    /// in `previous`. The new application accepts with the old accept plan.
    pub fn restart_node(&mut self, id: NodeId, config: EndpointConfig) {
        let seed = self.rng.gen();
        let node = &mut self.nodes[id.0];
        let mut app = Peer::new(node.addr);
        app.accept_plan = node.app.accept_plan;
        let old_ep = std::mem::replace(&mut node.endpoint, Endpoint::new(config, seed));
        let old_app = std::mem::replace(&mut node.app, app);
        node.previous.push((old_ep, old_app));
        node.alive = true;
    }

    /// Add a one-directional link.
    pub fn add_link(&mut self, config: LinkConfig) -> LinkId {
        let id = LinkId(self.links.len());
        self.links.push(Link::new(config, self.rng.gen()));
        id
    }
    /// The link `id` (its settings and counters). Panics for an unknown id.
    pub fn link(&self, id: LinkId) -> &Link {
        &self.links[id.0]
    }
    /// The link `id`, mutably (to change settings, take it down).
    pub fn link_mut(&mut self, id: LinkId) -> &mut Link {
        &mut self.links[id.0]
    }
    /// Install a filter on link `id`; see [`Link::set_filter`].
    pub fn set_link_filter(&mut self, id: LinkId, filter: LinkFilter) {
        self.links[id.0].set_filter(filter);
    }

    /// Datagrams from `from` to `to` travel over `link`.
    pub fn route(&mut self, from: NodeId, to: NodeId, link: LinkId) {
        self.routes.insert((from, to), link);
    }

    /// Connect two nodes with a link in each direction; returns `(a->b, b->a)`.
    pub fn connect_nodes(
        &mut self,
        a: NodeId,
        b: NodeId,
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
    ) -> (LinkId, LinkId) {
        let ab = self.add_link(a_to_b);
        let ba = self.add_link(b_to_a);
        self.route(a, b, ab);
        self.route(b, a, ba);
        (ab, ba)
    }

    /// Set what `node` does on the connections it accepts.
    pub fn accept_with(&mut self, node: NodeId, plan: FlowPlan) {
        self.nodes[node.0].app.accept_plan = plan;
    }

    /// Start a connection from `from` to `to` now, run by the node's [`Peer`] with `plan`.
    pub fn connect(&mut self, from: NodeId, to: SocketAddr, plan: FlowPlan) -> ConnectionHandle {
        let now = self.now;
        let node = &mut self.nodes[from.0];
        let h = node.app.connect(&mut node.endpoint, now, to, plan);
        self.service(from);
        h
    }

    /// Run arbitrary code against a node's endpoint and application now, then
    /// send what it produced.
    pub fn with_node<R>(
        &mut self,
        id: NodeId,
        f: impl FnOnce(&mut Endpoint, &mut Peer, u64) -> R,
    ) -> R {
        let now = self.now;
        let node = &mut self.nodes[id.0];
        let r = f(&mut node.endpoint, &mut node.app, now);
        self.service(id);
        r
    }

    /// Drain a node's events into its application and its datagrams into
    /// the links, until both are empty.
    fn service(&mut self, id: NodeId) {
        let now = self.now;
        loop {
            let node = &mut self.nodes[id.0];
            let mut progressed = false;
            while let Some(ev) = node.endpoint.poll_event() {
                progressed = true;
                node.app.on_event(&mut node.endpoint, now, ev);
            }
            let mut out = Vec::new();
            while let Some(t) = node.endpoint.poll_transmit() {
                out.push(t);
            }
            progressed |= !out.is_empty();
            for t in out {
                self.send(id, t.destination, t.contents);
            }
            if !progressed {
                break;
            }
        }
    }

    fn send(&mut self, from: NodeId, to_addr: SocketAddr, data: Vec<u8>) {
        let from_addr = self.nodes[from.0].addr;
        if self.trace {
            self.trace_log.push(TraceEntry {
                at: self.now,
                delivered: false,
                from: from_addr,
                to: to_addr,
                len: data.len(),
                header: super::wire::peek(&data),
            });
        }
        let Some(&to) = self.by_addr.get(&to_addr) else {
            self.stats.unroutable += 1;
            return;
        };
        let Some(&link) = self.routes.get(&(from, to)) else {
            self.stats.no_route += 1;
            return;
        };
        for (at, data) in self.links[link.0].send(self.now, data) {
            self.next_seq += 1;
            self.queue.push(Reverse(InFlight {
                at,
                seq: self.next_seq,
                to,
                from: from_addr,
                data,
            }));
        }
    }

    /// When the next thing happens (delivery or timer), if anything is pending.
    pub fn next_event_time(&self) -> Option<u64> {
        let delivery = self.queue.peek().map(|r| r.0.at);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.endpoint.poll_timeout())
            .min();
        match (delivery, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advance to the next event and process everything due then: deliveries
    /// (grouped per node, `flush_acks` after each node's batch), then timers.
    /// Returns the new time, or `None` if nothing is pending.
    pub fn step(&mut self) -> Result<Option<u64>, SimError> {
        let Some(next) = self.next_event_time() else {
            return Ok(None);
        };
        if next > self.now {
            self.now = next;
            self.same_time_steps = 0;
        } else {
            self.same_time_steps += 1;
            if self.same_time_steps > self.livelock_limit {
                return Err(self.error(StopReason::Livelock));
            }
        }
        self.stats.steps += 1;
        let now = self.now;

        // Deliveries due now, grouped by destination in order of first arrival.
        let mut batch: Vec<(NodeId, Vec<Arrival>)> = Vec::new();
        while self.queue.peek().is_some_and(|r| r.0.at <= now) {
            let Reverse(d) = self.queue.pop().expect("peeked");
            match batch.iter_mut().find(|(n, _)| *n == d.to) {
                Some((_, v)) => v.push((d.from, d.data)),
                None => batch.push((d.to, vec![(d.from, d.data)])),
            }
        }
        for (id, datagrams) in batch {
            if !self.nodes[id.0].alive {
                self.stats.dropped_at_dead_node += datagrams.len() as u64;
                continue;
            }
            for (from, data) in datagrams {
                if self.trace {
                    self.trace_log.push(TraceEntry {
                        at: now,
                        delivered: true,
                        from,
                        to: self.nodes[id.0].addr,
                        len: data.len(),
                        header: super::wire::peek(&data),
                    });
                }
                let node = &mut self.nodes[id.0];
                node.datagrams_in += 1;
                if node.endpoint.handle_datagram(now, from, &data)
                    == crate::endpoint::DatagramKind::NotUtp
                {
                    node.not_utp_in += 1;
                }
                self.service(id);
            }
            self.nodes[id.0].endpoint.flush_acks(now);
            self.service(id);
        }

        // Timers due now.
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if node.alive && node.endpoint.poll_timeout().is_some_and(|t| t <= now) {
                node.endpoint.handle_timeout(now);
                self.service(NodeId(i));
            }
        }
        Ok(Some(now))
    }

    /// Process everything up to and including `t`, then set the clock to `t`.
    pub fn run_until(&mut self, t: u64) -> Result<(), SimError> {
        while let Some(next) = self.next_event_time() {
            if next > t {
                break;
            }
            self.step()?;
        }
        self.now = self.now.max(t);
        self.snapshot_stats();
        Ok(())
    }

    /// Run until `done(self)` holds; fail if the virtual clock would pass
    /// `deadline_us`, if nothing is left to happen, or on livelock. Returns
    /// the time the goal was reached.
    pub fn run_until_done(
        &mut self,
        deadline_us: u64,
        mut done: impl FnMut(&Network) -> bool,
    ) -> Result<u64, SimError> {
        loop {
            if done(self) {
                self.snapshot_stats();
                return Ok(self.now);
            }
            match self.next_event_time() {
                None => {
                    self.snapshot_stats();
                    return Err(self.error(StopReason::Idle));
                }
                Some(t) if t > deadline_us => {
                    self.now = self.now.max(deadline_us);
                    self.snapshot_stats();
                    return Err(self.error(StopReason::Deadline));
                }
                Some(_) => {
                    self.step()?;
                }
            }
        }
    }

    fn snapshot_stats(&mut self) {
        for n in &mut self.nodes {
            n.app.snapshot_stats(&n.endpoint);
        }
    }

    fn error(&self, reason: StopReason) -> SimError {
        SimError {
            reason,
            seed: self.seed,
            now_us: self.now,
            state: self.describe(),
        }
    }

    /// A multi-line dump: nodes, their flows, links, network counters.
    pub fn describe(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "t={:.6}s seed={} in_flight={} {:?}",
            self.now as f64 / 1e6,
            self.seed,
            self.queue.len(),
            self.stats
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let _ = writeln!(
                s,
                "node {i} {} alive={} datagrams_in={} next_timeout={:?} restarts={} unknown_events={:?}",
                n.addr,
                n.alive,
                n.datagrams_in,
                n.endpoint.poll_timeout(),
                n.previous.len(),
                &n.app.unknown_events[..n.app.unknown_events.len().min(5)],
            );
            for f in &n.app.flows {
                let _ = writeln!(s, "  {f}");
            }
        }
        for (i, l) in self.links.iter().enumerate() {
            let st = l.stats();
            let routes: Vec<String> = self
                .routes
                .iter()
                .filter(|(_, id)| id.0 == i)
                .map(|((a, b), _)| format!("{}->{}", a.0, b.0))
                .collect();
            let _ = writeln!(
                s,
                "link {i} [{}] up={} offered={} delivered={} queue_drops={} lost={} dup={} reord={} corrupt={} filtered={} down={} max_queue={}B",
                routes.join(","),
                l.is_up(),
                st.offered_datagrams,
                st.delivered_datagrams,
                st.queue_drops,
                st.wire_losses(),
                st.duplicated,
                st.reordered,
                st.corrupted,
                st.filtered,
                st.down_drops,
                st.max_queue_bytes,
            );
        }
        if self.trace && !self.trace_log.is_empty() {
            let tail = self.trace_log.len().saturating_sub(TRACE_TAIL);
            let _ = writeln!(
                s,
                "last {} of {} trace entries:",
                self.trace_log.len() - tail,
                self.trace_log.len()
            );
            for e in &self.trace_log[tail..] {
                let _ = writeln!(s, "  {e}");
            }
        }
        s
    }
}

/// Trace entries shown by [`Network::describe`].
const TRACE_TAIL: usize = 60;
