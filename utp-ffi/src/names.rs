//! libutp's numeric constants and its three exported name tables.
//!
//! libutp declares the constants as anonymous `enum`s; the header carries
//! them as macros of the same value (contract section 2 allows either).

#![allow(non_upper_case_globals)]

use std::os::raw::{c_char, c_int};

/// `utp_write` flag passed to `UTP_SENDTO`: set the DF bit (MTU probes).
pub const UTP_UDP_DONTFRAG: c_int = 2;

/// Outgoing connection completed (notification only for `utp_connect`ed sockets).
pub const UTP_STATE_CONNECT: c_int = 1;
/// A write was cut short earlier; there is room again.
pub const UTP_STATE_WRITABLE: c_int = 2;
/// The peer finished sending (its FIN was reached).
pub const UTP_STATE_EOF: c_int = 3;
/// Last callback for a socket: the handle is invalid once it returns.
pub const UTP_STATE_DESTROYING: c_int = 4;

/// The connection attempt was refused (ICMP port unreachable while connecting).
pub const UTP_ECONNREFUSED: c_int = 0;
/// The peer reset the connection (RESET packet, or ICMP after connecting).
pub const UTP_ECONNRESET: c_int = 1;
/// Too many retransmission timeouts in a row.
pub const UTP_ETIMEDOUT: c_int = 2;

/// Callback ids for `utp_set_callback` start here.
///
/// Incoming SYN from `address`: return non-zero to refuse it (nothing is
/// sent back).
pub const UTP_ON_FIREWALL: c_int = 0;
/// A new incoming socket, from `address`. While unset, incoming SYNs
/// are ignored.
pub const UTP_ON_ACCEPT: c_int = 1;
/// An outgoing connection completed; when unset, `UTP_ON_STATE_CHANGE`
/// with `UTP_STATE_CONNECT` is called instead.
pub const UTP_ON_CONNECT: c_int = 2;
/// The socket failed; `error_code` is a `UTP_E*` code.
pub const UTP_ON_ERROR: c_int = 3;
/// In-order data: `buf`, `len` bytes, valid during the call.
pub const UTP_ON_READ: c_int = 4;
/// Bytes sent (`send` = 1) or received (`send` = 0) of one overhead
/// class (`type`: libutp's `bandwidth_type_t`, 1 connect .. 5 retransmit).
pub const UTP_ON_OVERHEAD_STATISTICS: c_int = 5;
/// A `UTP_STATE_*` change, in `state`.
pub const UTP_ON_STATE_CHANGE: c_int = 6;
/// Asked after each `UTP_ON_READ`: return the bytes the application still
/// holds; the advertised window shrinks by that much.
pub const UTP_GET_READ_BUFFER_SIZE: c_int = 7;
/// A queuing delay sample of the sending direction, in `sample_ms` (ms).
pub const UTP_ON_DELAY_SAMPLE: c_int = 8;
/// Return the UDP payload MTU towards `address` (bytes); unset, 1402 for
/// IPv4 and 1232 for IPv6, as libutp.
pub const UTP_GET_UDP_MTU: c_int = 9;
/// Return the IP + UDP header bytes towards `address`; unset, 28 for
/// IPv4 and 76 for IPv6, as libutp.
pub const UTP_GET_UDP_OVERHEAD: c_int = 10;
/// Return the current time in ms (unset: `CLOCK_MONOTONIC`).
pub const UTP_GET_MILLISECONDS: c_int = 11;
/// Return the current time in microseconds (unset: `CLOCK_MONOTONIC`).
pub const UTP_GET_MICROSECONDS: c_int = 12;
/// Return a random number (connection ids, sequence numbers; unset:
/// libc `rand()`, so `srand()` applies).
pub const UTP_GET_RANDOM: c_int = 13;
/// A log line, NUL-terminated, in `buf` (only for enabled `UTP_LOG_*`
/// categories).
pub const UTP_LOG: c_int = 14;
/// Send `buf`, `len` bytes, to `address` (`flags`: `UTP_UDP_DONTFRAG`);
/// `socket` is always NULL, as in libutp.
pub const UTP_SENDTO: c_int = 15;
/// Option ids (context and socket options) continue the callback numbering.
///
/// Context option: log normal events through `UTP_LOG` (0/1, default 0).
pub const UTP_LOG_NORMAL: c_int = 16;
/// Context option: log MTU discovery through `UTP_LOG` (0/1, default 0).
pub const UTP_LOG_MTU: c_int = 17;
/// Context option: log debug detail through `UTP_LOG` (0/1, default 0).
pub const UTP_LOG_DEBUG: c_int = 18;
/// Send buffer in bytes (context default for new sockets, or one
/// socket's); default 1 MiB.
pub const UTP_SNDBUF: c_int = 19;
/// Receive buffer in bytes (the advertised window); default 1 MiB.
pub const UTP_RCVBUF: c_int = 20;
/// LEDBAT target queuing delay in microseconds; default 100 000, and <= 0 means the
/// default.
pub const UTP_TARGET_DELAY: c_int = 21;
/// Number of callback/option slots.
pub const UTP_ARRAY_SIZE: c_int = 22;

/// Most iovecs `utp_writev` looks at.
pub const UTP_IOV_MAX: c_int = 1024;

/// Number of callback slots (ids 0..=15); ids 16..=21 are options.
pub(crate) const CALLBACK_COUNT: usize = 16;

/// `utp_state_names[state]`; index 0 is NULL (5 pointers: 40 bytes on LP64).
#[no_mangle]
pub static mut utp_state_names: [*const c_char; 5] = [
    std::ptr::null(),
    c"UTP_STATE_CONNECT".as_ptr(),
    c"UTP_STATE_WRITABLE".as_ptr(),
    c"UTP_STATE_EOF".as_ptr(),
    c"UTP_STATE_DESTROYING".as_ptr(),
];

/// `utp_error_code_names[error_code]` (3 pointers: 24 bytes on LP64).
#[no_mangle]
pub static mut utp_error_code_names: [*const c_char; 3] = [
    c"UTP_ECONNREFUSED".as_ptr(),
    c"UTP_ECONNRESET".as_ptr(),
    c"UTP_ETIMEDOUT".as_ptr(),
];

/// `utp_callback_names[callback_id]` for ids 0..=15 (16 pointers: 128 bytes on LP64).
#[no_mangle]
pub static mut utp_callback_names: [*const c_char; 16] = [
    c"UTP_ON_FIREWALL".as_ptr(),
    c"UTP_ON_ACCEPT".as_ptr(),
    c"UTP_ON_CONNECT".as_ptr(),
    c"UTP_ON_ERROR".as_ptr(),
    c"UTP_ON_READ".as_ptr(),
    c"UTP_ON_OVERHEAD_STATISTICS".as_ptr(),
    c"UTP_ON_STATE_CHANGE".as_ptr(),
    c"UTP_GET_READ_BUFFER_SIZE".as_ptr(),
    c"UTP_ON_DELAY_SAMPLE".as_ptr(),
    c"UTP_GET_UDP_MTU".as_ptr(),
    c"UTP_GET_UDP_OVERHEAD".as_ptr(),
    c"UTP_GET_MILLISECONDS".as_ptr(),
    c"UTP_GET_MICROSECONDS".as_ptr(),
    c"UTP_GET_RANDOM".as_ptr(),
    c"UTP_LOG".as_ptr(),
    c"UTP_SENDTO".as_ptr(),
];

const _: () =
    assert!(std::mem::size_of::<[*const c_char; 5]>() == 5 * std::mem::size_of::<usize>());
const _: () = assert!(CALLBACK_COUNT as c_int == UTP_SENDTO + 1);
