//! `utpbench`: the Rust side of the benchmark harness (`bench/run.sh`).
//!
//! One binary, many small roles; the Python orchestrator (`bench/harness.py`)
//! starts them in the right namespaces and reads their reports.
//!
//! ```text
//! utpbench gen   --bytes N | --seconds S  [--stamp F]      pattern -> stdout
//! utpbench sink  [--bytes N] --report F [--log F]           stdin -> check pattern
//! utpbench utp-send --to ADDR (--bytes N | --seconds S) [--stamp F] [--target-ms T] [--reno] [--no-offload]
//! utpbench utp-recv --bind ADDR [--bytes N] --report F [--log F] [--target-ms T] [--no-offload]
//! utpbench tcp-send --to ADDR (--bytes N | --seconds S) [--cc cubic]
//! utpbench tcp-recv --bind ADDR --report F [--log F]
//! utpbench echo  --bind ADDR                                UDP echo (latency probe peer)
//! utpbench probe --to ADDR --interval-ms 50 --seconds S --log F
//! utpbench pp-server --bind ADDR                            uTP ping-pong server
//! utpbench pp-client --to ADDR --count N --size B --report F
//! utpbench scale --conns N --total-bytes B --report F [--threads T] [--no-offload|--no-gso|--no-gro]
//! utpbench soak  [--conns 1000] [--seconds 600] [--rate-mbit 200] [--sample 10] [--stall 10] [--csv F] [--report F]
//! utpbench udp-send --to ADDR --seconds S                   plain UDP, GSO (ceiling)
//! utpbench udp-recv --bind ADDR --report F                  recvmmsg, counts bytes
//! ```
//!
//! The data pattern is a fixed pseudo-random block of a prime length
//! (1,000,003 bytes) repeated: byte `i` of a stream is `BLOCK[i % P]`. Both
//! generation and checking are plain memory copies/compares, so the
//! benchmark processes spend next to nothing on it.
//!
//! Reports are `key=value` lines. Logs are `t_ns cumulative_bytes` lines,
//! one every 100 ms (absolute CLOCK_REALTIME nanoseconds, so logs written in
//! different network namespaces line up).
#![allow(clippy::field_reassign_with_default)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use utp_core::congestion::CongestionKind;
use utp_core::runtime::udp::{Datagram, RecvBatch, SendBatch, UdpSocket as RawUdp};
use utp_core::runtime::{RuntimeConfig, SocketOptions, UtpContext, UtpStream};

const P: usize = 1_000_003;

fn block() -> &'static [u8] {
    use std::sync::OnceLock;
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        // Block plus a tail so that any window of up to 1 MiB starting
        // anywhere in [0, P) is contiguous.
        let mut v = Vec::with_capacity(P + (1 << 19));
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..P {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push((x >> 24) as u8);
        }
        let head: Vec<u8> = v[..1 << 19].to_vec();
        v.extend_from_slice(&head);
        v
    })
}

/// Fills `buf` with the pattern for stream offset `off`.
fn fill(buf: &mut [u8], off: u64) {
    let b = block();
    let mut done = 0;
    while done < buf.len() {
        let start = ((off + done as u64) % P as u64) as usize;
        let n = (buf.len() - done).min(1 << 19);
        buf[done..done + n].copy_from_slice(&b[start..start + n]);
        done += n;
    }
}

/// True when `buf` is the pattern at stream offset `off`.
fn check(buf: &[u8], off: u64) -> bool {
    let b = block();
    let mut done = 0;
    while done < buf.len() {
        let start = ((off + done as u64) % P as u64) as usize;
        let n = (buf.len() - done).min(1 << 19);
        if buf[done..done + n] != b[start..start + n] {
            return false;
        }
        done += n;
    }
    true
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

struct Args(HashMap<String, String>);

impl Args {
    fn parse(v: &[String]) -> Args {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < v.len() {
            let k = v[i].trim_start_matches("--").to_string();
            if i + 1 < v.len() && !v[i + 1].starts_with("--") {
                m.insert(k, v[i + 1].clone());
                i += 2;
            } else {
                m.insert(k, String::new());
                i += 1;
            }
        }
        Args(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(|s| s.as_str())
    }
    fn req(&self, k: &str) -> &str {
        self.get(k)
            .unwrap_or_else(|| die(&format!("missing --{k}")))
    }
    fn num(&self, k: &str) -> Option<f64> {
        self.get(k).map(|s| {
            s.parse()
                .unwrap_or_else(|_| die(&format!("bad number for --{k}: {s}")))
        })
    }
    fn addr(&self, k: &str) -> SocketAddr {
        let s = self.req(k);
        s.parse()
            .unwrap_or_else(|_| die(&format!("bad address for --{k}: {s}")))
    }
    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

fn die(msg: &str) -> ! {
    eprintln!("utpbench: {msg}");
    std::process::exit(1)
}

fn write_report(path: Option<&str>, lines: &[(String, String)]) {
    let mut s = String::new();
    for (k, v) in lines {
        s.push_str(&format!("{k}={v}\n"));
    }
    match path {
        Some(p) => std::fs::write(p, s).unwrap_or_else(|e| die(&format!("write {p}: {e}"))),
        None => print!("{s}"),
    }
}

fn kv(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn stamp(path: Option<&str>) {
    if let Some(p) = path {
        std::fs::write(p, format!("{}\n", now_ns())).unwrap_or_else(|e| die(&format!("{e}")));
    }
}

/// Periodic `t_ns bytes` logger fed by an atomic counter.
struct Logger {
    stop: Arc<AtomicBool>,
    th: Option<std::thread::JoinHandle<()>>,
}

impl Logger {
    fn start(path: Option<&str>, counter: Arc<AtomicU64>) -> Logger {
        let stop = Arc::new(AtomicBool::new(false));
        let th = path.map(|p| {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p).unwrap_or_else(|e| die(&format!("{p}: {e}"))),
            );
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut next = Instant::now();
                loop {
                    let _ = writeln!(f, "{} {}", now_ns(), counter.load(Ordering::Relaxed));
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    next += Duration::from_millis(100);
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                }
                let _ = f.flush();
            })
        });
        Logger { stop, th }
    }
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.th.take() {
            let _ = t.join();
        }
    }
}

/// Receiver bookkeeping shared by every receiving role.
struct RecvTrack {
    total: u64,
    bad: bool,
    first_ns: Option<u128>,
    last: Option<Instant>,
    max_gap: Duration,
    counter: Arc<AtomicU64>,
}

impl RecvTrack {
    fn new(counter: Arc<AtomicU64>) -> RecvTrack {
        RecvTrack {
            total: 0,
            bad: false,
            first_ns: None,
            last: None,
            max_gap: Duration::ZERO,
            counter,
        }
    }
    fn got(&mut self, data: &[u8], verify: bool) {
        let now = Instant::now();
        if self.first_ns.is_none() {
            self.first_ns = Some(now_ns());
        }
        if let Some(l) = self.last {
            self.max_gap = self.max_gap.max(now - l);
        }
        self.last = Some(now);
        if verify && !self.bad && !check(data, self.total) {
            self.bad = true;
        }
        self.total += data.len() as u64;
        self.counter.store(self.total, Ordering::Relaxed);
    }
    fn report(&self, expect: Option<u64>, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let exact = !self.bad && expect.is_none_or(|e| e == self.total);
        let mut r = vec![
            kv("bytes", self.total),
            kv("exact", if exact { "yes" } else { "no" }),
            kv("first_ns", self.first_ns.unwrap_or(0)),
            kv("done_ns", now_ns()),
            kv(
                "max_gap_ms",
                format!("{:.3}", self.max_gap.as_secs_f64() * 1e3),
            ),
        ];
        r.extend(extra);
        r
    }
}

fn runtime_config(a: &Args) -> RuntimeConfig {
    let mut c = RuntimeConfig::default();
    if let Some(t) = a.num("target-ms") {
        c.endpoint.target_delay_us = (t * 1000.0) as u32;
    }
    if a.flag("reno") {
        c.endpoint.congestion = CongestionKind::Reno;
    }
    if a.flag("no-offload") || a.flag("no-gso") {
        c.socket.gso = false;
    }
    if a.flag("no-offload") || a.flag("no-gro") {
        c.socket.gro = false;
    }
    c
}

/// How much the sender sends: a byte count or a duration.
enum Amount {
    Bytes(u64),
    Seconds(Duration),
}

fn amount(a: &Args) -> Amount {
    match (a.num("bytes"), a.num("seconds")) {
        (Some(b), _) => Amount::Bytes(b as u64),
        (None, Some(s)) => Amount::Seconds(Duration::from_secs_f64(s)),
        _ => die("need --bytes or --seconds"),
    }
}

/// Writes the pattern to `w` until the amount is reached; returns bytes written.
fn pump<W: Write>(w: &mut W, amt: &Amount) -> io::Result<u64> {
    let chunk = 256 * 1024;
    let mut buf = vec![0u8; chunk];
    let mut sent = 0u64;
    let start = Instant::now();
    loop {
        let n = match amt {
            Amount::Bytes(b) => {
                if sent >= *b {
                    break;
                }
                chunk.min((*b - sent) as usize)
            }
            Amount::Seconds(d) => {
                if start.elapsed() >= *d {
                    break;
                }
                16 * 1024
            }
        };
        fill(&mut buf[..n], sent);
        w.write_all(&buf[..n])?;
        sent += n as u64;
    }
    Ok(sent)
}

fn cmd_gen(a: &Args) {
    stamp(a.get("stamp"));
    let out = io::stdout();
    let mut out = out.lock();
    match pump(&mut out, &amount(a)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => die(&format!("gen: {e}")),
    }
    let _ = out.flush();
    // --hold: keep stdout open until killed. Upstream ucat polls its closed
    // stdin after EOF (POLLNVAL) and spins at 100 % CPU until it exits; with
    // --hold it never sees EOF, so its CPU time is the transfer's alone.
    if a.flag("hold") {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn cmd_sink(a: &Args) {
    let expect = a.num("bytes").map(|b| b as u64);
    let counter = Arc::new(AtomicU64::new(0));
    let logger = Logger::start(a.get("log"), counter.clone());
    let mut t = RecvTrack::new(counter);
    let mut buf = vec![0u8; 256 * 1024];
    let stdin = io::stdin();
    let mut inp = stdin.lock();
    loop {
        let want = match expect {
            Some(e) if t.total >= e => break,
            Some(e) => buf.len().min((e - t.total) as usize),
            None => buf.len(),
        };
        let n = match inp.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => die(&format!("sink: {e}")),
        };
        t.got(&buf[..n], !a.flag("no-verify"));
    }
    logger.finish();
    write_report(a.get("report"), &t.report(expect, vec![]));
}

fn cmd_utp_send(a: &Args) {
    stamp(a.get("stamp"));
    let to = a.addr("to");
    let local: SocketAddr = a.get("bind").unwrap_or("0.0.0.0:0").parse().unwrap();
    let mut cfg = runtime_config(a);
    cfg.endpoint.accept_incoming = false;
    cfg.backlog = 0;
    let ctx =
        UtpContext::bind_with_config(local, cfg).unwrap_or_else(|e| die(&format!("bind: {e}")));
    let mut s = ctx
        .connect(to)
        .unwrap_or_else(|e| die(&format!("connect {to}: {e}")));
    let sent = pump(&mut s, &amount(a)).unwrap_or_else(|e| die(&format!("send: {e}")));
    s.shutdown(Shutdown::Write)
        .unwrap_or_else(|e| die(&format!("shutdown: {e}")));
    // Wait for the receiver's FIN: everything arrived.
    let mut sink = [0u8; 64];
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    loop {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => die(&format!("waiting for peer FIN: {e}")),
        }
    }
    let st = s.stats().ok();
    let mut r = vec![kv("sent", sent)];
    if let Some(st) = st {
        r.push(kv("timeout_retransmits", st.timeout_retransmits));
        r.push(kv("fast_retransmits", st.fast_retransmits));
        r.push(kv("packets_sent", st.packets_sent));
    }
    write_report(a.get("report"), &r);
}

fn cmd_utp_recv(a: &Args) {
    let bind = a.addr("bind");
    let expect = a.num("bytes").map(|b| b as u64);
    let ctx = UtpContext::bind_with_config(bind, runtime_config(a))
        .unwrap_or_else(|e| die(&format!("bind {bind}: {e}")));
    if let Some(p) = a.get("ready") {
        std::fs::write(p, "ready\n").unwrap();
    }
    let (mut s, _peer) = ctx
        .accept()
        .unwrap_or_else(|e| die(&format!("accept: {e}")));
    let t = receive_all(a, &mut s, "recv");
    let rep = t.report(expect, vec![]);
    s.shutdown(Shutdown::Write).ok();
    write_report(a.get("report"), &rep);
    // Let the FIN go out and be acknowledged.
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
}

fn cmd_tcp_send(a: &Args) {
    let to = a.addr("to");
    let mut s = TcpStream::connect(to).unwrap_or_else(|e| die(&format!("tcp connect: {e}")));
    if let Some(cc) = a.get("cc") {
        set_tcp_congestion(&s, cc);
    }
    let _ = pump(&mut s, &amount(a));
    let _ = s.shutdown(Shutdown::Write);
    let mut b = [0u8; 16];
    let _ = s.read(&mut b);
}

/// Picks the socket's TCP congestion control (before any data is sent).
/// Algorithms outside `tcp_allowed_congestion_control` need CAP_NET_ADMIN.
fn set_tcp_congestion(s: &TcpStream, cc: &str) {
    use std::os::fd::AsRawFd;
    // SAFETY: the pointer and length describe the bytes of `cc`.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr() as *const libc::c_void,
            cc.len() as libc::socklen_t,
        )
    };
    if r != 0 {
        die(&format!(
            "TCP_CONGESTION {cc}: {}",
            io::Error::last_os_error()
        ));
    }
}

fn cmd_tcp_recv(a: &Args) {
    let l = TcpListener::bind(a.addr("bind")).unwrap_or_else(|e| die(&format!("tcp bind: {e}")));
    let (mut s, _) = l
        .accept()
        .unwrap_or_else(|e| die(&format!("tcp accept: {e}")));
    let t = receive_all(a, &mut s, "tcp recv");
    write_report(a.get("report"), &t.report(None, vec![]));
}

/// Reads `r` to its end, checking the pattern and logging progress
/// (`--log`); dies on a read error.
fn receive_all(a: &Args, r: &mut impl Read, what: &str) -> RecvTrack {
    let counter = Arc::new(AtomicU64::new(0));
    let logger = Logger::start(a.get("log"), counter.clone());
    let mut t = RecvTrack::new(counter);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => t.got(&buf[..n], true),
            Err(e) => die(&format!("{what}: {e}")),
        }
    }
    logger.finish();
    t
}

fn cmd_echo(a: &Args) {
    let s = UdpSocket::bind(a.addr("bind")).unwrap_or_else(|e| die(&format!("echo bind: {e}")));
    let mut buf = [0u8; 2048];
    loop {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    }
}

/// Sends a 64-byte UDP probe every interval; logs `send_ns rtt_us` (rtt -1 = lost).
fn cmd_probe(a: &Args) {
    let to = a.addr("to");
    let interval = Duration::from_secs_f64(a.num("interval-ms").unwrap_or(50.0) / 1e3);
    let total = Duration::from_secs_f64(a.num("seconds").unwrap_or(10.0));
    let s = Arc::new(UdpSocket::bind("0.0.0.0:0").unwrap());
    s.connect(to).unwrap();
    let sent: Arc<Mutex<HashMap<u64, (u128, Instant)>>> = Default::default();
    let results: Arc<Mutex<Vec<(u128, i64)>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let (s, sent, results, stop) = (s.clone(), sent.clone(), results.clone(), stop.clone());
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = s.recv(&mut buf) {
                    if n >= 8 {
                        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap());
                        if let Some((ns, t)) = sent.lock().unwrap().remove(&seq) {
                            results
                                .lock()
                                .unwrap()
                                .push((ns, t.elapsed().as_micros() as i64));
                        }
                    }
                }
            }
        })
    };
    let start = Instant::now();
    let mut seq = 0u64;
    let mut next = start;
    while start.elapsed() < total {
        let mut pkt = [0u8; 64];
        pkt[..8].copy_from_slice(&seq.to_le_bytes());
        sent.lock().unwrap().insert(seq, (now_ns(), Instant::now()));
        let _ = s.send(&pkt);
        seq += 1;
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    // Give the last probes up to 3 s (the testbed queue holds up to 1 s).
    std::thread::sleep(Duration::from_secs(3).min(interval * 60));
    stop.store(true, Ordering::Relaxed);
    let _ = rx.join();
    let mut res = results.lock().unwrap().clone();
    for (_, (ns, _)) in sent.lock().unwrap().iter() {
        res.push((*ns, -1));
    }
    res.sort();
    let mut out = String::new();
    for (ns, rtt) in res {
        out.push_str(&format!("{ns} {rtt}\n"));
    }
    std::fs::write(a.req("log"), out).unwrap();
}

fn cmd_pp_server(a: &Args) {
    let bind = a.addr("bind");
    let ctx = UtpContext::bind(bind).unwrap_or_else(|e| die(&format!("bind: {e}")));
    loop {
        let (mut s, _) = match ctx.accept() {
            Ok(x) => x,
            Err(e) => die(&format!("accept: {e}")),
        };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
}

fn cmd_pp_client(a: &Args) {
    let to = a.addr("to");
    let count = a.num("count").unwrap_or(1000.0) as usize;
    let size = a.num("size").unwrap_or(64.0) as usize;
    let warm = (count / 10).max(1);
    let mut s = UtpStream::connect(to).unwrap_or_else(|e| die(&format!("connect: {e}")));
    let mut msg = vec![0u8; size];
    let mut back = vec![0u8; size];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + warm {
        fill(&mut msg, i as u64);
        let t = Instant::now();
        s.write_all(&msg)
            .unwrap_or_else(|e| die(&format!("write: {e}")));
        s.read_exact(&mut back)
            .unwrap_or_else(|e| die(&format!("read: {e}")));
        let rtt = t.elapsed();
        if back != msg {
            die("echo differs");
        }
        if i >= warm {
            rtts.push(rtt.as_secs_f64() * 1e6);
        }
    }
    s.shutdown(Shutdown::Write).ok();
    write_report(a.get("report"), &rtt_summary(&mut rtts));
}

fn rtt_summary(v: &mut [f64]) -> Vec<(String, String)> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    vec![
        kv("count", v.len()),
        kv("rtt_us_p50", format!("{:.1}", q(0.5))),
        kv("rtt_us_p90", format!("{:.1}", q(0.9))),
        kv("rtt_us_p99", format!("{:.1}", q(0.99))),
        kv("rtt_us_min", format!("{:.1}", q(0.0))),
        kv("rtt_us_max", format!("{:.1}", q(1.0))),
    ]
}

// ---------------------------------------------------------------- scale

fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for l in s.lines() {
        if let Some(r) = l.strip_prefix("VmRSS:") {
            return r.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
        }
    }
    0
}

/// Messages the kernel dropped for a full UDP receive buffer
/// (`RcvbufErrors` of `/proc/net/snmp`: this network namespace, every
/// socket). A GSO message delivered whole to a GRO socket counts once,
/// however many datagrams it held.
fn udp_rcvbuf_errors() -> u64 {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = s.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user+sys) of this process's threads whose name starts with `prefix`.
fn thread_cpu(tids: &[u32]) -> f64 {
    let tck = 100.0; // CLK_TCK on Linux
    let mut tot = 0.0;
    for t in tids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{t}/stat")) {
            if let Some(rest) = s.rsplit_once(") ").map(|x| x.1) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let u: f64 = f[11].parse().unwrap_or(0.0);
                let sy: f64 = f[12].parse().unwrap_or(0.0);
                tot += (u + sy) / tck;
            }
        }
    }
    tot
}

fn io_threads(port: u16) -> Vec<u32> {
    let mut v = vec![];
    let want = format!("utp-io-{port}");
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let tid: u32 = e.file_name().to_string_lossy().parse().unwrap_or(0);
            let comm =
                std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
            if comm.trim() == want {
                v.push(tid);
            }
        }
    }
    v
}

/// A server and a client context on 127.0.0.1 sized for `n` connections.
fn bind_pair(a: &Args, n: usize) -> (UtpContext, UtpContext) {
    let mut cfg = runtime_config(a);
    cfg.backlog = n + 16;
    cfg.endpoint.max_half_open = n + 16;
    cfg.endpoint.max_connections = 2 * n + 64;
    let server = UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), cfg.clone())
        .unwrap_or_else(|e| die(&format!("bind: {e}")));
    let mut ccfg = cfg;
    ccfg.endpoint.accept_incoming = false;
    let client = UtpContext::bind_with_config("127.0.0.1:0".parse().unwrap(), ccfg)
        .unwrap_or_else(|e| die(&format!("bind: {e}")));
    (server, client)
}

/// Connected streams of `open_all`: client ends, server ends, when the
/// clients were connected and when everything was accepted.
struct Opened {
    client: Vec<UtpStream>,
    server: Vec<UtpStream>,
    connected: Duration,
    all_up: Duration,
}

/// `n` connections from `client` to `server`, made from `threads` threads
/// while the server accepts in the background.
fn open_all(
    server: &UtpContext,
    client: &UtpContext,
    n: usize,
    threads: usize,
    deadline: Instant,
) -> Result<Opened, String> {
    let saddr = server.local_addr().unwrap();
    let accepted: Arc<Mutex<Vec<UtpStream>>> = Default::default();
    let acc_th = {
        let (server, accepted) = (server.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut got = 0;
            while got < n {
                match server.accept_timeout(Duration::from_secs(5)) {
                    Ok((s, _)) => {
                        accepted.lock().unwrap().push(s);
                        got += 1;
                    }
                    Err(e) => {
                        if Instant::now() > deadline {
                            return Err(format!("accept after {got}: {e}"));
                        }
                    }
                }
            }
            Ok(())
        })
    };
    let t0 = Instant::now();
    let mut ths = vec![];
    for k in 0..threads {
        let client = client.clone();
        let cnt = n / threads + usize::from(k < n % threads);
        ths.push(std::thread::spawn(
            move || -> Result<Vec<UtpStream>, String> {
                let mut v = Vec::with_capacity(cnt);
                for _ in 0..cnt {
                    let s = client
                        .connect_timeout(&saddr, Duration::from_secs(30))
                        .map_err(|e| format!("connect: {e}"))?;
                    v.push(s);
                }
                Ok(v)
            },
        ));
    }
    let mut cstreams: Vec<UtpStream> = vec![];
    let mut errors = vec![];
    for t in ths {
        match t.join().unwrap() {
            Ok(v) => cstreams.extend(v),
            Err(e) => errors.push(e),
        }
    }
    let connected = t0.elapsed();
    let acc_res = acc_th.join().unwrap();
    let all_up = t0.elapsed();
    if let Err(e) = acc_res {
        errors.push(e);
    }
    if let Some(e) = errors.first() {
        return Err(format!(
            "{} of {n} connected; first error: {e}",
            cstreams.len()
        ));
    }
    let server = std::mem::take(&mut *accepted.lock().unwrap());
    Ok(Opened {
        client: cstreams,
        server,
        connected,
        all_up,
    })
}

fn cmd_scale(a: &Args) {
    let n = a.num("conns").unwrap_or(100.0) as usize;
    let total = a.num("total-bytes").unwrap_or(64.0 * 1048576.0) as u64;
    let per = (total / n as u64).max(4096);
    let threads = (a.num("threads").unwrap_or(16.0) as usize).clamp(1, n);
    let timeout = Duration::from_secs_f64(a.num("timeout").unwrap_or(120.0));
    let (server, client) = bind_pair(a, n);
    let saddr = server.local_addr().unwrap();
    let cport = client.local_addr().unwrap().port();
    std::thread::sleep(Duration::from_millis(50));
    let s_io = io_threads(saddr.port());
    let c_io = io_threads(cport);
    if s_io.is_empty() || c_io.is_empty() {
        die("cannot find the I/O threads by name");
    }
    let rss0 = rss_kb();
    let cpu0 = (thread_cpu(&s_io), thread_cpu(&c_io));
    let deadline = Instant::now() + timeout;
    let Opened {
        client: cstreams,
        server: sstreams,
        connected,
        all_up,
    } = open_all(&server, &client, n, threads, deadline)
        .unwrap_or_else(|e| die(&format!("scale {n}: {e}")));
    let mut errors: Vec<String> = vec![];
    let cpu1 = (thread_cpu(&s_io), thread_cpu(&c_io));
    std::thread::sleep(Duration::from_millis(200));
    let rss1 = rss_kb();

    // Transfer `per` bytes on every connection, client -> server, with
    // non-blocking round-robin loops on a few threads per side.
    let rcvbuf0 = udp_rcvbuf_errors();
    let t1 = Instant::now();
    let workers = threads.clamp(1, 4);
    let bad = Arc::new(AtomicBool::new(false));
    let mut parts_c: Vec<Vec<UtpStream>> = (0..workers).map(|_| vec![]).collect();
    for (i, s) in cstreams.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        parts_c[i % workers].push(s);
    }
    let mut parts_s: Vec<Vec<UtpStream>> = (0..workers).map(|_| vec![]).collect();
    for (i, s) in sstreams.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        parts_s[i % workers].push(s);
    }
    let mut ths = vec![];
    for mut part in parts_c {
        ths.push(std::thread::spawn(
            move || -> Result<Vec<UtpStream>, String> {
                let mut pos = vec![0u64; part.len()];
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = part.len();
                while left > 0 {
                    if Instant::now() > deadline {
                        return Err(format!("send timeout, {left} connections unfinished"));
                    }
                    let mut progress = false;
                    for (i, s) in part.iter_mut().enumerate() {
                        if pos[i] >= per {
                            continue;
                        }
                        let m = buf.len().min((per - pos[i]) as usize);
                        fill(&mut buf[..m], pos[i]);
                        match s.write(&buf[..m]) {
                            Ok(w) => {
                                pos[i] += w as u64;
                                progress = true;
                                if pos[i] >= per {
                                    s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
                                    left -= 1;
                                }
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(format!("write: {e}")),
                        }
                    }
                    if !progress {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                Ok(part)
            },
        ));
    }
    let received = Arc::new(AtomicU64::new(0));
    let mut rths = vec![];
    for mut part in parts_s {
        let (bad, received) = (bad.clone(), received.clone());
        rths.push(std::thread::spawn(
            move || -> Result<Vec<UtpStream>, String> {
                let mut pos = vec![0u64; part.len()];
                let mut done = vec![false; part.len()];
                let mut buf = vec![0u8; 64 * 1024];
                let mut left = part.len();
                while left > 0 {
                    if Instant::now() > deadline {
                        return Err(format!("receive timeout, {left} connections unfinished"));
                    }
                    let mut progress = false;
                    for (i, s) in part.iter_mut().enumerate() {
                        if done[i] {
                            continue;
                        }
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => {
                                    done[i] = true;
                                    left -= 1;
                                    if pos[i] != per {
                                        bad.store(true, Ordering::Relaxed);
                                    }
                                    break;
                                }
                                Ok(m) => {
                                    if !check(&buf[..m], pos[i]) {
                                        bad.store(true, Ordering::Relaxed);
                                    }
                                    pos[i] += m as u64;
                                    received.fetch_add(m as u64, Ordering::Relaxed);
                                    progress = true;
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) => return Err(format!("read: {e}")),
                            }
                        }
                    }
                    if !progress {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                Ok(part)
            },
        ));
    }
    let mut keep = vec![];
    let mut keep_server = vec![];
    for t in rths {
        match t.join().unwrap() {
            Ok(v) => keep_server.push(v),
            Err(e) => errors.push(e),
        }
    }
    let xfer = t1.elapsed();
    for t in ths {
        match t.join().unwrap() {
            Ok(v) => keep.push(v),
            Err(e) => errors.push(e),
        }
    }
    let cpu2 = (thread_cpu(&s_io), thread_cpu(&c_io));
    // Loss recovery on the sending side, summed over the connections.
    let (mut rto, mut fast, mut timeouts) = (0u64, 0u64, 0u64);
    for st in keep.iter().flatten().filter_map(|s| s.stats().ok()) {
        rto += st.timeout_retransmits;
        fast += st.fast_retransmits;
        timeouts += st.timeouts;
    }
    // Copies that arrived twice: retransmissions that were not needed.
    let duplicates: u64 = keep_server
        .iter()
        .flatten()
        .filter_map(|s| s.stats().ok())
        .map(|st| st.duplicates_received)
        .sum();
    let rcvbuf_drops = udp_rcvbuf_errors().saturating_sub(rcvbuf0);
    let got = received.load(Ordering::Relaxed);
    let exact = errors.is_empty() && !bad.load(Ordering::Relaxed) && got == per * n as u64;
    let mut r = vec![
        kv("conns", n),
        kv("connect_threads", threads),
        kv("handshake_s", format!("{:.4}", all_up.as_secs_f64())),
        kv(
            "client_connected_s",
            format!("{:.4}", connected.as_secs_f64()),
        ),
        kv(
            "handshakes_per_s",
            format!("{:.1}", n as f64 / all_up.as_secs_f64()),
        ),
        kv("rss_before_kb", rss0),
        kv("rss_established_kb", rss1),
        kv(
            "mem_per_conn_bytes",
            format!(
                "{:.0}",
                (rss1 as f64 - rss0 as f64) * 1024.0 / n as f64 / 2.0
            ),
        ),
        kv("bytes_per_conn", per),
        kv("bytes_total", got),
        kv("xfer_s", format!("{:.4}", xfer.as_secs_f64())),
        kv("timeouts", timeouts),
        kv("timeout_retransmits", rto),
        kv("fast_retransmits", fast),
        kv("duplicates_received", duplicates),
        kv("udp_rcvbuf_errors", rcvbuf_drops),
        kv(
            "goodput_mbit",
            format!("{:.1}", got as f64 * 8.0 / xfer.as_secs_f64() / 1e6),
        ),
        kv(
            "io_cpu_handshake_server_s",
            format!("{:.2}", cpu1.0 - cpu0.0),
        ),
        kv(
            "io_cpu_handshake_client_s",
            format!("{:.2}", cpu1.1 - cpu0.1),
        ),
        kv("io_cpu_xfer_server_s", format!("{:.2}", cpu2.0 - cpu1.0)),
        kv("io_cpu_xfer_client_s", format!("{:.2}", cpu2.1 - cpu1.1)),
        kv("rss_end_kb", rss_kb()),
        kv(
            "mem_per_conn_after_xfer_bytes",
            format!(
                "{:.0}",
                (rss_kb() as f64 - rss0 as f64) * 1024.0 / n as f64 / 2.0
            ),
        ),
        kv("exact", if exact { "yes" } else { "no" }),
    ];
    if let Some(e) = errors.first() {
        r.push(kv("error", e.replace('\n', " ")));
    }
    write_report(a.get("report"), &r);
    if !exact {
        std::process::exit(1);
    }
    // Skip the graceful close of thousands of connections.
    std::process::exit(0);
}

// ---------------------------------------------------------------- soak

/// What one soak sender worker did.
struct SoakSent {
    bytes: u64,
    streams: Vec<UtpStream>,
}

/// `soak`: `--conns` connections carry the pattern for `--seconds`, paced
/// to `--rate-mbit` in all, then end their streams. Every `--sample`
/// seconds a line of RSS and progress (also to `--csv`). Fails when a byte
/// is out of place, a connection makes no progress for `--stall` seconds
/// while data flows, a stream comes up short, or RSS grows by more than
/// `--max-rss-growth` percent between the end of the first sixth of the
/// run and its end.
fn cmd_soak(a: &Args) {
    let n = (a.num("conns").unwrap_or(1000.0) as usize).max(1);
    let run = Duration::from_secs_f64(a.num("seconds").unwrap_or(600.0));
    let rate = a.num("rate-mbit").unwrap_or(200.0) * 1e6 / 8.0;
    let every = Duration::from_secs_f64(a.num("sample").unwrap_or(10.0));
    let stall = Duration::from_secs_f64(a.num("stall").unwrap_or(10.0));
    let max_growth = a.num("max-rss-growth").unwrap_or(25.0);
    let workers = n.min(4);
    let (server, client) = bind_pair(a, n);
    let rss0 = rss_kb();
    let opened = open_all(
        &server,
        &client,
        n,
        n.min(16),
        Instant::now() + Duration::from_secs(120),
    )
    .unwrap_or_else(|e| die(&format!("soak: {e}")));
    let rss_up = rss_kb();
    let start = Instant::now();
    let stop_at = start + run;
    let ms = move || start.elapsed().as_millis() as u64;

    // Receivers: check every byte, note each stream's last progress.
    let received = Arc::new(AtomicU64::new(0));
    let last_progress: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let finished = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicBool::new(false));
    let mut parts: Vec<Vec<(usize, UtpStream)>> = (0..workers).map(|_| vec![]).collect();
    for (i, s) in opened.server.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        parts[i % workers].push((i, s));
    }
    let mut rths = vec![];
    for mut part in parts {
        let (received, last, finished, bad) = (
            received.clone(),
            last_progress.clone(),
            finished.clone(),
            bad.clone(),
        );
        rths.push(std::thread::spawn(move || -> Result<(), String> {
            let mut pos = vec![0u64; part.len()];
            let mut done = vec![false; part.len()];
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = part.len();
            let give_up = stop_at + Duration::from_secs(120);
            while left > 0 {
                if Instant::now() > give_up {
                    return Err(format!("{left} streams did not end"));
                }
                let mut progress = false;
                for (k, (i, s)) in part.iter_mut().enumerate() {
                    while !done[k] {
                        match s.read(&mut buf) {
                            Ok(0) => {
                                done[k] = true;
                                left -= 1;
                                finished.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(m) => {
                                if !check(&buf[..m], pos[k]) {
                                    bad.store(true, Ordering::Relaxed);
                                }
                                pos[k] += m as u64;
                                received.fetch_add(m as u64, Ordering::Relaxed);
                                last[*i].store(ms(), Ordering::Relaxed);
                                progress = true;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(format!("read: {e}")),
                        }
                    }
                }
                if !progress {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        }));
    }

    // Senders: paced round robin, then FIN on every stream.
    let mut parts: Vec<Vec<UtpStream>> = (0..workers).map(|_| vec![]).collect();
    for (i, s) in opened.client.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        parts[i % workers].push(s);
    }
    let per_worker = rate / workers as f64;
    let mut sths = vec![];
    for mut part in parts {
        sths.push(std::thread::spawn(move || -> Result<SoakSent, String> {
            let mut pos = vec![0u64; part.len()];
            let mut buf = vec![0u8; 16 * 1024];
            let (mut sent, mut cursor) = (0u64, 0usize);
            while Instant::now() < stop_at {
                let allowed = (per_worker * start.elapsed().as_secs_f64()) as u64;
                if sent >= allowed {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                // Round robin from where the budget last ran out.
                for _ in 0..part.len() {
                    let m = buf.len().min(allowed.saturating_sub(sent) as usize);
                    if m == 0 {
                        break;
                    }
                    let k = cursor;
                    cursor = (cursor + 1) % part.len();
                    fill(&mut buf[..m], pos[k]);
                    match part[k].write(&buf[..m]) {
                        Ok(w) => {
                            pos[k] += w as u64;
                            sent += w as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
            for s in &part {
                s.shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
            }
            Ok(SoakSent {
                bytes: sent,
                streams: part,
            })
        }));
    }

    // Samples until every stream has ended.
    let mut csv = a.get("csv").map(|p| {
        let mut f = std::fs::File::create(p).unwrap_or_else(|e| die(&format!("{p}: {e}")));
        writeln!(f, "t_s,rss_kb,received_bytes,oldest_progress_ms").unwrap();
        f
    });
    let (mut samples, mut worst_gap, mut next) = (vec![], 0u64, start + every);
    while finished.load(Ordering::Relaxed) < n as u64
        && Instant::now() < stop_at + Duration::from_secs(130)
    {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += every;
        let now = ms();
        // Streams still sending that have waited longest for data.
        let gap = if Instant::now() < stop_at {
            last_progress
                .iter()
                .map(|t| now.saturating_sub(t.load(Ordering::Relaxed)))
                .max()
                .unwrap_or(0)
        } else {
            0
        };
        worst_gap = worst_gap.max(gap);
        let (rss, got) = (rss_kb(), received.load(Ordering::Relaxed));
        samples.push((now, rss));
        eprintln!(
            "soak: t={:>5.0} s  rss {:>7.1} MiB  received {:>9.1} MiB  oldest progress {gap} ms",
            now as f64 / 1000.0,
            rss as f64 / 1024.0,
            got as f64 / 1048576.0
        );
        if let Some(f) = csv.as_mut() {
            writeln!(f, "{:.1},{rss},{got},{gap}", now as f64 / 1000.0).unwrap();
        }
    }
    let mut errors = vec![];
    let mut sent = 0u64;
    let mut keep = vec![];
    for t in sths {
        match t.join().unwrap() {
            Ok(r) => {
                sent += r.bytes;
                keep.push(r.streams);
            }
            Err(e) => errors.push(e),
        }
    }
    for t in rths {
        if let Err(e) = t.join().unwrap() {
            errors.push(e);
        }
    }
    let (mut rto, mut fast) = (0u64, 0u64);
    for st in keep.iter().flatten().filter_map(|s| s.stats().ok()) {
        rto += st.timeout_retransmits;
        fast += st.fast_retransmits;
    }
    let got = received.load(Ordering::Relaxed);
    // RSS growth from the end of the first sixth of the run (warm-up) to its end.
    let settled = samples
        .iter()
        .find(|(t, _)| *t >= run.as_millis() as u64 / 6)
        .map_or(rss_up, |s| s.1);
    let last = samples
        .iter()
        .rev()
        .find(|(t, _)| *t <= run.as_millis() as u64)
        .map_or(settled, |s| s.1);
    let growth = (last as f64 - settled as f64) * 100.0 / settled.max(1) as f64;
    if bad.load(Ordering::Relaxed) {
        errors.push("a byte out of place".into());
    }
    if got != sent {
        errors.push(format!("sent {sent} bytes, received {got}"));
    }
    if worst_gap > stall.as_millis() as u64 {
        errors.push(format!("a connection made no progress for {worst_gap} ms"));
    }
    if growth > max_growth {
        errors.push(format!("RSS grew {growth:.1} %"));
    }
    let mut r = vec![
        kv("conns", n),
        kv("seconds", run.as_secs_f64()),
        kv("rate_mbit_asked", rate * 8.0 / 1e6),
        kv("bytes_sent", sent),
        kv("bytes_received", got),
        kv(
            "goodput_mbit",
            format!("{:.1}", got as f64 * 8.0 / run.as_secs_f64() / 1e6),
        ),
        kv("timeout_retransmits", rto),
        kv("fast_retransmits", fast),
        kv("worst_progress_gap_ms", worst_gap),
        kv("rss_before_kb", rss0),
        kv("rss_connected_kb", rss_up),
        kv("rss_settled_kb", settled),
        kv("rss_last_kb", last),
        kv("rss_growth_pct", format!("{growth:.1}")),
        kv(
            "idle_bytes_per_conn_end",
            format!(
                "{:.0}",
                (rss_up as f64 - rss0 as f64) * 1024.0 / n as f64 / 2.0
            ),
        ),
        kv(
            "busy_bytes_per_conn_end",
            format!(
                "{:.0}",
                (last as f64 - rss0 as f64) * 1024.0 / n as f64 / 2.0
            ),
        ),
        kv("ok", if errors.is_empty() { "yes" } else { "no" }),
    ];
    if let Some(e) = errors.first() {
        r.push(kv("error", e));
    }
    write_report(a.get("report"), &r);
    std::process::exit(if errors.is_empty() { 0 } else { 1 });
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if argv.len() < 2 {
        die("usage: utpbench <role> [--options]; see bench/README.md");
    }
    let a = Args::parse(&argv[2..]);
    match argv[1].as_str() {
        "gen" => cmd_gen(&a),
        "sink" => cmd_sink(&a),
        "utp-send" => cmd_utp_send(&a),
        "utp-recv" => cmd_utp_recv(&a),
        "tcp-send" => cmd_tcp_send(&a),
        "tcp-recv" => cmd_tcp_recv(&a),
        "echo" => cmd_echo(&a),
        "probe" => cmd_probe(&a),
        "pp-server" => cmd_pp_server(&a),
        "pp-client" => cmd_pp_client(&a),
        "scale" => cmd_scale(&a),
        "soak" => cmd_soak(&a),
        "udp-send" => cmd_udp_send(&a),
        "udp-recv" => cmd_udp_recv(&a),
        r => die(&format!("unknown role {r}")),
    }
}

/// Plain UDP datagram of the baseline: a fixed payload, no allocation.
struct Blast(SocketAddr, &'static [u8]);

impl Datagram for Blast {
    fn destination(&self) -> SocketAddr {
        self.0
    }
    fn payload(&self) -> &[u8] {
        self.1
    }
}

fn poll_fd(fd: i32, events: i16, ms: i32) {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// The ceiling for any protocol over UDP on this machine: 1,400-byte
/// datagrams as fast as the kernel takes them, with GSO (sendmmsg, 64
/// datagrams per message). No congestion or flow control.
fn cmd_udp_send(a: &Args) {
    use std::os::fd::AsRawFd;
    let to = a.addr("to");
    let secs = Duration::from_secs_f64(a.num("seconds").unwrap_or(2.0));
    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = RawUdp::bind(bind, &SocketOptions::default())
        .unwrap_or_else(|e| die(&format!("udp-send bind: {e}")));
    let payload: &'static [u8] = Box::leak(vec![0x5a; 1400].into_boxed_slice());
    let mut batch = SendBatch::new();
    let mut q = std::collections::VecDeque::new();
    let end = Instant::now() + secs;
    while Instant::now() < end {
        while q.len() < 1024 {
            q.push_back(Blast(to, payload));
        }
        if sock.send_queue(&mut batch, &mut q).blocked {
            poll_fd(sock.as_raw_fd(), libc::POLLOUT, 10);
        }
    }
    // A short run of empty datagrams tells the receiver to stop.
    for _ in 0..20 {
        q.clear();
        q.push_back(Blast(to, &[]));
        sock.send_queue(&mut batch, &mut q);
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts what `udp-send` delivers (recvmmsg, no GRO, as a uTP receiver
/// without offload would): bytes between the first and the last datagram.
fn cmd_udp_recv(a: &Args) {
    use std::os::fd::AsRawFd;
    let opts = SocketOptions {
        gro: false,
        ..SocketOptions::default()
    };
    let sock =
        RawUdp::bind(a.addr("bind"), &opts).unwrap_or_else(|e| die(&format!("udp-recv bind: {e}")));
    let mut batch = RecvBatch::new(2048);
    let (mut bytes, mut first, mut last) = (0u64, None, 0u128);
    let deadline = Instant::now() + Duration::from_secs_f64(a.num("timeout").unwrap_or(60.0));
    'outer: while Instant::now() < deadline {
        poll_fd(sock.as_raw_fd(), libc::POLLIN, 100);
        while sock.recv_batch(&mut batch).unwrap_or(0) > 0 {
            for (_, d) in batch.datagrams() {
                if d.is_empty() {
                    if first.is_some() {
                        break 'outer;
                    }
                    continue;
                }
                first.get_or_insert_with(now_ns);
                bytes += d.len() as u64;
            }
            last = now_ns();
        }
    }
    let first = first.unwrap_or(last);
    let secs = (last.saturating_sub(first)) as f64 / 1e9;
    write_report(
        a.get("report"),
        &[
            kv("bytes", bytes),
            kv("first_ns", first),
            kv("done_ns", last),
            kv(
                "mbit",
                format!("{:.1}", bytes as f64 * 8.0 / secs.max(1e-9) / 1e6),
            ),
            kv("exact", "yes"),
            kv("max_gap_ms", "0"),
        ],
    );
}
