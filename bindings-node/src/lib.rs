//! The native half of the Node.js package: utp-core's handle layer as
//! Node-API classes. The JavaScript half (`index.js`) builds `net`-style
//! Duplex streams and a utp-native compatible API on top.
//!
//! Readiness reaches JavaScript through one thread-safe function for the
//! whole process, fed by the handle layer's coalesced readiness callbacks:
//! a handle whose readiness may have changed puts its id on a queue (at most
//! once until JavaScript looks at its `readiness()` again), and the first id
//! on an empty queue wakes JavaScript, which drains the queue in order. So
//! the event loop's work never grows with the packet rate, and events of
//! different handles arrive in the order they happened. All calls from
//! JavaScript are non-blocking.
//!
//! Errors that JavaScript must branch on come back as values (`-errno`,
//! `error()`); thrown errors carry the code at the front of the message
//! (`"EADDRINUSE: ..."`), which `index.js` turns into `err.code`.

// Node-API classes hold thread-safe functions, which have no `Debug`.
#![allow(missing_debug_implementations)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ErrorStrategy, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsFunction, JsUnknown};
use napi_derive::napi;

mod uv_input;
use uv_input::EventLoopInput;

use utp_core::runtime::error::{errno_name, errno_of};
use utp_core::runtime::{
    ContextHandle, ExitWatch, Interest, RuntimeConfig, StreamHandle, UtpContext, Wait,
};

type Notify = ThreadsafeFunction<(), ErrorStrategy::Fatal>;

/// Handles whose readiness may have changed, in order, and the function
/// that wakes JavaScript to look at them.
struct Dispatch {
    wake: Option<Notify>,
    ready: Vec<u32>,
}

static DISPATCH: Mutex<Dispatch> = Mutex::new(Dispatch {
    wake: None,
    ready: Vec::new(),
});
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn dispatch() -> std::sync::MutexGuard<'static, Dispatch> {
    DISPATCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs on the I/O thread: queue `id`, wake JavaScript if the queue was empty.
fn mark_ready(id: u32) {
    let mut d = dispatch();
    let first = d.ready.is_empty();
    d.ready.push(id);
    if first {
        if let Some(w) = d.wake.as_ref() {
            w.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Registers the function JavaScript runs to drain the ready queue
/// (`takeReady()`). It does not keep the process alive until
/// `dispatcherRef()`.
#[napi]
pub fn set_dispatcher(env: Env, callback: JsFunction) -> Result<()> {
    let mut tsfn: Notify =
        callback.create_threadsafe_function(0, |_ctx| Ok(Vec::<JsUnknown>::new()))?;
    tsfn.unref(&env)?;
    dispatch().wake = Some(tsfn);
    Ok(())
}

/// The ids of handles to look at, oldest first (the queue is emptied).
#[napi]
pub fn take_ready() -> Vec<u32> {
    std::mem::take(&mut dispatch().ready)
}

/// Keep the process alive while sockets are open (JavaScript counts them).
#[napi]
pub fn dispatcher_ref(env: Env) -> Result<()> {
    if let Some(w) = dispatch().wake.as_mut() {
        w.refer(&env)?;
    }
    Ok(())
}

/// Let the process exit (no open, referenced socket left).
#[napi]
pub fn dispatcher_unref(env: Env) -> Result<()> {
    if let Some(w) = dispatch().wake.as_mut() {
        w.unref(&env)?;
    }
    Ok(())
}

fn code_error(e: &std::io::Error) -> Error {
    Error::new(
        Status::GenericFailure,
        format!("{}: {}", errno_name(errno_of(e)), e),
    )
}

fn invalid(msg: &str) -> Error {
    Error::new(Status::InvalidArg, format!("EINVAL: {msg}"))
}

fn parse_addr(host: &str, port: u32) -> Result<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| invalid(&format!("not a numeric IP address: {host:?}")))?;
    let port = u16::try_from(port).map_err(|_| invalid("port out of range"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Drops a handle away from the event loop thread: the last handle of a
/// context waits for its data to be delivered.
fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("utp-node-close".into())
        .spawn(move || drop(value));
}

/// An address as JavaScript sees it.
#[napi(object)]
pub struct Address {
    pub address: String,
    pub port: u32,
    pub family: String,
}

fn address(a: SocketAddr) -> Address {
    Address {
        address: a.ip().to_string(),
        port: a.port() as u32,
        family: if a.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
    }
}

/// A datagram that was not uTP.
#[napi(object)]
pub struct Datagram {
    pub data: Buffer,
    pub address: String,
    pub port: u32,
    pub family: String,
}

/// Why a connection failed: `code` is `ECONNREFUSED`, `ECONNRESET`,
/// `ETIMEDOUT`, ...
#[napi(object)]
pub struct ErrorInfo {
    pub code: String,
    pub errno: i32,
    pub message: String,
}

/// One UDP port with its I/O thread.
#[napi]
pub struct Context {
    handle: Option<Arc<ContextHandle>>,
    /// The socket's datagrams are received on Node's event loop.
    input: Option<EventLoopInput>,
    /// Tells when the I/O thread is gone (the port no longer answers).
    exit: ExitWatch,
    id: u32,
}

impl Context {
    fn h(&self) -> Result<&Arc<ContextHandle>> {
        self.handle
            .as_ref()
            .ok_or_else(|| Error::new(Status::GenericFailure, "EBADF: context released"))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if let Some(i) = self.input.take() {
            i.stop();
        }
        if let Some(h) = self.handle.take() {
            h.set_accept_callback(None);
            drop_in_background(h);
        }
    }
}

#[napi]
impl Context {
    /// Binds `host:port` (numeric IP; port 0 picks one). `backlog` 0 refuses
    /// incoming connections. `libutp` true behaves as utp-native (libutp
    /// over libuv) does: ICMP port unreachable is ignored (such connections
    /// time out), and a closed connection is forgotten once our FIN is
    /// acknowledged.
    #[napi(constructor)]
    pub fn new(
        env: Env,
        host: String,
        port: u32,
        backlog: u32,
        libutp: Option<bool>,
    ) -> Result<Self> {
        let libutp = libutp.unwrap_or(false);
        let addr = parse_addr(&host, port)?;
        let mut config = RuntimeConfig {
            backlog: backlog as usize,
            // The event loop must never block: JavaScript closes sockets
            // explicitly and keeps the process alive until they finish.
            linger_on_drop: false,
            icmp_unreachable: !libutp,
            ..RuntimeConfig::default()
        };
        config.endpoint.close_on_fin_acked = libutp;
        if libutp {
            // libutp keeps acknowledging data after close and has no idle
            // limit.
            config.endpoint.reset_data_after_close = false;
            config.endpoint.idle_timeout_us = 0;
            // Nor does a libutp client send anything before the application
            // writes (the empty DATA would reach a server that may already
            // have closed the half-open connection, and draw a RESET).
            config.endpoint.announce_on_connect = false;
        }
        if backlog == 0 {
            config.endpoint.accept_incoming = false;
        }
        let ctx = UtpContext::bind_with_config(addr, config).map_err(|e| code_error(&e))?;
        let input = EventLoopInput::start(&env, ctx.handle());
        Ok(Context {
            input,
            handle: Some(ctx.handle().clone()),
            exit: ctx.exit_watch(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    #[napi]
    pub fn local_address(&self) -> Result<Address> {
        Ok(address(self.h()?.local_addr()))
    }

    /// Starts a connection (non-blocking); the stream's readiness reports
    /// connected or failed.
    #[napi]
    pub fn connect(&self, host: String, port: u32) -> Result<Stream> {
        let addr = parse_addr(&host, port)?;
        let h = self.h()?.start_connect(addr).map_err(|e| code_error(&e))?;
        Ok(Stream::new(h))
    }

    /// The next incoming connection, or `null`.
    #[napi]
    pub fn accept(&self) -> Result<Option<Stream>> {
        match self.h()?.accept(Some(std::time::Duration::ZERO)) {
            Ok(h) => Ok(Some(Stream::new(h))),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if errno_of(&e) == 9 => Ok(None), // closed listener
            Err(e) => Err(code_error(&e)),
        }
    }

    #[napi]
    pub fn set_accepting(&self, accepting: bool) -> Result<()> {
        self.h()?.set_accepting(accepting);
        Ok(())
    }

    /// Queue non-uTP datagrams for `recvDatagram` (default off).
    #[napi]
    pub fn set_datagrams(&self, on: bool) -> Result<()> {
        self.h()?.set_datagram_queue(on);
        Ok(())
    }

    #[napi]
    pub fn recv_datagram(&self) -> Result<Option<Datagram>> {
        Ok(self.h()?.try_recv_datagram().map(|(data, from)| Datagram {
            data: data.into(),
            address: from.ip().to_string(),
            port: from.port() as u32,
            family: if from.is_ipv4() { "IPv4" } else { "IPv6" }.to_string(),
        }))
    }

    /// Sends a plain UDP datagram from this port.
    #[napi]
    pub fn send_datagram(&self, data: Buffer, port: u32, host: String) -> Result<u32> {
        let to = parse_addr(&host, port)?;
        self.h()?
            .send_datagram(&data, to)
            .map(|n| n as u32)
            .map_err(|e| code_error(&e))
    }

    /// This context's id in the ready queue.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Puts this context on the ready queue (coalesced) when a connection or
    /// datagram waits. Re-armed by `accept()`, `acceptReady()` and
    /// `recvDatagram()`.
    #[napi]
    pub fn watch(&self) -> Result<()> {
        let id = self.id;
        self.h()?
            .set_accept_callback(Some(Box::new(move || mark_ready(id))));
        Ok(())
    }

    #[napi]
    pub fn accept_ready(&self) -> Result<bool> {
        Ok(self.h()?.accept_ready())
    }

    /// Stops accepting; connections made stay open.
    #[napi]
    pub fn close(&mut self) -> Result<()> {
        if let Some(h) = self.handle.as_ref() {
            h.close();
            h.set_accept_callback(None);
        }
        Ok(())
    }

    /// True once the context's I/O thread has exited and its port is closed
    /// (after `release()` and the end of its connections).
    #[napi]
    pub fn has_exited(&self) -> bool {
        self.exit.has_exited()
    }

    /// Lets go of the context (the port is freed once its connections end).
    #[napi]
    pub fn release(&mut self) -> Result<()> {
        self.close()?;
        // Its connections may live on: the I/O thread receives for them.
        if let Some(i) = self.input.take() {
            i.stop();
        }
        if let Some(h) = self.handle.take() {
            drop_in_background(h);
        }
        Ok(())
    }
}

/// One uTP connection.
#[napi]
pub struct Stream {
    handle: Option<StreamHandle>,
    id: u32,
}

impl Stream {
    fn new(h: StreamHandle) -> Stream {
        Stream {
            handle: Some(h),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn h(&self) -> Result<&StreamHandle> {
        self.handle
            .as_ref()
            .ok_or_else(|| Error::new(Status::GenericFailure, "EBADF: stream released"))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.set_readiness_callback(None);
            drop_in_background(h);
        }
    }
}

#[napi]
impl Stream {
    /// Up to `max` bytes: a Buffer, an empty Buffer at end of stream, or
    /// `null` when nothing is there (or the stream failed: see `error()`).
    #[napi]
    pub fn read(&self, max: u32) -> Result<Option<Buffer>> {
        let h = self.h()?;
        // Read into one reused scratch buffer and hand JavaScript an exact
        // copy: a fresh `max`-sized allocation per read (256 KiB, for a
        // 64-byte message) cost an mmap, page faults, and garbage that
        // lives until V8 collects it.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let want = (max as usize).clamp(1, 4 << 20);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < want {
                s.resize(want, 0);
            }
            match h.read(&mut s[..want], Wait::NonBlocking) {
                Ok(n) => Ok(Some(s[..n].to_vec().into())),
                Err(_) => Ok(None),
            }
        })
    }

    /// Queues what fits of `data`: the count taken (0 when full), or
    /// `-errno` (EPIPE after shutdown, ECONNRESET, ...).
    #[napi]
    pub fn write(&self, data: Buffer) -> Result<i64> {
        let h = self.h()?;
        if data.is_empty() {
            return Ok(0);
        }
        match h.write(&data, Wait::NonBlocking) {
            Ok(n) => Ok(n as i64),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Ok(-(errno_of(&e) as i64)),
        }
    }

    /// FIN after the queued data.
    #[napi]
    pub fn shutdown(&self) -> Result<()> {
        self.h()?.shutdown_write().map_err(|e| code_error(&e))
    }

    /// Stop reading: incoming data is discarded.
    #[napi]
    pub fn shutdown_read(&self) -> Result<()> {
        self.h()?.shutdown_read().map_err(|e| code_error(&e))
    }

    /// Graceful close in the background: queued data is still delivered.
    #[napi]
    pub fn close(&mut self) -> Result<()> {
        if let Some(h) = self.handle.take() {
            h.set_readiness_callback(None);
            let _ = h.close(Wait::NonBlocking);
            drop_in_background(h);
        }
        Ok(())
    }

    /// Abortive close: RESET now, queued data dropped.
    #[napi]
    pub fn abort(&mut self) -> Result<()> {
        if let Some(h) = self.handle.take() {
            h.set_readiness_callback(None);
            h.abort();
            drop_in_background(h);
        }
        Ok(())
    }

    /// Readiness bits: 1 readable, 2 writable, 4 eof, 8 error,
    /// 16 connected, 32 closed, 64 finished (our FIN acknowledged).
    /// Re-arms the `onReady` callback.
    #[napi]
    pub fn readiness(&self) -> Result<u32> {
        let r = self.h()?.readiness();
        Ok((r.readable as u32)
            | (r.writable as u32) << 1
            | (r.eof as u32) << 2
            | (r.error as u32) << 3
            | (r.connected as u32) << 4
            | (r.closed as u32) << 5
            | (r.finished as u32) << 6)
    }

    /// Why the connection failed, or `null`.
    #[napi]
    pub fn error(&self) -> Result<Option<ErrorInfo>> {
        Ok(self.h()?.take_error().map(|e| {
            let errno = errno_of(&e);
            ErrorInfo {
                code: errno_name(errno).to_string(),
                errno,
                message: e.to_string(),
            }
        }))
    }

    /// This stream's id in the ready queue.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Puts this stream on the ready queue (coalesced) whenever its
    /// readiness may have changed.
    #[napi]
    pub fn watch(&self) -> Result<()> {
        let id = self.id;
        self.h()?
            .set_readiness_callback(Some(Box::new(move || mark_ready(id))));
        Ok(())
    }

    #[napi]
    pub fn peer_address(&self) -> Result<Address> {
        Ok(address(self.h()?.peer_addr()))
    }

    #[napi]
    pub fn local_address(&self) -> Result<Address> {
        Ok(address(self.h()?.local_addr()))
    }

    /// Room needed before the stream reports itself writable.
    #[napi]
    pub fn set_low_water(&self, bytes: u32) -> Result<()> {
        self.h()?.set_send_low_water(bytes as usize);
        Ok(())
    }

    #[napi]
    pub fn buffered(&self) -> Result<u32> {
        Ok(self.h()?.buffered_recv_bytes() as u32)
    }

    #[napi]
    pub fn queued(&self) -> Result<u32> {
        Ok(self.h()?.queued_send_bytes() as u32)
    }

    /// A pollable descriptor (level-triggered) for `interest` bits
    /// (1 readable, 2 writable, 4 closed).
    #[napi]
    pub fn fd(&self, interest: u32) -> Result<i32> {
        self.h()?
            .poll_fd(Interest::from_bits(interest as u8))
            .map_err(|e| code_error(&e))
    }

    /// The engine's statistics.
    #[napi]
    pub fn stats(&self, env: Env) -> Result<napi::JsObject> {
        let s = self.h()?.stats().map_err(|e| code_error(&e))?;
        let mut o = env.create_object()?;
        for (k, v) in [
            ("bytesSent", s.bytes_sent),
            ("bytesReceived", s.bytes_received),
            ("packetsSent", s.packets_sent),
            ("packetsReceived", s.packets_received),
            ("timeoutRetransmits", s.timeout_retransmits),
            ("fastRetransmits", s.fast_retransmits),
            ("rttUs", s.rtt_us),
            ("rtoUs", s.rto_us),
            ("cwnd", s.cwnd),
            ("peerWindow", s.peer_window),
            ("bytesInFlight", s.bytes_in_flight),
        ] {
            o.set_named_property(k, env.create_double(v as f64)?)?;
        }
        Ok(o)
    }
}
