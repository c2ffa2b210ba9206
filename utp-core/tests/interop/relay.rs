//! A lossy UDP relay on loopback: the client talks to the relay's front
//! socket, the relay talks to the server from its back socket. Each
//! direction drops, duplicates and reorders datagrams with its own seeded
//! RNG.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Probabilities per datagram (exclusive: a datagram is dropped, or
/// duplicated, or held back behind the next one, or forwarded as is).
#[derive(Clone, Copy, Debug)]
pub struct LossModel {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
}

impl LossModel {
    /// ~3 % dropped, ~2 % duplicated, ~2 % reordered.
    pub const DEFAULT: LossModel = LossModel {
        drop: 0.03,
        duplicate: 0.02,
        reorder: 0.02,
    };
}

/// What one direction did.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirStats {
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[derive(Debug)]
pub struct Relay {
    front: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<DirStats>>,
}

fn big_buffers(s: &UdpSocket) {
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt on a valid socket with a c_int option value.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

impl Relay {
    /// Starts relaying to `target` (a server on 127.0.0.1).
    pub fn start(target: SocketAddr, model: LossModel, seed: u64) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        for s in [&front, &back] {
            big_buffers(s);
            s.set_read_timeout(Some(Duration::from_millis(2))).unwrap();
        }
        let front_addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));

        // client -> server
        let t1 = {
            let (rx, tx) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (stop, client) = (stop.clone(), client.clone());
            thread::Builder::new()
                .name("relay-c2s".into())
                .spawn(move || {
                    forward(&rx, &tx, model, seed, &stop, |from| {
                        *client.lock().unwrap() = Some(from);
                        Some(target)
                    })
                })
                .unwrap()
        };
        // server -> client
        let t2 = {
            let (rx, tx) = (back, front);
            let stop = stop.clone();
            thread::Builder::new()
                .name("relay-s2c".into())
                .spawn(move || {
                    forward(&rx, &tx, model, seed ^ 0x5eed, &stop, |from| {
                        if from == target {
                            *client.lock().unwrap()
                        } else {
                            None
                        }
                    })
                })
                .unwrap()
        };
        Relay {
            front: front_addr,
            stop,
            threads: vec![t1, t2],
        }
    }

    /// Where the client should send.
    pub fn addr(&self) -> SocketAddr {
        self.front
    }

    /// Stops both directions; returns (client→server, server→client).
    pub fn stop(mut self) -> (DirStats, DirStats) {
        self.stop.store(true, Ordering::SeqCst);
        let mut it = self.threads.drain(..).map(|t| t.join().unwrap_or_default());
        let a = it.next().unwrap_or_default();
        let b = it.next().unwrap_or_default();
        (a, b)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Forwards datagrams from `rx` to the address `route(sender)` gives, via `tx`.
fn forward(
    rx: &UdpSocket,
    tx: &UdpSocket,
    model: LossModel,
    seed: u64,
    stop: &AtomicBool,
    mut route: impl FnMut(SocketAddr) -> Option<SocketAddr>,
) -> DirStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = DirStats::default();
    let mut buf = vec![0u8; 65536];
    // A datagram held back to be sent after the next one.
    let mut held: Option<(Vec<u8>, SocketAddr)> = None;
    let send = |data: &[u8], to: SocketAddr, stats: &mut DirStats| {
        if tx.send_to(data, to).is_ok() {
            stats.forwarded += 1;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match rx.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => {
                // Timeout (or an ICMP error surfacing): release what we hold.
                if let Some((d, to)) = held.take() {
                    send(&d, to, &mut stats);
                }
                continue;
            }
        };
        let Some(to) = route(from) else { continue };
        stats.received += 1;
        let r: f64 = rng.gen();
        if r < model.drop {
            stats.dropped += 1;
            continue;
        }
        if r < model.drop + model.duplicate {
            stats.duplicated += 1;
            send(&buf[..n], to, &mut stats);
            send(&buf[..n], to, &mut stats);
        } else if r < model.drop + model.duplicate + model.reorder {
            stats.reordered += 1;
            if let Some((d, to)) = held.replace((buf[..n].to_vec(), to)) {
                send(&d, to, &mut stats);
            }
            continue;
        } else {
            send(&buf[..n], to, &mut stats);
        }
        if let Some((d, to)) = held.take() {
            send(&d, to, &mut stats);
        }
    }
    stats
}
