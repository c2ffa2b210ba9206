"""Interoperability on the wire: Python <-> real libutp's ucat, and Python
<-> utpcat (the Rust command-line tool), both directions, byte-exact."""

import os
import subprocess
import tempfile
import threading
import time

import utp
from conftest import pattern, free_udp_port, tool

N = 3 << 20


def wait_size(path, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and os.path.getsize(path) >= n:
            return True
        time.sleep(0.05)
    return False


def send_to_listener(argv, port, data, expect_exit):
    """Starts a listener tool on `port` writing to a file, sends `data`."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out")
        with open(out, "wb") as f:
            # ucat ends its session at the end of its input: keep that open.
            # utpcat sends its input too, and exits once both ways are done.
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=f, stderr=subprocess.DEVNULL)
            if expect_exit:
                p.stdin.close()
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = utp.create_connection(("127.0.0.1", port), timeout=5)
                    break
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            s.sendall(data)
            s.close_and_wait(30)
            assert wait_size(out, len(data), 30)
            if expect_exit:
                assert p.wait(30) == 0
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdin.close()
        with open(out, "rb") as f:
            return f.read()


def receive_from_sender(argv_for_port, data):
    """Listens in Python; a sender tool pipes `data` to us."""
    server = utp.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    p = subprocess.Popen(argv_for_port(port), stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=lambda: (p.stdin.write(data), p.stdin.close()))
    feeder.start()
    try:
        server.settimeout(20)
        conn, _ = server.accept()
        conn.settimeout(30)
        got = bytearray()
        while len(got) < len(data):
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        conn.close()
        return bytes(got)
    finally:
        feeder.join(30)
        if p.poll() is None:
            p.kill()
        p.wait()
        server.close()


def test_python_to_real_libutp_ucat():
    ucat = tool("target/libutp-ref/bin/ucat")
    port = free_udp_port()
    data = pattern(N, 11)
    assert send_to_listener([ucat, "-l", "-p", str(port)], port, data, expect_exit=False) == data


def test_real_libutp_ucat_to_python():
    ucat = tool("target/libutp-ref/bin/ucat")
    data = pattern(N, 12)
    assert receive_from_sender(lambda port: [ucat, "127.0.0.1", str(port)], data) == data


def test_python_to_utpcat():
    utpcat = tool("target/release/examples/utpcat")
    port = free_udp_port()
    data = pattern(N, 13)
    assert send_to_listener([utpcat, "-l", "-p", str(port)], port, data, expect_exit=True) == data


def test_utpcat_to_python():
    utpcat = tool("target/release/examples/utpcat")
    data = pattern(N, 14)
    assert receive_from_sender(lambda port: [utpcat, "127.0.0.1", str(port)], data) == data
