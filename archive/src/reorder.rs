//! A bounded reorder (jitter) buffer keyed by extended RTP sequence number.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Limits of a [`ReorderBuffer`].
#[derive(Clone, Copy, Debug)]
pub struct ReorderConfig {
    /// Most packets held while waiting for a missing one; beyond this the gap is skipped.
    pub max_packets: usize,
    /// Longest a packet waits for a missing predecessor before the gap is skipped.
    pub max_delay: Duration,
    /// A packet further ahead than this is treated as garbage, unless a second one follows it
    /// (then the stream is assumed to have restarted at the new numbers).
    pub max_jump: u64,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        Self {
            max_packets: 256,
            max_delay: Duration::from_millis(150),
            max_jump: 3000,
        }
    }
}

/// A packet leaving the buffer in sequence order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released<T> {
    /// Extended sequence number.
    pub seq: u64,
    /// How many sequence numbers were given up on right before this packet (0 = contiguous).
    pub lost_before: u64,
    /// The packet.
    pub item: T,
}

/// What happened to a pushed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Buffered for release.
    Accepted,
    /// Already buffered; dropped.
    Duplicate,
    /// Older than what was already released; dropped.
    Late,
    /// Implausibly far ahead; dropped (held as a candidate restart point).
    Garbage,
    /// The stream restarted at a new sequence range; earlier packets were released first.
    Restarted,
}

/// Releases packets in sequence order, waiting a bounded time or count for missing ones.
#[derive(Debug)]
pub struct ReorderBuffer<T> {
    cfg: ReorderConfig,
    next: Option<u64>,
    buf: BTreeMap<u64, (Instant, T)>,
    ready: VecDeque<Released<T>>,
    far_candidate: Option<(u64, Instant, T)>,
}

impl<T> ReorderBuffer<T> {
    /// Creates an empty buffer with the given limits.
    pub fn new(cfg: ReorderConfig) -> Self {
        Self {
            cfg,
            next: None,
            buf: BTreeMap::new(),
            ready: VecDeque::new(),
            far_candidate: None,
        }
    }

    /// Number of packets currently held.
    pub fn len(&self) -> usize {
        self.buf.len() + self.ready.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Offers a packet that arrived at `arrival`.
    pub fn push(&mut self, seq: u64, arrival: Instant, item: T) -> PushOutcome {
        let Some(next) = self.next else {
            self.next = Some(seq);
            self.buf.insert(seq, (arrival, item));
            return PushOutcome::Accepted;
        };
        if seq < next {
            return PushOutcome::Late;
        }
        if self.buf.contains_key(&seq) {
            return PushOutcome::Duplicate;
        }
        if seq - next > self.cfg.max_jump {
            match self.far_candidate.take() {
                Some((prev, prev_arrival, prev_item)) if seq == prev + 1 => {
                    self.drain_all();
                    self.buf.insert(prev, (prev_arrival, prev_item));
                    self.buf.insert(seq, (arrival, item));
                    return PushOutcome::Restarted;
                }
                _ => {
                    self.far_candidate = Some((seq, arrival, item));
                    return PushOutcome::Garbage;
                }
            }
        }
        self.buf.insert(seq, (arrival, item));
        PushOutcome::Accepted
    }

    /// Returns the next packet that may leave at `now`, if any.
    pub fn pop(&mut self, now: Instant) -> Option<Released<T>> {
        if let Some(r) = self.ready.pop_front() {
            return Some(r);
        }
        let next = self.next?;
        let (&first, &(arrival, _)) = self.buf.first_key_value()?;
        let give_up = first == next
            || self.buf.len() > self.cfg.max_packets
            || first - next > self.cfg.max_packets as u64
            || now.saturating_duration_since(arrival) >= self.cfg.max_delay;
        if !give_up {
            return None;
        }
        let (seq, (_, item)) = self.buf.pop_first()?;
        self.next = Some(seq + 1);
        Some(Released {
            seq,
            lost_before: seq - next,
            item,
        })
    }

    /// When [`pop`](Self::pop) may next return something without another push.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return None;
        }
        self.buf
            .first_key_value()
            .map(|(_, (arrival, _))| *arrival + self.cfg.max_delay)
    }

    /// Releases everything held, in order, regardless of gaps.
    pub fn flush(&mut self) -> Vec<Released<T>> {
        self.drain_all();
        self.ready.drain(..).collect()
    }

    fn drain_all(&mut self) {
        let mut next = self.next.unwrap_or(0);
        while let Some((seq, (_, item))) = self.buf.pop_first() {
            self.ready.push_back(Released {
                seq,
                lost_before: seq.saturating_sub(next),
                item,
            });
            next = seq + 1;
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(b: &mut ReorderBuffer<u64>, now: Instant) -> Vec<(u64, u64)> {
        std::iter::from_fn(|| b.pop(now))
            .map(|r| (r.seq, r.lost_before))
            .collect()
    }

    #[test]
    fn reorders_within_window() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default());
        for s in [10, 12, 11, 13] {
            b.push(s, t, s);
        }
        assert_eq!(drain(&mut b, t), vec![(10, 0), (11, 0), (12, 0), (13, 0)]);
    }

    #[test]
    fn waits_for_gap_then_gives_up_after_delay() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default());
        b.push(1, t, 1);
        b.push(3, t, 3);
        assert_eq!(drain(&mut b, t), vec![(1, 0)]);
        assert_eq!(b.next_deadline(), Some(t + Duration::from_millis(150)));
        assert_eq!(drain(&mut b, t + Duration::from_millis(100)), vec![]);
        assert_eq!(drain(&mut b, t + Duration::from_millis(150)), vec![(3, 1)]);
        assert_eq!(b.push(2, t, 2), PushOutcome::Late);
    }

    #[test]
    fn gives_up_when_count_bound_is_hit() {
        let t = Instant::now();
        let cfg = ReorderConfig {
            max_packets: 4,
            ..Default::default()
        };
        let mut b = ReorderBuffer::new(cfg);
        b.push(0, t, 0);
        assert_eq!(drain(&mut b, t).len(), 1);
        for s in 2..=6 {
            b.push(s, t, s);
        }
        assert_eq!(
            drain(&mut b, t),
            vec![(2, 1), (3, 0), (4, 0), (5, 0), (6, 0)]
        );
    }

    #[test]
    fn drops_duplicates() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default());
        assert_eq!(b.push(5, t, 5), PushOutcome::Accepted);
        assert_eq!(b.push(7, t, 7), PushOutcome::Accepted);
        assert_eq!(b.push(7, t, 7), PushOutcome::Duplicate);
        assert_eq!(drain(&mut b, t), vec![(5, 0)]);
        assert_eq!(b.push(5, t, 5), PushOutcome::Late);
    }

    #[test]
    fn wraparound_of_16_bit_numbers_is_continuous_once_extended() {
        let t = Instant::now();
        let mut u = crate::rtp::SeqUnwrapper::default();
        let mut b = ReorderBuffer::new(ReorderConfig::default());
        let seqs: Vec<u64> = [65534u16, 0, 65535, 1]
            .iter()
            .map(|s| u.extend(*s))
            .collect();
        for s in &seqs {
            b.push(*s, t, *s);
        }
        let out = drain(&mut b, t);
        assert_eq!(out.len(), 4);
        assert!(out.windows(2).all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == 0));
    }

    #[test]
    fn single_garbage_packet_is_ignored_but_restart_is_followed() {
        let t = Instant::now();
        let mut b = ReorderBuffer::new(ReorderConfig::default());
        b.push(100, t, 100);
        b.push(101, t, 101);
        assert_eq!(b.push(900_000, t, 0), PushOutcome::Garbage);
        b.push(102, t, 102);
        assert_eq!(drain(&mut b, t), vec![(100, 0), (101, 0), (102, 0)]);
        assert_eq!(b.push(50_000, t, 50_000), PushOutcome::Garbage);
        assert_eq!(b.push(50_001, t, 50_001), PushOutcome::Restarted);
        let out = drain(&mut b, t);
        assert_eq!(out, vec![(50_000, 50_000 - 103), (50_001, 0)]);
    }
}
