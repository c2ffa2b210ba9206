//! Per-connection statistics, always collected.

/// Counters and gauges of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Payload bytes sent (first transmissions) and received (delivered in order).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Datagrams sent / received, headers included.
    pub packets_sent: u64,
    pub packets_received: u64,
    pub datagram_bytes_sent: u64,
    pub datagram_bytes_received: u64,
    /// Packets resent after a retransmission timeout.
    pub timeout_retransmits: u64,
    /// Packets resent because duplicate or selective ACKs showed them lost.
    pub fast_retransmits: u64,
    /// Data packets received again after they had already arrived.
    pub duplicates_received: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Smoothed RTT and current retransmission timeout (µs).
    pub rtt_us: u64,
    pub rttvar_us: u64,
    pub rto_us: u64,
    /// Congestion window and the peer's advertised window (bytes).
    pub cwnd: u64,
    pub peer_window: u64,
    /// Bytes in flight (sent, not acknowledged).
    pub bytes_in_flight: u64,
    /// One-way queuing delay estimates (µs): our direction, theirs, and our base delay.
    pub our_delay_us: u32,
    pub their_delay_us: u32,
    pub base_delay_us: u32,
    /// Current packet size guess (UDP payload, header included).
    pub mtu_guess: u32,
}
