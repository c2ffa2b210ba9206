//! `utp_socket`: one connection as the application sees it. All fields are
//! `Cell`s so the socket can be used from inside its own callbacks.
//!
//! Lifetime: a socket is released (becomes a tombstone, see `pool.rs`) only
//! by `utp_check_timeouts` after DESTROYING, by `utp_destroy`, or at once by
//! `utp_close` if it was never connected (no callback can refer to it).
//! Using a handle after DESTROYING is undefined in libutp; here it returns
//! the failure value as long as the tombstone was not reused.

use std::cell::{Cell, UnsafeCell};
use std::net::SocketAddr;
use std::os::raw::{c_int, c_void};

use utp_core::connection::State;
use utp_core::{ConnectionHandle, ConnectionStats, StreamError};

use crate::addr::{self, CAddr};
use crate::callbacks::LogLevel;
use crate::context::Context;
use crate::ffi_guard::{guard, try_or};
use crate::pool::{Pool, MAGIC_DEAD, MAGIC_SOCKET};
use crate::types::*;

/// Tombstones of sockets wait behind this many newer ones before reuse.
static SOCKETS: Pool = Pool::new(1024);

/// `SHUT_RD` / `SHUT_WR` as `utp_shutdown` reads them.
const SHUT_RD: c_int = libc::SHUT_RD;
const SHUT_WR: c_int = libc::SHUT_WR;

/// The object behind a `utp_socket *`.
#[repr(C)]
pub(crate) struct Socket {
    /// First field: every handle type has its own magic at offset 0.
    magic: Cell<u32>,
    pub(crate) ctx: Cell<Option<&'static Context>>,
    pub(crate) userdata: Cell<*mut c_void>,
    /// The engine connection, once connected or accepted.
    pub(crate) handle: Cell<Option<ConnectionHandle>>,
    pub(crate) peer: Cell<Option<SocketAddr>>,
    /// Our connection id (for log lines).
    pub(crate) recv_id: Cell<u16>,
    pub(crate) accepted: Cell<bool>,
    /// `utp_close` was called.
    pub(crate) app_closed: Cell<bool>,
    /// The engine reported `Closed`: DESTROYING follows at the next timeout pass.
    pub(crate) engine_closed: Cell<bool>,
    pub(crate) read_shut: Cell<bool>,
    pub(crate) write_shut: Cell<bool>,
    /// A write was cut short; writes return 0 until WRITABLE.
    pub(crate) full: Cell<bool>,
    pub(crate) failed: Cell<bool>,
    pub(crate) sndbuf: Cell<c_int>,
    pub(crate) rcvbuf: Cell<c_int>,
    pub(crate) target_delay: Cell<c_int>,
    pub(crate) last_packet_us: Cell<Option<u64>>,
    /// Highest DATA/FIN sequence number sent (tells retransmissions apart for OVERHEAD).
    pub(crate) max_data_seq: Cell<Option<u16>>,
    /// Last GET_READ_BUFFER_SIZE answer fed to the engine.
    pub(crate) app_buffered: Cell<usize>,
    stats: UnsafeCell<utp_socket_stats>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("live", &self.is_live())
            .field("handle", &self.handle.get())
            .field("peer", &self.peer.get())
            .finish_non_exhaustive()
    }
}

impl Socket {
    fn blank() -> Self {
        Socket {
            magic: Cell::new(MAGIC_DEAD),
            ctx: Cell::new(None),
            userdata: Cell::new(std::ptr::null_mut()),
            handle: Cell::new(None),
            peer: Cell::new(None),
            recv_id: Cell::new(0),
            accepted: Cell::new(false),
            app_closed: Cell::new(false),
            engine_closed: Cell::new(false),
            read_shut: Cell::new(false),
            write_shut: Cell::new(false),
            full: Cell::new(false),
            failed: Cell::new(false),
            sndbuf: Cell::new(0),
            rcvbuf: Cell::new(0),
            target_delay: Cell::new(0),
            last_packet_us: Cell::new(None),
            max_data_seq: Cell::new(None),
            app_buffered: Cell::new(0),
            stats: UnsafeCell::new(utp_socket_stats::default()),
        }
    }

    fn init(&self, ctx: &'static Context) {
        let o = ctx.opts.get();
        self.ctx.set(Some(ctx));
        self.userdata.set(std::ptr::null_mut());
        self.handle.set(None);
        self.peer.set(None);
        self.recv_id.set(0);
        self.accepted.set(false);
        self.app_closed.set(false);
        self.engine_closed.set(false);
        self.read_shut.set(false);
        self.write_shut.set(false);
        self.full.set(false);
        self.failed.set(false);
        self.sndbuf.set(o.sndbuf);
        self.rcvbuf.set(o.rcvbuf);
        self.target_delay.set(o.target_delay);
        self.last_packet_us.set(None);
        self.max_data_seq.set(None);
        self.app_buffered.set(0);
        // SAFETY: a fresh socket's stats are referenced by nobody.
        unsafe { *self.stats.get() = utp_socket_stats::default() };
        self.magic.set(MAGIC_SOCKET);
    }

    /// Turn into a tombstone and queue the memory for (much) later reuse.
    pub(crate) fn kill(&'static self) {
        if self.magic.get() != MAGIC_SOCKET {
            return;
        }
        self.magic.set(MAGIC_DEAD);
        self.ctx.set(None);
        SOCKETS.release(self);
    }

    pub(crate) fn is_live(&self) -> bool {
        self.magic.get() == MAGIC_SOCKET
    }

    pub(crate) fn as_ptr(&self) -> *mut utp_socket {
        self as *const Socket as *mut utp_socket
    }

    /// The live socket (and its live context) behind a C pointer.
    pub(crate) fn from_ptr(p: *mut utp_socket) -> Option<(&'static Socket, &'static Context)> {
        if p.is_null() || (p as usize) % std::mem::align_of::<Socket>() != 0 {
            return None;
        }
        // SAFETY: handles come from `utp_create_socket` or ON_ACCEPT and point at
        // leaked `Socket`s that are never freed (pool.rs). Foreign pointers are
        // the caller's undefined behaviour, as with libutp.
        let s: &'static Socket = unsafe { &*(p as *const Socket) };
        if !s.is_live() {
            return None;
        }
        let ctx = s.ctx.get().filter(|c| c.is_live())?;
        Some((s, ctx))
    }

    pub(crate) fn set_stats(&self, cs: &ConnectionStats) {
        let st = utp_socket_stats {
            nbytes_recv: cs.datagram_bytes_received,
            nbytes_xmit: cs.datagram_bytes_sent,
            rexmit: cs.fast_retransmits as u32,
            fastrexmit: cs.timeout_retransmits as u32,
            nxmit: cs.packets_sent as u32,
            nrecv: cs.packets_received as u32,
            nduprecv: cs.duplicates_received as u32,
            mtu_guess: cs.mtu_guess,
        };
        // SAFETY: single-threaded use; the application only reads through the pointer.
        unsafe { *self.stats.get() = st };
    }

    /// The engine's statistics of this socket's connection.
    pub(crate) fn engine_stats(&self, ctx: &Context) -> Option<ConnectionStats> {
        let h = self.handle.get()?;
        ctx.with_engine(|e| e.stats(h)).flatten()
    }

    /// The engine's state of this socket's connection.
    fn engine_state(&self, ctx: &Context) -> Option<State> {
        let h = self.handle.get()?;
        ctx.with_engine(|e| e.connection(h).map(|c| c.state()))
            .flatten()
    }

    /// Queue `data` (libutp's `utp_write` rules); returns bytes accepted.
    fn write(&self, ctx: &Context, data: &[u8]) -> isize {
        let Some(h) = self.handle.get() else {
            return 0;
        };
        if self.app_closed.get() || self.write_shut.get() || self.full.get() || self.failed.get() {
            return 0;
        }
        // Writes are refused until connected (accepted sockets: until the first DATA).
        if self.engine_state(ctx) != Some(State::Connected) {
            return 0;
        }
        // libutp asks GET_READ_BUFFER_SIZE for every packet header it builds.
        ctx.update_app_buffered(self);
        if !self.is_live() {
            return 0;
        }
        let now = ctx.now_us(Some(self));
        let r = ctx.with_engine(|e| e.write(now, h, data));
        let n = match r {
            Some(Ok(n)) => {
                if n < data.len() {
                    self.full.set(true);
                }
                n
            }
            Some(Err(StreamError::WouldBlock)) => {
                self.full.set(true);
                0
            }
            _ => 0,
        };
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        ctx.drain_transmits();
        n as isize
    }
}

impl Context {
    /// A fresh socket of this context (not yet known to the engine).
    pub(crate) fn new_socket(&'static self) -> &'static Socket {
        // SAFETY: SOCKETS only ever holds `Socket`s.
        let s =
            unsafe { SOCKETS.reuse::<Socket>() }.unwrap_or_else(|| SOCKETS.leak(Socket::blank()));
        s.init(self);
        self.state
            .borrow_mut()
            .all
            .insert(s as *const Socket as usize, s);
        s
    }
}

/// Store and return the socket's user data (NULL for a NULL socket).
#[no_mangle]
pub extern "C" fn utp_set_userdata(s: *mut utp_socket, userdata: *mut c_void) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let (s, _) = try_or!(Socket::from_ptr(s), std::ptr::null_mut());
        s.userdata.set(userdata);
        userdata
    })
}

/// The socket's user data (NULL for a NULL socket).
#[no_mangle]
pub extern "C" fn utp_get_userdata(s: *mut utp_socket) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let (s, _) = try_or!(Socket::from_ptr(s), std::ptr::null_mut());
        s.userdata.get()
    })
}

/// The socket's context (NULL for a NULL socket).
#[no_mangle]
pub extern "C" fn utp_get_context(s: *mut utp_socket) -> *mut utp_context {
    guard(std::ptr::null_mut(), || {
        let (_, ctx) = try_or!(Socket::from_ptr(s), std::ptr::null_mut());
        ctx.as_ptr()
    })
}

/// Connect to `to` (AF_INET or AF_INET6). 0: SYN sent, the outcome arrives as
/// CONNECT (or ON_CONNECT) or ON_ERROR. -1: bad arguments or already used
/// (libutp quirk kept: a second connect also closes the socket).
#[no_mangle]
pub extern "C" fn utp_connect(s: *mut utp_socket, to: *const sockaddr, tolen: socklen_t) -> c_int {
    guard(-1, || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), -1);
        if s.handle.get().is_some() {
            if !s.app_closed.get() {
                s.app_closed.set(true);
                let h = s.handle.get();
                let now = ctx.now_us(Some(s));
                ctx.with_engine(|e| h.map(|h| e.close(now, h)));
                ctx.drain_transmits();
            }
            return -1;
        }
        if s.app_closed.get() {
            return -1;
        }
        // SAFETY: `to` covers `tolen` bytes (caller's contract); NULL is checked.
        let peer = try_or!(unsafe { addr::from_c(to, tolen) }, -1);
        ctx.ensure_engine();
        let mtu = ctx.udp_mtu(Some(s), peer);
        let cfg = Context::engine_config(s.sndbuf.get(), s.rcvbuf.get(), s.target_delay.get(), mtu);
        let now = ctx.now_us(Some(s));
        let started = ctx.with_engine(|e| {
            e.set_config(cfg);
            e.connect(now, peer)
        });
        let h = try_or!(started, -1);
        ctx.register(s, h, addr::canonical(peer));
        ctx.log(LogLevel::Normal, Some(s), || "UTP_Connect".to_string());
        ctx.drain_transmits();
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        0
    })
}

/// Queue bytes. -1 for invalid arguments, 0 when nothing can be accepted now
/// (not connected yet, full, shut down, failed), else the bytes accepted; a
/// short count means UTP_STATE_WRITABLE follows.
#[no_mangle]
pub extern "C" fn utp_write(s: *mut utp_socket, buf: *mut c_void, count: usize) -> ssize_t {
    guard(-1, || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), -1);
        if buf.is_null() && count > 0 {
            return -1;
        }
        let data: &[u8] = if count == 0 {
            &[]
        } else {
            // SAFETY: caller passes `count` readable bytes at `buf`.
            unsafe { std::slice::from_raw_parts(buf as *const u8, count) }
        };
        s.write(ctx, data)
    })
}

/// Like `utp_write` over up to `UTP_IOV_MAX` buffers; -1 if `iovec` is NULL or `num_iovecs` is 0.
#[no_mangle]
pub extern "C" fn utp_writev(
    s: *mut utp_socket,
    iovec: *mut utp_iovec,
    num_iovecs: usize,
) -> ssize_t {
    guard(-1, || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), -1);
        if iovec.is_null() || num_iovecs == 0 {
            return -1;
        }
        let n = num_iovecs.min(crate::names::UTP_IOV_MAX as usize);
        // SAFETY: caller passes `num_iovecs` iovecs; we read (never modify) at most 1024.
        let iov = unsafe { std::slice::from_raw_parts(iovec as *const utp_iovec, n) };
        if iov.iter().any(|v| v.iov_base.is_null() && v.iov_len > 0) {
            return -1;
        }
        let mut total: isize = 0;
        for v in iov {
            if v.iov_len == 0 {
                continue;
            }
            // SAFETY: checked non-null above; the caller's buffer of `iov_len` bytes.
            let data = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
            let w = s.write(ctx, data);
            total += w.max(0);
            if (w as usize) < v.iov_len {
                break;
            }
        }
        if total == 0 && iov.iter().all(|v| v.iov_len == 0) {
            return s.write(ctx, &[]);
        }
        total
    })
}

/// The peer's address: `min(actual, *addrlen)` bytes copied, and that same
/// minimum stored in `*addrlen` (libutp quirk). -1 if unconnected or NULL args.
#[no_mangle]
pub extern "C" fn utp_getpeername(
    s: *mut utp_socket,
    addr: *mut sockaddr,
    addrlen: *mut socklen_t,
) -> c_int {
    guard(-1, || {
        let (s, _) = try_or!(Socket::from_ptr(s), -1);
        if addr.is_null() || addrlen.is_null() {
            return -1;
        }
        let peer = try_or!(s.peer.get(), -1);
        let ca = CAddr::new(peer);
        let bytes = ca.bytes();
        // SAFETY: non-null out pointers from the caller; `*addrlen` bytes writable at `addr`.
        unsafe {
            let n = bytes.len().min(*addrlen as usize);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, n);
            *addrlen = n as socklen_t;
        }
        0
    })
}

/// The application consumed buffered input: asks GET_READ_BUFFER_SIZE again
/// and advertises the larger window (at once if it was below one packet,
/// otherwise with the next ACK). No-op for NULL or never-connected sockets.
#[no_mangle]
pub extern "C" fn utp_read_drained(s: *mut utp_socket) {
    guard((), || {
        let (s, ctx) = try_or!(Socket::from_ptr(s));
        if s.handle.get().is_none() {
            return;
        }
        ctx.update_app_buffered(s);
        ctx.drain_transmits();
    })
}

/// Queuing-delay estimates (us) of both directions and the ms since the last
/// packet for this socket. Output pointers may be NULL. -1 if unconnected.
#[no_mangle]
pub extern "C" fn utp_get_delays(
    s: *mut utp_socket,
    ours: *mut uint32,
    theirs: *mut uint32,
    age: *mut uint32,
) -> c_int {
    guard(-1, || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), -1);
        let put = |p: *mut uint32, v: u32| {
            if !p.is_null() {
                // SAFETY: non-null out pointer from the caller.
                unsafe { *p = v };
            }
        };
        if s.handle.get().is_none() {
            put(ours, 0);
            put(theirs, 0);
            put(age, 0);
            return -1;
        }
        let cs = s.engine_stats(ctx).unwrap_or_default();
        put(ours, cs.our_delay_us);
        put(theirs, cs.their_delay_us);
        let a = match s.last_packet_us.get() {
            Some(t) => (ctx.last_us.get().saturating_sub(t) / 1000) as u32,
            None => 0,
        };
        put(age, a);
        0
    })
}

/// Live per-socket counters (refreshed at each call). NULL for a NULL socket.
#[no_mangle]
pub extern "C" fn utp_get_stats(s: *mut utp_socket) -> *mut utp_socket_stats {
    guard(std::ptr::null_mut(), || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), std::ptr::null_mut());
        ctx.refresh_stats(s);
        s.stats.get()
    })
}

/// SHUT_RD: stop delivering data. SHUT_WR: queue a FIN once connected (while
/// connecting it is not remembered, as in libutp). SHUT_RDWR: both.
#[no_mangle]
pub extern "C" fn utp_shutdown(s: *mut utp_socket, how: c_int) {
    guard((), || {
        let (s, ctx) = try_or!(Socket::from_ptr(s));
        if how != SHUT_WR {
            s.read_shut.set(true);
        }
        if how == SHUT_RD || s.write_shut.get() || s.app_closed.get() {
            return;
        }
        let Some(h) = s.handle.get() else {
            return;
        };
        if s.engine_state(ctx) != Some(State::Connected) {
            return;
        }
        s.write_shut.set(true);
        let now = ctx.now_us(Some(s));
        ctx.with_engine(|e| e.shutdown_write(now, h));
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        ctx.drain_transmits();
    })
}

/// Give up the handle. Queued data and a FIN are still sent; the socket is
/// released (DESTROYING) by a later `utp_check_timeouts` or by `utp_destroy`,
/// never inside this call. A second close is a no-op.
#[no_mangle]
pub extern "C" fn utp_close(s: *mut utp_socket) {
    guard((), || {
        let (s, ctx) = try_or!(Socket::from_ptr(s));
        if s.app_closed.get() {
            return;
        }
        s.app_closed.set(true);
        s.read_shut.set(true);
        let Some(h) = s.handle.get() else {
            // Never connected: nothing can refer to it, release it silently.
            if let Ok(()) = ctx.state.try_borrow().map(|_| ()) {
                ctx.forget_socket(s);
            }
            return;
        };
        ctx.log(LogLevel::Debug, Some(s), || "UTP_Close".to_string());
        let now = ctx.now_us(Some(s));
        ctx.with_engine(|e| e.close(now, h));
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        ctx.drain_transmits();
    })
}
