//! `utp-core`: a uTP (BEP 29) implementation.
//!
//! The protocol engine is sans-IO: no sockets, no threads, no clock reads.
//! Time is passed in as microseconds, datagrams come in as byte slices and
//! go out through [`endpoint::Endpoint::poll_transmit`]; the engine says when
//! it next needs to be woken with [`endpoint::Endpoint::poll_timeout`].

#![warn(missing_docs)]

pub mod congestion;
pub mod connection;
pub mod delay;
pub mod endpoint;
pub mod packet;
pub mod rtt;
pub mod runtime;
pub mod seq;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;

pub use congestion::CongestionKind;
pub use endpoint::{
    ConnectionError, ConnectionHandle, DatagramKind, Endpoint, EndpointConfig, Event, StreamError,
    Transmit,
};
pub use stats::ConnectionStats;
