//! The send side of a connection: bytes the application wrote and not yet
//! packetized, and the packets that carry sequence numbers until they are
//! acknowledged.
//!
//! Bytes are cut into packets only when the windows let a packet leave, so
//! small writes made while data is in flight coalesce into full packets.

use std::collections::VecDeque;

use crate::packet::{sack_bit, PacketType};
use crate::seq::Seq;

/// A packet that has a sequence number and is not yet acknowledged.
#[derive(Clone, Debug)]
pub struct OutPacket {
    /// Its sequence number.
    pub seq: Seq,
    /// DATA, FIN or SYN (the types that take a sequence number).
    pub packet_type: PacketType,
    /// The bytes it carries (empty for FIN and SYN).
    pub payload: Vec<u8>,
    /// How many times it went on the wire.
    pub transmissions: u32,
    /// When it last went on the wire (µs).
    pub sent_at_us: u64,
    /// Lost (timeout or SACK/duplicate ACKs) and waiting to be sent again.
    pub need_resend: bool,
    /// The loss that queued the resend was a timeout.
    pub timeout_resend: bool,
    /// Already resent once because of duplicate/selective ACKs.
    pub fast_resent: bool,
    /// The latest copy is a tail-loss probe (see `Acked::probe_sent_at_us`).
    pub probe: bool,
    /// Selectively acknowledged (kept until the cumulative ACK passes it).
    pub sacked: bool,
    /// Counted in `bytes_in_flight`.
    in_flight: bool,
}

/// What `on_ack` found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Acked {
    /// Packets newly acknowledged (cumulatively or selectively).
    pub packets: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Smallest RTT among those sent exactly once.
    pub min_rtt_us: Option<u64>,
    /// Latest transmission time among the packets acknowledged that were
    /// sent exactly once.
    pub latest_sent_at_us: Option<u64>,
    /// Latest transmission time among the tail-loss probes acknowledged. A
    /// probe leaves after two round trips without progress, so when its ACK
    /// comes back within a round trip, the probe (not an older copy) is what
    /// arrived; the caller, who knows the RTT, decides.
    pub probe_sent_at_us: Option<u64>,
}

/// The next thing the connection may put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send the packet at this index of the queue.
    Send(usize),
    /// Something is waiting but the window is full.
    WindowFull,
    /// A data packet could leave but the pacer holds it back.
    Paced,
    /// Nothing to send.
    Nothing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    NotQueued,
    Queued,
    Sent(Seq),
    Acked,
}

/// Send buffer and retransmission queue.
#[derive(Debug)]
pub struct SendBuffer {
    capacity: usize,
    /// Written by the application, not yet in a packet.
    unsent: VecDeque<u8>,
    /// Packets from the oldest unacknowledged one on; index i has sequence `first_seq + i`.
    packets: VecDeque<OutPacket>,
    /// Sequence number of the next new packet.
    next_seq: Seq,
    /// Sequence number our SYN used (initiator) or the first we use (acceptor).
    syn_seq: Seq,
    /// Payload bytes of unacknowledged packets plus unsent bytes.
    queued_bytes: usize,
    bytes_in_flight: usize,
    /// Packets counted in flight (zero-length ones included).
    packets_in_flight: usize,
    /// Packets queued but never transmitted (always at the tail).
    untransmitted: usize,
    /// Lost packets to resend, oldest first (entries may be stale).
    lost: VecDeque<Seq>,
    /// After a timeout the oldest lost packet leaves whatever the window says.
    force_resend: bool,
    sacked_count: usize,
    fin: Fin,
}

impl SendBuffer {
    /// An empty queue whose first packet gets `initial_seq`, holding at most `capacity` unacknowledged bytes.
    pub fn new(initial_seq: Seq, capacity: usize) -> Self {
        SendBuffer {
            capacity: capacity.max(1),
            unsent: VecDeque::new(),
            packets: VecDeque::new(),
            next_seq: initial_seq,
            syn_seq: initial_seq,
            queued_bytes: 0,
            bytes_in_flight: 0,
            packets_in_flight: 0,
            untransmitted: 0,
            lost: VecDeque::new(),
            force_resend: false,
            sacked_count: 0,
            fin: Fin::NotQueued,
        }
    }

    /// Resize the buffer (bytes already queued stay queued).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Queue bytes; returns how many fit.
    pub fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free_space());
        self.unsent.extend(&data[..n]);
        self.queued_bytes += n;
        n
    }

    /// Room left in the send buffer.
    pub fn free_space(&self) -> usize {
        self.capacity.saturating_sub(self.queued_bytes)
    }

    /// Queued bytes not yet sent once.
    pub fn unsent_bytes(&self) -> usize {
        self.unsent.len()
    }

    /// Payload bytes sent and not yet acknowledged (resends waiting included).
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Packets on the wire that are neither acknowledged nor known lost.
    pub fn packets_in_flight(&self) -> usize {
        self.packets_in_flight
    }

    /// Sequence number the next new packet gets.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// The sequence number of our SYN.
    pub fn syn_seq(&self) -> Seq {
        self.syn_seq
    }

    /// Oldest sequence number not yet cumulatively acknowledged.
    pub fn first_unacked(&self) -> Seq {
        self.packets.front().map_or(self.next_seq, |p| p.seq)
    }

    /// Something was transmitted and is not yet acknowledged.
    pub fn has_unacked(&self) -> bool {
        self.packets.front().is_some_and(|p| p.transmissions > 0)
    }

    /// A FIN is queued (the write half is shut).
    pub fn fin_queued(&self) -> bool {
        self.fin != Fin::NotQueued
    }

    /// The FIN has been on the wire at least once.
    pub fn fin_sent(&self) -> bool {
        matches!(self.fin, Fin::Sent(_) | Fin::Acked)
    }

    /// The peer acknowledged our FIN, and so every byte before it.
    pub fn fin_acked(&self) -> bool {
        self.fin == Fin::Acked
    }

    /// Ask for a FIN after the queued data.
    pub fn queue_fin(&mut self) {
        if self.fin == Fin::NotQueued {
            self.fin = Fin::Queued;
        }
    }

    /// Queue a packet without payload (SYN, or the empty DATA that completes a handshake).
    pub fn push_control(&mut self, packet_type: PacketType) {
        self.push_packet(packet_type, Vec::new());
    }

    fn push_packet(&mut self, packet_type: PacketType, payload: Vec<u8>) -> usize {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.plus(1);
        self.packets.push_back(OutPacket {
            seq,
            packet_type,
            payload,
            transmissions: 0,
            sent_at_us: 0,
            need_resend: false,
            timeout_resend: false,
            fast_resent: false,
            probe: false,
            sacked: false,
            in_flight: false,
        });
        self.untransmitted += 1;
        self.packets.len() - 1
    }

    /// The unacknowledged packet at position `idx` of the queue (0: the oldest).
    pub fn packet_mut(&mut self, idx: usize) -> &mut OutPacket {
        &mut self.packets[idx]
    }

    fn index_of(&self, seq: Seq) -> Option<usize> {
        let first = self.packets.front()?.seq;
        let idx = seq.distance_from(first) as usize;
        (idx < self.packets.len()).then_some(idx)
    }

    /// The SYN, while the handshake is pending.
    pub fn next_syn_to_send(&mut self) -> Next {
        match self.packets.front() {
            Some(p)
                if p.packet_type == PacketType::Syn && (p.transmissions == 0 || p.need_resend) =>
            {
                self.force_resend = false;
                Next::Send(0)
            }
            _ => Next::Nothing,
        }
    }

    /// Choose the next packet to send under `window` bytes in flight.
    /// While `paced`, only packets the pacer lets through leave: forced
    /// resends (timeout, tail-loss probe) and packets without payload.
    pub fn next_to_send(
        &mut self,
        mss: usize,
        in_flight: usize,
        window: usize,
        max_packets: usize,
        paced: bool,
    ) -> Next {
        // Retransmissions first.
        while let Some(&seq) = self.lost.front() {
            let Some(idx) = self.index_of(seq) else {
                self.lost.pop_front();
                continue;
            };
            let p = &self.packets[idx];
            if !p.need_resend || p.sacked {
                self.lost.pop_front();
                continue;
            }
            let fits = in_flight + p.payload.len() <= window;
            if fits && paced && !self.force_resend {
                return Next::Paced;
            }
            if self.force_resend || fits {
                self.force_resend = false;
                self.lost.pop_front();
                return Next::Send(idx);
            }
            return Next::WindowFull;
        }
        // Control packets queued but not yet sent (empty DATA).
        if self.untransmitted > 0 {
            let idx = self.packets.len() - self.untransmitted;
            let len = self.packets[idx].payload.len();
            if len == 0 {
                return Next::Send(idx);
            }
            if in_flight + len <= window {
                return if paced { Next::Paced } else { Next::Send(idx) };
            }
            return Next::WindowFull;
        }
        if !self.unsent.is_empty() {
            let size = self.unsent.len().min(mss);
            // Nagle: a short packet waits while data is in flight, so small
            // writes coalesce; with nothing in flight it leaves at once.
            if size < mss && self.has_unacked() && self.fin == Fin::NotQueued {
                return Next::Nothing;
            }
            // With nothing in flight a packet is cut to fit the window (a
            // receiver with a tiny buffer still gets data); otherwise wait
            // for room for a whole packet rather than send slivers.
            let size = if in_flight == 0 {
                size.min(window)
            } else {
                size
            };
            if size == 0 || in_flight + size > window || self.packets.len() >= max_packets {
                return Next::WindowFull;
            }
            if paced {
                return Next::Paced;
            }
            let payload = self.take_unsent(size);
            return Next::Send(self.push_packet(PacketType::Data, payload));
        }
        if self.fin == Fin::Queued {
            if self.packets.len() >= max_packets {
                return Next::WindowFull;
            }
            let idx = self.push_packet(PacketType::Fin, Vec::new());
            self.fin = Fin::Sent(self.packets[idx].seq);
            return Next::Send(idx);
        }
        Next::Nothing
    }

    /// The first `n` unsent bytes, copied slice-wise (a byte-wise drain was
    /// a quarter of the sender's CPU).
    fn take_unsent(&mut self, n: usize) -> Vec<u8> {
        let mut payload = Vec::with_capacity(n);
        let (a, b) = self.unsent.as_slices();
        let from_a = n.min(a.len());
        payload.extend_from_slice(&a[..from_a]);
        payload.extend_from_slice(&b[..n - from_a]);
        self.unsent.drain(..n);
        payload
    }

    /// Bookkeeping after packet `idx` went on the wire.
    pub fn on_transmitted(&mut self, idx: usize) {
        let p = &mut self.packets[idx];
        if p.transmissions == 1 {
            self.untransmitted -= 1;
        }
        if !p.in_flight {
            p.in_flight = true;
            self.bytes_in_flight += p.payload.len();
            self.packets_in_flight += 1;
        }
    }

    fn take_out_of_flight(counters: (&mut usize, &mut usize), p: &mut OutPacket) {
        if p.in_flight {
            p.in_flight = false;
            *counters.0 -= p.payload.len();
            *counters.1 -= 1;
        }
    }

    /// Apply a cumulative ACK and an optional selective-ACK bitmask.
    pub fn on_ack(&mut self, ack_nr: Seq, sack: Option<&[u8]>, now_us: u64) -> Acked {
        let mut acked = Acked::default();
        let note = |p: &OutPacket, acked: &mut Acked| {
            acked.packets += 1;
            acked.bytes += p.payload.len();
            // Only a packet sent once says for sure when the delivered copy
            // left: the ACK of a resent packet may be for the original (uTP
            // has no timestamp echo to tell), and after an RTT jump reading it
            // as the resend's ACK would declare everything older lost.
            if p.probe {
                acked.probe_sent_at_us = acked.probe_sent_at_us.max(Some(p.sent_at_us));
            }
            if p.transmissions == 1 {
                acked.latest_sent_at_us = acked.latest_sent_at_us.max(Some(p.sent_at_us));
                let rtt = now_us.saturating_sub(p.sent_at_us);
                acked.min_rtt_us = Some(acked.min_rtt_us.map_or(rtt, |m| m.min(rtt)));
            }
        };
        while let Some(p) = self.packets.front_mut() {
            if p.transmissions == 0 || p.seq.gt(ack_nr) {
                break;
            }
            let mut p = self.packets.pop_front().expect("front exists");
            if p.sacked {
                self.sacked_count -= 1;
            } else {
                note(&p, &mut acked);
            }
            Self::take_out_of_flight(
                (&mut self.bytes_in_flight, &mut self.packets_in_flight),
                &mut p,
            );
            self.queued_bytes -= p.payload.len();
            if p.packet_type == PacketType::Fin {
                self.fin = Fin::Acked;
            }
        }
        if let Some(mask) = sack {
            let base = ack_nr.plus(2);
            for i in 0..mask.len() * 8 {
                if !sack_bit(mask, i) {
                    continue;
                }
                let Some(idx) = self.index_of(base.plus(i as u16)) else {
                    continue;
                };
                let p = &mut self.packets[idx];
                if p.sacked || p.transmissions == 0 {
                    continue;
                }
                p.sacked = true;
                p.need_resend = false;
                self.sacked_count += 1;
                Self::take_out_of_flight(
                    (&mut self.bytes_in_flight, &mut self.packets_in_flight),
                    p,
                );
                let p = &self.packets[idx];
                note(p, &mut acked);
            }
        }
        acked
    }

    fn mark_lost(&mut self, idx: usize, timeout: bool) -> bool {
        let p = &mut self.packets[idx];
        if p.sacked || p.transmissions == 0 || p.need_resend {
            return false;
        }
        p.need_resend = true;
        p.timeout_resend = timeout;
        p.probe = false;
        if !timeout {
            p.fast_resent = true;
        }
        Self::take_out_of_flight((&mut self.bytes_in_flight, &mut self.packets_in_flight), p);
        let seq = p.seq;
        self.lost.push_back(seq);
        true
    }

    /// Packets with `threshold` or more selectively acknowledged packets after
    /// them are lost. Returns true if any was newly marked.
    pub fn detect_sack_losses(&mut self, threshold: u32) -> bool {
        if self.sacked_count == 0 {
            return false;
        }
        let mut later_acked = 0u32;
        let mut found = Vec::new();
        for (idx, p) in self.packets.iter().enumerate().rev() {
            if p.sacked {
                later_acked += 1;
            } else if later_acked >= threshold
                && p.transmissions > 0
                && !p.need_resend
                && !p.fast_resent
            {
                found.push(idx);
            }
        }
        let mut any = false;
        for idx in found.into_iter().rev() {
            any |= self.mark_lost(idx, false);
        }
        any
    }

    /// Time-based loss detection (RACK, RFC 8985): a packet is lost when a
    /// packet sent more than `reorder_window_us` after it has been
    /// acknowledged. This catches lost retransmissions and losses beyond the
    /// reach of the peer's SACK (libutp's covers only 32 packets), which the
    /// duplicate-ACK rules cannot see.
    pub fn detect_lost_by_time(
        &mut self,
        latest_acked_sent_at_us: u64,
        reorder_window_us: u64,
    ) -> bool {
        let mut any = false;
        for idx in 0..self.packets.len() {
            let p = &self.packets[idx];
            if p.transmissions == 0 {
                break;
            }
            let old_enough = p.sent_at_us + reorder_window_us < latest_acked_sent_at_us;
            if !old_enough && p.transmissions == 1 {
                // First transmissions go out in sequence order, and a resend
                // of a later packet is newer still: nothing further qualifies.
                break;
            }
            if old_enough && !p.sacked && !p.need_resend {
                any |= self.mark_lost(idx, false);
            }
        }
        any
    }

    /// Tail-loss probe: resend the oldest unacknowledged packet without
    /// declaring anything lost, so the peer's ACK tells us what arrived.
    /// `peer_room` is what the peer's receive window still holds.
    pub fn probe_oldest(&mut self, peer_room: usize) -> bool {
        let Some(idx) = self
            .packets
            .iter()
            .position(|p| p.transmissions > 0 && !p.sacked)
        else {
            return false;
        };
        let p = &mut self.packets[idx];
        if p.need_resend {
            // Known lost, but held back by a congestion window that packets
            // lost past the peer's SACK reach still fill (a receiver's full
            // socket buffer drops whole bursts), and no ACK will come to
            // clear them. A probe leaves whatever the congestion window says
            // (RFC 8985 7.3), but never past the peer's receive window: a
            // libutp peer drops that, and the transfer then waits on window
            // probes for seconds.
            if p.payload.len() > peer_room {
                return false;
            }
        } else {
            p.need_resend = true;
            p.timeout_resend = false;
            Self::take_out_of_flight((&mut self.bytes_in_flight, &mut self.packets_in_flight), p);
        }
        // Its ACK dates the probe, so what was sent before it and is still
        // missing counts as lost (time-based detection).
        p.probe = true;
        let seq = p.seq;
        self.lost.push_front(seq);
        self.force_resend = true;
        true
    }

    /// Triple duplicate ACK: the oldest unacknowledged packet is lost.
    pub fn mark_first_lost(&mut self) -> bool {
        match self.packets.front() {
            Some(p) if !p.fast_resent => self.mark_lost(0, false),
            _ => false,
        }
    }

    /// Retransmission timeout: every unacknowledged packet is lost.
    pub fn mark_all_lost(&mut self) -> usize {
        self.lost.clear();
        let mut n = 0;
        for idx in 0..self.packets.len() {
            let p = &mut self.packets[idx];
            // A packet already queued for resend is queued again in order.
            p.need_resend = false;
            if self.mark_lost(idx, true) {
                n += 1;
            }
        }
        n
    }

    /// The peer dropped our packets for lack of buffer space (its window is
    /// smaller than what we have in flight): send them again once it has
    /// room. Not a loss: no congestion signal, no retransmission counters.
    pub fn requeue_refused(&mut self) {
        self.lost.clear();
        for idx in 0..self.packets.len() {
            let p = &mut self.packets[idx];
            if p.sacked || p.transmissions == 0 {
                continue;
            }
            if !p.need_resend {
                p.need_resend = true;
                p.timeout_resend = true;
            }
            p.probe = false;
            Self::take_out_of_flight((&mut self.bytes_in_flight, &mut self.packets_in_flight), p);
            let seq = p.seq;
            self.lost.push_back(seq);
        }
    }

    /// Payload length of the oldest packet not yet acknowledged.
    pub fn oldest_unacked_len(&self) -> Option<usize> {
        self.packets
            .iter()
            .find(|p| p.transmissions > 0 && !p.sacked)
            .map(|p| p.payload.len())
    }

    /// The next resend leaves even if the window is closed.
    pub fn force_next_resend(&mut self) {
        self.force_resend = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_next(buf: &mut SendBuffer, f: impl FnOnce(&mut SendBuffer) -> Next, now: u64) -> usize {
        let n = f(buf);
        sent(buf, n, now)
    }

    fn sent(buf: &mut SendBuffer, n: Next, now: u64) -> usize {
        let Next::Send(idx) = n else {
            panic!("expected a packet, got {n:?}")
        };
        let p = buf.packet_mut(idx);
        p.transmissions += 1;
        p.sent_at_us = now;
        buf.on_transmitted(idx);
        idx
    }

    #[test]
    fn packetizes_full_packets_and_coalesces_small_ones() {
        let mut b = SendBuffer::new(Seq(100), 10_000);
        assert_eq!(b.write(&[7u8; 2500]), 2500);
        let i = sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, false), 0);
        assert_eq!(b.packets[i].payload.len(), 1000);
        assert_eq!(b.packets[i].seq, Seq(100));
        sent_next(
            &mut b,
            |b| b.next_to_send(1000, 1000, 100_000, 100, false),
            0,
        );
        // 500 bytes left: Nagle holds them while data is in flight.
        assert_eq!(
            b.next_to_send(1000, 2000, 100_000, 100, false),
            Next::Nothing
        );
        let a = b.on_ack(Seq(101), None, 10);
        assert_eq!((a.packets, a.bytes), (2, 2000));
        assert_eq!(a.min_rtt_us, Some(10));
        let i = sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, false), 20);
        assert_eq!(b.packets[i].payload.len(), 500);
    }

    #[test]
    fn window_limits_new_packets() {
        let mut b = SendBuffer::new(Seq(0), 10_000);
        b.write(&[1u8; 5000]);
        sent_next(&mut b, |b| b.next_to_send(1000, 0, 1500, 100, false), 0);
        assert_eq!(
            b.next_to_send(1000, 1000, 1500, 100, false),
            Next::WindowFull
        );
        assert_eq!(b.next_to_send(1000, 0, 0, 100, false), Next::WindowFull);
    }

    #[test]
    fn sack_marks_loss_after_three_later_packets() {
        let mut b = SendBuffer::new(Seq(65533), 100_000);
        b.write(&[1u8; 5000]);
        for k in 0..5 {
            sent_next(
                &mut b,
                |b| b.next_to_send(1000, k * 1000, 100_000, 100, false),
                0,
            );
        }
        // Packets 65533..=1 (wrapping). 65533 lost, the rest selectively acked:
        // ack_nr = 65532, bits for ack_nr + 2 + i = 65534, 65535, 0, 1.
        let a = b.on_ack(Seq(65532), Some(&[0b1111, 0, 0, 0]), 5);
        assert_eq!(a.packets, 4);
        assert_eq!(b.bytes_in_flight(), 1000);
        assert!(b.detect_sack_losses(3));
        assert_eq!(b.bytes_in_flight(), 0);
        let idx = sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, false), 6);
        assert_eq!(b.packets[idx].seq, Seq(65533));
        // Not resent twice for the same loss.
        assert!(!b.detect_sack_losses(3));
        let a = b.on_ack(Seq(1), None, 9);
        // Only the retransmitted packet is new; no RTT sample from it (Karn).
        assert_eq!(a.packets, 1);
        assert_eq!(a.min_rtt_us, None);
        assert!(!b.has_unacked());
    }

    #[test]
    fn timeout_resends_oldest_first_even_with_closed_window() {
        let mut b = SendBuffer::new(Seq(10), 100_000);
        b.write(&[1u8; 3000]);
        for k in 0..3 {
            sent_next(
                &mut b,
                |b| b.next_to_send(1000, k * 1000, 100_000, 100, false),
                0,
            );
        }
        assert_eq!(b.mark_all_lost(), 3);
        assert_eq!(b.bytes_in_flight(), 0);
        b.force_next_resend();
        let idx = sent_next(&mut b, |b| b.next_to_send(1000, 0, 0, 100, false), 1);
        assert_eq!(b.packets[idx].seq, Seq(10));
        assert_eq!(
            b.next_to_send(1000, 1000, 1000, 100, false),
            Next::WindowFull
        );
    }

    #[test]
    fn pacing_holds_data_but_not_forced_resends_or_empty_packets() {
        let mut b = SendBuffer::new(Seq(10), 100_000);
        b.write(&[1u8; 3000]);
        // New data waits for the pacer; a full window still says so.
        assert_eq!(b.next_to_send(1000, 0, 100_000, 100, true), Next::Paced);
        assert_eq!(b.next_to_send(1000, 0, 0, 100, true), Next::WindowFull);
        for k in 0..3 {
            sent_next(
                &mut b,
                |b| b.next_to_send(1000, k * 1000, 100_000, 100, false),
                0,
            );
        }
        // A resend found by SACK or duplicate ACKs is paced like new data...
        assert!(b.mark_first_lost());
        assert_eq!(b.next_to_send(1000, 0, 100_000, 100, true), Next::Paced);
        // ...the one a timeout or tail-loss probe forces is not.
        b.force_next_resend();
        let idx = sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, true), 1);
        assert_eq!(b.packets[idx].seq, Seq(10));
        // Neither is an empty packet (the DATA announcing a connection, the FIN).
        b.push_control(PacketType::Data);
        sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, true), 0);
        b.queue_fin();
        let i = sent_next(&mut b, |b| b.next_to_send(1000, 0, 100_000, 100, true), 0);
        assert_eq!(b.packets[i].packet_type, PacketType::Fin);
    }

    #[test]
    fn fin_follows_data_and_is_acked() {
        let mut b = SendBuffer::new(Seq(1), 100);
        b.write(&[1u8; 10]);
        b.queue_fin();
        sent_next(&mut b, |b| b.next_to_send(1000, 0, 1000, 100, false), 0);
        let i = sent_next(&mut b, |b| b.next_to_send(1000, 10, 1000, 100, false), 0);
        assert_eq!(b.packets[i].packet_type, PacketType::Fin);
        assert!(b.fin_sent() && !b.fin_acked());
        b.on_ack(Seq(2), None, 1);
        assert!(b.fin_acked());
        assert_eq!(b.free_space(), 100);
    }

    #[test]
    fn send_buffer_is_bounded() {
        let mut b = SendBuffer::new(Seq(1), 100);
        assert_eq!(b.write(&[0u8; 150]), 100);
        assert_eq!(b.write(&[0u8; 1]), 0);
    }
}
