"""asyncio over uTP: a Transport on ``loop.add_reader`` of the handle
layer's pollable descriptor (no thread per socket), and the stdlib's
``StreamReader``/``StreamWriter`` on top.

Flow control both ways: ``pause_reading`` stops reading from the handle, so
its buffer fills and the window the peer sees shrinks; the write buffer's
high-water mark pauses the protocol, which makes ``drain()`` wait.
"""

import asyncio
import errno as _errno
import os as _os

from . import _utp

# Readiness bits of `_utp.Stream.readiness()` and interest bits of `fileno()`.
_READABLE = 1
_WRITABLE = 2
_CLOSED_INTEREST = 4
_R_ERROR = 8
_R_CLOSED = 32

_READ_CHUNK = 256 * 1024
_WRITE_CHUNK = 256 * 1024


class _UTPTransport(asyncio.Transport):
    """One uTP stream driven by the event loop."""

    def __init__(self, loop, stream, protocol, keepalive, extra=None):
        super().__init__(extra)
        self._loop = loop
        self._stream = stream
        self._protocol = protocol
        self._keepalive = keepalive  # the Context object the stream lives on
        self._wbuf = bytearray()
        self._reading = True
        self._closing = False
        self._closed = False
        self._eof_pending = False
        self._eof_sent = False
        self._protocol_paused = False
        self._high = 1024 * 1024
        self._low = 256 * 1024
        self._interest = None
        self._fd = stream.fileno(_READABLE | _CLOSED_INTEREST)
        self._extra.setdefault("peername", stream.peer_address())
        self._extra.setdefault("sockname", stream.local_address())
        self._extra.setdefault("socket", None)
        loop.add_reader(self._fd, self._on_ready)
        self._update_interest()
        loop.call_soon(self._protocol.connection_made, self)
        # Data may already wait: look once the protocol is set up.
        loop.call_soon(self._on_ready)

    # -- readiness
    def _update_interest(self):
        if self._closed:
            return
        bits = _CLOSED_INTEREST
        if self._reading and not self._closing:
            bits |= _READABLE
        if self._wbuf:
            bits |= _WRITABLE
        if bits != self._interest:
            self._interest = bits
            self._stream.fileno(bits)

    def _on_ready(self):
        if self._closed:
            return
        r = self._stream.readiness()
        if self._wbuf and r & (_WRITABLE | _R_ERROR):
            self._flush()
            if self._closed:
                return
        if self._reading and not self._closing and r & (_READABLE | _R_ERROR):
            self._read_ready()
            if self._closed:
                return
        if r & _R_ERROR and not self._closed:
            err = self._stream.error()
            if err is not None:
                self._fatal(err)
                return
        if self._closing and not self._wbuf:
            self._finish(None)
            return
        self._update_interest()

    def _read_ready(self):
        for _ in range(16):
            try:
                data = self._stream.recv(_READ_CHUNK, 0.0)
            except BlockingIOError:
                return
            except OSError as e:
                self._fatal(e)
                return
            if not data:
                self._reading = False
                keep_open = self._protocol.eof_received()
                if not keep_open:
                    self.close()
                self._update_interest()
                return
            self._protocol.data_received(data)
            if not self._reading or self._closed:
                return

    def _flush(self):
        while self._wbuf:
            chunk = bytes(self._wbuf[:_WRITE_CHUNK])
            try:
                n = self._stream.send(chunk, 0.0)
            except BlockingIOError:
                break
            except OSError as e:
                self._fatal(e)
                return
            del self._wbuf[:n]
        self._maybe_resume_protocol()
        if not self._wbuf and self._eof_pending and not self._eof_sent:
            self._shutdown_write()
        self._update_interest()

    # -- writing
    def write(self, data):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data argument must be a bytes-like object, not %r" % type(data).__name__)
        if self._eof_pending or self._eof_sent:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or self._closed:
            return
        if not data:
            return
        if not self._wbuf:
            try:
                n = self._stream.send(bytes(data), 0.0)
            except BlockingIOError:
                n = 0
            except OSError as e:
                self._fatal(e)
                return
            data = memoryview(data)[n:]
            if not data:
                return
        self._wbuf.extend(data)
        self._maybe_pause_protocol()
        self._update_interest()

    def writelines(self, list_of_data):
        for d in list_of_data:
            self.write(d)

    def write_eof(self):
        if self._eof_pending or self._eof_sent or self._closed:
            return
        self._eof_pending = True
        if not self._wbuf:
            self._shutdown_write()

    def _shutdown_write(self):
        self._eof_sent = True
        try:
            self._stream.shutdown(1)
        except OSError as e:
            self._fatal(e)

    def can_write_eof(self):
        return True

    def get_write_buffer_size(self):
        return len(self._wbuf)

    def get_write_buffer_limits(self):
        return (self._low, self._high)

    def set_write_buffer_limits(self, high=None, low=None):
        if high is None:
            high = 4 * low if low is not None else 1024 * 1024
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError("high (%r) must be >= low (%r) must be >= 0" % (high, low))
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self):
        if len(self._wbuf) > self._high and not self._protocol_paused:
            self._protocol_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as e:  # pragma: no cover - protocol bug
                self._loop.call_exception_handler(
                    {"message": "protocol.pause_writing() failed", "exception": e, "transport": self}
                )

    def _maybe_resume_protocol(self):
        if self._protocol_paused and len(self._wbuf) <= self._low:
            self._protocol_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as e:  # pragma: no cover - protocol bug
                self._loop.call_exception_handler(
                    {"message": "protocol.resume_writing() failed", "exception": e, "transport": self}
                )

    # -- reading
    def pause_reading(self):
        if self._closing or not self._reading:
            return
        self._reading = False
        self._update_interest()

    def resume_reading(self):
        if self._closing or self._reading or self._closed:
            return
        self._reading = True
        self._update_interest()
        self._loop.call_soon(self._on_ready)

    def is_reading(self):
        return self._reading and not self._closing

    # -- closing
    def is_closing(self):
        return self._closing or self._closed

    def close(self):
        if self._closing or self._closed:
            return
        self._closing = True
        self._reading = False
        if not self._wbuf:
            self._loop.call_soon(self._finish, None)
        else:
            self._update_interest()

    def abort(self):
        if self._closed:
            return
        self._stream.abort()
        self._finish(None, graceful=False)

    def _fatal(self, exc):
        if self._closed:
            return
        self._stream.abort()
        self._finish(exc, graceful=False)

    def _finish(self, exc, graceful=True):
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._loop.remove_reader(self._fd)
        if graceful:
            # Queued data is still delivered in the background.
            self._stream.close()
        self._wbuf.clear()
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._protocol = None
            self._stream = None
            self._keepalive = None

    def get_protocol(self):
        return self._protocol

    def set_protocol(self, protocol):
        self._protocol = protocol

    def __del__(self):
        if not self._closed and self._stream is not None:
            try:
                self._stream.close()
            except Exception:
                pass


def _loop():
    return asyncio.get_running_loop() if hasattr(asyncio, "get_running_loop") else asyncio.get_event_loop()


async def _connect_stream(ctx, address, timeout):
    """Starts a connection on `ctx` and waits on its descriptor."""
    from . import _resolve

    loop = _loop()
    last = None
    local_v6 = ":" in ctx.getsockname()[0]
    for host, port in _resolve(address):
        if not local_v6 and ":" in host:
            continue
        if local_v6 and ":" not in host:
            host = "::ffff:" + host
        stream = ctx._ctx.start_connect(host, port)
        fd = stream.fileno(_WRITABLE | _CLOSED_INTEREST)
        done = loop.create_future()

        def ready(stream=stream, done=done):
            if not done.done() and not stream.is_connecting():
                done.set_result(None)

        loop.add_reader(fd, ready)
        try:
            if timeout is None:
                await done
            else:
                await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError:
            stream.abort()
            last = TimeoutError(_errno.ETIMEDOUT, "timed out")
            continue
        finally:
            loop.remove_reader(fd)
        err = stream.error()
        if err is not None:
            stream.abort()
            last = err
            continue
        return stream
    if last is None:
        last = OSError(_errno.EAFNOSUPPORT, "no address of a usable family")
    raise last


async def open_connection(host=None, port=None, *, limit=2 ** 16, local_addr=None, timeout=None, **kwds):
    """Connects and returns ``(asyncio.StreamReader, asyncio.StreamWriter)``,
    as ``asyncio.open_connection`` does."""
    from . import Context

    if kwds:
        raise TypeError("unsupported arguments: %s" % ", ".join(sorted(kwds)))
    loop = _loop()
    if local_addr is None:
        local_addr = ("::", 0) if host and ":" in host else ("0.0.0.0", 0)
    ctx = Context(local_addr, backlog=0)
    stream = await _connect_stream(ctx, (host, port), timeout)
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport = _UTPTransport(loop, stream, protocol, ctx)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    # connection_made runs on the next loop turn; let it.
    await asyncio.sleep(0)
    return reader, writer


class Server:
    """What :func:`start_server` returns: an ``asyncio.Server``-like object
    (``sockets``, ``close()``, ``wait_closed()``, ``serve_forever()``,
    ``is_serving()``, async context manager)."""

    def __init__(self, loop, context, protocol_factory):
        self._loop = loop
        self._context = context
        self._factory = protocol_factory
        self._serving = False
        self._closed = loop.create_future()
        self._serving_forever = None
        self._fd = context.fileno()
        self._transports = []

    def _start(self):
        if self._serving:
            return
        self._serving = True
        self._loop.add_reader(self._fd, self._accept_ready)
        self._loop.call_soon(self._accept_ready)

    def _accept_ready(self):
        if not self._serving:
            return
        while True:
            try:
                stream, _addr = self._context._ctx.accept(0.0)
            except BlockingIOError:
                return
            except OSError:
                return
            protocol = self._factory()
            _UTPTransport(self._loop, stream, protocol, self._context)

    @property
    def sockets(self):
        return (self._context,) if not self._closed.done() else ()

    def get_loop(self):
        return self._loop

    def is_serving(self):
        return self._serving

    async def start_serving(self):
        self._start()

    def close(self):
        if self._closed.done():
            return
        if self._serving:
            self._loop.remove_reader(self._fd)
        self._serving = False
        self._context.close()
        self._closed.set_result(None)
        if self._serving_forever is not None and not self._serving_forever.done():
            self._serving_forever.cancel()

    async def wait_closed(self):
        await asyncio.shield(self._closed)

    async def serve_forever(self):
        if self._serving_forever is not None:
            raise RuntimeError("serve_forever() is already running")
        if self._closed.done():
            raise RuntimeError("server is closed")
        self._start()
        self._serving_forever = self._loop.create_future()
        try:
            await self._serving_forever
        except asyncio.CancelledError:
            try:
                self.close()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()

    def __repr__(self):
        return "<utp.Server %r>" % (self._context.getsockname(),)


async def start_server(client_connected_cb, host=None, port=None, *, limit=2 ** 16, backlog=128, start_serving=True, **kwds):
    """Listens and calls ``client_connected_cb(reader, writer)`` for each
    connection, as ``asyncio.start_server`` does."""
    from . import Context

    if kwds:
        raise TypeError("unsupported arguments: %s" % ", ".join(sorted(kwds)))
    loop = _loop()
    ctx = Context((host or "0.0.0.0", port or 0), backlog=backlog)

    def factory():
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, client_connected_cb, loop=loop)

    server = Server(loop, ctx, factory)
    if start_serving:
        server._start()
    return server


def _strerror(code):
    return _os.strerror(code)
