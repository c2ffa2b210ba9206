//! Thread-safe handles over the I/O thread.
//!
//! Every connection has a [`ConnShared`]: a `parking_lot` mutex around its
//! buffers and flags, a condition variable for blocking callers, and an
//! optional readiness callback. User threads copy bytes in and out of the
//! buffers and nudge the I/O thread with a [`Command::Kick`]; the I/O thread
//! moves bytes between the buffers and the engine (`Endpoint::write` /
//! `Endpoint::read`), then wakes waiters and calls callbacks *after*
//! releasing every lock.
//!
//! Backpressure: the I/O thread reads from the engine only while the
//! receive buffer has room, so a slow reader leaves data in the engine and
//! the window the engine advertises shrinks. Writers block (or get
//! `WouldBlock`) while the send buffer is full; it drains into the engine as
//! the congestion window allows.
//!
//! Locks are held only for copies and flag updates; no lock is held while
//! user code (a callback) runs, and the I/O thread never waits for a user.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::endpoint::{ConnectionError, EndpointConfig};
use crate::stats::ConnectionStats;

use super::udp::SocketOptions;
use super::waker::Waker;

/// A readiness callback: invoked from the I/O thread, without locks held,
/// whenever readiness may have changed. Keep it short and non-blocking
/// (queue a task, wake an event loop).
pub type ReadinessCallback = Box<dyn Fn() + Send + Sync>;
pub(crate) type SharedCallback = Arc<dyn Fn() + Send + Sync>;

/// Settings of a runtime context.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The engine's settings (buffers, congestion control, timeouts).
    pub endpoint: EndpointConfig,
    /// UDP socket settings.
    pub socket: SocketOptions,
    /// Bytes a connection's handle buffers for the reader before the I/O
    /// thread stops reading from the engine (backpressure).
    pub stream_recv_buffer: usize,
    /// Bytes a writer can queue in the handle before blocking.
    pub stream_send_buffer: usize,
    /// Incoming connections waiting for `accept` before new ones are refused.
    pub backlog: usize,
    /// Seed for connection ids; random when `None`.
    pub seed: Option<u64>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            endpoint: EndpointConfig::default(),
            socket: SocketOptions::default(),
            stream_recv_buffer: 1 << 20,
            stream_send_buffer: 256 << 10,
            backlog: 128,
            seed: None,
        }
    }
}

/// Current readiness of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// A read would not block (data, end of stream, or an error).
    pub readable: bool,
    /// A write would not block (room, or an error to report).
    pub writable: bool,
    /// The peer finished sending and everything was read.
    pub eof: bool,
    /// The connection failed (or the runtime stopped).
    pub error: bool,
}

/// Lifecycle of a connection as the handle sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Connected,
    /// The engine reported `Closed`.
    Closed,
}

pub(crate) struct ConnState {
    pub phase: Phase,
    pub error: Option<ConnectionError>,
    /// The I/O thread stopped: nothing moves any more.
    pub dead: bool,
    pub recv: VecDeque<u8>,
    pub recv_cap: usize,
    /// The engine returned end of stream; `recv` holds the last bytes.
    pub eof: bool,
    pub send: VecDeque<u8>,
    pub send_cap: usize,
    /// `shutdown(Write)` or close: no more writes; FIN after `send` drains.
    pub write_shut: bool,
    /// `shutdown(Read)`: reads return 0, incoming data is discarded.
    pub read_shut: bool,
    /// The handle was dropped or closed.
    pub user_closed: bool,
    /// A `Kick` is already on its way to the I/O thread.
    pub kick_queued: bool,
    /// The I/O thread stopped reading because `recv` was full.
    pub pull_blocked: bool,
}

/// What user threads and the I/O thread share about one connection.
pub(crate) struct ConnShared {
    pub id: u64,
    pub peer: SocketAddr,
    pub state: Mutex<ConnState>,
    pub cond: Condvar,
    pub callback: Mutex<Option<SharedCallback>>,
    /// The engine's handle (`usize::MAX` until the I/O thread assigns it).
    pub engine: AtomicUsize,
}

thread_local! {
    /// Set on I/O threads: a callback running there must never block
    /// waiting for that same thread.
    pub(crate) static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn on_io_thread() -> bool {
    ON_IO_THREAD.with(|f| f.get())
}

fn would_deadlock() -> io::Error {
    io::Error::new(
        io::ErrorKind::WouldBlock,
        "blocking uTP call from a readiness callback (I/O thread)",
    )
}

/// Runs a user callback on the I/O thread; a panic in it must not take the
/// whole context down, so it is caught and dropped.
fn run_callback(cb: &SharedCallback) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb()));
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

impl ConnShared {
    pub fn new(peer: SocketAddr, phase: Phase, config: &RuntimeConfig) -> Arc<ConnShared> {
        Arc::new(ConnShared {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            state: Mutex::new(ConnState {
                phase,
                error: None,
                dead: false,
                recv: VecDeque::new(),
                recv_cap: config.stream_recv_buffer.max(1),
                eof: false,
                send: VecDeque::new(),
                send_cap: config.stream_send_buffer.max(1),
                write_shut: false,
                read_shut: false,
                user_closed: false,
                kick_queued: false,
                pull_blocked: false,
            }),
            cond: Condvar::new(),
            callback: Mutex::new(None),
            engine: AtomicUsize::new(usize::MAX),
        })
    }

    /// Wakes blocked callers and runs the readiness callback. Call with no
    /// lock held.
    pub fn notify(&self) {
        self.cond.notify_all();
        let cb = self.callback.lock().clone();
        if let Some(cb) = cb {
            run_callback(&cb);
        }
    }
}

impl fmt::Debug for ConnShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnShared")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Requests from user threads to the I/O thread.
pub(crate) enum Command {
    /// Start connecting (the engine handle is assigned by the I/O thread).
    Connect(Arc<ConnShared>),
    /// Something changed in the connection's shared state (data to send,
    /// room to receive, shutdown, close): service it.
    Kick(Arc<ConnShared>),
    /// Snapshot the engine's statistics.
    Stats(Arc<ConnShared>, Sender<Option<ConnectionStats>>),
    /// The last user handle of the context is gone: close everything
    /// gracefully and stop.
    Shutdown,
}

pub(crate) struct AcceptState {
    pub queue: VecDeque<Arc<ConnShared>>,
    pub backlog: usize,
}

/// What the I/O thread and all handles of a context share.
pub(crate) struct ContextShared {
    pub waker: Waker,
    pub local_addr: SocketAddr,
    pub config: RuntimeConfig,
    pub accept: Mutex<AcceptState>,
    pub accept_cond: Condvar,
    pub listener_callback: Mutex<Option<SharedCallback>>,
    /// The I/O thread is gone (exited or panicked).
    pub dead: AtomicBool,
    pub exited: Mutex<bool>,
    pub exited_cond: Condvar,
}

impl ContextShared {
    pub fn notify_listener(&self) {
        self.accept_cond.notify_all();
        let cb = self.listener_callback.lock().clone();
        if let Some(cb) = cb {
            run_callback(&cb);
        }
    }
}

/// Waits for a context's I/O thread to finish (after every handle was
/// dropped and every connection closed or lingered out).
#[derive(Clone)]
pub struct ExitWatch(pub(crate) Arc<ContextShared>);

impl ExitWatch {
    /// True once the I/O thread has exited and its socket is closed.
    pub fn has_exited(&self) -> bool {
        *self.0.exited.lock()
    }

    /// Waits up to `timeout` for the I/O thread to exit.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.0.exited.lock();
        while !*g {
            if self.0.exited_cond.wait_until(&mut g, deadline).timed_out() {
                return *g;
            }
        }
        true
    }
}

impl fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitWatch")
            .field("exited", &self.has_exited())
            .finish()
    }
}

/// A user-side reference to a context. When the last one is dropped (every
/// stream, listener and context object), the I/O thread closes what is left
/// and exits.
pub struct ContextHandle {
    pub(crate) shared: Arc<ContextShared>,
    pub(crate) tx: Sender<Command>,
}

impl ContextHandle {
    pub(crate) fn send(&self, cmd: Command) {
        // The receiver lives as long as the I/O thread; if it is gone the
        // `dead` flag tells callers.
        let _ = self.tx.send(cmd);
        self.shared.waker.wake();
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub fn exit_watch(&self) -> ExitWatch {
        ExitWatch(self.shared.clone())
    }

    fn dead_error() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "uTP runtime stopped")
    }

    /// Starts a connection and waits until it is established, failed, or
    /// `timeout` passed (engine's own connect timeout when `None`).
    pub fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<StreamHandle> {
        // Peers are known by their canonical address (the socket layer
        // reports IPv4-mapped senders as IPv4).
        let addr = match addr {
            SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), v6.port()),
                None => addr,
            },
            v4 => v4,
        };
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot connect to an unspecified address",
            ));
        }
        if self.shared.local_addr.is_ipv4() && addr.is_ipv6() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv6 destination on an IPv4 context",
            ));
        }
        if self.shared.dead.load(Ordering::SeqCst) {
            return Err(Self::dead_error());
        }
        if on_io_thread() {
            return Err(would_deadlock());
        }
        let conn = ConnShared::new(addr, Phase::Connecting, &self.shared.config);
        self.send(Command::Connect(conn.clone()));
        let engine_timeout = Duration::from_micros(self.shared.config.endpoint.connect_timeout_us)
            + Duration::from_secs(5);
        let deadline = Instant::now() + timeout.unwrap_or(engine_timeout);
        let mut st = conn.state.lock();
        loop {
            if st.dead {
                return Err(Self::dead_error());
            }
            if let Some(e) = st.error {
                // Nobody will hold this handle: let the I/O thread free the
                // connection now rather than after the linger time.
                st.user_closed = true;
                st.write_shut = true;
                drop(st);
                self.send(Command::Kick(conn.clone()));
                return Err(conn_error(e));
            }
            if st.phase != Phase::Connecting {
                break;
            }
            if conn.cond.wait_until(&mut st, deadline).timed_out()
                && st.phase == Phase::Connecting
                && st.error.is_none()
            {
                st.user_closed = true;
                st.write_shut = true;
                drop(st);
                self.send(Command::Kick(conn.clone()));
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "uTP connect timed out",
                ));
            }
        }
        drop(st);
        Ok(StreamHandle {
            ctx: self.clone(),
            conn,
        })
    }

    /// Takes the next incoming connection, waiting up to `timeout`
    /// (forever when `None`; not at all when `Some(ZERO)`, giving `WouldBlock`).
    pub fn accept(self: &Arc<Self>, timeout: Option<Duration>) -> io::Result<StreamHandle> {
        let timeout = if on_io_thread() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut acc = self.shared.accept.lock();
        loop {
            if let Some(conn) = acc.queue.pop_front() {
                drop(acc);
                return Ok(StreamHandle {
                    ctx: self.clone(),
                    conn,
                });
            }
            if self.shared.dead.load(Ordering::SeqCst) {
                return Err(Self::dead_error());
            }
            match deadline {
                None => self.shared.accept_cond.wait(&mut acc),
                Some(d) => {
                    if timeout == Some(Duration::ZERO) {
                        return Err(io::Error::from(io::ErrorKind::WouldBlock));
                    }
                    if self.shared.accept_cond.wait_until(&mut acc, d).timed_out()
                        && acc.queue.is_empty()
                    {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "uTP accept timed out",
                        ));
                    }
                }
            }
        }
    }

    /// True when `accept` would not block.
    pub fn accept_ready(&self) -> bool {
        !self.shared.accept.lock().queue.is_empty() || self.shared.dead.load(Ordering::SeqCst)
    }

    /// Registers (or clears) the callback run when an incoming connection
    /// is queued.
    pub fn set_accept_callback(&self, cb: Option<ReadinessCallback>) {
        *self.shared.listener_callback.lock() = cb.map(SharedCallback::from);
    }
}

impl Drop for ContextHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        self.shared.waker.wake();
    }
}

impl fmt::Debug for ContextHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextHandle")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

pub(crate) fn conn_error(e: ConnectionError) -> io::Error {
    match e {
        ConnectionError::Refused => {
            io::Error::new(io::ErrorKind::ConnectionRefused, "uTP connection refused")
        }
        ConnectionError::Reset => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "uTP connection reset by peer",
        ),
        ConnectionError::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "uTP connection timed out")
        }
    }
}

/// How long a call may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Return `WouldBlock` instead of blocking.
    NonBlocking,
    /// Block until the deadline, then `TimedOut`.
    Until(Instant),
    /// Block as long as it takes.
    Forever,
}

impl Wait {
    pub fn from_timeout(nonblocking: bool, timeout: Option<Duration>) -> Wait {
        if nonblocking {
            Wait::NonBlocking
        } else {
            match timeout {
                Some(t) => Wait::Until(Instant::now() + t),
                None => Wait::Forever,
            }
        }
    }

    /// Blocks on `cond`; `Err` when the caller must give up.
    fn block(self, cond: &Condvar, guard: &mut MutexGuard<'_, ConnState>) -> io::Result<()> {
        if on_io_thread() {
            return Err(would_deadlock());
        }
        match self {
            Wait::NonBlocking => Err(io::Error::from(io::ErrorKind::WouldBlock)),
            Wait::Forever => {
                cond.wait(guard);
                Ok(())
            }
            Wait::Until(d) => {
                if Instant::now() >= d {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "uTP operation timed out",
                    ));
                }
                cond.wait_until(guard, d);
                Ok(())
            }
        }
    }
}

/// One connection's handle: the operations bindings build on. Dropping it
/// closes the connection gracefully (queued data is still delivered,
/// bounded by the engine's linger time).
pub struct StreamHandle {
    pub(crate) ctx: Arc<ContextHandle>,
    pub(crate) conn: Arc<ConnShared>,
}

impl fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamHandle")
            .field("id", &self.conn.id)
            .field("peer", &self.conn.peer)
            .field("local", &self.ctx.local_addr())
            .finish()
    }
}

impl StreamHandle {
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.ctx.local_addr()
    }

    pub fn context(&self) -> &Arc<ContextHandle> {
        &self.ctx
    }

    fn kick(&self, st: &mut MutexGuard<'_, ConnState>) -> bool {
        if st.kick_queued {
            return false;
        }
        st.kick_queued = true;
        true
    }

    fn send_kick(&self) {
        self.ctx.send(Command::Kick(self.conn.clone()));
    }

    /// Reads into `buf`. `Ok(0)` is end of stream (or an empty `buf`).
    pub fn read(&self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.conn.state.lock();
        loop {
            if st.read_shut {
                return Ok(0);
            }
            if !st.recv.is_empty() {
                let n = buf.len().min(st.recv.len());
                let (a, b) = st.recv.as_slices();
                let from_a = n.min(a.len());
                buf[..from_a].copy_from_slice(&a[..from_a]);
                if n > from_a {
                    buf[from_a..n].copy_from_slice(&b[..n - from_a]);
                }
                st.recv.drain(..n);
                // Ask for more once half the buffer is free again.
                let kick =
                    st.pull_blocked && st.recv.len() <= st.recv_cap / 2 && self.kick(&mut st);
                if kick {
                    st.pull_blocked = false;
                }
                let cap = st.recv_cap;
                if st.recv.is_empty() && st.recv.capacity() > cap {
                    st.recv.shrink_to(cap);
                }
                drop(st);
                if kick {
                    self.send_kick();
                }
                return Ok(n);
            }
            if st.eof || st.phase == Phase::Closed {
                return Ok(0);
            }
            if let Some(e) = st.error {
                return Err(conn_error(e));
            }
            if st.dead {
                return Err(ContextHandle::dead_error());
            }
            wait.block(&self.conn.cond, &mut st)?;
        }
    }

    /// Queues bytes for sending; returns how many were taken (at least one
    /// unless `buf` is empty).
    pub fn write(&self, buf: &[u8], wait: Wait) -> io::Result<usize> {
        let mut st = self.conn.state.lock();
        loop {
            if let Some(e) = st.error {
                return Err(conn_error(e));
            }
            if st.dead {
                return Err(ContextHandle::dead_error());
            }
            if st.write_shut || st.user_closed || st.phase == Phase::Closed {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "uTP write half is shut down",
                ));
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let room = st.send_cap.saturating_sub(st.send.len());
            if room > 0 {
                let n = room.min(buf.len());
                st.send.extend(&buf[..n]);
                let kick = self.kick(&mut st);
                drop(st);
                if kick {
                    self.send_kick();
                }
                return Ok(n);
            }
            wait.block(&self.conn.cond, &mut st)?;
        }
    }

    /// Waits until everything written was handed to the engine.
    pub fn flush(&self, wait: Wait) -> io::Result<()> {
        let mut st = self.conn.state.lock();
        loop {
            if st.send.is_empty() {
                return Ok(());
            }
            if let Some(e) = st.error {
                return Err(conn_error(e));
            }
            if st.dead {
                return Err(ContextHandle::dead_error());
            }
            wait.block(&self.conn.cond, &mut st)?;
        }
    }

    /// Half-closes: no more writes; the FIN follows the queued data.
    pub fn shutdown_write(&self) -> io::Result<()> {
        let mut st = self.conn.state.lock();
        if st.dead {
            return Err(ContextHandle::dead_error());
        }
        if st.write_shut {
            return Ok(());
        }
        st.write_shut = true;
        let kick = self.kick(&mut st);
        drop(st);
        if kick {
            self.send_kick();
        }
        self.conn.notify();
        Ok(())
    }

    /// Stops reading: reads return 0 and incoming data is discarded.
    pub fn shutdown_read(&self) -> io::Result<()> {
        let mut st = self.conn.state.lock();
        st.read_shut = true;
        st.recv.clear();
        let kick = st.pull_blocked && self.kick(&mut st);
        st.pull_blocked = false;
        drop(st);
        if kick {
            self.send_kick();
        }
        self.conn.notify();
        Ok(())
    }

    /// Current readiness.
    pub fn readiness(&self) -> Readiness {
        let st = self.conn.state.lock();
        let error = st.error.is_some() || st.dead;
        let eof = (st.eof || st.phase == Phase::Closed) && st.recv.is_empty();
        Readiness {
            readable: !st.recv.is_empty() || eof || error || st.read_shut,
            writable: error
                || st.write_shut
                || st.user_closed
                || st.phase == Phase::Closed
                || st.send.len() < st.send_cap,
            eof,
            error,
        }
    }

    /// The connection's error, if it failed.
    pub fn take_error(&self) -> Option<io::Error> {
        let st = self.conn.state.lock();
        match (st.error, st.dead) {
            (Some(e), _) => Some(conn_error(e)),
            (None, true) => Some(ContextHandle::dead_error()),
            _ => None,
        }
    }

    /// Registers (or clears) the readiness callback. It runs on the I/O
    /// thread without locks held; check [`readiness`](Self::readiness)
    /// after registering, since changes before it are not replayed.
    pub fn set_readiness_callback(&self, cb: Option<ReadinessCallback>) {
        *self.conn.callback.lock() = cb.map(SharedCallback::from);
    }

    /// A snapshot of the engine's statistics for this connection.
    pub fn stats(&self) -> io::Result<ConnectionStats> {
        if on_io_thread() {
            return Err(would_deadlock());
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.ctx.send(Command::Stats(self.conn.clone(), tx));
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection no longer in the engine",
            )),
            Err(_) => Err(ContextHandle::dead_error()),
        }
    }

    /// Bytes queued in the handle, not yet handed to the engine.
    pub fn queued_send_bytes(&self) -> usize {
        self.conn.state.lock().send.len()
    }

    /// Bytes received and buffered in the handle, not yet read.
    pub fn buffered_recv_bytes(&self) -> usize {
        self.conn.state.lock().recv.len()
    }

    /// Closes gracefully without blocking (what `Drop` does).
    pub fn close(self) {}

    fn close_inner(&self) {
        let mut st = self.conn.state.lock();
        if st.user_closed {
            return;
        }
        st.user_closed = true;
        st.write_shut = true;
        st.read_shut = true;
        st.recv = VecDeque::new();
        let kick = self.kick(&mut st);
        drop(st);
        *self.conn.callback.lock() = None;
        if kick {
            self.send_kick();
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.close_inner();
    }
}
