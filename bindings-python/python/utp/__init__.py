"""uTP (BEP 29, the Micro Transport Protocol) for Python.

Reliable, ordered byte streams over UDP with LEDBAT congestion control, with
the look of the standard library's ``socket`` module::

    import utp

    with utp.create_server(("127.0.0.1", 9000)) as server:
        conn, addr = server.accept()
        ...

    with utp.create_connection(("127.0.0.1", 9000)) as sock:
        sock.sendall(b"hello")

and asyncio streams (``utp.open_connection``, ``utp.start_server``). A
:class:`Context` is one UDP port that listens and connects at once, the way
BitTorrent clients use uTP.

Errors are ``OSError`` subclasses with ``errno`` set
(``ConnectionRefusedError``, ``ConnectionResetError``, ``TimeoutError``,
``BrokenPipeError``, ``BlockingIOError``); calls on a closed socket raise
``OSError(EBADF)``. Blocking calls release the GIL and can be interrupted
with Ctrl-C.
"""

import atexit
import errno as _errno
import io as _io
import os as _os
import socket as _socket
import threading as _threading
import weakref as _weakref

from . import _utp

__all__ = [
    "Context",
    "UTPSocket",
    "Listener",
    "create_connection",
    "create_server",
    "open_connection",
    "start_server",
    "SHUT_RD",
    "SHUT_WR",
    "SHUT_RDWR",
]

SHUT_RD = _socket.SHUT_RD
SHUT_WR = _socket.SHUT_WR
SHUT_RDWR = _socket.SHUT_RDWR

_DEFAULT_LINGER = 30.0


def _closed_error():
    return OSError(_errno.EBADF, _os.strerror(_errno.EBADF))


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number or None, not %s" % type(timeout).__name__)
    timeout = float(timeout)
    if timeout != timeout or timeout < 0:
        raise ValueError("Timeout value out of range")
    return timeout


def _resolve(address, family=0, passive=False):
    """(host, port) -> (numeric ip, port) via getaddrinfo."""
    if not isinstance(address, tuple) or len(address) < 2:
        raise TypeError("address must be a (host, port) tuple")
    host, port = address[0], address[1]
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError("port must be an int")
    if not 0 <= port <= 65535:
        raise ValueError("port must be 0-65535")
    if host in ("", None):
        host = "0.0.0.0" if family != _socket.AF_INET6 else "::"
    if not isinstance(host, str):
        raise TypeError("host must be a str")
    infos = _socket.getaddrinfo(
        host, port, family, _socket.SOCK_DGRAM, 0, _socket.AI_PASSIVE if passive else 0
    )
    if not infos:
        raise OSError("getaddrinfo returned nothing for %r" % (host,))
    return [(info[4][0], info[4][1]) for info in infos]


# Sockets still open at interpreter exit: closed gracefully then, so queued
# data still arrives (bounded by each context's linger time).
_open_sockets = _weakref.WeakSet()
_open_lock = _threading.Lock()


_exiting = False


def _held_at_exit(err):
    """A blocking call in another thread that the exit-time close below cut
    short: as with a plain socket, that (daemon) thread stays blocked until
    the interpreter is gone, instead of printing an EBADF traceback."""
    if (
        _exiting
        and getattr(err, "errno", None) == _errno.EBADF
        and _threading.current_thread() is not _threading.main_thread()
    ):
        _threading.Event().wait()


@atexit.register
def _close_all_at_exit():
    global _exiting
    _exiting = True
    with _open_lock:
        socks = list(_open_sockets)
    for s in socks:
        try:
            s._close_at_exit()
        except Exception:
            pass


class Context:
    """One UDP port and its I/O thread: accepts incoming connections and
    makes outgoing ones from the same port.

    ``Context(("0.0.0.0", 6881))``; ``backlog=0`` refuses incoming
    connections. ``linger`` bounds (in seconds) how long closing waits to
    deliver queued data.
    """

    def __init__(self, address=("0.0.0.0", 0), *, backlog=128, linger=_DEFAULT_LINGER):
        if backlog is None:
            backlog = 128
        if not isinstance(backlog, int) or isinstance(backlog, bool) or backlog < 0:
            raise ValueError("backlog must be a non-negative int")
        linger = _check_timeout(linger)
        last = None
        for host, port in _resolve(address, passive=True):
            try:
                self._ctx = _utp.Context(host, port, backlog, linger)
                break
            except OSError as e:
                last = e
        else:
            raise last
        self._closed = False
        self._timeout = _socket.getdefaulttimeout()

    def getsockname(self):
        """The bound ``(host, port)``."""
        return self._ctx.local_address()

    def connect(self, address, timeout=None):
        """Connects from this context's port; returns a :class:`UTPSocket`."""
        timeout = _check_timeout(timeout)
        family = _socket.AF_INET6 if ":" in self.getsockname()[0] else _socket.AF_INET
        last = None
        for host, port in _resolve(address, family=0):
            if family == _socket.AF_INET and ":" in host:
                continue
            if family == _socket.AF_INET6 and ":" not in host:
                host = "::ffff:" + host
            try:
                return UTPSocket._wrap(self._ctx.connect(host, port, timeout), self)
            except OSError as e:
                last = e
        if last is None:
            raise OSError(_errno.EAFNOSUPPORT, "no address of a usable family")
        raise last

    def accept(self, timeout=None):
        """The next incoming connection: ``(UTPSocket, address)``."""
        if self._closed:
            raise _closed_error()
        if timeout is None:
            timeout = self._timeout
        try:
            stream, addr = self._ctx.accept(_check_timeout(timeout))
        except OSError as e:
            _held_at_exit(e)
            raise
        return UTPSocket._wrap(stream, self), addr

    def settimeout(self, timeout):
        """Timeout of ``accept`` (``None`` blocks, 0 never blocks)."""
        self._timeout = _check_timeout(timeout)

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def fileno(self):
        """Polls readable while a connection waits for ``accept``."""
        if self._closed:
            return -1
        return self._ctx.fileno()

    def close(self):
        """Stops accepting. Connections already made keep working."""
        if not self._closed:
            self._closed = True
            self._ctx.close()

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<utp.Context %s:%d%s>" % (
            self.getsockname()[0],
            self.getsockname()[1],
            " closed" if self._closed else "",
        )


class Listener:
    """What :func:`create_server` returns: ``accept()``, ``getsockname()``,
    ``close()``, ``fileno()``, a context manager. ``listener.context``
    connects from the same port."""

    def __init__(self, context):
        self.context = context

    def accept(self):
        return self.context.accept()

    def getsockname(self):
        return self.context.getsockname()

    def settimeout(self, timeout):
        self.context.settimeout(timeout)

    def gettimeout(self):
        return self.context.gettimeout()

    def setblocking(self, flag):
        self.context.setblocking(flag)

    def fileno(self):
        return self.context.fileno()

    def close(self):
        self.context.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<utp.Listener %r>" % (self.getsockname(),)


class UTPSocket:
    """A uTP connection with the methods of ``socket.socket``: ``send``,
    ``sendall``, ``recv``, ``recv_into``, ``shutdown``, ``close``,
    ``settimeout``, ``gettimeout``, ``setblocking``, ``getpeername``,
    ``getsockname``, ``makefile``, ``fileno`` (for ``selectors``) and
    ``stats()``."""

    def __init__(self, *args, **kwargs):
        raise TypeError("use utp.create_connection, utp.create_server or Context.connect")

    @classmethod
    def _wrap(cls, stream, context):
        self = object.__new__(cls)
        self._stream = stream
        self._context = context  # keeps a shared context object alive
        self._timeout = _socket.getdefaulttimeout()
        self._closed = False
        self._io_refs = 0
        self._lock = _threading.Lock()
        with _open_lock:
            _open_sockets.add(self)
        return self

    def _s(self):
        if self._closed:
            raise _closed_error()
        return self._stream

    # -- data
    def recv(self, bufsize, flags=0):
        if flags:
            raise ValueError("flags are not supported")
        if not isinstance(bufsize, int) or isinstance(bufsize, bool):
            raise TypeError("bufsize must be an int")
        try:
            return self._s().recv(bufsize, self._timeout)
        except OSError as e:
            _held_at_exit(e)
            raise

    def recv_into(self, buffer, nbytes=0, flags=0):
        if flags:
            raise ValueError("flags are not supported")
        try:
            return self._s().recv_into(buffer, nbytes, self._timeout)
        except OSError as e:
            _held_at_exit(e)
            raise

    def send(self, data, flags=0):
        if flags:
            raise ValueError("flags are not supported")
        try:
            return self._s().send(_as_bytes(data), self._timeout)
        except OSError as e:
            _held_at_exit(e)
            raise

    def sendall(self, data, flags=0):
        if flags:
            raise ValueError("flags are not supported")
        try:
            self._s().sendall(_as_bytes(data), self._timeout)
        except OSError as e:
            _held_at_exit(e)
            raise

    def shutdown(self, how):
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise ValueError("how must be SHUT_RD, SHUT_WR or SHUT_RDWR")
        self._s().shutdown(how)

    # -- lifetime
    def close(self):
        """Closes without waiting: queued data is still delivered in the
        background (and before the interpreter exits)."""
        if self._closed:
            return
        self._closed = True
        with _open_lock:
            _open_sockets.discard(self)
        if self._io_refs <= 0:
            self._stream.close()

    def close_and_wait(self, timeout=_DEFAULT_LINGER):
        """Closes and waits until the peer acknowledged everything sent;
        raises if that fails or ``timeout`` passes first."""
        stream = self._s()
        self._closed = True
        with _open_lock:
            _open_sockets.discard(self)
        stream.close(_check_timeout(timeout) or 0.001)

    def abort(self):
        """Closes at once with a RESET; queued data is dropped."""
        if not self._closed:
            self._closed = True
            with _open_lock:
                _open_sockets.discard(self)
            self._stream.abort()

    def _close_at_exit(self):
        if not self._closed:
            self._closed = True
            try:
                self._stream.close(_DEFAULT_LINGER)
            except OSError:
                pass

    def detach(self):
        raise OSError(_errno.EOPNOTSUPP, "uTP sockets have no file descriptor to detach")

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Garbage collected while open: close gracefully, never block.
        try:
            if not self._closed:
                self._closed = True
                self._stream.close()
        except Exception:
            pass

    # -- timeouts
    def settimeout(self, timeout):
        self._timeout = _check_timeout(timeout)

    def gettimeout(self):
        return self._timeout

    def setblocking(self, flag):
        self._timeout = None if flag else 0.0

    def getblocking(self):
        return self._timeout != 0.0

    # -- addresses and state
    def getpeername(self):
        return self._s().peer_address()

    def getsockname(self):
        return self._s().local_address()

    def fileno(self):
        """A descriptor that polls readable while a read would not block
        (level-triggered); -1 once closed. Works with ``selectors``."""
        if self._closed:
            return -1
        return self._stream.fileno(5)

    def stats(self):
        """The connection's statistics (bytes, packets, retransmissions,
        RTT, window, delays) as a dict."""
        return self._s().stats()

    @property
    def family(self):
        return _socket.AF_INET6 if ":" in self.getsockname()[0] else _socket.AF_INET

    @property
    def type(self):
        return _socket.SOCK_STREAM

    @property
    def proto(self):
        return 0

    # -- files
    def makefile(self, mode="r", buffering=None, *, encoding=None, errors=None, newline=None):
        """A file object over the socket, as ``socket.socket.makefile``."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError("invalid mode %r (only r, w, b allowed)" % (mode,))
        writing = "w" in mode
        reading = "r" in mode or not writing
        assert reading or writing
        binary = "b" in mode
        rawmode = ""
        if reading:
            rawmode += "r"
        if writing:
            rawmode += "w"
        raw = _socket.SocketIO(self, rawmode)
        self._io_refs += 1
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = _io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        if reading and writing:
            buffer = _io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffer = _io.BufferedReader(raw, buffering)
        else:
            buffer = _io.BufferedWriter(raw, buffering)
        if binary:
            return buffer
        text = _io.TextIOWrapper(buffer, encoding, errors, newline)
        text.mode = mode
        return text

    def _decref_socketios(self):
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._stream.close()

    def __repr__(self):
        if self._closed:
            return "<utp.UTPSocket [closed]>"
        return "<utp.UTPSocket laddr=%r raddr=%r>" % (self.getsockname(), self.getpeername())


def _as_bytes(data):
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise TypeError("a bytes-like object is required, not %r" % type(data).__name__) from None


def create_connection(address, timeout=None, source_address=None):
    """Connects to ``(host, port)`` and returns a :class:`UTPSocket`, as
    ``socket.create_connection`` does. ``source_address`` binds the local
    side; otherwise a private UDP port is used."""
    timeout = _check_timeout(timeout if timeout is not None else _socket.getdefaulttimeout())
    last = None
    for host, port in _resolve(address):
        if source_address is not None:
            local = source_address
        else:
            local = ("::", 0) if ":" in host else ("0.0.0.0", 0)
        try:
            ctx = Context(local, backlog=0)
            sock = ctx.connect((host, port), timeout=timeout)
            sock.settimeout(timeout)
            return sock
        except OSError as e:
            last = e
    raise last


def create_server(address, *, backlog=None, family=None, reuse_port=False):
    """Listens on ``(host, port)`` and returns a :class:`Listener`, as
    ``socket.create_server`` does."""
    if reuse_port:
        raise ValueError("reuse_port is not supported for uTP")
    return Listener(Context(address, backlog=backlog))


from ._asyncio import open_connection, start_server  # noqa: E402
