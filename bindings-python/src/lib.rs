//! `utp._utp`: the native half of the Python package `utp`.
//!
//! Thin by design: every call maps onto utp-core's handle layer
//! (`ContextHandle`, `StreamHandle`). The Python half (`python/utp/`) builds
//! the standard-library look (socket objects, `makefile`, asyncio streams)
//! on top.
//!
//! Waiting: the GIL is released for every wait, and waits run in slices of
//! at most 50 ms with `check_signals` between them, so Ctrl-C interrupts a
//! blocking `recv`, `accept` or `connect` promptly. Nothing here ever runs
//! Python code on the I/O thread.
//!
//! Errors: `OSError(errno, message)`, which Python turns into the matching
//! subclass (`ConnectionRefusedError`, `ConnectionResetError`,
//! `TimeoutError`, `BrokenPipeError`, `BlockingIOError`, ...) with `errno`
//! set; the errno comes from utp-core's one mapping (`errno_of`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PySlice};

use utp_core::runtime::error::errno_of;
use utp_core::runtime::{ContextHandle, Interest, RuntimeConfig, StreamHandle, UtpContext, Wait};

/// Longest uninterrupted wait: Ctrl-C is noticed at least this often.
const SLICE: Duration = Duration::from_millis(50);

fn os_error(e: &io::Error) -> PyErr {
    let errno = errno_of(e);
    PyOSError::new_err((errno, e.to_string()))
}

fn errno_error(errno: i32, msg: &str) -> PyErr {
    PyOSError::new_err((errno, msg.to_string()))
}

fn timed_out() -> PyErr {
    errno_error(libc_etimedout(), "timed out")
}

fn libc_etimedout() -> i32 {
    // The value Linux uses; kept here so the crate needs no libc.
    110
}

const EBADF: i32 = 9;
const EAGAIN: i32 = 11;

/// `timeout` as the socket module takes it: `None` blocks, `0` never
/// blocks, a positive number of seconds bounds the wait.
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Option<Instant>>> {
    match timeout {
        None => Ok(Some(None)),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(0.0) => Ok(None),
        Some(t) => {
            let d = Duration::try_from_secs_f64(t).unwrap_or(Duration::from_secs(u32::MAX as u64));
            let now = Instant::now();
            Ok(Some(Some(
                now.checked_add(d)
                    .unwrap_or(now + Duration::from_secs(u32::MAX as u64)),
            )))
        }
    }
}

/// Runs a handle operation the way the socket module waits: in slices with
/// the GIL released and signals checked in between. `failed` tells a
/// connection that failed (whose errors must be raised) from a slice that
/// merely ran out.
fn wait_op<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    op: impl Fn(Wait) -> io::Result<T> + Sync,
    failed: impl Fn() -> Option<io::Error>,
) -> PyResult<T> {
    let Some(deadline) = deadline_of(timeout)? else {
        return match op(Wait::NonBlocking) {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(errno_error(EAGAIN, "Resource temporarily unavailable"))
            }
            Err(e) => Err(os_error(&e)),
        };
    };
    loop {
        let now = Instant::now();
        let slice_end = match deadline {
            Some(d) if d <= now => return Err(timed_out()),
            Some(d) => d.min(now + SLICE),
            None => now + SLICE,
        };
        match py.allow_threads(|| op(Wait::Until(slice_end))) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                if let Some(real) = failed() {
                    return Err(os_error(&real));
                }
                py.check_signals()?;
            }
            Err(e) => return Err(os_error(&e)),
        }
    }
}

fn parse_addr(host: &str, port: u16) -> PyResult<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| PyValueError::new_err(format!("not a numeric IP address: {host:?}")))?;
    Ok(SocketAddr::new(ip, port))
}

fn addr_tuple(a: SocketAddr) -> (String, u16) {
    (a.ip().to_string(), a.port())
}

/// Handles let go by Python (garbage collection, interpreter exit) are
/// dropped on a thread of their own: dropping the last handle of a context
/// waits until its data is delivered, which must neither hold the GIL nor
/// hold up the collector. `wait_for_delivery` waits for them at exit.
static PENDING_DROPS: Mutex<usize> = Mutex::new(0);
static DROPS_DONE: Condvar = Condvar::new();
static DROP_THREADS: AtomicUsize = AtomicUsize::new(0);

fn drop_in_background<T: Send + 'static>(value: T) {
    *PENDING_DROPS.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let finish = || {
        let mut n = PENDING_DROPS.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        DROPS_DONE.notify_all();
    };
    DROP_THREADS.fetch_add(1, Ordering::Relaxed);
    let spawned = std::thread::Builder::new()
        .name("utp-py-close".into())
        .spawn(move || {
            drop(value);
            finish();
        });
    if spawned.is_err() {
        // No thread to be had: the value was dropped with the closure.
        let mut n = PENDING_DROPS.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        DROPS_DONE.notify_all();
    }
}

/// Waits (GIL released) until every closed context has delivered what was
/// written, or `timeout` seconds passed. True when all were delivered.
#[pyfunction]
fn wait_for_delivery(py: Python<'_>, timeout: f64) -> bool {
    let limit = Duration::try_from_secs_f64(timeout.max(0.0)).unwrap_or(Duration::from_secs(3600));
    py.allow_threads(|| {
        let deadline = Instant::now() + limit;
        let mut n = PENDING_DROPS.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = DROPS_DONE
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    })
}

/// One UDP port with its I/O thread: listens and connects.
#[pyclass(module = "utp._utp", name = "Context", frozen)]
struct PyContext {
    handle: Option<Arc<ContextHandle>>,
}

impl Drop for PyContext {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop_in_background(h);
        }
    }
}

#[pymethods]
impl PyContext {
    /// Binds `host:port` (numeric IP). `backlog` connections may wait for
    /// `accept` (0: refuse incoming connections).
    #[new]
    #[pyo3(signature = (host, port, backlog = 128, linger = None))]
    fn new(
        py: Python<'_>,
        host: &str,
        port: u16,
        backlog: usize,
        linger: Option<f64>,
    ) -> PyResult<Self> {
        let addr = parse_addr(host, port)?;
        let mut config = RuntimeConfig {
            backlog,
            ..RuntimeConfig::default()
        };
        if backlog == 0 {
            config.endpoint.accept_incoming = false;
        }
        if let Some(l) = linger {
            if !(l >= 0.0 && l.is_finite()) {
                return Err(PyValueError::new_err(
                    "linger must be a non-negative number",
                ));
            }
            config.endpoint.linger_us = (l * 1e6) as u64;
        }
        let ctx = py
            .allow_threads(|| UtpContext::bind_with_config(addr, config))
            .map_err(|e| os_error(&e))?;
        Ok(PyContext {
            handle: Some(ctx.handle().clone()),
        })
    }

    /// `(host, port)` the UDP socket is bound to.
    fn local_address(&self) -> (String, u16) {
        addr_tuple(self.h().local_addr())
    }

    /// Connects from this port and waits for the handshake.
    #[pyo3(signature = (host, port, timeout = None))]
    fn connect(
        &self,
        py: Python<'_>,
        host: &str,
        port: u16,
        timeout: Option<f64>,
    ) -> PyResult<PyStream> {
        let addr = parse_addr(host, port)?;
        let handle = self.h().start_connect(addr).map_err(|e| os_error(&e))?;
        let timeout = match timeout {
            Some(0.0) => None, // a connect always waits
            t => t,
        };
        wait_op(
            py,
            timeout,
            |w| handle.wait_connected(w),
            || handle.take_error(),
        )?;
        Ok(PyStream::new(handle))
    }

    /// Starts connecting and returns at once; the stream's readiness tells
    /// when it is connected or failed.
    fn start_connect(&self, host: &str, port: u16) -> PyResult<PyStream> {
        let addr = parse_addr(host, port)?;
        let handle = self.h().start_connect(addr).map_err(|e| os_error(&e))?;
        Ok(PyStream::new(handle))
    }

    /// The next incoming connection and its peer address.
    #[pyo3(signature = (timeout = None))]
    fn accept(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<(PyStream, (String, u16))> {
        let h = wait_op(
            py,
            timeout,
            |w| {
                let t = match w {
                    Wait::NonBlocking => Some(Duration::ZERO),
                    Wait::Until(d) => Some(
                        d.saturating_duration_since(Instant::now())
                            .max(Duration::from_nanos(1)),
                    ),
                    Wait::Forever => None,
                };
                self.h().accept(t)
            },
            || None,
        )?;
        let peer = addr_tuple(h.peer_addr());
        Ok((PyStream::new(h), peer))
    }

    /// A descriptor that polls readable while a connection waits for
    /// `accept` (level-triggered; owned by the context, do not close it).
    fn fileno(&self) -> PyResult<i32> {
        self.h()
            .poll_fd(Interest::ACCEPTABLE)
            .map_err(|e| os_error(&e))
    }

    /// Accept incoming connections or ignore them.
    fn set_accepting(&self, accepting: bool) {
        self.h().set_accepting(accepting);
    }

    /// Stops accepting (later `accept` calls fail with EBADF).
    fn close(&self) {
        self.h().close();
    }
}

impl PyContext {
    fn h(&self) -> &Arc<ContextHandle> {
        self.handle.as_ref().expect("present until dropped")
    }
}

/// One uTP connection.
#[pyclass(module = "utp._utp", name = "Stream", frozen)]
struct PyStream {
    handle: Option<StreamHandle>,
}

impl Drop for PyStream {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            drop_in_background(h);
        }
    }
}

impl PyStream {
    fn new(handle: StreamHandle) -> PyStream {
        PyStream {
            handle: Some(handle),
        }
    }

    fn h(&self) -> &StreamHandle {
        self.handle.as_ref().expect("present until dropped")
    }

    fn failed(&self) -> Option<io::Error> {
        self.h().take_error()
    }
}

#[pymethods]
impl PyStream {
    /// Up to `n` bytes; `b""` at end of stream.
    #[pyo3(signature = (n, timeout = None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        n: isize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        if n < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv"));
        }
        // A cap keeps an absurd request from allocating gigabytes up front.
        let n = (n as usize).min(16 << 20);
        let mut buf = vec![0u8; n];
        let read = {
            let buf_ptr = buf.as_mut_ptr() as usize;
            let len = buf.len();
            wait_op(
                py,
                timeout,
                |w| {
                    // SAFETY: `buf` outlives this call and nothing else
                    // touches it while the GIL is released.
                    let slice = unsafe { std::slice::from_raw_parts_mut(buf_ptr as *mut u8, len) };
                    self.h().read(slice, w)
                },
                || self.failed(),
            )?
        };
        Ok(PyBytes::new(py, &buf[..read]))
    }

    /// Reads into a writable buffer (`bytearray`, `memoryview`, ...); returns
    /// the count (0 at end of stream). A `bytearray` is filled in place;
    /// other buffers get a copy.
    #[pyo3(signature = (buffer, nbytes = 0, timeout = None))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        if nbytes < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv_into"));
        }
        let cap = buffer.len()?;
        let len = if nbytes == 0 { cap } else { nbytes as usize };
        if len > cap {
            return Err(PyValueError::new_err(
                "buffer too small for requested bytes",
            ));
        }
        if len == 0 {
            return Ok(0);
        }
        if let Ok(ba) = buffer.downcast::<PyByteArray>() {
            // Copy with the GIL held (nothing can resize the bytearray
            // meanwhile); wait with it released only when nothing is there.
            // Another thread may take the bytes between the wait and the
            // read: then wait again rather than report end of stream.
            loop {
                // SAFETY: the GIL is held and no Python code runs until the read returns.
                let dst = unsafe { &mut ba.as_bytes_mut()[..len] };
                match self.h().read(dst, Wait::NonBlocking) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Ok(n) => return Ok(n),
                    Err(e) => return Err(os_error(&e)),
                }
                wait_op(
                    py,
                    timeout,
                    |w| self.h().wait(Interest::READABLE, w).map(|_| ()),
                    || None,
                )?;
            }
        }
        let data = self.recv(py, len as isize, timeout)?;
        let n = data.len()?;
        buffer.set_item(PySlice::new(py, 0, n as isize, 1), data)?;
        Ok(n)
    }

    /// Queues what fits now (waiting for room if none); returns the count.
    #[pyo3(signature = (data, timeout = None))]
    fn send(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
        timeout: Option<f64>,
    ) -> PyResult<usize> {
        // `bytes` are immutable and kept alive by `data`: safe to read with
        // the GIL released.
        let bytes = data.as_bytes();
        let (ptr, len) = (bytes.as_ptr() as usize, bytes.len());
        wait_op(
            py,
            timeout,
            |w| {
                // SAFETY: see above.
                let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                self.h().write(bytes, w)
            },
            || self.failed(),
        )
    }

    /// Queues all of `data`, waiting for room as needed.
    #[pyo3(signature = (data, timeout = None))]
    fn sendall(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyBytes>,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let bytes = data.as_bytes();
        let (ptr, len) = (bytes.as_ptr() as usize, bytes.len());
        let deadline = deadline_of(timeout)?;
        let mut off = 0;
        while off < len {
            // SAFETY: immutable `bytes`, alive while `data` is.
            let rest =
                unsafe { std::slice::from_raw_parts((ptr as *const u8).add(off), len - off) };
            let left = match deadline {
                None => Some(0.0),
                Some(None) => None,
                Some(Some(d)) => {
                    let l = d.saturating_duration_since(Instant::now()).as_secs_f64();
                    if l <= 0.0 {
                        return Err(timed_out());
                    }
                    Some(l)
                }
            };
            off += wait_op(py, left, |w| self.h().write(rest, w), || self.failed())?;
        }
        Ok(())
    }

    /// `how`: 0 reading, 1 writing (FIN after queued data), 2 both.
    fn shutdown(&self, how: i32) -> PyResult<()> {
        let r = match how {
            0 => self.h().shutdown_read(),
            1 => self.h().shutdown_write(),
            2 => self
                .h()
                .shutdown_write()
                .and_then(|_| self.h().shutdown_read()),
            _ => {
                return Err(PyValueError::new_err(
                    "how must be SHUT_RD, SHUT_WR or SHUT_RDWR",
                ))
            }
        };
        r.map_err(|e| os_error(&e))
    }

    /// Closes; with a `timeout`, first waits until the peer acknowledged
    /// every byte written (raising if that fails or takes too long).
    #[pyo3(signature = (timeout = None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let Some(t) = timeout else {
            self.h()
                .close(Wait::NonBlocking)
                .map_err(|e| os_error(&e))?;
            return Ok(());
        };
        let deadline = deadline_of(Some(t))?.flatten();
        let r = py.allow_threads(|| {
            self.h().close(match deadline {
                Some(d) => Wait::Until(d),
                None => Wait::NonBlocking,
            })
        });
        r.map_err(|e| os_error(&e))
    }

    /// Closes at once with a RESET; queued data is dropped.
    fn abort(&self) {
        self.h().abort();
    }

    fn peer_address(&self) -> (String, u16) {
        addr_tuple(self.h().peer_addr())
    }

    fn local_address(&self) -> (String, u16) {
        addr_tuple(self.h().local_addr())
    }

    /// The pollable descriptor, polling for `interest` (bits of
    /// `Interest`: 1 readable, 2 writable, 4 closed). Level-triggered.
    #[pyo3(signature = (interest = 5))]
    fn fileno(&self, interest: u8) -> PyResult<i32> {
        self.h()
            .poll_fd(Interest::from_bits(interest))
            .map_err(|e| os_error(&e))
    }

    /// Readiness bits: 1 readable, 2 writable, 4 eof, 8 error,
    /// 16 connected, 32 closed.
    fn readiness(&self) -> u8 {
        let r = self.h().readiness();
        (r.readable as u8)
            | (r.writable as u8) << 1
            | (r.eof as u8) << 2
            | (r.error as u8) << 3
            | (r.connected as u8) << 4
            | (r.closed as u8) << 5
    }

    fn is_connecting(&self) -> bool {
        self.h().is_connecting()
    }

    /// The connection's error as an `OSError`, or `None`.
    fn error(&self) -> Option<PyErr> {
        self.h().take_error().map(|e| os_error(&e))
    }

    fn set_send_low_water(&self, bytes: usize) {
        self.h().set_send_low_water(bytes);
    }

    fn queued_send_bytes(&self) -> usize {
        self.h().queued_send_bytes()
    }

    fn buffered_recv_bytes(&self) -> usize {
        self.h().buffered_recv_bytes()
    }

    /// The engine's statistics as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.h().stats().map_err(|e| os_error(&e))?;
        let d = PyDict::new(py);
        d.set_item("bytes_sent", s.bytes_sent)?;
        d.set_item("bytes_received", s.bytes_received)?;
        d.set_item("packets_sent", s.packets_sent)?;
        d.set_item("packets_received", s.packets_received)?;
        d.set_item("timeout_retransmits", s.timeout_retransmits)?;
        d.set_item("fast_retransmits", s.fast_retransmits)?;
        d.set_item("duplicates_received", s.duplicates_received)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("rtt_us", s.rtt_us)?;
        d.set_item("rttvar_us", s.rttvar_us)?;
        d.set_item("rto_us", s.rto_us)?;
        d.set_item("cwnd", s.cwnd)?;
        d.set_item("peer_window", s.peer_window)?;
        d.set_item("bytes_in_flight", s.bytes_in_flight)?;
        d.set_item("our_delay_us", s.our_delay_us)?;
        d.set_item("their_delay_us", s.their_delay_us)?;
        d.set_item("base_delay_us", s.base_delay_us)?;
        d.set_item("mtu_guess", s.mtu_guess)?;
        Ok(d)
    }
}

/// Errno for "bad file descriptor", for the Python half's closed sockets.
#[pyfunction]
fn ebadf() -> i32 {
    EBADF
}

#[pymodule]
fn _utp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyContext>()?;
    m.add_class::<PyStream>()?;
    m.add_function(wrap_pyfunction!(ebadf, m)?)?;
    m.add_function(wrap_pyfunction!(wait_for_delivery, m)?)?;
    Ok(())
}
