"""Shared helpers for the utp tests. Every test talks to 127.0.0.1 only."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def pattern(n, seed=1):
    """n deterministic pseudo-random bytes."""
    out = bytearray()
    block = hashlib.sha256(b"utp-test-%d" % seed).digest() * 2048  # 64 KiB
    while len(out) < n:
        out += block
    return bytes(out[:n])


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def tool(path):
    """A binary built from the repository, or skip when it is missing."""
    full = os.path.join(REPO, path)
    if not os.access(full, os.X_OK):
        pytest.skip("%s not built" % path)
    return full


@pytest.fixture
def python_exe():
    return sys.executable


def run_python(code, timeout=60, **kw):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, **kw
    )
