//! The application side of a simulated node: a bulk sender and a verifying
//! sink for every connection of the node.
//!
//! Every byte stream carries a position-based pattern keyed by the sender's
//! address ([`pattern_key`], [`fill_pattern`]), so the receiver checks every
//! byte it reads without any shared state, and a byte delivered at the wrong
//! offset is caught.

use std::fmt;
use std::net::SocketAddr;

use crate::endpoint::{ConnectionError, ConnectionHandle, Endpoint, Event, StreamError};
use crate::stats::ConnectionStats;

/// Key of the byte stream sent by `sender`.
pub fn pattern_key(sender: SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sender.to_string().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fill `buf` with the bytes of stream `key` starting at stream offset `offset`.
pub fn fill_pattern(key: u64, offset: u64, buf: &mut [u8]) {
    // Unaligned head, then whole words.
    let head = (((8 - offset % 8) % 8) as usize).min(buf.len());
    let (first, rest) = buf.split_at_mut(head);
    fill_pattern_slow(key, offset, first);
    let mut word_index = (offset + head as u64) / 8;
    let mut words = rest.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&splitmix64(key ^ word_index).to_le_bytes());
        word_index += 1;
    }
    let tail = words.into_remainder();
    fill_pattern_slow(key, word_index * 8, tail);
}

fn fill_pattern_slow(key: u64, offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let pos = offset + i as u64;
        let word = splitmix64(key ^ (pos / 8)).to_le_bytes();
        let start = (pos % 8) as usize;
        let n = (8 - start).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
    }
}

/// Offset of the first byte of `data` that differs from stream `key` at `offset`.
pub fn check_pattern(key: u64, offset: u64, data: &[u8]) -> Option<u64> {
    let mut expected = [0u8; 4096];
    for (c, chunk) in data.chunks(expected.len()).enumerate() {
        let off = offset + (c * expected.len()) as u64;
        let exp = &mut expected[..chunk.len()];
        fill_pattern(key, off, exp);
        if exp != chunk {
            let i = exp.iter().zip(chunk).position(|(a, b)| a != b).unwrap_or(0);
            return Some(off + i as u64);
        }
    }
    None
}

/// What a connection should do with its send direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowPlan {
    /// Bytes to send (`u64::MAX`: keep the send buffer full forever).
    pub send: u64,
    /// Queue a FIN (`shutdown_write`) once everything was written.
    pub shutdown: bool,
    /// `close` the connection once everything was written and the peer's EOF was read.
    pub close: bool,
}

impl FlowPlan {
    /// Receive only; never write, never shut down.
    pub fn sink() -> Self {
        FlowPlan {
            send: 0,
            shutdown: false,
            close: false,
        }
    }
    /// Send `bytes`, then shut down the write half.
    pub fn send(bytes: u64) -> Self {
        FlowPlan {
            send: bytes,
            shutdown: true,
            close: false,
        }
    }
    /// Send forever (a backlogged bulk flow).
    pub fn unbounded() -> Self {
        FlowPlan {
            send: u64::MAX,
            shutdown: false,
            close: false,
        }
    }
    /// Receive, and send nothing but a FIN.
    pub fn fin_only() -> Self {
        FlowPlan::send(0)
    }
    /// The same plan, and also `close` once done (see [`FlowPlan::close`]).
    pub fn and_close(mut self) -> Self {
        self.close = true;
        self
    }
    /// The same plan without the FIN after the last byte.
    pub fn no_shutdown(mut self) -> Self {
        self.shutdown = false;
        self
    }
}

/// Everything a [`Peer`] saw on one connection.
#[derive(Clone, Debug)]
pub struct Flow {
    /// The connection's handle on the node's endpoint.
    pub handle: ConnectionHandle,
    /// The remote address (known at once for outgoing connections, from
    /// `peer_addr` for incoming ones).
    pub remote: Option<SocketAddr>,
    /// We initiated the connection (`Peer::connect`), rather than accepted it.
    pub outgoing: bool,
    /// What this connection does with its send direction.
    pub plan: FlowPlan,
    /// [`pattern_key`] of the stream we send (of our own address).
    pub send_key: u64,
    /// [`pattern_key`] of the stream we expect (of the remote address);
    /// `None` until the remote is known.
    pub recv_key: Option<u64>,
    /// When the flow began: `connect` called, or `Incoming` seen (µs,
    /// simulated time, as every time below).
    pub started_at: u64,
    /// `Connected` (outgoing) or `Incoming` (incoming).
    pub connected_at: Option<u64>,
    /// Bytes accepted by `write`.
    pub sent: u64,
    /// When the last byte of the plan was accepted by `write`.
    pub all_written_at: Option<u64>,
    /// When `shutdown_write` succeeded (FIN queued).
    pub shutdown_at: Option<u64>,
    /// When the peer called `close` on this connection.
    pub close_called_at: Option<u64>,
    /// Bytes read so far.
    pub received: u64,
    /// `(time, cumulative bytes read)` after each read burst.
    pub recv_log: Vec<(u64, u64)>,
    /// First stream offset whose byte was wrong, and when it was read.
    pub mismatch: Option<(u64, u64)>,
    /// `Event::Eof` time.
    pub eof_at: Option<u64>,
    /// Time `read` first returned `Ok(0)`.
    pub read_end_at: Option<u64>,
    /// `Event::Error` time and kind.
    pub error: Option<(u64, ConnectionError)>,
    /// `Event::Closed` time (the handle became invalid).
    pub closed_at: Option<u64>,
    /// Unexpected results of stream calls: `(time, call, error)`.
    pub call_errors: Vec<(u64, &'static str, StreamError)>,
    /// The last statistics snapshot taken while the connection was alive.
    pub stats: Option<ConnectionStats>,
    /// Every event of this connection, with its time.
    pub events: Vec<(u64, Event)>,
    send_cache: PatternCache,
}

/// A window of the stream we send, so a short `write` does not make us
/// generate the same bytes again.
#[derive(Clone, Default)]
struct PatternCache {
    start: u64,
    bytes: Vec<u8>,
}

impl fmt::Debug for PatternCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PatternCache({}..{})",
            self.start,
            self.start + self.bytes.len() as u64
        )
    }
}

impl PatternCache {
    /// Up to `want` bytes of stream `key` from `offset` (at least one byte if
    /// `want > 0`); refills `fill` bytes (at least `want`) when needed.
    fn get(&mut self, key: u64, offset: u64, want: usize, fill: usize) -> &[u8] {
        let end = self.start + self.bytes.len() as u64;
        if offset < self.start || offset >= end {
            self.start = offset;
            self.bytes.resize(fill.max(want), 0);
            fill_pattern(key, offset, &mut self.bytes);
        }
        let from = (offset - self.start) as usize;
        let n = want.min(self.bytes.len() - from);
        &self.bytes[from..from + n]
    }
}

impl Flow {
    fn new(
        handle: ConnectionHandle,
        remote: Option<SocketAddr>,
        outgoing: bool,
        plan: FlowPlan,
        send_key: u64,
        now: u64,
    ) -> Self {
        Flow {
            handle,
            remote,
            outgoing,
            plan,
            send_key,
            recv_key: remote.map(pattern_key),
            started_at: now,
            connected_at: None,
            sent: 0,
            all_written_at: None,
            shutdown_at: None,
            close_called_at: None,
            received: 0,
            recv_log: Vec::new(),
            mismatch: None,
            eof_at: None,
            read_end_at: None,
            error: None,
            closed_at: None,
            call_errors: Vec::new(),
            stats: None,
            events: Vec::new(),
            send_cache: PatternCache::default(),
        }
    }

    /// Everything in the plan was written (and the FIN queued, if planned).
    pub fn send_done(&self) -> bool {
        self.sent >= self.plan.send && (!self.plan.shutdown || self.shutdown_at.is_some())
    }
    /// The peer's EOF arrived and every byte read so far was right.
    pub fn got_eof(&self) -> bool {
        self.eof_at.is_some()
    }
    /// Finished with no error: plan sent, EOF seen.
    pub fn finished(&self) -> bool {
        self.send_done() && self.got_eof() && self.error.is_none()
    }
    /// Something ended this connection: EOF, error or `Closed`.
    pub fn ended(&self) -> bool {
        self.eof_at.is_some() || self.error.is_some() || self.closed_at.is_some()
    }
    /// Bytes received at or before `t` (from the receive log).
    pub fn received_at(&self, t: u64) -> u64 {
        match self.recv_log.partition_point(|&(at, _)| at <= t) {
            0 => 0,
            i => self.recv_log[i - 1].1,
        }
    }
    /// Goodput (bits/s) between `from_us` and `to_us`.
    pub fn goodput_bps(&self, from_us: u64, to_us: u64) -> f64 {
        if to_us <= from_us {
            return 0.0;
        }
        (self.received_at(to_us) - self.received_at(from_us)) as f64 * 8e6
            / (to_us - from_us) as f64
    }
    /// Retransmissions (timeout + fast) according to the last stats snapshot.
    pub fn retransmits(&self) -> u64 {
        self.stats
            .as_ref()
            .map_or(0, |s| s.timeout_retransmits + s.fast_retransmits)
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |t: Option<u64>| t.map_or("-".to_string(), |t| format!("{:.3}s", t as f64 / 1e6));
        write!(
            f,
            "{:?} {} {:?} plan={}/{}{} sent={} recv={} connected={} eof={} read_end={} shutdown={} closed={} err={:?} mismatch={:?}",
            self.handle,
            if self.outgoing { "->" } else { "<-" },
            self.remote,
            if self.plan.send == u64::MAX { "inf".to_string() } else { self.plan.send.to_string() },
            if self.plan.shutdown { "+fin" } else { "" },
            if self.plan.close { "+close" } else { "" },
            self.sent,
            self.received,
            ms(self.connected_at),
            ms(self.eof_at),
            ms(self.read_end_at),
            ms(self.shutdown_at),
            ms(self.closed_at),
            self.error,
            self.mismatch,
        )?;
        if !self.call_errors.is_empty() {
            write!(
                f,
                " call_errors={:?}",
                &self.call_errors[..self.call_errors.len().min(5)]
            )?;
        }
        if let Some(s) = &self.stats {
            write!(
                f,
                " | stats: sent={} rcvd={} pkts={}/{} rto_retx={} fast_retx={} timeouts={} dup_rx={} rtt={}us rto={}us cwnd={} peer_wnd={} inflight={} our_delay={}us",
                s.bytes_sent,
                s.bytes_received,
                s.packets_sent,
                s.packets_received,
                s.timeout_retransmits,
                s.fast_retransmits,
                s.timeouts,
                s.duplicates_received,
                s.rtt_us,
                s.rto_us,
                s.cwnd,
                s.peer_window,
                s.bytes_in_flight,
                s.our_delay_us,
            )?;
        }
        Ok(())
    }
}

/// A hook that sees every event before the [`Peer`] handles it.
pub type EventHook = Box<dyn FnMut(&mut Endpoint, u64, &Event)>;

/// The application of one node: for every connection, a bulk sender that
/// keeps the send buffer full according to its [`FlowPlan`], and a sink that
/// reads everything, checks every byte, and logs progress, EOF and errors.
pub struct Peer {
    addr: SocketAddr,
    /// Plan for connections we accept.
    pub accept_plan: FlowPlan,
    /// Connections, oldest first (handles may be reused after `Closed`; the
    /// newest flow with a handle owns it).
    pub flows: Vec<Flow>,
    /// Every event with its time.
    pub events: Vec<(u64, Event)>,
    /// Events for handles no flow knew.
    pub unknown_events: Vec<(u64, Event)>,
    /// Optional custom logic, run before the default handling.
    pub hook: Option<EventHook>,
    /// Largest single `write` call (bytes).
    pub write_chunk: usize,
    /// While true, nothing is read (the receive buffer fills and the
    /// advertised window closes); call [`Peer::pump`] after clearing it.
    pub pause_reads: bool,
    buf: Vec<u8>,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("addr", &self.addr)
            .field("accept_plan", &self.accept_plan)
            .field("flows", &self.flows)
            .field("hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// The application of the node at `addr`: accepts with
    /// [`FlowPlan::sink`], writes in 64 KiB chunks, no hook.
    pub fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            accept_plan: FlowPlan::sink(),
            flows: Vec::new(),
            events: Vec::new(),
            unknown_events: Vec::new(),
            hook: None,
            write_chunk: 64 * 1024,
            pause_reads: false,
            buf: vec![0; 64 * 1024],
        }
    }

    /// The node's address (its streams are keyed by it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Start an outgoing connection on `ep` and track it with `plan`.
    pub fn connect(
        &mut self,
        ep: &mut Endpoint,
        now: u64,
        remote: SocketAddr,
        plan: FlowPlan,
    ) -> ConnectionHandle {
        let h = ep.connect(now, remote);
        self.flows.push(Flow::new(
            h,
            Some(remote),
            true,
            plan,
            pattern_key(self.addr),
            now,
        ));
        h
    }

    /// The newest flow with handle `h`.
    pub fn flow(&self, h: ConnectionHandle) -> Option<&Flow> {
        self.flows.iter().rev().find(|f| f.handle == h)
    }
    fn flow_index(&self, h: ConnectionHandle) -> Option<usize> {
        self.flows.iter().rposition(|f| f.handle == h)
    }

    /// The first flow (handy with one connection per node).
    pub fn first(&self) -> &Flow {
        self.flows
            .first()
            .unwrap_or_else(|| panic!("{}: no connection", self.addr))
    }

    /// Every flow finished (plan sent, EOF seen, no error).
    pub fn all_finished(&self) -> bool {
        !self.flows.is_empty() && self.flows.iter().all(Flow::finished)
    }

    /// Every flow ended one way or another.
    pub fn all_ended(&self) -> bool {
        !self.flows.is_empty() && self.flows.iter().all(Flow::ended)
    }

    /// Forget all flows (the node was restarted).
    pub fn reset(&mut self) {
        self.flows.clear();
    }

    /// Handle one event of `ep` at `now`.
    pub fn on_event(&mut self, ep: &mut Endpoint, now: u64, ev: Event) {
        if let Some(hook) = self.hook.as_mut() {
            hook(ep, now, &ev);
        }
        self.events.push((now, ev));
        let h = match ev {
            Event::Connected(h)
            | Event::Incoming(h)
            | Event::Readable(h)
            | Event::Writable(h)
            | Event::Eof(h)
            | Event::Error(h, _)
            | Event::Closed(h)
            | Event::Established(h)
            | Event::DelaySample(h, _) => h,
        };
        if let Event::Incoming(h) = ev {
            let remote = ep.peer_addr(h);
            let mut flow = Flow::new(
                h,
                remote,
                false,
                self.accept_plan,
                pattern_key(self.addr),
                now,
            );
            flow.connected_at = Some(now);
            self.flows.push(flow);
        }
        let Some(i) = self.flow_index(h) else {
            self.unknown_events.push((now, ev));
            return;
        };
        self.flows[i].events.push((now, ev));
        match ev {
            Event::Connected(_) => self.flows[i].connected_at = Some(now),
            Event::Eof(_) => {
                self.flows[i].eof_at.get_or_insert(now);
            }
            Event::Error(_, e) => {
                self.flows[i].error.get_or_insert((now, e));
            }
            Event::Closed(_) => {
                self.flows[i].closed_at = Some(now);
                return;
            }
            _ => {}
        }
        if self.flows[i].closed_at.is_some() || self.flows[i].close_called_at.is_some() {
            return;
        }
        if let Some(s) = ep.stats(h) {
            self.flows[i].stats = Some(s);
        }
        if self.flows[i].error.is_some() {
            return;
        }
        self.drain_reads(ep, now, i);
        self.pump_writes(ep, now, i);
        let f = &self.flows[i];
        if f.plan.close && f.send_done() && f.read_end_at.is_some() && f.close_called_at.is_none() {
            self.flows[i].close_called_at = Some(now);
            ep.close(now, h);
        }
    }

    /// Read and write what can be read and written on `h` now (after a plan
    /// change or `pause_reads` was cleared).
    pub fn pump(&mut self, ep: &mut Endpoint, now: u64, h: ConnectionHandle) {
        let Some(i) = self.flow_index(h) else { return };
        let f = &self.flows[i];
        if f.error.is_some() || f.closed_at.is_some() || f.close_called_at.is_some() {
            return;
        }
        self.drain_reads(ep, now, i);
        self.pump_writes(ep, now, i);
    }

    /// Change what flow `h` sends (e.g. start sending later) and pump it.
    pub fn set_plan(&mut self, ep: &mut Endpoint, now: u64, h: ConnectionHandle, plan: FlowPlan) {
        if let Some(i) = self.flow_index(h) {
            self.flows[i].plan = plan;
            self.flows[i].all_written_at = None;
            self.pump(ep, now, h);
        }
    }

    fn drain_reads(&mut self, ep: &mut Endpoint, now: u64, i: usize) {
        let h = self.flows[i].handle;
        if self.flows[i].read_end_at.is_some() || self.pause_reads {
            return;
        }
        let before = self.flows[i].received;
        loop {
            match ep.read(now, h, &mut self.buf) {
                Ok(0) => {
                    self.flows[i].read_end_at = Some(now);
                    break;
                }
                Ok(n) => {
                    let f = &mut self.flows[i];
                    if f.recv_key.is_none() {
                        f.remote = ep.peer_addr(h);
                        f.recv_key = f.remote.map(pattern_key);
                    }
                    if f.mismatch.is_none() {
                        if let Some(off) = f
                            .recv_key
                            .and_then(|k| check_pattern(k, f.received, &self.buf[..n]))
                        {
                            f.mismatch = Some((off, now));
                        }
                    }
                    f.received += n as u64;
                }
                Err(StreamError::WouldBlock) | Err(StreamError::NotConnected) => break,
                Err(e) => {
                    self.flows[i].call_errors.push((now, "read", e));
                    break;
                }
            }
        }
        let f = &mut self.flows[i];
        if f.received != before {
            f.recv_log.push((now, f.received));
        }
    }

    fn pump_writes(&mut self, ep: &mut Endpoint, now: u64, i: usize) {
        let h = self.flows[i].handle;
        let chunk = self.write_chunk;
        while self.flows[i].sent < self.flows[i].plan.send {
            let f = &mut self.flows[i];
            let want = (f.plan.send - f.sent).min(chunk as u64) as usize;
            let data = f.send_cache.get(f.send_key, f.sent, want, chunk);
            let n = data.len();
            match ep.write(now, h, data) {
                Ok(w) => {
                    self.flows[i].sent += w as u64;
                    if w < n {
                        break;
                    }
                }
                Err(StreamError::WouldBlock) | Err(StreamError::NotConnected) => break,
                Err(e) => {
                    self.flows[i].call_errors.push((now, "write", e));
                    return;
                }
            }
        }
        let f = &mut self.flows[i];
        if f.sent >= f.plan.send && f.all_written_at.is_none() {
            f.all_written_at = Some(now);
        }
        if f.sent >= f.plan.send && f.plan.shutdown && f.shutdown_at.is_none() {
            match ep.shutdown_write(now, h) {
                Ok(()) => f.shutdown_at = Some(now),
                Err(StreamError::NotConnected) | Err(StreamError::WouldBlock) => {}
                Err(e) => f.call_errors.push((now, "shutdown_write", e)),
            }
        }
    }

    /// Refresh every live flow's statistics snapshot from `ep`.
    pub fn snapshot_stats(&mut self, ep: &Endpoint) {
        for f in &mut self.flows {
            if f.closed_at.is_none() {
                if let Some(s) = ep.stats(f.handle) {
                    f.stats = Some(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_position_based() {
        let key = pattern_key("10.0.0.1:6881".parse().unwrap());
        let mut whole = vec![0u8; 10_000];
        fill_pattern(key, 0, &mut whole);
        let mut part = vec![0u8; 333];
        fill_pattern(key, 4321, &mut part);
        assert_eq!(&whole[4321..4321 + 333], &part[..]);
        assert_eq!(check_pattern(key, 0, &whole), None);
        for off in 0..20u64 {
            for len in 0..20usize {
                let mut fast = vec![0u8; len];
                let mut slow = vec![0u8; len];
                fill_pattern(key, off, &mut fast);
                fill_pattern_slow(key, off, &mut slow);
                assert_eq!(fast, slow, "offset {off} len {len}");
            }
        }
        assert_eq!(check_pattern(key, 4321, &part), None);
        assert_eq!(check_pattern(key, 4322, &part), Some(4322));
        whole[7000] ^= 1;
        assert_eq!(check_pattern(key, 0, &whole), Some(7000));
        let other = pattern_key("10.0.0.2:6881".parse().unwrap());
        assert_ne!(key, other);
        assert!(check_pattern(other, 4321, &part).is_some());
    }
}
