//! Engine plumbing shared by every entry point.
//!
//! The one rule: never hold a borrow of the engine or of the context state
//! while calling the application. Each step borrows, takes one thing out
//! (a datagram, the queued events, some bytes), releases, and only then
//! calls out. So a callback may call any API function on the same context
//! (`utp_write`, `utp_close`, `utp_read_drained`, `utp_getpeername`, ...).
//!
//! * "send path" calls (connect, write, close, shutdown, deferred ACKs) only
//!   run [`Context::drain_transmits`]: they produce `UTP_SENDTO` and nothing else;
//! * "driving" calls (`utp_process_udp`, `utp_check_timeouts`, ICMP) also
//!   deliver the queued engine events with [`Context::dispatch`].

use std::net::SocketAddr;

use utp_core::{ConnectionError, ConnectionHandle, Event, Transmit};

use crate::addr::CAddr;
use crate::callbacks::LogLevel;
use crate::context::{Context, Pending};
use crate::names::*;
use crate::socket::Socket;
use crate::types::{sockaddr, socklen_t};
use crate::wire;

/// An incoming SYN we are about to let the engine accept.
#[derive(Debug)]
pub(crate) struct AcceptInfo {
    pub sock: &'static Socket,
    pub peer: SocketAddr,
    pub from: *const sockaddr,
    pub fromlen: socklen_t,
}

/// libutp's context-stats size buckets.
pub(crate) fn bucket(len: usize) -> usize {
    match len {
        0..=23 => 0,
        24..=373 => 1,
        374..=723 => 2,
        724..=1400 => 3,
        _ => 4,
    }
}

/// Map an engine error to libutp's code.
pub(crate) fn error_code(e: ConnectionError) -> i32 {
    match e {
        ConnectionError::Refused => UTP_ECONNREFUSED,
        ConnectionError::Reset => UTP_ECONNRESET,
        ConnectionError::TimedOut => UTP_ETIMEDOUT,
    }
}

impl Context {
    // ----- sockets ----------------------------------------------------------

    /// The socket bound to an engine handle.
    pub(crate) fn socket_of(&self, h: ConnectionHandle) -> Option<&'static Socket> {
        self.state.try_borrow().ok()?.by_handle.get(&h).copied()
    }

    /// Bind `s` to engine connection `h`. Its receive id, read from the
    /// connection itself (never from a queued packet: from inside a
    /// callback the queue may start with another connection's), is kept
    /// for log lines.
    pub(crate) fn register(&self, s: &'static Socket, h: ConnectionHandle, peer: SocketAddr) {
        s.handle.set(Some(h));
        s.peer.set(Some(peer));
        let ids = self.with_engine(|e| e.connection(h).map(|c| c.ids()));
        s.recv_id.set(ids.flatten().map_or(0, |(recv, _)| recv));
        self.state.borrow_mut().by_handle.insert(h, s);
    }

    /// Drop every index entry of `s` and turn it into a tombstone (no callback).
    pub(crate) fn forget_socket(&self, s: &'static Socket) {
        {
            let mut st = self.state.borrow_mut();
            st.all.remove(&(s as *const Socket as usize));
            if let Some(h) = s.handle.get() {
                if st.by_handle.get(&h).is_some_and(|x| std::ptr::eq(*x, s)) {
                    st.by_handle.remove(&h);
                }
            }
        }
        s.kill();
    }

    /// Fire `UTP_STATE_DESTROYING` for `s`, then release it.
    pub(crate) fn destroy_socket(&self, s: &'static Socket) {
        self.refresh_stats(s);
        self.invoke(UTP_ON_STATE_CHANGE, Some(s), |a| {
            a.u1.state = UTP_STATE_DESTROYING
        });
        if s.is_live() {
            self.forget_socket(s);
        }
    }

    /// Copy the engine's counters into the socket's `utp_socket_stats`.
    pub(crate) fn refresh_stats(&self, s: &Socket) {
        let Some(h) = s.handle.get() else {
            return;
        };
        if let Some(Some(cs)) = self.with_engine(|e| e.stats(h)) {
            s.set_stats(&cs);
        }
    }

    /// Ask GET_READ_BUFFER_SIZE how many received bytes the application still
    /// holds and shrink the advertised window by that much (libutp: window =
    /// RCVBUF - value, floor 0). The engine sends an ACK at once when the window
    /// reopens from below one packet. Without the callback the value is 0.
    pub(crate) fn update_app_buffered(&self, s: &Socket) {
        let Some(h) = s.handle.get() else {
            return;
        };
        let held = match self.invoke(UTP_GET_READ_BUFFER_SIZE, Some(s), |_| {}) {
            Some(v) => usize::try_from(v).unwrap_or(usize::MAX),
            // Unset (or cleared later): the window is the whole RCVBUF.
            None if s.app_buffered.get() == 0 => return,
            None => 0,
        };
        if !s.is_live() {
            return; // the callback destroyed the context (undefined upstream)
        }
        s.app_buffered.set(held);
        let now = self.now_us(Some(s));
        if self
            .with_engine(|e| e.set_app_buffered(now, h, held))
            .is_some()
        {
            self.drain_transmits();
        }
    }

    // ----- outgoing datagrams ---------------------------------------------------

    /// Hand every queued datagram to UTP_SENDTO, one at a time, no borrow held.
    pub(crate) fn drain_transmits(&self) {
        while let Some(Some(t)) = self.with_engine(|e| e.poll_transmit()) {
            self.send_transmit(t);
        }
    }

    /// The socket a datagram we send belongs to (for OVERHEAD statistics):
    /// the engine names the connection that sent it.
    fn outgoing_socket(&self, t: &Transmit) -> Option<&'static Socket> {
        self.socket_of(t.connection?)
    }

    pub(crate) fn send_transmit(&self, t: Transmit) {
        let len = t.contents.len();
        // SAFETY: single-threaded use of the context; the application only reads these.
        unsafe { (*self.stats.get())._nraw_send[bucket(len)] += 1 };
        if self.has_callback(UTP_ON_OVERHEAD_STATISTICS) {
            if let Some(s) = self.outgoing_socket(&t) {
                self.report_sent_overhead(s, &t);
            }
        }
        let ca = CAddr::new(t.destination);
        // SENDTO always gets socket NULL (libutp quirk kept).
        self.invoke(UTP_SENDTO, None, |a| {
            a.buf = t.contents.as_ptr();
            a.len = len;
            a.u1.address = ca.as_ptr();
            a.u2.address_len = ca.len();
            a.flags = 0;
        });
    }

    fn report_sent_overhead(&self, s: &'static Socket, t: &Transmit) {
        let Some(peer) = s.peer.get() else {
            return;
        };
        let oh = self.udp_overhead(Some(s), peer);
        let len = t.contents.len();
        let (ty, _) = wire::type_and_connid(&t.contents).unwrap_or((wire::ST_STATE, 0));
        let (kind, bytes) = match ty {
            wire::ST_DATA | wire::ST_FIN => {
                let seq = wire::seq_nr(&t.contents).unwrap_or(0);
                let fresh = s
                    .max_data_seq
                    .get()
                    .is_none_or(|m| (seq.wrapping_sub(m) as i16) > 0);
                if fresh {
                    s.max_data_seq.set(Some(seq));
                    (4, oh + wire::HEADER_LEN)
                } else {
                    (5, len + oh)
                }
            }
            wire::ST_SYN => (1, len + oh),
            _ => (3, len + oh),
        };
        self.invoke(UTP_ON_OVERHEAD_STATISTICS, Some(s), |a| {
            a.u1.send = 1;
            a.len = bytes;
            a.u2.type_ = kind;
        });
    }

    // ----- events ------------------------------------------------------------

    /// Take every event the engine queued.
    pub(crate) fn poll_events(&self) -> Vec<Event> {
        self.with_engine(|e| std::iter::from_fn(|| e.poll_event()).collect())
            .unwrap_or_default()
    }

    /// Move engine events to the pending queue.
    /// `reset_packet`: they were caused by a RESET packet, which libutp always
    /// reports as ECONNRESET (even while connecting, quirk 8).
    /// `accept`: the SYN being processed; its `Incoming` event binds that socket.
    pub(crate) fn queue_events(
        &self,
        events: Vec<Event>,
        reset_packet: bool,
        mut accept: Option<&mut Option<AcceptInfo>>,
    ) {
        let mut errored: Vec<ConnectionHandle> = Vec::new();
        for ev in events {
            if let Event::Error(h, _) = ev {
                errored.push(h);
            }
            let p = match ev {
                Event::Error(h, ConnectionError::Refused) if reset_packet => {
                    Pending::Event(Event::Error(h, ConnectionError::Reset))
                }
                Event::Incoming(h) => {
                    let Some(info) = accept.as_mut().and_then(|a| a.take()) else {
                        continue; // not ours to announce (cannot happen)
                    };
                    self.register(info.sock, h, info.peer);
                    Pending::Accept(h, info.from, info.fromlen)
                }
                Event::Closed(h) => {
                    if let Some(s) = self.socket_of(h) {
                        s.engine_closed.set(true);
                        self.refresh_stats(s);
                        // libutp reports a RESET for a known connection as
                        // ON_ERROR(ECONNRESET) even after utp_close (contract
                        // 10.5 and 8.5); the engine just closes such a
                        // connection, so say it here.
                        if reset_packet
                            && s.app_closed.get()
                            && !s.failed.get()
                            && !errored.contains(&h)
                        {
                            let err = Pending::Event(Event::Error(h, ConnectionError::Reset));
                            self.state.borrow_mut().pending.push_back(err);
                        }
                    }
                    Pending::Event(ev)
                }
                _ => Pending::Event(ev),
            };
            self.state.borrow_mut().pending.push_back(p);
        }
    }

    /// Deliver every pending event as callbacks (no borrow held while calling out).
    pub(crate) fn dispatch(&self) {
        loop {
            let next = match self.state.try_borrow_mut() {
                Ok(mut st) => st.pending.pop_front(),
                Err(_) => None,
            };
            match next {
                Some(p) => self.deliver(p),
                None => break,
            }
        }
    }

    fn deliver(&self, p: Pending) {
        match p {
            Pending::Accept(h, from, fromlen) => {
                let Some(s) = self.socket_of(h) else {
                    return;
                };
                self.log(LogLevel::Normal, Some(s), || {
                    "incoming connection".to_string()
                });
                let ca = s.peer.get().map(CAddr::new);
                self.invoke(UTP_ON_ACCEPT, Some(s), |a| {
                    if from.is_null() {
                        if let Some(ca) = &ca {
                            a.u1.address = ca.as_ptr();
                            a.u2.address_len = ca.len();
                        }
                    } else {
                        a.u1.address = from;
                        a.u2.address_len = fromlen;
                    }
                });
            }
            Pending::Event(ev) => self.deliver_event(ev),
        }
    }

    fn deliver_event(&self, ev: Event) {
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
        let Some(s) = self.socket_of(h) else {
            return;
        };
        if !s.is_live() {
            return;
        }
        match ev {
            Event::Connected(_) => {
                self.log(LogLevel::Normal, Some(s), || "connected".to_string());
                if s.app_closed.get() {
                    return;
                }
                if self.has_callback(UTP_ON_CONNECT) {
                    self.invoke(UTP_ON_CONNECT, Some(s), |_| {});
                } else {
                    self.invoke(UTP_ON_STATE_CHANGE, Some(s), |a| {
                        a.u1.state = UTP_STATE_CONNECT
                    });
                }
            }
            Event::Incoming(_) => {}
            Event::Readable(_) => self.deliver_data(s),
            Event::Writable(_) => {
                s.full.set(false);
                self.invoke(UTP_ON_STATE_CHANGE, Some(s), |a| {
                    a.u1.state = UTP_STATE_WRITABLE
                });
            }
            Event::Eof(_) => {
                self.deliver_data(s);
                self.log(LogLevel::Normal, Some(s), || {
                    "got FIN: end of stream".to_string()
                });
                self.invoke(UTP_ON_STATE_CHANGE, Some(s), |a| a.u1.state = UTP_STATE_EOF);
            }
            Event::Error(_, e) => {
                s.failed.set(true);
                let code = error_code(e);
                self.log(LogLevel::Normal, Some(s), || format!("error {code}"));
                self.invoke(UTP_ON_ERROR, Some(s), |a| a.u1.error_code = code);
            }
            Event::Closed(_) => {
                s.engine_closed.set(true);
            }
            // libutp announced the socket at its SYN already.
            Event::Established(_) => {}
            Event::DelaySample(_, us) => {
                let ms = (us / 1000) as std::os::raw::c_int;
                self.invoke(UTP_ON_DELAY_SAMPLE, Some(s), |a| a.u1.sample_ms = ms);
            }
        }
    }

    /// Read every in-order byte out of the engine and hand it to UTP_ON_READ.
    fn deliver_data(&self, s: &'static Socket) {
        const CHUNK: usize = 64 * 1024;
        let Some(h) = s.handle.get() else {
            return;
        };
        loop {
            let mut buf = self
                .read_buf
                .try_borrow_mut()
                .map(|mut b| std::mem::take(&mut *b))
                .unwrap_or_default();
            if buf.len() < CHUNK {
                buf.resize(CHUNK, 0);
            }
            let now = self.last_us.get();
            let n = match self.with_engine(|e| e.read(now, h, &mut buf)) {
                Some(Ok(n)) => n,
                _ => 0,
            };
            if n > 0 {
                // A read may reopen the window (window-update ACK).
                self.drain_transmits();
                if !s.read_shut.get() && !s.app_closed.get() {
                    self.invoke(UTP_ON_READ, Some(s), |a| {
                        a.buf = buf.as_ptr();
                        a.len = n;
                    });
                }
                // The application may keep what it was handed: ask how much.
                if s.is_live() {
                    self.update_app_buffered(s);
                }
            }
            if let Ok(mut b) = self.read_buf.try_borrow_mut() {
                if b.is_empty() {
                    *b = buf;
                }
            }
            if n == 0 {
                break;
            }
        }
    }
}
