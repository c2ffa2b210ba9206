//! `utp-core`: a uTP (BEP 29) implementation with LEDBAT congestion control.
//!
//! Two layers:
//!
//! * The protocol engine, [`Endpoint`], is sans-IO: no sockets, no threads,
//!   no clock reads. Time is passed in as microseconds, datagrams come in as
//!   byte slices and go out through [`Endpoint::poll_transmit`]; the engine
//!   says when it next needs to be woken with [`Endpoint::poll_timeout`].
//!   Its documentation shows two endpoints wired together by hand.
//! * The threaded [`runtime`] runs an endpoint on one UDP socket with an I/O
//!   thread, behind a `std::net`-style API ([`runtime::UtpContext`],
//!   [`runtime::UtpListener`], [`runtime::UtpStream`]) and the thread-safe
//!   handles ([`runtime::handle`]) that the C, Python and Node front ends
//!   share: blocking, non-blocking and event-loop waits on one connection.
//!
//! ```
//! use std::io::{Read, Write};
//! use utp_core::runtime::{UtpListener, UtpStream};
//!
//! let listener = UtpListener::bind("127.0.0.1:0")?;
//! let mut client = UtpStream::connect(listener.local_addr()?)?;
//! client.write_all(b"over uTP")?;
//! let (mut conn, _) = listener.accept()?;
//! let mut buf = [0u8; 8];
//! conn.read_exact(&mut buf)?;
//! assert_eq!(&buf, b"over uTP");
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
// benchmarks turn it on), not part of the library's API.
#[cfg(any(test, feature = "sim"))]
#[allow(missing_docs)]
pub mod sim;
pub mod stats;

pub use congestion::CongestionKind;
pub use endpoint::{
    ConnectionError, ConnectionHandle, DatagramKind, Endpoint, EndpointConfig, Event, StreamError,
    Transmit,
};
pub use stats::ConnectionStats;
