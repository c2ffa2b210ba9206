//! A deterministic network simulator for testing the engine.
//!
//! Everything is driven by one `u64` seed (ChaCha8) and a virtual clock in
//! microseconds; nothing reads the wall clock and nothing touches a socket.
//!
//! - [`link`]: one direction of a path: bandwidth, drop-tail queue,
//!   propagation delay, random and burst loss, reordering, duplication,
//!   corruption, with per-link statistics (queueing delay samples included).
//! - [`network`]: nodes (an [`Endpoint`](crate::Endpoint) at a simulated
//!   address plus a [`Peer`] application), routes from node pairs onto
//!   links, and the event loop ([`Network::step`], [`Network::run_until`],
//!   [`Network::run_until_done`]) that follows the engine's driver contract:
//!   datagrams first (`flush_acks` after each node's batch), then timers,
//!   draining transmits and events after every call.
//! - [`app`]: a bulk sender and verifying sink per connection ([`FlowPlan`],
//!   [`Flow`]).
//!
//! ```no_run
//! use utp_core::sim::{self, FlowPlan, LinkConfig, Network};
//! use utp_core::EndpointConfig;
//!
//! let seed = sim::seed_from_env(1);
//! let mut net = Network::new(seed);
//! let a = net.add_node(sim::addr(1), EndpointConfig::default());
//! let b = net.add_node(sim::addr(2), EndpointConfig::default());
//! let link = LinkConfig::new().mbps(10.0).delay_ms(25);
//! net.connect_nodes(a, b, link.clone(), link);
//! net.accept_with(b, FlowPlan::send(1 << 20));
//! net.connect(a, sim::addr(2), FlowPlan::send(1 << 20));
//! let t = net
//!     .run_until_done(60_000_000, |n| n.peer(a).all_finished() && n.peer(b).all_finished())
//!     .unwrap_or_else(|e| panic!("{e}"));
//! assert!(net.peer(b).first().mismatch.is_none(), "seed {seed}: corrupted stream");
//! # let _ = t;
//! ```

pub mod app;
pub mod link;
pub mod network;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub use app::{check_pattern, fill_pattern, pattern_key, Flow, FlowPlan, Peer};
pub use link::{percentile, GilbertElliott, Link, LinkConfig, LinkFilter, LinkStats, QueueLimit};
pub use network::{LinkId, NetStats, Network, Node, NodeId, SimError, StopReason, TraceEntry};

/// Environment variable that overrides a test's seed.
pub const SEED_ENV: &str = "UTP_SIM_SEED";
/// Environment variable that turns on the datagram trace of every network.
pub const TRACE_ENV: &str = "UTP_SIM_TRACE";

/// `default`, unless `UTP_SIM_SEED` is set (decimal or `0x` hex).
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(s) => parse_seed(&s).unwrap_or_else(|| panic!("{SEED_ENV}={s:?} is not a u64")),
        Err(_) => default,
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Simulated address `10.0.0.<host>:6881`.
pub fn addr(host: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host)), 6881)
}

/// Seconds to microseconds.
pub const fn secs(s: u64) -> u64 {
    s * 1_000_000
}

/// Milliseconds to microseconds.
pub const fn millis(ms: u64) -> u64 {
    ms * 1_000
}

/// Jain's fairness index of `xs` (1 = perfectly fair, 1/n = one takes all).
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if sq == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * sq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse() {
        assert_eq!(parse_seed("42"), Some(42));
        assert_eq!(parse_seed(" 0x2a "), Some(42));
        assert_eq!(parse_seed("x"), None);
    }

    #[test]
    fn jain() {
        assert!((jain_index(&[1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain_index(&[1.0, 0.0]) - 0.5).abs() < 1e-12);
    }
}
