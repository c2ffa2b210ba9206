//! Linux UDP socket helpers for the threaded runtime.
//!
//! Everything the OS does for us lives here, in one place (like
//! `quinn-udp`): a non-blocking socket bound to an IPv4 or IPv6 address
//! (optionally dual-stack), enlarged kernel buffers, batched receive with
//! `recvmmsg` and batched send with `sendmmsg` over fixed, reused arrays,
//! UDP segmentation offload where the kernel has it (GSO: a run of
//! same-sized datagrams to one peer leaves in one `sendmmsg` entry; GRO: the
//! kernel hands over a run of datagrams from one peer in one buffer), and
//! the `IP_RECVERR` error queue that turns ICMP errors (port
//! unreachable, fragmentation needed) into values the driver can act on.
//!
//! Addresses are canonical on our side of the API: on an IPv6 dual-stack
//! socket, IPv4 peers appear as IPv4 addresses (not `::ffff:a.b.c.d`), and an
//! IPv4 destination is mapped automatically when sending.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::endpoint::Transmit;

/// Messages per `recvmmsg` / `sendmmsg` call.
pub const BATCH: usize = 64;

/// Datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;

/// Bytes in one GSO send: below the largest UDP payload over IPv4 (65,507).
const MAX_GSO_BYTES: usize = 65_000;

/// Receive buffer per message when GRO is on: the kernel coalesces up to 64 KiB.
const GRO_BUFFER: usize = 1 << 16;

/// `CMSG_SPACE` room for one control message per received message.
const RECV_CONTROL_WORDS: usize = 8;

/// Options for [`UdpSocket::bind`].
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// For an IPv6 address: also accept IPv4 peers (clears `IPV6_V6ONLY`).
    pub dual_stack: bool,
    /// Requested `SO_RCVBUF` / `SO_SNDBUF` (bytes); the kernel may grant less.
    pub buffer_size: usize,
    /// Send runs of same-sized datagrams to one peer as one GSO message
    /// (`UDP_SEGMENT`) when the kernel supports it. The wire sees ordinary
    /// datagrams either way.
    pub gso: bool,
    /// Let the kernel coalesce received datagrams (`UDP_GRO`) when it
    /// supports it.
    pub gro: bool,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions {
            dual_stack: true,
            buffer_size: 4 << 20,
            gso: true,
            gro: true,
        }
    }
}

/// What an ICMP (or local) error said about a datagram we sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    /// Nobody listens on the destination port.
    PortUnreachable,
    /// The datagram was too big for the path; `mtu` is the next hop's MTU
    /// (0 when unknown).
    FragNeeded {
        /// Path MTU the kernel reported (bytes, IP header included; 0 when
        /// unknown).
        mtu: u32,
    },
    /// Anything else (host/net unreachable, ...), as the kernel's
    /// `sock_extended_err` gave it.
    Other {
        /// `ee_origin`: `SO_EE_ORIGIN_ICMP`, `SO_EE_ORIGIN_ICMP6`, `SO_EE_ORIGIN_LOCAL`, ...
        origin: u8,
        /// `ee_type`: the ICMP or ICMPv6 type.
        icmp_type: u8,
        /// `ee_code`: the ICMP or ICMPv6 code.
        code: u8,
    },
}

/// One entry read from the socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Where the offending datagram was going.
    pub destination: SocketAddr,
    /// What the error says.
    pub kind: IcmpKind,
    /// The errno the kernel attached (`ECONNREFUSED`, `EMSGSIZE`, ...).
    pub errno: i32,
    /// The start of the offending datagram (a uTP header names the
    /// connection id), `original_len` bytes of it.
    pub original: [u8; 32],
    /// How many bytes of `original` are valid (at most 32).
    pub original_len: usize,
}

/// Something `sendmmsg` can send.
pub trait Datagram {
    /// Where to send it.
    fn destination(&self) -> SocketAddr;
    /// The UDP payload (the whole uTP packet).
    fn payload(&self) -> &[u8];
}

impl Datagram for Transmit {
    fn destination(&self) -> SocketAddr {
        self.destination
    }
    fn payload(&self) -> &[u8] {
        &self.contents
    }
}

impl Datagram for (SocketAddr, Vec<u8>) {
    fn destination(&self) -> SocketAddr {
        self.0
    }
    fn payload(&self) -> &[u8] {
        &self.1
    }
}

/// Result of [`UdpSocket::send_queue`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// Datagrams handed to the kernel (and removed from the queue).
    pub sent: usize,
    /// Datagrams removed because the kernel refused them for good
    /// (wrong address family, too big, ...).
    pub dropped: usize,
    /// The kernel buffer is full: wait for `POLLOUT` before trying again.
    pub blocked: bool,
    /// The kernel was out of buffers (`ENOBUFS`): `POLLOUT` may not tell
    /// when to retry, so retry on a short timer.
    pub no_buffers: bool,
}

/// A non-blocking UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    local: SocketAddr,
    ipv6: bool,
    recv_buffer: usize,
    send_buffer: usize,
    /// GSO is in use: asked for, supported, and never failed with `EIO`.
    gso: AtomicBool,
    /// The kernel accepted `UDP_GRO`: received buffers may hold several datagrams.
    gro: bool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live c_int.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the pointer and length describe a live c_int.
    let r = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    cvt(r).map(|_| value)
}

/// Writes `addr` into `storage`; returns the length to pass to the kernel.
fn write_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in.
            let sin =
                unsafe { &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in) };
            *sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6)
            };
            *sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a socket address the kernel wrote; IPv4-mapped IPv6 addresses come
/// back as IPv4.
fn read_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage as *const libc::sockaddr_in6)
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(SocketAddr::V4(SocketAddrV4::new(v4, port)));
            }
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                port,
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl UdpSocket {
    /// A non-blocking, close-on-exec UDP socket bound to `addr`, with large
    /// kernel buffers and the ICMP error queue enabled.
    pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> io::Result<UdpSocket> {
        let ipv6 = addr.is_ipv6();
        let family = if ipv6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain syscall.
        let raw = cvt(unsafe {
            libc::socket(
                family,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();

        if ipv6 {
            setsockopt_int(
                raw,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (!opts.dual_stack) as libc::c_int,
            )?;
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)?;
            // IPv4 peers of a dual-stack socket report through the IPv4 option.
            let _ = setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
        } else {
            setsockopt_int(raw, libc::IPPROTO_IP, libc::IP_RECVERR, 1)?;
        }
        let want = opts.buffer_size.min(libc::c_int::MAX as usize) as libc::c_int;
        // Best effort: the kernel clamps to net.core.{r,w}mem_max.
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, want);
        let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, want);
        let recv_buffer =
            getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap_or(0) as usize;
        let send_buffer =
            getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF).unwrap_or(0) as usize;
        // Reading the socket's default segment size succeeds only on kernels
        // that know UDP_SEGMENT (4.18+); the size is then given per message.
        let gso = opts.gso && getsockopt_int(raw, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        let gro = opts.gro && setsockopt_int(raw, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();

        // SAFETY: zeroed sockaddr_storage is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let len = write_sockaddr(&addr, &mut storage);
        // SAFETY: storage holds a valid address of `len` bytes.
        cvt(unsafe { libc::bind(raw, &storage as *const _ as *const libc::sockaddr, len) })?;

        // SAFETY: zeroed sockaddr_storage is valid.
        let mut local: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut local_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: local is large enough for any address.
        cvt(unsafe {
            libc::getsockname(
                raw,
                &mut local as *mut _ as *mut libc::sockaddr,
                &mut local_len,
            )
        })?;
        let local =
            read_sockaddr(&local).ok_or_else(|| io::Error::other("getsockname: unknown family"))?;
        // Keep the bound form (an IPv6 wildcard stays IPv6).
        let local = match (addr, local) {
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            (_, l) => l,
        };
        Ok(UdpSocket {
            fd,
            local,
            ipv6,
            recv_buffer,
            send_buffer,
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    /// Whether sends use UDP GSO.
    pub fn gso_enabled(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Whether the kernel may coalesce received datagrams (size the
    /// [`RecvBatch`] with [`UdpSocket::recv_buffer_len`]).
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// The per-message receive buffer this socket needs for datagrams of up
    /// to `max_datagram` bytes.
    pub fn recv_buffer_len(&self, max_datagram: usize) -> usize {
        if self.gro {
            GRO_BUFFER.max(max_datagram)
        } else {
            max_datagram
        }
    }

    /// The bound address, with the actual port when bound to port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `SO_RCVBUF` as granted by the kernel (bytes, as Linux reports it: doubled).
    pub fn recv_buffer_size(&self) -> usize {
        self.recv_buffer
    }

    /// `SO_SNDBUF` as granted by the kernel.
    pub fn send_buffer_size(&self) -> usize {
        self.send_buffer
    }

    /// The address to put on the wire for `dest` (IPv4 destinations are
    /// mapped on an IPv6 socket).
    fn wire_addr(&self, dest: SocketAddr) -> SocketAddr {
        match dest {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::V6(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            d => d,
        }
    }

    /// Receives up to [`BATCH`] messages into `batch`; `Ok(0)` means nothing
    /// was waiting. With GRO a message may hold several datagrams:
    /// [`RecvBatch::datagrams`] splits them. Truncated messages are skipped
    /// there.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.len = 0;
        let n = batch.slots;
        for i in 0..n {
            batch.iovs[i] = libc::iovec {
                iov_base: batch.bufs[i * batch.buf_size..].as_mut_ptr() as *mut libc::c_void,
                iov_len: batch.buf_size,
            };
            // SAFETY: msghdr is a plain C struct; zero is a valid starting state.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = &mut batch.addrs[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut batch.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = batch.controls[i].as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = mem::size_of_val(&batch.controls[i]) as _;
            batch.hdrs[i] = libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            };
        }
        loop {
            // SAFETY: every header points into buffers owned by `batch`, which
            // outlives the call; the kernel writes at most the given lengths.
            let r = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r >= 0 {
                batch.len = r as usize;
                batch.read_segment_sizes();
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => {}
            }
            // A pending ICMP error (sk_err) is reported once by the next
            // receive; it is also in the error queue, which the caller reads.
            match e.raw_os_error() {
                Some(
                    libc::ECONNREFUSED
                    | libc::EHOSTUNREACH
                    | libc::ENETUNREACH
                    | libc::EHOSTDOWN
                    | libc::EMSGSIZE,
                ) => continue,
                _ => return Err(e),
            }
        }
    }

    /// Sends datagrams from the front of `queue` with `sendmmsg`, removing
    /// what was sent. Stops when the queue is empty or the kernel buffer is
    /// full (`blocked`): the datagrams stay queued for the next `POLLOUT`.
    ///
    /// With GSO, consecutive datagrams to one destination of the same size
    /// (the last may be shorter) go out as one message; if the kernel
    /// refuses such a message, its datagrams are retried one by one.
    pub fn send_queue<D: Datagram>(
        &self,
        batch: &mut SendBatch,
        queue: &mut VecDeque<D>,
    ) -> SendOutcome {
        let mut out = SendOutcome::default();
        let mut soft_errors = 0;
        // Datagrams at the front to send without GSO (after a refusal).
        let mut singles = 0usize;
        while !queue.is_empty() {
            let gso = self.gso_enabled();
            let mut msgs = 0;
            let mut next = 0;
            let mut iov_used = 0;
            while msgs < BATCH && next < queue.len() {
                let first = &queue[next];
                let dest = first.destination();
                let size = first.payload().len();
                let mut segs = 1;
                if gso && next >= singles && size > 0 {
                    while next + segs < queue.len()
                        && segs < MAX_SEGMENTS
                        && (segs + 1) * size <= MAX_GSO_BYTES
                    {
                        let d = &queue[next + segs];
                        let len = d.payload().len();
                        if len > size || len == 0 || d.destination() != dest {
                            break;
                        }
                        segs += 1;
                        // Only the last segment may be shorter.
                        if len < size {
                            break;
                        }
                    }
                }
                for k in 0..segs {
                    let payload = queue[next + k].payload();
                    batch.iovs[iov_used + k] = libc::iovec {
                        iov_base: payload.as_ptr() as *mut libc::c_void,
                        iov_len: payload.len(),
                    };
                }
                let len = write_sockaddr(&self.wire_addr(dest), &mut batch.addrs[msgs]);
                // SAFETY: msghdr is a plain C struct; zero is a valid starting state.
                let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
                hdr.msg_name =
                    &mut batch.addrs[msgs] as *mut libc::sockaddr_storage as *mut libc::c_void;
                hdr.msg_namelen = len;
                hdr.msg_iov = &mut batch.iovs[iov_used];
                hdr.msg_iovlen = segs as _;
                if segs > 1 {
                    batch.set_segment_size(msgs, &mut hdr, size as u16);
                }
                batch.hdrs[msgs] = libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                };
                batch.segments[msgs] = segs;
                msgs += 1;
                next += segs;
                iov_used += segs;
            }
            // SAFETY: headers point at `batch` arrays and at payloads owned by
            // `queue`, neither of which changes during the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    msgs as libc::c_uint,
                    0,
                )
            };
            if r > 0 {
                let sent: usize = batch.segments[..r as usize].iter().sum();
                queue.drain(..sent);
                singles = singles.saturating_sub(sent);
                out.sent += sent;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    out.blocked = true;
                    return out;
                }
                Some(libc::ENOBUFS) => {
                    out.blocked = true;
                    out.no_buffers = true;
                    return out;
                }
                // A pending asynchronous error (from an earlier ICMP) is
                // reported by this call and cleared: the datagram was not
                // sent, try it again.
                Some(
                    libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN,
                ) if soft_errors < 4 => {
                    soft_errors += 1;
                    continue;
                }
                errno if batch.segments[0] > 1 => {
                    // The kernel refused the GSO message (segment larger than
                    // the path MTU, no checksum offload on the device, ...):
                    // send its datagrams one by one. EIO means the device can
                    // never do it: stop using GSO on this socket.
                    if errno == Some(libc::EIO) {
                        self.gso.store(false, Ordering::Relaxed);
                    }
                    singles = batch.segments[0];
                }
                _ => {
                    // This datagram can never be sent (family, size, route):
                    // drop it rather than spin on it.
                    queue.pop_front();
                    singles = singles.saturating_sub(1);
                    out.dropped += 1;
                }
            }
        }
        out
    }

    /// Reads one entry from the error queue (`MSG_ERRQUEUE`); `Ok(None)` when
    /// it is empty.
    pub fn read_error(&self) -> io::Result<Option<IcmpError>> {
        loop {
            // SAFETY: zeroed sockaddr_storage is valid.
            let mut name: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let mut data = [0u8; 32];
            let mut control = [0u64; 64];
            let mut iov = libc::iovec {
                iov_base: data.as_mut_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            // SAFETY: msghdr is a plain C struct; zero is a valid starting state.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = &mut name as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = mem::size_of_val(&control) as _;
            // SAFETY: all pointers refer to live locals of the given sizes.
            let r = unsafe {
                libc::recvmsg(
                    self.fd.as_raw_fd(),
                    &mut hdr,
                    libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(None),
                    _ => return Err(e),
                }
            }
            let destination = read_sockaddr(&name);
            let mut found = None;
            // SAFETY: the kernel filled `hdr.msg_control` with well-formed
            // cmsgs up to `msg_controllen`; the CMSG_* helpers stay inside it.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
                while !cmsg.is_null() {
                    let c = &*cmsg;
                    let is_err = (c.cmsg_level == libc::IPPROTO_IP
                        && c.cmsg_type == libc::IP_RECVERR)
                        || (c.cmsg_level == libc::IPPROTO_IPV6
                            && c.cmsg_type == libc::IPV6_RECVERR);
                    if is_err {
                        let ee: libc::sock_extended_err = std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg) as *const libc::sock_extended_err,
                        );
                        found = Some(ee);
                        break;
                    }
                    cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
                }
            }
            let (Some(ee), Some(destination)) = (found, destination) else {
                // Not something we understand; skip it.
                continue;
            };
            return Ok(Some(IcmpError {
                destination,
                kind: classify(&ee),
                errno: ee.ee_errno as i32,
                original: data,
                original_len: (r as usize).min(data.len()),
            }));
        }
    }
}

fn classify(ee: &libc::sock_extended_err) -> IcmpKind {
    match ee.ee_origin {
        libc::SO_EE_ORIGIN_ICMP => match (ee.ee_type, ee.ee_code) {
            (3, 3) => IcmpKind::PortUnreachable,
            (3, 4) => IcmpKind::FragNeeded { mtu: ee.ee_info },
            _ => IcmpKind::Other {
                origin: ee.ee_origin,
                icmp_type: ee.ee_type,
                code: ee.ee_code,
            },
        },
        libc::SO_EE_ORIGIN_ICMP6 => match (ee.ee_type, ee.ee_code) {
            (1, 4) => IcmpKind::PortUnreachable,
            (2, _) => IcmpKind::FragNeeded { mtu: ee.ee_info },
            _ => IcmpKind::Other {
                origin: ee.ee_origin,
                icmp_type: ee.ee_type,
                code: ee.ee_code,
            },
        },
        libc::SO_EE_ORIGIN_LOCAL if ee.ee_errno as i32 == libc::EMSGSIZE => {
            IcmpKind::FragNeeded { mtu: ee.ee_info }
        }
        _ => IcmpKind::Other {
            origin: ee.ee_origin,
            icmp_type: ee.ee_type,
            code: ee.ee_code,
        },
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reused arrays for `recvmmsg`: no allocation per datagram.
pub struct RecvBatch {
    slots: usize,
    buf_size: usize,
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    controls: Box<[[u64; RECV_CONTROL_WORDS]]>,
    /// Size of the datagrams coalesced into each message (GRO); the whole
    /// message when the kernel did not coalesce.
    segment_sizes: Box<[usize]>,
    len: usize,
}

// SAFETY: the raw pointers inside the headers only ever point into the
// batch's own boxed arrays, and are rewritten before every call.
unsafe impl Send for RecvBatch {}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.slots)
            .field("buf_size", &self.buf_size)
            .field("len", &self.len)
            .finish()
    }
}

impl RecvBatch {
    /// Room for [`BATCH`] messages of up to `buf_size` bytes each (see
    /// [`UdpSocket::recv_buffer_len`]). The buffers are allocated zeroed, so
    /// only the pages the kernel actually writes become resident.
    pub fn new(buf_size: usize) -> RecvBatch {
        let slots = BATCH;
        // SAFETY: these are plain C structs; all-zero is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        RecvBatch {
            slots,
            buf_size,
            bufs: vec![0u8; slots * buf_size].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                slots
            ]
            .into_boxed_slice(),
            addrs: vec![zero_addr; slots].into_boxed_slice(),
            hdrs: vec![zero_hdr; slots].into_boxed_slice(),
            controls: vec![[0u64; RECV_CONTROL_WORDS]; slots].into_boxed_slice(),
            segment_sizes: vec![0; slots].into_boxed_slice(),
            len: 0,
        }
    }

    /// Number of messages from the last receive (each may hold several
    /// datagrams).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the GRO segment size of each received message.
    fn read_segment_sizes(&mut self) {
        for i in 0..self.len {
            let hdr = &self.hdrs[i].msg_hdr;
            let mut size = self.hdrs[i].msg_len as usize;
            // SAFETY: the kernel filled `msg_control` with well-formed cmsgs
            // up to `msg_controllen`; the CMSG_* helpers stay inside it.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
                while !cmsg.is_null() {
                    let c = &*cmsg;
                    if c.cmsg_level == libc::SOL_UDP && c.cmsg_type == libc::UDP_GRO {
                        let gso: libc::c_int =
                            std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                        if gso > 0 {
                            size = gso as usize;
                        }
                        break;
                    }
                    cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
                }
            }
            self.segment_sizes[i] = size;
        }
    }

    /// Every datagram of the last receive, in order: sender and payload.
    /// Truncated messages and non-IP senders are skipped.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> + '_ {
        (0..self.len).flat_map(move |i| {
            let h = &self.hdrs[i];
            let addr = if h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 {
                read_sockaddr(&self.addrs[i])
            } else {
                None
            };
            let start = i * self.buf_size;
            let data = &self.bufs[start..start + (h.msg_len as usize).min(self.buf_size)];
            let seg = self.segment_sizes[i].max(1);
            // An empty datagram is still one datagram.
            let count = data.len().div_ceil(seg).max(1);
            addr.into_iter().flat_map(move |a| {
                (0..count).map(move |k| (a, &data[k * seg..((k + 1) * seg).min(data.len())]))
            })
        })
    }
}

/// Reused arrays for `sendmmsg`; the payloads stay where they are.
pub struct SendBatch {
    /// Up to [`MAX_SEGMENTS`] iovecs per message.
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// `UDP_SEGMENT` control messages, one per GSO message.
    controls: Box<[[u64; 4]]>,
    /// Datagrams in each message of the current call.
    segments: Box<[usize]>,
}

// SAFETY: the pointers inside are rewritten before every call and not used after it.
unsafe impl Send for SendBatch {}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").finish_non_exhaustive()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// Arrays for one `sendmmsg` call's worth of messages, allocated once.
    pub fn new() -> SendBatch {
        // SAFETY: these are plain C structs; all-zero is a valid value.
        let zero_addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        SendBatch {
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH * MAX_SEGMENTS
            ]
            .into_boxed_slice(),
            addrs: vec![zero_addr; BATCH].into_boxed_slice(),
            hdrs: vec![zero_hdr; BATCH].into_boxed_slice(),
            controls: vec![[0u64; 4]; BATCH].into_boxed_slice(),
            segments: vec![0; BATCH].into_boxed_slice(),
        }
    }

    /// Attaches a `UDP_SEGMENT` control message (segment size `size`) to
    /// message `i`.
    fn set_segment_size(&mut self, i: usize, hdr: &mut libc::msghdr, size: u16) {
        let control = &mut self.controls[i];
        hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        // SAFETY: CMSG_SPACE of two bytes fits the 32-byte buffer; the
        // helpers write only inside `msg_control[..msg_controllen]`.
        unsafe {
            hdr.msg_controllen = libc::CMSG_SPACE(mem::size_of::<u16>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(hdr);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn poll_in(sock: &UdpSocket, events: libc::c_short, ms: i32) -> libc::c_short {
        let mut p = libc::pollfd {
            fd: sock.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) };
        p.revents
    }

    fn round_trip(a_addr: SocketAddr, b_addr: SocketAddr) {
        let _ = round_trip_with(a_addr, b_addr, &SocketOptions::default(), |i| {
            (0..(i % 1400 + 1)).map(|j| (i + j) as u8).collect()
        });
    }

    /// Sends 200 datagrams (`payload(i)`) from a to b and checks each
    /// arrives once, in order, unchanged. Returns how many messages the
    /// receiver read them in.
    fn round_trip_with(
        a_addr: SocketAddr,
        b_addr: SocketAddr,
        opts: &SocketOptions,
        payload: impl Fn(u32) -> Vec<u8>,
    ) -> usize {
        let a = UdpSocket::bind(a_addr, opts).unwrap();
        let b = UdpSocket::bind(b_addr, opts).unwrap();
        assert!(a.recv_buffer_size() > 0);
        let mut dest = b.local_addr();
        if dest.ip().is_unspecified() {
            dest.set_ip(a_addr.ip());
        }
        let mut queue: VecDeque<(SocketAddr, Vec<u8>)> =
            (0..200u32).map(|i| (dest, payload(i))).collect();
        let mut sb = SendBatch::new();
        let out = a.send_queue(&mut sb, &mut queue);
        assert_eq!(out.sent, 200);
        assert!(queue.is_empty());
        let mut rb = RecvBatch::new(b.recv_buffer_len(2048));
        let mut got = 0u32;
        let mut messages = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < 200 && Instant::now() < deadline {
            poll_in(&b, libc::POLLIN, 100);
            let n = b.recv_batch(&mut rb).unwrap();
            assert!(n <= BATCH);
            messages += n;
            for (from, data) in rb.datagrams() {
                assert_eq!(from.port(), a.local_addr().port());
                assert_eq!(data, &payload(got)[..], "datagram {got}");
                got += 1;
            }
        }
        assert_eq!(got, 200);
        messages
    }

    fn opts(gso: bool, gro: bool) -> SocketOptions {
        SocketOptions {
            gso,
            gro,
            ..SocketOptions::default()
        }
    }

    /// Runs of equal sizes with a shorter last one, size changes, and an
    /// empty datagram: exercises how GSO groups and how GRO splits.
    fn runs(i: u32) -> Vec<u8> {
        let len = match i {
            0..=99 => 1400,
            100 => 700,
            101..=149 => 1000 - (i as usize % 3),
            150 => 0,
            _ => 1200,
        };
        (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
    }

    #[test]
    fn gso_and_gro_keep_datagram_boundaries() {
        let v4: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6: SocketAddr = "[::1]:0".parse().unwrap();
        for (gso, gro) in [(true, true), (true, false), (false, true), (false, false)] {
            for addr in [v4, v6] {
                let messages = round_trip_with(addr, addr, &opts(gso, gro), runs);
                if !(gso && gro) {
                    assert_eq!(messages, 200, "gso {gso} gro {gro}");
                } else {
                    // Loopback hands a GSO message to a GRO socket whole.
                    assert!(messages < 100, "{messages} messages for 200 datagrams");
                }
            }
        }
    }

    #[test]
    fn gso_is_detected_on_this_kernel() {
        // Every kernel this project supports (4.18+) has UDP_SEGMENT; the
        // option only turns it off.
        let on = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &opts(true, true)).unwrap();
        assert!(on.gso_enabled());
        assert!(on.recv_buffer_len(1500) >= 65535 || !on.gro_enabled());
        let off = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &opts(false, false)).unwrap();
        assert!(!off.gso_enabled());
        assert!(!off.gro_enabled());
        assert_eq!(off.recv_buffer_len(1500), 1500);
    }

    #[test]
    fn gso_runs_to_several_peers_interleave_correctly() {
        let o = SocketOptions::default();
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &o).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &o).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &o).unwrap();
        // b, b, b, c, c, b, ... in runs of 1..5: groups must break at every
        // change of destination.
        let mut q = VecDeque::new();
        let mut expect_b = Vec::new();
        let mut expect_c = Vec::new();
        for i in 0..300u32 {
            let to_b = (i / (1 + i % 5)) % 2 == 0;
            let data = vec![(i % 251) as u8; 1300];
            if to_b {
                q.push_back((b.local_addr(), data.clone()));
                expect_b.push(data);
            } else {
                q.push_back((c.local_addr(), data.clone()));
                expect_c.push(data);
            }
        }
        let out = a.send_queue(&mut SendBatch::new(), &mut q);
        assert_eq!(out.sent, 300);
        for (sock, expect) in [(&b, expect_b), (&c, expect_c)] {
            let mut rb = RecvBatch::new(sock.recv_buffer_len(2048));
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while got.len() < expect.len() && Instant::now() < deadline {
                poll_in(sock, libc::POLLIN, 100);
                sock.recv_batch(&mut rb).unwrap();
                got.extend(rb.datagrams().map(|(_, d)| d.to_vec()));
            }
            assert_eq!(got, expect);
        }
    }

    #[test]
    fn mmsg_round_trip_v4() {
        round_trip(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
    }

    #[test]
    fn mmsg_round_trip_v6() {
        round_trip("[::1]:0".parse().unwrap(), "[::1]:0".parse().unwrap());
    }

    #[test]
    fn dual_stack_sees_ipv4_peers_as_ipv4() {
        let opts = SocketOptions::default();
        let server = UdpSocket::bind("[::]:0".parse().unwrap(), &opts).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let dest: SocketAddr =
            SocketAddr::new("127.0.0.1".parse().unwrap(), server.local_addr().port());
        let mut q = VecDeque::from(vec![(dest, b"hello".to_vec())]);
        assert_eq!(client.send_queue(&mut SendBatch::new(), &mut q).sent, 1);
        poll_in(&server, libc::POLLIN, 2000);
        let mut rb = RecvBatch::new(server.recv_buffer_len(2048));
        assert_eq!(server.recv_batch(&mut rb).unwrap(), 1);
        let (from, data) = rb.datagrams().next().unwrap();
        assert_eq!(from, client.local_addr());
        assert_eq!(data, b"hello");
        // And the reply to an IPv4 address goes out through the IPv6 socket.
        let mut q = VecDeque::from(vec![(from, b"back".to_vec())]);
        assert_eq!(server.send_queue(&mut SendBatch::new(), &mut q).sent, 1);
        poll_in(&client, libc::POLLIN, 2000);
        assert_eq!(client.recv_batch(&mut rb).unwrap(), 1);
        assert_eq!(rb.datagrams().next().unwrap().1, b"back");
    }

    fn closed_port(ip: &str) -> SocketAddr {
        // Bind then close: the port is very likely free right after.
        let ip: std::net::IpAddr = ip.parse().unwrap();
        let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        s.local_addr().unwrap()
    }

    fn port_unreachable(local: &str, remote_ip: &str) {
        let sock = UdpSocket::bind(local.parse().unwrap(), &SocketOptions::default()).unwrap();
        let dest = closed_port(remote_ip);
        let mut q = VecDeque::from(vec![(dest, b"anyone?".to_vec())]);
        assert_eq!(sock.send_queue(&mut SendBatch::new(), &mut q).sent, 1);
        let revents = poll_in(&sock, 0, 2000);
        assert!(revents & libc::POLLERR != 0, "no POLLERR: {revents:#x}");
        let err = sock.read_error().unwrap().expect("an error queue entry");
        assert_eq!(err.destination, dest);
        assert_eq!(err.kind, IcmpKind::PortUnreachable);
        assert_eq!(err.errno, libc::ECONNREFUSED);
        assert_eq!(&err.original[..err.original_len], b"anyone?");
        assert_eq!(sock.read_error().unwrap(), None);
        // The pending error must not break later sends.
        let mut q = VecDeque::from(vec![(dest, b"again".to_vec())]);
        let out = sock.send_queue(&mut SendBatch::new(), &mut q);
        assert_eq!(out.sent + out.dropped, 1);
        assert_eq!(out.sent, 1);
    }

    #[test]
    fn error_queue_reports_port_unreachable_v4() {
        port_unreachable("127.0.0.1:0", "127.0.0.1");
    }

    #[test]
    fn error_queue_reports_port_unreachable_v6() {
        port_unreachable("[::1]:0", "::1");
    }

    #[test]
    fn error_queue_reports_port_unreachable_dual_stack_v4_peer() {
        port_unreachable("[::]:0", "127.0.0.1");
    }

    #[test]
    fn wrong_family_is_dropped_not_spun_on() {
        let sock =
            UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &SocketOptions::default()).unwrap();
        let ok = closed_port("127.0.0.1");
        let mut q = VecDeque::from(vec![
            ("[::1]:9".parse().unwrap(), b"x".to_vec()),
            (ok, b"y".to_vec()),
        ]);
        let out = sock.send_queue(&mut SendBatch::new(), &mut q);
        assert_eq!(
            out,
            SendOutcome {
                sent: 1,
                dropped: 1,
                ..Default::default()
            }
        );
        assert!(q.is_empty());
    }

    #[test]
    fn full_send_buffer_blocks_and_keeps_datagrams() {
        let opts = SocketOptions {
            dual_stack: false,
            buffer_size: 4096,
            ..SocketOptions::default()
        };
        let a = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let b = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &opts).unwrap();
        let dest = b.local_addr();
        // Loopback delivers synchronously, so the *receiver's* buffer fills
        // and the excess is dropped there; the sender rarely sees EAGAIN.
        // What must hold: everything is either sent or still queued.
        let mut q: VecDeque<(SocketAddr, Vec<u8>)> =
            (0..5000).map(|_| (dest, vec![7u8; 1400])).collect();
        let out = a.send_queue(&mut SendBatch::new(), &mut q);
        assert_eq!(out.dropped, 0);
        assert_eq!(out.sent + q.len(), 5000);
        assert_eq!(out.blocked, !q.is_empty());
    }
}
