//! The endpoint: one UDP port's worth of connections, demultiplexed by
//! (remote address, connection id). Sans-IO: the caller feeds datagrams and
//! time in, and drains datagrams, events and the next wake-up instant out.
//!
//! Call order for a driver (a runtime thread, the C ABI, the simulator):
//! 1. `handle_datagram` for every received datagram, then `flush_acks` once the batch is drained;
//! 2. `handle_timeout` when `poll_timeout` is reached;
//! 3. after any call, drain `poll_transmit` and `poll_event`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

// Keys come from the network: foldhash is fast and seeded per map.
use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::congestion::CongestionKind;
use crate::connection::{Connection, ConnectionConfig, Io, State};
use crate::packet::{Header, Packet, PacketType, ParseError};
use crate::seq::Seq;
use crate::stats::ConnectionStats;

/// Identifies a connection inside one endpoint.
///
/// Handles are allocated from 1 upwards and never reused by the same
/// endpoint, so a stale handle cannot reach a newer connection; calls with a
/// handle whose connection is gone fail with [`StreamError::InvalidHandle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(
    /// The raw number (never 0 for a handle the endpoint issued).
    pub usize,
);

/// A datagram to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// The peer to send it to (IPv4-mapped IPv6 addresses are folded to IPv4).
    pub destination: SocketAddr,
    /// The whole UDP payload: the uTP header, extensions and data, at most
    /// [`EndpointConfig::max_packet_size`] bytes (as clamped for the connection).
    pub contents: Vec<u8>,
    /// The connection that sent it; `None` for a RESET answering a packet
    /// of no known connection (or a datagram the application asked for).
    pub connection: Option<ConnectionHandle>,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The peer answered our SYN with RESET, or an ICMP error
    /// (unreachable) came back for it. (A peer that never answers gives
    /// `TimedOut`.)
    Refused,
    /// The connection was reset (RESET from the peer or ICMP unreachable)
    /// in any state but waiting for our SYN's answer, or, still half-open,
    /// was evicted by a newer SYN (see [`EndpointConfig::evict_half_open`]).
    /// A RESET after both FINs were acknowledged ends the stream cleanly
    /// instead (unless [`EndpointConfig::close_on_fin_acked`]).
    Reset,
    /// Too many retransmission timeouts in a row
    /// ([`MAX_CONSECUTIVE_TIMEOUTS`](crate::connection::MAX_CONSECUTIVE_TIMEOUTS),
    /// spanning at least [`MIN_GIVE_UP_US`](crate::connection::MIN_GIVE_UP_US)),
    /// the handshake exceeded [`EndpointConfig::connect_timeout_us`], or
    /// nothing arrived for [`EndpointConfig::idle_timeout_us`].
    TimedOut,
}

/// Something the application should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An outgoing connection completed its handshake.
    Connected(ConnectionHandle),
    /// A new incoming connection was accepted.
    Incoming(ConnectionHandle),
    /// New in-order data can be read.
    Readable(ConnectionHandle),
    /// The send buffer has room again after a short write.
    Writable(ConnectionHandle),
    /// Every byte the peer sent has been read out; reads now return 0.
    /// (Emitted once, when the peer's FIN and everything before it arrived.)
    Eof(ConnectionHandle),
    /// The connection failed; reads and writes now return this error.
    Error(ConnectionHandle, ConnectionError),
    /// The connection is finished and its handle is no longer valid
    /// (after `close`, once the close handshake or linger ended).
    Closed(ConnectionHandle),
    /// An incoming connection's peer answered our SYN-ACK (its first DATA
    /// or FIN): its address is proven, the handshake is complete.
    Established(ConnectionHandle),
    /// An ACK of new data brought a one-way delay measurement: our current
    /// queuing delay estimate in µs (at most the round trip), the value
    /// LEDBAT acts on. Only with [`EndpointConfig::report_delay_samples`]
    /// (libutp's `UTP_ON_DELAY_SAMPLE`).
    DelaySample(ConnectionHandle, u32),
}

/// Why a stream call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Nothing to read yet / no room to write yet; wait for an event.
    WouldBlock,
    /// The handshake has not completed yet.
    NotConnected,
    /// The write half was shut down (FIN queued).
    WriteClosed,
    /// The handle is unknown or already closed.
    InvalidHandle,
    /// The connection failed.
    Failed(ConnectionError),
}

/// Endpoint-wide settings; per-connection defaults are copied when a connection is created.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Send buffer (bytes): caps bytes queued + in flight. Default 1 MiB
    /// (libutp's default); 0 is taken as 1.
    pub send_buffer: usize,
    /// Receive buffer (bytes): the window we advertise and enforce.
    /// Default 1 MiB; 0 is taken as 1.
    pub recv_buffer: usize,
    /// LEDBAT target queuing delay (µs). Default 100 000 (BEP 29's 100 ms);
    /// 0 means the default.
    pub target_delay_us: u32,
    /// Which congestion controller new connections use. Default LEDBAT.
    pub congestion: CongestionKind,
    /// Largest UDP payload we send (bytes, uTP header included). Default
    /// 1420; clamped to 148..=65507.
    pub max_packet_size: usize,
    /// Accept incoming SYNs at all. Default true; when false every SYN is
    /// ignored (no answer; counted in [`EndpointStats::syns_refused`]).
    pub accept_incoming: bool,
    /// Upper bound on connections still in the handshake (SYN received, no
    /// data yet); beyond it a new SYN evicts the oldest of them (see
    /// `evict_half_open`) or is ignored. Default 4096.
    pub max_half_open: usize,
    /// At `max_half_open`, a new SYN evicts the oldest half-open connection
    /// (its application hears `ConnectionReset`) instead of being refused,
    /// like a SYN cache: under a flood of forged SYNs a real peer, whose
    /// first packet after our SYN-ACK comes within a round trip, still gets
    /// in. On by default; the libutp-compatible C ABI turns it off (libutp
    /// ignores SYNs when full).
    pub evict_half_open: bool,
    /// Upper bound on connections in total; further SYNs are ignored.
    /// Default 65 536.
    pub max_connections: usize,
    /// How long `close` waits for queued data before giving up (µs).
    /// Default 30 s.
    pub linger_us: u64,
    /// Give up a handshake (ours or the peer's) after this long (µs), failing with
    /// [`ConnectionError::TimedOut`]. Default 21 s.
    pub connect_timeout_us: u64,
    /// libutp's close: after `close`, forget the connection as soon as our
    /// FIN is acknowledged instead of also waiting for the peer's FIN (a
    /// later FIN from the peer then gets a RESET), and close a connection
    /// still in the handshake silently; and, as libutp, report every RESET
    /// for a live connection as an error, even once both FINs were
    /// acknowledged. For the libutp-compatible C ABI.
    pub close_on_fin_acked: bool,
    /// After the SYN-ACK, send an empty DATA when the application has
    /// nothing queued: a libutp acceptor cannot send before the initiator's
    /// first DATA. libutp itself never sends it (and a libutp context answers
    /// an empty DATA for a socket it already closed with RESET), so the
    /// libutp-compatible C ABI turns it off.
    pub announce_on_connect: bool,
    /// Answer new data that arrives after the application closed the
    /// connection with a RESET, as TCP answers data after close with RST:
    /// the writer learns within a round trip that nobody reads, instead of
    /// having its data acknowledged and thrown away until the linger time
    /// ends. Our own queued data is then dropped too. On by default; the
    /// libutp-compatible C ABI turns it off (libutp keeps acknowledging and
    /// dropping).
    pub reset_data_after_close: bool,
    /// Fail a connection with `TimedOut` when nothing at all arrived from
    /// the peer for this long (µs) before its FIN; 0 turns it off. Peers
    /// (ours and libutp) send a keep-alive every 29 s when idle, so the
    /// default of 60 s tolerates one lost keep-alive plus 2 s of round trip,
    /// and bounds how long a receive-only side waits for a vanished peer.
    /// The libutp-compatible C ABI turns it off (libutp has no such limit).
    pub idle_timeout_us: u64,
    /// Emit [`Event::DelaySample`] for every ACK of new data that carries a
    /// delay measurement. Off by default (one event per ACK); the C ABI
    /// turns it on for `UTP_ON_DELAY_SAMPLE`.
    pub report_delay_samples: bool,
    /// Spread each connection's data packets over the round trip at the
    /// congestion window's rate (a small burst allowed) instead of sending
    /// a window at once. On by default: the bursts of many connections
    /// together overran a receiver's socket buffer. Needs the timer serviced
    /// at the pacing deadlines ([`Endpoint::poll_timeout`]); the C ABI turns
    /// it off, since libutp programs call `utp_check_timeouts` only every
    /// 500 ms or so, and libutp does not pace.
    pub pacing: bool,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            target_delay_us: 100_000,
            congestion: CongestionKind::Ledbat,
            max_packet_size: 1420,
            accept_incoming: true,
            // ~2 KB each: 9 MB at most; at 100,000 forged SYNs/s a real
            // peer has 40 ms to answer our SYN-ACK before eviction.
            max_half_open: 4096,
            evict_half_open: true,
            max_connections: 65536,
            linger_us: 30_000_000,
            connect_timeout_us: 21_000_000,
            close_on_fin_acked: false,
            announce_on_connect: true,
            reset_data_after_close: true,
            idle_timeout_us: 60_000_000,
            report_delay_samples: false,
            pacing: true,
        }
    }
}

/// Result of offering a datagram to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramKind {
    /// It was uTP (consumed, whether or not it matched a connection).
    Utp,
    /// Not uTP: offer it to other protocols sharing the port.
    NotUtp,
}

/// Decides whether an incoming connection from this address is accepted.
pub type AcceptFilter = Box<dyn FnMut(SocketAddr) -> bool + Send>;

/// How long a RESET we sent suppresses another for the same packet (µs).
const RESET_MEMORY_US: u64 = 10_000_000;
/// Above this many remembered RESETs we stop answering unknown packets.
const MAX_RESET_RECORDS: usize = 1000;
/// RESETs to unknown connections allowed per second (token bucket).
const RESETS_PER_SECOND: u64 = 100;

struct Entry {
    conn: Connection,
    /// Deadline currently in the timer heap for this connection.
    scheduled: Option<u64>,
    counted_half_open: bool,
    in_ack_list: bool,
}

/// Endpoint-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams that looked like uTP but failed validation.
    pub malformed: u64,
    /// Datagrams that were not uTP at all.
    pub not_utp: u64,
    /// RESETs sent for packets of unknown connections.
    pub resets_sent: u64,
    /// SYNs refused (policy, limits) or ignored as id collisions.
    pub syns_refused: u64,
    /// SYNs whose connection id collided with an unrelated connection.
    pub id_collisions: u64,
    /// Half-open connections evicted to make room for a newer SYN.
    pub half_open_evicted: u64,
}

/// Connection `h` exists and is still in the handshake (SYN received).
fn in_handshake(conns: &HashMap<usize, Entry>, h: usize) -> bool {
    conns
        .get(&h)
        .is_some_and(|e| e.conn.state() == State::SynRecv)
}

/// One UDP port's worth of uTP connections, sans-IO.
///
/// The endpoint owns no socket, thread or clock: the caller passes the time
/// (µs on any monotonic clock, the same for every call) into each method,
/// hands it received datagrams with [`handle_datagram`](Self::handle_datagram),
/// sends what [`poll_transmit`](Self::poll_transmit) yields, reacts to
/// [`poll_event`](Self::poll_event), and calls
/// [`handle_timeout`](Self::handle_timeout) once the instant given by
/// [`poll_timeout`](Self::poll_timeout) is reached. Connections are addressed
/// by [`ConnectionHandle`]. The threaded [`runtime`](crate::runtime) is one
/// such driver; the C ABI and the simulator are others.
///
/// Two endpoints wired together by hand, with a fake clock and a 10 ms
/// one-way delay:
///
/// ```
/// use std::net::SocketAddr;
/// use utp_core::{Endpoint, EndpointConfig, Event};
///
/// let addr_a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
/// let addr_b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
/// let mut a = Endpoint::new(EndpointConfig::default(), 1); // seeds: ids, ISNs
/// let mut b = Endpoint::new(EndpointConfig::default(), 2);
/// let mut now = 1_000_000u64; // µs
///
/// let ha = a.connect(now, addr_b); // queues a SYN
/// let mut hb = None; // b's handle, from Event::Incoming
/// let mut received = Vec::new();
/// let mut sent = false;
/// while received.len() < 5 {
///     assert!(now < 10_000_000, "no transfer within 9 s");
///     now += 10_000; // whatever was sent arrives 10 ms later
///     let to_b: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
///     let to_a: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
///     for t in to_b {
///         assert_eq!(t.destination, addr_b);
///         b.handle_datagram(now, addr_a, &t.contents);
///     }
///     for t in to_a {
///         a.handle_datagram(now, addr_b, &t.contents);
///     }
///     for ep in [&mut a, &mut b] {
///         ep.flush_acks(now); // end of this batch of datagrams
///         if ep.poll_timeout().is_some_and(|t| t <= now) {
///             ep.handle_timeout(now);
///         }
///     }
///     while let Some(event) = a.poll_event() {
///         if event == Event::Connected(ha) && !sent {
///             assert_eq!(a.write(now, ha, b"hello"), Ok(5));
///             sent = true;
///         }
///     }
///     while let Some(event) = b.poll_event() {
///         match event {
///             Event::Incoming(h) => hb = Some(h),
///             Event::Readable(h) => {
///                 let mut buf = [0u8; 64];
///                 let n = b.read(now, h, &mut buf).unwrap();
///                 received.extend_from_slice(&buf[..n]);
///             }
///             _ => {}
///         }
///     }
/// }
/// assert_eq!(received, b"hello");
/// assert_eq!(b.peer_addr(hb.unwrap()), Some(addr_a));
/// assert_eq!(a.stats(ha).unwrap().bytes_sent, 5);
/// ```
///
/// A real program sleeps until [`Endpoint::poll_timeout`] or the next
/// datagram, whichever comes first; `runtime` does exactly that on its I/O
/// thread.
pub struct Endpoint {
    config: EndpointConfig,
    rng: ChaCha8Rng,
    conns: HashMap<usize, Entry>,
    /// (remote, receive id) → handle.
    by_key: HashMap<(SocketAddr, u16), usize>,
    next_handle: usize,
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    ack_list: Vec<usize>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    half_open: usize,
    /// Half-open connections, oldest first (may hold handles that since
    /// completed or died: skipped when met).
    half_open_order: VecDeque<usize>,
    accept_filter: Option<AcceptFilter>,
    /// RESETs sent lately, by (peer, connection id, seq): when. Each key
    /// is answered once per `RESET_MEMORY_US`.
    reset_records: HashMap<(SocketAddr, u16, u16), u64>,
    /// The same records in the order they were made (oldest first), so
    /// that expiring them costs nothing per packet.
    reset_order: VecDeque<(u64, (SocketAddr, u16, u16))>,
    reset_tokens: u64,
    reset_refill_us: u64,
    stats: EndpointStats,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("connections", &self.conns.len())
            .field("half_open", &self.half_open)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// libutp folds IPv4-mapped IPv6 addresses to IPv4; so do we, so a dual-stack
/// socket and an IPv4 socket see the same peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    if let IpAddr::V6(v6) = addr.ip() {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return SocketAddr::new(IpAddr::V4(v4), addr.port());
        }
    }
    addr
}

impl Endpoint {
    /// A new endpoint; `seed` drives connection ids and initial sequence numbers.
    pub fn new(config: EndpointConfig, seed: u64) -> Self {
        Endpoint {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            conns: HashMap::new(),
            by_key: HashMap::new(),
            next_handle: 1,
            timers: BinaryHeap::new(),
            ack_list: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            half_open: 0,
            half_open_order: VecDeque::new(),
            accept_filter: None,
            reset_records: HashMap::new(),
            reset_order: VecDeque::new(),
            reset_tokens: RESETS_PER_SECOND,
            reset_refill_us: 0,
            stats: EndpointStats::default(),
        }
    }

    /// The configuration new connections copy their settings from.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Change the configuration; existing connections keep theirs.
    pub fn set_config(&mut self, config: EndpointConfig) {
        self.config = config;
    }

    /// Admission policy for incoming connections (called before a SYN is answered).
    pub fn set_accept_filter(&mut self, filter: Option<AcceptFilter>) {
        self.accept_filter = filter;
    }

    /// Endpoint-wide counters.
    pub fn endpoint_stats(&self) -> &EndpointStats {
        &self.stats
    }

    fn connection_config(&self) -> ConnectionConfig {
        let c = &self.config;
        ConnectionConfig {
            send_buffer: c.send_buffer.max(1),
            recv_buffer: c.recv_buffer.max(1),
            max_packet_size: c
                .max_packet_size
                .clamp(crate::packet::HEADER_LEN + 128, 65_507),
            target_delay_us: if c.target_delay_us == 0 {
                100_000
            } else {
                c.target_delay_us
            },
            congestion: c.congestion,
            linger_us: c.linger_us,
            connect_timeout_us: c.connect_timeout_us,
            close_on_fin_acked: c.close_on_fin_acked,
            announce_on_connect: c.announce_on_connect,
            reset_data_after_close: c.reset_data_after_close,
            idle_timeout_us: c.idle_timeout_us,
            report_delay_samples: c.report_delay_samples,
            pacing: c.pacing,
        }
    }

    fn alloc_handle(&mut self) -> usize {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// Start connecting to `remote`; `Connected` or `Error` follows.
    pub fn connect(&mut self, now_us: u64, remote: SocketAddr) -> ConnectionHandle {
        let remote = canonical(remote);
        // A receive id free for this peer, whose +1 (the id the peer will use
        // to answer) is free too. 0xFFFF is avoided: libutp keeps ids as 32-bit
        // values and would not match the wrapped send id.
        let recv_id = loop {
            let id: u16 = self.rng.gen();
            if id != u16::MAX
                && !self.by_key.contains_key(&(remote, id))
                && !self.by_key.contains_key(&(remote, id.wrapping_add(1)))
            {
                break id;
            }
        };
        let seq = Seq(self.rng.gen());
        let h = self.alloc_handle();
        let cfg = self.connection_config();
        let mut io = Io {
            now_us,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let conn = Connection::connect(ConnectionHandle(h), remote, recv_id, seq, cfg, &mut io);
        self.by_key.insert((remote, recv_id), h);
        self.conns.insert(
            h,
            Entry {
                conn,
                scheduled: None,
                counted_half_open: false,
                in_ack_list: false,
            },
        );
        self.after(h);
        ConnectionHandle(h)
    }

    /// Feed one received datagram from `remote`.
    pub fn handle_datagram(
        &mut self,
        now_us: u64,
        remote: SocketAddr,
        data: &[u8],
    ) -> DatagramKind {
        let remote = canonical(remote);
        let pkt = match Packet::parse(data) {
            Ok(p) => p,
            Err(
                ParseError::TooShort { .. } | ParseError::BadVersion(_) | ParseError::BadType(_),
            ) => {
                self.stats.not_utp += 1;
                return DatagramKind::NotUtp;
            }
            Err(_) => {
                self.stats.malformed += 1;
                return DatagramKind::Utp;
            }
        };
        let target = self.route(remote, &pkt.header);
        match (pkt.header.packet_type, target) {
            (PacketType::Syn, _) => self.on_syn(now_us, remote, &pkt),
            (PacketType::Reset, Some(h)) => {
                self.with_conn(h, now_us, |c, io| c.on_reset(io));
            }
            (PacketType::Reset, None) => {}
            (_, Some(h)) => {
                self.with_conn(h, now_us, |c, io| c.handle_packet(io, &pkt, data.len()));
            }
            (_, None) => self.send_reset(now_us, remote, &pkt.header),
        }
        DatagramKind::Utp
    }

    /// The connection a received datagram belongs to, matched exactly as
    /// [`Endpoint::handle_datagram`] will match it (a SYN: the connection it
    /// already made, if retransmitted). For front ends that account per
    /// connection (the C ABI's statistics callbacks) without a second copy
    /// of the rules.
    pub fn connection_for(&self, remote: SocketAddr, data: &[u8]) -> Option<ConnectionHandle> {
        let header = Header::parse(data).ok()?;
        self.route(canonical(remote), &header).map(ConnectionHandle)
    }

    /// The connection a datagram of ours quoted by an ICMP error belongs to
    /// (`dest`: where it was sent), as the ICMP handlers match it.
    pub fn connection_for_sent(&self, dest: SocketAddr, quoted: &[u8]) -> Option<ConnectionHandle> {
        self.match_quoted(dest, quoted).map(ConnectionHandle)
    }

    /// The one routing rule for received packets. A RESET carries the id of
    /// the side that sent it, which may be either of ours (libutp resets
    /// with the id of the packet it answers): the neighbouring ids match
    /// too, when the connection's send id agrees.
    fn route(&self, remote: SocketAddr, h: &Header) -> Option<usize> {
        let id = h.connection_id;
        match h.packet_type {
            PacketType::Syn => self.by_key.get(&(remote, id.wrapping_add(1))).copied(),
            PacketType::Reset => [id, id.wrapping_add(1), id.wrapping_sub(1)]
                .into_iter()
                .enumerate()
                .find_map(|(i, recv_id)| {
                    let &h = self.by_key.get(&(remote, recv_id))?;
                    (i == 0 || self.conns[&h].conn.send_id == id).then_some(h)
                }),
            _ => self.by_key.get(&(remote, id)).copied(),
        }
    }

    fn on_syn(&mut self, now_us: u64, remote: SocketAddr, syn: &Packet<'_>) {
        let id = syn.header.connection_id;
        let key = (remote, id.wrapping_add(1));
        if let Some(&h) = self.by_key.get(&key) {
            let entry = self.conns.get_mut(&h).expect("keyed connection exists");
            if entry.conn.is_same_syn(syn.header.seq_nr) {
                // Our SYN-ACK was lost: answer the retransmitted SYN again.
                self.with_conn(h, now_us, |c, io| c.resend_syn_ack(io));
            } else if entry.conn.send_id != id {
                self.stats.id_collisions += 1;
            }
            return;
        }
        if !self.config.accept_incoming || self.conns.len() >= self.config.max_connections {
            self.stats.syns_refused += 1;
            return;
        }
        if self.half_open >= self.config.max_half_open
            && !(self.config.evict_half_open && self.evict_oldest_half_open(now_us))
        {
            self.stats.syns_refused += 1;
            return;
        }
        if let Some(filter) = self.accept_filter.as_mut() {
            if !filter(remote) {
                self.stats.syns_refused += 1;
                return;
            }
        }
        let seq = Seq(self.rng.gen());
        let h = self.alloc_handle();
        let cfg = self.connection_config();
        let mut io = Io {
            now_us,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let conn = Connection::accept(ConnectionHandle(h), remote, syn, seq, cfg, &mut io);
        io.events.push_back(Event::Incoming(ConnectionHandle(h)));
        self.by_key.insert(key, h);
        self.conns.insert(
            h,
            Entry {
                conn,
                scheduled: None,
                counted_half_open: false,
                in_ack_list: false,
            },
        );
        self.after(h);
        self.note_half_open(h);
    }

    /// Remember `h` as the newest half-open connection. Handles that left
    /// the handshake are dropped from the front as they are met, and the
    /// whole list is swept when it grows past a few times the cap, so it
    /// stays within a constant factor of `max_half_open`.
    fn note_half_open(&mut self, h: usize) {
        self.half_open_order.push_back(h);
        while let Some(&front) = self.half_open_order.front() {
            if in_handshake(&self.conns, front) {
                break;
            }
            self.half_open_order.pop_front();
        }
        if self.half_open_order.len() > 4 * self.config.max_half_open.max(16) {
            let conns = &self.conns;
            self.half_open_order.retain(|&h| in_handshake(conns, h));
        }
    }

    /// Fail the oldest half-open connection to make room for a new SYN.
    /// False if there was none.
    fn evict_oldest_half_open(&mut self, now_us: u64) -> bool {
        while let Some(h) = self.half_open_order.pop_front() {
            if in_handshake(&self.conns, h) {
                self.stats.half_open_evicted += 1;
                self.with_conn(h, now_us, |c, io| c.evict(io));
                return true;
            }
        }
        false
    }

    /// Forget connection `h` at once, sending nothing (no RESET: under a
    /// SYN flood it would go to a forged address); `Closed` follows. For a
    /// front end that drops a connection nobody accepted.
    pub fn discard(&mut self, now_us: u64, h: ConnectionHandle) {
        self.with_conn(h.0, now_us, |c, io| c.discard(io));
    }

    /// Forget every connection the application closed while it was still in
    /// the handshake without having written to it: the peer never answered
    /// and there is nothing to deliver (for a front end shutting down).
    pub fn discard_closed_half_open(&mut self, now_us: u64) {
        let closed: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, e)| {
                e.conn.state() == State::SynRecv
                    && e.conn.app_closed()
                    && e.conn.send.unsent_bytes() == 0
                    && e.conn.send.bytes_in_flight() == 0
            })
            .map(|(h, _)| *h)
            .collect();
        for h in closed {
            self.with_conn(h, now_us, |c, io| c.discard(io));
        }
    }

    /// Answer a packet for an unknown connection with RESET, rate-limited.
    fn send_reset(&mut self, now_us: u64, remote: SocketAddr, h: &Header) {
        let key = (remote, h.connection_id, h.seq_nr);
        self.expire_reset_records(now_us);
        if self.reset_records.contains_key(&key) || self.reset_records.len() >= MAX_RESET_RECORDS {
            return;
        }
        // Token bucket: at most RESETS_PER_SECOND, so we can't be used as an amplifier.
        let elapsed = now_us.saturating_sub(self.reset_refill_us);
        let refill = elapsed * RESETS_PER_SECOND / 1_000_000;
        if refill > 0 {
            self.reset_tokens = (self.reset_tokens + refill).min(RESETS_PER_SECOND);
            self.reset_refill_us = now_us;
        }
        if self.reset_tokens == 0 {
            return;
        }
        self.reset_tokens -= 1;
        self.reset_records.insert(key, now_us);
        self.reset_order.push_back((now_us, key));
        let reset = Header {
            packet_type: PacketType::Reset,
            connection_id: h.connection_id,
            timestamp_us: 0,
            timestamp_diff_us: 0,
            wnd_size: 0,
            seq_nr: self.rng.gen(),
            ack_nr: h.seq_nr,
        };
        let mut contents = Vec::with_capacity(crate::packet::HEADER_LEN);
        reset.encode(None, &[], &mut contents);
        self.stats.resets_sent += 1;
        self.transmits.push_back(Transmit {
            destination: remote,
            contents,
            connection: None,
        });
    }

    /// Forgets RESET records older than `RESET_MEMORY_US`, oldest first
    /// (constant time per record, whatever the table's size).
    fn expire_reset_records(&mut self, now_us: u64) {
        while let Some(&(t, key)) = self.reset_order.front() {
            if now_us.saturating_sub(t) < RESET_MEMORY_US {
                break;
            }
            self.reset_order.pop_front();
            self.reset_records.remove(&key);
        }
    }

    /// Find the connection a datagram we sent belonged to (from an ICMP quote).
    fn match_quoted(&self, dest: SocketAddr, quoted: &[u8]) -> Option<usize> {
        // The kernel may quote only the start of the datagram: an extension
        // chain cut short must not hide the header, so parse that alone.
        let header = Header::parse(quoted).ok()?;
        let id = header.connection_id;
        let dest = canonical(dest);
        if header.packet_type == PacketType::Syn {
            return self.by_key.get(&(dest, id)).copied();
        }
        [id.wrapping_add(1), id.wrapping_sub(1)]
            .into_iter()
            .filter_map(|r| self.by_key.get(&(dest, r)).copied())
            .find(|h| self.conns[h].conn.send_id == id)
    }

    /// An ICMP unreachable error quoted one of our datagrams (`quoted` is its
    /// UDP payload, `dest` where it was sent). Connecting fails as refused at
    /// once; an established connection is reset. Returns true if it matched.
    pub fn handle_icmp_unreachable(
        &mut self,
        now_us: u64,
        dest: SocketAddr,
        quoted: &[u8],
    ) -> bool {
        match self.match_quoted(dest, quoted) {
            Some(h) => {
                self.with_conn(h, now_us, |c, io| c.on_icmp_unreachable(io));
                true
            }
            None => false,
        }
    }

    /// ICMP "fragmentation needed" for one of our datagrams: `mtu` is the largest
    /// UDP payload that fits the path. Returns true if it matched.
    pub fn handle_icmp_frag_needed(
        &mut self,
        now_us: u64,
        dest: SocketAddr,
        quoted: &[u8],
        mtu: usize,
    ) -> bool {
        match self.match_quoted(dest, quoted) {
            Some(h) => {
                self.with_conn(h, now_us, |c, _| c.on_path_mtu(mtu));
                true
            }
            None => false,
        }
    }

    /// Run `f` on connection `h`, then update timers, ACK list and liveness.
    fn with_conn<R>(
        &mut self,
        h: usize,
        now_us: u64,
        f: impl FnOnce(&mut Connection, &mut Io<'_>) -> R,
    ) -> Option<R> {
        let entry = self.conns.get_mut(&h)?;
        let mut io = Io {
            now_us,
            transmits: &mut self.transmits,
            events: &mut self.events,
        };
        let r = f(&mut entry.conn, &mut io);
        self.after(h);
        Some(r)
    }

    /// Bookkeeping after anything touched connection `h`.
    fn after(&mut self, h: usize) {
        let Some(entry) = self.conns.get_mut(&h) else {
            return;
        };
        let half_open = entry.conn.state() == State::SynRecv;
        if half_open != entry.counted_half_open {
            entry.counted_half_open = half_open;
            if half_open {
                self.half_open += 1;
            } else {
                self.half_open -= 1;
            }
        }
        if entry.conn.is_dead() {
            let entry = self.conns.remove(&h).expect("present");
            if entry.counted_half_open {
                self.half_open -= 1;
            }
            let key = (entry.conn.remote, entry.conn.recv_id);
            if self.by_key.get(&key) == Some(&h) {
                self.by_key.remove(&key);
            }
            self.sweep_timers();
            return;
        }
        if entry.conn.ack_pending && !entry.in_ack_list {
            entry.in_ack_list = true;
            self.ack_list.push(h);
        }
        // Only a deadline earlier than the one already in the heap gets a
        // new entry: one that moved later (every ACK pushes the keep-alive
        // on) keeps the earlier entry, which fires early, harmlessly, and is
        // replaced then. So the heap holds a few entries per connection, not
        // one per ACK.
        let deadline = entry.conn.next_deadline();
        if let Some(d) = deadline {
            if entry.scheduled.is_none_or(|s| d < s) {
                entry.scheduled = Some(d);
                self.timers.push(Reverse((d, h)));
                self.sweep_timers();
            }
        }
    }

    /// Stale heap entries wait for their deadline: those of connections
    /// that are gone (connections coming and going fast, a SYN flood), and
    /// those left behind by an earlier deadline (a pacing deadline before a
    /// retransmission timer, many times per round trip). When they outgrow
    /// the live ones, sweep them, so the heap stays a few entries per
    /// connection (amortised constant time).
    fn sweep_timers(&mut self) {
        if self.timers.len() > 4 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers
                .retain(|Reverse((t, h))| conns.get(h).is_some_and(|e| e.scheduled == Some(*t)));
        }
    }

    /// Send the ACKs deferred while a batch of datagrams was processed.
    pub fn flush_acks(&mut self, now_us: u64) {
        let list = std::mem::take(&mut self.ack_list);
        for h in list {
            if let Some(e) = self.conns.get_mut(&h) {
                e.in_ack_list = false;
                self.with_conn(h, now_us, |c, io| c.flush_ack(io));
            }
        }
    }

    /// Run timers due at `now_us`.
    pub fn handle_timeout(&mut self, now_us: u64) {
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if t > now_us {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.conns.get_mut(&h) else {
                continue;
            };
            if entry.scheduled != Some(t) {
                continue; // stale heap entry
            }
            entry.scheduled = None;
            self.with_conn(h, now_us, |c, io| c.handle_timeout(io));
        }
        self.expire_reset_records(now_us);
    }

    /// Earliest instant (µs) at which `handle_timeout` must be called.
    /// (May be earlier than needed; calling early is harmless.)
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Like [`poll_timeout`](Self::poll_timeout), but timer entries that no
    /// longer belong to a connection are dropped first, so a driver that
    /// sleeps until this instant wakes at most early, once, for a deadline
    /// that moved later.
    pub fn next_timeout(&mut self) -> Option<u64> {
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            match self.conns.get(&h) {
                Some(e) if e.scheduled == Some(t) => return Some(t),
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Entries in the timer heap (bounded by a few per connection).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn open_conn(&mut self, h: ConnectionHandle) -> Result<usize, StreamError> {
        match self.conns.get(&h.0) {
            Some(e) if !e.conn.closed_reported => Ok(h.0),
            _ => Err(StreamError::InvalidHandle),
        }
    }

    /// Queue bytes; returns how many were accepted (a short count means
    /// the buffer is full and `Writable` follows). Errors never lose queued data.
    pub fn write(
        &mut self,
        now_us: u64,
        h: ConnectionHandle,
        data: &[u8],
    ) -> Result<usize, StreamError> {
        let h = self.open_conn(h)?;
        self.with_conn(h, now_us, |c, io| c.write(io, data))
            .unwrap_or(Err(StreamError::InvalidHandle))
    }

    /// Read in-order bytes. `Ok(0)` means end of stream (peer's FIN reached).
    pub fn read(
        &mut self,
        now_us: u64,
        h: ConnectionHandle,
        buf: &mut [u8],
    ) -> Result<usize, StreamError> {
        let h = self.open_conn(h)?;
        self.with_conn(h, now_us, |c, io| c.read(io, buf))
            .unwrap_or(Err(StreamError::InvalidHandle))
    }

    /// Bytes of this connection's data the application holds but has not
    /// consumed yet (libutp's `UTP_GET_READ_BUFFER_SIZE`): the advertised
    /// window shrinks by that much. When the window reopens from below one
    /// packet, an ACK announces it at once.
    pub fn set_app_buffered(&mut self, now_us: u64, h: ConnectionHandle, bytes: usize) {
        if let Ok(h) = self.open_conn(h) {
            self.with_conn(h, now_us, |c, io| c.set_app_buffered(io, bytes));
        }
    }

    /// Change a live connection's buffers and LEDBAT target (`None` keeps a value).
    pub fn set_connection_options(
        &mut self,
        h: ConnectionHandle,
        send_buffer: Option<usize>,
        recv_buffer: Option<usize>,
        target_delay_us: Option<u32>,
    ) -> Result<(), StreamError> {
        let h = self.open_conn(h)?;
        self.with_conn(h, 0, |c, _| {
            c.set_options(send_buffer, recv_buffer, target_delay_us)
        });
        Ok(())
    }

    /// Bytes `write` would accept right now (free space in the send buffer).
    pub fn send_capacity(&self, h: ConnectionHandle) -> usize {
        self.conns.get(&h.0).map_or(0, |e| e.conn.send_capacity())
    }

    /// Bytes that `read` can return right now.
    pub fn readable_bytes(&self, h: ConnectionHandle) -> usize {
        self.conns.get(&h.0).map_or(0, |e| e.conn.readable_bytes())
    }

    /// Queue a FIN after the data already queued (half-close).
    pub fn shutdown_write(&mut self, now_us: u64, h: ConnectionHandle) -> Result<(), StreamError> {
        let h = self.open_conn(h)?;
        self.with_conn(h, now_us, |c, io| c.shutdown_write(io))
            .unwrap_or(Err(StreamError::InvalidHandle))
    }

    /// Give up the handle: queued data is still delivered, then the FIN; `Closed` follows.
    pub fn close(&mut self, now_us: u64, h: ConnectionHandle) {
        if let Ok(h) = self.open_conn(h) {
            self.with_conn(h, now_us, |c, io| c.close(io));
        }
    }

    /// Abortive close: send RESET to the peer and forget the connection at
    /// once (queued data is dropped); `Closed` follows. Use it to refuse an
    /// accepted connection.
    pub fn reset(&mut self, now_us: u64, h: ConnectionHandle) {
        if let Ok(h) = self.open_conn(h) {
            self.with_conn(h, now_us, |c, io| c.abort(io));
        }
    }

    /// Live statistics of a connection.
    pub fn stats(&self, h: ConnectionHandle) -> Option<ConnectionStats> {
        self.conns.get(&h.0).map(|e| e.conn.stats())
    }

    /// The connection behind a handle (state, addresses).
    pub fn connection(&self, h: ConnectionHandle) -> Option<&Connection> {
        self.conns.get(&h.0).map(|e| &e.conn)
    }

    /// Remote address of a connection.
    pub fn peer_addr(&self, h: ConnectionHandle) -> Option<SocketAddr> {
        self.conns.get(&h.0).map(|e| e.conn.remote())
    }

    /// Connections that still have work to do: everything except those only
    /// lingering after a finished close to re-acknowledge a retransmitted FIN.
    pub fn active_connection_count(&self) -> usize {
        self.conns
            .values()
            .filter(|e| e.conn.state() != State::TimeWait)
            .count()
    }

    /// Our FIN on this connection was acknowledged: the peer has every byte
    /// we sent. False for unknown handles.
    pub fn fin_acked(&self, h: ConnectionHandle) -> bool {
        self.conns.get(&h.0).is_some_and(|e| e.conn.fin_acked())
    }

    /// Connections that still owe their peer data: all but those closed by
    /// the application whose FIN was acknowledged, and those lingering in
    /// TIME_WAIT. A process may exit once this is zero without losing bytes.
    pub fn undelivered_connection_count(&self) -> usize {
        self.conns
            .values()
            .filter(|e| {
                e.conn.state() != State::TimeWait && !(e.conn.app_closed() && e.conn.fin_acked())
            })
            .count()
    }

    /// Number of live connections (including those finishing their close).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two endpoints wired back to back with a fixed one-way delay and no loss.
    struct Pair {
        a: Endpoint,
        b: Endpoint,
        now: u64,
        delay: u64,
        in_flight: Vec<(u64, bool, Vec<u8>)>, // (arrival, to_b, bytes)
        events_a: Vec<Event>,
        events_b: Vec<Event>,
    }

    const A: &str = "10.0.0.1:1000";
    const B: &str = "10.0.0.2:2000";

    impl Pair {
        fn new() -> Self {
            Pair {
                a: Endpoint::new(EndpointConfig::default(), 1),
                b: Endpoint::new(EndpointConfig::default(), 2),
                now: 1_000_000,
                delay: 10_000,
                in_flight: Vec::new(),
                events_a: Vec::new(),
                events_b: Vec::new(),
            }
        }

        fn drain(&mut self) {
            while let Some(t) = self.a.poll_transmit() {
                assert_eq!(t.destination, B.parse().unwrap());
                self.in_flight
                    .push((self.now + self.delay, true, t.contents));
            }
            while let Some(t) = self.b.poll_transmit() {
                self.in_flight
                    .push((self.now + self.delay, false, t.contents));
            }
            while let Some(e) = self.a.poll_event() {
                self.events_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.events_b.push(e);
            }
        }

        /// Step until `us` of virtual time passed (or nothing is left to do).
        fn run_for(&mut self, us: u64) {
            let end = self.now + us;
            while self.now < end {
                let next = [
                    self.in_flight.iter().map(|p| p.0).min(),
                    self.a.poll_timeout(),
                    self.b.poll_timeout(),
                ]
                .into_iter()
                .flatten()
                .min();
                if next.is_none_or(|t| t > end) || !self.step() {
                    break;
                }
            }
            self.drain();
        }

        /// A connects to B; steps until B hears of it. Returns both handles.
        fn connect(&mut self) -> (ConnectionHandle, ConnectionHandle) {
            let ha = self.a.connect(self.now, B.parse().unwrap());
            while self.events_b.is_empty() && self.step() {}
            match self.events_b.first() {
                Some(Event::Incoming(hb)) => (ha, *hb),
                e => panic!("no incoming connection: {e:?}"),
            }
        }

        /// Appends what B can read on `hb` now to `out`.
        fn read_b(&mut self, hb: ConnectionHandle, out: &mut Vec<u8>) {
            let mut buf = [0u8; 8192];
            while let Ok(n) = self.b.read(self.now, hb, &mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        }

        /// Advance to the next arrival or timer.
        fn step(&mut self) -> bool {
            self.drain();
            let next_arrival = self.in_flight.iter().map(|p| p.0).min();
            let next_timer = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = [next_arrival, next_timer].into_iter().flatten().min() else {
                return false;
            };
            self.now = self.now.max(t);
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|p| p.0 <= self.now);
            self.in_flight = rest;
            for (_, to_b, bytes) in due {
                if to_b {
                    self.b.handle_datagram(self.now, A.parse().unwrap(), &bytes);
                } else {
                    self.a.handle_datagram(self.now, B.parse().unwrap(), &bytes);
                }
            }
            self.a.flush_acks(self.now);
            self.b.flush_acks(self.now);
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            self.drain();
            true
        }
    }

    #[test]
    fn handshake_transfer_and_close() {
        let mut p = Pair::new();
        let ha = p.a.connect(p.now, B.parse().unwrap());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut written = 0;
        let mut received = Vec::new();
        let mut hb = None;
        let mut shut = false;
        for _ in 0..200_000 {
            if !p.step() {
                break;
            }
            if let Some(Event::Incoming(h)) = p.events_b.first().copied() {
                hb = Some(h);
            }
            if p.events_a.contains(&Event::Connected(ha)) && written < data.len() {
                if let Ok(n) = p.a.write(p.now, ha, &data[written..]) {
                    written += n;
                }
            }
            if written == data.len() && !shut {
                p.a.shutdown_write(p.now, ha).unwrap();
                shut = true;
            }
            if let Some(hb) = hb {
                let mut buf = [0u8; 4096];
                while let Ok(n) = p.b.read(p.now, hb, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    received.extend_from_slice(&buf[..n]);
                }
            }
            if p.events_b.iter().any(|e| matches!(e, Event::Eof(_))) {
                break;
            }
        }
        assert_eq!(received.len(), data.len());
        assert!(received == data);
        let hb = hb.unwrap();
        p.b.close(p.now, hb);
        p.a.close(p.now, ha);
        for _ in 0..1000 {
            if !p.step() {
                break;
            }
        }
        assert!(p.events_a.contains(&Event::Closed(ha)), "{:?}", p.events_a);
        assert!(p.events_b.contains(&Event::Closed(hb)), "{:?}", p.events_b);
        assert_eq!(p.a.connection_count(), 0);
        assert_eq!(p.b.connection_count(), 0);
    }

    /// A run of packets is lost and so are their fast retransmissions;
    /// nothing new can be sent (the data ends there). The tail-loss probe's
    /// ACK must reveal all the lost resends at once, not one per probe (and
    /// must not keep putting the RTO off meanwhile).
    #[test]
    fn lost_resends_are_found_by_one_probe() {
        let mut p = Pair::new();
        let (ha, hb) = p.connect();
        // Once the window has opened, drop the first two copies of data
        // packets 300..320 (counted from the first data packet); the data
        // ends 20 packets later.
        let mut first_data: Option<u16> = None;
        let mut drops: HashMap<u16, u32> = HashMap::new();
        let data: Vec<u8> = (0..340 * 1400u32).map(|i| (i % 253) as u8).collect();
        let mut written = 0;
        let mut received = Vec::new();
        let start = p.now;
        while received.len() < data.len() && p.now < start + 5_000_000 {
            if written < data.len() {
                written += p.a.write(p.now, ha, &data[written..]).unwrap_or(0);
            }
            p.in_flight.retain(|(_, to_b, bytes)| {
                let Ok(h) = Header::parse(bytes) else {
                    return true;
                };
                if !*to_b || h.packet_type != PacketType::Data || bytes.len() <= 20 {
                    return true;
                }
                let s0 = *first_data.get_or_insert(h.seq_nr);
                let k = h.seq_nr.wrapping_sub(s0);
                if (300..320).contains(&k) {
                    let n = drops.entry(k).or_insert(0);
                    if *n < 2 {
                        *n += 1;
                        return false;
                    }
                }
                true
            });
            if !p.step() {
                break;
            }
            p.read_b(hb, &mut received);
        }
        assert!(
            received == data,
            "got {} of {} bytes: {:?}",
            received.len(),
            data.len(),
            p.a.stats(ha)
        );
        assert!(
            drops.values().all(|&n| n == 2),
            "the losses did not happen: {drops:?}"
        );
        let took = p.now - start;
        let st = p.a.stats(ha).unwrap();
        // 160 ms without the losses (20 ms RTT). Finding the lost resends
        // one per probe took 1,360 ms; all at once, 340 ms.
        assert!(took < 600_000, "took {} ms: {st:?}", took / 1000);
        assert_eq!(st.timeouts, 0, "{st:?}");
    }

    /// Sends `bytes` from A to B, dropping every datagram for which
    /// `lost(sent_at, to_b)` says so (`sent_at` counted from the start of
    /// the transfer), for at most `limit` µs. Returns whether B received
    /// every byte, how long it took, A's statistics and A's events.
    fn transfer_through(
        bytes: usize,
        limit: u64,
        mut lost: impl FnMut(u64, bool) -> bool,
    ) -> (bool, u64, ConnectionStats, Vec<Event>) {
        let mut p = Pair::new();
        let (ha, hb) = p.connect();
        let data: Vec<u8> = (0..bytes as u32).map(|i| (i % 249) as u8).collect();
        let (mut written, mut received) = (0, Vec::new());
        let start = p.now;
        while received.len() < data.len() && p.now < start + limit {
            if written < data.len() {
                written += p.a.write(p.now, ha, &data[written..]).unwrap_or(0);
            }
            let delay = p.delay;
            p.in_flight
                .retain(|(arrival, to_b, _)| !lost(arrival - delay - start, *to_b));
            if !p.step() {
                break;
            }
            p.read_b(hb, &mut received);
        }
        let stats = p.a.stats(ha).unwrap_or_default();
        (received == data, p.now - start, stats, p.events_a)
    }

    /// The path goes dark both ways for 10 s mid-transfer. Five timeouts in
    /// a row come within 15.5 s (0.5 + 1 + 2 + 4 + 8), but they must span
    /// `MIN_GIVE_UP_US` before the connection is declared dead: the fifth
    /// resend gets through and the transfer completes.
    #[test]
    fn five_quick_timeouts_do_not_kill_a_connection() {
        let dark = 200_000..10_200_000;
        let (complete, took, st, events) =
            transfer_through(2_000_000, 60_000_000, |t, _| dark.contains(&t));
        assert!(
            !events.iter().any(|e| matches!(e, Event::Error(..))),
            "{events:?}"
        );
        assert!(
            complete,
            "transfer incomplete after {} ms: {st:?}",
            took / 1000
        );
        assert!(
            st.timeouts >= 5,
            "the outage did not cause the timeouts: {st:?}"
        );
    }

    /// Data to B is lost for 600 ms: the tail-loss probes and the first
    /// RTO's resend (≈ 510 ms) all go. A second copy of that resend a probe
    /// timeout later gets through, rather than waiting for the next,
    /// doubled, RTO (1.5 s).
    #[test]
    fn an_unanswered_rto_resend_is_probed_before_the_next_rto() {
        let dark = 50_000..650_000;
        let (complete, took, st, _) =
            transfer_through(1_000_000, 10_000_000, |t, to_b| to_b && dark.contains(&t));
        assert!(
            complete,
            "transfer incomplete after {} ms: {st:?}",
            took / 1000
        );
        // Without the second copy the next, doubled, RTO resends it.
        assert_eq!(st.timeouts, 1, "{st:?}");
    }

    #[test]
    fn unknown_connection_gets_reset_and_non_utp_is_passed_on() {
        let mut e = Endpoint::new(EndpointConfig::default(), 3);
        let from: SocketAddr = A.parse().unwrap();
        assert_eq!(
            e.handle_datagram(0, from, b"d1:ad2:id20:abcdefghij0123456789e1:q4:pinge"),
            DatagramKind::NotUtp
        );
        let mut data = Vec::new();
        Header {
            packet_type: PacketType::Data,
            connection_id: 77,
            timestamp_us: 1,
            timestamp_diff_us: 0,
            wnd_size: 1000,
            seq_nr: 5,
            ack_nr: 9,
        }
        .encode(None, b"hi", &mut data);
        assert_eq!(e.handle_datagram(0, from, &data), DatagramKind::Utp);
        let t = e.poll_transmit().expect("reset");
        let r = Packet::parse(&t.contents).unwrap();
        assert_eq!(r.header.packet_type, PacketType::Reset);
        assert_eq!(r.header.connection_id, 77);
        assert_eq!(r.header.ack_nr, 5);
        // The same packet again within 10 s: no second RESET.
        e.handle_datagram(1, from, &data);
        assert!(e.poll_transmit().is_none());
    }

    #[test]
    fn reset_records_expire_in_order_and_stay_bounded() {
        let mut e = Endpoint::new(EndpointConfig::default(), 4);
        let packet = |id: u16, seq: u16| {
            let mut data = Vec::new();
            Header {
                packet_type: PacketType::Data,
                connection_id: id,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 1000,
                seq_nr: seq,
                ack_nr: 9,
            }
            .encode(None, b"x", &mut data);
            data
        };
        // Spread over 12 s so the rate limit lets them through: the table
        // fills to its cap and no further, however many packets come.
        let mut now = 0;
        for i in 0..3000u32 {
            now += 4_000;
            let from = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 7000));
            e.handle_datagram(now, from, &packet(i as u16, 1));
            while e.poll_transmit().is_some() {}
            assert!(e.reset_records.len() <= MAX_RESET_RECORDS);
            assert_eq!(e.reset_records.len(), e.reset_order.len());
        }
        // Records older than the memory are gone, newest kept.
        assert!(e.reset_records.values().all(|t| now - t < RESET_MEMORY_US));
        // Once they expire, the same packet is answered again.
        let from = SocketAddr::from(([10, 0, 11, 183], 7000));
        e.handle_datagram(now + RESET_MEMORY_US + 1, from, &packet(2999, 1));
        assert!(e.poll_transmit().is_some());
        e.handle_timeout(now + 3 * RESET_MEMORY_US);
        assert!(e.reset_records.len() <= 1 && e.reset_order.len() <= 1);
    }

    #[test]
    fn timer_heap_stays_small_under_many_acks() {
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        // Thousands of small writes, each sent and acknowledged on its own:
        // every ACK moves the receiver's keep-alive deadline later.
        for i in 0..3000u32 {
            p.a.write(p.now, ha, &i.to_le_bytes()).unwrap();
            p.run_for(25_000);
            let mut buf = [0u8; 64];
            while let Ok(n) = p.b.read(p.now, hb, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            assert!(
                p.a.timer_entries() <= 4 && p.b.timer_entries() <= 4,
                "after {i} writes: {} / {} timer entries",
                p.a.timer_entries(),
                p.b.timer_entries()
            );
        }
    }

    fn pair_with(cfg_a: EndpointConfig, cfg_b: EndpointConfig) -> Pair {
        let mut p = Pair::new();
        p.a = Endpoint::new(cfg_a, 1);
        p.b = Endpoint::new(cfg_b, 2);
        p
    }

    /// Connect A to B and return both handles once established.
    fn establish(p: &mut Pair) -> (ConnectionHandle, ConnectionHandle) {
        let ha = p.a.connect(p.now, B.parse().unwrap());
        for _ in 0..100 {
            p.step();
            let hb = p.events_b.iter().find_map(|e| match e {
                Event::Incoming(h) => Some(*h),
                _ => None,
            });
            if let (Some(hb), true) = (hb, p.events_a.contains(&Event::Connected(ha))) {
                // Let the initiator's first (empty) DATA complete the acceptor's side.
                for _ in 0..5 {
                    p.step();
                }
                return (ha, hb);
            }
        }
        panic!("no connection: {:?} {:?}", p.events_a, p.events_b);
    }

    /// What the initiator sends right after the SYN-ACK, with nothing written.
    fn after_syn_ack(announce_on_connect: bool) -> Option<Transmit> {
        let cfg = EndpointConfig {
            announce_on_connect,
            ..EndpointConfig::default()
        };
        let mut p = pair_with(cfg, EndpointConfig::default());
        let ha = p.a.connect(0, B.parse().unwrap());
        let syn = p.a.poll_transmit().expect("SYN");
        p.b.handle_datagram(0, A.parse().unwrap(), &syn.contents);
        let syn_ack = p.b.poll_transmit().expect("SYN-ACK");
        p.a.handle_datagram(1, B.parse().unwrap(), &syn_ack.contents);
        assert!(p.a.connection(ha).unwrap().is_connected());
        p.a.poll_transmit()
    }

    #[test]
    fn the_empty_data_after_the_syn_ack_is_optional() {
        let t = after_syn_ack(true).expect("empty DATA");
        let d = Packet::parse(&t.contents).unwrap();
        assert_eq!(d.header.packet_type, PacketType::Data);
        assert!(d.payload.is_empty());
        // libutp's behaviour: nothing until the application writes.
        assert!(after_syn_ack(false).is_none());
    }

    #[test]
    fn zero_window_stalls_the_sender_and_reading_reopens_it() {
        let small = EndpointConfig {
            recv_buffer: 20_000,
            ..EndpointConfig::default()
        };
        let mut p = pair_with(EndpointConfig::default(), small);
        let (ha, hb) = establish(&mut p);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut written = p.a.write(p.now, ha, &data).unwrap();
        // B does not read: the sender must stop at B's window, not overrun it.
        for _ in 0..2000 {
            if !p.step() || p.now > 30_000_000 {
                break;
            }
        }
        assert!(p.b.readable_bytes(hb) <= 20_000);
        assert!(
            p.b.readable_bytes(hb) >= 15_000,
            "window not used: {}",
            p.b.readable_bytes(hb)
        );
        assert!(
            p.b.connection(hb).unwrap().is_connected(),
            "zero window must not kill the connection"
        );
        // Now B reads everything; the transfer must resume and complete.
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        for _ in 0..200_000 {
            while let Ok(n) = p.b.read(p.now, hb, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            if written < data.len() {
                if let Ok(n) = p.a.write(p.now, ha, &data[written..]) {
                    written += n;
                }
            }
            if got.len() == data.len() || !p.step() {
                break;
            }
        }
        assert_eq!(got.len(), data.len());
        assert!(got == data);
    }

    #[test]
    fn small_writes_are_not_held_back_when_nothing_is_in_flight() {
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        // Ping-pong of small messages: each must arrive one one-way delay after
        // it was written (no Nagle stall waiting for an ACK).
        let mut buf = [0u8; 64];
        for round in 0..5u8 {
            let sent_at = p.now;
            p.a.write(p.now, ha, &[round; 10]).unwrap();
            let mut arrived = None;
            for _ in 0..100 {
                p.step();
                if let Ok(n) = p.b.read(p.now, hb, &mut buf) {
                    assert_eq!(&buf[..n], &[round; 10]);
                    arrived = Some(p.now);
                    break;
                }
            }
            let arrived = arrived.expect("message arrived");
            assert_eq!(arrived - sent_at, p.delay, "round {round}");
            p.b.write(p.now, hb, b"ok").unwrap();
            for _ in 0..100 {
                p.step();
                if p.a.read(p.now, ha, &mut buf).is_ok() {
                    break;
                }
            }
        }
        // Many tiny writes while data is in flight are coalesced into few packets.
        let before = p.a.stats(ha).unwrap().packets_sent;
        for _ in 0..200 {
            p.a.write(p.now, ha, b"x").unwrap();
        }
        for _ in 0..50 {
            p.step();
        }
        let packets = p.a.stats(ha).unwrap().packets_sent - before;
        assert!(packets < 20, "200 one-byte writes took {packets} packets");
        let mut total = 0;
        while let Ok(n) = p.b.read(p.now, hb, &mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, 200);
    }

    #[test]
    fn half_open_connections_are_capped_and_duplicate_syn_is_answered() {
        // libutp's way (the C ABI): at the cap, new SYNs are refused.
        let cfg = EndpointConfig {
            max_half_open: 8,
            evict_half_open: false,
            ..EndpointConfig::default()
        };
        let mut e = Endpoint::new(cfg, 9);
        let syn = |id: u16| {
            let mut v = Vec::new();
            Header {
                packet_type: PacketType::Syn,
                connection_id: id,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 65535,
                seq_nr: 100,
                ack_nr: 0,
            }
            .encode(None, &[], &mut v);
            v
        };
        for i in 0..100u16 {
            let from = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 5000));
            e.handle_datagram(0, from, &syn(i));
        }
        assert_eq!(e.connection_count(), 8);
        assert_eq!(e.endpoint_stats().syns_refused, 92);
        while e.poll_transmit().is_some() {}
        // A retransmitted SYN from an accepted peer gets its SYN-ACK again.
        let from = SocketAddr::from(([10, 1, 0, 3], 5000));
        e.handle_datagram(10, from, &syn(3));
        let t = e.poll_transmit().expect("SYN-ACK again");
        let r = Packet::parse(&t.contents).unwrap();
        assert_eq!(
            (
                r.header.packet_type,
                r.header.connection_id,
                r.header.ack_nr
            ),
            (PacketType::State, 3, 100)
        );
        // Half-open connections time out and free their slots.
        e.handle_timeout(e.config().connect_timeout_us + 1);
        while let Some(ev) = e.poll_event() {
            if let Event::Error(h, _) = ev {
                e.close(0, h);
            }
        }
        assert_eq!(e.connection_count(), 0);
    }

    #[test]
    fn reset_refuses_an_accepted_connection() {
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        p.b.reset(p.now, hb);
        for _ in 0..10 {
            p.step();
        }
        assert!(p.events_b.contains(&Event::Closed(hb)));
        assert!(
            p.events_a
                .contains(&Event::Error(ha, ConnectionError::Reset)),
            "{:?}",
            p.events_a
        );
        assert_eq!(p.b.connection_count(), 0);
        assert_eq!(
            p.a.write(p.now, ha, b"x"),
            Err(StreamError::Failed(ConnectionError::Reset))
        );
    }

    #[test]
    fn icmp_unreachable_refuses_a_connect_and_frag_needed_shrinks_packets() {
        let mut e = Endpoint::new(EndpointConfig::default(), 5);
        let peer: SocketAddr = B.parse().unwrap();
        let h = e.connect(0, peer);
        let syn = e.poll_transmit().unwrap().contents;
        // Another address, or a different id, does not match.
        assert!(!e.handle_icmp_unreachable(1, A.parse().unwrap(), &syn));
        let mut other = syn.clone();
        other[3] ^= 1;
        assert!(!e.handle_icmp_unreachable(1, peer, &other));
        // Only the first bytes quoted, with a cut extension chain: still matched.
        let mut quoted = syn[..20].to_vec();
        quoted[1] = crate::packet::EXT_SACK;
        assert!(e.handle_icmp_frag_needed(1, peer, &quoted, 1000));
        assert_eq!(e.stats(h).unwrap().mtu_guess, 1000);
        assert!(e.handle_icmp_unreachable(2, peer, &quoted));
        assert_eq!(
            e.poll_event(),
            Some(Event::Error(h, ConnectionError::Refused))
        );
    }

    #[test]
    fn libutp_close_semantics_end_with_a_reset_for_the_late_closer() {
        // Contract §8.5: A closes, its FIN is acked, A is gone; B closes
        // later, its FIN reaches nobody and B sees ECONNRESET.
        let libutp = EndpointConfig {
            close_on_fin_acked: true,
            ..EndpointConfig::default()
        };
        let mut p = pair_with(libutp.clone(), libutp);
        let (ha, hb) = establish(&mut p);
        p.a.close(p.now, ha);
        p.run_for(1_000_000);
        assert!(p.events_a.contains(&Event::Closed(ha)), "{:?}", p.events_a);
        assert!(p.events_b.contains(&Event::Eof(hb)));
        assert_eq!(p.a.connection_count(), 0);
        p.b.close(p.now, hb);
        p.run_for(1_000_000);
        assert!(p.events_b.contains(&Event::Closed(hb)), "{:?}", p.events_b);
        assert_eq!(p.a.endpoint_stats().resets_sent, 1);
        // The default waits for both FINs: no RESET.
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        p.a.close(p.now, ha);
        p.run_for(1_000_000);
        assert!(!p.events_a.contains(&Event::Closed(ha)));
        p.b.close(p.now, hb);
        p.run_for(1_000_000);
        assert!(p.events_a.contains(&Event::Closed(ha)) && p.events_b.contains(&Event::Closed(hb)));
        assert_eq!(
            p.a.endpoint_stats().resets_sent + p.b.endpoint_stats().resets_sent,
            0
        );
    }

    #[test]
    fn reset_after_both_fins_were_acked_ends_the_stream_cleanly() {
        // Both sides half-close; every byte and both FINs are acknowledged.
        // Then the peer forgets the connection (libutp destroys a socket the
        // moment its FIN is acked) and answers a late packet with RESET:
        // the stream is complete, so that is no error.
        fn reset_after_both_fins(cfg: EndpointConfig) -> (Pair, ConnectionHandle) {
            let mut p = pair_with(cfg.clone(), cfg);
            let (ha, hb) = establish(&mut p);
            p.a.write(p.now, ha, b"all of it").unwrap();
            p.a.shutdown_write(p.now, ha).unwrap();
            p.b.shutdown_write(p.now, hb).unwrap();
            p.run_for(1_000_000);
            assert!(p.a.fin_acked(ha) && p.b.fin_acked(hb));
            p.b.reset(p.now, hb);
            for _ in 0..10 {
                p.step();
            }
            (p, ha)
        }
        let (mut p, ha) = reset_after_both_fins(EndpointConfig::default());
        assert!(
            !p.events_a.iter().any(|e| matches!(e, Event::Error(..))),
            "{:?}",
            p.events_a
        );
        assert_eq!(p.b.connection_count(), 0, "B forgot the connection");
        let mut buf = [0u8; 32];
        assert_eq!(p.a.read(p.now, ha, &mut buf), Ok(0));
        p.a.close(p.now, ha);
        p.run_for(1_000);
        assert!(p.events_a.contains(&Event::Closed(ha)), "{:?}", p.events_a);
        // A RESET while the stream is still open is still an error.
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        p.a.shutdown_write(p.now, ha).unwrap();
        p.run_for(1_000_000);
        p.b.reset(p.now, hb);
        for _ in 0..10 {
            p.step();
        }
        assert!(
            p.events_a
                .contains(&Event::Error(ha, ConnectionError::Reset)),
            "{:?}",
            p.events_a
        );
        // libutp's semantics (the C ABI) report that RESET, as libutp does.
        let (p, ha) = reset_after_both_fins(EndpointConfig {
            close_on_fin_acked: true,
            ..EndpointConfig::default()
        });
        assert!(
            p.events_a
                .contains(&Event::Error(ha, ConnectionError::Reset)),
            "{:?}",
            p.events_a
        );
    }

    #[test]
    fn datagrams_name_their_connection_both_ways() {
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        p.a.write(p.now, ha, b"whose?").unwrap();
        let t = p.a.poll_transmit().expect("the data goes out at once");
        assert_eq!(t.connection, Some(ha));
        // The receiver matches it as it will route it.
        let a: SocketAddr = A.parse().unwrap();
        assert_eq!(p.b.connection_for(a, &t.contents), Some(hb));
        assert_eq!(p.b.connection_for(B.parse().unwrap(), &t.contents), None);
        assert_eq!(p.b.connection_for(a, b"not utp"), None);
        // An ICMP error quoting it is put down to the sender's connection.
        assert_eq!(
            p.a.connection_for_sent(B.parse().unwrap(), &t.contents),
            Some(ha)
        );
        // A RESET for no connection belongs to none.
        let mut stray = t.contents.clone();
        stray[2] ^= 0x55;
        p.b.handle_datagram(p.now, a, &stray);
        let reset =
            p.b.poll_transmit()
                .expect("RESET for an unknown connection");
        assert_eq!(reset.connection, None);
    }

    #[test]
    fn delay_samples_are_events_only_when_asked_for() {
        let samples = |on: bool| {
            let cfg = EndpointConfig {
                report_delay_samples: on,
                ..EndpointConfig::default()
            };
            let mut p = pair_with(cfg.clone(), cfg);
            let (ha, _) = establish(&mut p);
            for _ in 0..5 {
                p.a.write(p.now, ha, &[7u8; 500]).unwrap();
                p.run_for(100_000);
            }
            p.events_a
                .iter()
                .filter(|e| matches!(e, Event::DelaySample(h, _) if *h == ha))
                .count()
        };
        assert!(samples(true) >= 5);
        assert_eq!(samples(false), 0);
    }

    #[test]
    fn a_real_peer_connects_through_a_flood_of_forged_syns() {
        // 100,000 forged SYNs per second from random addresses for 3 s
        // (simulated time); a real peer connects at 1 s. Before half-open
        // eviction, the forged SYNs held every slot for the connect timeout
        // and the real SYN was refused.
        use rand::{Rng, SeedableRng};
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let syn = |id: u16, seq: u16| {
            let mut v = Vec::new();
            Header {
                packet_type: PacketType::Syn,
                connection_id: id,
                timestamp_us: 1,
                timestamp_diff_us: 0,
                wnd_size: 65535,
                seq_nr: seq,
                ack_nr: 0,
            }
            .encode(None, &[], &mut v);
            v
        };
        let a_addr: SocketAddr = A.parse().unwrap();
        let b_addr: SocketAddr = B.parse().unwrap();
        let mut a = Endpoint::new(EndpointConfig::default(), 1);
        let mut b = Endpoint::new(EndpointConfig::default(), 2);
        // One-way delay 2 ms: the real peer's answer comes 4 ms after our
        // SYN-ACK, while 100 forged SYNs arrive every ms.
        let delay = 2_000u64;
        let mut wire: VecDeque<(u64, bool, Vec<u8>)> = VecDeque::new(); // (arrival, to_b, bytes)
        let (mut ha, mut connected_after) = (None, None);
        let (mut max_conns, mut max_timers) = (0, 0);
        for ms in 0..3_000u64 {
            let now = ms * 1_000;
            for _ in 0..100 {
                let from = SocketAddr::from((rng.gen::<[u8; 4]>(), rng.gen::<u16>()));
                b.handle_datagram(now, from, &syn(rng.gen(), rng.gen()));
            }
            if ms == 1_000 {
                ha = Some(a.connect(now, b_addr));
            }
            while wire.front().is_some_and(|d| d.0 <= now) {
                let (_, to_b, bytes) = wire.pop_front().unwrap();
                if to_b {
                    b.handle_datagram(now, a_addr, &bytes);
                } else {
                    a.handle_datagram(now, b_addr, &bytes);
                }
            }
            for e in [&mut a, &mut b] {
                e.flush_acks(now);
                e.handle_timeout(now);
            }
            while let Some(t) = a.poll_transmit() {
                wire.push_back((now + delay, true, t.contents));
            }
            // Forged addresses never answer: their SYN-ACKs go nowhere.
            while let Some(t) = b.poll_transmit() {
                if t.destination == a_addr {
                    wire.push_back((now + delay, false, t.contents));
                }
            }
            while let Some(ev) = a.poll_event() {
                if Some(ev) == ha.map(Event::Connected) && connected_after.is_none() {
                    connected_after = Some(ms - 1_000);
                }
            }
            // The application closes what failed (evicted, timed out).
            while let Some(ev) = b.poll_event() {
                if let Event::Error(h, _) = ev {
                    b.close(now, h);
                }
            }
            max_conns = max_conns.max(b.connection_count());
            max_timers = max_timers.max(b.timer_entries());
        }
        let p_b_stats = b.endpoint_stats().clone();
        let after = connected_after.expect("the real peer connected");
        assert!(after <= 1_000, "connected {after} ms after its SYN");
        assert!(p_b_stats.half_open_evicted > 250_000, "{p_b_stats:?}");
        // Bounded: the half-open cap (plus failed ones the application is
        // about to close), and timers for a few per connection.
        let cap = EndpointConfig::default().max_half_open;
        assert!(max_conns <= cap + 2, "{max_conns} connections");
        assert!(
            max_timers <= 4 * (cap + 2) + 1024,
            "{max_timers} timer entries"
        );
    }

    #[test]
    fn absurd_settings_saturate_instead_of_wrapping() {
        // Timeouts near u64::MAX once wrapped (a linger that expired at
        // once, a connect that timed out at once) and a 4 GiB receive
        // buffer advertised a window of 0 (4 GiB as u32), which stalled
        // the transfer for good.
        let cfg = EndpointConfig {
            recv_buffer: 4 << 30,
            linger_us: u64::MAX,
            connect_timeout_us: u64::MAX,
            idle_timeout_us: u64::MAX,
            ..EndpointConfig::default()
        };
        let mut p = pair_with(cfg.clone(), cfg);
        let (ha, hb) = establish(&mut p);
        assert_eq!(p.a.stats(ha).unwrap().peer_window, u32::MAX as u64);
        let data = vec![9u8; 300_000];
        let mut off = 0;
        while off < data.len() {
            off += p.a.write(p.now, ha, &data[off..]).unwrap_or(0);
            p.run_for(10_000);
        }
        p.a.close(p.now, ha);
        p.run_for(2_000_000);
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = p.b.read(p.now, hb, &mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, data.len());
        assert!(
            p.a.fin_acked(ha),
            "the close lingers until the FIN is acknowledged"
        );
        assert!(
            !p.events_a.iter().any(|e| matches!(e, Event::Error(..))),
            "{:?}",
            p.events_a
        );
    }

    #[test]
    fn application_buffered_bytes_shrink_the_advertised_window() {
        let mut p = Pair::new();
        let (ha, hb) = establish(&mut p);
        let cap = EndpointConfig::default().recv_buffer;
        p.b.set_app_buffered(p.now, hb, cap - 100);
        p.b.set_connection_options(hb, None, None, Some(25_000))
            .unwrap();
        p.b.write(p.now, hb, b"tell A our window").unwrap();
        for _ in 0..10 {
            p.step();
        }
        assert_eq!(p.a.stats(ha).unwrap().peer_window, 100);
        // Consuming reopens the window with an immediate update.
        p.b.set_app_buffered(p.now, hb, 0);
        for _ in 0..10 {
            p.step();
        }
        assert_eq!(p.a.stats(ha).unwrap().peer_window as usize, cap);
    }

    mod hostile_input {
        use super::*;
        use proptest::prelude::*;

        /// Mutate a real packet of the connection so it passes the header
        /// check most of the time and reaches deep into the state machine.
        fn mutate(base: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
            let mut v = base.to_vec();
            for &(pos, val) in edits {
                if !v.is_empty() {
                    let i = pos % v.len();
                    // Keep the version nibble valid half of the time.
                    v[i] = if i == 0 && val & 1 == 0 {
                        (val & 0xf0) | 1
                    } else {
                        val
                    };
                }
            }
            v.truncate(v.len().saturating_sub(cut % 8));
            v
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
            #[test]
            fn endpoint_survives_hostile_datagrams(
                noise in proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..64),
                     proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
                     any::<usize>(), any::<bool>()),
                    1..40)
            ) {
                let mut p = Pair::new();
                let ha = p.a.connect(p.now, B.parse().unwrap());
                // Handshake and a little data so real packets exist to mutate.
                let mut captured: Vec<Vec<u8>> = Vec::new();
                for _ in 0..50 {
                    p.drain();
                    captured.extend(p.in_flight.iter().map(|x| x.2.clone()));
                    if !p.step() { break; }
                    let _ = p.a.write(p.now, ha, b"hello");
                }
                prop_assert!(!captured.is_empty());
                for (i, (raw, edits, cut, use_raw)) in noise.iter().enumerate() {
                    let dgram = if *use_raw {
                        raw.clone()
                    } else {
                        mutate(&captured[i % captured.len()], edits, *cut)
                    };
                    p.now += 1000;
                    p.b.handle_datagram(p.now, A.parse().unwrap(), &dgram);
                    p.a.handle_datagram(p.now, B.parse().unwrap(), &dgram);
                    p.a.flush_acks(p.now);
                    p.b.flush_acks(p.now);
                    p.a.handle_timeout(p.now);
                    p.b.handle_timeout(p.now);
                    // Output stays bounded: no datagram storm from junk input.
                    let mut out = 0;
                    while p.a.poll_transmit().is_some() || p.b.poll_transmit().is_some() { out += 1; }
                    prop_assert!(out < 200);
                    while p.a.poll_event().is_some() || p.b.poll_event().is_some() {}
                    if let Some(t) = p.a.poll_timeout() { prop_assert!(t >= p.now.saturating_sub(60_000_000)); }
                }
                prop_assert!(p.a.connection_count() <= 1 + noise.len() && p.b.connection_count() <= 1 + noise.len());
            }
        }
    }
}
