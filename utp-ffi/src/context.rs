//! `utp_context`: one UDP socket's worth of uTP, wrapping a sans-IO
//! [`Endpoint`]. This file holds the type and the context-level C functions;
//! `driver.rs` holds the engine plumbing (transmits, events, callbacks).

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;

// Keys come from the network: foldhash is fast and seeded per map.
use foldhash::HashMap;
use std::os::raw::{c_int, c_void};

use utp_core::{ConnectionHandle, Endpoint, EndpointConfig, Event};

use crate::ffi_guard::{guard, try_or};
use crate::names::*;
use crate::pool::{Pool, MAGIC_CONTEXT, MAGIC_DEAD};
use crate::socket::Socket;
use crate::types::*;

/// Contexts are few; keep a short quarantine of tombstones.
static CONTEXTS: Pool = Pool::new(16);

/// Context options (`utp_context_set_option`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ContextOptions {
    pub log_normal: bool,
    pub log_mtu: bool,
    pub log_debug: bool,
    pub sndbuf: c_int,
    pub rcvbuf: c_int,
    pub target_delay: c_int,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            log_normal: false,
            log_mtu: false,
            log_debug: false,
            sndbuf: 1_048_576,
            rcvbuf: 1_048_576,
            target_delay: 100_000,
        }
    }
}

/// An engine event waiting to be turned into callbacks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pending {
    Event(Event),
    /// A new incoming connection, with the address pointer the application
    /// passed to `utp_process_udp` (still valid: dispatched within that call).
    Accept(ConnectionHandle, *const sockaddr, socklen_t),
}

/// Bookkeeping that is borrowed only briefly, never across a callback.
#[derive(Debug, Default)]
pub(crate) struct CtxState {
    /// Every live socket created on this context, by address (for `utp_destroy`).
    pub all: HashMap<usize, &'static Socket>,
    /// Sockets known to the engine.
    pub by_handle: HashMap<ConnectionHandle, &'static Socket>,
    /// Events taken from the engine, not yet delivered.
    pub pending: VecDeque<Pending>,
}

/// The object behind a `utp_context *`.
#[repr(C)]
pub(crate) struct Context {
    /// First field: every handle type has its own magic at offset 0.
    magic: Cell<u32>,
    pub(crate) callbacks: [Cell<Option<CallbackFn>>; CALLBACK_COUNT],
    pub(crate) userdata: Cell<*mut c_void>,
    pub(crate) opts: Cell<ContextOptions>,
    /// Created on first use, seeded from GET_RANDOM (so `srand` and custom RNGs count).
    pub(crate) engine: RefCell<Option<Endpoint>>,
    pub(crate) state: RefCell<CtxState>,
    /// Live counters handed out by `utp_get_context_stats`.
    pub(crate) stats: UnsafeCell<utp_context_stats>,
    pub(crate) last_us: Cell<u64>,
    pub(crate) last_ms: Cell<u64>,
    /// Last `utp_check_timeouts` run that did work (the 500 ms gate).
    pub(crate) last_check_ms: Cell<Option<u64>>,
    /// Scratch buffer for reading delivered data out of the engine.
    pub(crate) read_buf: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("live", &self.is_live())
            .finish_non_exhaustive()
    }
}

impl Context {
    fn blank() -> Self {
        Context {
            magic: Cell::new(MAGIC_DEAD),
            callbacks: Default::default(),
            userdata: Cell::new(std::ptr::null_mut()),
            opts: Cell::new(ContextOptions::default()),
            engine: RefCell::new(None),
            state: RefCell::new(CtxState::default()),
            stats: UnsafeCell::new(utp_context_stats::default()),
            last_us: Cell::new(0),
            last_ms: Cell::new(0),
            last_check_ms: Cell::new(None),
            read_buf: RefCell::new(Vec::new()),
        }
    }

    /// Reset every field to a fresh context's value and mark it live.
    fn init(&self) {
        for c in &self.callbacks {
            c.set(None);
        }
        self.userdata.set(std::ptr::null_mut());
        self.opts.set(ContextOptions::default());
        *self.engine.borrow_mut() = None;
        *self.state.borrow_mut() = CtxState::default();
        // SAFETY: nothing else references the stats of a dead/new context.
        unsafe { *self.stats.get() = utp_context_stats::default() };
        self.last_us.set(0);
        self.last_ms.set(0);
        self.last_check_ms.set(None);
        self.magic.set(MAGIC_CONTEXT);
    }

    fn alloc() -> &'static Context {
        // SAFETY: CONTEXTS only ever holds `Context`s.
        let c = unsafe { CONTEXTS.reuse::<Context>() }
            .unwrap_or_else(|| CONTEXTS.leak(Context::blank()));
        c.init();
        c
    }

    pub(crate) fn is_live(&self) -> bool {
        self.magic.get() == MAGIC_CONTEXT
    }

    /// The live context behind a C pointer; `None` for NULL, misaligned or destroyed.
    pub(crate) fn from_ptr(p: *mut utp_context) -> Option<&'static Context> {
        if p.is_null() || (p as usize) % std::mem::align_of::<Context>() != 0 {
            return None;
        }
        // SAFETY: non-null, aligned pointers handed out by `utp_init` point at
        // a leaked `Context` (never freed, see pool.rs). Anything else is the
        // caller's undefined behaviour, as with libutp.
        let c = unsafe { &*(p as *const Context) };
        c.is_live().then_some(c)
    }

    pub(crate) fn as_ptr(&self) -> *mut utp_context {
        self as *const Context as *mut utp_context
    }

    /// Engine configuration for the next connection.
    pub(crate) fn engine_config(
        sndbuf: c_int,
        rcvbuf: c_int,
        target_delay: c_int,
        mtu: usize,
    ) -> EndpointConfig {
        EndpointConfig {
            send_buffer: sndbuf.max(1) as usize,
            recv_buffer: rcvbuf.max(1) as usize,
            target_delay_us: if target_delay <= 0 {
                100_000
            } else {
                target_delay as u32
            },
            max_packet_size: mtu,
            // libutp ignores SYNs once it holds more than 3000 sockets.
            max_connections: 3001,
            // ... and never drops a half-open socket for a newer SYN.
            evict_half_open: false,
            // libutp's close: a closed socket is destroyed once its FIN is
            // acknowledged; a later FIN from the peer is answered with RESET
            // (the peer sees ON_ERROR(ECONNRESET), contract 8.5).
            close_on_fin_acked: true,
            // libutp sends nothing after the SYN-ACK until the application
            // writes (contract: a silent connected socket stays silent).
            announce_on_connect: false,
            // libutp keeps acknowledging and dropping data after utp_close.
            reset_data_after_close: false,
            // libutp has no idle timeout: a silent peer is waited for forever.
            idle_timeout_us: 0,
            // UTP_ON_DELAY_SAMPLE (dropped when no callback is set).
            report_delay_samples: true,
            // Pacing deadlines would wait for the next utp_check_timeouts
            // (ucat calls it at most every 500 ms): libutp does not pace.
            pacing: false,
            ..EndpointConfig::default()
        }
    }

    /// Create the engine if needed (calls GET_RANDOM, so never under a borrow).
    pub(crate) fn ensure_engine(&self) {
        if self
            .engine
            .try_borrow()
            .map(|e| e.is_some())
            .unwrap_or(true)
        {
            return;
        }
        let seed = (u64::from(self.random(None)) << 32) ^ u64::from(self.random(None));
        let o = self.opts.get();
        let cfg = Self::engine_config(o.sndbuf, o.rcvbuf, o.target_delay, 1402);
        if let Ok(mut e) = self.engine.try_borrow_mut() {
            if e.is_none() {
                *e = Some(Endpoint::new(cfg, seed));
            }
        }
    }

    /// Run `f` on the engine. `None` if there is no engine yet or it is busy
    /// (re-entered from a signal handler in the middle of a call).
    pub(crate) fn with_engine<R>(&self, f: impl FnOnce(&mut Endpoint) -> R) -> Option<R> {
        let mut e = self.engine.try_borrow_mut().ok()?;
        e.as_mut().map(f)
    }

    /// Tombstone every socket and the context itself.
    fn destroy(&'static self) {
        // DESTROYING for every socket the engine knows (libutp: every registered socket).
        let registered: Vec<&'static Socket> = {
            let st = self.state.borrow();
            let mut v: Vec<_> = st.by_handle.values().copied().collect();
            v.sort_by_key(|s| s.handle.get());
            v
        };
        for s in registered {
            if s.is_live() {
                self.destroy_socket(s);
            }
        }
        let rest: Vec<&'static Socket> = self.state.borrow().all.values().copied().collect();
        for s in rest {
            self.forget_socket(s);
        }
        self.magic.set(MAGIC_DEAD);
        *self.engine.borrow_mut() = None;
        *self.state.borrow_mut() = CtxState::default();
        self.read_buf.borrow_mut().clear();
        CONTEXTS.release(self);
    }
}

/// Create a context. Only `version == 2` is accepted (anything else: NULL).
#[no_mangle]
pub extern "C" fn utp_init(version: c_int) -> *mut utp_context {
    guard(std::ptr::null_mut(), || {
        if version != 2 {
            return std::ptr::null_mut();
        }
        Context::alloc().as_ptr()
    })
}

/// Fire DESTROYING for every registered socket, then free everything. NULL: no-op.
/// Must not be called from a callback of the same context.
#[no_mangle]
pub extern "C" fn utp_destroy(ctx: *mut utp_context) {
    guard((), || {
        let ctx = try_or!(Context::from_ptr(ctx));
        ctx.destroy();
    })
}

/// Set (or clear with NULL) callback `callback_name`. Ids outside 0..=21 are ignored;
/// 16..=21 are accepted and never called. Clearing a defaulted slot restores the default.
#[no_mangle]
pub extern "C" fn utp_set_callback(
    ctx: *mut utp_context,
    callback_name: c_int,
    proc: *mut utp_callback_t,
) {
    guard((), || {
        let ctx = try_or!(Context::from_ptr(ctx));
        let Ok(idx) = usize::try_from(callback_name) else {
            return;
        };
        // SAFETY: a `utp_callback_t *` is a function pointer of this signature
        // (or NULL, which maps to `None`).
        let f: Option<CallbackFn> =
            unsafe { std::mem::transmute::<*mut utp_callback_t, Option<CallbackFn>>(proc) };
        if let Some(slot) = ctx.callbacks.get(idx) {
            slot.set(f);
        }
    })
}

/// Store and return the context's user data (NULL for a NULL context).
#[no_mangle]
pub extern "C" fn utp_context_set_userdata(
    ctx: *mut utp_context,
    userdata: *mut c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let ctx = try_or!(Context::from_ptr(ctx), std::ptr::null_mut());
        ctx.userdata.set(userdata);
        userdata
    })
}

/// The context's user data (NULL for a NULL context).
#[no_mangle]
pub extern "C" fn utp_context_get_userdata(ctx: *mut utp_context) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let ctx = try_or!(Context::from_ptr(ctx), std::ptr::null_mut());
        ctx.userdata.get()
    })
}

/// Live datagram counters of the context (NULL for a NULL context).
#[no_mangle]
pub extern "C" fn utp_get_context_stats(ctx: *mut utp_context) -> *mut utp_context_stats {
    guard(std::ptr::null_mut(), || {
        let ctx = try_or!(Context::from_ptr(ctx), std::ptr::null_mut());
        ctx.stats.get()
    })
}

/// Create an unconnected socket; it copies the context's SNDBUF, RCVBUF and TARGET_DELAY.
#[no_mangle]
pub extern "C" fn utp_create_socket(ctx: *mut utp_context) -> *mut utp_socket {
    guard(std::ptr::null_mut(), || {
        let ctx = try_or!(Context::from_ptr(ctx), std::ptr::null_mut());
        ctx.new_socket().as_ptr()
    })
}
