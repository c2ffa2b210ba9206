//! Calling the application: the callback table of a context, the built-in
//! defaults (clocks, random, MTU, overhead) and the log helper.
//!
//! Every call out happens with no Rust borrow held (see `driver.rs`), so the
//! application may call back into the library from any callback.

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::raw::c_int;

use crate::addr::CAddr;
use crate::context::Context;
use crate::names::*;
use crate::socket::Socket;
use crate::types::{uint64, utp_callback_arguments, CallbackFn};

/// Log categories (the `UTP_LOG_*` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogLevel {
    Normal,
    Mtu,
    Debug,
}

/// `CLOCK_MONOTONIC` in microseconds (libutp's POSIX default clock).
pub(crate) fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return d.as_micros() as u64;
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// libutp's default packet size (UDP payload) by peer family.
pub(crate) fn default_mtu(peer: &SocketAddr) -> u64 {
    if peer.is_ipv4() {
        1402
    } else {
        1232
    }
}

/// libutp's default IP+UDP overhead by peer family.
pub(crate) fn default_overhead(peer: &SocketAddr) -> u64 {
    if peer.is_ipv4() {
        28
    } else {
        76
    }
}

impl Context {
    /// The application's function in slot `id`, if any.
    pub(crate) fn callback(&self, id: c_int) -> Option<CallbackFn> {
        self.callbacks
            .get(usize::try_from(id).ok()?)
            .and_then(|c| c.get())
    }

    pub(crate) fn has_callback(&self, id: c_int) -> bool {
        self.callback(id).is_some()
    }

    /// Call slot `id` if set: `fill` sets the fields that callback uses
    /// (`context`, `socket` and `callback_type` are always set, the rest zero).
    pub(crate) fn invoke(
        &self,
        id: c_int,
        socket: Option<&Socket>,
        fill: impl FnOnce(&mut utp_callback_arguments),
    ) -> Option<uint64> {
        let f = self.callback(id)?;
        let mut args = utp_callback_arguments::zeroed();
        args.context = self.as_ptr();
        args.socket = socket.map_or(std::ptr::null_mut(), |s| s.as_ptr());
        args.callback_type = id;
        fill(&mut args);
        // SAFETY: `f` is the application's callback with libutp's signature;
        // `args` lives for the duration of the call.
        Some(unsafe { f(&mut args) })
    }

    /// Microsecond clock (GET_MICROSECONDS or CLOCK_MONOTONIC), never going backwards.
    pub(crate) fn now_us(&self, socket: Option<&Socket>) -> u64 {
        let v = self
            .invoke(UTP_GET_MICROSECONDS, socket, |_| {})
            .unwrap_or_else(monotonic_us);
        let v = v.max(self.last_us.get());
        self.last_us.set(v);
        v
    }

    /// Millisecond clock (GET_MILLISECONDS or CLOCK_MONOTONIC / 1000), never going backwards.
    pub(crate) fn now_ms(&self, socket: Option<&Socket>) -> u64 {
        let v = self
            .invoke(UTP_GET_MILLISECONDS, socket, |_| {})
            .unwrap_or_else(|| monotonic_us() / 1000);
        let v = v.max(self.last_ms.get());
        self.last_ms.set(v);
        v
    }

    /// GET_RANDOM, or libc `rand()` so that the application's `srand()` counts.
    pub(crate) fn random(&self, socket: Option<&Socket>) -> u32 {
        match self.invoke(UTP_GET_RANDOM, socket, |_| {}) {
            Some(v) => v as u32,
            // SAFETY: rand() has no preconditions.
            None => (unsafe { libc::rand() }) as u32,
        }
    }

    /// GET_UDP_MTU for a peer (result truncated to 16 bits, as libutp does).
    pub(crate) fn udp_mtu(&self, socket: Option<&Socket>, peer: SocketAddr) -> usize {
        let ca = CAddr::new(peer);
        let v = self
            .invoke(UTP_GET_UDP_MTU, socket, |a| {
                a.u1.address = ca.as_ptr();
                a.u2.address_len = ca.len();
            })
            .unwrap_or_else(|| default_mtu(&peer));
        (v as u16) as usize
    }

    /// GET_UDP_OVERHEAD for a peer.
    pub(crate) fn udp_overhead(&self, socket: Option<&Socket>, peer: SocketAddr) -> usize {
        let ca = CAddr::new(peer);
        let v = self
            .invoke(UTP_GET_UDP_OVERHEAD, socket, |a| {
                a.u1.address = ca.as_ptr();
                a.u2.address_len = ca.len();
            })
            .unwrap_or_else(|| default_overhead(&peer));
        (v as u16) as usize
    }

    /// Emit a log line through UTP_LOG if that category is enabled.
    /// Socket lines get libutp's prefix: socket pointer, peer and receive id.
    pub(crate) fn log(
        &self,
        level: LogLevel,
        socket: Option<&Socket>,
        msg: impl FnOnce() -> String,
    ) {
        let o = self.opts.get();
        let on = match level {
            LogLevel::Normal => o.log_normal,
            LogLevel::Mtu => o.log_mtu,
            LogLevel::Debug => o.log_debug,
        };
        if !on || !self.has_callback(UTP_LOG) {
            return;
        }
        let mut text = match socket {
            Some(s) => {
                let peer = match s.peer.get() {
                    Some(SocketAddr::V6(a)) => format!("[{}]:{}", a.ip(), a.port()),
                    Some(a) => a.to_string(),
                    None => "?".to_string(),
                };
                format!("{:p} {} {:06} {}", s.as_ptr(), peer, s.recv_id.get(), msg())
            }
            None => msg(),
        };
        text.retain(|c| c != '\0');
        while text.len() > 4095 {
            text.pop();
        }
        let Ok(c) = CString::new(text) else {
            return;
        };
        self.invoke(UTP_LOG, socket, |a| {
            a.buf = c.as_ptr() as *const u8;
        });
    }
}
