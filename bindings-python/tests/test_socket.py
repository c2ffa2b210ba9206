"""The socket-module face: data, timeouts, errors, threads, lifetime."""

import errno
import gc
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import utp
from conftest import pattern, free_udp_port, run_python

MB = 1 << 20


def pair():
    server = utp.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    box = {}
    t = threading.Thread(target=lambda: box.update(conn=server.accept()[0]))
    t.start()
    client = utp.create_connection(("127.0.0.1", port), timeout=10)
    client.sendall(b"!")  # the accepted side appears with the first data
    t.join(10)
    conn = box["conn"]
    assert conn.recv(1) == b"!"
    return server, client, conn


def recv_exactly(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise EOFError("stream ended after %d of %d bytes" % (got, n))
        got += k
    return bytes(buf)


def test_echo_and_addresses():
    server, client, conn = pair()
    with server, client, conn:
        client.sendall(b"hello uTP")
        assert recv_exactly(conn, 9) == b"hello uTP"
        conn.sendall(b"back")
        assert client.recv(100) == b"back"
        assert client.getpeername() == ("127.0.0.1", server.getsockname()[1])
        assert conn.getpeername() == client.getsockname()
        assert client.getsockname()[0] == "127.0.0.1"
        assert client.type == socket.SOCK_STREAM and client.family == socket.AF_INET


def test_twenty_mb_each_way_byte_exact():
    server, client, conn = pair()
    up, down = pattern(20 * MB, 1), pattern(20 * MB, 2)
    got = {}

    def pump(sock, data, key):
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        got[key] = True

    def drain(sock, key):
        chunks = []
        buf = bytearray(MB)
        while True:
            n = sock.recv_into(buf)
            if n == 0:
                break
            chunks.append(bytes(buf[:n]))
        got[key] = b"".join(chunks)

    threads = [
        threading.Thread(target=pump, args=(client, up, "w1")),
        threading.Thread(target=pump, args=(conn, down, "w2")),
        threading.Thread(target=drain, args=(conn, "up")),
        threading.Thread(target=drain, args=(client, "down")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got["up"] == up
    assert got["down"] == down
    stats = client.stats()
    assert stats["bytes_received"] >= 20 * MB and stats["bytes_sent"] >= 20 * MB
    for s in (client, conn, server):
        s.close()


def test_reader_thread_and_writer_thread_share_one_socket():
    server, client, conn = pair()
    n = 4 * MB
    data = pattern(n, 3)
    result = {}

    def writer():
        client.sendall(data)

    def reader():
        result["back"] = recv_exactly(client, n)

    def echo():
        left = n
        while left:
            chunk = conn.recv(min(left, 65536))
            conn.sendall(chunk)
            left -= len(chunk)

    ts = [threading.Thread(target=f) for f in (writer, reader, echo)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert result["back"] == data
    for s in (client, conn, server):
        s.close()


def test_two_reader_threads_see_end_of_stream_only_at_the_end():
    # Both readers wake for the same bytes; the one that loses the race
    # must wait again, not take the empty read for end of stream.
    server, client, conn = pair()
    pieces, size = 300, 1000
    ended = {}
    shut = threading.Event()
    got = [0, 0]

    def reader(i):
        buf = bytearray(4096)
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                ended[i] = shut.is_set()
                return
            got[i] += n

    ts = [threading.Thread(target=reader, args=(i,)) for i in (0, 1)]
    for t in ts:
        t.start()
    for _ in range(pieces):
        client.sendall(b"x" * size)
        time.sleep(0.0005)
    shut.set()
    client.shutdown(utp.SHUT_WR)
    for t in ts:
        t.join(30)
    assert ended == {0: True, 1: True}
    assert sum(got) == pieces * size
    for s in (client, conn, server):
        s.close()


def test_recv_timeout_and_nonblocking():
    server, client, conn = pair()
    with server, client, conn:
        client.settimeout(0.3)
        assert client.gettimeout() == 0.3
        start = time.monotonic()
        with pytest.raises(TimeoutError) as e:
            client.recv(10)
        took = time.monotonic() - start
        assert 0.25 <= took < 2.0
        assert e.value.errno == errno.ETIMEDOUT
        client.setblocking(False)
        assert client.gettimeout() == 0.0
        with pytest.raises(BlockingIOError) as e:
            client.recv(10)
        assert e.value.errno == errno.EAGAIN
        client.setblocking(True)
        assert client.gettimeout() is None


def test_accept_timeout():
    with utp.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.2)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            server.accept()
        assert time.monotonic() - start < 2.0
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


def test_connect_timeout():
    # A context that ignores SYNs: the connect must give up on time.
    silent = utp.Context(("127.0.0.1", 0), backlog=0)
    port = silent.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        utp.create_connection(("127.0.0.1", port), timeout=0.5)
    assert 0.4 <= time.monotonic() - start < 3.0
    assert e.value.errno == errno.ETIMEDOUT
    silent.close()


def test_connection_refused():
    port = free_udp_port()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError) as e:
        utp.create_connection(("127.0.0.1", port), timeout=10)
    assert e.value.errno == errno.ECONNREFUSED
    assert time.monotonic() - start < 5


def test_connection_reset():
    server, client, conn = pair()
    conn.abort()
    client.settimeout(10)
    with pytest.raises(ConnectionResetError) as e:
        for _ in range(100):
            client.sendall(b"x" * 65536)
            client.recv(10)
    assert e.value.errno == errno.ECONNRESET
    client.close()
    server.close()


def test_broken_pipe_after_shutdown():
    server, client, conn = pair()
    with server, client, conn:
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError) as e:
            client.send(b"late")
        assert e.value.errno == errno.EPIPE
        assert conn.recv(10) == b""  # the peer sees end of stream


def test_closed_socket_is_ebadf():
    server, client, conn = pair()
    client.close()
    client.close()  # twice is fine
    for call in (lambda: client.recv(1), lambda: client.send(b"x"), lambda: client.getpeername()):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EBADF
    assert client.fileno() == -1
    conn.close()
    server.close()
    with pytest.raises(OSError) as e:
        server.accept()
    assert e.value.errno == errno.EBADF


def test_bad_arguments():
    with pytest.raises(TypeError):
        utp.create_connection("127.0.0.1:1")
    with pytest.raises(TypeError):
        utp.create_connection(("127.0.0.1", "80"))
    with pytest.raises(ValueError):
        utp.create_connection(("127.0.0.1", 70000))
    with pytest.raises(ValueError):
        utp.create_connection(("127.0.0.1", 1), timeout=-1)
    server, client, conn = pair()
    with server, client, conn:
        with pytest.raises(TypeError):
            client.send("text")
        with pytest.raises(ValueError):
            client.settimeout(-5)
        with pytest.raises(TypeError):
            client.settimeout("soon")
        with pytest.raises(ValueError):
            client.shutdown(7)
        with pytest.raises(ValueError):
            client.recv(-1)
        with pytest.raises(ValueError):
            utp.create_server(("127.0.0.1", 0), backlog=-1)


def test_fileno_works_with_selectors():
    server, client, conn = pair()
    with server, client, conn, selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ)
        assert sel.select(timeout=0.1) == []
        client.sendall(b"ping")
        events = sel.select(timeout=5)
        assert events and events[0][0].fileobj is conn
        assert conn.recv(10) == b"ping"
        assert sel.select(timeout=0.05) == []  # level-triggered: drained


def test_makefile_lines():
    server, client, conn = pair()
    with server, client, conn:
        wf = client.makefile("w")
        rf = conn.makefile("r")
        wf.write("line one\nline two\n")
        wf.flush()
        assert rf.readline() == "line one\n"
        assert rf.readline() == "line two\n"
        wf.close()
        rf.close()


def test_context_listens_and_connects_on_one_port():
    a = utp.Context(("127.0.0.1", 0))
    b = utp.Context(("127.0.0.1", 0))
    s = a.connect(b.getsockname(), timeout=10)
    s.sendall(b"from a")
    t, addr = b.accept(timeout=10)
    assert addr == a.getsockname()
    assert t.recv(10) == b"from a"
    # And the other way, from the same ports.
    u = b.connect(a.getsockname(), timeout=10)
    u.sendall(b"from b")
    v, _ = a.accept(timeout=10)
    assert v.recv(10) == b"from b"
    for x in (s, t, u, v, a, b):
        x.close()


def test_two_hundred_connections_with_threads():
    server = utp.create_server(("127.0.0.1", 0), backlog=256)
    port = server.getsockname()[1]
    n = 200

    def serve():
        conns = []
        for _ in range(n):
            c, _ = server.accept()
            conns.append(c)
            threading.Thread(target=echo, args=(c,), daemon=True).start()

    def echo(c):
        with c:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)

    threading.Thread(target=serve, daemon=True).start()
    errors = []

    def client(i):
        try:
            with utp.create_connection(("127.0.0.1", port), timeout=30) as s:
                msg = pattern(10000, i)
                s.sendall(msg)
                assert recv_exactly(s, len(msg)) == msg
        except Exception as e:  # collected for the assertion below
            errors.append(e)

    ts = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:3]
    server.close()


def io_threads():
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open("/proc/self/task/%s/comm" % tid) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sum(1 for n in names if n.startswith("utp-io"))


def test_garbage_collected_sockets_do_not_leak_or_hang():
    gc.collect()
    time.sleep(0.5)
    before = io_threads()
    server = utp.create_server(("127.0.0.1", 0), backlog=64)
    port = server.getsockname()[1]
    for _ in range(30):
        s = utp.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"unclosed")
        del s  # never closed
    accepted = []
    server.settimeout(5)
    for _ in range(30):
        accepted.append(server.accept()[0])
    del accepted
    server.close()
    del server
    start = time.monotonic()
    gc.collect()
    assert time.monotonic() - start < 2, "garbage collection blocked"
    deadline = time.monotonic() + 20
    while io_threads() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert io_threads() <= before


def test_interpreter_exit_delivers_queued_data():
    server = utp.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    n = 5 * MB
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import utp\n"
            "s = utp.create_connection(('127.0.0.1', %d), timeout=10)\n"
            "s.sendall(bytes(range(256)) * %d)\n"
            "# no close: the interpreter exits with data still queued\n" % (port, n // 256),
        ]
    )
    server.settimeout(20)
    conn, _ = server.accept()
    conn.settimeout(30)
    got = 0
    expect = bytes(range(256)) * (n // 256)
    received = bytearray()
    while True:
        d = conn.recv(MB)
        if not d:
            break
        received += d
        time.sleep(0.001)  # a slow reader: the writer exits first
    assert child.wait(60) == 0
    assert received == expect
    conn.close()
    server.close()


def test_interpreter_exit_with_threads_blocked_in_recv_and_accept():
    # Daemon threads blocked in recv() and accept() when the interpreter
    # exits: as with plain sockets, they stay blocked and the process ends
    # quietly (no EBADF traceback from the exit-time close).
    code = (
        "import threading, time, utp\n"
        "srv = utp.create_server(('127.0.0.1', 0))\n"
        "threading.Thread(target=srv.accept, daemon=True).start()\n"
        "c = utp.create_connection(srv.getsockname(), timeout=10)\n"
        "threading.Thread(target=c.recv, args=(100,), daemon=True).start()\n"
        "time.sleep(0.3)\n"
        "print('exiting', flush=True)\n"
    )
    for _ in range(5):  # the traceback came in about 2 runs of 5
        p = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        assert p.returncode == 0
        assert p.stdout.strip() == "exiting"
        assert "Traceback" not in p.stderr, p.stderr


def test_ctrl_c_interrupts_a_blocking_recv_quickly():
    code = (
        "import time, utp, sys\n"
        "srv = utp.create_server(('127.0.0.1', 0))\n"
        "c = utp.create_connection(srv.getsockname(), timeout=10)\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    c.recv(10)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted %.6f' % time.time(), flush=True)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    sent = time.time()
    p.send_signal(signal.SIGINT)
    line = p.stdout.readline().split()
    p.wait(10)
    assert line and line[0] == "interrupted"
    assert float(line[1]) - sent < 0.1
