#!/usr/bin/env python3
"""Benchmark harness: ours against real libutp, side by side (bench/run.sh).

Standard library only; plots (--full) use matplotlib, installed with pip on
demand. See bench/README.md for what every number means.
"""
import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
UTPBENCH = os.path.join(REL, "examples", "utpbench")
BUILD = os.path.join(ROOT, "target", "bench")
LINK_MBIT = 20  # testbed bottleneck

PROCS = []        # every Popen we started (killed by process group on exit)
NETNS = []        # every namespace we created (deleted on exit)
STATE_FILE = os.environ.get("BENCH_STATE_FILE")  # run.sh's trap reads it too


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


class FunctionalError(Exception):
    """A transfer was not byte-exact, or a tool failed: smoke mode fails."""


class SetupError(FunctionalError):
    """The machine cannot host a part (no tbf, no veth): smoke mode skips it."""


# ---------------------------------------------------------------- processes

def spawn(argv, ns=None, **kw):
    if ns:
        argv = ["ip", "netns", "exec", ns] + list(argv)
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def kill(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(p, timeout):
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(p)
        p.wait()
        return None


def stop_timed(p, grace):
    """Waits `grace` s for a process run under time(1); then SIGKILLs only the
    measured program, so that time(1) still writes its report."""
    try:
        return p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for c in children(p.pid):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return reap(p, 5)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def timed(argv, tfile):
    """argv under GNU time -v (CPU seconds and peak RSS of that process only)."""
    return ["/usr/bin/time", "-v", "-o", tfile] + list(argv)


def parse_time(tfile):
    r = {}
    try:
        with open(tfile) as f:
            for line in f:
                k, _, v = line.strip().rpartition(": ")
                if k == "User time (seconds)":
                    r["user"] = float(v)
                elif k == "System time (seconds)":
                    r["sys"] = float(v)
                elif k == "Maximum resident set size (kbytes)":
                    r["rss_kb"] = int(v)
    except OSError:
        pass
    if "user" in r:
        r["cpu"] = r["user"] + r["sys"]
    return r


def parse_kv(path):
    r = {}
    try:
        with open(path) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    r[k] = v
    except OSError:
        pass
    return r


def read_stamp(path):
    with open(path) as f:
        return int(f.read().strip())


def udp_bound(port, ns=None, proto="udp"):
    """True when something has `port` bound (for tcp: listening)."""
    argv = ["cat", f"/proc/net/{proto}", f"/proc/net/{proto}6"]
    if ns:
        argv = ["ip", "netns", "exec", ns] + argv
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    want = "%04X" % port
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[1].rsplit(":", 1)[-1].upper() == want and (proto == "udp" or f[3] == "0A"):
            return True
    return False


def wait_bound(port, ns, proc, what, proto="udp"):
    t = time.time() + 10
    while not udp_bound(port, ns, proto):
        if proc.poll() is not None or time.time() > t:
            raise FunctionalError(f"{what}: listener did not bind UDP port {port}")
        time.sleep(0.02)


def free_port():
    return random.randint(20000, 59999)


# ---------------------------------------------------------------- namespaces

def sh(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise FunctionalError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r


def add_ns(name):
    sh("ip", "netns", "add", name)
    NETNS.append(name)
    if STATE_FILE:
        with open(STATE_FILE, "a") as f:
            f.write(name + "\n")
    sh("ip", "-n", name, "link", "set", "lo", "up")


def veth(tag, ns1, if1, ip1, ns2, if2, ip2, mtu=1500):
    a, b = f"{tag}a", f"{tag}b"
    sh("ip", "link", "add", a, "mtu", str(mtu), "type", "veth", "peer", "name", b, "mtu", str(mtu))
    sh("ip", "link", "set", a, "netns", ns1)
    sh("ip", "link", "set", b, "netns", ns2)
    sh("ip", "-n", ns1, "link", "set", a, "name", if1)
    sh("ip", "-n", ns2, "link", "set", b, "name", if2)
    sh("ip", "-n", ns1, "addr", "add", ip1 + "/24", "dev", if1)
    sh("ip", "-n", ns2, "addr", "add", ip2 + "/24", "dev", if2)
    sh("ip", "-n", ns1, "link", "set", if1, "up")
    sh("ip", "-n", ns2, "link", "set", if2, "up")


def can_netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        return False
    name = f"ubprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if r.returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            kill(p)
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except Exception:
            pass
    for n in reversed(NETNS):
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    NETNS.clear()


# ---------------------------------------------------------------- build

def build_tuned_ucat(ref, include, libdir, name):
    """Upstream ucat.c, unmodified, against the libutp in `libdir`, its UDP
    socket given 4 MiB buffers (bench/c/tuned_socket.c)."""
    out = os.path.join(BUILD, name)
    sh("gcc", "-Wall", "-DPOSIX", "-O3", "-Dsocket=bench_tuned_socket", "-I", include,
       os.path.join(ref, "src", "ucat.c"), os.path.join(ROOT, "bench", "c", "tuned_socket.c"),
       "-L", libdir, "-lutp", f"-Wl,-rpath,{libdir}", "-o", out)
    return out


def build(need_ffi=True):
    log("building utpbench (cargo build --release --example utpbench)")
    r = subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "utpbench"],
                       cwd=ROOT)
    if r.returncode != 0:
        raise FunctionalError("cargo build of utpbench failed")
    r = subprocess.run([os.path.join(ROOT, "scripts", "build-libutp-ref.sh"), "--quiet"],
                       cwd=ROOT, capture_output=True, text=True)
    ref = None
    for line in r.stdout.splitlines():
        if line.startswith("LIBUTP_REF_DIR="):
            ref = line.split("=", 1)[1]
    if r.returncode != 0 or not ref:
        raise FunctionalError("scripts/build-libutp-ref.sh failed: " + r.stderr[-500:])
    os.makedirs(BUILD, exist_ok=True)
    tools = {"ucat-real": os.path.join(ref, "bin", "ucat")}
    tools["count-shim"] = os.path.join(BUILD, "count_dgrams.so")
    sh("gcc", "-O2", "-Wall", "-shared", "-fPIC", "-o", tools["count-shim"],
       os.path.join(ROOT, "bench", "c", "count_dgrams.c"), "-ldl")
    cc = ["gcc", "-O2", "-Wall", "-DPOSIX"]
    pp = os.path.join(ROOT, "bench", "c", "utp_pingpong.c")
    out = os.path.join(BUILD, "pp-real")
    sh(*cc, "-I", os.path.join(ref, "include"), pp, "-L", os.path.join(ref, "lib"), "-lutp",
       f"-Wl,-rpath,{os.path.join(ref, 'lib')}", "-o", out)
    tools["pp-real"] = out
    tools["ucat-real-tuned"] = build_tuned_ucat(ref, os.path.join(ref, "include"),
                                                os.path.join(ref, "lib"), "ucat-real-tuned")
    tools["ffi"] = None
    if need_ffi:
        # Our C ABI (utp-ffi): upstream's unmodified ucat.c and our ping-pong.
        log("building utp-ffi (cargo build --release -p utp-ffi)")
        r = subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "utp-ffi"], cwd=ROOT,
                           capture_output=True, text=True)
        so = os.path.join(REL, "libutp.so")
        if r.returncode == 0 and os.path.exists(so):
            try:
                if not os.path.exists(so + ".0"):
                    os.symlink("libutp.so", so + ".0")
                obj = os.path.join(BUILD, "ucat-ours.o")
                sh("gcc", "-Wall", "-DPOSIX", "-g", "-fno-exceptions", "-O3", "-I",
                   os.path.join(ROOT, "include"), "-c", os.path.join(ref, "src", "ucat.c"), "-o", obj)
                sh("gcc", "-o", os.path.join(BUILD, "ucat-ours"), obj, "-L", REL, "-lutp",
                   f"-Wl,-rpath,{REL}")
                tools["ucat-ours"] = os.path.join(BUILD, "ucat-ours")
                tools["ucat-ours-tuned"] = build_tuned_ucat(ref, os.path.join(ROOT, "include"), REL,
                                                            "ucat-ours-tuned")
                out = os.path.join(BUILD, "pp-ours")
                sh(*cc, "-I", os.path.join(ROOT, "include"), pp, "-L", REL, "-lutp",
                   f"-Wl,-rpath,{REL}", "-o", out)
                tools["pp-ours"] = out
                tools["ffi"] = "ok"
            except FunctionalError as e:
                tools["ffi"] = f"failed: {e}"
        else:
            tools["ffi"] = "utp-ffi did not build: " + r.stderr.strip()[-300:]
        if tools["ffi"] != "ok":
            log("WARNING: our C ABI is not usable, its columns are left out:", tools["ffi"])
    return tools


# ---------------------------------------------------------------- bulk

def bulk_once(impl, tools, nbytes, link, work, timeout):
    """One one-way transfer; returns a dict of measurements."""
    d = tempfile.mkdtemp(prefix=f"{impl}-", dir=work)
    rns, sns, rip = link["recv_ns"], link["send_ns"], link["recv_ip"]
    port = free_port()
    f = lambda n: os.path.join(d, n)
    t_end = time.time() + timeout
    res = {"impl": impl, "link": link["name"], "bytes": nbytes}
    try:
        if impl == "udp-gso":
            # The ceiling: plain UDP, no protocol. Fixed duration, goodput at the receiver.
            secs = 1 if nbytes < (64 << 20) else 3
            recv = spawn(timed([UTPBENCH, "udp-recv", "--bind", f"{rip}:{port}", "--report", f("rr"),
                                "--timeout", str(secs + 20)], f("tr")), ns=rns)
            wait_bound(port, rns, recv, "udp-recv")
            send = spawn(timed([UTPBENCH, "udp-send", "--to", f"{rip}:{port}", "--seconds", str(secs)],
                               f("ts")), ns=sns)
            rc_s, rc_r = reap(send, secs + 30), reap(recv, secs + 30)
            rr = parse_kv(f("rr"))
            if rc_r != 0 or rc_s != 0 or int(rr.get("bytes", 0)) == 0:
                raise FunctionalError(f"udp-gso: receiver rc={rc_r} sender rc={rc_s} {rr}")
            got = int(rr["bytes"])
            secs = (int(rr["done_ns"]) - int(rr["first_ns"])) / 1e9
            tr, ts = parse_time(f("tr")), parse_time(f("ts"))
            res.update(bytes=got, secs=secs, mbit=got * 8 / secs / 1e6, stall_ms=float("nan"),
                       cpu_recv_per_gb=tr.get("cpu", float("nan")) / (got / 1e9),
                       cpu_send_per_gb=float("nan"),  # it also sends what the receiver drops
                       rss_recv_mb=tr.get("rss_kb", 0) / 1024, rss_send_mb=ts.get("rss_kb", 0) / 1024,
                       exact=True)
            return res
        if impl in ("rust", "rust-nogso"):
            extra = ["--no-offload"] if impl == "rust-nogso" else []
            recv = spawn(timed([UTPBENCH, "utp-recv", "--bind", f"{rip}:{port}", "--bytes", str(nbytes),
                                "--report", f("rr")] + extra, f("tr")), ns=rns)
            wait_bound(port, rns, recv, "utp-recv")
            send = spawn(timed([UTPBENCH, "utp-send", "--to", f"{rip}:{port}", "--bytes", str(nbytes),
                                "--stamp", f("stamp"), "--report", f("sr")] + extra, f("ts")), ns=sns)
            rc_r = reap(recv, max(1, t_end - time.time()))
            rc_s = reap(send, max(1, t_end - time.time()))
            if rc_r != 0 or rc_s != 0:
                raise FunctionalError(f"rust bulk: receiver rc={rc_r} sender rc={rc_s}"
                                      f" ({open(f('rr')).read() if os.path.exists(f('rr')) else 'no report'})")
        else:
            ucat = tools[impl]
            lst = spawn(timed([ucat, "-l", "-p", str(port)], f("tr")), ns=rns,
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(f("lerr"), "w"))
            sink = spawn([UTPBENCH, "sink", "--bytes", str(nbytes), "--report", f("rr")],
                         stdin=lst.stdout)
            lst.stdout.close()
            wait_bound(port, rns, lst, impl)
            gen = spawn([UTPBENCH, "gen", "--bytes", str(nbytes), "--stamp", f("stamp"), "--hold"],
                        ns=sns, stdout=subprocess.PIPE)
            send = spawn(timed([ucat, rip, str(port)], f("ts")), ns=sns, stdin=gen.stdout,
                         stdout=subprocess.DEVNULL, stderr=open(f("serr"), "w"))
            gen.stdout.close()
            rc = reap(sink, max(1, t_end - time.time()))
            # ucat's listener never exits by itself: SIGINT (its handler closes
            # the socket, then the sender sees EOF and exits too).
            for c in children(lst.pid):
                os.kill(c, signal.SIGINT)
            # The sender (stdin held open by gen --hold) never exits by itself:
            # stop it (time(1) still reports its rusage).
            stop_timed(lst, 2)
            stop_timed(send, 0.05)
            kill(gen)
            reap(gen, 2)
            if rc != 0:
                raise FunctionalError(f"{impl} bulk: sink rc={rc} (timeout {timeout}s?)")
        rr = parse_kv(f("rr"))
        if rr.get("exact") != "yes" or int(rr.get("bytes", -1)) != nbytes:
            raise FunctionalError(f"{impl} over {link['name']}: not byte-exact: {rr}")
        start = read_stamp(f("stamp"))
        secs = (int(rr["done_ns"]) - start) / 1e9
        tr, ts = parse_time(f("tr")), parse_time(f("ts"))
        gb = nbytes / 1e9
        res.update(secs=secs, mbit=nbytes * 8 / secs / 1e6, stall_ms=float(rr["max_gap_ms"]),
                   cpu_recv_per_gb=tr.get("cpu", float("nan")) / gb,
                   cpu_send_per_gb=ts.get("cpu", float("nan")) / gb,
                   rss_recv_mb=tr.get("rss_kb", 0) / 1024, rss_send_mb=ts.get("rss_kb", 0) / 1024,
                   exact=True)
        return res
    finally:
        for p in PROCS:
            if p.poll() is None and p.pid in [x.pid for x in PROCS[-6:]]:
                kill(p)


def median_spread(vals):
    vals = [v for v in vals if v == v]
    if not vals:
        return (float("nan"),) * 3
    return statistics.median(vals), min(vals), max(vals)


def rotated(items, r):
    """`items` rotated by `r`: run r starts with a different one, so none always goes first."""
    k = r % len(items)
    return items[k:] + items[:k]


def run_bulk(tools, impls, links, nbytes, runs, work, timeout):
    results = []
    for link in links:
        for r in range(runs):
            order = rotated(impls, r)  # alternate
            for impl in order:
                res = bulk_once(impl, tools, nbytes, link, work, timeout)
                res["run"] = r
                log(f"bulk {link['name']} run {r + 1}/{runs} {impl}: {res['mbit']:.0f} Mbit/s "
                    f"cpu s/GB recv {res['cpu_recv_per_gb']:.2f} send {res['cpu_send_per_gb']:.2f} "
                    f"stall {res['stall_ms']:.1f} ms")
                results.append(res)
    return results


# ---------------------------------------------------------------- latency

def run_latency(tools, impls, link, count, size, rounds, work):
    out = []
    rns, sns, rip = link["recv_ns"], link["send_ns"], link["recv_ip"]
    for r in range(rounds):
        order = rotated(impls, r)
        for impl in order:
            port = free_port()
            if impl == "rust":
                srv = spawn([UTPBENCH, "pp-server", "--bind", f"{rip}:{port}"], ns=rns)
                cli = [UTPBENCH, "pp-client", "--to", f"{rip}:{port}", "--count", str(count),
                       "--size", str(size)]
            else:
                srv = spawn([tools[impl], "-l", str(port)], ns=rns, stderr=subprocess.DEVNULL)
                cli = [tools[impl], rip, str(port), str(count), str(size)]
            try:
                wait_bound(port, rns, srv, impl)
                argv = (["ip", "netns", "exec", sns] if sns else []) + cli
                p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
                if p.returncode != 0:
                    raise FunctionalError(f"ping-pong {impl}: rc={p.returncode} {p.stderr.strip()}")
                kvs = dict(l.split("=", 1) for l in p.stdout.split() if "=" in l)
                res = {"impl": impl, "link": link["name"], "run": r, "size": size,
                       **{k: float(v) for k, v in kvs.items()}}
                log(f"latency {link['name']} {impl}: p50 {res['rtt_us_p50']:.1f} us "
                    f"p99 {res['rtt_us_p99']:.1f} us")
                out.append(res)
            finally:
                kill(srv)
                srv.wait()
    return out


# ---------------------------------------------------------------- scale

def in_ns(argv, ns):
    """argv run inside namespace `ns` (None: the host's)."""
    return (["ip", "netns", "exec", ns] if ns else []) + list(argv)


def numeric(kvs):
    """A report's values as numbers where they are numbers."""
    out = {}
    for k, v in kvs.items():
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def scale_once(n, total_bytes, work, ns, run):
    rep = os.path.join(work, f"scale-{n}-{run}.txt")
    tfile = os.path.join(work, f"scale-{n}-{run}.time")
    argv = timed([UTPBENCH, "scale", "--conns", str(n), "--total-bytes", str(total_bytes),
                  "--report", rep, "--timeout", "120"], tfile)
    p = subprocess.run(in_ns(argv, ns), capture_output=True, text=True, timeout=200)
    kvs = parse_kv(rep)
    if p.returncode != 0 or kvs.get("exact") != "yes":
        raise FunctionalError(f"scale {n}: rc={p.returncode} {p.stderr.strip()[-300:]} {kvs}")
    res = numeric(kvs)
    res["run"] = run
    res["peak_rss_mb"] = parse_time(tfile).get("rss_kb", 0) / 1024
    log(f"scale {n} run {run + 1}: {res['handshakes_per_s']} handshakes/s, {res['goodput_mbit']} Mbit/s, "
        f"RTOs {res.get('timeouts')}, fast retransmits {res['fast_retransmits']}, "
        f"RcvbufErrors {res.get('udp_rcvbuf_errors')}, {res['mem_per_conn_bytes']} B/conn")
    return res


def run_scale(counts, total_bytes, runs, work, ns):
    """Every count `runs` times; the order of the counts rotates every run.
    In namespace `ns` (its own loopback) when given, so the UDP counters of
    /proc/net/snmp see only this test's traffic."""
    out = []
    for r in range(runs):
        for n in rotated(counts, r):
            out.append(scale_once(n, total_bytes, work, ns, r))
    return out


SCALE_STAT_KEYS = ["goodput_mbit", "handshakes_per_s", "timeouts", "timeout_retransmits",
                   "fast_retransmits", "duplicates_received", "udp_rcvbuf_errors",
                   "mem_per_conn_bytes", "mem_per_conn_after_xfer_bytes", "io_cpu_xfer_server_s",
                   "io_cpu_xfer_client_s", "peak_rss_mb", "bytes_per_conn"]


def scale_summary(scale):
    """One row per connection count: (median, min, max) of every figure over
    the runs, and the aggregate goodput over the one-connection median."""
    counts = sorted({int(r["conns"]) for r in scale})
    one = [float(r["goodput_mbit"]) for r in scale if int(r["conns"]) == 1]
    one_median = statistics.median(one) if one else None
    rows = []
    for n in counts:
        runs = [r for r in scale if int(r["conns"]) == n]
        row = {"conns": n, "runs": len(runs)}
        for k in SCALE_STAT_KEYS:
            row[k] = median_spread([float(r[k]) for r in runs if k in r])
        g = row["goodput_mbit"]
        row["ratio"] = tuple(x / one_median for x in g) if one_median else (float("nan"),) * 3
        rows.append(row)
    return rows


def scale_targets(scale):
    rows = {r["conns"]: r for r in scale_summary(scale)}
    out = []
    for n, frac, rto_free in ((100, 0.5, True), (1000, 0.3, False)):
        row = rows.get(n)
        if not row or 1 not in rows:
            continue
        ratio, rtos = row["ratio"][0], row["timeouts"][2]
        what = f"scale: {n:,} connections ≥ {frac * 100:.0f} % of one flow's goodput"
        measured = f"{ratio * 100:.0f} %, RTOs {fmt(rtos, 0)} (most in one run)"
        ok = ratio >= frac and (rtos == 0 or not rto_free)
        out.append((what + (", no RTO" if rto_free else ""), measured, ok))
    return out


def scale_markdown(scale, where):
    rows = scale_summary(scale)
    runs = max(r["runs"] for r in rows)
    rng = lambda t, nd=0: f"{fmt(t[0], nd)} [{fmt(t[1], nd)}–{fmt(t[2], nd)}]" if runs > 1 else fmt(t[0], nd)
    L = ["## 3. Scale: many connections in one context\n"]
    L.append("One process, two contexts on 127.0.0.1 (a client context and a server context, one I/O "
             f"thread each){where}. N connections are opened from min(N, 16) threads with blocking "
             "`connect` (handshakes/s = N / time until all are connected and accepted); then every "
             f"connection sends its share of {rows[0]['bytes_per_conn'][0] / 2**20:.0f} MiB in total at "
             "once (at least 4 KiB each; non-blocking round-robin on 4 threads per side). "
             f"{runs} runs of every count, the order of the counts rotating every run; median with "
             "[min–max] over the runs. *vs 1 conn* = median aggregate goodput ÷ the median of the "
             "1-connection runs of this run (range: each run's goodput over that median). "
             "RTOs = retransmission timeouts that fired, summed over the connections (sender side); "
             "fast retransmits likewise; duplicates = data packets that arrived twice (receiver side); "
             "RcvbufErrors = the delta of `/proc/net/snmp` over the transfer. With GRO on, the kernel "
             "counts a whole coalesced GSO message as one error, so RcvbufErrors counts messages, not "
             "datagrams (up to 64 datagrams each).\n")
    L.append("| connections | runs | aggregate Mbit/s | vs 1 conn | RTOs | RTO resends | fast retransmits "
             "| duplicates at receiver | RcvbufErrors (GSO messages) |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["ratio"]
        L.append(f"| {r['conns']:,} | {r['runs']} | **{rng(r['goodput_mbit'])}** | "
                 f"{ratio[0] * 100:.0f} % [{ratio[1] * 100:.0f}–{ratio[2] * 100:.0f}] | "
                 f"{rng(r['timeouts'])} | {rng(r['timeout_retransmits'])} | {rng(r['fast_retransmits'])} | "
                 f"{rng(r['duplicates_received'])} | {rng(r['udp_rcvbuf_errors'])} |")
    L.append("\nResources (medians). Memory per connection = RSS growth / (2 N) (each connection has two "
             "ends in this process); I/O-thread CPU from /proc/self/task/<tid>/stat (10 ms resolution). "
             "Limits raised for the test: backlog, max_half_open = N + 16.\n")
    L.append("| connections | handshakes/s | bytes/conn | memory/conn established | memory/conn after "
             "transfer | I/O CPU s transfer srv/cli | peak RSS MB |")
    L.append("|---|---|---|---|---|---|---|")
    for r in rows:
        L.append(f"| {r['conns']:,} | {fmt(r['handshakes_per_s'][0], 0)} | {fmt(r['bytes_per_conn'][0], 0)} | "
                 f"{r['mem_per_conn_bytes'][0] / 1024:.1f} KiB | "
                 f"{r['mem_per_conn_after_xfer_bytes'][0] / 1024:.1f} KiB | "
                 f"{fmt(r['io_cpu_xfer_server_s'][0], 2)} / {fmt(r['io_cpu_xfer_client_s'][0], 2)} | "
                 f"{fmt(r['peak_rss_mb'][0], 0)} |")
    L.append("\n![scale](bench/plots/scale.png)\n")
    return L


# ---------------------------------------------------------------- receiver drops

DROP_SENDERS = ["ours", "libutp"]
DROP_NAMES = {"ours": "ours (Rust API, `utpbench utp-send`)", "libutp": "real libutp (`ucat`)"}


def read_udp_snmp(ns):
    """The Udp counters of /proc/net/snmp (of namespace `ns`)."""
    out = subprocess.run(in_ns(["cat", "/proc/net/snmp"], ns), capture_output=True, text=True).stdout
    rows = [l.split()[1:] for l in out.splitlines() if l.startswith("Udp:")]
    return dict(zip(rows[0], (int(x) for x in rows[1]))) if len(rows) >= 2 else {}


def socket_drops(port, ns):
    """The `drops` column of /proc/net/udp for the socket bound to `port`."""
    out = subprocess.run(in_ns(["cat", "/proc/net/udp"], ns), capture_output=True, text=True).stdout
    want = "%04X" % port
    for line in out.splitlines()[1:]:
        f = line.split()
        if f[1].rsplit(":", 1)[-1].upper() == want:
            return int(f[-1])
    return None


def read_counts(path):
    """(received, sent) datagrams from count_dgrams.so's file."""
    import struct
    try:
        with open(path, "rb") as f:
            return struct.unpack("<QQ", f.read(16))
    except (OSError, struct.error):
        return (None, None)


def start_drop_sender(sender, tools, nbytes, port, ns, files):
    if sender == "ours":
        return [spawn(in_ns([UTPBENCH, "utp-send", "--to", f"127.0.0.1:{port}", "--bytes", str(nbytes),
                             "--stamp", files("stamp"), "--report", files("sr")], ns),
                      stderr=subprocess.DEVNULL)]
    gen = spawn([UTPBENCH, "gen", "--bytes", str(nbytes), "--stamp", files("stamp"), "--hold"],
                stdout=subprocess.PIPE)
    env = dict(os.environ, LD_PRELOAD=tools["count-shim"], BENCH_COUNT_FILE=files("sc"))
    snd = spawn(in_ns([tools["ucat-real"], "127.0.0.1", str(port)], ns), stdin=gen.stdout,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    gen.stdout.close()
    return [snd, gen]


def drop_once(sender, tools, nbytes, ns, work, timeout):
    """One transfer from `sender` into real libutp's ucat at default buffers;
    counts the datagrams the receiver's socket dropped."""
    d = tempfile.mkdtemp(prefix=f"drop-{sender}-", dir=work)
    files = lambda n: os.path.join(d, n)
    port = free_port()
    env = dict(os.environ, LD_PRELOAD=tools["count-shim"], BENCH_COUNT_FILE=files("rc"))
    rcv = spawn(in_ns([tools["ucat-real"], "-l", "-p", str(port)], ns), env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    sink = spawn([UTPBENCH, "sink", "--bytes", str(nbytes), "--report", files("rr")], stdin=rcv.stdout)
    rcv.stdout.close()
    senders = []
    try:
        wait_bound(port, ns, rcv, "ucat")
        snmp0 = read_udp_snmp(ns)
        senders = start_drop_sender(sender, tools, nbytes, port, ns, files)
        rc = reap(sink, timeout)
        rr = parse_kv(files("rr"))
        if rc != 0 or rr.get("exact") != "yes":
            raise FunctionalError(f"receiver drops {sender}: sink rc={rc} {rr}")
        dropped = socket_drops(port, ns)
        snmp1 = read_udp_snmp(ns)
        received = read_counts(files("rc"))[0]
        sent = read_counts(files("sc"))[1]
        rcv.send_signal(signal.SIGINT)  # ucat closes its socket: ours' sender sees the FIN
        if sender == "ours" and reap(senders[0], 15) != 0:
            raise FunctionalError("receiver drops: utp-send into ucat failed")
        sr = numeric(parse_kv(files("sr")))
        if sender == "ours":
            sent = sr.get("packets_sent")
        secs = (int(rr["done_ns"]) - read_stamp(files("stamp"))) / 1e9
        return {"sender": sender, "bytes": nbytes, "sent": sent, "received": received,
                "dropped": dropped,
                "rcvbuf_errors": snmp1.get("RcvbufErrors", 0) - snmp0.get("RcvbufErrors", 0),
                "drop_pct": 100.0 * dropped / sent if sent else float("nan"),
                "mbit": nbytes * 8 / secs / 1e6, "stall_ms": float(rr["max_gap_ms"]),
                "timeout_retransmits": sr.get("timeout_retransmits"),
                "fast_retransmits": sr.get("fast_retransmits")}
    finally:
        for p in senders + [rcv, sink]:
            kill(p)
            reap(p, 5)


def run_drops(tools, sizes, runs, ns, work, timeout):
    """ours and libutp into ucat, alternating run by run, every size."""
    out = []
    for r in range(runs):
        order = rotated(DROP_SENDERS, r)
        for nbytes in sizes:
            for sender in order:
                res = drop_once(sender, tools, nbytes, ns, work, timeout)
                res["run"] = r
                log(f"receiver drops {sender} {nbytes / 1e6:.0f} MB run {r + 1}/{runs}: sent {res['sent']}, "
                    f"dropped {res['dropped']} ({res['drop_pct']:.2f} %), RcvbufErrors "
                    f"{res['rcvbuf_errors']}, {res['mbit']:.0f} Mbit/s")
                out.append(res)
    return out


def drops_summary(drops):
    """(sender, bytes, runs, {figure: (median, min, max)}) per sender and size."""
    rows = []
    for nbytes in sorted({r["bytes"] for r in drops}):
        for sender in DROP_SENDERS:
            runs = [r for r in drops if r["sender"] == sender and r["bytes"] == nbytes]
            if runs:
                figs = {k: median_spread([float(r[k]) for r in runs if r.get(k) is not None])
                        for k in ("sent", "received", "dropped", "rcvbuf_errors", "drop_pct", "mbit",
                                  "stall_ms", "timeout_retransmits", "fast_retransmits")}
                rows.append((sender, nbytes, len(runs), figs))
    return rows


def drops_targets(drops):
    """Per size: the median over ours' runs of the share of datagrams dropped
    at ucat's socket, ≤ 1 %; libutp's own figure beside it."""
    out = []
    rows = drops_summary(drops)
    for sender, nbytes, runs, figs in rows:
        if sender != "ours":
            continue
        pct = figs["drop_pct"]
        theirs = [f["drop_pct"][0] for s, n, _, f in rows if s == "libutp" and n == nbytes]
        beside = f"; libutp → ucat {theirs[0]:.2f} %" if theirs else ""
        out.append((f"receiver drops sending {nbytes / 1e6:.0f} MB to real libutp's ucat at default "
                    "buffers ≤ 1 % (median of runs)",
                    f"{pct[0]:.2f} % [{pct[1]:.2f}–{pct[2]:.2f}]{beside}", pct[0] <= 1.0))
    return out


def drops_markdown(drops, where, settings):
    L = ["## 6. Receiver drops: sending to real libutp's ucat at default buffers\n"]
    L.append(f"{settings}. The receiver is real libutp's upstream `ucat -l` (unmodified binary, default "
             "UDP buffers: `net.core.rmem_default`), its output checked by `utpbench sink`; the sender "
             "is ours (`utpbench utp-send`, Rust API, GSO on) or real libutp's `ucat`, on 127.0.0.1"
             f"{where}; the two senders alternate run by run. *dropped* = the receiving socket's own "
             "`drops` counter (`/proc/net/udp`), read when the sink has the last byte; *RcvbufErrors* = "
             "the delta of `/proc/net/snmp` over the same time (ucat has no GRO, so both count "
             "datagrams). *sent* = the sender's datagrams of every type: ours from its connection "
             "statistics (`packets_sent`), ucat's from an `LD_PRELOAD` shim counting its `sendto` calls "
             "(`bench/c/count_dgrams.c`); the same shim counts the receiver's `recvfrom` calls "
             "(*received*; received + dropped = sent, less the sender's last few packets). "
             "Drop % = dropped ÷ sent. Median with [min–max].\n")
    L.append("| size | sender | runs | sent | received | dropped | RcvbufErrors | drop % | Mbit/s | "
             "longest stall ms | RTO resends / fast retransmits |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    rng = lambda t, nd=0: f"{fmt(t[0], nd)} [{fmt(t[1], nd)}–{fmt(t[2], nd)}]"
    for sender, nbytes, runs, f in drops_summary(drops):
        retx = (f"{fmt(f['timeout_retransmits'][0], 0)} / {fmt(f['fast_retransmits'][0], 0)}"
                if sender == "ours" else "—")
        L.append(f"| {nbytes / 1e6:.0f} MB | {DROP_NAMES[sender]} | {runs} | {fmt(f['sent'][0], 0)} | "
                 f"{fmt(f['received'][0], 0)} | {rng(f['dropped'])} | {rng(f['rcvbuf_errors'])} | "
                 f"**{rng(f['drop_pct'], 2)}** | {rng(f['mbit'])} | {fmt(f['stall_ms'][0])} | {retx} |")
    L.append("\n![receiver drops](bench/plots/rcvdrops.png)\n")
    return L


# ---------------------------------------------------------------- bindings

BIND_BULK_IMPLS = ["rust", "utpt", "python", "python-asyncio", "node", "utp-native"]
BIND_PP_IMPLS = ["rust", "pp-ours", "pp-real", "utpt", "python", "node", "utp-native", "node-tcp"]
BIND_NAMES = {"rust": "Rust API (`UtpStream`)", "utpt": "threaded C API (`utpt_*`)",
              "python": "Python, socket API (`sendall` / `recv_into`)",
              "python-asyncio": "Python, asyncio streams",
              "node": "Node, utp-socket", "utp-native": "Node, utp-native 2.5.3 (real libutp)",
              "pp-ours": "C caller-driven API on ours (utp-ffi)", "pp-real": "real libutp, C API",
              "node-tcp": "Node, `net` over TCP (no uTP: the event loop's own floor)"}


def build_bindings(tools, smoke):
    """The programs of the bindings part; a binding that cannot be set up is
    left out with a note (no network for pip/npm, say)."""
    notes = []
    cc = ["gcc", "-O2", "-Wall", "-I", os.path.join(ROOT, "include")]
    out = os.path.join(BUILD, "utpt_bench")
    try:
        sh(*cc, os.path.join(ROOT, "bench", "c", "utpt_bench.c"), "-L", REL, "-lutp", "-lpthread",
           f"-Wl,-rpath,{REL}", "-o", out)
        tools["utpt_bench"] = out
    except FunctionalError as e:
        notes.append(f"- threaded C API left out: {e}")
    log("bindings: installing the Python binding into target/bench/pyenv (pip install ./bindings-python)")
    venv = os.path.join(BUILD, "pyenv")
    py = os.path.join(venv, "bin", "python")
    r = subprocess.run(f"{sys.executable} -m venv {venv} && {py} -m pip install --quiet "
                       f"--force-reinstall --no-deps ./bindings-python", shell=True, cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode == 0:
        tools["python"] = py
    else:
        notes.append("- Python binding left out: pip install failed: " + r.stderr.strip()[-300:])
    log("bindings: building the Node addon (node bindings-node/scripts/build.js) and "
        "installing utp-native@2.5.3 into target/bench/node")
    if shutil.which("node"):
        r = subprocess.run(["node", os.path.join(ROOT, "bindings-node", "scripts", "build.js")],
                           cwd=ROOT, capture_output=True, text=True)
        if r.returncode == 0:
            tools["node"] = os.path.join(ROOT, "bindings-node")
        else:
            notes.append("- Node binding left out: " + r.stderr.strip()[-300:])
        nd = os.path.join(BUILD, "node")
        os.makedirs(nd, exist_ok=True)
        if not os.path.exists(os.path.join(nd, "package.json")):
            with open(os.path.join(nd, "package.json"), "w") as f:
                f.write('{"name": "utp-bench", "version": "1.0.0", "private": true}\n')
        r = subprocess.run(["npm", "install", "--silent", "--no-fund", "--no-audit",
                            "utp-native@2.5.3"], cwd=nd, capture_output=True, text=True)
        if r.returncode == 0:
            tools["utp-native"] = os.path.join(nd, "node_modules", "utp-native")
        else:
            notes.append("- utp-native left out: npm install failed: " + r.stderr.strip()[-300:])
    else:
        notes.append("- Node bindings left out: no `node` on PATH.")
    return notes


def bind_argv(impl, tools, role, host, port, *rest):
    """The command of one role (recv, send, pp-server, pp-client) for `impl`."""
    bb = os.path.join(ROOT, "bench", "bindings")
    if impl == "rust":
        if role == "recv":
            n, rep = rest
            return [UTPBENCH, "utp-recv", "--bind", f"{host}:{port}", "--bytes", str(n), "--report", rep]
        if role == "send":
            n, st = rest
            return [UTPBENCH, "utp-send", "--to", f"{host}:{port}", "--bytes", str(n), "--stamp", st]
        if role == "pp-server":
            return [UTPBENCH, "pp-server", "--bind", f"{host}:{port}"]
        count, size = rest
        return [UTPBENCH, "pp-client", "--to", f"{host}:{port}", "--count", str(count), "--size", str(size)]
    if impl in ("pp-ours", "pp-real"):
        if role == "pp-server":
            return [tools[impl], "-l", str(port)]
        return [tools[impl], host, str(port)] + [str(x) for x in rest]
    if impl == "utpt":
        return [tools["utpt_bench"], role, host, str(port)] + [str(x) for x in rest]
    if impl in ("python", "python-asyncio"):
        r = ("a" + role) if impl == "python-asyncio" else role
        return [tools["python"], os.path.join(bb, "bench.py"), r, host, str(port)] + [str(x) for x in rest]
    mod = "tcp" if impl == "node-tcp" else tools[impl]
    return ["node", os.path.join(bb, "bench.js"), mod, role, host, str(port)] + [str(x) for x in rest]


def bind_available(impl, tools):
    need = {"utpt": "utpt_bench", "python": "python", "python-asyncio": "python", "node": "node",
            "node-tcp": "node",
            "utp-native": "utp-native", "pp-ours": "pp-ours", "pp-real": "pp-real"}.get(impl)
    return need is None or bool(tools.get(need))


def bind_bulk_once(impl, tools, nbytes, work, timeout):
    d = tempfile.mkdtemp(prefix=f"bind-{impl}-", dir=work)
    f = lambda n: os.path.join(d, n)
    port = free_port()
    recv = spawn(timed(bind_argv(impl, tools, "recv", "127.0.0.1", port, nbytes, f("rr")), f("tr")),
                 stdout=subprocess.DEVNULL)
    try:
        wait_bound(port, None, recv, impl)
        send = spawn(timed(bind_argv(impl, tools, "send", "127.0.0.1", port, nbytes, f("stamp")), f("ts")),
                     stdout=subprocess.DEVNULL)
        rc_s = reap(send, timeout)
        rc_r = reap(recv, 30)
        rr = parse_kv(f("rr"))
        if rc_s != 0 or rc_r != 0 or rr.get("exact") != "yes" or int(rr.get("bytes", -1)) != nbytes:
            raise FunctionalError(f"bindings bulk {impl}: sender rc={rc_s} receiver rc={rc_r} {rr}")
        secs = (int(rr["done_ns"]) - read_stamp(f("stamp"))) / 1e9
        tr, ts = parse_time(f("tr")), parse_time(f("ts"))
        gb = nbytes / 1e9
        return {"impl": impl, "bytes": nbytes, "secs": secs, "mbit": nbytes * 8 / secs / 1e6,
                "cpu_recv_per_gb": tr.get("cpu", float("nan")) / gb,
                "cpu_send_per_gb": ts.get("cpu", float("nan")) / gb,
                "rss_recv_mb": tr.get("rss_kb", 0) / 1024, "rss_send_mb": ts.get("rss_kb", 0) / 1024}
    finally:
        kill(recv)


def bind_pp_once(impl, tools, count, size):
    port = free_port()
    srv = spawn(bind_argv(impl, tools, "pp-server", "127.0.0.1", port), stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
    try:
        wait_bound(port, None, srv, impl, "tcp" if impl == "node-tcp" else "udp")
        p = subprocess.run(bind_argv(impl, tools, "pp-client", "127.0.0.1", port, count, size),
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise FunctionalError(f"bindings ping-pong {impl}: rc={p.returncode} {p.stderr.strip()[-300:]}")
        kvs = dict(l.split("=", 1) for l in p.stdout.split() if "=" in l)
        return {"impl": impl, "size": size, **{k: float(v) for k, v in kvs.items()}}
    finally:
        kill(srv)
        srv.wait()


def run_bindings(tools, work, smoke, env):
    """Every front end over loopback, alternating run by run: bulk one way
    (same program on both ends) and ping-pong."""
    out = {"bulk": [], "latency": []}
    if smoke:
        mb, small_mb, runs, count, rounds = 8, 2, 1, 300, 1
    else:
        mb = int(env.get("BENCH_BIND_MB", 1024))
        small_mb = int(env.get("BENCH_UTP_NATIVE_MB", 32))  # utp-native moves ~30 Mbit/s
        runs, count, rounds = int(env.get("BENCH_BIND_RUNS", 3)), 2000, 3
    out["settings"] = (f"bulk {mb} MiB (utp-native {small_mb} MiB) x {runs} runs; ping-pong "
                       f"{count} x 64 B x {rounds} runs")
    bulk = [i for i in BIND_BULK_IMPLS if bind_available(i, tools)]
    for r in range(runs):
        for impl in rotated(bulk, r):
            n = (small_mb if impl == "utp-native" else mb) << 20
            res = bind_bulk_once(impl, tools, n, work, 30 if smoke else max(120, n * 8 / 20e6))
            res["run"] = r
            log(f"bindings bulk run {r + 1}/{runs} {impl}: {res['mbit']:.0f} Mbit/s, CPU s/GB "
                f"send {res['cpu_send_per_gb']:.2f} recv {res['cpu_recv_per_gb']:.2f}")
            out["bulk"].append(res)
    pp = [i for i in BIND_PP_IMPLS if bind_available(i, tools)]
    for r in range(rounds):
        for impl in rotated(pp, r):
            res = bind_pp_once(impl, tools, count, 64)
            res["run"] = r
            log(f"bindings ping-pong {impl}: p50 {res['rtt_us_p50']:.1f} us p99 {res['rtt_us_p99']:.1f} us")
            out["latency"].append(res)
    return out


def bindings_targets(b):
    med = lambda impl, k, part="bulk": (statistics.median(r[k] for r in b[part] if r["impl"] == impl)
                                         if any(r["impl"] == impl for r in b[part]) else None)
    out = []
    rust_g, rust_p = med("rust", "mbit"), med("rust", "rtt_us_p50", "latency")
    for impl, frac, what in (("utpt", 0.8, "threaded C API"), ("python", 0.8, "Python"),
                             ("python-asyncio", 0.5, "Python asyncio"), ("node", 0.6, "Node")):
        g = med(impl, "mbit")
        if g and rust_g:
            out.append((f"bindings: {what} bulk goodput ≥ {frac * 100:.0f} % of the Rust API's",
                        f"{g / rust_g * 100:.0f} %", g / rust_g >= frac))
    g, u = med("node", "mbit"), med("utp-native", "mbit")
    if g and u:
        out.append(("bindings: Node bulk goodput ≥ 2× utp-native's", f"×{g / u:.0f}", g / u >= 2))
    c = med("pp-ours", "rtt_us_p50", "latency")
    if rust_p and c:
        out.append(("bindings: Rust API ping-pong p50 ≤ 1.3× the C caller-driven API's",
                    f"×{rust_p / c:.2f}", rust_p / c <= 1.3))
    for impl, lim, what in (("python", 1.5, "Python"), ("node", 2.0, "Node")):
        p = med(impl, "rtt_us_p50", "latency")
        if p and rust_p:
            out.append((f"bindings: {what} ping-pong p50 ≤ {lim}× the Rust API's", f"×{p / rust_p:.2f}",
                        p / rust_p <= lim))
    return out


def bindings_markdown(b):
    L = ["## 5. Bindings and the threaded C API (loopback)\n"]
    L.append(f"{b['settings']}. Each front end sends to itself (the same program on both ends, "
             "two processes); the runs alternate, the order rotating every run. Median with "
             "[min–max]. Goodput and CPU as in section 1; the receivers of the bindings check "
             "the byte count (their test suites check content byte by byte). Programs: "
             "`bench/bindings/bench.py`, `bench/bindings/bench.js` (utp-native's API, so the same "
             "file drives utp-socket and utp-native), `bench/c/utpt_bench.c`, `utpbench`.\n")
    L.append("| implementation | runs | MiB | Mbit/s | CPU s/GB sender | CPU s/GB receiver | peak RSS MB snd / rcv |")
    L.append("|---|---|---|---|---|---|---|")
    for impl in BIND_BULK_IMPLS:
        rs = [r for r in b["bulk"] if r["impl"] == impl]
        if not rs:
            continue
        g = median_spread([r["mbit"] for r in rs])
        cs = median_spread([r["cpu_send_per_gb"] for r in rs])
        cr = median_spread([r["cpu_recv_per_gb"] for r in rs])
        L.append(f"| {BIND_NAMES[impl]} | {len(rs)} | {rs[0]['bytes'] >> 20} | **{fmt(g[0])}** "
                 f"[{fmt(g[1])}–{fmt(g[2])}] | {fmt(cs[0], 2)} | {fmt(cr[0], 2)} | "
                 f"{fmt(median_spread([r['rss_send_mb'] for r in rs])[0])} / "
                 f"{fmt(median_spread([r['rss_recv_mb'] for r in rs])[0])} |")
    L.append("")
    L.append("Ping-pong: 64-byte messages on one connection, client and echo server of the same "
             "front end; median over runs of each run's percentile.\n")
    L.append("| implementation | runs | RTT p50 µs | p90 µs | p99 µs | max µs |")
    L.append("|---|---|---|---|---|---|")
    for impl in BIND_PP_IMPLS:
        rs = [r for r in b["latency"] if r["impl"] == impl]
        if rs:
            md = lambda k: statistics.median(r[k] for r in rs)
            L.append(f"| {BIND_NAMES[impl]} | {len(rs)} | **{md('rtt_us_p50'):.1f}** | "
                     f"{md('rtt_us_p90'):.1f} | {md('rtt_us_p99'):.1f} | {md('rtt_us_max'):.1f} |")
    L.append("")
    return L


# ---------------------------------------------------------------- testbed

def setup_testbed(tag):
    try:
        return _setup_testbed(tag)
    except FunctionalError as e:
        raise SetupError(f"testbed setup: {e}")


def _setup_testbed(tag):
    snd, rtr, rcv = f"{tag}-snd", f"{tag}-rtr", f"{tag}-rcv"
    for n in (snd, rtr, rcv):
        add_ns(n)
    veth(f"{tag}s", snd, "eth0", "10.202.1.1", rtr, "eth0", "10.202.1.2")
    veth(f"{tag}r", rtr, "eth1", "10.202.2.1", rcv, "eth0", "10.202.2.2")
    sh("ip", "-n", snd, "route", "add", "default", "via", "10.202.1.2")
    sh("ip", "-n", rcv, "route", "add", "default", "via", "10.202.2.1")
    sh("ip", "netns", "exec", rtr, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    # 20 Mbit/s, 1 s of buffer (2.5 MB) toward the receiver.
    sh("ip", "netns", "exec", rtr, "tc", "qdisc", "add", "dev", "eth1", "root", "tbf",
       "rate", f"{LINK_MBIT}mbit", "burst", "20kb", "limit", str(LINK_MBIT * 1000000 // 8))
    return {"snd": snd, "rtr": rtr, "rcv": rcv, "rip": "10.202.2.2"}


def start_flow(kind, tb, tools, d, name, secs, target_ms=None):
    """Starts receiver + sender of one flow; returns (procs, logfile)."""
    port = free_port()
    lg = os.path.join(d, f"{name}.log")
    rep = os.path.join(d, f"{name}.rep")
    rip = tb["rip"]
    procs = []
    if kind == "ours":
        extra = ["--target-ms", str(target_ms)] if target_ms else []
        r = spawn([UTPBENCH, "utp-recv", "--bind", f"{rip}:{port}", "--log", lg, "--report", rep]
                  + extra, ns=tb["rcv"])
        wait_bound(port, tb["rcv"], r, "utp-recv")
        s = spawn([UTPBENCH, "utp-send", "--to", f"{rip}:{port}", "--seconds", str(secs),
                   "--report", rep + ".send"] + extra, ns=tb["snd"], stderr=subprocess.DEVNULL)
        procs = [s, r]
    elif kind == "libutp":
        r = spawn([tools["ucat-real"], "-l", "-p", str(port)], ns=tb["rcv"], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        sink = spawn([UTPBENCH, "sink", "--log", lg, "--report", rep], stdin=r.stdout)
        r.stdout.close()
        wait_bound(port, tb["rcv"], r, "ucat")
        g = spawn([UTPBENCH, "gen", "--seconds", str(secs), "--hold"], ns=tb["snd"],
                  stdout=subprocess.PIPE)
        s = spawn([tools["ucat-real"], rip, str(port)], ns=tb["snd"], stdin=g.stdout,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g.stdout.close()
        procs = [g, s, r, sink]
    elif kind == "tcp":
        r = spawn([UTPBENCH, "tcp-recv", "--bind", f"{rip}:{port}", "--log", lg, "--report", rep],
                  ns=tb["rcv"])
        time.sleep(0.2)
        # CUBIC, the common default (this host's default may be BBR): set on
        # the socket, which needs root for algorithms the host does not allow.
        s = spawn([UTPBENCH, "tcp-send", "--to", f"{rip}:{port}", "--seconds", str(secs),
                   "--cc", "cubic"], ns=tb["snd"])
        procs = [s, r]
    return procs, lg, rep


def read_series(path):
    pts = []
    try:
        with open(path) as f:
            for line in f:
                a = line.split()
                if len(a) == 2:
                    pts.append((int(a[0]) / 1e9, int(a[1])))
    except OSError:
        pass
    return pts


def rate_series(pts, t0, win=0.5):
    """Goodput (Mbit/s) in `win`-second bins from cumulative byte samples."""
    if len(pts) < 2:
        return []
    out = []
    t = pts[0][0]
    j = 0
    end = pts[-1][0]
    while t + win <= end + 1e-9:
        # cumulative bytes at t and t+win (step interpolation on 100 ms samples)
        def at(x):
            nonlocal j
            b = 0
            for tt, bb in pts:
                if tt <= x:
                    b = bb
                else:
                    break
            return b
        out.append((t + win / 2 - t0, (at(t + win) - at(t)) * 8 / win / 1e6))
        t += win
    return out


def run_scenario(tb, tools, work, name, flows, duration, base_rtt):
    """flows: list of (label, kind, start_s, secs, target_ms)."""
    d = os.path.join(work, "tb-" + name)
    os.makedirs(d, exist_ok=True)
    plog = os.path.join(d, "probe.log")
    probe = spawn([UTPBENCH, "probe", "--to", f"{tb['rip']}:7", "--interval-ms", "50",
                   "--seconds", str(duration + 1.5), "--log", plog], ns=tb["snd"])
    time.sleep(1.0)  # idle probes first
    t0 = time.time()
    pending = sorted(flows, key=lambda x: x[2])
    running = {}
    while pending:
        label, kind, start, secs, tgt = pending[0]
        now = time.time() - t0
        if now < start:
            time.sleep(min(0.05, start - now))
            continue
        pending.pop(0)
        running[label] = (kind, start) + start_flow(kind, tb, tools, d, label, secs, tgt)
    rest = duration - (time.time() - t0)
    if rest > 0:
        time.sleep(rest)
    time.sleep(1.5)  # drain the 1 s queue
    for label, (kind, start, procs, lg, rep) in running.items():
        if kind == "libutp":
            g, s, r, sink = procs
            kill(s)
            kill(g)
            kill(r)
            reap(sink, 5)
        else:
            for p in procs:
                reap(p, 8)
    reap(probe, 10)
    # ---- analysis
    series = {}
    for label, (kind, start, procs, lg, rep) in running.items():
        pts = read_series(lg)
        rp = parse_kv(rep)
        if rp.get("exact") != "yes":
            raise FunctionalError(f"testbed {name}/{label}: data not byte-exact or missing: {rp}")
        series[label] = {"kind": kind, "start": start, "rate": rate_series(pts, t0), "pts": pts}
    rtts = []
    with open(plog) as f:
        for line in f:
            a = line.split()
            ts, rtt = int(a[0]) / 1e9 - t0, int(a[1])
            rtts.append((ts, rtt / 1000.0 if rtt >= 0 else None))
    return {"name": name, "series": series, "rtts": rtts, "t0": t0, "duration": duration,
            "base_rtt_ms": base_rtt}


def pct(vals, p):
    vals = sorted(vals)
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, int(round((len(vals) - 1) * p)))]


def window_mean(rate, a, b):
    v = [r for t, r in rate if a <= t <= b]
    return sum(v) / len(v) if v else float("nan")


def delay_stats(sc, a, b):
    base = sc["base_rtt_ms"]
    v = [r - base for t, r in sc["rtts"] if a <= t <= b and r is not None]
    lost = sum(1 for t, r in sc["rtts"] if a <= t <= b and r is None)
    return {"delay_p50_ms": pct(v, 0.5), "delay_p95_ms": pct(v, 0.95), "probe_loss": lost,
            "probes": len(v) + lost}


def base_rtt(tb):
    d = tempfile.mkdtemp()
    lg = os.path.join(d, "p")
    subprocess.run(["ip", "netns", "exec", tb["snd"], UTPBENCH, "probe", "--to", f"{tb['rip']}:7",
                    "--interval-ms", "20", "--seconds", "1", "--log", lg], timeout=30, check=True)
    v = [int(l.split()[1]) / 1000 for l in open(lg) if int(l.split()[1]) >= 0]
    shutil.rmtree(d)
    if not v:
        raise FunctionalError("testbed: latency probe got no answers")
    return min(v)


def run_testbed(tools, work, smoke, tag):
    tb = setup_testbed(tag)
    echo = spawn([UTPBENCH, "echo", "--bind", f"{tb['rip']}:7"], ns=tb["rcv"])
    time.sleep(0.2)
    base = base_rtt(tb)
    log(f"testbed: idle RTT {base:.3f} ms")
    out = []
    if smoke:
        plan = [("ours-alone", [("ours", "ours", 0, 2, None)], 2),
                ("libutp-alone", [("libutp", "libutp", 0, 2, None)], 2),
                ("tcp-alone", [("tcp", "tcp", 0, 2, None)], 2)]
    else:
        f = float(os.environ.get("BENCH_TB_SCALE", "1"))  # < 1 only to test the harness
        A, C, T, late = 20 * f, 45 * f, 15 * f, 10 * f
        plan = [
            ("ours-alone", [("ours", "ours", 0, A, None)], A),
            ("libutp-alone", [("libutp", "libutp", 0, A, None)], A),
            ("tcp-alone", [("tcp", "tcp", 0, A, None)], A),
            ("ours+tcp", [("ours", "ours", 0, C, None), ("tcp", "tcp", T, T, None)], C),
            # Fairness: two flows started together (20 s), and a latecomer
            # `late` s behind the first (40 s); the last 15 s / 20 s are measured.
            *[(f"two-{k}-{case}", [(f"{k}-1", k, 0, dur, None), (f"{k}-2", k, start2, dur - start2, None)], dur)
              for case, start2, dur in (("together", 0, A), ("latecomer", late, 2 * A))
              for k in ("ours", "libutp")],
            ("ours-alone-25ms", [("ours", "ours", 0, A, 25)], A),
            ("ours+tcp-25ms", [("ours", "ours", 0, C, 25), ("tcp", "tcp", T, T, None)], C),
        ]
    for name, flows, dur in plan:
        log(f"testbed scenario {name} ({dur} s)")
        sc = run_scenario(tb, tools, work, name, flows, dur, base)
        summarize_scenario(sc, flows)
        log(f"testbed {name}: " + json.dumps(sc["summary"]))
        out.append(sc)
    kill(echo)
    return out, base


def summarize_scenario(sc, flows):
    s = {}
    dur = sc["duration"]
    labels = [f[0] for f in flows]
    if len(flows) == 1:
        label = labels[0]
        a, b = (2.0 if dur >= 10 else 0.5), dur  # skip the start (slow start)
        mb = window_mean(sc["series"][label]["rate"], a, b)
        s.update(goodput_mbit=mb, link_use=mb / LINK_MBIT, **delay_stats(sc, a, b))
        kind, target = flows[0][1], flows[0][4] or 100
        if kind != "tcp":
            # When the added delay first reaches 90 % of the LEDBAT target.
            base = sc["base_rtt_ms"]
            s["target_ms"] = target
            s["reach_target_s"] = next((t for t, r in sc["rtts"]
                                        if t >= 0 and r is not None and r - base >= 0.9 * target), None)
    elif "tcp" in labels:
        ours = sc["series"]["ours"]["rate"]
        tcp = sc["series"]["tcp"]["rate"]
        tstart = [f for f in flows if f[0] == "tcp"][0][2]
        tend = tstart + [f for f in flows if f[0] == "tcp"][0][3]
        before = window_mean(ours, 3.0, tstart)
        s["ours_before_mbit"] = before
        s["ours_during_mbit"] = window_mean(ours, tstart + 3, tend)
        s["tcp_during_mbit"] = window_mean(tcp, tstart + 3, tend)
        s["ours_after_mbit"] = window_mean(ours, tend + 4, dur)
        tot = s["ours_during_mbit"] + s["tcp_during_mbit"]
        s["ours_share"] = s["ours_during_mbit"] / tot if tot else float("nan")
        # Yield: first 0.5 s bin after TCP starts where ours < 25 % of its level before.
        s["yield_s"] = next((t - tstart for t, r in ours if t > tstart and r < 0.25 * before), None)
        # TCP's last byte arrives when its cumulative count stops growing.
        pts = sc["series"]["tcp"]["pts"]
        last = pts[-1][1] if pts else 0
        tcp_done = next((t - sc["t0"] for t, b in pts if b >= last), tend)
        s["tcp_last_byte_s"] = tcp_done
        # Recovery: first bin after TCP's last byte where ours >= 80 % of before.
        s["recover_s"] = next((t - tcp_done for t, r in ours if t > tcp_done and r >= 0.8 * before),
                              None)
        s.update(delay_stats(sc, tstart + 3, tend))
        s["delay_before_p50_ms"] = delay_stats(sc, 3.0, tstart)["delay_p50_ms"]
    else:  # two of ours
        r1, r2 = sc["series"][labels[0]]["rate"], sc["series"][labels[1]]["rate"]
        # Steady state: from 5 s after the second flow starts, at most the last 20 s.
        st2 = flows[1][2]
        a, b = max(st2 + 5, dur - 20), dur
        x1, x2 = window_mean(r1, a, b), window_mean(r2, a, b)
        s.update(flow1_mbit=x1, flow2_mbit=x2, total_mbit=x1 + x2,
                 jain=(x1 + x2) ** 2 / (2 * (x1 * x1 + x2 * x2)) if x1 + x2 else float("nan"),
                 **delay_stats(sc, a, b))
    sc["summary"] = s


# ---------------------------------------------------------------- plots

def ensure_matplotlib():
    try:
        import matplotlib  # noqa
        return True
    except ImportError:
        log("installing matplotlib (pip install matplotlib)")
        r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
        if r.returncode != 0:
            return False
        import importlib
        importlib.invalidate_caches()
        return True


def plot_all(results, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(outdir, exist_ok=True)
    files = []
    names = {"rust": "ours (Rust API)", "rust-nogso": "ours, GSO/GRO off",
             "ucat-ours": "ucat.c on our libutp", "ucat-real": "real libutp ucat",
             "ucat-ours-tuned": "ucat.c on our libutp, 4 MiB buffers",
             "ucat-real-tuned": "real libutp ucat, 4 MiB buffers", "udp-gso": "plain UDP + GSO (ceiling)"}
    colors = {"rust": "#1f77b4", "rust-nogso": "#9ecae1", "ucat-ours": "#2ca02c", "ucat-real": "#d62728",
              "ucat-ours-tuned": "#98df8a",
              "ucat-real-tuned": "#ff9896", "udp-gso": "#7f7f7f"}
    # Bulk goodput bars with min-max whiskers.
    bulk = results.get("bulk", [])
    if bulk:
        links = sorted({r["link"] for r in bulk}, key=lambda x: (x != "loopback", x))
        impls = [i for i in BULK_IMPLS if any(r["impl"] == i for r in bulk)]
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
        for ax, metric, ylabel in ((axes[0], "mbit", "goodput (Mbit/s, log scale)"),
                                   (axes[1], "cpu_total_per_gb", "CPU s per GB (send+recv)")):
            w = 0.8 / len(impls)
            for k, impl in enumerate(impls):
                meds, lo, hi = [], [], []
                for link in links:
                    v = [(r["cpu_recv_per_gb"] + r["cpu_send_per_gb"]) if metric == "cpu_total_per_gb"
                         else r[metric] for r in bulk if r["impl"] == impl and r["link"] == link]
                    m, a, b = median_spread(v)
                    meds.append(m); lo.append(m - a); hi.append(b - m)
                xs = [i + (k - (len(impls) - 1) / 2) * w for i in range(len(links))]
                ax.bar(xs, meds, w, yerr=[lo, hi], capsize=4, label=names[impl], color=colors[impl])
                for x, m in zip(xs, meds):
                    if m != m:
                        continue
                    ax.annotate(f"{m:.0f}" if metric == "mbit" else f"{m:.2f}", (x, m),
                                ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                                textcoords="offset points")
            ax.set_xticks(range(len(links)))
            ax.set_xticklabels(links)
            ax.set_ylabel(ylabel)
            if metric == "mbit":
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
        n = len({r["run"] for r in bulk})
        fig.suptitle(f"Bulk one-way transfer, {bulk[0]['bytes'] / 2**20:.0f} MiB, median of {n} "
                     f"alternating runs (whiskers: min-max)")
        axes[0].legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        p = os.path.join(outdir, "bulk-goodput.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    lat = results.get("latency", [])
    if lat:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        impls = [i for i in ["rust", "pp-ours", "pp-real"] if any(r["impl"] == i for r in lat)]
        lnames = {"rust": "ours (Rust API)", "pp-ours": "C API on our libutp",
                  "pp-real": "real libutp"}
        lcol = {"rust": colors["rust"], "pp-ours": colors["ucat-ours"], "pp-real": colors["ucat-real"]}
        links = sorted({r["link"] for r in lat}, key=lambda x: (x != "loopback", x))
        w = 0.8 / len(impls)
        for k, impl in enumerate(impls):
            med = [statistics.median([r["rtt_us_p50"] for r in lat if r["impl"] == impl and r["link"] == l])
                   for l in links]
            p99 = [statistics.median([r["rtt_us_p99"] for r in lat if r["impl"] == impl and r["link"] == l])
                   for l in links]
            xs = [i + (k - (len(impls) - 1) / 2) * w for i in range(len(links))]
            ax.bar(xs, med, w, label=lnames[impl], color=lcol[impl])
            ax.scatter(xs, p99, marker="_", s=200, color="black")
            for x, m in zip(xs, med):
                ax.annotate(f"{m:.0f}", (x, m), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(links)))
        ax.set_xticklabels(links)
        ax.set_ylabel("round trip (µs): bar = median, dash = p99")
        ax.set_title(f"Ping-pong, {lat[0]['size']:.0f}-byte messages")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        p = os.path.join(outdir, "latency.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    tbs = results.get("testbed", [])
    if tbs:
        fig, axes = plt.subplots(len(tbs), 2, figsize=(13, 2.6 * len(tbs)), squeeze=False)
        fcol = {"ours": "#1f77b4", "ours-1": "#1f77b4", "ours-2": "#ff7f0e", "tcp": "#7f7f7f",
                "libutp": "#d62728", "libutp-1": "#d62728", "libutp-2": "#9467bd"}
        for i, sc in enumerate(tbs):
            a1, a2 = axes[i]
            for label, s in sc["series"].items():
                xs = [t for t, r in s["rate"]]
                ys = [r for t, r in s["rate"]]
                a1.plot(xs, ys, label=label, color=fcol.get(label), lw=1.3)
            a1.axhline(LINK_MBIT, color="k", ls=":", lw=0.8)
            a1.set_ylim(0, LINK_MBIT * 1.25)
            a1.set_xlim(-1, sc["duration"] + 1.5)
            a1.set_ylabel("Mbit/s")
            a1.set_title(f"{sc['name']}: goodput (0.5 s bins)", fontsize=9)
            a1.legend(fontsize=7, loc="upper right")
            xs = [t for t, r in sc["rtts"] if r is not None]
            ys = [r - sc["base_rtt_ms"] for t, r in sc["rtts"] if r is not None]
            a2.plot(xs, ys, ".", ms=2, color="#9467bd")
            tgt = 25 if "25ms" in sc["name"] else 100
            if "tcp-alone" not in sc["name"] and "libutp" not in sc["name"]:
                a2.axhline(tgt, color="g", ls="--", lw=0.8, label=f"ours' target {tgt} ms")
                a2.legend(fontsize=7, loc="upper right")
            a2.set_xlim(-1, sc["duration"] + 1.5)
            a2.set_ylim(0, max([150] + ys) * 1.1 if ys else 150)
            a2.set_ylabel("added delay (ms)")
            a2.set_title(f"{sc['name']}: queueing delay (50 ms UDP probe RTT − idle RTT)", fontsize=9)
        for ax in axes[-1]:
            ax.set_xlabel("time (s)")
        fig.tight_layout()
        p = os.path.join(outdir, "testbed.png")
        fig.savefig(p, dpi=90)
        plt.close(fig)
        files.append(p)
    if results.get("scale"):
        files.append(plot_scale(plt, results["scale"], outdir))
    if results.get("drops"):
        files.append(plot_drops(plt, results["drops"], outdir))
    return files


def plot_scale(plt, scale, outdir):
    """Aggregate goodput and its ratio to one flow against the number of
    connections, median with min-max whiskers."""
    rows = scale_summary(scale)
    conns = [r["conns"] for r in rows]
    fig, (ax_goodput, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, key, scale_by, ylabel in ((ax_goodput, "goodput_mbit", 1, "aggregate goodput (Mbit/s)"),
                                      (ax_ratio, "ratio", 100, "% of the 1-connection goodput")):
        med = [r[key][0] * scale_by for r in rows]
        err = [[(r[key][0] - r[key][1]) * scale_by for r in rows],
               [(r[key][2] - r[key][0]) * scale_by for r in rows]]
        ax.errorbar(conns, med, yerr=err, marker="o", capsize=4, color="#1f77b4", label="ours")
        for x, y, r in zip(conns, med, rows):
            ax.annotate(f"{y:.0f}\nRTOs {r['timeouts'][0]:.0f}" if key == "ratio" else f"{y:.0f}",
                        (x, y), ha="left", va="bottom", fontsize=8, xytext=(6, 4),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xticks(conns)
        ax.set_xticklabels([f"{n:,}" for n in conns])
        ax.set_xlabel("connections (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, max(m for m in med if m == m) * 1.3)
        ax.grid(alpha=0.3)
    for n, frac in ((100, 50), (1000, 30)):
        ax_ratio.plot([n], [frac], marker="_", ms=30, mew=2, color="#d62728")
    ax_ratio.plot([], [], marker="_", ls="", ms=12, mew=2, color="#d62728", label="target (at 100 and 1,000)")
    ax_ratio.legend(fontsize=8, loc="lower left")
    runs = max(r["runs"] for r in rows)
    fig.suptitle(f"Scale on loopback: {rows[0]['bytes_per_conn'][0] / 2**20:.0f} MiB in total over N "
                 f"connections, one process; median of {runs} runs (whiskers: min-max)")
    fig.tight_layout()
    p = os.path.join(outdir, "scale.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def plot_drops(plt, drops, outdir):
    """Drop % at ucat's socket per sender and size, median with min-max whiskers."""
    rows = drops_summary(drops)
    sizes = sorted({nbytes for _, nbytes, _, _ in rows})
    colors = {"ours": "#1f77b4", "libutp": "#d62728"}
    fig, ax = plt.subplots(figsize=(7.5, 4))
    w = 0.8 / len(DROP_SENDERS)
    for k, sender in enumerate(DROP_SENDERS):
        figs = {nbytes: f for s, nbytes, _, f in rows if s == sender}
        xs = [i + (k - (len(DROP_SENDERS) - 1) / 2) * w for i, n in enumerate(sizes) if n in figs]
        pct = [figs[n]["drop_pct"] for n in sizes if n in figs]
        ax.bar(xs, [p[0] for p in pct], w, yerr=[[p[0] - p[1] for p in pct], [p[2] - p[0] for p in pct]],
               capsize=4, color=colors[sender], label=DROP_NAMES[sender].replace("`", ""))
        for x, p in zip(xs, pct):
            ax.annotate(f"{p[0]:.2f} %", (x, p[0]), ha="left", va="bottom", fontsize=8, xytext=(4, 2),
                        textcoords="offset points")
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="target for ours: 1 %")
    ax.set_ylim(0, max(p[2] for _, _, _, f in rows for p in [f["drop_pct"]]) * 1.4)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{n / 1e6:.0f} MB" for n in sizes])
    ax.set_ylabel("datagrams dropped at ucat's socket (%)")
    ax.set_title("Sending to real libutp's ucat at default UDP buffers (loopback)\n"
                 f"median of {max(r[2] for r in rows)} alternating runs, whiskers: min-max", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = os.path.join(outdir, "rcvdrops.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


# ---------------------------------------------------------------- report

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    load = open("/proc/loadavg").read().split()[:3]
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "mem": mem,
            "loadavg_start": " ".join(load),
            "rustc": subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()}


def fmt(x, nd=1):
    if x is None:
        return "n/a"
    if isinstance(x, float) and x != x:
        return "n/a"
    return f"{x:.{nd}f}"


def bulk_table(bulk):
    rows = []
    links = sorted({r["link"] for r in bulk}, key=lambda x: (x != "loopback", x))
    for link in links:
        for impl in BULK_IMPLS:
            rs = [r for r in bulk if r["impl"] == impl and r["link"] == link]
            if not rs:
                continue
            g = median_spread([r["mbit"] for r in rs])
            cr = median_spread([r["cpu_recv_per_gb"] for r in rs])
            cs = median_spread([r["cpu_send_per_gb"] for r in rs])
            mr = median_spread([r["rss_recv_mb"] for r in rs])
            ms = median_spread([r["rss_send_mb"] for r in rs])
            st = median_spread([r["stall_ms"] for r in rs])
            rows.append((link, impl, len(rs), g, cs, cr, ms, mr, st))
    return rows


BULK_IMPLS = ["rust", "rust-nogso", "ucat-ours", "ucat-ours-tuned", "ucat-real", "ucat-real-tuned",
              "udp-gso"]
IMPL_NAMES = {"rust": "ours, Rust API", "rust-nogso": "ours, Rust API, GSO/GRO off",
              "udp-gso": "plain UDP with GSO (ceiling, no protocol)",
              "ucat-real-tuned": "real libutp, upstream ucat, 4 MiB UDP buffers",
              "ucat-ours-tuned": "ours, upstream ucat.c on our libutp, 4 MiB UDP buffers", "ucat-ours": "ours, upstream ucat.c on our libutp",
              "ucat-real": "real libutp, upstream ucat", "pp-ours": "ours, C API (utp-ffi)",
              "pp-real": "real libutp, C API"}


def print_summary(res):
    print("\n== bulk (median [min-max]) ==")
    print(f"{'link':9} {'impl':10} {'n':>2} {'Mbit/s':>22} {'CPU s/GB snd':>13} {'CPU s/GB rcv':>13} "
          f"{'RSS MB s/r':>11} {'stall ms':>9}")
    for link, impl, n, g, cs, cr, ms, mr, st in bulk_table(res.get("bulk", [])):
        print(f"{link:9} {impl:10} {n:2d} {fmt(g[0]):>8} [{fmt(g[1])}-{fmt(g[2])}] {fmt(cs[0], 2):>13} "
              f"{fmt(cr[0], 2):>13} {fmt(ms[0])}/{fmt(mr[0]):>5} {fmt(st[0]):>9}")
    print("== latency (ping-pong RTT, median of runs) ==")
    for link in sorted({r["link"] for r in res.get("latency", [])}):
        for impl in ["rust", "pp-ours", "pp-real"]:
            rs = [r for r in res["latency"] if r["impl"] == impl and r["link"] == link]
            if rs:
                print(f"{link:9} {impl:8} p50 {statistics.median(r['rtt_us_p50'] for r in rs):8.1f} us"
                      f"  p99 {statistics.median(r['rtt_us_p99'] for r in rs):8.1f} us")
    print("== scale (one context per side, medians) ==")
    for r in scale_summary(res.get("scale", [])):
        print(f"conns {r['conns']:>6}: {r['handshakes_per_s'][0]:>9.0f} hs/s  {r['goodput_mbit'][0]:>7.1f} "
              f"Mbit/s ({r['ratio'][0] * 100:.0f} % of 1 conn)  RTOs {r['timeouts'][0]:.0f}  fast retx "
              f"{r['fast_retransmits'][0]:.0f}  RcvbufErrors {r['udp_rcvbuf_errors'][0]:.0f}  "
              f"{r['mem_per_conn_bytes'][0]:>7.0f} B/conn")
    if res.get("drops"):
        print("== receiver drops into ucat at default buffers (medians) ==")
        for sender, nbytes, runs, f in drops_summary(res["drops"]):
            print(f"{nbytes / 1e6:5.0f} MB {sender:7} sent {f['sent'][0]:9.0f}  dropped {f['dropped'][0]:7.0f}"
                  f"  {f['drop_pct'][0]:6.2f} % [{f['drop_pct'][1]:.2f}-{f['drop_pct'][2]:.2f}]"
                  f"  {f['mbit'][0]:7.0f} Mbit/s")
    b = res.get("bindings")
    if b:
        print("== bindings (loopback, median) ==")
        for impl in BIND_BULK_IMPLS:
            rs = [r["mbit"] for r in b["bulk"] if r["impl"] == impl]
            if rs:
                print(f"bulk {impl:15} {statistics.median(rs):9.1f} Mbit/s")
        for impl in BIND_PP_IMPLS:
            rs = [r for r in b["latency"] if r["impl"] == impl]
            if rs:
                print(f"ping-pong {impl:10} p50 {statistics.median(r['rtt_us_p50'] for r in rs):8.1f} us"
                      f"  p99 {statistics.median(r['rtt_us_p99'] for r in rs):8.1f} us")
    print("== testbed ==")
    for sc in res.get("testbed", []):
        print(f"{sc['name']:16} " + " ".join(f"{k}={fmt(v, 2) if isinstance(v, float) else v}"
                                                 for k, v in sc["summary"].items()))


def targets(res):
    """(target, measured, met) rows from a run's results."""
    out = []
    bulk = res.get("bulk", [])
    med = lambda v: statistics.median(v) if v else None
    for link in sorted({r["link"] for r in bulk}, key=lambda x: (x != "loopback", x)):
        rs = lambda impl: [r for r in bulk if r["impl"] == impl and r["link"] == link]
        ours, udp = rs("rust"), rs("udp-gso")
        real, which = rs("ucat-real-tuned"), "tuned libutp"
        if not real:
            real, which = rs("ucat-real"), "libutp"
        if not ours:
            continue
        g = med([r["mbit"] for r in ours])
        if real:
            x = g / med([r["mbit"] for r in real])
            out.append((f"{link}: goodput ≥ 2× {which}", f"×{x:.1f}", x >= 2))
            for side, name in (("send", "sender"), ("recv", "receiver")):
                k = f"cpu_{side}_per_gb"
                c = med([r[k] for r in ours]) / med([r[k] for r in real])
                out.append((f"{link}: CPU per GB ≤ 0.4× {which}, {name}", f"×{c:.2f}", c <= 0.4))
        if udp:
            x = g / med([r["mbit"] for r in udp])
            out.append((f"{link}: goodput ≥ 0.5× plain UDP with GSO", f"×{x:.2f}", x >= 0.5))
        c_ours, c_real = rs("ucat-ours-tuned"), rs("ucat-real-tuned")
        if c_ours and c_real:
            x = med([r["mbit"] for r in c_ours]) / med([r["mbit"] for r in c_real])
            out.append((f"{link}: drop-in (ucat.c, 4 MiB buffers): goodput ≥ 2× tuned libutp", f"×{x:.2f}", x >= 2))
            for side, name in (("send", "sender"), ("recv", "receiver")):
                k = f"cpu_{side}_per_gb"
                c = med([r[k] for r in c_ours]) / med([r[k] for r in c_real])
                out.append((f"{link}: drop-in: CPU per GB ≤ 0.4× tuned libutp, {name}", f"×{c:.2f}", c <= 0.4))
        slow = min(r["mbit"] for r in ours) / g
        out.append((f"{link}: no stalls (slowest run ≥ 80 % of median)", f"{slow * 100:.0f} %", slow >= 0.8))
    if res.get("bindings"):
        out.extend(bindings_targets(res["bindings"]))
    if res.get("scale"):
        out.extend(scale_targets(res["scale"]))
    if res.get("drops"):
        out.extend(drops_targets(res["drops"]))
    for sc in res.get("testbed", []):
        x = sc["summary"]
        if sc["name"] in ("ours-alone", "ours-alone-25ms"):
            t = x["target_ms"]
            out.append((f"{sc['name']}: link use ≥ 95 %", f"{x['link_use'] * 100:.0f} %", x["link_use"] >= 0.95))
            d50, d95 = x["delay_p50_ms"], x["delay_p95_ms"]
            out.append((f"{sc['name']}: added delay within 10 % of {t} ms (p50 and p95)",
                        f"{fmt(d50)} / {fmt(d95)} ms",
                        abs(d50 - t) <= 0.1 * t and abs(d95 - t) <= 0.1 * t))
            r = x.get("reach_target_s")
            out.append((f"{sc['name']}: target delay reached within 3 s", f"{fmt(r, 2)} s",
                        r is not None and r <= 3))
        if sc["name"] in ("ours+tcp", "ours+tcp-25ms"):
            out.append((f"{sc['name']}: ≤ 6 % of the link while CUBIC runs", f"{x['ours_share'] * 100:.1f} %",
                        x["ours_share"] <= 0.06))
            y, rc = x.get("yield_s"), x.get("recover_s")
            out.append((f"{sc['name']}: gives way within 3 s", f"{fmt(y, 2)} s", y is not None and y <= 3))
            out.append((f"{sc['name']}: full link again within 2 s of CUBIC stopping", f"{fmt(rc, 2)} s",
                        rc is not None and rc <= 2))
        if sc["name"].startswith("two-ours-"):
            j = x.get("jain")
            out.append((f"{sc['name']}: Jain's index ≥ 0.95", fmt(j, 3), j is not None and j >= 0.95))
    return out


def write_markdown(res, path, cmd, plots):
    m = res["machine"]
    L = []
    L.append("# Benchmarks: ours against real libutp\n")
    L.append("Generated by `bench/run.sh --full` (see `bench/README.md` for the method). "
             "Every number below comes from the run described here; nothing is estimated.\n")
    L.append("## Run\n")
    L.append(f"- Date: {res['date']} (local), duration {res['elapsed_s'] / 60:.1f} min")
    L.append(f"- Command: `{cmd}`")
    L.append(f"- Settings: {res['settings']}")
    L.append(f"- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['mem']} RAM, Linux {m['kernel']}, {m['rustc']}")
    L.append(f"- Load average at start: {m['loadavg_start']}; at end: {res.get('loadavg_end', '?')}. "
             "The machine has 2 cores and is shared: other builds may have been running, so "
             "compare only the columns of one run (ours and libutp were measured alternately, "
             "run by run, never in separate sessions).")
    L.append(f"- Our C ABI (utp-ffi) column: {res['tools'].get('ffi')}")
    L.append("")
    tg = targets(res)
    if tg:
        L.append("## Targets\n")
        L.append("The project's targets, checked against this run (ratios within the run).\n")
        L.append("| target | measured | met |")
        L.append("|---|---|---|")
        for what, measured, ok in tg:
            L.append(f"| {what} | {measured} | {'yes' if ok else '**no**'} |")
        L.append("")
    bulk = res.get("bulk", [])
    if bulk:
        L.append("## 1. Bulk transfer (one way)\n")
        n = len({r['run'] for r in bulk})
        L.append(f"{bulk[0]['bytes'] / 2**20:.0f} MiB per transfer, {n} runs of each implementation per link, "
                 "alternating (the order rotates every run). Median, with [min–max] over the runs. "
                 "Goodput = bytes / (receiver got the last byte − sender started, handshake included). "
                 "CPU = user+system seconds of the uTP process only (GNU `time -v`), per GB (10^9 B). "
                 "Peak RSS from `time -v`. Longest stall = longest gap between two reads at the receiver.\n")
        L.append("| link | implementation | Mbit/s | CPU s/GB sender | CPU s/GB receiver | peak RSS MB snd / rcv | longest stall ms |")
        L.append("|---|---|---|---|---|---|---|")
        for link, impl, n, g, cs, cr, ms, mr, st in bulk_table(bulk):
            L.append(f"| {link} | {IMPL_NAMES[impl]} | **{fmt(g[0])}** [{fmt(g[1])}–{fmt(g[2])}] | "
                     f"{fmt(cs[0], 2)} [{fmt(cs[1], 2)}–{fmt(cs[2], 2)}] | {fmt(cr[0], 2)} [{fmt(cr[1], 2)}–{fmt(cr[2], 2)}] | "
                     f"{fmt(ms[0])} / {fmt(mr[0])} | {fmt(st[0])} [{fmt(st[1])}–{fmt(st[2])}] |")
        L.append("")
        rat = []
        for link in sorted({r["link"] for r in bulk}):
            def med(impl, f):
                v = [f(r) for r in bulk if r["impl"] == impl and r["link"] == link]
                return statistics.median(v) if v else None
            # Like for like: default buffers against default, tuned against tuned.
            for impl, ref in (("rust", "ucat-real"), ("rust", "ucat-real-tuned"),
                              ("ucat-ours", "ucat-real"), ("ucat-ours-tuned", "ucat-real-tuned")):
                real, ours = med(ref, lambda r: r["mbit"]), med(impl, lambda r: r["mbit"])
                if ours and real:
                    c_o = med(impl, lambda r: r["cpu_recv_per_gb"] + r["cpu_send_per_gb"])
                    c_r = med(ref, lambda r: r["cpu_recv_per_gb"] + r["cpu_send_per_gb"])
                    rat.append(f"- {link}, {IMPL_NAMES[impl]} vs {IMPL_NAMES[ref]}: goodput "
                               f"×{ours / real:.1f}, CPU per GB (both sides) ×{c_o / c_r:.2f}")
            ours, udp = med("rust", lambda r: r["mbit"]), med("udp-gso", lambda r: r["mbit"])
            if ours and udp:
                rat.append(f"- {link}, {IMPL_NAMES['rust']} vs plain UDP with GSO: goodput ×{ours / udp:.2f}")
            nogso = med("rust-nogso", lambda r: r["mbit"])
            if ours and nogso:
                rat.append(f"- {link}, GSO/GRO on vs off (Rust API): goodput ×{ours / nogso:.1f}")
        L.extend(rat)
        L.append("\n![bulk goodput](bench/plots/bulk-goodput.png)\n")
    lat = res.get("latency", [])
    if lat:
        L.append("## 2. Latency: ping-pong\n")
        L.append(f"{int(lat[0]['count'])} round trips of {int(lat[0]['size'])}-byte messages per run "
                 "(after 10 % warm-up), on one connection; the runs alternate. Median over runs of each run's percentile.\n")
        L.append("| link | implementation | runs | RTT p50 µs | p90 µs | p99 µs | max µs |")
        L.append("|---|---|---|---|---|---|---|")
        for link in sorted({r["link"] for r in lat}, key=lambda x: (x != "loopback", x)):
            for impl in ["rust", "pp-ours", "pp-real"]:
                rs = [r for r in lat if r["impl"] == impl and r["link"] == link]
                if rs:
                    md = lambda k: statistics.median(r[k] for r in rs)
                    L.append(f"| {link} | {IMPL_NAMES[impl]} | {len(rs)} | **{md('rtt_us_p50'):.1f}** | "
                             f"{md('rtt_us_p90'):.1f} | {md('rtt_us_p99'):.1f} | {md('rtt_us_max'):.1f} |")
        L.append("\nThe Rust-API program uses the threaded runtime: a blocked reader waits briefly, "
                 "then receives its datagrams itself, and a write leaves from the writer's thread. The C "
                 "programs run libutp's caller-driven event loop in one thread and sleep in poll() between "
                 "messages, so they pay the machine's wake-up latency, which varies from run to run.\n")
        L.append("![latency](bench/plots/latency.png)\n")
    if res.get("scale"):
        L.extend(scale_markdown(res["scale"], res.get("scale_where", "")))
    tbs = res.get("testbed", [])
    if tbs:
        L.append("## 4. LEDBAT testbed\n")
        L.append(f"Namespaces sender → router → receiver joined by veth pairs (MTU 1500). On the router's "
                 f"interface toward the receiver: `tc qdisc add dev eth1 root tbf rate {LINK_MBIT}mbit burst 20kb "
                 f"limit 2500000` (1 s of buffer at {LINK_MBIT} Mbit/s). No netem. A UDP echo probe "
                 "(64 bytes, every 50 ms) runs from the sender namespace to the receiver namespace through "
                 f"the same queue; added delay = probe RTT − idle RTT ({res['testbed_base_rtt_ms']:.3f} ms). "
                 "Goodput is measured at the receiver (application bytes, 0.5 s bins). "
                 "ours = Rust API, LEDBAT, target 100 ms unless noted; libutp = real ucat (target 100 ms); "
                 "TCP = CUBIC (set on the sending socket with `TCP_CONGESTION`).\n")
        L.append("### Alone (steady state, from t = 2 s)\n")
        L.append("| flow | goodput Mbit/s | link use | added delay p50 ms | p95 ms | reached 90 % of target at s | probes lost |")
        L.append("|---|---|---|---|---|---|---|")
        for s in tbs:
            if s["name"].endswith("alone") or s["name"].endswith("alone-25ms"):
                x = s["summary"]
                reach = (f"{fmt(x.get('reach_target_s'), 2)} (target {x['target_ms']} ms)"
                         if "target_ms" in x else "—")
                L.append(f"| {s['name']} | {fmt(x['goodput_mbit'], 2)} | {x['link_use'] * 100:.0f} % | "
                         f"{fmt(x['delay_p50_ms'])} | {fmt(x['delay_p95_ms'])} | {reach} | "
                         f"{x['probe_loss']}/{x['probes']} |")
        L.append("\n### Ours with a TCP flow started halfway and stopped\n")
        L.append("ours runs 0–45 s, TCP 15–30 s. Share = mean goodput over 18–30 s. "
                 "Yield time = from TCP's start to the first 0.5 s bin where ours is below 25 % of its "
                 "rate before TCP. Recovery time = from TCP's last byte arriving to the first bin where ours "
                 "is back at ≥ 80 % of its rate before TCP.\n")
        L.append("| scenario | ours before | ours during | TCP during | ours' share | yield s | recover s | ours after | delay p50 / p95 during TCP ms | delay p50 before TCP ms |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in tbs:
            if "+tcp" in s["name"]:
                x = s["summary"]
                L.append(f"| {s['name']} | {fmt(x['ours_before_mbit'], 2)} | {fmt(x['ours_during_mbit'], 2)} | "
                         f"{fmt(x['tcp_during_mbit'], 2)} | {x['ours_share'] * 100:.1f} % | {fmt(x['yield_s'], 2)} | "
                         f"{fmt(x['recover_s'], 2)} | {fmt(x['ours_after_mbit'], 2)} | "
                         f"{fmt(x['delay_p50_ms'])} / {fmt(x['delay_p95_ms'])} | {fmt(x['delay_before_p50_ms'])} |")
        two = [s for s in tbs if s["name"].startswith("two-")]
        if two:
            L.append("\n### Two flows of the same kind (fairness)\n")
            L.append("*together*: both flows run 0–20 s, means over 5–20 s. *latecomer*: flow 1 runs "
                     "0–40 s, flow 2 10–40 s, means over 20–40 s. Jain's index = (x1 + x2)² / (2 (x1² + x2²)).\n")
            L.append("| scenario | flow 1 Mbit/s | flow 2 Mbit/s | total | Jain's index | delay p50 / p95 ms |")
            L.append("|---|---|---|---|---|---|")
            for s in two:
                x = s["summary"]
                L.append(f"| {s['name']} | {fmt(x['flow1_mbit'], 2)} | {fmt(x['flow2_mbit'], 2)} | {fmt(x['total_mbit'], 2)} | "
                         f"{fmt(x['jain'], 3)} | {fmt(x['delay_p50_ms'])} / {fmt(x['delay_p95_ms'])} |")
        L.append("\n![testbed](bench/plots/testbed.png)\n")
    if res.get("bindings"):
        L.extend(bindings_markdown(res["bindings"]))
    if res.get("drops"):
        L.extend(drops_markdown(res["drops"], res.get("drops_where", ""), res.get("drops_settings", "")))
    if res.get("notes"):
        L.append("## Notes\n")
        L.extend(res["notes"])
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


# ---------------------------------------------------------------- main

SECTIONS = {"bulk": ["bulk"], "latency": ["latency"], "scale": ["scale", "scale_where"],
            "bindings": ["bindings"], "testbed": ["testbed", "testbed_base_rtt_ms"],
            "drops": ["drops", "drops_where", "drops_settings"]}


def merge_previous(res, only):
    """A partial run (BENCH_ONLY) keeps the other sections of the last full
    report, each marked with the date it was measured."""
    try:
        with open(os.path.join(ROOT, "bench", "results", "latest.json")) as f:
            prev = json.load(f)
    except (OSError, ValueError):
        return
    dates = dict(prev.get("section_dates", {}))
    for sec, keys in SECTIONS.items():
        if sec in only:
            dates[sec] = res["date"]
        elif prev.get(keys[0]):
            for k in keys:
                if k in prev:
                    res[k] = prev[k]
            dates.setdefault(sec, prev.get("date", "?"))
    res["section_dates"] = dates
    res["notes"].append("- This report merges runs: " + "; ".join(
        f"{sec} measured {d}" for sec, d in sorted(dates.items())) +
        f". This run (`BENCH_ONLY={','.join(only)}`) measured only its sections.")


def in_section_order(res):
    """The results with the run's own keys first, then the sections in
    SECTIONS order, so that latest.json diffs stay readable."""
    section_keys = [k for keys in SECTIONS.values() for k in keys]
    head = {k: v for k, v in res.items() if k not in section_keys}
    return head | {k: res[k] for k in section_keys if k in res}


def loopback_namespace(tag, wanted):
    """A namespace with only `lo`, for the parts whose kernel counters must
    see only their own traffic; (name, how the report says where), or the
    host's loopback when there are no namespaces."""
    if not wanted:
        return None, ", on the host's loopback (its UDP counters also see other traffic)"
    add_ns(f"{tag}-lo")
    return f"{tag}-lo", (", inside a network namespace of its own (only `lo`), so the UDP counters "
                         "of `/proc/net/snmp` see only this test's traffic")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--cmd", default="bench/run.sh")
    a = ap.parse_args()
    smoke = not a.full
    env = os.environ
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="utp-bench-")
    res = {"mode": "smoke" if smoke else "full", "date": time.strftime("%Y-%m-%d %H:%M %Z"),
           "machine": machine(), "notes": []}
    rc = 0
    try:
        tools = build(need_ffi=True)
        res["tools"] = {"ffi": tools["ffi"]}
        impls = (["rust", "rust-nogso"] + [i for i in ("ucat-ours", "ucat-ours-tuned") if i in tools]
                 + ["ucat-real", "ucat-real-tuned", "udp-gso"])
        pp_impls = ["rust"] + (["pp-ours"] if "pp-ours" in tools else []) + ["pp-real"]
        netns_ok = can_netns()
        if smoke:
            mb, runs, lat_n, lat_rounds, counts, scale_bytes = 8, 1, 300, 1, [1, 100], 4 << 20
            scale_runs, drop_sizes, drop_runs = 1, [4_000_000], 1
        else:
            mb = int(env.get("BENCH_BULK_MB", 1024))
            runs = int(env.get("BENCH_RUNS", 5))
            lat_n, lat_rounds = 2000, 3
            counts = [int(x) for x in env.get("BENCH_SCALE", "1,10,100,1000,10000").split(",")]
            scale_bytes = 64 << 20
            scale_runs = int(env.get("BENCH_SCALE_RUNS", 5))
            drop_sizes = [int(x) * 1_000_000 for x in env.get("BENCH_DROP_MB", "20,100").split(",")]
            drop_runs = int(env.get("BENCH_DROP_RUNS", 5))
        only = [x for x in env.get("BENCH_ONLY", "").split(",") if x]  # e.g. testbed
        want = lambda part: not only or part in only
        settings = {"bulk": f"bulk {mb} MiB x {runs} runs per implementation and link",
                    "latency": f"ping-pong {lat_n} x 64 B x {lat_rounds} runs",
                    "scale": f"scale {counts} connections with {scale_bytes >> 20} MiB in total, "
                             f"{scale_runs} runs each",
                    "drops": f"receiver drops: {', '.join(str(n // 1_000_000) for n in drop_sizes)} MB per "
                             f"transfer, {drop_runs} runs per sender and size"}
        res["settings"] = "; ".join(v for k, v in settings.items() if want(k))
        links = [{"name": "loopback", "recv_ns": None, "send_ns": None, "recv_ip": "127.0.0.1"}]
        tag = f"ub{os.getpid() % 100000}"
        if netns_ok:
            try:
                add_ns(f"{tag}-a")
                add_ns(f"{tag}-b")
                veth(f"{tag}v", f"{tag}-a", "eth0", "10.201.0.1", f"{tag}-b", "eth0", "10.201.0.2", 1500)
                links.append({"name": "veth", "recv_ns": f"{tag}-b", "send_ns": f"{tag}-a",
                              "recv_ip": "10.201.0.2"})
            except FunctionalError as e:
                if not smoke:
                    raise
                netns_ok = False
                res["notes"].append(f"- veth and testbed skipped: {e}")
                log(f"cannot set up a veth pair, veth and testbed are skipped: {e}")
        else:
            res["notes"].append("- veth and testbed skipped: no root / `ip netns` not available.")
            log("no network namespaces (not root?): veth and testbed are skipped")
        timeout = 30 if smoke else max(120, int(mb * 0.6))
        lo_ns, where = loopback_namespace(tag, netns_ok and (want("scale") or want("drops")))
        if want("bulk"):
            res["bulk"] = run_bulk(tools, impls, links, mb << 20, runs, work, timeout)
        res["latency"] = []
        if want("latency"):
            for link in (links[:1] if smoke else links):
                res["latency"] += run_latency(tools, pp_impls, link, lat_n, 64, lat_rounds, work)
        if want("scale"):
            res["scale"] = run_scale(counts, scale_bytes, scale_runs, work, lo_ns)
            res["scale_where"] = where
        if want("drops"):
            res["drops"] = run_drops(tools, drop_sizes, drop_runs, lo_ns, work, 30 if smoke else 120)
            res["drops_where"], res["drops_settings"] = where, settings["drops"].split(": ", 1)[1]
        if want("bindings"):
            res["notes"] += build_bindings(tools, smoke)
            res["bindings"] = run_bindings(tools, work, smoke, env)
        if netns_ok and want("testbed"):
            try:
                res["testbed"], res["testbed_base_rtt_ms"] = run_testbed(tools, work, smoke, tag)
            except SetupError as e:
                if not smoke:
                    raise
                res["notes"].append(f"- testbed skipped: {e}")
                log(f"testbed skipped: {e}")
        res["elapsed_s"] = time.time() - t_start
        res["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
        print_summary(res)
        if not smoke and only:
            merge_previous(res, only)
        if not smoke:
            outdir = os.path.join(ROOT, "bench", "plots")
            plots = []
            if ensure_matplotlib():
                plots = plot_all(res, outdir)
            else:
                res["notes"].append("- matplotlib could not be installed: no plots.")
            os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
            slim = dict(res)
            slim["testbed"] = [{k: v for k, v in sc.items() if k != "series"} |
                               {"series": {l: {"kind": s["kind"], "start": s["start"], "rate": s["rate"]}
                                           for l, s in sc["series"].items()}}
                               for sc in res.get("testbed", [])]
            with open(os.path.join(ROOT, "bench", "results", "latest.json"), "w") as f:
                json.dump(in_section_order(slim), f, indent=1)
            cmd = (f"BENCH_ONLY={','.join(only)} " if only else "") + a.cmd
            write_markdown(res, env.get("BENCH_MD", os.path.join(ROOT, "BENCHMARKS.md")), cmd, plots)
            log("wrote BENCHMARKS.md, bench/results/latest.json and", ", ".join(plots))
        print(f"\nbench: {'smoke' if smoke else 'full'} run OK in {time.time() - t_start:.0f} s")
    except FunctionalError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        rc = 1
    except subprocess.TimeoutExpired as e:
        print(f"bench: FAILED (timeout): {e}", file=sys.stderr)
        rc = 1
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    def _sig(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)
    sys.exit(main())
