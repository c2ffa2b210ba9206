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

/// Callback ids for `utp_set_callback`.
pub const UTP_ON_FIREWALL: c_int = 0;
pub const UTP_ON_ACCEPT: c_int = 1;
pub const UTP_ON_CONNECT: c_int = 2;
pub const UTP_ON_ERROR: c_int = 3;
pub const UTP_ON_READ: c_int = 4;
pub const UTP_ON_OVERHEAD_STATISTICS: c_int = 5;
pub const UTP_ON_STATE_CHANGE: c_int = 6;
pub const UTP_GET_READ_BUFFER_SIZE: c_int = 7;
pub const UTP_ON_DELAY_SAMPLE: c_int = 8;
pub const UTP_GET_UDP_MTU: c_int = 9;
pub const UTP_GET_UDP_OVERHEAD: c_int = 10;
pub const UTP_GET_MILLISECONDS: c_int = 11;
pub const UTP_GET_MICROSECONDS: c_int = 12;
pub const UTP_GET_RANDOM: c_int = 13;
pub const UTP_LOG: c_int = 14;
pub const UTP_SENDTO: c_int = 15;
/// Option ids (context and socket options) continue the callback numbering.
pub const UTP_LOG_NORMAL: c_int = 16;
pub const UTP_LOG_MTU: c_int = 17;
pub const UTP_LOG_DEBUG: c_int = 18;
pub const UTP_SNDBUF: c_int = 19;
pub const UTP_RCVBUF: c_int = 20;
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
