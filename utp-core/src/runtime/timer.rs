//! The I/O thread's alarm clock: a `timerfd` it polls beside the socket.
//!
//! User threads that drive the engine themselves (a write arms a
//! retransmission timer, a reader leaves the socket to come back to it) can
//! move the alarm earlier with one `timerfd_settime`, without waking the
//! I/O thread: it wakes when the alarm rings, not before.
//!
//! Times are microseconds since the context's epoch, as the engine counts.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Instant;

use parking_lot::Mutex;

/// Not armed.
const NEVER: u64 = u64::MAX;

#[derive(Debug)]
pub(crate) struct Timer {
    fd: OwnedFd,
    /// `CLOCK_MONOTONIC` at the epoch, in nanoseconds.
    epoch_ns: u128,
    epoch: Instant,
    /// When the alarm rings (µs since the epoch), or `NEVER`. Changed only
    /// with the descriptor, under this lock, so the two always agree.
    armed_at: Mutex<u64>,
}

fn monotonic_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

impl Timer {
    pub(crate) fn new() -> io::Result<Timer> {
        // SAFETY: plain syscall.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // Instant is CLOCK_MONOTONIC on Linux: read both back to back.
        let epoch = Instant::now();
        let epoch_ns = monotonic_ns();
        Ok(Timer {
            // SAFETY: a fresh descriptor we own.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            epoch_ns,
            epoch,
            armed_at: Mutex::new(NEVER),
        })
    }

    /// Microseconds since the epoch.
    pub(crate) fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn settime(&self, at_us: u64) {
        let value = if at_us == NEVER {
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        } else {
            // At least 1 ns: a zero value would disarm the timer.
            let ns = (self.epoch_ns + at_us as u128 * 1000).max(1);
            libc::timespec {
                tv_sec: (ns / 1_000_000_000).min(i64::MAX as u128) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            }
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: a valid itimerspec; our own descriptor.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    /// Rings at `at_us` (`None`: never), replacing the previous alarm.
    pub(crate) fn set(&self, at_us: Option<u64>) {
        let at = at_us.unwrap_or(NEVER);
        let mut armed = self.armed_at.lock();
        if *armed != at {
            *armed = at;
            self.settime(at);
        }
    }

    /// Rings no later than `at_us + slack_us`; when it must move, to `at_us`.
    /// (A reader parking every few microseconds re-arms once per `slack_us`.)
    pub(crate) fn ring_within(&self, at_us: u64, slack_us: u64) {
        let mut armed = self.armed_at.lock();
        if at_us.saturating_add(slack_us) < *armed {
            *armed = at_us;
            self.settime(at_us);
        }
    }

    /// Rings no later than `at_us`.
    pub(crate) fn ring_by(&self, at_us: u64) {
        let mut armed = self.armed_at.lock();
        if at_us < *armed {
            *armed = at_us;
            self.settime(at_us);
        }
    }

    /// After waking: consume the ring and forget the alarm (the I/O thread
    /// sets the next one before it sleeps).
    pub(crate) fn reset(&self) {
        let mut armed = self.armed_at.lock();
        let mut expirations: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; non-blocking.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut expirations as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        if *armed != NEVER {
            *armed = NEVER;
            self.settime(NEVER);
        }
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rings_within(t: &Timer, ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: t.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    #[test]
    fn rings_at_the_earliest_requested_time() {
        let t = Timer::new().unwrap();
        assert!(!rings_within(&t, 20));
        t.set(Some(t.now() + 10_000_000));
        t.ring_by(t.now() + 20_000); // earlier: wins
        t.ring_by(t.now() + 5_000_000); // later: ignored
        let start = Instant::now();
        assert!(rings_within(&t, 2000));
        assert!(start.elapsed().as_millis() < 1000);
        t.reset();
        assert!(
            !rings_within(&t, 30),
            "reset consumed the ring and disarmed"
        );
        t.set(None);
        t.ring_by(t.now());
        assert!(rings_within(&t, 1000), "a time already past rings at once");
    }
}
