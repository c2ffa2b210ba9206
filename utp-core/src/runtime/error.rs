//! One mapping from the runtime's errors to `io::ErrorKind` and errno, used
//! by every front end (C, Python, Node), so they cannot disagree.

use std::io;

use crate::endpoint::ConnectionError;

/// The `io::Error` a failed connection reports.
pub fn connection_error(e: ConnectionError) -> io::Error {
    match e {
        ConnectionError::Refused => {
            io::Error::new(io::ErrorKind::ConnectionRefused, "uTP connection refused")
        }
        ConnectionError::Reset => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "uTP connection reset by peer",
        ),
        ConnectionError::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "uTP connection timed out")
        }
    }
}

/// The errno of an error from this library: the OS error when there is one,
/// else the one matching its kind (`EIO` when nothing fits).
pub fn errno_of(e: &io::Error) -> i32 {
    if let Some(code) = e.raw_os_error() {
        return code;
    }
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => libc::ECONNREFUSED,
        K::ConnectionReset => libc::ECONNRESET,
        K::ConnectionAborted => libc::ECONNABORTED,
        K::TimedOut => libc::ETIMEDOUT,
        K::BrokenPipe => libc::EPIPE,
        K::WouldBlock => libc::EAGAIN,
        K::InvalidInput | K::InvalidData => libc::EINVAL,
        K::NotConnected => libc::ENOTCONN,
        K::AddrInUse => libc::EADDRINUSE,
        K::AddrNotAvailable => libc::EADDRNOTAVAIL,
        K::PermissionDenied => libc::EACCES,
        K::Interrupted => libc::EINTR,
        K::OutOfMemory => libc::ENOMEM,
        K::Unsupported => libc::EOPNOTSUPP,
        K::NotFound => libc::ENOENT,
        _ => libc::EIO,
    }
}

/// The symbolic name of an errno (`"ECONNREFUSED"`), as Node's `err.code`
/// gives it; `"EIO"` for codes this library never produces.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EPIPE => "EPIPE",
        libc::EAGAIN => "EAGAIN",
        libc::EINVAL => "EINVAL",
        libc::ENOTCONN => "ENOTCONN",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EACCES => "EACCES",
        libc::EINTR => "EINTR",
        libc::ENOMEM => "ENOMEM",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOBUFS => "ENOBUFS",
        _ => "EIO",
    }
}

/// The error for a call on a handle that was already closed.
pub fn closed_handle() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_errno_and_names() {
        for (e, code, name) in [
            (ConnectionError::Refused, libc::ECONNREFUSED, "ECONNREFUSED"),
            (ConnectionError::Reset, libc::ECONNRESET, "ECONNRESET"),
            (ConnectionError::TimedOut, libc::ETIMEDOUT, "ETIMEDOUT"),
        ] {
            let io = connection_error(e);
            assert_eq!(errno_of(&io), code);
            assert_eq!(errno_name(code), name);
        }
        assert_eq!(
            errno_of(&io::Error::from(io::ErrorKind::WouldBlock)),
            libc::EAGAIN
        );
        assert_eq!(
            errno_of(&io::Error::from_raw_os_error(libc::EADDRINUSE)),
            libc::EADDRINUSE
        );
        assert_eq!(errno_of(&closed_handle()), libc::EBADF);
        assert_eq!(errno_name(12345), "EIO");
    }
}
