"""Receive one file over uTP: python receive_file.py HOST PORT OUT

Listens on HOST:PORT (PORT 0 picks one; --port-file writes it out), takes
one connection and writes everything it receives to OUT."""

import argparse
import time

import utp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("out")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    a = ap.parse_args()
    with utp.create_server((a.host, a.port)) as server:
        port = server.getsockname()[1]
        if a.port_file:
            with open(a.port_file + ".tmp", "w") as f:
                f.write(str(port))
            import os

            os.replace(a.port_file + ".tmp", a.port_file)
        print("listening on %s:%d" % (a.host, port), flush=True)
        conn, peer = server.accept()
        start = time.monotonic()
        total = 0
        buf = bytearray(1 << 20)
        with conn, open(a.out, "wb") as f:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                f.write(buf[:n])
                total += n
        secs = max(time.monotonic() - start, 1e-9)
        print("received %d bytes from %s:%d in %.2f s" % (total, peer[0], peer[1], secs))


if __name__ == "__main__":
    main()
