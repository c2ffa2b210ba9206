//! Per-connection statistics, always collected.

/// Counters and gauges of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Payload bytes sent, counted once on first transmission (resends are
    /// not counted again).
    pub bytes_sent: u64,
    /// Payload bytes received and delivered in order to the receive buffer
    /// (duplicates not counted).
    pub bytes_received: u64,
    /// Datagrams sent, of every type (DATA, STATE, FIN, SYN, resends).
    pub packets_sent: u64,
    /// Datagrams accepted for this connection, of every type; packets
    /// dropped before reaching it (bad ACK number, wrong id) are not counted.
    pub packets_received: u64,
    /// Bytes of all datagrams sent: UDP payload, uTP header and
    /// extensions included.
    pub datagram_bytes_sent: u64,
    /// Bytes of all datagrams counted in `packets_received`, uTP header and
    /// extensions included.
    pub datagram_bytes_received: u64,
    /// Packets resent after a retransmission timeout.
    pub timeout_retransmits: u64,
    /// Packets resent because duplicate or selective ACKs showed them lost.
    pub fast_retransmits: u64,
    /// Data packets received again after they had already arrived.
    pub duplicates_received: u64,
    /// Retransmission timeouts that fired.
    pub timeouts: u64,
    /// Smoothed round-trip time (µs); 0 before the first sample.
    pub rtt_us: u64,
    /// RTT variation (µs), as in RFC 6298.
    pub rttvar_us: u64,
    /// Current retransmission timeout (µs), backoff included.
    pub rto_us: u64,
    /// Congestion window (bytes).
    pub cwnd: u64,
    /// The peer's advertised receive window (bytes), from the `wnd_size`
    /// of its last packet.
    pub peer_window: u64,
    /// Bytes in flight (sent, not acknowledged).
    pub bytes_in_flight: u64,
    /// Queuing delay in our sending direction (µs): the peer-reported
    /// one-way delay minus its base (minimum); 0 before the first sample.
    /// This is what LEDBAT steers toward its target.
    pub our_delay_us: u32,
    /// Queuing delay in the peer's direction (µs), measured from the
    /// timestamps of its packets; 0 before the first sample.
    pub their_delay_us: u32,
    /// Base (minimum) one-way delay in our direction (µs), including clock
    /// offset between the hosts, so only its changes are meaningful.
    pub base_delay_us: u32,
    /// Current largest datagram size (bytes of UDP payload, uTP header
    /// included): the configured maximum, lowered by ICMP "fragmentation
    /// needed".
    pub mtu_guess: u32,
}
