//! C ABI for `utp-core`, compatible with libutp's `utp.h`.
//!
//! This crate is a workspace member so that the layout of the project is in
//! place from the start; the C entry points arrive with the C ABI work.
//! Nothing is exported yet.

pub use utp_core;
