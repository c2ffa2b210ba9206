//! A lossy UDP relay on loopback, for the chaos test (`scripts/test-chaos.sh`)
//! and for trying a front end under loss by hand:
//!
//! ```text
//! lossy_relay TARGET [--drop P] [--duplicate P] [--reorder P] [--seed N]
//! ```
//!
//! Clients send to the address printed on the first line of stdout
//! (`relay 127.0.0.1:PORT`); the relay forwards to TARGET and back, dropping,
//! duplicating or holding back (reordering) each datagram with the given
//! probabilities (defaults 0.10, 0.02, 0.02). On SIGINT or SIGTERM it stops
//! and prints what each direction did. The relay itself is the one the Rust
//! interop tests use.

#[path = "../../utp-core/tests/interop/relay.rs"]
#[allow(dead_code)]
mod relay;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use relay::{LossModel, Relay};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("lossy_relay: {msg}");
    eprintln!("usage: lossy_relay TARGET [--drop P] [--duplicate P] [--reorder P] [--seed N]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(target) = args.first().and_then(|a| a.parse::<SocketAddr>().ok()) else {
        return usage("TARGET must be an address such as 127.0.0.1:9000");
    };
    let mut model = LossModel {
        drop: 0.10,
        duplicate: 0.02,
        reorder: 0.02,
    };
    let mut seed = 1u64;
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage(&format!("{flag} needs a value"));
        };
        let p = value
            .parse::<f64>()
            .ok()
            .filter(|p| (0.0..=1.0).contains(p));
        match (flag.as_str(), p) {
            ("--drop", Some(p)) => model.drop = p,
            ("--duplicate", Some(p)) => model.duplicate = p,
            ("--reorder", Some(p)) => model.reorder = p,
            ("--seed", _) => match value.parse() {
                Ok(s) => seed = s,
                Err(_) => return usage("--seed needs an integer"),
            },
            (f, None) if f != "--seed" => return usage(&format!("{f} needs a probability")),
            (f, _) => return usage(&format!("unknown option {f}")),
        }
    }
    if model.drop + model.duplicate + model.reorder > 1.0 {
        return usage("the probabilities add up to more than 1");
    }
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let relay = Relay::start(target, model, seed);
    println!("relay {}", relay.addr());
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (c2s, s2c) = relay.stop();
    println!("client->server {c2s:?}");
    println!("server->client {s2c:?}");
    ExitCode::SUCCESS
}
