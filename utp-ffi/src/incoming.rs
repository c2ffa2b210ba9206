//! Received datagrams and ICMP errors: `utp_process_udp`,
//! `utp_process_icmp_error`, `utp_process_icmp_fragmentation`.

use std::net::SocketAddr;
use std::os::raw::c_int;

use crate::addr;
use crate::callbacks::LogLevel;
use crate::context::Context;
use crate::driver::{bucket, AcceptInfo};
use crate::ffi_guard::{guard, try_or};
use crate::names::*;
use crate::socket::Socket;
use crate::types::*;
use crate::wire;

impl Context {
    /// The socket an incoming packet is for: the engine's own routing rule
    /// (libutp's, RESETs matching the neighbouring ids too).
    fn incoming_socket(&self, peer: SocketAddr, data: &[u8]) -> Option<&'static Socket> {
        let h = self.with_engine(|e| e.connection_for(peer, data))??;
        self.socket_of(h)
    }

    /// `utp_process_udp` after argument checks.
    fn process_udp(
        &'static self,
        data: &[u8],
        peer: SocketAddr,
        from: *const sockaddr,
        fromlen: socklen_t,
    ) {
        let Some((ty, _)) = wire::type_and_connid(data) else {
            return;
        };
        self.ensure_engine();
        let now = self.now_us(None);
        let known = self.incoming_socket(peer, data);

        // A SYN for a new connection: ON_ACCEPT must be set, ON_FIREWALL may refuse.
        // Decided here, before the engine runs, so the callbacks run with no borrow held.
        let mut accept: Option<AcceptInfo> = None;
        if ty == wire::ST_SYN && known.is_none() {
            if !self.has_callback(UTP_ON_ACCEPT) {
                return;
            }
            let refused = self
                .invoke(UTP_ON_FIREWALL, None, |a| {
                    a.u1.address = from;
                    a.u2.address_len = fromlen;
                })
                .is_some_and(|v| v as c_int != 0);
            if refused {
                return;
            }
            let sock = self.new_socket();
            sock.accepted.set(true);
            let mtu = self.udp_mtu(Some(sock), peer);
            let o = self.opts.get();
            let cfg = Context::engine_config(o.sndbuf, o.rcvbuf, o.target_delay, mtu);
            self.with_engine(|e| e.set_config(cfg));
            accept = Some(AcceptInfo {
                sock,
                peer,
                from,
                fromlen,
            });
        }

        if self
            .with_engine(|e| e.handle_datagram(now, peer, data))
            .is_none()
        {
            if let Some(a) = accept {
                self.forget_socket(a.sock);
            }
            return;
        }
        let events = self.poll_events();
        self.queue_events(events, ty == wire::ST_RESET, Some(&mut accept));
        if let Some(a) = accept {
            // The engine did not accept it (limits): drop our socket silently.
            self.forget_socket(a.sock);
        }

        let target = known.or_else(|| {
            (ty == wire::ST_SYN)
                .then(|| self.incoming_socket(peer, data))
                .flatten()
        });
        if let Some(s) = target {
            // SAFETY: single-threaded use of the context.
            unsafe { (*self.stats.get())._nraw_recv[bucket(data.len())] += 1 };
            s.last_packet_us.set(Some(now));
        }
        self.drain_transmits();
        if let Some(s) = known {
            if self.has_callback(UTP_ON_OVERHEAD_STATISTICS) {
                let oh = self.udp_overhead(Some(s), peer);
                let (kind, len) = if ty == wire::ST_RESET {
                    (2, data.len() + oh)
                } else {
                    (4, data.len() - wire::payload_len(data) + oh)
                };
                self.invoke(UTP_ON_OVERHEAD_STATISTICS, Some(s), |a| {
                    a.u1.send = 0;
                    a.len = len;
                    a.u2.type_ = kind;
                });
            }
        }
        self.dispatch();
    }
}

/// Feed one received UDP datagram; `to`/`tolen` is its source (the peer).
/// Returns 1 if it is uTP (consumed), 0 if not (offer it to other protocols).
#[no_mangle]
pub extern "C" fn utp_process_udp(
    ctx: *mut utp_context,
    buf: *const byte,
    len: usize,
    to: *const sockaddr,
    tolen: socklen_t,
) -> c_int {
    guard(0, || {
        let ctx = try_or!(Context::from_ptr(ctx), 0);
        if buf.is_null() || to.is_null() || len < wire::HEADER_LEN {
            return 0;
        }
        // SAFETY: the caller passes `len` readable bytes at `buf`.
        let data = unsafe { std::slice::from_raw_parts(buf, len) };
        if !wire::is_utp(data) {
            return 0;
        }
        // SAFETY: `to` is non-null and covers `tolen` bytes (caller's contract).
        let peer = try_or!(unsafe { addr::from_c(to, tolen) }, 0);
        ctx.process_udp(data, peer, to, tolen);
        1
    })
}

/// Shared checks of the two ICMP entry points: the quoted datagram and its destination.
///
/// # Safety
/// `buf` must be NULL or `len` readable bytes; `to` NULL or `tolen` readable bytes.
unsafe fn icmp_args<'a>(
    ctx: *mut utp_context,
    buf: *const byte,
    len: usize,
    to: *const sockaddr,
    tolen: socklen_t,
) -> Option<(&'static Context, &'a [u8], SocketAddr)> {
    let ctx = Context::from_ptr(ctx)?;
    if buf.is_null() || len < wire::HEADER_LEN {
        return None;
    }
    // SAFETY: caller's contract.
    let data = unsafe { std::slice::from_raw_parts(buf, len) };
    if !wire::is_utp(data) {
        return None;
    }
    // SAFETY: caller's contract.
    let dest = unsafe { addr::from_c(to, tolen) }?;
    Some((ctx, data, dest))
}

/// An ICMP error quoted one of our datagrams (`buffer`: its UDP payload,
/// `to`: where it was sent). While connecting: ON_ERROR(ECONNREFUSED), else
/// ECONNRESET. Returns 1 if a socket matched, else 0.
#[no_mangle]
pub extern "C" fn utp_process_icmp_error(
    ctx: *mut utp_context,
    buffer: *const byte,
    len: usize,
    to: *const sockaddr,
    tolen: socklen_t,
) -> c_int {
    guard(0, || {
        // SAFETY: pointers as documented for the C function.
        let (ctx, data, dest) = try_or!(unsafe { icmp_args(ctx, buffer, len, to, tolen) }, 0);
        ctx.ensure_engine();
        let now = ctx.now_us(None);
        let matched = ctx
            .with_engine(|e| e.handle_icmp_unreachable(now, dest, data))
            .unwrap_or(false);
        if !matched {
            return 0;
        }
        let events = ctx.poll_events();
        ctx.queue_events(events, false, None);
        ctx.drain_transmits();
        ctx.dispatch();
        1
    })
}

/// ICMP "fragmentation needed" for one of our datagrams; `next_hop_mtu` is
/// taken as the largest UDP payload for that path. Returns 1 if a socket matched.
#[no_mangle]
pub extern "C" fn utp_process_icmp_fragmentation(
    ctx: *mut utp_context,
    buffer: *const byte,
    len: usize,
    to: *const sockaddr,
    tolen: socklen_t,
    next_hop_mtu: uint16,
) -> c_int {
    guard(0, || {
        // SAFETY: pointers as documented for the C function.
        let (ctx, data, dest) = try_or!(unsafe { icmp_args(ctx, buffer, len, to, tolen) }, 0);
        ctx.ensure_engine();
        let now = ctx.now_us(None);
        let mtu = if (576..8192).contains(&next_hop_mtu) {
            next_hop_mtu as usize
        } else {
            576
        };
        let matched = ctx
            .with_engine(|e| e.handle_icmp_frag_needed(now, dest, data, mtu))
            .unwrap_or(false);
        if !matched {
            return 0;
        }
        let s = ctx
            .with_engine(|e| e.connection_for_sent(dest, data))
            .flatten()
            .and_then(|h| ctx.socket_of(h));
        ctx.log(LogLevel::Mtu, s, || {
            format!("ICMP fragmentation needed, next hop MTU {next_hop_mtu}")
        });
        1
    })
}
