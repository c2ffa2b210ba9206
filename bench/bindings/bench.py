"""Bulk transfer and ping-pong through the Python binding (module `utp`),
for bench/harness.py. Same roles and reports as bench/c/utpt_bench.c.

    python bench.py recv HOST PORT BYTES REPORT      socket API, recv_into
    python bench.py send HOST PORT BYTES STAMP       socket API, sendall of 1 MiB
    python bench.py arecv HOST PORT BYTES REPORT     asyncio streams
    python bench.py asend HOST PORT BYTES STAMP      asyncio streams, write + drain
    python bench.py pp-server HOST PORT              echo server (until killed)
    python bench.py pp-client HOST PORT COUNT SIZE   key=value percentiles on stdout

The receivers check the byte count; content is checked by the binding's
tests. Times are time.time_ns(), as the Rust benchmark writes them.
"""
import asyncio
import sys
import threading
import time

import utp

CHUNK = 1 << 20


def report(path, got, want, first, done):
    with open(path, "w") as f:
        f.write(f"bytes={got}\nexact={'yes' if got == want else 'no'}\n"
                f"first_ns={first}\ndone_ns={done}\n")
    return 0 if got == want else 1


def stamp(path):
    with open(path, "w") as f:
        f.write(f"{time.time_ns()}\n")


def chunk():
    return bytes(range(256)) * (CHUNK // 256)


def recv(host, port, want, path):
    with utp.create_server((host, port)) as srv:
        conn, _ = srv.accept()
        with conn:
            buf = bytearray(CHUNK)
            got, first = 0, 0
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                if not first:
                    first = time.time_ns()
                got += n
            return report(path, got, want, first, time.time_ns())


def send(host, port, left, path):
    stamp(path)
    data = chunk()
    with utp.create_connection((host, port), timeout=10) as s:
        s.settimeout(None)
        while left > 0:
            n = min(left, CHUNK)
            s.sendall(data[:n] if n < CHUNK else data)
            left -= n
        s.shutdown(utp.SHUT_WR)
    return 0


async def arecv(host, port, want, path):
    done = asyncio.get_running_loop().create_future()

    async def on_conn(reader, writer):
        got, first = 0, 0
        while True:
            b = await reader.read(CHUNK)
            if not b:
                break
            if not first:
                first = time.time_ns()
            got += len(b)
        writer.close()
        done.set_result((got, first, time.time_ns()))

    server = await utp.start_server(on_conn, host, port)
    async with server:
        got, first, t = await done
    return report(path, got, want, first, t)


async def asend(host, port, left, path):
    stamp(path)
    data = chunk()
    reader, writer = await utp.open_connection(host, port)
    while left > 0:
        n = min(left, CHUNK)
        writer.write(data[:n] if n < CHUNK else data)
        await writer.drain()
        left -= n
    writer.write_eof()
    await writer.drain()
    # The peer closes after end of stream: wait for it, so nothing is cut.
    await reader.read()
    writer.close()
    await writer.wait_closed()
    return 0


def pp_server(host, port):
    srv = utp.create_server((host, port))

    def echo(conn):
        with conn:
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                conn.sendall(d)

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def pp_client(host, port, count, size):
    warm = max(1, count // 10)
    rtts = []
    with utp.create_connection((host, port), timeout=10) as s:
        buf = bytearray(size)
        view = memoryview(buf)
        for i in range(count + warm):
            msg = bytes((i * 31 + k) & 255 for k in range(size))
            t = time.perf_counter()
            s.sendall(msg)
            got = 0
            while got < size:
                n = s.recv_into(view[got:])
                if n == 0:
                    raise SystemExit("pp-client: end of stream")
                got += n
            rtt = (time.perf_counter() - t) * 1e6
            if buf != msg:
                raise SystemExit("pp-client: echo differs")
            if i >= warm:
                rtts.append(rtt)
        s.shutdown(utp.SHUT_WR)
    rtts.sort()
    q = lambda p: rtts[round((len(rtts) - 1) * p)]
    print(f"count={len(rtts)}\nrtt_us_p50={q(0.5):.1f}\nrtt_us_p90={q(0.9):.1f}\n"
          f"rtt_us_p99={q(0.99):.1f}\nrtt_us_min={rtts[0]:.1f}\nrtt_us_max={rtts[-1]:.1f}")
    return 0


def main(av):
    if len(av) == 5 and av[0] in ("recv", "send", "arecv", "asend"):
        host, port, n, path = av[1], int(av[2]), int(av[3]), av[4]
        if av[0] == "recv":
            return recv(host, port, n, path)
        if av[0] == "send":
            return send(host, port, n, path)
        if av[0] == "arecv":
            return asyncio.run(arecv(host, port, n, path))
        return asyncio.run(asend(host, port, n, path))
    if len(av) == 3 and av[0] == "pp-server":
        return pp_server(av[1], int(av[2]))
    if len(av) == 5 and av[0] == "pp-client":
        return pp_client(av[1], int(av[2]), int(av[3]), int(av[4]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
