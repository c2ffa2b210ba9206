"""Send a file over uTP: python send_file.py HOST PORT FILE

Connects, sends the file, and waits until the receiver has acknowledged
every byte before it exits."""

import argparse
import os
import time

import utp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("file")
    a = ap.parse_args()
    size = os.path.getsize(a.file)
    start = time.monotonic()
    sock = utp.create_connection((a.host, a.port), timeout=30)
    with open(a.file, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            sock.sendall(chunk)
    sock.close_and_wait(60)  # returns once the peer has every byte
    secs = time.monotonic() - start
    print("sent %d bytes in %.2f s (%.1f MB/s)" % (size, secs, size / secs / 1e6))


if __name__ == "__main__":
    main()
