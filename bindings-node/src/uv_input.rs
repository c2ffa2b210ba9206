//! Datagrams received on Node's own event loop.
//!
//! A context's UDP socket is watched by a libuv poll handle on the main
//! thread; when it turns readable, the datagrams run through the engine
//! right there (`ContextHandle::receive_ready`), and the readiness they
//! cause is queued for JavaScript without any other thread in between. The
//! I/O thread keeps timers, retransmissions and commands. Without this, each
//! packet costs two thread wake-ups (I/O thread, then the event loop).
//!
//! libuv's functions come from the node binary, which exports them for
//! addons; `napi_get_uv_event_loop` gives the loop.

use std::os::raw::{c_int, c_void};
use std::sync::Arc;

use napi::Env;
use utp_core::runtime::ContextHandle;

// From uv.h (stable across libuv 1.x).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

type PollCb = extern "C" fn(handle: *mut c_void, status: c_int, events: c_int);
type CloseCb = extern "C" fn(handle: *mut c_void);

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_poll_init(lp: *mut c_void, handle: *mut c_void, fd: c_int) -> c_int;
    fn uv_poll_start(handle: *mut c_void, events: c_int, cb: PollCb) -> c_int;
    fn uv_poll_stop(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, cb: CloseCb);
    fn uv_unref(handle: *mut c_void);
}

/// What the poll handle's `data` field (its first word) points to.
struct PollState {
    ctx: Arc<ContextHandle>,
    /// A duplicate of the context's UDP socket: stays valid for libuv even
    /// after the I/O thread closed its own descriptor.
    fd: c_int,
}

/// A running watch; `stop` (or drop) hands the input back to the I/O thread.
pub struct EventLoopInput {
    handle: *mut c_void,
}

impl EventLoopInput {
    /// Starts watching `ctx`'s socket on `env`'s loop. `None` when libuv
    /// refuses (the context then keeps receiving on its I/O thread).
    pub fn start(env: &Env, ctx: &Arc<ContextHandle>) -> Option<EventLoopInput> {
        let lp = env.get_uv_event_loop().ok()? as *mut c_void;
        // SAFETY: plain libc and libuv calls on memory this function owns;
        // the handle is freed only by `on_close`, after libuv let go of it.
        let handle = unsafe {
            let fd = libc_dup(ctx.udp_fd());
            if fd < 0 {
                return None;
            }
            let handle = calloc(1, uv_handle_size(UV_POLL));
            if handle.is_null() {
                close(fd);
                return None;
            }
            if uv_poll_init(lp, handle, fd) != 0 {
                free(handle);
                close(fd);
                return None;
            }
            let state = Box::into_raw(Box::new(PollState {
                ctx: ctx.clone(),
                fd,
            }));
            *(handle as *mut *mut PollState) = state;
            if uv_poll_start(handle, UV_READABLE, on_readable) != 0 {
                uv_close(handle, on_close);
                return None;
            }
            // Whether the process stays alive is JavaScript's business
            // (sockets hold it through the dispatcher).
            uv_unref(handle);
            handle
        };
        ctx.set_event_loop_input(true);
        Some(EventLoopInput { handle })
    }

    /// Stops watching; the I/O thread receives again.
    pub fn stop(self) {
        drop(self)
    }
}

impl Drop for EventLoopInput {
    fn drop(&mut self) {
        // SAFETY: `handle` is live (closed only here, once); this runs on
        // the loop's thread (Node-API objects are dropped there).
        unsafe {
            let state = &*(*(self.handle as *const *const PollState));
            state.ctx.set_event_loop_input(false);
            uv_poll_stop(self.handle);
            uv_close(self.handle, on_close);
        }
    }
}

extern "C" fn on_readable(handle: *mut c_void, _status: c_int, _events: c_int) {
    // SAFETY: `data` was set before the poll started and is freed only in
    // `on_close`, after which libuv calls nothing on this handle.
    let state = unsafe { &*(*(handle as *const *const PollState)) };
    // No panic may unwind into libuv.
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        state.ctx.receive_ready().is_ok()
    }))
    .unwrap_or(false);
    if !ok {
        // The context's I/O thread is gone: nothing will read the socket,
        // and a level-triggered watch would spin.
        // SAFETY: stopping a live handle from its own callback is allowed.
        unsafe { uv_poll_stop(handle) };
    }
}

extern "C" fn on_close(handle: *mut c_void) {
    // SAFETY: libuv is done with the handle; `data` came from Box::into_raw.
    unsafe {
        let state = Box::from_raw(*(handle as *mut *mut PollState));
        close(state.fd);
        drop(state);
        free(handle);
    }
}

extern "C" {
    fn calloc(n: usize, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn close(fd: c_int) -> c_int;
    #[link_name = "dup"]
    fn libc_dup(fd: c_int) -> c_int;
}
