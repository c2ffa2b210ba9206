//! The pollable descriptor of a handle: an `eventfd` that is readable exactly
//! while its handle is ready for what the waiter asked (level-triggered, like
//! a socket in `poll`). Event loops wait on it: asyncio's `loop.add_reader`,
//! libuv's `uv_poll_t`, `poll(2)` in C (`utpt_fd`).
//!
//! Both the I/O thread (after it changed a handle's state) and user threads
//! (after a read, write or accept) call [`Notifier::update`]; the check of the
//! handle's state and the change of the descriptor happen under one mutex, so
//! a wake-up can never be cleared by a thread that looked at an older state.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

/// A level-triggered `eventfd` that polls readable while its handle is
/// ready for the waiter's interest (see the [module docs](self)).
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
    /// The eventfd counter is non-zero (the descriptor polls readable).
    signaled: Mutex<bool>,
}

impl Notifier {
    /// A new descriptor, not readable.
    pub fn new() -> io::Result<Notifier> {
        // SAFETY: plain syscall.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Notifier {
            // SAFETY: `raw` is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            signaled: Mutex::new(false),
        })
    }

    /// True while the descriptor polls readable.
    pub fn is_signaled(&self) -> bool {
        *self.signaled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make the descriptor readable iff `ready()` (evaluated under the lock).
    pub fn update(&self, ready: impl FnOnce() -> bool) {
        let mut signaled = self.signaled.lock().unwrap_or_else(|e| e.into_inner());
        let want = ready();
        if want == *signaled {
            return;
        }
        let mut value: u64 = 1;
        let p = &mut value as *mut u64 as *mut libc::c_void;
        // SAFETY: 8 bytes to/from a live u64 on our own non-blocking eventfd.
        let r = unsafe {
            if want {
                libc::write(self.fd.as_raw_fd(), p, 8)
            } else {
                libc::read(self.fd.as_raw_fd(), p, 8)
            }
        };
        // A failed read means the counter was already 0; a failed write only
        // happens at saturation, where it is readable anyway.
        if r == 8 || !want {
            *signaled = want;
        }
    }
}

impl AsRawFd for Notifier {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
