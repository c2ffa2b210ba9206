//! Per-connection statistics, always collected.

/// Counters and gauges of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Payload bytes sent (first transmissions only).
    pub bytes_sent: u64,
    /// Payload bytes received and delivered in order.
    pub bytes_received: u64,
    /// Datagrams sent (resends and ACKs included).
    pub packets_sent: u64,
    /// Datagrams received for this connection.
    pub packets_received: u64,
    /// Bytes of all datagrams sent, headers included.
    pub datagram_bytes_sent: u64,
    /// Bytes of all datagrams received, headers included.
    pub datagram_bytes_received: u64,
    /// Packets resent after a retransmission timeout.
    pub timeout_retransmits: u64,
    /// Packets resent because duplicate or selective ACKs showed them lost.
    pub fast_retransmits: u64,
    /// Data packets received again after they had already arrived.
    pub duplicates_received: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Smoothed round-trip time (µs).
    pub rtt_us: u64,
    /// Round-trip time variation (µs).
    pub rttvar_us: u64,
    /// Current retransmission timeout (µs).
    pub rto_us: u64,
    /// Congestion window (bytes).
    pub cwnd: u64,
    /// The window the peer last advertised (bytes).
    pub peer_window: u64,
    /// Bytes in flight (sent, not acknowledged).
    pub bytes_in_flight: u64,
    /// Queuing delay of our packets towards the peer (µs): LEDBAT's input.
    pub our_delay_us: u32,
    /// Queuing delay of the peer's packets towards us (µs).
    pub their_delay_us: u32,
    /// Base (least seen) one-way delay of our packets (µs).
    pub base_delay_us: u32,
    /// Current packet size guess (UDP payload, header included).
    pub mtu_guess: u32,
}
