//! Context and socket options (`utp_context_set_option`, `utp_setsockopt`, ...).
//!
//! Context values are copied into a socket when it is created; changing them
//! never affects existing sockets. Socket values apply to the connection when
//! `utp_connect` creates it, and on a live connection (connected, accepted,
//! including inside ON_ACCEPT) they take effect at once, as in libutp: the
//! next packet advertises the new RCVBUF, SNDBUF caps what is in flight, and
//! LEDBAT aims at the new TARGET_DELAY.

use std::os::raw::c_int;

use crate::context::Context;
use crate::ffi_guard::{guard, try_or};
use crate::names::*;
use crate::socket::Socket;
use crate::types::{utp_context, utp_socket};

/// Set a context option; 0 on success, -1 for an unknown option or NULL context.
#[no_mangle]
pub extern "C" fn utp_context_set_option(ctx: *mut utp_context, opt: c_int, val: c_int) -> c_int {
    guard(-1, || {
        let ctx = try_or!(Context::from_ptr(ctx), -1);
        let mut o = ctx.opts.get();
        match opt {
            UTP_LOG_NORMAL => o.log_normal = val != 0,
            UTP_LOG_MTU => o.log_mtu = val != 0,
            UTP_LOG_DEBUG => o.log_debug = val != 0,
            UTP_SNDBUF => o.sndbuf = val,
            UTP_RCVBUF => o.rcvbuf = val,
            UTP_TARGET_DELAY => o.target_delay = val,
            _ => return -1,
        }
        ctx.opts.set(o);
        0
    })
}

/// Read a context option; -1 for an unknown option or NULL context.
#[no_mangle]
pub extern "C" fn utp_context_get_option(ctx: *mut utp_context, opt: c_int) -> c_int {
    guard(-1, || {
        let ctx = try_or!(Context::from_ptr(ctx), -1);
        let o = ctx.opts.get();
        match opt {
            UTP_LOG_NORMAL => o.log_normal as c_int,
            UTP_LOG_MTU => o.log_mtu as c_int,
            UTP_LOG_DEBUG => o.log_debug as c_int,
            UTP_SNDBUF => o.sndbuf,
            UTP_RCVBUF => o.rcvbuf,
            UTP_TARGET_DELAY => o.target_delay,
            _ => -1,
        }
    })
}

/// Set a socket option (SNDBUF, RCVBUF, TARGET_DELAY); 0 on success, else -1.
/// Applies to the live connection at once (a value below 1 byte counts as 1;
/// a target delay <= 0 as 100000 us, as libutp does at use).
#[no_mangle]
pub extern "C" fn utp_setsockopt(s: *mut utp_socket, opt: c_int, val: c_int) -> c_int {
    guard(-1, || {
        let (s, ctx) = try_or!(Socket::from_ptr(s), -1);
        let bytes = Some(val.max(1) as usize);
        let (snd, rcv, delay) = match opt {
            UTP_SNDBUF => {
                s.sndbuf.set(val);
                (bytes, None, None)
            }
            UTP_RCVBUF => {
                s.rcvbuf.set(val);
                (None, bytes, None)
            }
            UTP_TARGET_DELAY => {
                s.target_delay.set(val);
                (
                    None,
                    None,
                    Some(if val <= 0 { 100_000 } else { val as u32 }),
                )
            }
            _ => return -1,
        };
        if let Some(h) = s.handle.get() {
            // A connection the engine already forgot simply keeps the stored value.
            let _ = ctx.with_engine(|e| e.set_connection_options(h, snd, rcv, delay));
        }
        0
    })
}

/// Read a socket option; -1 for an unknown option or NULL socket.
#[no_mangle]
pub extern "C" fn utp_getsockopt(s: *mut utp_socket, opt: c_int) -> c_int {
    guard(-1, || {
        let (s, _) = try_or!(Socket::from_ptr(s), -1);
        match opt {
            UTP_SNDBUF => s.sndbuf.get(),
            UTP_RCVBUF => s.rcvbuf.get(),
            UTP_TARGET_DELAY => s.target_delay.get(),
            _ => -1,
        }
    })
}
