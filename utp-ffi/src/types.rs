//! The C types of `utp.h`, with their exact libutp layout.
//!
//! cbindgen emits the plain structs (`utp_context_stats`, `utp_socket_stats`,
//! `struct utp_iovec`). `utp_callback_arguments` (two anonymous unions), the
//! function type `utp_callback_t` and the opaque handle typedefs cannot be
//! expressed by cbindgen: they are written verbatim in `cbindgen.toml`
//! (`after_includes`) and their Rust mirrors here are excluded from export.
//! The `const _: () = assert!(...)` blocks below and `examples/c/tests/layout.c`
//! prove that both sides agree.

#![allow(non_camel_case_types)]

use std::mem::{align_of, offset_of, size_of};
use std::os::raw::{c_int, c_void};

/// `uint64` of `utp_types.h` (`unsigned long long`).
pub type uint64 = u64;
/// `uint32` of `utp_types.h` (`unsigned int`).
pub type uint32 = u32;
/// `uint16` of `utp_types.h` (`unsigned short`).
pub type uint16 = u16;
/// `byte` of `utp_types.h` (`unsigned char`).
pub type byte = u8;
/// `socklen_t` from `<sys/socket.h>`.
pub type socklen_t = libc::socklen_t;
/// `ssize_t` from `<unistd.h>`.
pub type ssize_t = isize;
/// `struct sockaddr` from `<sys/socket.h>` (renamed to `struct sockaddr` in the header).
pub type sockaddr = libc::sockaddr;

/// Opaque C handle `utp_socket` (`typedef struct UTPSocket utp_socket;`).
/// Pointers of this type point at a `crate::socket::Socket`.
#[repr(C)]
#[derive(Debug)]
pub struct utp_socket {
    _private: [u8; 0],
}

/// Opaque C handle `utp_context` (`typedef struct struct_utp_context utp_context;`).
/// Pointers of this type point at a `crate::context::Context`.
#[repr(C)]
#[derive(Debug)]
pub struct utp_context {
    _private: [u8; 0],
}

/// Stand-in for the C *function type* `utp_callback_t`; the header declares
/// `utp_set_callback(..., utp_callback_t *proc)`, which is a function pointer.
#[repr(C)]
#[derive(Debug)]
pub struct utp_callback_t {
    _private: [u8; 0],
}

/// The Rust view of a `utp_callback_t *`.
pub type CallbackFn = unsafe extern "C" fn(*mut utp_callback_arguments) -> uint64;

/// First anonymous union of `utp_callback_arguments` (8 bytes on LP64).
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub union utp_args_u1 {
    /// The peer (`UTP_ON_FIREWALL`, `UTP_ON_ACCEPT`, `UTP_SENDTO`,
    /// `UTP_GET_UDP_MTU`, `UTP_GET_UDP_OVERHEAD`).
    pub address: *const sockaddr,
    /// 1 for sent, 0 for received bytes (`UTP_ON_OVERHEAD_STATISTICS`).
    pub send: c_int,
    /// Queuing delay in ms (`UTP_ON_DELAY_SAMPLE`).
    pub sample_ms: c_int,
    /// A `UTP_E*` code (`UTP_ON_ERROR`).
    pub error_code: c_int,
    /// A `UTP_STATE_*` value (`UTP_ON_STATE_CHANGE`).
    pub state: c_int,
}

/// Second anonymous union of `utp_callback_arguments` (4 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub union utp_args_u2 {
    /// Length of `address` (bytes).
    pub address_len: socklen_t,
    /// The overhead class (`UTP_ON_OVERHEAD_STATISTICS`); `type` in C.
    pub type_: c_int,
}

/// `utp_callback_arguments`: what every callback receives.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct utp_callback_arguments {
    /// The context the callback belongs to.
    pub context: *mut utp_context,
    /// The socket concerned; NULL for context-level callbacks (and always
    /// for `UTP_SENDTO`, as in libutp).
    pub socket: *mut utp_socket,
    /// Length of `buf` (`UTP_ON_READ`, `UTP_SENDTO`, `UTP_LOG`) or the byte
    /// count of `UTP_ON_OVERHEAD_STATISTICS`.
    pub len: usize,
    /// `UTP_SENDTO` flags (`UTP_UDP_DONTFRAG`).
    pub flags: uint32,
    /// Which callback this is (`UTP_ON_*`, `UTP_GET_*`, `UTP_LOG`, `UTP_SENDTO`).
    pub callback_type: c_int,
    /// Data (`UTP_ON_READ`), datagram (`UTP_SENDTO`) or log text (`UTP_LOG`).
    pub buf: *const byte,
    /// The first anonymous union (`address`, `send`, `sample_ms`, `error_code`, `state`).
    pub u1: utp_args_u1,
    /// The second anonymous union (`address_len`, `type`).
    pub u2: utp_args_u2,
}

impl std::fmt::Debug for utp_callback_arguments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("utp_callback_arguments")
            .field("context", &self.context)
            .field("socket", &self.socket)
            .field("callback_type", &self.callback_type)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl utp_callback_arguments {
    /// All fields zero (libutp leaves unused fields uninitialised; we zero them).
    pub fn zeroed() -> Self {
        utp_callback_arguments {
            context: std::ptr::null_mut(),
            socket: std::ptr::null_mut(),
            len: 0,
            flags: 0,
            callback_type: 0,
            buf: std::ptr::null(),
            // Zero the full 8 bytes of the first union, not just an int.
            u1: utp_args_u1 {
                address: std::ptr::null(),
            },
            u2: utp_args_u2 { address_len: 0 },
        }
    }
}

/// Context-wide datagram counters by size bucket (`utp_get_context_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct utp_context_stats {
    /// Datagrams received for known sockets, by length: <=23, <=373, <=723, <=1400, larger.
    pub _nraw_recv: [uint32; 5],
    /// Datagrams sent, same buckets.
    pub _nraw_send: [uint32; 5],
}

/// Per-socket counters (`utp_get_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct utp_socket_stats {
    /// Datagram bytes received (uTP headers included).
    pub nbytes_recv: uint64,
    /// Datagram bytes sent (uTP headers included).
    pub nbytes_xmit: uint64,
    /// Packets resent because selective ACKs or duplicate ACKs showed them lost.
    pub rexmit: uint32,
    /// Packets resent after a retransmission timeout.
    pub fastrexmit: uint32,
    /// Datagrams sent.
    pub nxmit: uint32,
    /// Datagrams received.
    pub nrecv: uint32,
    /// Data packets received again.
    pub nduprecv: uint32,
    /// Current packet size (UDP payload, header included).
    pub mtu_guess: uint32,
}

/// `struct utp_iovec` for `utp_writev`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct utp_iovec {
    /// Start of the buffer.
    pub iov_base: *mut c_void,
    /// Length of the buffer (bytes).
    pub iov_len: usize,
}

// ---- layout proofs (LP64 and ILP32 values from the contract, section 3) ----

const P: usize = size_of::<*const u8>();

const _: () = assert!(size_of::<uint64>() == 8);
const _: () = assert!(size_of::<socklen_t>() == 4);
const _: () = assert!(size_of::<utp_args_u1>() == P && align_of::<utp_args_u1>() == P);
const _: () = assert!(size_of::<utp_args_u2>() == 4);
const _: () = assert!(offset_of!(utp_callback_arguments, context) == 0);
const _: () = assert!(offset_of!(utp_callback_arguments, socket) == P);
const _: () = assert!(offset_of!(utp_callback_arguments, len) == 2 * P);
const _: () = assert!(offset_of!(utp_callback_arguments, flags) == 3 * P);
const _: () = assert!(offset_of!(utp_callback_arguments, callback_type) == 3 * P + 4);
const _: () = assert!(offset_of!(utp_callback_arguments, buf) == 3 * P + 8);
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(offset_of!(utp_callback_arguments, u1) == 40);
    assert!(offset_of!(utp_callback_arguments, u2) == 48);
    assert!(size_of::<utp_callback_arguments>() == 56);
    assert!(align_of::<utp_callback_arguments>() == 8);
    assert!(size_of::<utp_iovec>() == 16);
};
#[cfg(target_pointer_width = "32")]
const _: () = {
    assert!(offset_of!(utp_callback_arguments, u1) == 24);
    assert!(offset_of!(utp_callback_arguments, u2) == 28);
    assert!(size_of::<utp_callback_arguments>() == 32);
};
const _: () = assert!(size_of::<utp_context_stats>() == 40);
const _: () = assert!(offset_of!(utp_context_stats, _nraw_send) == 20);
const _: () = {
    assert!(size_of::<utp_socket_stats>() == 40);
    assert!(offset_of!(utp_socket_stats, nbytes_xmit) == 8);
    assert!(offset_of!(utp_socket_stats, rexmit) == 16);
    assert!(offset_of!(utp_socket_stats, fastrexmit) == 20);
    assert!(offset_of!(utp_socket_stats, nxmit) == 24);
    assert!(offset_of!(utp_socket_stats, nrecv) == 28);
    assert!(offset_of!(utp_socket_stats, nduprecv) == 32);
    assert!(offset_of!(utp_socket_stats, mtu_guess) == 36);
};
const _: () = assert!(offset_of!(utp_iovec, iov_len) == P);
