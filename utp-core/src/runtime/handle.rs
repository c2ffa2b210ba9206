//! Thread-safe handles over the I/O thread.
//!
//! Every connection has a `ConnShared`: a `parking_lot` mutex around its
//! buffers and flags, a condition variable for blocking callers, and an
//! optional readiness callback. User threads copy bytes in and out of the
//! buffers and nudge the I/O thread with a `Command::Kick`; the I/O thread
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
//!
//! # Waiting, three ways
//!
//! - **Blocking**: pass [`Wait::Forever`] or [`Wait::Until`] to `read`,
//!   `write`, `accept`, [`StreamHandle::wait`]. To stay cancellable (a
//!   Python Ctrl-C), wait in slices of [`Wait::Until`] (50 ms) and check for
//!   signals between them.
//! - **Non-blocking**: [`Wait::NonBlocking`] gives `WouldBlock`;
//!   [`ContextHandle::start_connect`] returns at once.
//! - **Event loops**: [`StreamHandle::poll_fd`] / [`ContextHandle::poll_fd`]
//!   give an `eventfd` that polls readable exactly while the handle is ready
//!   for the chosen [`Interest`] (level-triggered: it stays readable until
//!   the condition is consumed). Or a readiness callback, which coalesces:
//!   after it ran once it runs again only after the user looked at
//!   [`StreamHandle::readiness`] (or accepted), so a queue it feeds (a Node
//!   thread-safe function) holds at most one notification per handle.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::endpoint::{ConnectionError, EndpointConfig};
use crate::stats::ConnectionStats;

use super::error::connection_error;
use super::notify::Notifier;
use super::readiness::{Interest, Readiness};
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
    /// Room a stream needs before it reports itself writable (capped at half
    /// the send buffer); see [`StreamHandle::set_send_low_water`].
    pub send_low_water: usize,
    /// Incoming connections waiting for `accept` before new ones are refused.
    pub backlog: usize,
    /// ICMP "port unreachable" for one of our datagrams fails the
    /// connection at once (`ConnectionRefused` while connecting,
    /// `ConnectionReset` after). `false` ignores it, as libutp programs that
    /// never read ICMP see it: the connection times out instead.
    pub icmp_unreachable: bool,
    /// Dropping the last handle of the context waits until every byte
    /// written was acknowledged (at most the engine's linger time,
    /// `endpoint.linger_us`, plus two seconds), so a program that returns
    /// from `main` right after writing still delivers. `false`: return at
    /// once and let the I/O thread finish in the background (data is lost if
    /// the process exits first).
    pub linger_on_drop: bool,
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
            send_low_water: 16 << 10,
            backlog: 128,
            icmp_unreachable: true,
            linger_on_drop: true,
            seed: None,
        }
    }
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
    /// The handshake completed at some point.
    pub connected: bool,
    /// Our FIN was acknowledged: the peer has everything we wrote.
    pub fin_acked: bool,
    /// The user asked for an abortive close (RESET).
    pub abort: bool,
    /// The user wants a fresh statistics snapshot.
    pub stats_wanted: bool,
}

impl ConnState {
    fn readiness(&self, low_water: usize) -> Readiness {
        let error = self.error.is_some() || self.dead;
        let eof = (self.eof || self.phase == Phase::Closed) && self.recv.is_empty();
        let connecting = self.phase == Phase::Connecting && !error;
        let low_water = low_water.clamp(1, (self.send_cap / 2).max(1));
        let room = self.send_cap.saturating_sub(self.send.len());
        Readiness {
            readable: !self.recv.is_empty() || eof || error || self.read_shut,
            writable: !connecting
                && (error
                    || self.write_shut
                    || self.user_closed
                    || self.phase == Phase::Closed
                    || room >= low_water),
            eof,
            error,
            connected: self.connected,
            closed: error || self.phase == Phase::Closed || (eof && self.fin_acked),
            finished: self.fin_acked,
        }
    }
}

/// What user threads and the I/O thread share about one connection.
pub(crate) struct ConnShared {
    pub id: u64,
    pub peer: SocketAddr,
    pub state: Mutex<ConnState>,
    pub cond: Condvar,
    pub callback: Mutex<Option<SharedCallback>>,
    /// The callback may run (cleared when it runs, set by `readiness()`).
    pub callback_armed: AtomicBool,
    /// The engine's handle (`usize::MAX` until the I/O thread assigns it).
    pub engine: AtomicUsize,
    /// The pollable descriptor, made on first use, and what it polls for.
    pub notifier: OnceLock<Notifier>,
    /// Readable while a read would not block: what a reader that receives
    /// datagrams itself (see `StreamHandle::receive_while_waiting`) also
    /// polls, so that the I/O thread can still wake it.
    pub read_wake: OnceLock<Notifier>,
    /// A reader of this connection is receiving datagrams itself.
    pub reader_polling: AtomicBool,
    pub interest: AtomicU8,
    /// Room needed before the stream reports itself writable.
    pub low_water: AtomicUsize,
    /// The latest statistics the I/O thread took.
    pub stats: Mutex<Option<ConnectionStats>>,
    /// The local address this connection uses (found on first request).
    pub local: OnceLock<SocketAddr>,
}

thread_local! {
    /// Set on I/O threads: a callback running there must never block
    /// waiting for that same thread.
    pub(crate) static ON_IO_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

thread_local! {
    /// The connection (`ConnShared::id`) whose reader this thread is while
    /// it receives datagrams itself; 0 otherwise.
    pub(crate) static POLLING_CONN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
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
                connected: phase == Phase::Connected,
                fin_acked: false,
                abort: false,
                stats_wanted: false,
            }),
            cond: Condvar::new(),
            callback: Mutex::new(None),
            callback_armed: AtomicBool::new(true),
            engine: AtomicUsize::new(usize::MAX),
            notifier: OnceLock::new(),
            read_wake: OnceLock::new(),
            reader_polling: AtomicBool::new(false),
            interest: AtomicU8::new(Interest::READABLE.bits()),
            low_water: AtomicUsize::new(config.send_low_water),
            stats: Mutex::new(None),
            local: OnceLock::new(),
        })
    }

    /// The user let go of the connection: no more reads or writes; the
    /// I/O thread delivers what is queued, then closes. Returns whether a
    /// `Kick` must be sent.
    pub fn user_close(&self) -> bool {
        let mut st = self.state.lock();
        if st.user_closed {
            return false;
        }
        st.user_closed = true;
        st.write_shut = true;
        st.read_shut = true;
        st.recv = VecDeque::new();
        let kick = !st.kick_queued;
        st.kick_queued = true;
        drop(st);
        *self.callback.lock() = None;
        kick
    }

    pub fn readiness(&self) -> Readiness {
        let low_water = self.low_water.load(Ordering::Relaxed);
        self.state.lock().readiness(low_water)
    }

    /// Brings the pollable descriptor in line with the state. Call with no
    /// lock held.
    pub fn refresh_fd(&self) {
        if let Some(n) = self.notifier.get() {
            n.update(|| {
                let interest = Interest::from_bits(self.interest.load(Ordering::Acquire));
                self.readiness().matches(interest)
            });
        }
        // Only a reader receiving datagrams itself waits on it (and one that
        // just stopped, to clear it); not when that reader is the caller.
        if let Some(n) = self.read_wake.get() {
            let by_the_reader = POLLING_CONN.with(|c| c.get()) == self.id;
            if (self.reader_polling.load(Ordering::SeqCst) && !by_the_reader) || n.is_signaled() {
                n.update(|| self.readiness().readable);
            }
        }
    }

    /// Wakes blocked callers, updates the descriptor and runs the readiness
    /// callback (once until re-armed). Call with no lock held.
    pub fn notify(&self) {
        self.cond.notify_all();
        self.refresh_fd();
        let cb = self.callback.lock().clone();
        if let Some(cb) = cb {
            if self.callback_armed.swap(false, Ordering::AcqRel) {
                run_callback(&cb);
            }
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
    /// Send a plain UDP datagram from the context's port.
    SendDatagram(Vec<u8>, SocketAddr),
    /// The last user handle of the context is gone: close everything
    /// gracefully and stop.
    Shutdown,
}

pub(crate) struct AcceptState {
    pub queue: VecDeque<Arc<ConnShared>>,
    pub backlog: usize,
}

/// Non-uTP datagrams that arrived on the port, for the application.
#[derive(Default)]
pub(crate) struct DatagramQueue {
    pub enabled: bool,
    pub queue: VecDeque<(Vec<u8>, SocketAddr)>,
}

/// Datagrams kept for the application before the oldest are dropped.
pub(crate) const MAX_QUEUED_DATAGRAMS: usize = 1024;

/// What the I/O thread and all handles of a context share.
pub(crate) struct ContextShared {
    pub waker: Waker,
    pub local_addr: SocketAddr,
    pub config: RuntimeConfig,
    pub accept: Mutex<AcceptState>,
    pub accept_cond: Condvar,
    pub listener_callback: Mutex<Option<SharedCallback>>,
    pub listener_callback_armed: AtomicBool,
    /// Incoming connections are accepted (the engine's SYN filter reads it).
    pub accepting: Arc<AtomicBool>,
    /// `ContextHandle::close` was called: `accept` fails with `EBADF`.
    pub closed: AtomicBool,
    pub datagrams: Mutex<DatagramQueue>,
    /// The context's pollable descriptor and what it polls for.
    pub notifier: OnceLock<Notifier>,
    pub interest: AtomicU8,
    /// The I/O thread's state. It sleeps without this lock, so a user
    /// thread may take it to drive the engine itself (see `Driver::drive`);
    /// `None` once the thread has exited.
    pub core: Mutex<Option<super::driver::Driver>>,
    /// The UDP socket's descriptor (valid while the I/O thread runs).
    pub udp_fd: RawFd,
    /// Who receives datagrams: the I/O thread, a user thread blocked in
    /// `read` (the I/O thread leaves the socket's input to it), or nobody
    /// for a moment (parked until `park_deadline`, µs).
    pub udp_poller: AtomicU8,
    pub park_deadline: AtomicU64,
    /// An application's event loop receives the datagrams
    /// (`ContextHandle::set_event_loop_input`): the I/O thread leaves the
    /// socket's input alone.
    pub event_loop_input: AtomicBool,
    /// Readers blocked on the condition variable while another thread
    /// receives: the receiver then hands the input back instead of parking.
    pub waiting_readers: AtomicUsize,
    /// The I/O thread's alarm, and the context's clock.
    pub timer: super::timer::Timer,
    /// The I/O thread is gone (exited or panicked).
    pub dead: AtomicBool,
    pub exited: Mutex<bool>,
    pub exited_cond: Condvar,
}

impl ContextShared {
    fn ready_for(&self, interest: Interest) -> bool {
        self.dead.load(Ordering::SeqCst)
            || self.closed.load(Ordering::SeqCst)
            || (interest.contains(Interest::ACCEPTABLE) && !self.accept.lock().queue.is_empty())
            || (interest.contains(Interest::DATAGRAM) && !self.datagrams.lock().queue.is_empty())
    }

    pub fn refresh_fd(&self) {
        if let Some(n) = self.notifier.get() {
            n.update(|| self.ready_for(Interest::from_bits(self.interest.load(Ordering::Acquire))));
        }
    }

    pub fn notify_listener(&self) {
        self.accept_cond.notify_all();
        self.refresh_fd();
        let cb = self.listener_callback.lock().clone();
        if let Some(cb) = cb {
            if self.listener_callback_armed.swap(false, Ordering::AcqRel) {
                run_callback(&cb);
            }
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
        let deadline = deadline_after(timeout);
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

    /// The UDP address this context is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Observes the I/O thread's exit.
    pub fn exit_watch(&self) -> ExitWatch {
        ExitWatch(self.shared.clone())
    }

    fn dead_error() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "uTP runtime stopped")
    }

    /// Checks a destination and folds IPv4-mapped addresses to IPv4 (the
    /// socket layer reports such senders as IPv4).
    fn destination(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
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
        Ok(addr)
    }

    /// Starts a connection and returns at once. The handle reports
    /// `connected` in its [`readiness`](StreamHandle::readiness) once the
    /// handshake completed, or `error` (see
    /// [`take_error`](StreamHandle::take_error)) when it failed; the engine
    /// gives up after its connect timeout. Writes made meanwhile are queued.
    pub fn start_connect(self: &Arc<Self>, addr: SocketAddr) -> io::Result<StreamHandle> {
        let addr = self.destination(addr)?;
        let conn = ConnShared::new(addr, Phase::Connecting, &self.shared.config);
        self.send(Command::Connect(conn.clone()));
        Ok(StreamHandle {
            ctx: self.clone(),
            conn,
        })
    }

    /// Starts a connection and waits until it is established, failed, or
    /// `timeout` passed (engine's own connect timeout when `None`).
    pub fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<StreamHandle> {
        if on_io_thread() {
            return Err(would_deadlock());
        }
        let stream = self.start_connect(addr)?;
        let engine_timeout = Duration::from_micros(self.shared.config.endpoint.connect_timeout_us)
            .saturating_add(Duration::from_secs(5));
        let wait = Wait::Until(deadline_after(timeout.unwrap_or(engine_timeout)));
        match stream.wait_connected(wait) {
            Ok(()) => Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::TimedOut && stream.is_connecting() => Err(
                io::Error::new(io::ErrorKind::TimedOut, "uTP connect timed out"),
            ),
            // Nobody will hold this handle: dropping it lets the I/O thread
            // free the connection now rather than after the linger time.
            Err(e) => Err(e),
        }
    }

    /// Takes the next incoming connection, waiting up to `timeout`
    /// (forever when `None`; not at all when `Some(ZERO)`, giving `WouldBlock`).
    pub fn accept(self: &Arc<Self>, timeout: Option<Duration>) -> io::Result<StreamHandle> {
        let timeout = if on_io_thread() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let deadline = timeout.map(deadline_after);
        self.shared
            .listener_callback_armed
            .store(true, Ordering::Release);
        let mut acc = self.shared.accept.lock();
        loop {
            if let Some(conn) = acc.queue.pop_front() {
                let now_empty = acc.queue.is_empty();
                drop(acc);
                if now_empty {
                    self.shared.refresh_fd();
                }
                return Ok(StreamHandle {
                    ctx: self.clone(),
                    conn,
                });
            }
            if self.shared.dead.load(Ordering::SeqCst) {
                return Err(Self::dead_error());
            }
            if self.shared.closed.load(Ordering::SeqCst) {
                return Err(super::error::closed_handle());
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

    /// True when `accept` would not block. Re-arms the accept callback.
    pub fn accept_ready(&self) -> bool {
        self.shared
            .listener_callback_armed
            .store(true, Ordering::Release);
        !self.shared.accept.lock().queue.is_empty()
            || self.shared.dead.load(Ordering::SeqCst)
            || self.shared.closed.load(Ordering::SeqCst)
    }

    /// Registers (or clears) the callback run when an incoming connection
    /// is queued (or a datagram, see [`set_datagram_queue`](Self::set_datagram_queue)).
    /// It coalesces: after it ran, it runs again only after
    /// [`accept`](Self::accept), [`accept_ready`](Self::accept_ready) or
    /// [`try_recv_datagram`](Self::try_recv_datagram) was called.
    pub fn set_accept_callback(&self, cb: Option<ReadinessCallback>) {
        *self.shared.listener_callback.lock() = cb.map(SharedCallback::from);
        self.shared
            .listener_callback_armed
            .store(true, Ordering::Release);
    }

    /// The context's pollable descriptor (an `eventfd`, owned by the
    /// context: do not close it). Level-triggered: it polls readable while
    /// a condition of `interest` holds ([`Interest::ACCEPTABLE`]: a
    /// connection waits for `accept`; [`Interest::DATAGRAM`]: a datagram
    /// waits), or the I/O thread stopped. Every call returns the same
    /// descriptor and replaces the interest.
    pub fn poll_fd(&self, interest: Interest) -> io::Result<RawFd> {
        let n = match self.shared.notifier.get() {
            Some(n) => n,
            None => {
                let fresh = Notifier::new()?;
                let _ = self.shared.notifier.set(fresh);
                self.shared.notifier.get().expect("just set")
            }
        };
        self.shared
            .interest
            .store(interest.bits(), Ordering::Release);
        self.shared.refresh_fd();
        Ok(n.as_raw_fd())
    }

    /// Hands the reception of datagrams to the caller's event loop (`true`)
    /// or back to the I/O thread (`false`, the default). While on, the I/O
    /// thread keeps timers, retransmissions and commands but no longer reads
    /// the UDP socket: the loop watches [`udp_fd`](Self::udp_fd) for
    /// readability and calls [`receive_ready`](Self::receive_ready), so a
    /// packet reaches the application's thread without a hand-off between
    /// threads (readiness callbacks then run on the loop's thread). A loop
    /// that stops watching must turn it off, or nothing is received.
    pub fn set_event_loop_input(&self, on: bool) {
        self.shared.event_loop_input.store(on, Ordering::Release);
        // The I/O thread re-reads the flag before it sleeps again.
        self.shared.waker.wake();
    }

    /// The context's UDP socket, for an event loop to watch (see
    /// [`set_event_loop_input`](Self::set_event_loop_input)). Do not read
    /// from it or close it; it is valid while the context's I/O thread
    /// runs (`dup` it to watch it longer).
    pub fn udp_fd(&self) -> RawFd {
        self.shared.udp_fd
    }

    /// Receives the datagrams waiting on the UDP socket now, on the calling
    /// thread, and runs them through the engine (also ICMP errors). Returns
    /// how many were read (0 is fine: another thread got there first), or
    /// an error once the I/O thread has exited. Never blocks on the network.
    pub fn receive_ready(&self) -> io::Result<usize> {
        super::driver::receive_available(&self.shared).ok_or_else(Self::dead_error)
    }

    /// Accept incoming connections (`true`, the default for contexts with a
    /// backlog) or ignore their SYNs (`false`: the peer's connect times out,
    /// as with libutp's firewall callback).
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.accepting.store(accepting, Ordering::SeqCst);
    }

    /// True while incoming connections are accepted.
    pub fn is_accepting(&self) -> bool {
        self.shared.accepting.load(Ordering::SeqCst)
    }

    /// Keep datagrams that are not uTP for [`try_recv_datagram`](Self::try_recv_datagram)
    /// (`true`), or drop them (`false`, the default). At most 1,024 wait;
    /// beyond that the oldest are dropped.
    pub fn set_datagram_queue(&self, enabled: bool) {
        let mut q = self.shared.datagrams.lock();
        q.enabled = enabled;
        if !enabled {
            q.queue.clear();
        }
        drop(q);
        self.shared.refresh_fd();
    }

    /// The oldest queued non-uTP datagram and its sender.
    pub fn try_recv_datagram(&self) -> Option<(Vec<u8>, SocketAddr)> {
        self.shared
            .listener_callback_armed
            .store(true, Ordering::Release);
        let mut q = self.shared.datagrams.lock();
        let d = q.queue.pop_front();
        let now_empty = q.queue.is_empty();
        drop(q);
        if d.is_some() && now_empty {
            self.shared.refresh_fd();
        }
        d
    }

    /// Sends a plain UDP datagram from the context's port (queued for the
    /// I/O thread; returns its length).
    pub fn send_datagram(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        if data.len() > 65_507 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "datagram larger than 65,507 bytes",
            ));
        }
        if to.port() == 0 || (self.shared.local_addr.is_ipv4() && to.is_ipv6()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad datagram destination",
            ));
        }
        if self.shared.dead.load(Ordering::SeqCst) {
            return Err(Self::dead_error());
        }
        self.send(Command::SendDatagram(data.to_vec(), to));
        Ok(data.len())
    }

    /// Stops accepting: closes the connections nobody accepted yet, ignores
    /// new SYNs, and makes `accept` fail with `EBADF` (waiters wake up, the
    /// pollable descriptor turns readable). Connections already handed out
    /// and `connect` keep working; the I/O thread exits once the last handle
    /// is gone.
    pub fn close(&self) {
        self.set_accepting(false);
        self.shared.closed.store(true, Ordering::SeqCst);
        let queued: Vec<_> = self.shared.accept.lock().queue.drain(..).collect();
        for conn in queued {
            if conn.user_close() {
                self.send(Command::Kick(conn));
            }
        }
        self.shared.notify_listener();
    }
}

impl Drop for ContextHandle {
    /// The last user handle is gone: the I/O thread closes what is left,
    /// and this waits (at most the linger time plus a second) until every
    /// byte written was acknowledged, so a program that returns from `main`
    /// right after writing still delivers it.
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        self.shared.waker.wake();
        if self.shared.config.linger_on_drop && !on_io_thread() {
            let linger = Duration::from_micros(self.shared.config.endpoint.linger_us);
            ExitWatch(self.shared.clone()).wait(linger.saturating_add(Duration::from_secs(2)));
        }
    }
}

impl fmt::Debug for ContextHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextHandle")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

pub(crate) fn conn_error(e: ConnectionError) -> io::Error {
    connection_error(e)
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
    /// The wait for a call under these socket options: `NonBlocking` when
    /// `nonblocking`, else `Until(now + timeout)`, or `Forever` without a
    /// timeout.
    pub fn from_timeout(nonblocking: bool, timeout: Option<Duration>) -> Wait {
        if nonblocking {
            Wait::NonBlocking
        } else {
            match timeout {
                Some(t) => Wait::Until(deadline_after(t)),
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

/// The source address the kernel picks for packets to `peer`, with the
/// context's port: what `TcpStream::local_addr` would say.
fn route_source(bound: SocketAddr, peer: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    // A connected UDP socket sends nothing; connect() only picks the route.
    let probe_local: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(probe_local)
        .and_then(|s| {
            s.connect(peer)?;
            s.local_addr()
        })
        .map(|a| {
            // An IPv4 peer on a dual-stack context: report the IPv4 source
            // as the socket layer sees it.
            SocketAddr::new(a.ip(), bound.port())
        })
        .unwrap_or(bound)
}

impl StreamHandle {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The local address of this connection: the context's port and the
    /// source address the kernel uses towards the peer (never `0.0.0.0`
    /// when the context is bound to a wildcard address).
    pub fn local_addr(&self) -> SocketAddr {
        *self
            .conn
            .local
            .get_or_init(|| route_source(self.ctx.local_addr(), self.conn.peer))
    }

    /// The context this connection lives on.
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

    /// Drives the engine for this connection from the calling thread when
    /// the I/O thread is not busy with it (sends go out at once, without a
    /// thread hand-off). False when the I/O thread must do it.
    fn drive(&self) -> bool {
        if on_io_thread() {
            return false;
        }
        let Some(mut core) = self.ctx.shared.core.try_lock() else {
            return false;
        };
        let Some(wakes) = core.as_mut().and_then(|d| d.drive(&self.conn)) else {
            return false;
        };
        drop(core);
        wakes.deliver(&self.ctx.shared);
        true
    }

    /// Reads into `buf`. `Ok(0)` is end of stream (or an empty `buf`).
    pub fn read(&self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut st = self.conn.state.lock();
        loop {
            if st.user_closed {
                return Err(super::error::closed_handle());
            }
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
                let drained = st.recv.is_empty();
                if drained && st.recv.capacity() > cap {
                    st.recv.shrink_to(cap);
                }
                drop(st);
                if kick {
                    self.send_kick();
                }
                if drained {
                    self.conn.refresh_fd();
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
            self.receive_while_waiting(&mut st, wait)?;
        }
    }

    /// Waits for something to read. When no other thread is receiving,
    /// the caller polls the UDP socket itself and runs what arrives through
    /// the engine: the datagram that carries its data wakes it directly,
    /// with no hand-off from the I/O thread (which keeps timers and
    /// commands meanwhile, and is woken to take the socket back after).
    fn receive_while_waiting(
        &self,
        st: &mut MutexGuard<'_, ConnState>,
        wait: Wait,
    ) -> io::Result<()> {
        use super::driver::{POLLER_ACTIVE, POLLER_FREE, POLLER_PARKED};
        let shared = &self.ctx.shared;
        let claim = |from: u8| {
            shared
                .udp_poller
                .compare_exchange(from, POLLER_ACTIVE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        let wake_fd = match self.conn.read_wake.get() {
            Some(n) => Some(n.as_raw_fd()),
            None => Notifier::new().ok().map(|n| {
                let _ = self.conn.read_wake.set(n);
                self.conn.read_wake.get().expect("just set").as_raw_fd()
            }),
        };
        let deadline = match wait {
            Wait::Until(d) => Some(d),
            _ => None,
        };
        let receive_here = wait != Wait::NonBlocking
            && !on_io_thread()
            && wake_fd.is_some()
            && deadline.is_none_or(|d| Instant::now() < d)
            && (claim(POLLER_PARKED) || claim(POLLER_FREE));
        let Some(wake_fd) = wake_fd.filter(|_| receive_here) else {
            shared.waiting_readers.fetch_add(1, Ordering::AcqRel);
            let r = wait.block(&self.conn.cond, st);
            shared.waiting_readers.fetch_sub(1, Ordering::AcqRel);
            return r;
        };
        // Flag first, then look: a thread that changes the state after the
        // look sees the flag and signals `wake_fd`.
        self.conn.reader_polling.store(true, Ordering::SeqCst);
        let ready = st.readiness(0).readable;
        if !ready {
            MutexGuard::unlocked(st, || {
                POLLING_CONN.with(|c| c.set(self.conn.id));
                super::driver::receive_until(shared, &self.conn, wake_fd, deadline);
                POLLING_CONN.with(|c| c.set(0));
            });
        } else {
            let park = st.recv.len() <= super::driver::PARK_MAX_BUFFERED;
            super::driver::hand_back(shared, park);
        }
        self.conn.reader_polling.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Queues bytes for sending; returns how many were taken (at least one
    /// unless `buf` is empty). While the connection is still being set up
    /// (see [`ContextHandle::start_connect`]) the bytes wait in the handle.
    pub fn write(&self, buf: &[u8], wait: Wait) -> io::Result<usize> {
        let mut st = self.conn.state.lock();
        loop {
            if st.user_closed {
                return Err(super::error::closed_handle());
            }
            if let Some(e) = st.error {
                return Err(conn_error(e));
            }
            if st.dead {
                return Err(ContextHandle::dead_error());
            }
            if st.write_shut || st.phase == Phase::Closed {
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
                let now_below_low_water = self.conn.notifier.get().is_some()
                    && st.send_cap - st.send.len() < self.conn.low_water.load(Ordering::Relaxed);
                drop(st);
                if !self.drive() && kick {
                    self.send_kick();
                }
                if now_below_low_water {
                    self.conn.refresh_fd();
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
        if st.user_closed {
            return Err(super::error::closed_handle());
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
        if st.user_closed {
            return Err(super::error::closed_handle());
        }
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

    /// Current readiness. Also re-arms the readiness callback (see
    /// [`set_readiness_callback`](Self::set_readiness_callback)).
    pub fn readiness(&self) -> Readiness {
        self.conn.callback_armed.store(true, Ordering::Release);
        self.conn.readiness()
    }

    /// True while the handshake is still under way.
    pub fn is_connecting(&self) -> bool {
        let st = self.conn.state.lock();
        st.phase == Phase::Connecting && st.error.is_none() && !st.dead
    }

    /// Blocks until the readiness matches `interest` (or `wait` runs out:
    /// `TimedOut`, or `WouldBlock` for [`Wait::NonBlocking`]).
    pub fn wait(&self, interest: Interest, wait: Wait) -> io::Result<Readiness> {
        let low_water = self.conn.low_water.load(Ordering::Relaxed);
        let mut st = self.conn.state.lock();
        loop {
            let r = st.readiness(low_water);
            if r.matches(interest) {
                return Ok(r);
            }
            wait.block(&self.conn.cond, &mut st)?;
        }
    }

    /// Waits for the handshake of a [`ContextHandle::start_connect`].
    pub fn wait_connected(&self, wait: Wait) -> io::Result<()> {
        let mut st = self.conn.state.lock();
        loop {
            if let Some(e) = st.error {
                return Err(conn_error(e));
            }
            if st.dead {
                return Err(ContextHandle::dead_error());
            }
            if st.phase != Phase::Connecting {
                return Ok(());
            }
            wait.block(&self.conn.cond, &mut st)?;
        }
    }

    /// The connection's error, if it failed (see
    /// [`connection_error`]), or
    /// `NotConnected` once the I/O thread stopped; `None` while healthy. The
    /// error is not cleared: every call reports it again.
    pub fn take_error(&self) -> Option<io::Error> {
        let st = self.conn.state.lock();
        match (st.error, st.dead) {
            (Some(e), _) => Some(conn_error(e)),
            (None, true) => Some(ContextHandle::dead_error()),
            _ => None,
        }
    }

    /// Registers (or clears) the readiness callback. It runs on the I/O
    /// thread without locks held, and coalesces: after it ran once it runs
    /// again only after [`readiness`](Self::readiness) was called, so at
    /// most one notification is ever pending. Check `readiness()` after
    /// registering: changes before it are not replayed.
    pub fn set_readiness_callback(&self, cb: Option<ReadinessCallback>) {
        *self.conn.callback.lock() = cb.map(SharedCallback::from);
        self.conn.callback_armed.store(true, Ordering::Release);
    }

    /// The connection's pollable descriptor (an `eventfd`, owned by the
    /// handle: do not close it). Level-triggered: it polls readable while
    /// [`readiness`](Self::readiness) matches `interest`. Every call
    /// returns the same descriptor and replaces the interest.
    pub fn poll_fd(&self, interest: Interest) -> io::Result<RawFd> {
        let n = match self.conn.notifier.get() {
            Some(n) => n,
            None => {
                let fresh = Notifier::new()?;
                let _ = self.conn.notifier.set(fresh);
                self.conn.notifier.get().expect("just set")
            }
        };
        self.conn.interest.store(interest.bits(), Ordering::Release);
        self.conn.refresh_fd();
        Ok(n.as_raw_fd())
    }

    /// Room the send buffer needs before the stream reports itself writable
    /// (capped at half the send buffer; at least one byte). Writes themselves
    /// take whatever fits.
    pub fn set_send_low_water(&self, bytes: usize) {
        self.conn.low_water.store(bytes, Ordering::Relaxed);
        self.conn.refresh_fd();
    }

    /// The engine's statistics for this connection: read from the engine
    /// under the driver's lock (held only for moments, never across a
    /// wait), or, once the connection has left the engine, the last
    /// snapshot. Never waits for the I/O thread to run.
    pub fn stats(&self) -> io::Result<ConnectionStats> {
        if let Some(fresh) = self
            .ctx
            .shared
            .core
            .lock()
            .as_mut()
            .and_then(|d| d.stats_of(&self.conn))
        {
            *self.conn.stats.lock() = Some(fresh.clone());
            return Ok(fresh);
        }
        let snapshot = self.conn.stats.lock().clone();
        let mut st = self.conn.state.lock();
        st.stats_wanted = true;
        let kick = !st.dead && self.kick(&mut st);
        drop(st);
        if kick {
            self.send_kick();
        }
        Ok(snapshot.unwrap_or_default())
    }

    /// Bytes queued in the handle, not yet handed to the engine.
    pub fn queued_send_bytes(&self) -> usize {
        self.conn.state.lock().send.len()
    }

    /// Bytes received and buffered in the handle, not yet read.
    pub fn buffered_recv_bytes(&self) -> usize {
        self.conn.state.lock().recv.len()
    }

    /// Closes gracefully and reports the outcome: `Ok` once the peer
    /// acknowledged every byte written (and our FIN), or the connection's
    /// error (`ConnectionReset`, `TimedOut`, ...), or `TimedOut` when `wait`
    /// ran out first. Either way the handle is closed afterwards: later calls
    /// fail with `EBADF`, unread incoming data is discarded, and what is
    /// still queued goes on in the background, as when the handle is dropped
    /// ([`Wait::NonBlocking`] does only that). Closing twice is harmless.
    pub fn close(&self, wait: Wait) -> io::Result<()> {
        let result = if wait == Wait::NonBlocking || self.conn.state.lock().user_closed {
            Ok(())
        } else {
            self.wait_acknowledged(wait)
        };
        self.close_inner();
        result
    }

    fn wait_acknowledged(&self, wait: Wait) -> io::Result<()> {
        self.shutdown_write()?;
        let mut st = self.conn.state.lock();
        loop {
            if st.fin_acked || st.phase == Phase::Closed {
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

    /// Abortive close: a RESET goes to the peer at once and queued data is
    /// dropped (TCP's `SO_LINGER` of zero). Later calls fail with `EBADF`.
    pub fn abort(&self) {
        {
            let mut st = self.conn.state.lock();
            if st.user_closed {
                return;
            }
            st.abort = true;
            st.send.clear();
        }
        self.close_inner();
    }

    fn close_inner(&self) {
        if self.conn.user_close() {
            self.send_kick();
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        self.close_inner();
    }
}
