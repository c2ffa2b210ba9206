//! `utp_check_timeouts` and `utp_issue_deferred_acks`.

use crate::context::Context;
use crate::ffi_guard::{guard, try_or};
use crate::socket::Socket;
use crate::types::utp_context;

/// libutp's gate between two effective `utp_check_timeouts` passes.
const CHECK_INTERVAL_MS: u64 = 500;

impl Context {
    fn check_timeouts(&self) {
        let now_ms = self.now_ms(None);
        let now = self.now_us(None);
        // Engine timers run whenever one is due (the engine keeps exact
        // deadlines, so calling it often is only more precise).
        let due = self
            .with_engine(|e| e.poll_timeout().is_some_and(|t| t <= now))
            .unwrap_or(false);
        if due {
            self.with_engine(|e| e.handle_timeout(now));
            let events = self.poll_events();
            self.queue_events(events, false, None);
            self.drain_transmits();
        }
        self.dispatch();

        // Sockets are released only here (and in utp_destroy), at most every 500 ms.
        if let Some(last) = self.last_check_ms.get() {
            if now_ms.saturating_sub(last) < CHECK_INTERVAL_MS {
                return;
            }
        }
        self.last_check_ms.set(Some(now_ms));
        let finished: Vec<&'static Socket> = {
            let Ok(st) = self.state.try_borrow() else {
                return;
            };
            let mut v: Vec<_> = st
                .by_handle
                .values()
                .copied()
                .filter(|s| s.app_closed.get())
                .collect();
            v.sort_by_key(|s| s.handle.get());
            v
        };
        for s in finished {
            let gone = s.engine_closed.get()
                || s.handle
                    .get()
                    .and_then(|h| self.with_engine(|e| e.connection(h).is_none()))
                    .unwrap_or(false);
            if gone && s.is_live() {
                self.destroy_socket(s);
            }
        }
    }
}

/// Drive timers: retransmissions, keep-alives, give-ups (ON_ERROR ETIMEDOUT),
/// WRITABLE, and release of finished sockets (DESTROYING). Call it at least
/// every 500 ms; more often is harmless.
#[no_mangle]
pub extern "C" fn utp_check_timeouts(ctx: *mut utp_context) {
    guard((), || {
        let ctx = try_or!(Context::from_ptr(ctx));
        ctx.check_timeouts();
    })
}

/// Send the ACKs deferred while datagrams were processed. Call it once the
/// UDP socket has been drained.
#[no_mangle]
pub extern "C" fn utp_issue_deferred_acks(ctx: *mut utp_context) {
    guard((), || {
        let ctx = try_or!(Context::from_ptr(ctx));
        let now = ctx.now_us(None);
        if ctx.with_engine(|e| e.flush_acks(now)).is_none() {
            return;
        }
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        ctx.drain_transmits();
    })
}
