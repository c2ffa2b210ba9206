//! The threaded runtime and a `std::net`-style socket API.
//!
//! A [`UtpContext`] owns one UDP socket and one I/O thread that drives the
//! sans-IO [`Endpoint`](crate::endpoint::Endpoint). Many connections share
//! it, incoming and outgoing alike, on the same UDP port:
//!
//! ```
//! use std::io::{Read, Write};
//! use utp_core::runtime::{UtpContext, UtpStream};
//!
//! let ctx = UtpContext::bind("127.0.0.1:0")?;          // listens and connects
//! let addr = ctx.local_addr()?;
//! let client = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut s = UtpStream::connect(addr)?;             // private context
//!     s.write_all(b"hello")?;
//!     Ok(())
//! });
//! let (mut stream, _peer) = ctx.accept()?;
//! let mut buf = Vec::new();
//! stream.read_to_end(&mut buf)?;
//! assert_eq!(buf, b"hello");
//! # client.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Errors are `std::io::Error` with standard kinds: `ConnectionRefused`,
//! `ConnectionReset`, `TimedOut` (also for an expired read/write/connect
//! timeout), `BrokenPipe` (write after shutdown), `WouldBlock`
//! (non-blocking), `InvalidInput`, `NotConnected` (the runtime stopped).
//!
//! Layers: [`udp`] (the socket, batching, ICMP error queue), [`waker`]
//! (eventfd), `driver` (the I/O thread), [`handle`] (thread-safe
//! connection handles that bindings build on).

mod driver;
pub mod error;
pub mod handle;
pub mod notify;
pub mod readiness;
mod timer;
pub mod udp;
pub mod waker;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::stats::ConnectionStats;

pub use handle::{ContextHandle, ExitWatch, ReadinessCallback, RuntimeConfig, StreamHandle, Wait};
pub use readiness::{Interest, Readiness};
pub use udp::SocketOptions;

fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no addresses to use",
        ));
    }
    Ok(addrs)
}

/// Tries `f` on each address, returning the first success or the last error.
fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in resolve(addr)? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to use")))
}

/// One UDP port and its I/O thread: accepts incoming connections and makes
/// outgoing ones from the same port. Cheap to clone (shared).
///
/// Two peers, each on one port, each both connecting and accepting (the
/// BitTorrent pattern):
///
/// ```
/// use std::io::{Read, Write};
/// use utp_core::runtime::UtpContext;
///
/// let a = UtpContext::bind("127.0.0.1:0")?;
/// let b = UtpContext::bind("127.0.0.1:0")?;
/// let b_addr = b.local_addr()?;
/// let mut to_b = a.connect(b_addr)?;               // from a's own port
/// to_b.write_all(b"ping")?;
/// let (mut from_a, peer) = b.accept()?;
/// assert_eq!(peer, a.local_addr()?);              // the same UDP port
/// let mut buf = [0u8; 4];
/// from_a.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
/// from_a.write_all(b"pong")?;
/// to_b.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"pong");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct UtpContext {
    handle: Arc<ContextHandle>,
}

/// The name libutp users look for: a context is "the uTP socket".
pub type UtpSocket = UtpContext;

impl UtpContext {
    /// Binds a context with default settings; it accepts incoming
    /// connections (see [`accept`](Self::accept)).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UtpContext> {
        each_addr(addr, |a| {
            Self::bind_with_config(a, RuntimeConfig::default())
        })
    }

    /// Binds a context with explicit settings.
    pub fn bind_with_config(addr: SocketAddr, config: RuntimeConfig) -> io::Result<UtpContext> {
        Ok(UtpContext {
            handle: driver::start(addr, config)?,
        })
    }

    /// The UDP address the context is bound to, with the actual port when
    /// bound to port 0. Never fails.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.handle.local_addr())
    }

    /// Connects from this context's port (the engine's connect timeout applies).
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<UtpStream> {
        each_addr(addr, |a| {
            self.handle.connect(a, None).map(UtpStream::from_handle)
        })
    }

    /// Connects, giving up after `timeout` with `TimedOut`.
    pub fn connect_timeout(&self, addr: &SocketAddr, timeout: Duration) -> io::Result<UtpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "zero connect timeout",
            ));
        }
        self.handle
            .connect(*addr, Some(timeout))
            .map(UtpStream::from_handle)
    }

    /// Waits for the next incoming connection.
    pub fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        let h = self.handle.accept(None)?;
        let peer = h.peer_addr();
        Ok((UtpStream::from_handle(h), peer))
    }

    /// Waits at most `timeout` for an incoming connection (`TimedOut` after).
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(UtpStream, SocketAddr)> {
        let h = self
            .handle
            .accept(Some(timeout.max(Duration::from_nanos(1))))?;
        let peer = h.peer_addr();
        Ok((UtpStream::from_handle(h), peer))
    }

    /// A listener over this context.
    pub fn listener(&self) -> UtpListener {
        UtpListener {
            ctx: self.clone(),
            nonblocking: Mutex::new(false),
        }
    }

    /// Observes the I/O thread's exit (after the last handle is dropped and
    /// every connection has closed or lingered out).
    pub fn exit_watch(&self) -> ExitWatch {
        self.handle.exit_watch()
    }

    /// The lower-level handle, for bindings.
    pub fn handle(&self) -> &Arc<ContextHandle> {
        &self.handle
    }
}

/// Accepts incoming connections (a [`UtpContext`] seen as a listener), in
/// the manner of [`std::net::TcpListener`].
///
/// The I/O thread answers incoming SYNs and queues the connections (up to
/// [`RuntimeConfig::backlog`]) until [`accept`](Self::accept) takes them. Dropping the listener drops its context handle; the I/O
/// thread ends once no handle is left and every connection has closed.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::Shutdown;
/// use utp_core::runtime::{UtpListener, UtpStream};
///
/// let listener = UtpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// assert_ne!(addr.port(), 0);
///
/// // Server: accept one connection, answer each request with its reverse.
/// let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
///     let (mut stream, _peer) = listener.accept()?;
///     let mut request = Vec::new();
///     stream.read_to_end(&mut request)?; // until the client's FIN
///     let reply: Vec<u8> = request.iter().rev().copied().collect();
///     stream.write_all(&reply)?;
///     stream.close()?; // returns once the client acknowledged the reply
///     Ok(request)
/// });
///
/// let mut client = UtpStream::connect(addr)?;
/// client.write_all(b"ping")?;
/// client.shutdown(Shutdown::Write)?; // FIN: the server's read_to_end ends
/// let mut reply = Vec::new();
/// client.read_to_end(&mut reply)?;
/// assert_eq!(reply, b"gnip");
/// client.close()?;
/// assert_eq!(server.join().unwrap()?, b"ping");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UtpListener {
    ctx: UtpContext,
    nonblocking: Mutex<bool>,
}

impl UtpListener {
    /// Binds a new context and listens on it.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UtpListener> {
        Ok(UtpContext::bind(addr)?.listener())
    }

    /// The UDP address the listener's context is bound to (with the actual
    /// port when bound to port 0). Never fails.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.ctx.local_addr()
    }

    /// Waits for the next connection (`WouldBlock` in non-blocking mode).
    pub fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        if *self.nonblocking.lock() {
            let h = self.ctx.handle.accept(Some(Duration::ZERO))?;
            let peer = h.peer_addr();
            return Ok((UtpStream::from_handle(h), peer));
        }
        self.ctx.accept()
    }

    /// Waits at most `timeout` for a connection (`TimedOut` after), also in
    /// non-blocking mode.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<(UtpStream, SocketAddr)> {
        self.ctx.accept_timeout(timeout)
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// In non-blocking mode [`accept`](Self::accept) (and
    /// [`incoming`](Self::incoming)) return `WouldBlock` instead of waiting.
    /// Affects this listener only, not other handles of the context. Never
    /// fails.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        *self.nonblocking.lock() = nonblocking;
        Ok(())
    }

    /// Runs `cb` on the I/O thread whenever a connection is queued for accept.
    pub fn set_readiness_callback(&self, cb: Option<ReadinessCallback>) {
        self.ctx.handle.set_accept_callback(cb);
    }

    /// The context, to connect from the same port.
    pub fn context(&self) -> &UtpContext {
        &self.ctx
    }
}

/// Iterator returned by [`UtpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UtpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UtpStream>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

#[derive(Debug, Default)]
struct StreamOptions {
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    nonblocking: bool,
}

#[derive(Debug)]
struct StreamInner {
    handle: StreamHandle,
    opts: Mutex<StreamOptions>,
}

/// A uTP connection: a reliable, ordered byte stream. Dropping the last
/// clone closes it gracefully in the background (queued data is still
/// delivered, bounded by the linger time); [`close`](Self::close) waits for
/// that and reports the outcome.
///
/// It implements [`Read`] and [`Write`] (also through `&UtpStream`, so
/// one thread can read while another writes). Reads and writes block
/// unless [`set_nonblocking`](Self::set_nonblocking) or a timeout is set;
/// errors are those listed in the [module documentation](self).
///
/// ```
/// use std::io::{Read, Write};
/// use utp_core::runtime::{UtpContext, UtpStream};
///
/// // An echo server on its own context (UDP port and I/O thread).
/// let server = UtpContext::bind("127.0.0.1:0")?;
/// let addr = server.local_addr()?;
/// let echo = std::thread::spawn(move || -> std::io::Result<()> {
///     let (mut s, _) = server.accept()?;
///     let mut buf = [0u8; 64];
///     let n = s.read(&mut buf)?;
///     s.write_all(&buf[..n])?;
///     s.close()
/// });
///
/// let mut stream = UtpStream::connect(addr)?;
/// assert_eq!(stream.peer_addr()?, addr);
/// stream.write_all(b"hello uTP")?;
/// let mut buf = [0u8; 9];
/// stream.read_exact(&mut buf)?;
/// assert_eq!(&buf, b"hello uTP");
/// echo.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UtpStream {
    inner: Arc<StreamInner>,
}

impl UtpStream {
    fn from_handle(handle: StreamHandle) -> UtpStream {
        UtpStream {
            inner: Arc::new(StreamInner {
                handle,
                opts: Mutex::new(StreamOptions::default()),
            }),
        }
    }

    fn private_context(remote: &SocketAddr) -> io::Result<UtpContext> {
        let local: SocketAddr = if remote.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let mut config = RuntimeConfig::default();
        config.endpoint.accept_incoming = false;
        config.backlog = 0;
        UtpContext::bind_with_config(local, config)
    }

    /// Connects from a private context (its own UDP port and I/O thread).
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<UtpStream> {
        each_addr(addr, |a| Self::private_context(&a)?.connect(a))
    }

    /// Like [`connect`](Self::connect), giving up after `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<UtpStream> {
        Self::private_context(addr)?.connect_timeout(addr, timeout)
    }

    /// The remote address (IPv4-mapped IPv6 addresses appear as IPv4).
    /// Never fails.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.handle.peer_addr())
    }

    /// The local address: the context's port and the source address the
    /// kernel uses towards the peer (never `0.0.0.0` when the context is
    /// bound to a wildcard address). Never fails.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.handle.local_addr())
    }

    /// `Write`: half-close (FIN after queued data; later writes fail with
    /// `BrokenPipe`). `Read`: reads return 0, incoming data is discarded.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match how {
            Shutdown::Write => self.inner.handle.shutdown_write(),
            Shutdown::Read => self.inner.handle.shutdown_read(),
            Shutdown::Both => {
                self.inner.handle.shutdown_write()?;
                self.inner.handle.shutdown_read()
            }
        }
    }

    fn check_timeout(t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        Ok(())
    }

    /// Reads give up with `TimedOut` after this long (`None`: never).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        Self::check_timeout(t)?;
        self.inner.opts.lock().read_timeout = t;
        Ok(())
    }

    /// The read timeout set by [`set_read_timeout`](Self::set_read_timeout)
    /// (`None` by default). Never fails.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts.lock().read_timeout)
    }

    /// Writes give up with `TimedOut` after this long (`None`: never).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        Self::check_timeout(t)?;
        self.inner.opts.lock().write_timeout = t;
        Ok(())
    }

    /// The write timeout set by [`set_write_timeout`](Self::set_write_timeout)
    /// (`None` by default); it also bounds [`close`](Self::close). Never fails.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts.lock().write_timeout)
    }

    /// Non-blocking reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.opts.lock().nonblocking = nonblocking;
        Ok(())
    }

    /// The engine's statistics for this connection (a recent snapshot; never
    /// waits for the I/O thread).
    pub fn stats(&self) -> io::Result<ConnectionStats> {
        self.inner.handle.stats()
    }

    /// Closes gracefully and reports the outcome: `Ok` once the peer has
    /// acknowledged every byte written, else why not (`ConnectionReset`,
    /// `TimedOut`, ...). Waits at most the write timeout, or the engine's
    /// linger time (`EndpointConfig::linger_us`, 30 s by default) when none
    /// is set. Every clone of this stream is closed with it.
    ///
    /// ```
    /// # use std::io::{Read, Write};
    /// # use utp_core::runtime::{UtpListener, UtpStream};
    /// let listener = UtpListener::bind("127.0.0.1:0")?;
    /// let addr = listener.local_addr()?;
    /// let reader = std::thread::spawn(move || {
    ///     let (mut s, _) = listener.accept().unwrap();
    ///     let mut got = Vec::new();
    ///     s.read_to_end(&mut got).unwrap();
    ///     got
    /// });
    /// let mut s = UtpStream::connect(addr)?;
    /// s.write_all(b"last words")?;
    /// s.close()?; // the peer has them now
    /// assert_eq!(reader.join().unwrap(), b"last words");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(self) -> io::Result<()> {
        let linger =
            Duration::from_micros(self.inner.handle.context().shared.config.endpoint.linger_us);
        let limit = self.inner.opts.lock().write_timeout.unwrap_or(linger);
        self.inner
            .handle
            .close(Wait::Until(handle::deadline_after(limit)))
    }

    /// Another handle to the same connection (the connection closes when
    /// the last one is dropped).
    pub fn try_clone(&self) -> io::Result<UtpStream> {
        Ok(UtpStream {
            inner: self.inner.clone(),
        })
    }

    /// Runs `cb` on the I/O thread whenever readiness may have changed.
    pub fn set_readiness_callback(&self, cb: Option<ReadinessCallback>) {
        self.inner.handle.set_readiness_callback(cb);
    }

    /// What a read or write would do now without blocking. Also re-arms
    /// the readiness callback (see [`StreamHandle::set_readiness_callback`]).
    pub fn readiness(&self) -> Readiness {
        self.inner.handle.readiness()
    }

    /// The error the connection failed with (`ConnectionRefused`,
    /// `ConnectionReset`, `TimedOut`), or `NotConnected` when the I/O thread
    /// stopped; `None` while healthy. Unlike `TcpStream::take_error`, it
    /// does not clear the error: later calls report it again.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.inner.handle.take_error())
    }

    /// Observes the I/O thread of this stream's context.
    pub fn exit_watch(&self) -> ExitWatch {
        self.inner.handle.context().exit_watch()
    }

    /// The lower-level handle, for bindings.
    pub fn handle(&self) -> &StreamHandle {
        &self.inner.handle
    }

    fn read_wait(&self) -> Wait {
        let o = self.inner.opts.lock();
        Wait::from_timeout(o.nonblocking, o.read_timeout)
    }

    fn write_wait(&self) -> Wait {
        let o = self.inner.opts.lock();
        Wait::from_timeout(o.nonblocking, o.write_timeout)
    }
}

impl Read for &UtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.handle.read(buf, self.read_wait())
    }
}

impl Write for &UtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.handle.write(buf, self.write_wait())
    }
    /// Waits until everything written was handed to the engine.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.handle.flush(self.write_wait())
    }
}

impl Read for UtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for UtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}
