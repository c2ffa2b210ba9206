//! `struct sockaddr` <-> `SocketAddr`, the way libutp folds addresses:
//! IPv4 and IPv4-mapped IPv6 peers are presented as `sockaddr_in` (16 bytes),
//! everything else as `sockaddr_in6` (28 bytes, flow info and scope id zero).

use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::types::{sockaddr, socklen_t};

/// libutp's canonical form: v4-mapped IPv6 becomes IPv4.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    if let IpAddr::V6(v6) = addr.ip() {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return SocketAddr::new(IpAddr::V4(v4), addr.port());
        }
    }
    addr
}

/// Read a C socket address. `None` for NULL, an unknown family or a short length.
///
/// # Safety
/// `sa` must be NULL or point to at least `len` readable bytes.
pub(crate) unsafe fn from_c(sa: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if sa.is_null() || (len as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above); read unaligned.
    let family = unsafe { std::ptr::read_unaligned(sa as *const libc::sa_family_t) };
    match family as i32 {
        libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: len covers a sockaddr_in.
            let sin = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: len covers a sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(canonical(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            )))
        }
        _ => None,
    }
}

/// A C socket address built from `addr`, large enough for either family.
#[derive(Clone, Copy)]
pub(crate) struct CAddr {
    storage: libc::sockaddr_storage,
    len: socklen_t,
}

impl std::fmt::Debug for CAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CAddr")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl CAddr {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = match canonical(addr) {
            SocketAddr::V4(v4) => {
                // SAFETY: as above.
                let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                // SAFETY: as above.
                let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        CAddr {
            storage,
            len: len as socklen_t,
        }
    }

    pub(crate) fn as_ptr(&self) -> *const sockaddr {
        &self.storage as *const libc::sockaddr_storage as *const sockaddr
    }

    pub(crate) fn len(&self) -> socklen_t {
        self.len
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `storage` is `len` (<= its size) initialised bytes.
        unsafe { std::slice::from_raw_parts(self.as_ptr() as *const u8, self.len as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_folding() {
        for s in ["127.0.0.1:4000", "[::1]:5", "[2001:db8::7]:65535"] {
            let a: SocketAddr = s.parse().unwrap();
            let c = CAddr::new(a);
            assert_eq!(unsafe { from_c(c.as_ptr(), c.len()) }, Some(a));
        }
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:77".parse().unwrap();
        let c = CAddr::new(mapped);
        assert_eq!(c.len() as usize, size_of::<libc::sockaddr_in>());
        assert_eq!(
            unsafe { from_c(c.as_ptr(), c.len()) },
            Some("10.1.2.3:77".parse().unwrap())
        );
        assert_eq!(unsafe { from_c(c.as_ptr(), 3) }, None);
        assert_eq!(unsafe { from_c(std::ptr::null(), 16) }, None);
    }
}
