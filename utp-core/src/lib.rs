//! `utp-core`: a uTP (BEP 29) implementation: reliable, ordered byte
//! streams over UDP with LEDBAT congestion control, wire-compatible with
//! libutp.
//!
//! The crate has two layers:
//!
//! * **The protocol engine** ([`Endpoint`] and the modules [`endpoint`],
//!   [`connection`], [`packet`], [`congestion`], [`delay`], [`rtt`],
//!   [`seq`]) is sans-IO: no sockets, no threads, no clock reads. Time is
//!   passed in as microseconds, datagrams come in as byte slices through
//!   [`Endpoint::handle_datagram`] and go out through
//!   [`Endpoint::poll_transmit`]; the engine says when it next needs to be
//!   woken with [`Endpoint::poll_timeout`] and reports what happened as
//!   [`Event`]s. Use it to embed uTP in your own event loop, or to share a
//!   UDP socket with another protocol (see [`DatagramKind`]). The
//!   [`Endpoint`] documentation shows two engines talking.
//! * **The runtime** ([`runtime`]) drives one engine per UDP socket on its
//!   own I/O thread and offers a `std::net`-style blocking API:
//!   [`UtpContext`](runtime::UtpContext) (one port that accepts and
//!   connects), [`UtpListener`](runtime::UtpListener) and
//!   [`UtpStream`](runtime::UtpStream) (`Read` + `Write`), with errors as
//!   `std::io::Error`. Its lower-level handles
//!   ([`ContextHandle`](runtime::ContextHandle),
//!   [`StreamHandle`](runtime::StreamHandle)) add non-blocking calls,
//!   pollable descriptors and readiness callbacks for the C, Python and
//!   Node bindings.
//!
//! With the `sim` feature, `sim` adds a deterministic network simulator
//! (links with delay, bandwidth, loss) that runs endpoints on a virtual
//! clock, for tests and benchmarks.
//!
//! ```
//! use std::io::{Read, Write};
//! use utp_core::runtime::{UtpListener, UtpStream};
//!
//! let listener = UtpListener::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr()?;
//! let sender = std::thread::spawn(move || -> std::io::Result<()> {
//!     let mut stream = UtpStream::connect(addr)?;
//!     stream.write_all(b"over uTP")?;
//!     stream.close() // Ok once the listener's side acknowledged every byte
//! });
//! let (mut stream, _peer) = listener.accept()?;
//! let mut got = Vec::new();
//! stream.read_to_end(&mut got)?; // until the sender's FIN
//! assert_eq!(got, b"over uTP");
//! sender.join().unwrap()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

pub mod congestion;
pub mod connection;
pub mod delay;
pub mod endpoint;
pub mod packet;
pub mod rtt;
pub mod runtime;
pub mod seq;
// Test tooling behind the `sim` feature (the crate's own tests and the
// benchmarks turn it on), left out of the library C programs link.
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;

pub use congestion::CongestionKind;
pub use endpoint::{
    ConnectionError, ConnectionHandle, DatagramKind, Endpoint, EndpointConfig, Event, StreamError,
    Transmit,
};
pub use stats::ConnectionStats;
