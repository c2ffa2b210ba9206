//! The I/O thread: one UDP socket, one engine, one loop.
//!
//! ```text
//! loop {
//!     ppoll(udp fd [POLLIN, POLLOUT while datagrams wait], eventfd, until the next timer)
//!     error queue → ICMP port unreachable fails connections still connecting
//!     up to a few recvmmsg batches: handle_datagram each, flush_acks once per batch
//!     handle_timeout when due
//!     commands from user threads (connect, kick, datagram, shutdown)
//!     events → shared state; sends and receives between handles and engine
//!     poll_transmit → sendmmsg (kept queued on EAGAIN until POLLOUT)
//!     wake waiters and run callbacks, no lock held
//! }
//! ```
//!
//! Time is microseconds since the context started (monotonic `Instant`).

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};
use parking_lot::Mutex;

use crate::connection::State;
use crate::endpoint::{ConnectionHandle, DatagramKind, Endpoint, Event, StreamError, Transmit};
use crate::stats::ConnectionStats;

use super::handle::{
    AcceptState, Command, ConnShared, ContextHandle, ContextShared, Phase, RuntimeConfig,
    MAX_QUEUED_DATAGRAMS,
};
use super::readiness::Interest;
use super::timer::Timer;
use super::udp::{IcmpError, IcmpKind, RecvBatch, SendBatch, UdpSocket, BATCH};
use super::waker::Waker;

/// Receive batches handled per loop iteration before looking at commands and timers.
const RECV_ROUNDS: usize = 8;
/// Datagrams we hold (taken from the engine, not yet accepted by the kernel).
const MAX_QUEUED_TRANSMITS: usize = 4 * BATCH;
/// Retry delay after `ENOBUFS` (no `POLLOUT` edge to wait for).
const ENOBUFS_RETRY_US: u64 = 1_000;
/// Scratch buffer for moving received bytes from the engine to a handle.
const READ_CHUNK: usize = 64 * 1024;
/// A busy connection's statistics snapshot is refreshed at most this often.
const STATS_REFRESH_US: u64 = 1_000;
/// How long a reader that received its data itself keeps the socket's
/// input (parked) for its next read before the I/O thread takes it back.
const PARK_US: u64 = 1_000;
/// How long an exiting I/O thread stays for connections in TIME-WAIT.
const EXIT_GRACE_US: u64 = 200_000;
/// A reader parks only when its buffer is this small after receiving: a
/// request/response exchange, not a bulk stream.
pub(crate) const PARK_MAX_BUFFERED: usize = 16 * 1024;

/// How long a reader that receives datagrams itself keeps looking before
/// it sleeps.
const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// Who receives datagrams (`ContextShared::udp_poller`): the I/O thread...
pub(crate) const POLLER_FREE: u8 = 0;
/// ...a user thread blocked in `read`...
pub(crate) const POLLER_ACTIVE: u8 = 1;
/// ...or, for up to `PARK_US`, nobody: the last reader is expected back.
pub(crate) const POLLER_PARKED: u8 = 2;

/// Starts a context: binds the socket, spawns the I/O thread.
pub(crate) fn start(addr: SocketAddr, config: RuntimeConfig) -> io::Result<Arc<ContextHandle>> {
    let socket = UdpSocket::bind(addr, &config.socket)?;
    let waker = Waker::new()?;
    let timer = Timer::new()?;
    let seed = config.seed.unwrap_or_else(random_seed);
    let mut endpoint_config = config.endpoint.clone();
    if config.backlog == 0 {
        endpoint_config.accept_incoming = false;
    }
    let accepting = Arc::new(AtomicBool::new(endpoint_config.accept_incoming));
    let shared = Arc::new(ContextShared {
        waker,
        local_addr: socket.local_addr(),
        accept: Mutex::new(AcceptState {
            queue: VecDeque::new(),
            backlog: config.backlog,
        }),
        config,
        accept_cond: Default::default(),
        listener_callback: Mutex::new(None),
        listener_callback_armed: AtomicBool::new(true),
        accepting: accepting.clone(),
        closed: AtomicBool::new(false),
        datagrams: Default::default(),
        notifier: Default::default(),
        interest: AtomicU8::new(Interest::ACCEPTABLE.bits()),
        core: Mutex::new(None),
        udp_fd: socket.as_raw_fd(),
        udp_poller: AtomicU8::new(POLLER_FREE),
        park_deadline: AtomicU64::new(0),
        event_loop_input: AtomicBool::new(false),
        waiting_readers: AtomicUsize::new(0),
        timer,
        dead: Default::default(),
        exited: Mutex::new(false),
        exited_cond: Default::default(),
    });
    let (tx, rx) = crossbeam_channel::unbounded();
    let recv_size = socket.recv_buffer_len((endpoint_config.max_packet_size + 64).max(2048));
    let thread_shared = shared.clone();
    // Short enough for the kernel's 15-byte thread names.
    let name = format!("utp-io-{}", shared.local_addr.port());
    // The driver is in place before `bind` returns: user threads (and an
    // event loop receiving for the context) may drive it at once.
    let mut endpoint = Endpoint::new(endpoint_config, seed);
    // `ContextHandle::set_accepting(false)` ignores SYNs from then on.
    endpoint.set_accept_filter(Some(Box::new(move |_| accepting.load(Ordering::Relaxed))));
    let driver = Driver {
        endpoint,
        socket,
        shared: shared.clone(),
        rx,
        recv_batch: RecvBatch::new(recv_size),
        send_batch: SendBatch::new(),
        transmits: VecDeque::new(),
        conns: HashMap::new(),
        closing: HashSet::new(),
        fin_watch: HashSet::new(),
        write_retry: HashSet::new(),
        to_wake: Vec::new(),
        wake_listener: false,
        scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        shutting_down: false,
        exit_deadline: None,
        exit_grace: None,
        send_retry_at: None,
        stats: DriverStats::default(),
    };
    *shared.core.lock() = Some(driver);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        super::handle::ON_IO_THREAD.with(|f| f.set(true));
        let result = catch_unwind(AssertUnwindSafe(|| io_loop(&thread_shared)));
        // Taking the driver out ends the direct path and the Arc cycle.
        let driver = thread_shared.core.lock().take();
        if let Some(mut driver) = driver {
            driver.mark_dead();
        }
        finish(&thread_shared);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    if let Err(e) = spawned {
        // No thread: take the driver back out (it holds `shared`).
        shared.core.lock().take();
        return Err(e);
    }
    Ok(Arc::new(ContextHandle { shared, tx }))
}

/// Marks the context dead and wakes everyone who might wait on it.
fn finish(shared: &ContextShared) {
    shared.dead.store(true, Ordering::SeqCst);
    let queued: Vec<_> = shared.accept.lock().queue.drain(..).collect();
    for conn in queued {
        conn.state.lock().dead = true;
        conn.notify();
    }
    shared.notify_listener();
    *shared.exited.lock() = true;
    shared.exited_cond.notify_all();
}

fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// Counters of the driver itself (for debugging).
#[derive(Debug, Default)]
struct DriverStats {
    datagrams_received: u64,
    datagrams_sent: u64,
    datagrams_dropped: u64,
    send_blocked: u64,
    icmp_errors: u64,
}

/// The I/O thread's view of one connection.
struct IoConn {
    shared: Arc<ConnShared>,
    /// `Endpoint::shutdown_write` was called.
    fin_sent: bool,
    /// `Endpoint::close` was called: the engine owns the rest.
    engine_closed: bool,
    /// Close requested while data was still queued in the handle: give up
    /// waiting for it to drain at this instant.
    close_deadline: Option<u64>,
    /// The engine emitted `Eof`.
    eof_event: bool,
    /// Already queued in `to_wake`.
    wake_queued: bool,
    /// When the statistics snapshot was last refreshed (µs).
    stats_at: Option<u64>,
    /// An incoming connection held out of the full accept queue until its
    /// peer proves its address (`Established`).
    unqueued: bool,
}

impl IoConn {
    fn new(shared: Arc<ConnShared>) -> IoConn {
        IoConn {
            shared,
            fin_sent: false,
            engine_closed: false,
            close_deadline: None,
            eof_event: false,
            wake_queued: false,
            stats_at: None,
            unqueued: false,
        }
    }
}

pub(crate) struct Driver {
    endpoint: Endpoint,
    socket: UdpSocket,
    shared: Arc<ContextShared>,
    rx: Receiver<Command>,
    recv_batch: RecvBatch,
    send_batch: SendBatch,
    transmits: VecDeque<Transmit>,
    conns: HashMap<ConnectionHandle, IoConn>,
    /// Connections closed by the user with data still in their handle.
    closing: HashSet<ConnectionHandle>,
    /// Connections whose FIN was sent but not yet acknowledged: looked at
    /// after every round, since an ACK raises no engine event.
    fin_watch: HashSet<ConnectionHandle>,
    /// Connections whose engine write said `NotConnected` (accepted, waiting
    /// for the peer's first data): retried after every round of events.
    write_retry: HashSet<ConnectionHandle>,
    to_wake: Vec<Arc<ConnShared>>,
    wake_listener: bool,
    scratch: Box<[u8]>,
    shutting_down: bool,
    exit_deadline: Option<u64>,
    /// Everything was delivered but connections are still in TIME-WAIT:
    /// stay this long to answer the peer's last packets.
    exit_grace: Option<u64>,
    /// Sending paused after `ENOBUFS` until this instant.
    send_retry_at: Option<u64>,
    stats: DriverStats,
}

/// Handles to wake once the driver's lock is released.
#[derive(Default)]
pub(crate) struct Wakes {
    conns: Vec<Arc<ConnShared>>,
    listener: bool,
}

impl Wakes {
    /// Wakes waiters and runs callbacks; call with no lock held.
    pub(crate) fn deliver(self, shared: &ContextShared) {
        for conn in self.conns {
            conn.notify();
        }
        if self.listener {
            shared.notify_listener();
        }
    }
}

/// Runs `f` on the driver under its lock; `None` once the driver is gone.
fn with_driver<T>(shared: &ContextShared, f: impl FnOnce(&mut Driver) -> T) -> Option<T> {
    shared.core.lock().as_mut().map(f)
}

/// The I/O thread: sleeps in `ppoll` without the driver's lock (so user
/// threads may drive the engine meanwhile), then works under it, waking
/// handles after every step with the lock released.
fn io_loop(shared: &ContextShared) {
    loop {
        // 1. Sleep until a datagram, a command, or the alarm.
        let Some((udp_fd, udp_events)) = with_driver(shared, |d| d.prepare_sleep()) else {
            return;
        };
        let mut fds = [
            pollfd(udp_fd, udp_events),
            pollfd(shared.waker.as_raw_fd(), libc::POLLIN),
            pollfd(shared.timer.as_raw_fd(), libc::POLLIN),
        ];
        poll(&mut fds, None);
        let [udp, wake, alarm] = fds.map(|p| p.revents);
        if alarm != 0 {
            shared.timer.reset();
        }

        // 2. ICMP errors.
        if udp & libc::POLLERR != 0 && with_driver(shared, |d| d.read_errors()).is_none() {
            return;
        }

        // 3. Datagrams, one ACK flush per batch; readers wake per batch.
        if udp & libc::POLLIN != 0
            && shared.udp_poller.load(Ordering::Acquire) == POLLER_FREE
            && receive_available(shared).is_none()
        {
            return;
        }

        // 4.-6. Timers, commands, events and transmits.
        let clear_waker = wake & libc::POLLIN != 0;
        let Some((exit, wakes)) = with_driver(shared, |d| {
            let exit = d.timers_and_commands(clear_waker);
            (exit, d.take_wakes())
        }) else {
            return;
        };
        wakes.deliver(shared);
        if exit {
            return;
        }
    }
}

/// Receives what the UDP socket holds now (up to `RECV_ROUNDS` batches)
/// through the engine, one ACK flush per batch, and wakes the handles per
/// batch. Runs on the I/O thread, or on an application's event loop (see
/// `ContextHandle::receive_ready`). `None` once the driver is gone.
pub(crate) fn receive_available(shared: &ContextShared) -> Option<usize> {
    let mut total = 0;
    for _ in 0..RECV_ROUNDS {
        let (n, wakes, held) = with_driver(shared, |d| {
            let mut n = d.receive_batch();
            if n == 0 {
                // Woken with nothing to read: an ICMP error is waiting.
                d.read_errors();
                n = d.receive_batch();
            }
            let now = d.now();
            d.endpoint.flush_acks(now);
            d.handle_events();
            // A new incoming connection: the application hears of it
            // before our SYN-ACK leaves, so its `accept` side never
            // lags the peer's "connected" (as with libutp).
            let held = d.wake_listener;
            if !held {
                d.settle();
            }
            (n, d.take_wakes(), held)
        })?;
        wakes.deliver(shared);
        if held {
            let wakes = with_driver(shared, |d| {
                d.settle();
                d.take_wakes()
            })?;
            wakes.deliver(shared);
        }
        total += n;
        if n < BATCH {
            break;
        }
    }
    Some(total)
}

/// A user thread waiting to read receives datagrams itself until its
/// connection turns readable (`wake_fd`, which the I/O thread can also
/// set) or the deadline passes. Each batch runs through the engine under
/// the driver's lock, exactly as on the I/O thread. The caller owns the
/// socket's input (`POLLER_ACTIVE`); this hands it on when it returns.
pub(crate) fn receive_until(
    shared: &ContextShared,
    conn: &ConnShared,
    wake_fd: RawFd,
    deadline: Option<Instant>,
) {
    // However this ends (even by a panic), the input goes back to the I/O
    // thread, unless the reader parks it for its next read.
    struct Handover<'a> {
        shared: &'a ContextShared,
        park: bool,
    }
    impl Drop for Handover<'_> {
        fn drop(&mut self) {
            hand_back(self.shared, self.park);
        }
    }
    let mut handover = Handover {
        shared,
        park: false,
    };
    let small = || conn.state.lock().recv.len() <= PARK_MAX_BUFFERED;
    // The ACKs our last batch left for a reply to carry: the reader is back
    // without having written one, so send them now. (Held back, they left
    // a sender with a full window waiting for its retransmission timer.)
    with_driver(shared, |d| {
        let now = d.now();
        d.endpoint.flush_acks(now);
        d.flush_transmits();
    });
    loop {
        let wait_us = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                Some(left.as_micros() as u64)
            }
            None => None,
        };
        let mut fds = [
            pollfd(shared.udp_fd, libc::POLLIN),
            pollfd(wake_fd, libc::POLLIN),
        ];
        // A reply often follows within microseconds: look again for a
        // moment before sleeping, since waking a thread whose CPU went idle
        // costs tens of microseconds. Yielding keeps a peer on this CPU going.
        let spin_until = Instant::now() + SPIN;
        loop {
            poll(&mut fds, Some(0));
            if fds.iter().any(|p| p.revents != 0) || Instant::now() >= spin_until {
                break;
            }
            std::thread::yield_now();
        }
        if fds.iter().all(|p| p.revents == 0) {
            poll(&mut fds, wait_us);
        }
        let [udp, wake] = fds.map(|p| p.revents);
        if wake != 0 {
            handover.park = small();
            return;
        }
        if udp & libc::POLLERR != 0 {
            with_driver(shared, |d| d.read_errors());
        }
        if udp & (libc::POLLIN | libc::POLLERR) == 0 {
            if udp != 0 {
                return; // POLLNVAL/POLLHUP: the socket is gone
            }
            continue;
        }
        let Some(wakes) = with_driver(shared, |d| {
            d.receive_batch();
            d.settle();
            d.take_wakes()
        }) else {
            return;
        };
        wakes.deliver(shared);
        if conn.readiness().readable {
            // Our data: its ACK waits for our reply to carry it (or for
            // the handover).
            handover.park = small();
            return;
        }
        // Someone else's: acknowledge now.
        let Some(wakes) = with_driver(shared, |d| {
            let now = d.now();
            d.endpoint.flush_acks(now);
            d.flush_transmits();
            d.take_wakes()
        }) else {
            return;
        };
        wakes.deliver(shared);
    }
}

/// A reader that owned the socket's input (`POLLER_ACTIVE`) lets go of it:
/// parked for its next read (`park`, unless other readers wait), or back to
/// the I/O thread, with the ACKs deferred for a reply sent now.
pub(crate) fn hand_back(s: &ContextShared, park: bool) {
    if park && s.waiting_readers.load(Ordering::Acquire) == 0 {
        let until = s.timer.now() + PARK_US;
        s.park_deadline.store(until, Ordering::Release);
        s.udp_poller.store(POLLER_PARKED, Ordering::Release);
        // An alarm within another PARK_US will do: the I/O thread, woken by
        // an older one, just sleeps again until this deadline.
        s.timer.ring_within(until, PARK_US);
    } else {
        with_driver(s, |d| {
            let now = d.now();
            d.endpoint.flush_acks(now);
            d.flush_transmits();
        });
        s.udp_poller.store(POLLER_FREE, Ordering::Release);
        s.waker.wake();
    }
}

fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `ppoll` on `fds` for at most `wait_us` (forever when `None`).
fn poll(fds: &mut [libc::pollfd], wait_us: Option<u64>) {
    let ts = wait_us.map(|us| libc::timespec {
        tv_sec: (us / 1_000_000).min(i32::MAX as u64) as libc::time_t,
        tv_nsec: ((us % 1_000_000) * 1000) as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: valid pollfds and an optional valid timespec.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if r < 0 {
        for p in fds.iter_mut() {
            p.revents = 0;
        }
    }
}

impl Driver {
    fn now(&self) -> u64 {
        self.shared.timer.now()
    }

    /// The earliest instant the loop has work without any input.
    fn next_deadline(&mut self) -> Option<u64> {
        let mut deadline = self.endpoint.next_timeout();
        for h in &self.closing {
            if let Some(d) = self.conns.get(h).and_then(|c| c.close_deadline) {
                deadline = Some(deadline.map_or(d, |x| x.min(d)));
            }
        }
        for d in [self.exit_deadline, self.send_retry_at, self.exit_grace]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        deadline
    }

    /// Sets the alarm for the next deadline; returns what to poll the UDP
    /// socket for: input only while no user thread owns it.
    fn prepare_sleep(&mut self) -> (RawFd, libc::c_short) {
        let mut deadline = self.next_deadline();
        let poller = self.shared.udp_poller.load(Ordering::Acquire);
        if poller == POLLER_PARKED {
            let d = self.shared.park_deadline.load(Ordering::Acquire);
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        self.shared.timer.set(deadline);
        // A reader may have parked the input since we looked, its alarm
        // overwritten by ours just now (it does not take the driver's lock):
        // without that alarm this thread would not poll the socket until
        // its next timer. (If it parks after this look, its alarm is set
        // after ours and stands.)
        if poller != POLLER_PARKED
            && self.shared.udp_poller.load(Ordering::Acquire) == POLLER_PARKED
        {
            let d = self.shared.park_deadline.load(Ordering::Acquire);
            self.shared.timer.ring_by(d);
        }
        let external = self.shared.event_loop_input.load(Ordering::Acquire);
        let mut udp_events = if poller == POLLER_FREE && !external {
            libc::POLLIN
        } else {
            0
        };
        if !self.transmits.is_empty() && self.send_retry_at.is_none() {
            udp_events |= libc::POLLOUT;
        }
        (self.socket.as_raw_fd(), udp_events)
    }

    /// One `recvmmsg` batch through the engine; returns its size.
    fn receive_batch(&mut self) -> usize {
        let n = self
            .socket
            .recv_batch(&mut self.recv_batch)
            .unwrap_or_default();
        if n == 0 {
            return 0;
        }
        let now = self.now();
        for (from, data) in self.recv_batch.datagrams() {
            self.stats.datagrams_received += 1;
            if self.endpoint.handle_datagram(now, from, data) == DatagramKind::NotUtp {
                let mut q = self.shared.datagrams.lock();
                if q.enabled {
                    if q.queue.len() >= MAX_QUEUED_DATAGRAMS {
                        q.queue.pop_front();
                    }
                    q.queue.push_back((data.to_vec(), from));
                    self.wake_listener = true;
                }
            }
        }
        n
    }

    /// Timers, then commands, then events and transmits. True when the
    /// loop should end.
    fn timers_and_commands(&mut self, clear_waker: bool) -> bool {
        let now = self.now();
        if self.send_retry_at.is_some_and(|t| t <= now) {
            self.send_retry_at = None;
        }
        if self.endpoint.poll_timeout().is_some_and(|t| t <= now) {
            self.endpoint.handle_timeout(now);
        }
        self.expire_closing(now);
        // A parked reader did not come back in time: take the input back,
        // and send the ACKs it left for a reply.
        if self.shared.udp_poller.load(Ordering::Acquire) == POLLER_PARKED
            && now >= self.shared.park_deadline.load(Ordering::Acquire)
        {
            let _ = self.shared.udp_poller.compare_exchange(
                POLLER_PARKED,
                POLLER_FREE,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.endpoint.flush_acks(now);

        if clear_waker {
            self.shared.waker.reset();
        }
        self.drain_commands();
        self.settle();

        if self.shutting_down {
            let now = self.now();
            // When a user waits for this exit (dropping the last handle
            // with `linger_on_drop`), connections whose every byte (and
            // FIN) was acknowledged don't keep the thread, even if the peer
            // has not closed its side yet: nothing of ours can be lost any
            // more, and a program should not wait to exit after a complete
            // transfer. Otherwise nobody waits, and the thread stays to
            // answer the peer's FIN, so the peer sees a clean close rather
            // than an unreachable port.
            let remaining = if self.shared.config.linger_on_drop {
                self.endpoint.undelivered_connection_count()
            } else {
                self.endpoint.active_connection_count()
            };
            let mut done = self.conns.is_empty() && remaining == 0 && self.transmits.is_empty();
            // A peer's last packets (its ACK of our FIN, a retransmitted
            // FIN) may still be on their way: a port closed this instant
            // answers them with ICMP unreachable, which libutp's ucat turns
            // into an error on a socket it already closed (and aborts).
            if done && self.endpoint.connection_count() > 0 {
                let grace = *self.exit_grace.get_or_insert(now + EXIT_GRACE_US);
                done = now >= grace;
            }
            if done || self.exit_deadline.is_some_and(|d| now >= d) {
                // Push out whatever the engine still has (FINs, RESETs).
                self.flush_transmits();
                return true;
            }
        }
        false
    }

    /// A user thread, holding the driver's lock, moves its connection's
    /// queued bytes into the engine and sends the packets itself: no
    /// hand-off to the I/O thread on the latency path. False when the
    /// connection is not in the engine yet (the caller kicks instead).
    pub(crate) fn drive(&mut self, conn: &Arc<ConnShared>) -> Option<Wakes> {
        if self.shutting_down {
            return None;
        }
        let h = self.lookup(conn)?;
        self.service(h);
        // ACKs a parked reader left: carried by what we are sending, or sent now.
        let now = self.now();
        self.endpoint.flush_acks(now);
        // The I/O thread sleeps on an older alarm: bring it forward if the
        // engine must wake earlier now (a retransmission timer), without
        // waking the thread. Before sending: once the peer has the packet,
        // this thread should be on its way to sleep, so the reply's wake-up
        // finds it (and the peer) cheaply.
        if let Some(d) = self.next_deadline() {
            self.shared.timer.ring_by(d);
        }
        self.settle();
        if !self.transmits.is_empty() {
            self.shared.waker.wake();
        }
        Some(self.take_wakes())
    }

    fn read_errors(&mut self) {
        for _ in 0..1024 {
            match self.socket.read_error() {
                Ok(Some(e)) => {
                    self.stats.icmp_errors += 1;
                    self.handle_icmp(e);
                }
                _ => break,
            }
        }
    }

    /// ICMP errors quoting one of our datagrams: the engine matches the
    /// connection by the quoted header. Port unreachable refuses a connect at
    /// once (and resets an established connection); "fragmentation needed"
    /// shrinks that connection's packets.
    fn handle_icmp(&mut self, e: IcmpError) {
        let now = self.now();
        let quoted = &e.original[..e.original_len.min(e.original.len())];
        match e.kind {
            IcmpKind::PortUnreachable if self.shared.config.icmp_unreachable => {
                self.endpoint
                    .handle_icmp_unreachable(now, e.destination, quoted);
            }
            IcmpKind::FragNeeded { mtu } if mtu > 0 => {
                // The kernel reports the link MTU; we size UDP payloads.
                let headers = if e.destination.is_ipv4() { 28 } else { 48 };
                let payload = (mtu as usize).saturating_sub(headers);
                self.endpoint
                    .handle_icmp_frag_needed(now, e.destination, quoted, payload);
            }
            _ => {}
        }
    }

    fn drain_commands(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.begin_shutdown();
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = self.now();
        match cmd {
            Command::Connect(conn) => {
                if self.shutting_down {
                    conn.state.lock().dead = true;
                    self.to_wake.push(conn);
                    return;
                }
                let h = self.endpoint.connect(now, conn.peer);
                conn.engine.store(h.0, Ordering::SeqCst);
                self.conns.insert(h, IoConn::new(conn));
                // Closed or aborted before the I/O thread saw it.
                self.service(h);
            }
            Command::Kick(conn) => {
                if let Some(h) = self.lookup(&conn) {
                    self.service(h);
                }
            }
            Command::SendDatagram(contents, destination) => {
                self.transmits.push_back(Transmit {
                    destination,
                    contents,
                    connection: None,
                });
            }
            Command::Shutdown => self.begin_shutdown(),
        }
    }

    fn lookup(&self, conn: &Arc<ConnShared>) -> Option<ConnectionHandle> {
        let h = ConnectionHandle(conn.engine.load(Ordering::SeqCst));
        match self.conns.get(&h) {
            Some(c) if Arc::ptr_eq(&c.shared, conn) => Some(h),
            _ => None,
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let now = self.now();
        let linger = self.shared.config.endpoint.linger_us;
        self.exit_deadline = Some(now.saturating_add(linger).saturating_add(1_000_000));
        // Connections nobody accepted: close them.
        let queued: Vec<_> = self.shared.accept.lock().queue.drain(..).collect();
        for conn in queued {
            {
                let mut st = conn.state.lock();
                st.user_closed = true;
                st.write_shut = true;
            }
            if let Some(h) = self.lookup(&conn) {
                self.service(h);
            }
        }
        // Closed connections still in the handshake (those just closed
        // above among them): nothing was sent on them and the peer never
        // answered; do not wait for them. Nor for those held out of the
        // accept queue.
        self.endpoint.discard_closed_half_open(now);
        let unqueued: Vec<ConnectionHandle> = self
            .conns
            .iter()
            .filter(|(_, c)| c.unqueued)
            .map(|(h, _)| *h)
            .collect();
        for h in unqueued {
            self.conns.remove(&h);
            self.endpoint.discard(now, h);
        }
    }

    fn expire_closing(&mut self, now: u64) {
        if self.closing.is_empty() {
            return;
        }
        let due: Vec<ConnectionHandle> = self
            .closing
            .iter()
            .copied()
            .filter(|h| {
                self.conns
                    .get(h)
                    .and_then(|c| c.close_deadline)
                    .is_none_or(|d| now >= d)
            })
            .collect();
        for h in due {
            self.service(h);
        }
    }

    /// Moves bytes between a connection's handle and the engine and acts on
    /// its flags (FIN after the queued data, close once drained).
    fn service(&mut self, h: ConnectionHandle) {
        let now = self.now();
        let Some(ioc) = self.conns.get_mut(&h) else {
            return;
        };
        let mut notify = false;
        let mut remove = false;
        let mut st = ioc.shared.state.lock();
        st.kick_queued = false;
        if st.abort && !ioc.engine_closed {
            ioc.engine_closed = true;
            drop(st);
            self.endpoint.reset(now, h);
            self.forget(h);
            return;
        }
        let usable = !ioc.engine_closed && st.error.is_none() && st.phase == Phase::Connected;

        // Send path.
        if usable {
            while !st.send.is_empty() {
                let (a, _) = st.send.as_slices();
                let len = a.len();
                match self.endpoint.write(now, h, a) {
                    Ok(n) => {
                        if n > 0 {
                            st.send.drain(..n);
                            notify = true;
                        }
                        if n < len {
                            break;
                        }
                    }
                    Err(StreamError::WouldBlock) => break,
                    Err(StreamError::NotConnected) => {
                        self.write_retry.insert(h);
                        break;
                    }
                    Err(StreamError::WriteClosed) | Err(StreamError::InvalidHandle) => {
                        st.send.clear();
                        notify = true;
                        break;
                    }
                    Err(StreamError::Failed(e)) => {
                        st.error = Some(e);
                        notify = true;
                        break;
                    }
                }
            }
            if st.send.is_empty() {
                self.write_retry.remove(&h);
                if st.write_shut && !ioc.fin_sent && st.error.is_none() {
                    ioc.fin_sent = true;
                    match self.endpoint.shutdown_write(now, h) {
                        Ok(()) => {
                            self.fin_watch.insert(h);
                        }
                        Err(StreamError::Failed(e)) => {
                            st.error = Some(e);
                            notify = true;
                        }
                        Err(_) => {}
                    }
                }
            }
        }

        // Receive path: only while the handle has room (backpressure).
        if !ioc.engine_closed && !st.eof && st.phase == Phase::Connected {
            let discard = st.read_shut || st.user_closed;
            // A failed connection receives nothing more: take what the engine
            // still holds at once (at most its receive buffer), so a reader
            // gets every byte that arrived, and the end of stream if the
            // peer's FIN came, before the error (a peer that vanished right
            // after its FIN was acknowledged answers with RESET or ICMP).
            let failed = st.error.is_some();
            loop {
                let room = if discard || failed {
                    self.scratch.len()
                } else {
                    st.recv_cap
                        .saturating_sub(st.recv.len())
                        .min(self.scratch.len())
                };
                if room == 0 {
                    st.pull_blocked = true;
                    break;
                }
                match self.endpoint.read(now, h, &mut self.scratch[..room]) {
                    Ok(0) => {
                        st.eof = true;
                        notify = true;
                        break;
                    }
                    Ok(n) => {
                        if !discard {
                            st.recv.extend(&self.scratch[..n]);
                            notify = true;
                        }
                    }
                    Err(StreamError::WouldBlock) => {
                        if ioc.eof_event {
                            st.eof = true;
                            notify = true;
                        }
                        break;
                    }
                    Err(StreamError::Failed(e)) => {
                        if st.error.is_none() {
                            st.error = Some(e);
                            notify = true;
                        }
                        break;
                    }
                    Err(_) => break,
                }
            }
        }

        // Close once the handle's queue drained (or linger ran out, or the
        // connection already failed).
        if st.user_closed && !ioc.engine_closed {
            // Bytes written while connecting wait for the handshake.
            let drained = st.send.is_empty() || st.error.is_some() || st.phase == Phase::Closed;
            let linger_over = ioc.close_deadline.is_some_and(|d| now >= d);
            if drained || linger_over {
                ioc.engine_closed = true;
                self.closing.remove(&h);
                self.write_retry.remove(&h);
                self.fin_watch.remove(&h);
                drop(st);
                self.endpoint.close(now, h);
                // The engine owns the rest (delivery, FIN, linger); nobody
                // looks at this handle's events any more.
                remove = true;
            } else {
                if ioc.close_deadline.is_none() {
                    ioc.close_deadline =
                        Some(now.saturating_add(self.shared.config.endpoint.linger_us));
                }
                self.closing.insert(h);
                drop(st);
            }
        } else {
            // A snapshot for `StreamHandle::stats`, which never waits.
            let stale = ioc
                .stats_at
                .is_none_or(|t| now.saturating_sub(t) >= STATS_REFRESH_US);
            if st.stats_wanted || (notify && stale) {
                st.stats_wanted = false;
                ioc.stats_at = Some(now);
                drop(st);
                *ioc.shared.stats.lock() = self.endpoint.stats(h);
            } else {
                drop(st);
            }
        }

        if notify && !ioc.wake_queued {
            ioc.wake_queued = true;
            self.to_wake.push(ioc.shared.clone());
        }
        if remove {
            self.conns.remove(&h);
        }
    }

    /// Drops the driver's record of a connection the engine now owns alone.
    fn forget(&mut self, h: ConnectionHandle) {
        self.closing.remove(&h);
        self.write_retry.remove(&h);
        self.fin_watch.remove(&h);
        if let Some(c) = self.conns.remove(&h) {
            c.shared.state.lock().phase = Phase::Closed;
            self.to_wake.push(c.shared);
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let now = self.now();
        match ev {
            Event::Connected(h) => {
                if let Some(c) = self.conns.get(&h) {
                    {
                        let mut st = c.shared.state.lock();
                        st.phase = Phase::Connected;
                        st.connected = true;
                    }
                    *c.shared.stats.lock() = self.endpoint.stats(h);
                    self.wake(h);
                    self.service(h);
                }
            }
            Event::Incoming(h) => {
                let peer = self
                    .endpoint
                    .peer_addr(h)
                    .unwrap_or_else(|| self.shared.local_addr);
                let conn = ConnShared::new(peer, Phase::Connected, &self.shared.config);
                conn.engine.store(h.0, Ordering::SeqCst);
                if self.shutting_down {
                    self.endpoint.reset(now, h);
                    return;
                }
                *conn.stats.lock() = self.endpoint.stats(h);
                let mut ioc = IoConn::new(conn.clone());
                // A full queue first drops what can never be accepted;
                // still full, the newcomer waits outside until its peer
                // proves its address, so forged SYNs cannot take the places
                // of real peers.
                if self.make_room_in_accept_queue(now, false) {
                    self.shared.accept.lock().queue.push_back(conn);
                    self.wake_listener = true;
                } else {
                    ioc.unqueued = true;
                }
                self.conns.insert(h, ioc);
            }
            Event::Established(h) => {
                if self.conns.get(&h).is_some_and(|c| c.unqueued) {
                    if self.make_room_in_accept_queue(now, true) {
                        let c = self.conns.get_mut(&h).expect("checked");
                        c.unqueued = false;
                        self.shared.accept.lock().queue.push_back(c.shared.clone());
                        self.wake_listener = true;
                    } else {
                        // The backlog is full of real connections: refuse.
                        self.conns.remove(&h);
                        self.endpoint.reset(now, h);
                    }
                }
            }
            Event::Readable(h) | Event::Writable(h) => self.service(h),
            Event::Eof(h) => {
                if let Some(c) = self.conns.get_mut(&h) {
                    c.eof_event = true;
                    self.service(h);
                    self.wake(h);
                }
            }
            Event::Error(h, e) => {
                // Never queued, never seen by the application: forget it.
                if self.conns.get(&h).is_some_and(|c| c.unqueued) {
                    self.conns.remove(&h);
                    self.endpoint.discard(now, h);
                    return;
                }
                if let Some(c) = self.conns.get(&h) {
                    {
                        let mut st = c.shared.state.lock();
                        if st.error.is_none() {
                            st.error = Some(e);
                        }
                    }
                    *c.shared.stats.lock() = self.endpoint.stats(h);
                    self.write_retry.remove(&h);
                    self.wake(h);
                    // If the user already let go, this finishes it.
                    self.service(h);
                }
            }
            Event::Closed(h) => {
                if let Some(c) = self.conns.remove(&h) {
                    {
                        let mut st = c.shared.state.lock();
                        st.phase = Phase::Closed;
                    }
                    self.closing.remove(&h);
                    self.write_retry.remove(&h);
                    self.fin_watch.remove(&h);
                    self.to_wake.push(c.shared);
                }
            }
            // Not asked for: the runtime leaves report_delay_samples off.
            Event::DelaySample(..) => {}
        }
    }

    /// Room in the accept queue for one more connection: drops queued ones
    /// that failed (the engine evicts the oldest half-open connections
    /// under a SYN flood) and, with `over_half_open`, moves the oldest one
    /// still in its handshake back out to wait for its `Established`.
    fn make_room_in_accept_queue(&mut self, now: u64, over_half_open: bool) -> bool {
        let mut acc = self.shared.accept.lock();
        if acc.queue.len() < acc.backlog {
            return true;
        }
        let handle = |c: &Arc<ConnShared>| ConnectionHandle(c.engine.load(Ordering::SeqCst));
        let state = |c: &Arc<ConnShared>| self.endpoint.connection(handle(c)).map(|x| x.state());
        if let Some(i) = acc
            .queue
            .iter()
            .position(|c| matches!(state(c), None | Some(State::Failed(_))))
        {
            let h = handle(&acc.queue.remove(i).expect("index in range"));
            drop(acc);
            self.conns.remove(&h);
            self.endpoint.discard(now, h);
            return true;
        }
        if over_half_open {
            if let Some(i) = acc
                .queue
                .iter()
                .position(|c| state(c) == Some(State::SynRecv))
            {
                let h = handle(&acc.queue.remove(i).expect("index in range"));
                if let Some(c) = self.conns.get_mut(&h) {
                    c.unqueued = true;
                }
                return true;
            }
        }
        false
    }

    /// The engine's statistics of a connection right now.
    pub(crate) fn stats_of(&mut self, conn: &Arc<ConnShared>) -> Option<ConnectionStats> {
        let h = self.lookup(conn)?;
        self.endpoint.stats(h)
    }

    /// Tells handles whose FIN the peer acknowledged (`StreamHandle::close`
    /// waits for it).
    fn check_fin_acks(&mut self) {
        if self.fin_watch.is_empty() {
            return;
        }
        let acked: Vec<_> = self
            .fin_watch
            .iter()
            .copied()
            .filter(|h| self.endpoint.fin_acked(*h))
            .collect();
        for h in acked {
            self.fin_watch.remove(&h);
            if let Some(c) = self.conns.get(&h) {
                c.shared.state.lock().fin_acked = true;
                self.wake(h);
            }
        }
    }

    fn wake(&mut self, h: ConnectionHandle) {
        if let Some(c) = self.conns.get_mut(&h) {
            if !c.wake_queued {
                c.wake_queued = true;
                self.to_wake.push(c.shared.clone());
            }
        }
    }

    /// The engine's events and write retries, without sending anything.
    fn handle_events(&mut self) {
        while let Some(ev) = self.endpoint.poll_event() {
            self.handle_event(ev);
        }
        if !self.write_retry.is_empty() {
            let retry: Vec<_> = self.write_retry.iter().copied().collect();
            for h in retry {
                self.service(h);
            }
        }
    }

    /// Events, retries, transmits; the handles to wake are collected for
    /// [`take_wakes`](Self::take_wakes).
    fn settle(&mut self) {
        loop {
            let mut any = false;
            while let Some(ev) = self.endpoint.poll_event() {
                any = true;
                self.handle_event(ev);
            }
            if !self.write_retry.is_empty() {
                let retry: Vec<_> = self.write_retry.iter().copied().collect();
                for h in retry {
                    self.service(h);
                }
            }
            self.flush_transmits();
            if !any {
                break;
            }
        }
        self.check_fin_acks();
    }

    fn flush_transmits(&mut self) {
        if self.send_retry_at.is_some() {
            return;
        }
        loop {
            while self.transmits.len() < MAX_QUEUED_TRANSMITS {
                match self.endpoint.poll_transmit() {
                    Some(t) => self.transmits.push_back(t),
                    None => break,
                }
            }
            if self.transmits.is_empty() {
                return;
            }
            let out = self
                .socket
                .send_queue(&mut self.send_batch, &mut self.transmits);
            self.stats.datagrams_sent += out.sent as u64;
            self.stats.datagrams_dropped += out.dropped as u64;
            if out.blocked {
                // Keep them; POLLOUT (or, for ENOBUFS, a short timer)
                // brings us back.
                self.stats.send_blocked += 1;
                if out.no_buffers {
                    self.send_retry_at = Some(self.now() + ENOBUFS_RETRY_US);
                }
                return;
            }
        }
    }

    /// The handles to wake, for delivery once the lock is released.
    fn take_wakes(&mut self) -> Wakes {
        for conn in &self.to_wake {
            let h = ConnectionHandle(conn.engine.load(Ordering::SeqCst));
            if let Some(c) = self.conns.get_mut(&h) {
                if Arc::ptr_eq(&c.shared, conn) {
                    c.wake_queued = false;
                }
            }
        }
        Wakes {
            conns: std::mem::take(&mut self.to_wake),
            listener: std::mem::take(&mut self.wake_listener),
        }
    }

    /// The loop ended (or panicked): nothing will move any more.
    fn mark_dead(&mut self) {
        let _ = &self.stats;
        for (_, c) in self.conns.drain() {
            c.shared.state.lock().dead = true;
            c.shared.notify();
        }
        for conn in self.to_wake.drain(..) {
            conn.notify();
        }
    }
}
