//! `libutp` for C: a drop-in replacement for libutp's `utp.h` API on top of
//! the sans-IO engine in `utp-core`.
//!
//! Build: `cargo build --release -p utp-ffi` gives `target/release/libutp.so`
//! (SONAME `libutp.so.0`) and `libutp.a`; the headers are `include/utp.h` and
//! `include/utp_types.h`. Behaviour follows `libutp-api-contract.md`
//! (caller-driven: the application owns the UDP socket and calls
//! `utp_process_udp`, `utp_issue_deferred_acks` and `utp_check_timeouts`).
//!
//! Layout of the crate, one C type or area per file:
//!
//! | file | holds |
//! |---|---|
//! | `types.rs` | C structs, unions, typedef mirrors, layout asserts |
//! | `names.rs` | numeric constants and the three name tables |
//! | `ffi_guard.rs` | the panic boundary used by every entry point |
//! | `pool.rs` | handle memory: tombstones instead of frees |
//! | `context.rs` | `utp_context` and the context-level functions |
//! | `socket.rs` | `utp_socket` and the socket-level functions |
//! | `options.rs` | context and socket options |
//! | `incoming.rs` | `utp_process_udp` and the ICMP entry points |
//! | `timers.rs` | `utp_check_timeouts`, `utp_issue_deferred_acks` |
//! | `driver.rs` | engine plumbing: transmits, events, callbacks dispatch |
//! | `callbacks.rs` | calling the application, defaults, logging |
//! | `addr.rs`, `wire.rs` | sockaddr conversion; packet type and the sizes libutp's statistics count |
//! | `threaded.rs` | threaded mode (`utp_threaded.h`, `utpt_*`): blocking sockets over utp-core's runtime |
//!
//! The threaded mode (`include/utp_threaded.h`, functions `utpt_*`) is a
//! second, independent API in the same library: blocking socket-style calls
//! over utp-core's threaded runtime, each context with its own I/O thread.
//!
//! The engine does the protocol's bookkeeping; this layer only translates.
//! Which connection a datagram belongs to (RESET matching included) is the
//! engine's `Endpoint::connection_for` (received) and `Transmit::connection`
//! (sent); `UTP_ON_DELAY_SAMPLE` is the engine's `Event::DelaySample`; the
//! connection ids are the connection's own.
//!
//! Threading: like libutp, one context (and its sockets) must be used by one
//! thread at a time. Callbacks run synchronously in the calling thread and
//! may re-enter the library (except `utp_destroy`, or the driving functions
//! of the same context).

// The `extern "C"` entry points take raw pointers under libutp's C contract
// (documented per function) and check what can be checked (NULL, tombstones);
// they are meant for C callers, so they are not `unsafe fn` in Rust.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
#![warn(missing_docs)]

pub mod addr;
pub mod callbacks;
pub mod context;
mod driver;
pub mod ffi_guard;
pub mod incoming;
pub mod names;
pub mod options;
mod pool;
pub mod socket;
/// cbindgen:ignore
pub mod threaded;
pub mod timers;
pub mod types;
mod wire;

pub use utp_core;
