//! `utpcat`: netcat over uTP, with the command line of libutp's `ucat`.
//!
//! ```text
//! utpcat [-h] [-d...] [-B size] [-s srcIP] [-n] [-p localport] <dest-IP> <dest-port>
//! utpcat [-h] [-d...] [-B size] [-s srcIP] -l -p <localport>
//! ```
//!
//! Connect mode sends stdin to the peer, half-closes (FIN) at end of input,
//! and copies everything the peer sends to stdout until the peer's FIN.
//! Listen mode accepts one connection, copies what it receives to stdout
//! and, unless stdin is a terminal, sends stdin too, then half-closes.
//!
//! Unlike `ucat`, both ends exit by themselves once the transfer is
//! complete: status 0 after the peer's FIN arrived, everything we sent was
//! acknowledged and the connection closed; on error a message such as
//! `utpcat: connection refused` and status 1 (2 for usage errors).
//!
//! The runtime has no direct signal for "our FIN was acknowledged", so
//! after both directions finished and all our data was acknowledged,
//! utpcat closes the stream and waits for the context's I/O thread to exit.
//! That includes the engine's TIME_WAIT, so the process ends about 2 s
//! after the transfer itself.
//!
//! Options:
//! * `-d` debug messages on stderr (`-dd`: also progress once a second)
//! * `-B size` size of the stdin read buffer (default 65536)
//! * `-s srcIP` local address to bind (default 0.0.0.0, or :: for IPv6)
//! * `-n` numeric addresses only (no DNS look-up)
//! * `-p port` local port (default: ephemeral; required with `-l`)
//! * `-l` listen mode
//!
//! Build: `cargo build --release --example utpcat`, then run
//! `target/release/examples/utpcat`.

use std::io::{self, IsTerminal, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, ToSocketAddrs};
use std::process::exit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use utp_core::runtime::{RuntimeConfig, UtpContext, UtpStream};

const USAGE: &str = "\
usage: utpcat [-h] [-d...] [-B size] [-s srcIP] [-n] [-p localport] <dest-IP> <dest-port>
       utpcat [-h] [-d...] [-B size] [-s srcIP] -l -p <localport>

  -h          show this help
  -d          debug messages on stderr (repeat for more: -dd)
  -B size     stdin read buffer size in bytes (default 65536)
  -s srcIP    local address to bind (default 0.0.0.0)
  -n          numeric addresses only, no DNS look-up
  -p port     local port (required with -l)
  -l          listen for one incoming connection
";

/// Default size of the stdin read buffer.
const DEFAULT_BUFFER: usize = 64 * 1024;
/// How long the engine may keep trying to deliver our FIN after `close`.
const LINGER: Duration = Duration::from_secs(10);
/// Upper bound on waiting for the close to complete (linger plus the
/// engine's short TIME_WAIT plus slack).
const CLOSE_WAIT: Duration = Duration::from_secs(15);

static DEBUG: AtomicU32 = AtomicU32::new(0);

macro_rules! debug {
    ($level:expr, $($arg:tt)*) => {
        if DEBUG.load(Ordering::Relaxed) >= $level {
            eprintln!("utpcat: {}", format_args!($($arg)*));
        }
    };
}

/// Prints `utpcat: <msg>` and exits with `code`.
fn die(code: i32, msg: impl std::fmt::Display) -> ! {
    eprintln!("utpcat: {msg}");
    exit(code)
}

fn usage_error(msg: impl std::fmt::Display) -> ! {
    eprintln!("utpcat: {msg}");
    eprint!("{USAGE}");
    exit(2)
}

#[derive(Debug, Default)]
struct Options {
    listen: bool,
    numeric: bool,
    buffer: Option<usize>,
    source: Option<String>,
    local_port: Option<u16>,
    dest: Option<(String, String)>,
}

/// getopt(3)-style parsing of `hdlnp:B:s:` (flags may be grouped, option
/// values may be attached: `-dd`, `-p5000`, `-lp 5000`; `--` ends options).
fn parse_args(args: impl IntoIterator<Item = String>) -> Options {
    let mut opts = Options::default();
    let mut positional = Vec::new();
    let mut args = args.into_iter();
    let mut only_positional = false;
    while let Some(arg) = args.next() {
        if only_positional || arg == "-" || !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let flags: Vec<char> = arg[1..].chars().collect();
        let mut i = 0;
        while i < flags.len() {
            let c = flags[i];
            i += 1;
            match c {
                'h' => {
                    print!("{USAGE}");
                    exit(0);
                }
                'd' => {
                    DEBUG.fetch_add(1, Ordering::Relaxed);
                }
                'l' => opts.listen = true,
                'n' => opts.numeric = true,
                'p' | 'B' | 's' => {
                    let value: String = if i < flags.len() {
                        let v = flags[i..].iter().collect();
                        i = flags.len();
                        v
                    } else {
                        args.next()
                            .unwrap_or_else(|| usage_error(format!("option -{c} needs a value")))
                    };
                    match c {
                        'p' => {
                            opts.local_port = Some(
                                value
                                    .parse()
                                    .unwrap_or_else(|_| usage_error(format!("bad port: {value}"))),
                            )
                        }
                        'B' => {
                            let n: usize = value.parse().unwrap_or_else(|_| {
                                usage_error(format!("bad buffer size: {value}"))
                            });
                            if n == 0 {
                                usage_error("buffer size must be positive");
                            }
                            opts.buffer = Some(n);
                        }
                        _ => opts.source = Some(value),
                    }
                }
                other => usage_error(format!("unknown option -{other}")),
            }
        }
    }
    if opts.listen {
        if !positional.is_empty() {
            usage_error("listen mode takes no destination");
        }
        if opts.local_port.is_none() {
            usage_error("listen mode needs -p <port>");
        }
    } else {
        match positional.len() {
            2 => {
                let port = positional.pop().unwrap();
                let host = positional.pop().unwrap();
                opts.dest = Some((host, port));
            }
            0 => usage_error("missing destination"),
            _ => usage_error("expected <dest-IP> <dest-port>"),
        }
    }
    opts
}

/// A short, clear message for a connection error.
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::TimedOut => "connection timed out".into(),
        io::ErrorKind::NotConnected => "connection lost (uTP runtime stopped)".into(),
        _ => e.to_string(),
    }
}

fn resolve_dest(host: &str, port: &str, numeric: bool, want_v6: Option<bool>) -> SocketAddr {
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .unwrap_or_else(|| usage_error(format!("bad port: {port}")));
    if let Ok(ip) = host.parse::<IpAddr>() {
        return SocketAddr::new(ip, port);
    }
    if numeric {
        die(1, format!("{host}: not a numeric address (-n)"));
    }
    let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => die(1, format!("{host}: {e}")),
    };
    // Prefer IPv4 like ucat, unless the source address says otherwise.
    let pick = match want_v6 {
        Some(v6) => addrs.iter().find(|a| a.is_ipv6() == v6),
        None => addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()),
    };
    *pick.unwrap_or_else(|| die(1, format!("{host}: no usable address")))
}

fn parse_source(src: &str) -> IpAddr {
    src.parse()
        .unwrap_or_else(|_| usage_error(format!("bad source address: {src}")))
}

/// What the copy threads report to the main thread.
enum Report {
    /// The peer's FIN arrived after this many bytes.
    PeerDone(u64),
    /// Stdin ended after this many bytes, our FIN is queued.
    SendDone(u64),
    Failed(String),
}

/// Peer → stdout until the peer's FIN.
fn spawn_reader(stream: UtpStream, tx: mpsc::Sender<Report>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let stdout = io::stdout();
        loop {
            match (&stream).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut out = stdout.lock();
                    if let Err(e) = out.write_all(&buf[..n]).and_then(|_| out.flush()) {
                        let _ = tx.send(Report::Failed(format!("stdout: {e}")));
                        return;
                    }
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Report::Failed(describe(&e)));
                    return;
                }
            }
        }
        debug!(1, "peer finished sending (FIN) after {total} bytes");
        let _ = tx.send(Report::PeerDone(total));
    });
}

/// Stdin → peer, then half-close.
fn spawn_writer(stream: UtpStream, buffer: usize, tx: mpsc::Sender<Report>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; buffer];
        let mut total = 0u64;
        let stdin = io::stdin();
        let mut input = stdin.lock();
        loop {
            match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = (&stream).write_all(&buf[..n]) {
                        let _ = tx.send(Report::Failed(describe(&e)));
                        return;
                    }
                    total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.send(Report::Failed(format!("stdin: {e}")));
                    return;
                }
            }
        }
        debug!(1, "end of input after {total} bytes, sending FIN");
        match stream.shutdown(Shutdown::Write) {
            Ok(()) => {
                let _ = tx.send(Report::SendDone(total));
            }
            Err(e) => {
                let _ = tx.send(Report::Failed(describe(&e)));
            }
        }
    });
}

fn print_stats(stream: &UtpStream, label: &str) {
    if let Ok(s) = stream.stats() {
        debug!(
            1,
            "{label}: sent {} B in {} packets ({} timeouts, {} timeout + {} fast retransmits), \
             received {} B in {} packets ({} duplicates), rtt {} us, rto {} us, cwnd {} B, in flight {} B",
            s.bytes_sent,
            s.packets_sent,
            s.timeouts,
            s.timeout_retransmits,
            s.fast_retransmits,
            s.bytes_received,
            s.packets_received,
            s.duplicates_received,
            s.rtt_us,
            s.rto_us,
            s.cwnd,
            s.bytes_in_flight
        );
    }
}

fn main() {
    let opts = parse_args(std::env::args().skip(1));
    let buffer = opts.buffer.unwrap_or(DEFAULT_BUFFER);
    let source = opts.source.as_deref().map(parse_source);

    let mut config = RuntimeConfig::default();
    config.endpoint.linger_us = LINGER.as_micros() as u64;

    let start = Instant::now();
    let (ctx, stream) = if opts.listen {
        let ip = source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let port = opts.local_port.unwrap_or(0);
        config.backlog = 1;
        let ctx = UtpContext::bind_with_config(SocketAddr::new(ip, port), config)
            .unwrap_or_else(|e| die(1, format!("cannot bind {ip} port {port}: {e}")));
        debug!(
            1,
            "listening on {}",
            ctx.local_addr().map_or("?".into(), |a| a.to_string())
        );
        let (stream, peer) = ctx
            .accept()
            .unwrap_or_else(|e| die(1, format!("accept: {}", describe(&e))));
        debug!(1, "accepted connection from {peer}");
        (ctx, stream)
    } else {
        let (host, port) = opts.dest.as_ref().expect("parse_args checked");
        let dest = resolve_dest(host, port, opts.numeric, source.map(|s| s.is_ipv6()));
        let ip = source.unwrap_or(if dest.is_ipv6() {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
        config.backlog = 0;
        config.endpoint.accept_incoming = false;
        let local = SocketAddr::new(ip, opts.local_port.unwrap_or(0));
        let ctx = UtpContext::bind_with_config(local, config)
            .unwrap_or_else(|e| die(1, format!("cannot bind {local}: {e}")));
        debug!(
            1,
            "bound {}, connecting to {dest}",
            ctx.local_addr().map_or("?".into(), |a| a.to_string())
        );
        let stream = ctx.connect(dest).unwrap_or_else(|e| die(1, describe(&e)));
        debug!(1, "connected to {dest} in {:?}", start.elapsed());
        (ctx, stream)
    };

    let (tx, rx) = mpsc::channel();
    let clone = |s: &UtpStream| s.try_clone().unwrap_or_else(|e| die(1, e));
    spawn_reader(clone(&stream), tx.clone());
    let mut send_done = false;
    if opts.listen && io::stdin().is_terminal() {
        debug!(1, "stdin is a terminal: sending nothing, sending FIN");
        stream
            .shutdown(Shutdown::Write)
            .unwrap_or_else(|e| die(1, describe(&e)));
        send_done = true;
    } else {
        spawn_writer(clone(&stream), buffer, tx.clone());
    }
    drop(tx);

    let mut peer_done = false;
    let (mut sent, mut received) = (0u64, 0u64);
    while !(send_done && peer_done) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(Report::PeerDone(n)) => {
                peer_done = true;
                received = n;
            }
            Ok(Report::SendDone(n)) => {
                send_done = true;
                sent = n;
            }
            Ok(Report::Failed(msg)) => die(1, msg),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if DEBUG.load(Ordering::Relaxed) >= 2 {
                    print_stats(&stream, "progress");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => die(1, "internal error: copy thread lost"),
        }
    }
    let transfer = start.elapsed();

    // Wait until the peer acknowledged all our data (our FIN follows it).
    let deadline = Instant::now() + LINGER;
    loop {
        let queued = stream.handle().queued_send_bytes();
        match stream.stats() {
            Ok(s) if queued == 0 && s.bytes_in_flight == 0 => break,
            Ok(_) => {}
            Err(e) => die(1, describe(&e)),
        }
        if let Some(e) = stream.take_error().ok().flatten() {
            die(1, describe(&e));
        }
        if Instant::now() >= deadline {
            die(1, "the peer did not acknowledge all data");
        }
        thread::sleep(Duration::from_millis(2));
    }
    print_stats(&stream, "connection");
    let secs = transfer.as_secs_f64().max(1e-9);
    debug!(
        1,
        "sent {sent} B, received {received} B in {:.3} s ({:.1} MB/s)",
        secs,
        (sent.max(received)) as f64 / secs / 1e6
    );

    // Close and let the I/O thread finish the FIN exchange. It exits once
    // every connection is gone: our FIN acknowledged and the engine's short
    // TIME_WAIT over, or the linger time spent (then our FIN was never
    // acknowledged).
    let watch = ctx.exit_watch();
    drop(stream);
    drop(ctx);
    let closing = Instant::now();
    if !watch.wait(CLOSE_WAIT) {
        die(1, "connection did not close");
    }
    if closing.elapsed() >= LINGER {
        die(1, "the peer did not acknowledge our FIN");
    }
    debug!(1, "closed after {:?}", closing.elapsed());
}
