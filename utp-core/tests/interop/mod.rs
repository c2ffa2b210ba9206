//! Helpers for the interop tests against real libutp (`ucat`): building the
//! reference, child processes that are always killed, output collectors,
//! hard timeouts, free ports. Loopback only.

#![allow(dead_code)]

pub mod relay;

use std::io::{self, Read};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The repository root (the workspace above `utp-core`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("utp-core has a parent directory")
        .to_path_buf()
}

/// Path of real libutp's `ucat`, built once per test process with
/// `scripts/build-libutp-ref.sh --quiet`. Panics (fails the test) with a
/// clear message when the build does not work: missing tools are an error,
/// not a reason to skip.
pub fn ucat() -> PathBuf {
    static UCAT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    UCAT.get_or_init(build_ucat)
        .clone()
        .unwrap_or_else(|e| panic!("cannot build real libutp's ucat: {e}"))
}

fn build_ucat() -> Result<PathBuf, String> {
    let script = repo_root().join("scripts/build-libutp-ref.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--quiet")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); it needs cargo (crates.io access for libutp-sys) and make/gcc/g++/ar \
             (installed with apt-get when missing).\nstdout:\n{stdout}\nstderr:\n{stderr}",
            script.display(),
            out.status
        ));
    }
    let dir = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("LIBUTP_REF_DIR="))
        .ok_or_else(|| format!("no LIBUTP_REF_DIR= line in the output of the build:\n{stdout}"))?;
    let bin = Path::new(dir.trim()).join("bin/ucat");
    if !bin.is_file() {
        return Err(format!("{} missing after the build", bin.display()));
    }
    Ok(bin)
}

/// Tests run one at a time: they measure throughput and share the CPU with
/// external processes.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every child process we spawned and have not reaped yet (killed if a test
/// runs out of time). Negative: a whole process group.
static LIVE_CHILDREN: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn kill_target(target: i32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a pid (or process group) we spawned and have
    // not reaped (the guard removes it from the list before reaping).
    unsafe {
        libc::kill(target as libc::pid_t, sig);
    }
}

fn live_children() -> MutexGuard<'static, Vec<i32>> {
    LIVE_CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on its own thread; fails the test after `secs` seconds, killing
/// every child process still alive.
pub fn with_timeout<F: FnOnce() + Send + 'static>(name: &str, secs: u64, f: F) {
    let (tx, rx) = mpsc::channel();
    let t = thread::Builder::new()
        .name(format!("{name}-body"))
        .spawn(move || {
            f();
            let _ = tx.send(());
        })
        .unwrap();
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => t.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(e) = t.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let targets: Vec<i32> = live_children().drain(..).collect();
            for &t in &targets {
                if t < 0 {
                    // A script: let its trap clean up, then make sure.
                    kill_target(t, libc::SIGTERM);
                }
            }
            if targets.iter().any(|t| *t < 0) {
                thread::sleep(Duration::from_millis(500));
            }
            for t in targets {
                kill_target(t, libc::SIGKILL);
            }
            panic!("{name}: did not finish within {secs} s (hard timeout)");
        }
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    /// The child leads its own process group (a script): kill the group.
    group: bool,
}

impl ChildGuard {
    pub fn spawn(cmd: Command, what: &str) -> ChildGuard {
        Self::spawn_inner(cmd, what, false)
    }

    /// For scripts: the child gets its own process group, and the whole
    /// group is terminated (SIGTERM, then SIGKILL) when the guard drops.
    pub fn spawn_group(mut cmd: Command, what: &str) -> ChildGuard {
        cmd.process_group(0);
        Self::spawn_inner(cmd, what, true)
    }

    fn spawn_inner(mut cmd: Command, what: &str, group: bool) -> ChildGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let id = child.id() as i32;
        live_children().push(if group { -id } else { id });
        ChildGuard {
            child: Some(child),
            what: what.to_string(),
            group,
        }
    }

    fn target(&self) -> i32 {
        let id = self.id() as i32;
        if self.group {
            -id
        } else {
            id
        }
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn forget_pid(&self) {
        let t = self.target();
        live_children().retain(|p| *p != t);
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child().try_wait() {
                Ok(Some(status)) => {
                    self.forget_pid();
                    return Some(status);
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal (e.g. `libc::SIGINT`) if the child is still running.
    pub fn signal(&mut self, sig: libc::c_int) {
        if let Ok(None) = self.child().try_wait() {
            // SAFETY: kill(2) on our own, not yet reaped child.
            unsafe {
                libc::kill(self.id() as libc::pid_t, sig);
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let t = self.target();
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                if self.group {
                    kill_target(t, libc::SIGTERM);
                    let deadline = Instant::now() + Duration::from_millis(500);
                    while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                        thread::sleep(Duration::from_millis(10));
                    }
                    kill_target(t, libc::SIGKILL);
                } else {
                    let _ = c.kill();
                }
            }
            let _ = c.wait();
            live_children().retain(|p| *p != t);
        }
    }
}

/// Reads a child's output to the end on a thread; can report when a given
/// number of bytes has arrived.
#[derive(Debug)]
pub struct Collector {
    thread: Option<JoinHandle<io::Result<Vec<u8>>>>,
    count: Arc<AtomicU64>,
    reached: mpsc::Receiver<Instant>,
}

impl Collector {
    /// `notify_at`: bytes after which `wait_for` returns.
    pub fn start<R: Read + Send + 'static>(mut r: R, notify_at: u64) -> Collector {
        let count = Arc::new(AtomicU64::new(0));
        let (tx, reached) = mpsc::channel();
        let c = count.clone();
        let thread = thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut notified = false;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                out.extend_from_slice(&buf[..n]);
                c.store(out.len() as u64, Ordering::Release);
                if !notified && out.len() as u64 >= notify_at {
                    notified = true;
                    let _ = tx.send(Instant::now());
                }
            }
            if !notified {
                let _ = tx.send(Instant::now());
            }
            Ok(out)
        });
        Collector {
            thread: Some(thread),
            count,
            reached,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// When `notify_at` bytes arrived (or the stream ended before), or
    /// `None` after `timeout`.
    pub fn wait_for(&self, timeout: Duration) -> Option<Instant> {
        self.reached.recv_timeout(timeout).ok()
    }

    /// Everything read, once the writer closed its end.
    pub fn finish(mut self) -> Vec<u8> {
        self.thread
            .take()
            .expect("collector thread")
            .join()
            .expect("collector panicked")
            .expect("reading child output")
    }
}

/// A UDP port on 0.0.0.0 that nobody uses right now.
pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("0.0.0.0:0").expect("bind an ephemeral UDP port");
    s.local_addr().unwrap().port()
}

/// Is UDP `port` bound on this host? (reads /proc/net/udp{,6})
pub fn udp_port_bound(port: u16) -> bool {
    let hex = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&hex))
            })
        })
    })
}

/// Waits until `port` is bound (a listener started), failing after `timeout`.
pub fn wait_port_bound(port: u16, timeout: Duration, child: &mut ChildGuard) {
    let deadline = Instant::now() + timeout;
    while !udp_port_bound(port) {
        if let Ok(Some(st)) = child.child().try_wait() {
            panic!("ucat exited ({st}) before binding UDP port {port}");
        }
        assert!(
            Instant::now() < deadline,
            "nothing bound UDP port {port} within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Deterministic random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("utp-interop-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Index of the first differing byte (or the shorter length).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// Asserts byte-exactness with a readable message instead of a 10 MB dump.
pub fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if let Some(i) = first_difference(got, want) {
        panic!(
            "{what}: not byte-exact: got {} bytes, want {}; first difference at offset {i}",
            got.len(),
            want.len()
        );
    }
}

pub fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64().max(1e-9) / 1e6
}
