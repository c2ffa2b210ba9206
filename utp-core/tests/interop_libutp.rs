//! Interop with REAL libutp: upstream's `ucat`, built from the crates.io
//! `libutp-sys` sources by `scripts/build-libutp-ref.sh`, is the peer of our
//! threaded runtime over 127.0.0.1.
//!
//! ```text
//! cargo test --release -p utp-core --test interop_libutp -- --nocapture
//! ```
//!
//! * libutp client (`ucat 127.0.0.1 P < file`) → our `UtpContext` server,
//!   and our `UtpStream` client → libutp server (`ucat -l -p P`): 10 MB
//!   byte-exact, then the half-close in the other direction (the side that
//!   sent its FIN keeps receiving) and the close (ucat exits by itself).
//! * The same through a lossy relay (3 % drop, 2 % duplicate, 2 % reorder).
//! * `utpcat` ↔ `ucat`: `scripts/interop-utpcat.sh --no-bench`.
//!
//! If the reference build fails (no compiler, no cargo registry), the tests
//! fail: they never skip. Every test has a hard time limit and kills the
//! processes it started.

mod interop;

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream as UnixSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interop::relay::{LossModel, Relay};
use interop::*;
use utp_core::runtime::{UtpContext, UtpStream};

const PAYLOAD: usize = 10 << 20;
/// What the peer sends back after the other side's FIN (half-close check).
const REPLY: usize = 256 << 10;
const RELAY_SEED: u64 = 0x0029_0029;

fn print_stats(label: &str, s: &UtpStream) {
    if let Ok(st) = s.stats() {
        println!(
            "[{label}] our stats: sent {} B / {} pkts ({} timeout + {} fast retransmits, {} timeouts), \
             received {} B / {} pkts ({} dups), rtt {} us, cwnd {} B",
            st.bytes_sent,
            st.packets_sent,
            st.timeout_retransmits,
            st.fast_retransmits,
            st.timeouts,
            st.bytes_received,
            st.packets_received,
            st.duplicates_received,
            st.rtt_us,
            st.cwnd
        );
    }
}

fn stop_relay(label: &str, relay: Option<Relay>) {
    if let Some(r) = relay {
        let (c2s, s2c) = r.stop();
        println!("[{label}] relay client->server {c2s:?}");
        println!("[{label}] relay server->client {s2c:?}");
    }
}

/// libutp connects and sends; we accept and receive, then reply after its
/// FIN and close.
fn libutp_client_to_our_server(label: &'static str, lossy: bool) {
    let ucat = ucat();
    let _serial = serial();
    let payload = random_bytes(1, PAYLOAD);
    let reply = random_bytes(2, REPLY);
    let dir = TempDir::new(label);
    std::fs::write(dir.path("in"), &payload).unwrap();

    let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
    let server = ctx.local_addr().unwrap();
    let relay = lossy.then(|| Relay::start(server, LossModel::DEFAULT, RELAY_SEED));
    let dest = relay.as_ref().map_or(server, |r| r.addr());

    let mut cmd = Command::new(&ucat);
    cmd.arg("127.0.0.1")
        .arg(dest.port().to_string())
        .stdin(File::open(dir.path("in")).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = ChildGuard::spawn(cmd, "ucat (connect mode)");
    let out = Collector::start(child.child().stdout.take().unwrap(), REPLY as u64);
    let err = Collector::start(child.child().stderr.take().unwrap(), u64::MAX);

    let (mut stream, peer) = ctx
        .accept_timeout(Duration::from_secs(10))
        .expect("ucat did not connect within 10 s");
    println!("[{label}] accepted ucat from {peer}");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut got = Vec::with_capacity(PAYLOAD);
    stream
        .read_to_end(&mut got)
        .expect("reading libutp's data up to its FIN");
    let elapsed = start.elapsed();
    assert_same(&format!("[{label}] libutp -> us"), &got, &payload);
    println!(
        "[{label}] libutp client -> our server: {} bytes byte-exact in {:.3} s = {:.1} MB/s (until libutp's FIN)",
        got.len(),
        elapsed.as_secs_f64(),
        mb_per_s(got.len(), elapsed)
    );

    // Half-close: ucat shut down its write side but still reads. Reply,
    // then send our FIN: ucat sees EOF, closes and exits by itself.
    let t = Instant::now();
    stream
        .write_all(&reply)
        .expect("writing after the peer's FIN");
    stream.shutdown(Shutdown::Write).unwrap();
    assert!(
        out.wait_for(Duration::from_secs(30)).is_some(),
        "[{label}] ucat did not write our reply within 30 s ({} of {REPLY} bytes)",
        out.bytes()
    );
    let status = child.wait_timeout(Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&err.finish()).into_owned();
    let status = status.unwrap_or_else(|| {
        panic!("[{label}] ucat did not exit within 20 s after our FIN; stderr: {stderr}")
    });
    let echoed = out.finish();
    assert_same(
        &format!("[{label}] us -> libutp (reply after its FIN)"),
        &echoed,
        &reply,
    );
    println!(
        "[{label}] reply of {REPLY} bytes after libutp's FIN delivered, ucat exited {status} {:.3} s after our FIN",
        t.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "[{label}] ucat exited with {status} (expected 0 after our FIN); stderr: {stderr}"
    );
    assert_eq!(stream.read(&mut [0u8; 16]).unwrap(), 0, "EOF is sticky");
    print_stats(label, &stream);

    let watch = ctx.exit_watch();
    drop(stream);
    drop(ctx);
    assert!(
        watch.wait(Duration::from_secs(10)),
        "[{label}] our context did not finish closing within 10 s"
    );
    stop_relay(label, relay);
}

/// We connect and send to `ucat -l`; its stdin is one end of a Unix socket
/// pair, so the test decides when it sends and when it sees end of input
/// (with a pipe, ucat never notices EOF: it only polls for POLLIN).
fn our_client_to_libutp_server(label: &'static str, lossy: bool) {
    let ucat = ucat();
    let _serial = serial();
    let payload = random_bytes(3, PAYLOAD);
    let reply = random_bytes(4, REPLY);

    let port = free_udp_port();
    let (mut ctl, ucat_stdin) = UnixSocket::pair().unwrap();
    let mut cmd = Command::new(&ucat);
    cmd.arg("-l")
        .arg("-p")
        .arg(port.to_string())
        .stdin(Stdio::from(OwnedFd::from(ucat_stdin)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(cmd, "ucat (listen mode)");
    let out = Collector::start(child.child().stdout.take().unwrap(), PAYLOAD as u64);
    let err = Collector::start(child.child().stderr.take().unwrap(), u64::MAX);
    wait_port_bound(port, Duration::from_secs(5), &mut child);

    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let relay = lossy.then(|| Relay::start(server, LossModel::DEFAULT, RELAY_SEED + 1));
    let dest = relay.as_ref().map_or(server, |r| r.addr());

    let start = Instant::now();
    let mut stream =
        UtpStream::connect_timeout(&dest, Duration::from_secs(10)).expect("connecting to ucat -l");
    println!(
        "[{label}] connected to ucat -l in {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for chunk in payload.chunks(64 << 10) {
        stream.write_all(chunk).expect("sending to libutp");
    }
    stream.shutdown(Shutdown::Write).unwrap();
    let done = out.wait_for(Duration::from_secs(40));
    let done = done.unwrap_or_else(|| {
        panic!(
            "[{label}] ucat wrote only {} of {PAYLOAD} bytes within 40 s",
            out.bytes()
        )
    });
    let elapsed = done - start;
    println!(
        "[{label}] our client -> libutp server: {PAYLOAD} bytes in {:.3} s = {:.1} MB/s (until ucat wrote the last byte)",
        elapsed.as_secs_f64(),
        mb_per_s(PAYLOAD, elapsed)
    );

    // Half-close: libutp got our FIN and still sends what its stdin gives.
    assert!(
        child.child().try_wait().unwrap().is_none(),
        "ucat -l exited after our FIN, before its own input ended"
    );
    let t = Instant::now();
    ctl.write_all(&reply).unwrap();
    let mut back = vec![0u8; REPLY];
    stream
        .read_exact(&mut back)
        .expect("reading libutp's reply after our FIN");
    assert_same(
        &format!("[{label}] libutp -> us after our FIN"),
        &back,
        &reply,
    );
    println!(
        "[{label}] libutp sent {REPLY} bytes after our FIN in {:.3} s",
        t.elapsed().as_secs_f64()
    );

    // End of ucat's input: it closes (FIN), we see EOF, ucat exits.
    drop(ctl);
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{} unexpected bytes", rest.len()),
        Err(e) if e.kind() == ErrorKind::TimedOut => {
            panic!("[{label}] no FIN from ucat within 30 s of its end of input")
        }
        Err(e) => panic!("[{label}] waiting for ucat's FIN: {e}"),
    }
    let status = child.wait_timeout(Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&err.finish()).into_owned();
    let status = status
        .unwrap_or_else(|| panic!("[{label}] ucat -l did not exit within 20 s; stderr: {stderr}"));
    println!(
        "[{label}] ucat -l closed and exited {status} {:.3} s after its end of input",
        t.elapsed().as_secs_f64()
    );
    let got = out.finish();
    assert_same(&format!("[{label}] us -> libutp"), &got, &payload);
    assert!(
        status.success(),
        "[{label}] ucat -l exited with {status} (expected 0); stderr: {stderr}"
    );
    print_stats(label, &stream);

    let watch = stream.exit_watch();
    drop(stream);
    assert!(
        watch.wait(Duration::from_secs(10)),
        "[{label}] our context did not finish closing within 10 s"
    );
    stop_relay(label, relay);
}

#[test]
fn libutp_client_to_our_server_10mb() {
    with_timeout("libutp_client_to_our_server_10mb", 60, || {
        libutp_client_to_our_server("libutp->us", false)
    });
}

#[test]
fn our_client_to_libutp_server_10mb() {
    with_timeout("our_client_to_libutp_server_10mb", 60, || {
        our_client_to_libutp_server("us->libutp", false)
    });
}

#[test]
fn libutp_client_to_our_server_10mb_lossy() {
    with_timeout("libutp_client_to_our_server_10mb_lossy", 120, || {
        libutp_client_to_our_server("libutp->us lossy", true)
    });
}

#[test]
fn our_client_to_libutp_server_10mb_lossy() {
    with_timeout("our_client_to_libutp_server_10mb_lossy", 120, || {
        our_client_to_libutp_server("us->libutp lossy", true)
    });
}

/// utpcat ↔ ucat and utpcat ↔ utpcat with files, refused connections and
/// exit codes: `scripts/interop-utpcat.sh --no-bench` (it builds utpcat
/// with cargo and the reference ucat).
#[test]
fn utpcat_with_ucat_script() {
    with_timeout("utpcat_with_ucat_script", 240, || {
        let _ = ucat(); // the reference build must work (fail, don't skip)
        let _serial = serial();
        let script = repo_root().join("scripts/interop-utpcat.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg("--no-bench")
            .current_dir(repo_root())
            .env("TIMEOUT", "60")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = ChildGuard::spawn_group(cmd, "scripts/interop-utpcat.sh");
        let out = Collector::start(child.child().stdout.take().unwrap(), u64::MAX);
        let err = Collector::start(child.child().stderr.take().unwrap(), u64::MAX);
        let status = child.wait_timeout(Duration::from_secs(230));
        let (out, err) = (out.finish(), err.finish());
        print!("{}", String::from_utf8_lossy(&out));
        eprint!("{}", String::from_utf8_lossy(&err));
        let status = status.expect("interop-utpcat.sh did not finish within 230 s");
        assert!(status.success(), "interop-utpcat.sh failed: {status}");
    });
}

/// Reference for the lossy numbers above: our client → our server through
/// the same relay (same loss model), 10 MB byte-exact.
#[test]
fn our_client_to_our_server_10mb_lossy_reference() {
    with_timeout("our_client_to_our_server_10mb_lossy_reference", 120, || {
        let _serial = serial();
        let label = "us->us lossy";
        let payload = random_bytes(5, PAYLOAD);
        let ctx = UtpContext::bind("127.0.0.1:0").unwrap();
        let relay = Relay::start(
            ctx.local_addr().unwrap(),
            LossModel::DEFAULT,
            RELAY_SEED + 2,
        );
        let dest = relay.addr();
        let start = Instant::now();
        let data = payload.clone();
        let client = std::thread::spawn(move || {
            let mut s = UtpStream::connect_timeout(&dest, Duration::from_secs(10)).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(&data).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
            print_stats(label, &s);
            s.exit_watch()
        });
        let (mut s, _) = ctx.accept_timeout(Duration::from_secs(10)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::with_capacity(PAYLOAD);
        s.read_to_end(&mut got).unwrap();
        let elapsed = start.elapsed();
        assert_same(label, &got, &payload);
        println!(
            "[{label}] our client -> our server: {PAYLOAD} bytes byte-exact in {:.3} s = {:.1} MB/s",
            elapsed.as_secs_f64(),
            mb_per_s(PAYLOAD, elapsed)
        );
        s.shutdown(Shutdown::Write).unwrap();
        let client_watch = client.join().unwrap();
        let watch = ctx.exit_watch();
        drop(s);
        drop(ctx);
        assert!(watch.wait(Duration::from_secs(10)), "server did not close");
        assert!(
            client_watch.wait(Duration::from_secs(10)),
            "client did not close"
        );
        stop_relay(label, Some(relay));
    });
}
