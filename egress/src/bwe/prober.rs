//! Probe clusters: scheduling and what their receive rate shows.

use super::*;

/// Receive statistics of one probe cluster.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cluster {
    /// Cluster id.
    pub(super) id: u32,
    /// Rate the cluster was sent at.
    pub(super) target_bps: u64,
    /// Bytes in the cluster.
    pub(super) bytes: u64,
    /// When the cluster was handed out.
    pub(super) created: Instant,
    /// Received packets.
    pub(super) count: u32,
    /// Bytes received plus bytes reported lost.
    pub(super) reported: u64,
    /// Bytes received.
    pub(super) received: u64,
    /// Earliest send time and its packet size.
    pub(super) first_sent: Option<(Instant, u16)>,
    /// Latest send time and its packet size.
    pub(super) last_sent: Option<(Instant, u16)>,
    /// Earliest receive time and its packet size.
    pub(super) first_recv: Option<(Instant, u16)>,
    /// Latest receive time.
    pub(super) last_recv: Option<Instant>,
}

impl Cluster {
    /// min(send rate, receive rate) of the received packets, when measurable.
    pub(super) fn result(&self) -> Option<f64> {
        if self.count < PROBE_MIN_PACKETS {
            return None;
        }
        let (fs, _) = self.first_sent?;
        let (ls, ls_size) = self.last_sent?;
        let (fr, fr_size) = self.first_recv?;
        let lr = self.last_recv?;
        let recv_span = lr.saturating_duration_since(fr).as_secs_f64();
        if recv_span <= 0.0 {
            return None;
        }
        let recv_rate = (self.received - u64::from(fr_size)) as f64 * 8.0 / recv_span;
        let send_span = ls.saturating_duration_since(fs).as_secs_f64();
        let send_rate = if send_span > 0.0 {
            (self.received - u64::from(ls_size)) as f64 * 8.0 / send_span
        } else {
            f64::INFINITY
        };
        let rate = recv_rate.min(send_rate);
        (rate.is_finite() && rate > 0.0).then_some(rate)
    }
}

/// Probe scheduling and result collection.
#[derive(Debug, Default)]
pub(super) struct Prober {
    /// Whether the startup probes were queued.
    pub(super) started: bool,
    /// Rates of probes to run next.
    pub(super) pending: VecDeque<u64>,
    /// Earliest time of the next probe.
    pub(super) next_at: Option<Instant>,
    /// Last time a probe was handed out.
    pub(super) last_probe_at: Option<Instant>,
    /// Next cluster id.
    pub(super) next_id: u32,
    /// Clusters awaiting feedback.
    pub(super) clusters: VecDeque<Cluster>,
}

impl Prober {
    /// Hands out a probe at `rate`.
    pub(super) fn start(&mut self, rate: u64, now: Instant) -> Probe {
        let bytes = (rate as f64 * PROBE_DURATION.as_secs_f64() / 8.0) as u64;
        let bytes = bytes.max(PROBE_MIN_BYTES);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let send_time = Duration::from_secs_f64(bytes as f64 * 8.0 / rate.max(1) as f64);
        self.next_at =
            Some(now + send_time.min(Duration::from_secs(1)) + Duration::from_millis(50));
        self.last_probe_at = Some(now);
        if self.clusters.len() >= MAX_CLUSTERS {
            self.clusters.pop_front();
        }
        self.clusters.push_back(Cluster {
            id,
            target_bps: rate,
            bytes,
            created: now,
            count: 0,
            reported: 0,
            received: 0,
            first_sent: None,
            last_sent: None,
            first_recv: None,
            last_recv: None,
        });
        Probe {
            id,
            bitrate_bps: rate,
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        }
    }

    /// Records a received probe packet.
    pub(super) fn on_received(&mut self, id: u32, sent: Instant, recv: Instant, size: u16) {
        let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return;
        };
        c.count += 1;
        c.received += u64::from(size);
        c.reported += u64::from(size);
        if c.first_sent.is_none_or(|(t, _)| sent < t) {
            c.first_sent = Some((sent, size));
        }
        if c.last_sent.is_none_or(|(t, _)| sent >= t) {
            c.last_sent = Some((sent, size));
        }
        if c.first_recv.is_none_or(|(t, _)| recv < t) {
            c.first_recv = Some((recv, size));
        }
        if c.last_recv.is_none_or(|t| recv > t) {
            c.last_recv = Some(recv);
        }
    }

    /// Records a lost probe packet.
    pub(super) fn on_lost(&mut self, id: u32, size: u16) {
        if let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) {
            c.reported += u64::from(size);
        }
    }

    /// The best result of clusters whose feedback is complete: (rate, target, id).
    pub(super) fn evaluate(&mut self, now: Instant) -> Option<(f64, u64, u32)> {
        let mut best: Option<(f64, u64, u32)> = None;
        self.clusters.retain(|c| {
            let complete = c.reported * 10 >= c.bytes * 8;
            let expired = now.saturating_duration_since(c.created) > PROBE_TIMEOUT;
            if !(complete || expired) {
                return true;
            }
            if let Some(rate) = c.result()
                && best.is_none_or(|(b, _, _)| rate > b)
            {
                best = Some((rate, c.target_bps, c.id));
            }
            false
        });
        best
    }
}
