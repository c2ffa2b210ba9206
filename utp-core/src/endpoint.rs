//! The endpoint: one UDP port's worth of connections, demultiplexed by
//! (remote address, connection id). Sans-IO: the caller feeds datagrams and
//! time in, and drains datagrams, events and the next wake-up instant out.
//!
//! Call order for a driver (a runtime thread, the C ABI, the simulator):
//! 1. `handle_datagram` for every received datagram, then `flush_acks` once the batch is drained;
//! 2. `handle_timeout` when `poll_timeout` is reached;
//! 3. after any call, drain `poll_transmit` and `poll_event`.
//!
//! INTERFACE STUB.

use std::net::SocketAddr;

use crate::congestion::CongestionKind;
use crate::stats::ConnectionStats;

/// Identifies a connection inside one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle(pub usize);

/// A datagram to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The peer answered the SYN with RESET, or never answered (connect).
    Refused,
    /// The peer reset an established connection.
    Reset,
    /// Too many retransmission timeouts in a row.
    TimedOut,
}

/// Something the application should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An outgoing connection completed its handshake.
    Connected(ConnectionHandle),
    /// A new incoming connection was accepted.
    Incoming(ConnectionHandle),
    /// New in-order data can be read.
    Readable(ConnectionHandle),
    /// The send buffer has room again after a short write.
    Writable(ConnectionHandle),
    /// Every byte the peer sent has been read out; reads now return 0.
    /// (Emitted once, when the peer's FIN and everything before it arrived.)
    Eof(ConnectionHandle),
    /// The connection failed; reads and writes now return this error.
    Error(ConnectionHandle, ConnectionError),
    /// The connection is finished and its handle is no longer valid
    /// (after `close`, once the close handshake or linger ended).
    Closed(ConnectionHandle),
}

/// Why a stream call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// Nothing to read yet / no room to write yet; wait for an event.
    WouldBlock,
    /// The handshake has not completed yet.
    NotConnected,
    /// The write half was shut down (FIN queued).
    WriteClosed,
    /// The handle is unknown or already closed.
    InvalidHandle,
    /// The connection failed.
    Failed(ConnectionError),
}

/// Endpoint-wide settings; per-connection defaults are copied when a connection is created.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Send buffer (bytes): caps bytes queued + in flight.
    pub send_buffer: usize,
    /// Receive buffer (bytes): the window we advertise and enforce.
    pub recv_buffer: usize,
    /// LEDBAT target queuing delay (µs).
    pub target_delay_us: u32,
    /// Which congestion controller new connections use.
    pub congestion: CongestionKind,
    /// Largest UDP payload we send (header included).
    pub max_packet_size: usize,
    /// Accept incoming SYNs at all.
    pub accept_incoming: bool,
    /// Upper bound on connections still in the handshake (SYN received, no data yet).
    pub max_half_open: usize,
    /// Upper bound on connections in total.
    pub max_connections: usize,
    /// How long `close` waits for queued data before giving up (µs).
    pub linger_us: u64,
    /// Give up connecting after this long (µs).
    pub connect_timeout_us: u64,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            target_delay_us: 100_000,
            congestion: CongestionKind::Ledbat,
            max_packet_size: 1420,
            accept_incoming: true,
            max_half_open: 1024,
            max_connections: 65536,
            linger_us: 30_000_000,
            connect_timeout_us: 21_000_000,
        }
    }
}

/// Result of offering a datagram to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramKind {
    /// It was uTP (consumed, whether or not it matched a connection).
    Utp,
    /// Not uTP: offer it to other protocols sharing the port.
    NotUtp,
}

/// One UDP port's worth of uTP connections.
#[derive(Debug)]
pub struct Endpoint {
    _private: (),
}

impl Endpoint {
    /// A new endpoint; `seed` drives connection ids and initial sequence numbers.
    pub fn new(_config: EndpointConfig, _seed: u64) -> Self {
        unimplemented!()
    }
    pub fn config(&self) -> &EndpointConfig {
        unimplemented!()
    }
    /// Start connecting to `remote`; `Connected` or `Error` follows.
    pub fn connect(&mut self, _now_us: u64, _remote: SocketAddr) -> ConnectionHandle {
        unimplemented!()
    }
    /// Feed one received datagram from `remote`.
    pub fn handle_datagram(&mut self, _now_us: u64, _remote: SocketAddr, _data: &[u8]) -> DatagramKind {
        unimplemented!()
    }
    /// Send the ACKs deferred while a batch of datagrams was processed.
    pub fn flush_acks(&mut self, _now_us: u64) {
        unimplemented!()
    }
    /// Run timers due at `now_us`.
    pub fn handle_timeout(&mut self, _now_us: u64) {
        unimplemented!()
    }
    /// Earliest instant (µs) at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        unimplemented!()
    }
    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        unimplemented!()
    }
    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        unimplemented!()
    }
    /// Queue bytes; returns how many were accepted (a short count means
    /// the buffer is full and `Writable` follows). Errors never lose queued data.
    pub fn write(&mut self, _now_us: u64, _h: ConnectionHandle, _data: &[u8]) -> Result<usize, StreamError> {
        unimplemented!()
    }
    /// Read in-order bytes. `Ok(0)` means end of stream (peer's FIN reached).
    pub fn read(&mut self, _now_us: u64, _h: ConnectionHandle, _buf: &mut [u8]) -> Result<usize, StreamError> {
        unimplemented!()
    }
    /// Queue a FIN after the data already queued (half-close).
    pub fn shutdown_write(&mut self, _now_us: u64, _h: ConnectionHandle) -> Result<(), StreamError> {
        unimplemented!()
    }
    /// Give up the handle: queued data is still delivered, then the FIN; `Closed` follows.
    pub fn close(&mut self, _now_us: u64, _h: ConnectionHandle) {
        unimplemented!()
    }
    /// Live statistics of a connection.
    pub fn stats(&self, _h: ConnectionHandle) -> Option<&ConnectionStats> {
        unimplemented!()
    }
    /// Remote address of a connection.
    pub fn peer_addr(&self, _h: ConnectionHandle) -> Option<SocketAddr> {
        unimplemented!()
    }
    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        unimplemented!()
    }
}
