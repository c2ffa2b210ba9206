//! One uTP connection: handshake, reliability, flow and congestion control.
//!
//! The connection never touches a socket or a clock. Every entry point takes
//! an `Io` holding the current time and the queues where it puts datagrams
//! to send and events for the application; the endpoint owns those queues and
//! routes datagrams to the right connection.
//!
//! Sequence numbers follow libutp so both can talk: the SYN consumes one
//! number, the acceptor's SYN-ACK (a STATE packet) does not, STATE packets
//! carry the next number without consuming it.

pub mod pacing;
mod recv;
mod send;

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::congestion::{new_controller, CongestionConfig, CongestionControl};
use crate::delay::DelayHistory;
use crate::endpoint::{ConnectionError, ConnectionHandle, Event, StreamError, Transmit};
use crate::packet::{self, Header, Packet, PacketType, HEADER_LEN};
use crate::rtt::RttEstimator;
use crate::seq::Seq;
use crate::stats::ConnectionStats;

use pacing::Pacer;
pub(crate) use recv::RecvBuffer;
pub(crate) use send::SendBuffer;

/// First retransmission timeout before any RTT sample (BEP 29: 1 s).
pub const INITIAL_RTO_US: u64 = 1_000_000;
/// Floor of the retransmission timeout (BEP 29: 500 ms).
pub const MIN_RTO_US: u64 = 500_000;
/// Ceiling of the backed-off retransmission timeout.
pub const MAX_RTO_US: u64 = 60_000_000;
/// Consecutive timeouts on an established connection before giving up,
/// if they also span [`MIN_GIVE_UP_US`] (with the timeout doubling each time,
/// the fifth comes 15 RTOs after the first, as libutp counts).
pub const MAX_CONSECUTIVE_TIMEOUTS: u32 = 5;
/// Shortest run of timeouts in a row (first to last) that gives up. A count
/// alone spans only 7.5 s at the 500 ms minimum RTO: at 10 % loss each way a
/// resend and its ACK both get through only 81 % of the time, and four
/// misses in a row ended about one 200 MB transfer in four (measured through
/// the lossy relay). A dead peer is still declared within about 32 s.
pub const MIN_GIVE_UP_US: u64 = 20_000_000;
/// Idle time after which a keep-alive is sent (libutp: 29 s, under common NAT timeouts).
pub const KEEPALIVE_US: u64 = 29_000_000;
/// How far ahead of the cumulative ACK we buffer packets (libutp: 1023).
pub const REORDER_LIMIT: u16 = 1023;
/// Most packets we keep in flight; stays under the peer's reorder limit.
pub const MAX_PACKETS_IN_FLIGHT: usize = 1000;
/// Duplicate ACKs (or later packets selectively acked) that mark a packet lost.
pub const DUP_ACK_THRESHOLD: u32 = 3;
/// Shortest tail-loss probe timeout (the probe fires after 2·SRTT of silence).
pub const TLP_MIN_US: u64 = 10_000;
/// Tail-loss probes in a row (each after twice the previous wait, and only
/// while one fits before the retransmission timer) before that timer has to
/// recover: each probe or its ACK is lost one time in five at 10 % loss each
/// way, and the timer costs at least 500 ms and the congestion window. With
/// three (10 + 20 + 40 ms on loopback), 12 timeouts per 100 MB through the
/// lossy relay each followed 430 ms of silence.
pub const MAX_TLP_PROBES: u32 = 5;
/// Longest interval between zero-window probes.
///
/// Short, because the receiver's one window update may be lost: a receive
/// buffer full of data behind a hole closes the window under loss, and the
/// wait for the next probe is then the whole stall (at the former 30 s
/// cap, one lost update could stall a transfer for half a minute).
pub const MAX_PROBE_INTERVAL_US: u64 = 2_000_000;
/// How long a closed connection lingers to re-acknowledge a retransmitted FIN.
pub const TIME_WAIT_US: u64 = 2_000_000;

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// SYN-ACK sent, waiting for the initiator's first DATA or FIN.
    SynRecv,
    /// Established (possibly half-closed in either direction).
    Connected,
    /// Failed; the application has been told and must close the handle.
    Failed(ConnectionError),
    /// Finished and reported as `Closed`; lingering only to answer retransmitted FINs.
    TimeWait,
    /// Gone: the endpoint removes it.
    Dead,
}

/// Per-connection settings, copied from the endpoint's configuration.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionConfig {
    /// Most bytes queued for sending that are not yet acknowledged.
    pub send_buffer: usize,
    /// Receive buffer (bytes): bounds the window we advertise.
    pub recv_buffer: usize,
    /// Largest datagram we send (bytes, header included).
    pub max_packet_size: usize,
    /// LEDBAT's target queuing delay (µs).
    pub target_delay_us: u32,
    /// Which congestion controller the connection runs.
    pub congestion: crate::congestion::CongestionKind,
    /// After `close`, how long queued data may take to be acknowledged (µs).
    pub linger_us: u64,
    /// Give up a connect after this long (µs).
    pub connect_timeout_us: u64,
    /// libutp's close semantics; see [`crate::EndpointConfig::close_on_fin_acked`].
    pub close_on_fin_acked: bool,
    /// Send an empty DATA after the SYN-ACK if nothing is queued.
    pub announce_on_connect: bool,
    /// Answer data arriving after `close` with RESET; see [`crate::EndpointConfig::reset_data_after_close`].
    pub reset_data_after_close: bool,
    /// Fail with `TimedOut` after this long without a packet from the peer (µs; 0: never).
    pub idle_timeout_us: u64,
    /// Emit [`Event::DelaySample`] on ACKs that carry a delay measurement.
    pub report_delay_samples: bool,
    /// Pace data packets; see [`crate::EndpointConfig::pacing`].
    pub pacing: bool,
}

/// Current time and the output queues of the endpoint.
#[derive(Debug)]
pub(crate) struct Io<'a> {
    /// The current time (µs, the endpoint's clock).
    pub now_us: u64,
    /// Datagrams to send, in order.
    pub transmits: &'a mut VecDeque<Transmit>,
    /// Events for the application, in order.
    pub events: &'a mut VecDeque<Event>,
}

/// A uTP connection.
#[derive(Debug)]
pub struct Connection {
    pub(crate) handle: ConnectionHandle,
    pub(crate) remote: SocketAddr,
    pub(crate) recv_id: u16,
    pub(crate) send_id: u16,
    pub(crate) state: State,
    cfg: ConnectionConfig,

    pub(crate) send: SendBuffer,
    pub(crate) recv: RecvBuffer,

    rtt: RttEstimator,
    cc: Box<dyn CongestionControl>,
    /// Delay of our packets towards the peer, echoed back by the peer.
    our_delay: DelayHistory,
    /// Delay of the peer's packets towards us; echoed in our headers.
    their_delay: DelayHistory,
    last_their_base: Option<u32>,
    /// `timestamp_diff` to put in our next header: our clock minus the peer's last timestamp.
    reply_micro: u32,

    /// Window the peer advertised (bytes) and when it went to zero.
    peer_window: usize,
    /// Window we advertised last (bytes).
    last_advertised: usize,
    /// Bytes the application holds outside the engine (counted against our window).
    app_buffered: usize,

    /// Retransmission timer: deadline and the number of timeouts in a row.
    rto_deadline: Option<u64>,
    consecutive_timeouts: u32,
    /// When the first of those timeouts fired.
    first_timeout_us: u64,
    /// Exponent of the timeout back-off. Cleared only by a valid RTT sample
    /// (RFC 6298 §5.7): an ACK of a resent packet gives none (Karn), and
    /// clearing on it would resend every packet before its ACK could arrive
    /// on a path slower than the timeout.
    rto_backoff: u32,
    /// When the SYN (ours or the peer's) started: the handshake gives up after `connect_timeout_us`.
    handshake_started_us: u64,
    /// Zero-window probe timer.
    probe_deadline: Option<u64>,
    /// Spaces data packets at the congestion window's rate.
    pacer: Pacer,
    /// The pacer holds data back until this instant.
    pace_deadline: Option<u64>,
    /// Tail-loss probe timer (about two RTTs without any ACK), and whether
    /// this flight was already probed.
    tlp_deadline: Option<u64>,
    /// Tail-loss probes sent since the last ACK of new data or timeout.
    tlp_probes: u32,
    /// Probes sent into the current closed window (the interval doubles).
    probes: u32,
    /// Last time anything was sent (keep-alive) or received.
    last_send_us: u64,
    /// When the last valid packet from the peer arrived (dead-peer detection).
    last_recv_us: u64,
    /// Last time the congestion window, not the application, limited sending.
    last_cwnd_limited_us: Option<u64>,
    /// Duplicate-ACK counter for fast retransmit.
    dup_acks: u32,
    /// An acknowledgement is owed to the peer (sent at the end of the receive batch).
    pub(crate) ack_pending: bool,

    /// The application gave up the handle (`close`); data it did not read is discarded.
    pub(crate) app_closed: bool,
    /// `Closed` was reported; the handle is invalid for the application.
    pub(crate) closed_reported: bool,
    /// `close` gives up delivering queued data at this instant.
    linger_deadline: Option<u64>,
    time_wait_deadline: Option<u64>,
    /// A short write happened; report `Writable` when room comes back.
    write_blocked: bool,
    eof_reported: bool,
    error_reported: bool,

    pub(crate) stats: ConnectionStats,
}

impl Connection {
    /// (receive id, send id): the connection ids this connection's packets
    /// arrive with and leave with.
    pub fn ids(&self) -> (u16, u16) {
        (self.recv_id, self.send_id)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        handle: ConnectionHandle,
        remote: SocketAddr,
        recv_id: u16,
        send_id: u16,
        state: State,
        initial_seq: Seq,
        cfg: ConnectionConfig,
        now_us: u64,
    ) -> Self {
        let mss = cfg.max_packet_size - HEADER_LEN;
        let cc = new_controller(
            cfg.congestion,
            CongestionConfig {
                mss,
                max_window: cfg.send_buffer.max(2 * mss),
                target_delay_us: cfg.target_delay_us,
            },
        );
        Connection {
            handle,
            remote,
            recv_id,
            send_id,
            state,
            send: SendBuffer::new(initial_seq, cfg.send_buffer),
            recv: RecvBuffer::new(cfg.recv_buffer),
            rtt: RttEstimator::new(INITIAL_RTO_US, MIN_RTO_US),
            cc,
            our_delay: DelayHistory::new(),
            their_delay: DelayHistory::new(),
            last_their_base: None,
            reply_micro: 0,
            // libutp assumes 255 packets of 1435 bytes until the peer speaks.
            peer_window: 255 * 1435,
            last_advertised: cfg.recv_buffer,
            app_buffered: 0,
            rto_deadline: None,
            consecutive_timeouts: 0,
            first_timeout_us: 0,
            rto_backoff: 0,
            handshake_started_us: now_us,
            probe_deadline: None,
            pacer: Pacer::new(),
            pace_deadline: None,
            tlp_deadline: None,
            tlp_probes: 0,
            probes: 0,
            last_send_us: now_us,
            last_recv_us: now_us,
            last_cwnd_limited_us: None,
            dup_acks: 0,
            ack_pending: false,
            app_closed: false,
            closed_reported: false,
            linger_deadline: None,
            time_wait_deadline: None,
            write_blocked: false,
            eof_reported: false,
            error_reported: false,
            stats: ConnectionStats {
                mtu_guess: cfg.max_packet_size as u32,
                ..Default::default()
            },
            cfg,
        }
    }

    /// Start an outgoing connection: sends the SYN.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        handle: ConnectionHandle,
        remote: SocketAddr,
        recv_id: u16,
        initial_seq: Seq,
        cfg: ConnectionConfig,
        io: &mut Io<'_>,
    ) -> Self {
        let mut c = Connection::new(
            handle,
            remote,
            recv_id,
            recv_id.wrapping_add(1),
            State::SynSent,
            initial_seq,
            cfg,
            io.now_us,
        );
        c.send.push_control(PacketType::Syn);
        c.flush(io);
        c
    }

    /// Accept an incoming SYN: sends the SYN-ACK.
    pub(crate) fn accept(
        handle: ConnectionHandle,
        remote: SocketAddr,
        syn: &Packet<'_>,
        initial_seq: Seq,
        cfg: ConnectionConfig,
        io: &mut Io<'_>,
    ) -> Self {
        let id = syn.header.connection_id;
        let mut c = Connection::new(
            handle,
            remote,
            id.wrapping_add(1),
            id,
            State::SynRecv,
            initial_seq,
            cfg,
            io.now_us,
        );
        c.recv.set_initial_ack(Seq(syn.header.seq_nr));
        c.note_peer_header(&syn.header, io.now_us);
        c.send_state(io);
        c
    }

    /// Largest payload in one packet.
    fn mss(&self) -> usize {
        self.cfg.max_packet_size - HEADER_LEN
    }

    /// True once the handshake is complete in our direction.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Remote address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// The receive window we can advertise now.
    fn advertised_window(&self) -> usize {
        self.recv.free_space().saturating_sub(self.app_buffered)
    }

    /// See `Endpoint::set_app_buffered`.
    pub(crate) fn set_app_buffered(&mut self, io: &mut Io<'_>, bytes: usize) {
        self.app_buffered = bytes;
        if self.state == State::Connected
            && self.last_advertised < self.mss()
            && self.advertised_window() >= self.mss()
        {
            self.send_state(io);
        }
    }

    /// See `Endpoint::set_connection_options`.
    pub(crate) fn set_options(
        &mut self,
        send_buffer: Option<usize>,
        recv_buffer: Option<usize>,
        target_delay_us: Option<u32>,
    ) {
        if let Some(n) = send_buffer {
            let n = n.max(1);
            self.cfg.send_buffer = n;
            self.send.set_capacity(n);
            self.cc.set_max_window(n.max(2 * self.mss()));
        }
        if let Some(n) = recv_buffer {
            let n = n.max(1);
            self.cfg.recv_buffer = n;
            self.recv.set_capacity(n);
        }
        if let Some(t) = target_delay_us {
            let t = if t == 0 { 100_000 } else { t };
            self.cfg.target_delay_us = t;
            self.cc.set_target_delay_us(t);
        }
    }

    /// Earliest instant at which `handle_timeout` has work to do.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut consider = |d: Option<u64>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |t| t.min(d)));
            }
        };
        match self.state {
            State::Dead => return None,
            State::TimeWait => return self.time_wait_deadline,
            State::Failed(_) => return None,
            State::SynSent | State::SynRecv => {
                consider(Some(
                    self.handshake_started_us
                        .saturating_add(self.cfg.connect_timeout_us),
                ));
            }
            State::Connected => {
                if !self.send.fin_sent() {
                    consider(Some(self.last_send_us + KEEPALIVE_US));
                }
                consider(self.idle_deadline());
            }
        }
        consider(self.rto_deadline);
        consider(self.pace_deadline);
        consider(self.probe_deadline);
        consider(self.tlp_deadline);
        consider(self.linger_deadline);
        t
    }

    // ----- application calls -------------------------------------------------

    /// Queue bytes to send; returns how many were taken.
    pub(crate) fn write(&mut self, io: &mut Io<'_>, data: &[u8]) -> Result<usize, StreamError> {
        match self.state {
            State::Failed(e) => return Err(StreamError::Failed(e)),
            State::TimeWait | State::Dead => return Err(StreamError::InvalidHandle),
            _ => {}
        }
        if self.send.fin_queued() {
            return Err(StreamError::WriteClosed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let n = self.send.write(data);
        if n < data.len() {
            self.write_blocked = true;
        }
        if n == 0 {
            return Err(StreamError::WouldBlock);
        }
        self.flush(io);
        Ok(n)
    }

    /// Read in-order bytes; `Ok(0)` is end of stream.
    pub(crate) fn read(&mut self, io: &mut Io<'_>, buf: &mut [u8]) -> Result<usize, StreamError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.recv.read(buf);
        if n > 0 {
            self.maybe_send_window_update(io);
            return Ok(n);
        }
        if self.recv.eof_reached() {
            return Ok(0);
        }
        match self.state {
            State::Failed(e) => Err(StreamError::Failed(e)),
            State::TimeWait | State::Dead => Ok(0),
            _ => Err(StreamError::WouldBlock),
        }
    }

    /// Room in the send buffer (0 once the write half is shut or the connection failed).
    pub fn send_capacity(&self) -> usize {
        if self.send.fin_queued()
            || !matches!(
                self.state,
                State::SynSent | State::SynRecv | State::Connected
            )
        {
            0
        } else {
            self.send.free_space()
        }
    }

    /// Bytes ready to be read.
    pub fn readable_bytes(&self) -> usize {
        self.recv.readable()
    }

    /// Half-close: a FIN follows the queued data.
    pub(crate) fn shutdown_write(&mut self, io: &mut Io<'_>) -> Result<(), StreamError> {
        match self.state {
            State::Failed(e) => return Err(StreamError::Failed(e)),
            State::TimeWait | State::Dead => return Err(StreamError::InvalidHandle),
            _ => {}
        }
        if !self.send.fin_queued() {
            self.send.queue_fin();
            self.flush(io);
        }
        Ok(())
    }

    /// The application gives up the handle. Queued data and the FIN are still
    /// delivered (bounded by the linger time); `Closed` follows.
    pub(crate) fn close(&mut self, io: &mut Io<'_>) {
        if self.app_closed {
            return;
        }
        self.app_closed = true;
        self.recv.discard_unread();
        match self.state {
            State::SynSent | State::Failed(_) => self.finish(io),
            State::SynRecv if self.cfg.close_on_fin_acked => self.finish(io),
            State::SynRecv | State::Connected => {
                if !self.send.fin_queued() {
                    self.send.queue_fin();
                }
                self.linger_deadline = Some(io.now_us.saturating_add(self.cfg.linger_us));
                self.flush(io);
                self.check_finished(io);
            }
            State::TimeWait | State::Dead => {}
        }
    }

    /// Evicted from the handshake to make room (SYN flood): the application,
    /// if it holds the connection, sees `ConnectionReset`; nothing is sent.
    pub(crate) fn evict(&mut self, io: &mut Io<'_>) {
        self.fail(io, ConnectionError::Reset);
    }

    /// Forget the connection at once without telling the peer; `Closed` follows.
    pub(crate) fn discard(&mut self, io: &mut Io<'_>) {
        self.app_closed = true;
        if !matches!(self.state, State::Dead | State::TimeWait) {
            self.state = State::Failed(ConnectionError::Reset);
        }
        self.finish(io);
    }

    /// Abortive close: tell the peer with a RESET and forget the connection
    /// (used to refuse an accepted connection, or like `SO_LINGER` 0).
    pub(crate) fn abort(&mut self, io: &mut Io<'_>) {
        if !matches!(self.state, State::Dead | State::TimeWait) {
            let header = Header {
                packet_type: PacketType::Reset,
                connection_id: self.send_id,
                timestamp_us: io.now_us as u32,
                timestamp_diff_us: self.reply_micro,
                wnd_size: 0,
                seq_nr: self.send.next_seq().0,
                ack_nr: self.recv.ack_nr().0,
            };
            let mut buf = Vec::with_capacity(HEADER_LEN);
            header.encode(None, &[], &mut buf);
            self.after_send(io, buf, 0);
        }
        self.app_closed = true;
        self.state = State::Failed(ConnectionError::Reset);
        self.finish(io);
    }

    /// Report `Closed` and linger to answer a retransmitted FIN, or vanish.
    fn finish(&mut self, io: &mut Io<'_>) {
        if !self.closed_reported {
            self.closed_reported = true;
            io.events.push_back(Event::Closed(self.handle));
        }
        self.rto_deadline = None;
        self.probe_deadline = None;
        self.pace_deadline = None;
        self.linger_deadline = None;
        if self.state == State::Connected && self.recv.eof_reached() {
            self.state = State::TimeWait;
            self.time_wait_deadline = Some(io.now_us + TIME_WAIT_US);
        } else {
            self.state = State::Dead;
        }
    }

    /// After `close`: finished once our FIN is acknowledged and the peer's FIN arrived.
    fn check_finished(&mut self, io: &mut Io<'_>) {
        if self.app_closed
            && self.state == State::Connected
            && self.send.fin_acked()
            && (self.recv.eof_reached() || self.cfg.close_on_fin_acked)
        {
            self.finish(io);
        }
    }

    fn fail(&mut self, io: &mut Io<'_>, err: ConnectionError) {
        if matches!(self.state, State::Failed(_) | State::TimeWait | State::Dead) {
            return;
        }
        self.rto_deadline = None;
        self.probe_deadline = None;
        self.pace_deadline = None;
        self.state = State::Failed(err);
        if self.app_closed {
            self.finish(io);
        } else if !self.error_reported {
            self.error_reported = true;
            io.events.push_back(Event::Error(self.handle, err));
        }
    }

    /// A RESET arrived for this connection.
    pub(crate) fn on_reset(&mut self, io: &mut Io<'_>) {
        let err = if self.state == State::SynSent {
            ConnectionError::Refused
        } else {
            ConnectionError::Reset
        };
        if self.state == State::TimeWait {
            self.state = State::Dead;
            return;
        }
        // Both directions are complete: every byte and both FINs were
        // acknowledged, so a RESET (the peer forgot the connection right
        // after its FIN was acked, as libutp does) carries no news. As TCP
        // ignores an RST in TIME-WAIT, the stream ends cleanly (libutp's
        // semantics still call it an error).
        if self.state == State::Connected
            && !self.cfg.close_on_fin_acked
            && self.send.fin_acked()
            && self.recv.eof_reached()
        {
            if self.app_closed {
                self.finish(io);
            }
            return;
        }
        self.fail(io, err);
    }

    /// An ICMP error (port unreachable, ...) arrived for a datagram of ours.
    pub(crate) fn on_icmp_unreachable(&mut self, io: &mut Io<'_>) {
        self.on_reset(io);
    }

    /// ICMP "fragmentation needed": shrink our packets.
    pub(crate) fn on_path_mtu(&mut self, mtu: usize) {
        let size = mtu.clamp(HEADER_LEN + 128, self.cfg.max_packet_size);
        if size < self.cfg.max_packet_size {
            self.cfg.max_packet_size = size;
            self.stats.mtu_guess = size as u32;
        }
    }

    // ----- incoming packets ---------------------------------------------------

    /// Record the peer's timestamp and window from any packet.
    fn note_peer_header(&mut self, h: &Header, now_us: u64) {
        if h.timestamp_us != 0 {
            let sample = (now_us as u32).wrapping_sub(h.timestamp_us);
            self.reply_micro = sample;
            self.their_delay.add_sample(sample, now_us);
            // Clock drift: if the peer's clock runs slow relative to ours, their
            // base delay creeps down while ours creeps up; move our base along.
            if let Some(base) = self.their_delay.base_delay_us() {
                if let Some(last) = self.last_their_base {
                    let drop = last.wrapping_sub(base) as i32;
                    if drop > 0 && drop <= 10_000 {
                        self.our_delay.shift_base(drop as u32);
                    }
                }
                self.last_their_base = Some(base);
            }
        }
        self.peer_window = h.wnd_size as usize;
    }

    /// Process a packet for this connection (not SYN, not RESET).
    pub(crate) fn handle_packet(&mut self, io: &mut Io<'_>, pkt: &Packet<'_>, datagram_len: usize) {
        if matches!(self.state, State::Dead) {
            return;
        }
        let h = pkt.header;
        // An ACK for something we never sent is bogus (or a stale id); drop it.
        if self.state != State::SynRecv || h.packet_type != PacketType::State {
            let last_sent = self.send.next_seq().minus(1);
            if Seq(h.ack_nr).gt(last_sent) {
                return;
            }
        }
        self.stats.packets_received += 1;
        self.last_recv_us = io.now_us;
        self.stats.datagram_bytes_received += datagram_len as u64;
        self.note_peer_header(&h, io.now_us);

        if let State::Failed(_) = self.state {
            return;
        }

        if self.state == State::TimeWait {
            // The peer lost our ACK of its FIN: acknowledge again.
            if matches!(h.packet_type, PacketType::Fin | PacketType::Data) {
                self.send_state(io);
            }
            return;
        }

        match self.state {
            State::SynSent => {
                if h.packet_type == PacketType::State && Seq(h.ack_nr) == self.send.syn_seq() {
                    // The SYN-ACK: it carries the acceptor's first sequence number without consuming it.
                    self.recv.set_initial_ack(Seq(h.seq_nr).minus(1));
                    self.state = State::Connected;
                    self.consecutive_timeouts = 0;
                    io.events.push_back(Event::Connected(self.handle));
                    // An accepted libutp socket cannot send until it sees our first DATA:
                    // send an empty one if the application has nothing queued.
                    if self.cfg.announce_on_connect
                        && self.send.unsent_bytes() == 0
                        && !self.send.fin_queued()
                    {
                        self.send.push_control(PacketType::Data);
                    }
                } else {
                    return;
                }
            }
            State::SynRecv => {
                if matches!(h.packet_type, PacketType::Data | PacketType::Fin) {
                    self.state = State::Connected;
                    self.consecutive_timeouts = 0;
                    io.events.push_back(Event::Established(self.handle));
                } else {
                    // Only acknowledgement bookkeeping while waiting for the first DATA.
                    return;
                }
            }
            _ => {}
        }

        self.process_ack(io, pkt);
        if matches!(self.state, State::Failed(_) | State::Dead | State::TimeWait) {
            return;
        }

        match h.packet_type {
            PacketType::Data | PacketType::Fin => self.process_data(io, pkt),
            _ => {}
        }
        if matches!(self.state, State::Failed(_) | State::Dead) {
            // Aborted: data arrived after close.
            return;
        }
        self.flush(io);
        self.check_finished(io);
    }

    /// Handle everything an ACK field (cumulative and selective) tells us.
    fn process_ack(&mut self, io: &mut Io<'_>, pkt: &Packet<'_>) {
        let h = pkt.header;
        let now = io.now_us;
        let in_flight_before = self.send.bytes_in_flight();
        let acked = self.send.on_ack(Seq(h.ack_nr), pkt.sack, now);

        // Karn: RTT samples only from packets sent exactly once.
        if let Some(rtt) = acked.min_rtt_us {
            self.rtt.on_sample(rtt);
        }
        if h.timestamp_diff_us != 0 && acked.bytes > 0 {
            let base_before = self.our_delay.base_delay_us();
            self.our_delay.add_sample(h.timestamp_diff_us, now);
            if let (Some(before), Some(after)) = (base_before, self.our_delay.base_delay_us()) {
                let rise = after.wrapping_sub(before) as i32;
                if rise > 0 {
                    self.cc.on_base_delay_raised(rise as u32);
                }
            }
        }

        if acked.packets > 0 {
            self.consecutive_timeouts = 0;
            self.tlp_probes = 0;
            self.tlp_deadline = None;
            // Karn: the backoff ends with a clean RTT sample. (Ending it on
            // any progress, as libutp does, makes a path whose RTT grew past
            // the RTO time out again and again without learning the RTT.)
            if acked.min_rtt_us.is_some() {
                self.rto_backoff = 0;
            }
            self.dup_acks = 0;
            if acked.bytes > 0 {
                let queuing = self
                    .our_delay
                    .queuing_delay_us()
                    .map(|d| match acked.min_rtt_us {
                        // A queuing delay larger than the whole RTT is clock skew, not queue.
                        Some(rtt) => d.min(rtt.min(u32::MAX as u64) as u32),
                        None => d,
                    });
                if self.cfg.report_delay_samples && h.timestamp_diff_us != 0 {
                    let sample = Event::DelaySample(self.handle, queuing.unwrap_or(0));
                    io.events.push_back(sample);
                }
                // Held back by our window within the last round trip (or
                // second): on a 1 s+ path the window filled a whole RTT ago.
                let recent = self.rtt.srtt_us().unwrap_or(0).max(1_000_000);
                let window_limited = self
                    .last_cwnd_limited_us
                    .is_some_and(|t| now.saturating_sub(t) < 2 * recent);
                self.cc.on_ack(&crate::congestion::AckSample {
                    now_us: now,
                    bytes_acked: acked.bytes,
                    bytes_in_flight: in_flight_before,
                    queuing_delay_us: queuing,
                    min_rtt_us: acked.min_rtt_us,
                    srtt_us: self.rtt.srtt_us(),
                    window_limited,
                });
            }
            self.rto_deadline = if self.send.packets_in_flight() > 0 {
                Some(now + self.current_rto())
            } else {
                None
            };
        } else if self.send.has_unacked()
            && h.packet_type == PacketType::State
            && Seq(h.ack_nr) == self.send.first_unacked().minus(1)
        {
            self.dup_acks += 1;
        }

        // Loss detection: three duplicate ACKs, or three later packets selectively acked.
        let mut lost = self.send.detect_sack_losses(DUP_ACK_THRESHOLD);
        // A probe's ACK that returns within a round trip (SRTT + 4 RTTVAR)
        // is for the probe itself: packets resent before it and still
        // missing are lost again. Without this, resends lost under a full
        // window would be recovered one per probe, and each probe's ACK
        // would put the RTO off again. A later ACK may be for an older copy
        // (the RTT may have grown) and is not used.
        let probe_sent = acked
            .probe_sent_at_us
            .filter(|&t| self.answers_probe(t, now));
        if let Some(latest) = acked.latest_sent_at_us.max(probe_sent) {
            // A quarter RTT of reordering is tolerated before time says "lost".
            let reorder_window = self.rtt.srtt_us().map_or(10_000, |r| r / 4);
            lost |= self.send.detect_lost_by_time(latest, reorder_window);
        }
        if self.dup_acks >= DUP_ACK_THRESHOLD {
            self.dup_acks = 0;
            lost |= self.send.mark_first_lost();
        }
        if lost {
            self.cc.on_loss(now, self.rtt.srtt_us());
        }

        // Flow control: an ACK that acknowledges nothing while the peer's
        // window cannot hold our oldest packet means the peer dropped it for
        // lack of room (we enforce that on our side too). Hold everything
        // until the window reopens, probing now and then; this is not loss.
        if acked.packets == 0
            && self.send.packets_in_flight() > 0
            && self
                .send
                .oldest_unacked_len()
                .is_some_and(|len| self.peer_window < len.max(1))
        {
            self.send.requeue_refused();
            self.rto_deadline = None;
            self.consecutive_timeouts = 0;
        }
        if self.peer_window >= self.mss() {
            self.probes = 0;
        }
        if self.peer_window >= self.mss() || self.send.packets_in_flight() > 0 {
            self.probe_deadline = None;
        }

        if self.write_blocked && self.send.free_space() >= self.writable_threshold() {
            self.write_blocked = false;
            io.events.push_back(Event::Writable(self.handle));
        }
    }

    /// An ACK at `now` for a probe sent at `sent_us` came within a round
    /// trip (SRTT + 4 RTTVAR), so it answers the probe itself.
    fn answers_probe(&self, sent_us: u64, now: u64) -> bool {
        self.rtt
            .srtt_us()
            .is_some_and(|srtt| now.saturating_sub(sent_us) <= srtt + 4 * self.rtt.rttvar_us())
    }

    fn writable_threshold(&self) -> usize {
        (self.cfg.send_buffer / 4).clamp(1, self.mss())
    }

    /// Accept payload (and FIN) into the receive buffer.
    fn process_data(&mut self, io: &mut Io<'_>, pkt: &Packet<'_>) {
        let h = pkt.header;
        let is_fin = h.packet_type == PacketType::Fin;
        let outcome = self
            .recv
            .on_packet(Seq(h.seq_nr), is_fin, pkt.payload, self.app_closed);
        match outcome {
            recv::Outcome::Duplicate => {
                self.stats.duplicates_received += 1;
                self.ack_pending = true;
            }
            recv::Outcome::NoRoom => {
                // Flow control is enforced: tell the sender our real window now.
                self.send_state(io);
            }
            recv::Outcome::OutOfRange => {}
            recv::Outcome::Buffered | recv::Outcome::Delivered { .. }
                if self.app_closed
                    && self.cfg.reset_data_after_close
                    && !pkt.payload.is_empty() =>
            {
                // New data nobody will read: tell the writer at once.
                self.abort(io);
                return;
            }
            recv::Outcome::Buffered => self.ack_pending = true,
            recv::Outcome::Delivered { bytes } => {
                self.stats.bytes_received += bytes as u64;
                self.ack_pending = true;
                if bytes > 0 && !self.app_closed {
                    io.events.push_back(Event::Readable(self.handle));
                }
            }
        }
        if self.recv.eof_reached() && !self.eof_reported {
            self.eof_reported = true;
            // Acknowledge the FIN at once; the peer may be waiting on it to finish.
            self.send_state(io);
            if !self.app_closed {
                io.events.push_back(Event::Eof(self.handle));
            }
        }
    }

    /// After the application read: reopen the window if it had shrunk a lot.
    fn maybe_send_window_update(&mut self, io: &mut Io<'_>) {
        if self.state != State::Connected {
            return;
        }
        let free = self.advertised_window();
        let mss = self.mss();
        if (self.last_advertised < mss && free >= mss)
            || free >= self.last_advertised + self.cfg.recv_buffer / 4
        {
            self.send_state(io);
        }
    }

    // ----- timers ---------------------------------------------------------------

    fn current_rto(&self) -> u64 {
        let base = self.rtt.rto_us();
        let backed = base.saturating_mul(1u64 << self.rto_backoff.min(16));
        backed.min(MAX_RTO_US)
    }

    /// Run whatever timers are due.
    pub(crate) fn handle_timeout(&mut self, io: &mut Io<'_>) {
        let now = io.now_us;
        match self.state {
            State::Dead | State::Failed(_) => return,
            State::TimeWait => {
                if self.time_wait_deadline.is_some_and(|d| now >= d) {
                    self.state = State::Dead;
                }
                return;
            }
            State::SynSent | State::SynRecv => {
                if now
                    >= self
                        .handshake_started_us
                        .saturating_add(self.cfg.connect_timeout_us)
                {
                    self.fail(io, ConnectionError::TimedOut);
                    return;
                }
            }
            State::Connected => {
                if self.idle_deadline().is_some_and(|d| now >= d) {
                    self.fail(io, ConnectionError::TimedOut);
                    return;
                }
            }
        }
        if self.linger_deadline.is_some_and(|d| now >= d) {
            // `close` gave queued data its chance; stop trying.
            self.finish(io);
            return;
        }
        if self.tlp_deadline.is_some_and(|d| now >= d) {
            self.tlp_deadline = None;
            let peer_room = self.peer_window.saturating_sub(self.send.bytes_in_flight());
            if self.tlp_probes < MAX_TLP_PROBES && self.send.probe_oldest(peer_room) {
                self.tlp_probes += 1;
            }
        }
        if self.rto_deadline.is_some_and(|d| now >= d) {
            self.on_rto(io);
            if matches!(self.state, State::Failed(_) | State::Dead) {
                return;
            }
        }
        if self.probe_deadline.is_some_and(|d| now >= d) {
            self.probe_deadline = None;
            self.probes += 1;
            // Let one packet through a zero window: its ACK carries the current window.
            self.peer_window = self.peer_window.max(self.mss());
        }
        if self.state == State::Connected
            && !self.send.fin_sent()
            && now >= self.last_send_us + KEEPALIVE_US
        {
            self.send_state(io);
        }
        self.flush(io);
    }

    /// A live peer that has not sent its FIN sends at least a keep-alive
    /// every [`KEEPALIVE_US`]; silence past the idle timeout means it is gone.
    fn idle_deadline(&self) -> Option<u64> {
        (self.cfg.idle_timeout_us > 0 && !self.recv.eof_reached())
            .then(|| self.last_recv_us.saturating_add(self.cfg.idle_timeout_us))
    }

    fn on_rto(&mut self, io: &mut Io<'_>) {
        let now = io.now_us;
        self.stats.timeouts += 1;
        if self.consecutive_timeouts == 0 {
            self.first_timeout_us = now;
        }
        self.consecutive_timeouts += 1;
        self.rto_backoff += 1;
        if self.state == State::Connected
            && self.consecutive_timeouts >= MAX_CONSECUTIVE_TIMEOUTS
            && now.saturating_sub(self.first_timeout_us) >= MIN_GIVE_UP_US
        {
            self.fail(io, ConnectionError::TimedOut);
            return;
        }
        self.cc.on_timeout(now);
        self.tlp_deadline = None;
        self.send.mark_all_lost();
        self.rto_deadline = Some(now + self.current_rto());
        // The oldest packet goes out now whatever the window says.
        self.send.force_next_resend();
        // And again at probe timeouts until the next RTO if no ACK comes:
        // one resend per backed-off RTO fails a round trip one time in five
        // at 10 % loss each way, and each failure doubles the wait.
        self.tlp_probes = 0;
    }

    // ----- sending ----------------------------------------------------------------

    /// Send what the windows allow: retransmissions first, then new data, then the FIN.
    pub(crate) fn flush(&mut self, io: &mut Io<'_>) {
        if matches!(self.state, State::Failed(_) | State::Dead | State::TimeWait) {
            return;
        }
        let mss = self.mss();
        // Until the handshake completes only the SYN may leave.
        let may_send_data = self.state == State::Connected;
        self.pace_deadline = None;
        loop {
            let window = self.cc.window().min(self.peer_window);
            let in_flight = self.send.bytes_in_flight();
            let next = if may_send_data {
                let pace_until = self
                    .cfg
                    .pacing
                    .then(|| {
                        self.pacer.wait_until(
                            io.now_us,
                            self.rtt.srtt_us(),
                            window,
                            mss,
                            self.cc.in_slow_start(),
                        )
                    })
                    .flatten();
                let next = self.send.next_to_send(
                    mss,
                    in_flight,
                    window,
                    MAX_PACKETS_IN_FLIGHT,
                    pace_until.is_some(),
                );
                if next == send::Next::Paced {
                    self.pace_deadline = pace_until;
                }
                next
            } else {
                self.send.next_syn_to_send()
            };
            match next {
                send::Next::Send(idx) => self.transmit(io, idx),
                // The pacing deadline brings us back.
                send::Next::Paced => break,
                send::Next::WindowFull => {
                    // Growth is earned only when our own window, not the peer's, held us back.
                    if self.cc.window() <= self.peer_window {
                        self.last_cwnd_limited_us = Some(io.now_us);
                    }
                    // Nothing in flight yet blocked: the peer's window is closed.
                    // Probe later in case its window update is lost.
                    if self.send.packets_in_flight() == 0 && self.probe_deadline.is_none() {
                        // The receiver announces a reopened window itself; probes
                        // only cover a lost update, so they back off (to 2 s).
                        let interval = self
                            .current_rto()
                            .saturating_mul(1 << self.probes.min(6))
                            .min(MAX_PROBE_INTERVAL_US);
                        self.probe_deadline = Some(io.now_us + interval);
                    }
                    break;
                }
                send::Next::Nothing => break,
            }
        }
        if self.send.packets_in_flight() == 0 {
            self.tlp_deadline = None;
        } else if self.tlp_deadline.is_none()
            && self.tlp_probes < MAX_TLP_PROBES
            && self.state == State::Connected
        {
            if let Some(srtt) = self.rtt.srtt_us() {
                // The one-way delay our packets see grew by the queuing
                // delay since the base was measured. When that outgrows SRTT
                // (a longer path), SRTT is stale: a probe at 2 SRTT would
                // fire before every ACK, and with one packet in flight (LEDBAT
                // after a route change) no clean RTT sample would ever come.
                let queuing = self.our_delay.queuing_delay_us().unwrap_or(0) as u64;
                let pto = (2 * srtt).max(srtt + 2 * queuing).max(TLP_MIN_US) << self.tlp_probes;
                if self.rto_deadline.is_none_or(|r| io.now_us + pto < r) {
                    self.tlp_deadline = Some(io.now_us + pto);
                }
            }
        }
        if self.rto_deadline.is_none() && self.send.packets_in_flight() > 0 {
            self.rto_deadline = Some(io.now_us + self.current_rto());
        }
    }

    /// Put packet `idx` of the send queue on the wire.
    fn transmit(&mut self, io: &mut Io<'_>, idx: usize) {
        let now = io.now_us;
        let wnd = self.advertised_window();
        let ack_nr = self.recv.ack_nr();
        let reply_micro = self.reply_micro;
        let send_id = self.send_id;
        let recv_id = self.recv_id;
        let max_packet = self.cfg.max_packet_size;
        let sack = self.recv.sack();
        let p = self.send.packet_mut(idx);
        let first = p.transmissions == 0;
        p.transmissions += 1;
        p.sent_at_us = now;
        p.need_resend = false;
        let header = Header {
            packet_type: p.packet_type,
            connection_id: if p.packet_type == PacketType::Syn {
                recv_id
            } else {
                send_id
            },
            timestamp_us: now as u32,
            timestamp_diff_us: reply_micro,
            // A receive buffer of 4 GiB or more advertises the most the field holds.
            wnd_size: wnd.min(u32::MAX as usize) as u32,
            seq_nr: p.seq.0,
            ack_nr: ack_nr.0,
        };
        let sack = sack.filter(|s| packet::encoded_len(Some(s), p.payload.len()) <= max_packet);
        let mut buf = Vec::with_capacity(packet::encoded_len(sack.as_deref(), p.payload.len()));
        header.encode(sack.as_deref(), &p.payload, &mut buf);
        let payload_len = p.payload.len();
        self.pacer.on_sent(payload_len);
        if first {
            self.stats.bytes_sent += payload_len as u64;
        } else if p.timeout_resend {
            self.stats.timeout_retransmits += 1;
        } else {
            self.stats.fast_retransmits += 1;
        }
        self.send.on_transmitted(idx);
        self.after_send(io, buf, wnd);
    }

    /// Send a STATE packet (pure ACK) now.
    pub(crate) fn send_state(&mut self, io: &mut Io<'_>) {
        let wnd = self.advertised_window();
        let header = Header {
            packet_type: PacketType::State,
            connection_id: self.send_id,
            timestamp_us: io.now_us as u32,
            timestamp_diff_us: self.reply_micro,
            // A receive buffer of 4 GiB or more advertises the most the field holds.
            wnd_size: wnd.min(u32::MAX as usize) as u32,
            seq_nr: self.send.next_seq().0,
            ack_nr: self.recv.ack_nr().0,
        };
        let sack = self.recv.sack();
        let mut buf = Vec::with_capacity(packet::encoded_len(sack.as_deref(), 0));
        header.encode(sack.as_deref(), &[], &mut buf);
        self.after_send(io, buf, wnd);
    }

    fn after_send(&mut self, io: &mut Io<'_>, contents: Vec<u8>, wnd: usize) {
        self.ack_pending = false;
        self.last_advertised = wnd;
        self.last_send_us = io.now_us;
        self.stats.packets_sent += 1;
        self.stats.datagram_bytes_sent += contents.len() as u64;
        io.transmits.push_back(Transmit {
            destination: self.remote,
            contents,
            connection: Some(self.handle),
        });
    }

    /// Emit the ACK owed since the last batch, unless something already carried it.
    pub(crate) fn flush_ack(&mut self, io: &mut Io<'_>) {
        if self.ack_pending && !matches!(self.state, State::Failed(_) | State::Dead) {
            self.send_state(io);
        }
    }

    /// Statistics: the counters kept as packets pass, and the gauges (RTT,
    /// windows, delays) read now.
    pub fn stats(&self) -> ConnectionStats {
        let mut s = self.stats.clone();
        s.rtt_us = self.rtt.srtt_us().unwrap_or(0);
        s.rttvar_us = self.rtt.rttvar_us();
        s.rto_us = self.current_rto();
        s.cwnd = self.cc.window() as u64;
        s.peer_window = self.peer_window as u64;
        s.bytes_in_flight = self.send.bytes_in_flight() as u64;
        s.our_delay_us = self.our_delay.queuing_delay_us().unwrap_or(0);
        s.their_delay_us = self.their_delay.queuing_delay_us().unwrap_or(0);
        s.base_delay_us = self.our_delay.base_delay_us().unwrap_or(0);
        s.mtu_guess = self.cfg.max_packet_size as u32;
        s
    }

    /// True when the SYN of a duplicate handshake matches this connection.
    pub(crate) fn is_same_syn(&self, syn_seq: u16) -> bool {
        self.state == State::SynRecv && self.recv.initial_ack() == Seq(syn_seq)
    }

    /// Answer a retransmitted SYN whose SYN-ACK was lost.
    pub(crate) fn resend_syn_ack(&mut self, io: &mut Io<'_>) {
        self.send_state(io);
    }

    /// Our FIN was acknowledged: the peer has every byte we sent.
    pub fn fin_acked(&self) -> bool {
        self.send.fin_acked()
    }

    /// The application closed this connection and the engine finishes it.
    pub fn app_closed(&self) -> bool {
        self.app_closed
    }

    /// True once the endpoint may forget this connection.
    pub(crate) fn is_dead(&self) -> bool {
        self.state == State::Dead
    }
}
