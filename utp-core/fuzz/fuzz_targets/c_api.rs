//! Arbitrary sequences of libutp C API calls (`utp-ffi`) on two contexts
//! wired together, with datagrams delivered, dropped, mutated or made up,
//! callbacks that re-enter the library, and misuse: NULL and wrong-type
//! pointers, closed and destroyed handles, bad options, huge lengths within
//! the buffers actually passed. The library must never panic across the
//! boundary (the guard would abort), crash, or touch freed memory (ASan).
#![no_main]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::os::raw::{c_int, c_void};
use std::ptr::null_mut;

use libfuzzer_sys::fuzz_target;
use utp::context::*;
use utp::incoming::*;
use utp::names::*;
use utp::options::*;
use utp::socket::*;
use utp::timers::*;
use utp::types::*;

/// Test state shared with the callbacks (one fuzz input at a time).
#[derive(Default)]
struct World {
    now_us: u64,
    /// (from context index, bytes)
    wire: VecDeque<(usize, Vec<u8>)>,
    contexts: [usize; 2],
    sockets: Vec<usize>,
    /// Behaviour of the callbacks, from the input.
    close_on_error: bool,
    close_on_eof: bool,
    refuse: bool,
    write_on_connect: bool,
}

thread_local! {
    static WORLD: RefCell<World> = RefCell::new(World::default());
}

fn addr(i: usize) -> libc::sockaddr_in {
    let a = SocketAddrV4::new([10, 0, 0, 1 + i as u8].into(), 1000 + i as u16);
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn ctx_index(ctx: *mut utp_context) -> usize {
    WORLD.with(|w| {
        w.borrow()
            .contexts
            .iter()
            .position(|&c| c == ctx as usize)
            .unwrap_or(0)
    })
}

unsafe extern "C" fn cb_time_ms(_: *mut utp_callback_arguments) -> uint64 {
    WORLD.with(|w| w.borrow().now_us / 1000)
}

unsafe extern "C" fn cb_time_us(_: *mut utp_callback_arguments) -> uint64 {
    WORLD.with(|w| w.borrow().now_us)
}

unsafe extern "C" fn cb_sendto(a: *mut utp_callback_arguments) -> uint64 {
    let a = unsafe { &*a };
    let bytes = unsafe { std::slice::from_raw_parts(a.buf, a.len) }.to_vec();
    let from = ctx_index(a.context);
    WORLD.with(|w| {
        let mut w = w.borrow_mut();
        if w.wire.len() < 4096 {
            w.wire.push_back((from, bytes));
        }
    });
    0
}

unsafe extern "C" fn cb_read(a: *mut utp_callback_arguments) -> uint64 {
    let a = unsafe { &*a };
    // Touch every byte handed to us: ASan checks the buffer is real.
    let sum: u64 = unsafe { std::slice::from_raw_parts(a.buf, a.len) }
        .iter()
        .map(|&b| b as u64)
        .sum();
    std::hint::black_box(sum);
    unsafe { utp_read_drained(a.socket) };
    0
}

unsafe extern "C" fn cb_firewall(_: *mut utp_callback_arguments) -> uint64 {
    WORLD.with(|w| w.borrow().refuse as u64)
}

unsafe extern "C" fn cb_accept(a: *mut utp_callback_arguments) -> uint64 {
    let s = unsafe { (*a).socket };
    WORLD.with(|w| w.borrow_mut().sockets.push(s as usize));
    0
}

unsafe extern "C" fn cb_error(a: *mut utp_callback_arguments) -> uint64 {
    if WORLD.with(|w| w.borrow().close_on_error) {
        unsafe { utp_close((*a).socket) };
    }
    0
}

unsafe extern "C" fn cb_state(a: *mut utp_callback_arguments) -> uint64 {
    let a = unsafe { &*a };
    let state = unsafe { a.u1.state };
    let (close_on_eof, write_on_connect) =
        WORLD.with(|w| (w.borrow().close_on_eof, w.borrow().write_on_connect));
    if state == UTP_STATE_EOF && close_on_eof {
        unsafe { utp_close(a.socket) };
    }
    if state == UTP_STATE_CONNECT && write_on_connect {
        let mut hello = *b"hello";
        unsafe { utp_write(a.socket, hello.as_mut_ptr() as *mut c_void, hello.len()) };
    }
    0
}

fn cb(f: unsafe extern "C" fn(*mut utp_callback_arguments) -> uint64) -> *mut utp_callback_t {
    f as *mut utp_callback_t
}

fn setup(ctx: *mut utp_context) {
    utp_set_callback(ctx, UTP_GET_MILLISECONDS, cb(cb_time_ms));
    utp_set_callback(ctx, UTP_GET_MICROSECONDS, cb(cb_time_us));
    utp_set_callback(ctx, UTP_SENDTO, cb(cb_sendto));
    utp_set_callback(ctx, UTP_ON_READ, cb(cb_read));
    utp_set_callback(ctx, UTP_ON_FIREWALL, cb(cb_firewall));
    utp_set_callback(ctx, UTP_ON_ACCEPT, cb(cb_accept));
    utp_set_callback(ctx, UTP_ON_ERROR, cb(cb_error));
    utp_set_callback(ctx, UTP_ON_STATE_CHANGE, cb(cb_state));
}

/// Reads the input a byte at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

fn socket(w: &World, sel: u8) -> *mut utp_socket {
    match sel % 8 {
        // Misuse: NULL, and a context passed as a socket.
        6 => null_mut(),
        7 => w.contexts[sel as usize % 2] as *mut utp_socket,
        _ if w.sockets.is_empty() => null_mut(),
        _ => w.sockets[sel as usize % w.sockets.len()] as *mut utp_socket,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.byte();
    let a = utp_init(2);
    let b = utp_init(2);
    WORLD.with(|w| {
        *w.borrow_mut() = World {
            now_us: 1_000_000_000,
            contexts: [a as usize, b as usize],
            close_on_error: flags & 1 != 0,
            close_on_eof: flags & 2 != 0,
            refuse: flags & 4 != 0,
            write_on_connect: flags & 8 != 0,
            ..World::default()
        }
    });
    setup(a);
    setup(b);
    let addrs = [addr(0), addr(1)];
    let sa = |i: usize| &addrs[i % 2] as *const libc::sockaddr_in as *const libc::sockaddr;
    let salen = std::mem::size_of::<libc::sockaddr_in>() as socklen_t;
    let mut payload = vec![0u8; 70_000];

    for _ in 0..400 {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        let sel = input.byte();
        let w = WORLD.with(|w| {
            let w = w.borrow();
            (w.contexts, socket(&w, sel))
        });
        let (ctxs, s) = w;
        let ctx = ctxs[sel as usize % 2] as *mut utp_context;
        match op % 16 {
            0 => {
                let s = utp_create_socket(ctx);
                if !s.is_null() {
                    WORLD.with(|w| w.borrow_mut().sockets.push(s as usize));
                }
            }
            1 => {
                let to = (sel as usize >> 1) % 3; // the other side, ourselves, or nobody
                let target = if to == 2 { sa(0) } else { sa(to) };
                utp_connect(s, target, if sel & 0x80 != 0 { 3 } else { salen });
            }
            2 => {
                let len = input.u16() as usize;
                let p = if sel & 0x40 != 0 {
                    null_mut()
                } else {
                    payload.as_mut_ptr() as *mut c_void
                };
                utp_write(s, p, len.min(payload.len()));
            }
            3 => {
                let (l1, l2) = (input.u16() as usize % 30_000, input.u16() as usize % 30_000);
                let (x, y) = payload.split_at_mut(35_000);
                let mut iov = [
                    utp_iovec {
                        iov_base: x.as_mut_ptr() as *mut c_void,
                        iov_len: l1,
                    },
                    utp_iovec {
                        iov_base: y.as_mut_ptr() as *mut c_void,
                        iov_len: l2,
                    },
                ];
                let n = (sel as usize >> 3) % 3;
                utp_writev(s, if n == 0 { null_mut() } else { iov.as_mut_ptr() }, n);
            }
            4..=6 => {
                // Deliver (or drop, or mutate) the next datagram on the wire.
                let next = WORLD.with(|w| w.borrow_mut().wire.pop_front());
                if let Some((from, mut bytes)) = next {
                    match sel % 4 {
                        0 => continue, // lost
                        1 => {
                            let (pos, val) = (input.byte() as usize, input.byte());
                            if !bytes.is_empty() {
                                let i = pos % bytes.len();
                                bytes[i] = val;
                            }
                        }
                        2 => bytes.truncate(input.byte() as usize),
                        _ => {}
                    }
                    let to = 1 - from;
                    utp_process_udp(
                        ctxs[to] as *mut utp_context,
                        bytes.as_ptr(),
                        bytes.len(),
                        sa(from),
                        salen,
                    );
                }
            }
            7 => {
                let len = input.byte() as usize;
                let junk = input.bytes(len);
                utp_process_udp(ctx, junk.as_ptr(), junk.len(), sa(sel as usize >> 1), salen);
            }
            8 => {
                WORLD.with(|w| {
                    w.borrow_mut().now_us += 1000 * (input.byte() as u64) * (sel as u64 % 64 + 1)
                });
                utp_check_timeouts(ctx);
            }
            9 => utp_issue_deferred_acks(ctx),
            10 => utp_read_drained(s),
            11 => utp_shutdown(s, (sel >> 3) as c_int % 5 - 1),
            12 => utp_close(s),
            13 => {
                let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let mut len = (sel as socklen_t >> 2) * 4;
                utp_getpeername(s, &mut ss as *mut _ as *mut libc::sockaddr, &mut len);
                let (mut o, mut t, mut age) = (0u32, 0u32, 0u32);
                utp_get_delays(s, &mut o, &mut t, &mut age);
                let st = utp_get_stats(s);
                if !st.is_null() {
                    std::hint::black_box(unsafe { (*st).nbytes_recv });
                }
                let prev = utp_set_userdata(s, sel as usize as *mut c_void);
                std::hint::black_box((prev, utp_get_userdata(s), utp_get_context(s)));
            }
            14 => {
                let opt = (input.byte() % 26) as c_int - 1;
                let val =
                    i32::from_le_bytes([input.byte(), input.byte(), input.byte(), input.byte()]);
                if sel & 1 == 0 {
                    utp_context_set_option(ctx, opt, val);
                    utp_context_get_option(ctx, opt);
                } else {
                    utp_setsockopt(s, opt, val);
                    utp_getsockopt(s, opt);
                }
            }
            _ => {
                // ICMP errors quoting a datagram we sent (or junk).
                let sent = WORLD.with(|w| w.borrow().wire.front().cloned());
                let quoted = sent.map(|(_, b)| b).unwrap_or_else(|| input.bytes(20));
                if sel & 1 == 0 {
                    utp_process_icmp_error(
                        ctx,
                        quoted.as_ptr(),
                        quoted.len(),
                        sa(sel as usize >> 1),
                        salen,
                    );
                } else {
                    utp_process_icmp_fragmentation(
                        ctx,
                        quoted.as_ptr(),
                        quoted.len(),
                        sa(sel as usize >> 1),
                        salen,
                        input.u16(),
                    );
                }
            }
        }
        std::hint::black_box(utp_get_context_stats(ctx));
    }
    // Everything goes; later calls on the old handles hit tombstones.
    utp_destroy(a);
    utp_destroy(b);
    let stale = WORLD.with(|w| w.borrow().sockets.first().copied());
    if let Some(s) = stale {
        utp_close(s as *mut utp_socket);
        utp_write(
            s as *mut utp_socket,
            payload.as_mut_ptr() as *mut c_void,
            10,
        );
    }
    utp_check_timeouts(a);
    WORLD.with(|w| *w.borrow_mut() = World::default());
});
