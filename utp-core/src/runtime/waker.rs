//! Waking the I/O thread out of `poll` from other threads: an `eventfd`.
//!
//! Wake-ups are coalesced: a flag records that one is already on its way, so
//! a burst of commands costs a single `write(2)`. The I/O thread calls
//! [`Waker::reset`] after `poll` reports the eventfd readable and *before*
//! draining its command queue, so a command pushed concurrently is either
//! seen by that drain or triggers a fresh wake-up.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// An `eventfd` the I/O thread polls next to its UDP socket; other threads
/// [`wake`](Self::wake) it after queueing a command.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    /// A new non-blocking, close-on-exec eventfd, not readable. Fails with
    /// the OS error of `eventfd(2)` (e.g. `EMFILE`).
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: `raw` is a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            pending: AtomicBool::new(false),
        })
    }

    /// Makes the eventfd readable (once per burst).
    pub fn wake(&self) {
        if self.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        let one: u64 = 1;
        loop {
            // SAFETY: writes 8 bytes from a live u64.
            let r = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
            if r >= 0 {
                return;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                // Counter saturated: it is readable anyway.
                _ => return,
            }
        }
    }

    /// Consumes the wake-up; call before draining the command queue.
    pub fn reset(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut value as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn readable(w: &Waker, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: w.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        p.revents & libc::POLLIN != 0
    }

    #[test]
    fn wake_makes_readable_and_reset_clears() {
        let w = Waker::new().unwrap();
        assert!(!readable(&w, 0));
        w.wake();
        w.wake();
        assert!(readable(&w, 0));
        w.reset();
        assert!(!readable(&w, 0));
        w.wake();
        assert!(readable(&w, 0));
    }

    #[test]
    fn wakes_a_thread_blocked_in_poll() {
        let w = Arc::new(Waker::new().unwrap());
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let r = readable(&w2, 5000);
            (r, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        w.wake();
        let (r, waited) = t.join().unwrap();
        assert!(r);
        assert!(waited < Duration::from_secs(2));
    }
}
