//! Per-viewer pacer and send queue, sans-IO.
//!
//! Items wait in one queue per [`Class`] and leave through a leaky bucket that drains at the
//! pacing rate set by the caller. The bucket holds the bytes sent ahead of the rate ("debt");
//! a paced packet may leave while the debt is at most the burst allowance, so a frame's first
//! packets leave back to back and the rest are spread at the pacing rate.
//!
//! - Audio leaves at once on the next [`Pacer::poll`], whatever the debt; its bytes are still
//!   added to the debt (up to [`MAX_AUDIO_DEBT`] worth), so video yields to it.
//! - Resends leave before video; both are paced.
//! - A probe ([`Pacer::probe`]) raises the drain rate to the probe's bitrate until its bytes
//!   are out or [`PROBE_TIMEOUT`] passes; media released meanwhile carries the probe id, and
//!   when no paced media waits the pacer releases padding chunks instead.
//!
//! Time is only ever passed in. A time earlier than one already seen is treated as that later
//! time. Debt is kept in nanobits (1e-9 bit), so a rate in bit/s drains exactly `rate`
//! nanobits per nanosecond and [`Pacer::next_wake`] is exact to the nanosecond.
//!
//! The hot path (push and poll) does not allocate once each queue has grown to its working
//! size: the queues are `VecDeque`s that keep their capacity, and every operation is O(1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Lowest pacing rate in bit/s; lower rates, 0 included, are raised to it.
pub const MIN_RATE_BPS: u64 = 10_000;
/// Pacing rate in bit/s until the caller sets one (2.5 × a 300 kbit/s starting estimate).
pub const DEFAULT_RATE_BPS: u64 = 750_000;
/// Default burst window: paced packets may leave while the debt is at most this much sending time.
pub const DEFAULT_BURST_WINDOW: Duration = Duration::from_millis(5);
/// Default lower bound of the burst allowance in bytes, so low rates still let a few packets go together.
pub const DEFAULT_BURST_MIN_BYTES: usize = 3_000;
/// Most sending time that audio can put the bucket in debt (beyond the burst allowance).
pub const MAX_AUDIO_DEBT: Duration = Duration::from_millis(500);
/// Longest a probe runs when its bytes are not all out by then.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(100);
/// Default largest padding chunk in bytes (what one RTP padding packet can carry).
pub const DEFAULT_MAX_PADDING: usize = 255;

/// Nanobits in one byte.
const NANOBITS_PER_BYTE: u128 = 8_000_000_000;

/// Priority class of a queued item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Sent at once on the next poll, never delayed by the bucket; its bytes still count.
    Audio,
    /// Answers to NACKs: paced, sent before any video.
    Resend,
    /// Media video: paced, sent last.
    Video,
}

/// What [`Pacer::poll`] releases for sending now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release<T> {
    /// A queued item; `probe` is the id of the probe running when it left, if any.
    Packet {
        /// The item as pushed.
        item: T,
        /// Probe the packet belongs to.
        probe: Option<u32>,
    },
    /// Padding to build and send for a probe (no media was waiting).
    Padding {
        /// Padding size in bytes (1 ..= the padding maximum); counted as this many bytes sent.
        bytes: usize,
        /// Probe the padding belongs to.
        probe: u32,
    },
}

/// One queued item: the item, its size and when it was pushed.
struct Entry<T> {
    item: T,
    size: u32,
    at: Instant,
}

/// A running probe.
struct Probe {
    id: u32,
    bps: u64,
    remaining: usize,
    deadline: Instant,
}

/// Per-viewer pacer: three priority queues behind one leaky bucket, with probing.
pub struct Pacer<T> {
    audio: VecDeque<Entry<T>>,
    resend: VecDeque<Entry<T>>,
    video: VecDeque<Entry<T>>,
    max_items: usize,
    bytes: u64,
    rate: u64,
    burst_window_ns: u64,
    burst_min_bytes: usize,
    max_padding: usize,
    /// Bytes sent ahead of the rate, in nanobits, as of `last`.
    debt: u128,
    /// Latest time seen.
    last: Instant,
    probe: Option<Probe>,
}

impl<T> Pacer<T> {
    /// A pacer holding at most `max_items` queued items in all, at [`DEFAULT_RATE_BPS`].
    pub fn new(max_items: usize, now: Instant) -> Self {
        Self {
            audio: VecDeque::new(),
            resend: VecDeque::new(),
            video: VecDeque::new(),
            max_items,
            bytes: 0,
            rate: DEFAULT_RATE_BPS,
            burst_window_ns: duration_ns(DEFAULT_BURST_WINDOW),
            burst_min_bytes: DEFAULT_BURST_MIN_BYTES,
            max_padding: DEFAULT_MAX_PADDING,
            debt: 0,
            last: now,
            probe: None,
        }
    }

    /// Sets the pacing rate in bit/s (at least [`MIN_RATE_BPS`]); it drains the bucket from the latest time seen.
    pub fn set_rate(&mut self, pacing_bps: u64) {
        self.rate = pacing_bps.max(MIN_RATE_BPS);
    }

    /// The pacing rate in bit/s.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Sets the burst allowance: the larger of `window` of sending at the current rate and `min_bytes`.
    pub fn set_burst(&mut self, window: Duration, min_bytes: usize) {
        self.burst_window_ns = duration_ns(window);
        self.burst_min_bytes = min_bytes;
    }

    /// Sets the largest padding chunk released for probes (at least 1 byte).
    pub fn set_max_padding(&mut self, bytes: usize) {
        self.max_padding = bytes.max(1);
    }

    /// Queues `item` of `size` bytes in `class`; refused (item handed back) when the queue is full.
    pub fn push(&mut self, item: T, size: usize, class: Class, now: Instant) -> Result<(), T> {
        if self.queued() >= self.max_items {
            return Err(item);
        }
        self.advance(now);
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let entry = Entry {
            item,
            size,
            at: now,
        };
        match class {
            Class::Audio => self.audio.push_back(entry),
            Class::Resend => self.resend.push_back(entry),
            Class::Video => self.video.push_back(entry),
        }
        self.bytes = self.bytes.saturating_add(u64::from(size));
        Ok(())
    }

    /// The next item or padding chunk that may leave at `now`, if any; call until `None`.
    pub fn poll(&mut self, now: Instant) -> Option<Release<T>> {
        self.advance(now);

        if let Some(e) = self.audio.pop_front() {
            self.bytes = self.bytes.saturating_sub(u64::from(e.size));
            let rate = self.effective_rate();
            let cap = self.burst(rate).saturating_add(
                u128::from(duration_ns(MAX_AUDIO_DEBT)).saturating_mul(u128::from(rate)),
            );
            let added = self.debt.saturating_add(nanobits(e.size as usize));
            self.debt = self.debt.max(added.min(cap));
            let probe = self.count_probe(e.size as usize);
            return Some(Release::Packet {
                item: e.item,
                probe,
            });
        }

        if self.debt > self.burst(self.effective_rate()) {
            return None;
        }

        let entry = match self.resend.pop_front() {
            Some(e) => Some(e),
            None => self.video.pop_front(),
        };
        if let Some(e) = entry {
            self.bytes = self.bytes.saturating_sub(u64::from(e.size));
            self.debt = self.debt.saturating_add(nanobits(e.size as usize));
            let probe = self.count_probe(e.size as usize);
            return Some(Release::Packet {
                item: e.item,
                probe,
            });
        }

        let p = self.probe.as_ref()?;
        let bytes = p.remaining.min(self.max_padding).max(1);
        let id = p.id;
        self.debt = self.debt.saturating_add(nanobits(bytes));
        self.count_probe(bytes);
        Some(Release::Padding { bytes, probe: id })
    }

    /// When [`Pacer::poll`] next releases something (a time at or before the latest seen means now); `None` when nothing will.
    pub fn next_wake(&self) -> Option<Instant> {
        if !self.audio.is_empty() {
            return Some(self.last);
        }
        let media = !self.resend.is_empty() || !self.video.is_empty();
        let mut debt = self.debt;
        let mut from = self.last;
        if let Some(p) = &self.probe {
            let rate = self.rate.max(p.bps);
            let wait = wait_ns(debt, self.burst(rate), rate);
            if let Some(t) = add_ns(from, wait)
                && t < p.deadline
            {
                return Some(t);
            }
            // The probe ends before anything may leave; the base rate applies from its deadline.
            if !media {
                return None;
            }
            let probe_ns = duration_ns(p.deadline.saturating_duration_since(from));
            debt = debt.saturating_sub(u128::from(probe_ns).saturating_mul(u128::from(rate)));
            from = from.max(p.deadline);
        }
        if !media {
            return None;
        }
        let wait = wait_ns(debt, self.burst(self.rate), self.rate);
        Some(add_ns(from, wait).unwrap_or(from))
    }

    /// Enqueue time of the oldest queued video packet.
    pub fn oldest_video(&self) -> Option<Instant> {
        self.video.front().map(|e| e.at)
    }

    /// Drops every queued video packet and resend, returning how many were dropped.
    pub fn drop_video(&mut self) -> usize {
        self.drop_video_with(drop)
    }

    /// Like [`Pacer::drop_video`], handing each dropped item (resends first) to `f`.
    pub fn drop_video_with(&mut self, mut f: impl FnMut(T)) -> usize {
        let n = self.resend.len() + self.video.len();
        for e in self.resend.drain(..).chain(self.video.drain(..)) {
            self.bytes = self.bytes.saturating_sub(u64::from(e.size));
            f(e.item);
        }
        n
    }

    /// Starts probe `id` (replacing any running one): release at `bitrate_bps` (if above the pacing rate) until `bytes` are out or [`PROBE_TIMEOUT`] passes.
    pub fn probe(&mut self, id: u32, bitrate_bps: u64, bytes: usize, now: Instant) {
        self.advance(now);
        if bytes == 0 {
            self.probe = None;
            return;
        }
        self.probe = Some(Probe {
            id,
            bps: bitrate_bps.max(MIN_RATE_BPS),
            remaining: bytes,
            deadline: add_ns(self.last, duration_ns(PROBE_TIMEOUT)).unwrap_or(self.last),
        });
    }

    /// Id of the running probe, if any (as of the latest time seen).
    pub fn probing(&self) -> Option<u32> {
        self.probe.as_ref().map(|p| p.id)
    }

    /// Number of queued items in all classes.
    pub fn queued(&self) -> usize {
        self.audio.len() + self.resend.len() + self.video.len()
    }

    /// Sum of the sizes of the queued items.
    pub fn queued_bytes(&self) -> usize {
        usize::try_from(self.bytes).unwrap_or(usize::MAX)
    }

    /// Drains the bucket up to `now` (at the probe rate until the probe's deadline, then at the pacing rate).
    fn advance(&mut self, now: Instant) {
        if now <= self.last {
            return;
        }
        let mut from = self.last;
        if let Some(p) = &self.probe {
            let rate = self.rate.max(p.bps);
            let until = now.min(p.deadline);
            if until > from {
                self.debt = self.debt.saturating_sub(drain(until - from, rate));
                from = until;
            }
            if now >= p.deadline {
                self.probe = None;
            }
        }
        if now > from {
            self.debt = self.debt.saturating_sub(drain(now - from, self.rate));
        }
        self.last = now;
    }

    /// Drain rate now: the probe's bitrate while it runs and exceeds the pacing rate.
    fn effective_rate(&self) -> u64 {
        match &self.probe {
            Some(p) => self.rate.max(p.bps),
            None => self.rate,
        }
    }

    /// Burst allowance in nanobits at `rate`.
    fn burst(&self, rate: u64) -> u128 {
        let by_time = u128::from(self.burst_window_ns).saturating_mul(u128::from(rate));
        let by_bytes = nanobits(self.burst_min_bytes);
        by_time.max(by_bytes)
    }

    /// Counts `size` bytes toward the running probe, ending it when its bytes are out; returns its id.
    fn count_probe(&mut self, size: usize) -> Option<u32> {
        let p = self.probe.as_mut()?;
        let id = p.id;
        p.remaining = p.remaining.saturating_sub(size);
        if p.remaining == 0 {
            self.probe = None;
        }
        Some(id)
    }
}

/// `bytes` in nanobits.
fn nanobits(bytes: usize) -> u128 {
    (bytes as u128).saturating_mul(NANOBITS_PER_BYTE)
}

/// Nanobits drained over `d` at `rate` bit/s.
fn drain(d: Duration, rate: u64) -> u128 {
    u128::from(duration_ns(d)).saturating_mul(u128::from(rate))
}

/// `d` in whole nanoseconds, saturating at `u64::MAX`.
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Nanoseconds until a debt of `debt` drains to at most `burst` at `rate` (rounded up).
fn wait_ns(debt: u128, burst: u128, rate: u64) -> u64 {
    if debt <= burst {
        return 0;
    }
    let rate = u128::from(rate.max(1));
    let ns = (debt - burst).div_ceil(rate);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// `t` plus `ns` nanoseconds, `None` when not representable.
fn add_ns(t: Instant, ns: u64) -> Option<Instant> {
    t.checked_add(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const NS: Duration = Duration::from_nanos(1);

    /// Releases everything that may leave at `now`.
    fn drain_at(p: &mut Pacer<u32>, now: Instant) -> Vec<Release<u32>> {
        let mut out = Vec::new();
        while let Some(r) = p.poll(now) {
            out.push(r);
            assert!(out.len() < 1_000_000, "poll loop does not end");
        }
        out
    }

    fn item(r: &Release<u32>) -> Option<u32> {
        match r {
            Release::Packet { item, .. } => Some(*item),
            Release::Padding { .. } => None,
        }
    }

    /// Polls at each wake until the queue is empty; returns (time, release) pairs.
    fn run_until_idle(p: &mut Pacer<u32>, limit: usize) -> Vec<(Instant, Release<u32>)> {
        let mut out = Vec::new();
        while let Some(t) = p.next_wake() {
            let got = drain_at(p, t);
            assert!(!got.is_empty(), "polling at next_wake released nothing");
            out.extend(got.into_iter().map(|r| (t, r)));
            assert!(out.len() <= limit);
        }
        out
    }

    #[test]
    fn frame_leaves_in_burst_then_spread() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(1_500_000);
        for i in 0..10 {
            p.push(i, 1200, Class::Video, t0).unwrap();
        }
        let first = drain_at(&mut p, t0);
        // Burst: max(5 ms at 1.5 Mbit/s = 937 B, 3000 B); a packet leaves while debt <= burst.
        assert_eq!(first.len(), 3);
        assert!(first.len() * 1200 <= DEFAULT_BURST_MIN_BYTES + 1200);
        assert_eq!(
            first.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let rest = run_until_idle(&mut p, 100);
        assert_eq!(rest.len(), 7);
        // One packet per wake, spaced by 1200 B at 1.5 Mbit/s = 6.4 ms.
        let mut prev: Option<Instant> = None;
        for (t, r) in &rest {
            assert!(matches!(r, Release::Packet { probe: None, .. }));
            if let Some(pt) = prev {
                assert_eq!(*t - pt, Duration::from_micros(6400));
            }
            prev = Some(*t);
        }
        assert_eq!(p.queued(), 0);
        assert_eq!(p.queued_bytes(), 0);
    }

    /// Feeds `offered_bps` of video in 10-packet frames every 33 ms for `secs`; returns the send rate.
    fn sustained(rate: u64, offered_bps: u64, secs: u64) -> f64 {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000, t0);
        p.set_rate(rate);
        let frame_every = Duration::from_millis(33);
        let pkt = ((offered_bps as f64 * 0.033 / 8.0) / 10.0) as usize;
        let end = t0 + Duration::from_secs(secs);
        let mut next_frame = t0;
        let mut sent = 0usize;
        let mut now = t0;
        let mut n = 0u32;
        while now < end {
            if now >= next_frame {
                for _ in 0..10 {
                    p.push(n, pkt, Class::Video, now).unwrap();
                    n += 1;
                }
                next_frame += frame_every;
            }
            let mut released = false;
            while let Some(r) = p.poll(now) {
                assert!(matches!(r, Release::Packet { .. }));
                sent += pkt;
                released = true;
            }
            let next = match p.next_wake() {
                Some(w) => w.min(next_frame),
                None => next_frame,
            };
            assert!(released || next > now, "no progress at {:?}", now - t0);
            now = next;
        }
        assert!(p.queued() > 0, "not overloaded");
        sent as f64 * 8.0 / secs as f64
    }

    #[test]
    fn long_run_rate_under_overload() {
        for (rate, offered) in [
            (1_500_000, 3_000_000),
            (500_000, 2_000_000),
            (8_000_000, 12_000_000),
        ] {
            let got = sustained(rate, offered, 10);
            let err = (got - rate as f64).abs() / rate as f64;
            assert!(err < 0.05, "rate {rate}: sent {got} bit/s");
            // Slightly above the rate only by the initial burst.
            assert!(got >= rate as f64 * 0.99, "rate {rate}: sent {got} bit/s");
        }
    }

    #[test]
    fn audio_overtakes_queued_video_and_counts_bytes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(1_000_000);
        for i in 0..10 {
            p.push(i, 1200, Class::Video, t0).unwrap();
        }
        drain_at(&mut p, t0);
        let wake_before = p.next_wake().unwrap();
        p.push(100, 200, Class::Audio, t0).unwrap();
        assert_eq!(p.next_wake(), Some(t0));
        let got = drain_at(&mut p, t0);
        assert_eq!(
            got.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
            vec![100]
        );
        // The audio bytes delay the next video packet by 200 B at 1 Mbit/s = 1.6 ms.
        assert_eq!(
            p.next_wake().unwrap() - wake_before,
            Duration::from_micros(1600)
        );
        // Audio pushed later still leaves before queued video.
        let t1 = t0 + MS;
        p.push(101, 200, Class::Audio, t1).unwrap();
        p.push(102, 200, Class::Audio, t1).unwrap();
        let got = drain_at(&mut p, t1);
        assert_eq!(
            got.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
            vec![101, 102]
        );
    }

    #[test]
    fn audio_debt_is_capped() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10_000, t0);
        p.set_rate(100_000);
        for i in 0..1000 {
            p.push(i, 1000, Class::Audio, t0).unwrap();
        }
        assert_eq!(drain_at(&mut p, t0).len(), 1000);
        p.push(5000, 100, Class::Video, t0).unwrap();
        // Debt at most burst + 500 ms: video waits no longer than 500 ms.
        let w = p.next_wake().unwrap();
        assert!(w - t0 <= MAX_AUDIO_DEBT, "{:?}", w - t0);
    }

    #[test]
    fn resend_before_video() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(1_000_000);
        p.push(1, 1200, Class::Video, t0).unwrap();
        p.push(2, 1200, Class::Video, t0).unwrap();
        p.push(3, 1200, Class::Resend, t0).unwrap();
        p.push(4, 1200, Class::Resend, t0).unwrap();
        p.push(5, 100, Class::Audio, t0).unwrap();
        let mut order: Vec<u32> = drain_at(&mut p, t0)
            .iter()
            .map(|r| item(r).unwrap())
            .collect();
        order.extend(
            run_until_idle(&mut p, 10)
                .iter()
                .map(|(_, r)| item(r).unwrap()),
        );
        assert_eq!(order, vec![5, 3, 4, 1, 2]);
    }

    #[test]
    fn oldest_video_and_drop_video() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(100_000);
        assert_eq!(p.oldest_video(), None);
        p.push(1, 1200, Class::Video, t0).unwrap();
        p.push(2, 1200, Class::Video, t0 + 10 * MS).unwrap();
        p.push(3, 1200, Class::Video, t0 + 20 * MS).unwrap();
        p.push(4, 1200, Class::Video, t0 + 30 * MS).unwrap();
        assert_eq!(p.oldest_video(), Some(t0));
        // Three leave within the burst at 30 ms (each leaves while the debt is at most 3000 B).
        let got = drain_at(&mut p, t0 + 30 * MS);
        assert_eq!(got.len(), 3);
        assert_eq!(p.oldest_video(), Some(t0 + 30 * MS));
        p.push(5, 500, Class::Resend, t0 + 30 * MS).unwrap();
        p.push(6, 80, Class::Audio, t0 + 30 * MS).unwrap();
        assert_eq!(p.queued(), 3);
        assert_eq!(p.queued_bytes(), 1200 + 500 + 80);
        let mut dropped = Vec::new();
        assert_eq!(p.drop_video_with(|i| dropped.push(i)), 2);
        assert_eq!(dropped, vec![5, 4]);
        assert_eq!(p.oldest_video(), None);
        assert_eq!(p.queued(), 1);
        assert_eq!(p.queued_bytes(), 80);
        assert_eq!(p.drop_video(), 0);
        // Audio stays.
        assert_eq!(item(&p.poll(t0 + 30 * MS).unwrap()), Some(6));
    }

    #[test]
    fn item_cap_refuses_and_hands_back() {
        let t0 = Instant::now();
        let mut p = Pacer::new(3, t0);
        p.push(1, 100, Class::Video, t0).unwrap();
        p.push(2, 100, Class::Resend, t0).unwrap();
        p.push(3, 100, Class::Audio, t0).unwrap();
        assert_eq!(p.push(4, 100, Class::Audio, t0), Err(4));
        assert_eq!(p.push(5, 100, Class::Video, t0), Err(5));
        assert_eq!(p.queued(), 3);
        assert_eq!(p.queued_bytes(), 300);
        assert!(p.poll(t0).is_some());
        p.push(6, 100, Class::Video, t0).unwrap();
        let mut zero = Pacer::new(0, t0);
        assert_eq!(zero.push(7, 1, Class::Audio, t0), Err(7));
        assert_eq!(zero.next_wake(), None);
    }

    #[test]
    fn probe_pads_at_its_rate_and_ends_at_its_bytes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(500_000);
        assert_eq!(p.next_wake(), None);
        p.probe(7, 2_000_000, 20_000, t0);
        assert_eq!(p.probing(), Some(7));
        assert_eq!(p.next_wake(), Some(t0));
        let out = run_until_idle(&mut p, 1000);
        let mut total = 0;
        for (_, r) in &out {
            match r {
                Release::Padding { bytes, probe } => {
                    assert_eq!(*probe, 7);
                    assert!((1..=255).contains(bytes));
                    total += bytes;
                }
                Release::Packet { .. } => panic!("no media was queued"),
            }
        }
        assert_eq!(total, 20_000);
        assert_eq!(p.probing(), None);
        assert_eq!(p.poll(out.last().unwrap().0), None);
        // Rate: bytes after the initial burst over the time they took.
        let first = out[0].0;
        let last = out.last().unwrap().0;
        let burst_end = out
            .iter()
            .take_while(|(t, _)| *t == first)
            .map(|(_, r)| match r {
                Release::Padding { bytes, .. } => *bytes,
                _ => 0,
            });
        let after: usize = total - burst_end.sum::<usize>();
        let bps = after as f64 * 8.0 / (last - first).as_secs_f64();
        assert!(
            (bps - 2_000_000.0).abs() / 2_000_000.0 < 0.05,
            "probe rate {bps}"
        );
        // Back at the pacing rate: a packet now leaves untagged once the debt drains at 500 kbit/s.
        p.push(1, 1200, Class::Video, last).unwrap();
        let w = p.next_wake().unwrap();
        assert!(
            w - last <= Duration::from_micros(255 * 8 * 2 + 1),
            "{:?}",
            w - last
        );
        assert!(matches!(
            p.poll(w),
            Some(Release::Packet {
                item: 1,
                probe: None
            })
        ));
    }

    #[test]
    fn probe_tags_media_and_counts_it() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(500_000);
        p.set_max_padding(100);
        for i in 0..5 {
            p.push(i, 1000, Class::Video, t0).unwrap();
        }
        p.push(9, 100, Class::Audio, t0).unwrap();
        p.probe(3, 4_000_000, 5_250, t0);
        let out = run_until_idle(&mut p, 100);
        let mut media = 0;
        let mut padding = 0;
        for (_, r) in &out {
            match r {
                Release::Packet { probe, .. } => {
                    assert_eq!(*probe, Some(3));
                    media += 1;
                }
                Release::Padding { bytes, probe } => {
                    assert_eq!(*probe, 3);
                    assert!(*bytes <= 100);
                    padding += bytes;
                }
            }
        }
        assert_eq!(media, 6);
        // 5100 bytes of media leave 150 bytes of padding: 100 then 50.
        assert_eq!(padding, 150);
        assert_eq!(p.probing(), None);
        // Spread at 4 Mbit/s: the whole probe takes well under the 500 kbit/s time.
        let span = out.last().unwrap().0 - t0;
        assert!(span < Duration::from_millis(10), "{span:?}");
    }

    #[test]
    fn probe_times_out() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(100_000);
        p.probe(1, 1_000_000, 1_000_000, t0);
        let out = run_until_idle(&mut p, 100_000);
        let total: usize = out
            .iter()
            .map(|(_, r)| match r {
                Release::Padding { bytes, .. } => *bytes,
                _ => 0,
            })
            .sum();
        // About 100 ms at 1 Mbit/s (12.5 kB) plus the burst.
        assert!((12_500..=12_500 + 3_000 + 255).contains(&total), "{total}");
        assert!(out.last().unwrap().0 < t0 + PROBE_TIMEOUT);
        assert_eq!(p.next_wake(), None);
        assert_eq!(p.poll(t0 + PROBE_TIMEOUT), None);
        assert_eq!(p.probing(), None);
    }

    #[test]
    fn next_wake_is_exact() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(1_234_567);
        for i in 0..20 {
            p.push(i, 1000 + i as usize * 7, Class::Video, t0).unwrap();
        }
        drain_at(&mut p, t0);
        let mut n = 0;
        while let Some(w) = p.next_wake() {
            assert!(w > t0);
            assert_eq!(p.poll(w - NS), None, "released before next_wake");
            assert_eq!(p.next_wake(), Some(w));
            assert!(p.poll(w).is_some(), "nothing at next_wake");
            drain_at(&mut p, w);
            n += 1;
        }
        assert!(n >= 15);
    }

    #[test]
    fn next_wake_is_exact_across_probe_end() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(50_000);
        for i in 0..40 {
            p.push(i, 1200, Class::Video, t0).unwrap();
        }
        // 2 Mbit/s for 100 ms is 25 kB (plus the burst) of 48 kB queued: the probe times out mid-queue.
        p.probe(1, 2_000_000, 1_000_000, t0);
        let mut tagged = 0;
        let mut untagged = 0;
        let mut now = t0;
        while let Some(w) = p.next_wake() {
            if w > now {
                assert_eq!(p.poll(w - NS), None, "released before next_wake");
            }
            let got = drain_at(&mut p, w);
            assert!(!got.is_empty());
            for r in got {
                match r {
                    Release::Packet { probe: Some(1), .. } => tagged += 1,
                    Release::Packet { probe: None, .. } => untagged += 1,
                    Release::Padding { .. } => {}
                    r => panic!("{r:?}"),
                }
            }
            now = w;
            if p.queued() == 0 && p.probing().is_none() {
                break;
            }
        }
        assert_eq!(tagged + untagged, 40);
        assert!((20..=24).contains(&tagged), "{tagged}");
    }

    #[test]
    fn rate_changes_take_effect() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, t0);
        p.set_rate(1_000_000);
        for i in 0..20 {
            p.push(i, 1250, Class::Video, t0).unwrap();
        }
        drain_at(&mut p, t0);
        let w1 = p.next_wake().unwrap();
        drain_at(&mut p, w1);
        let w2 = p.next_wake().unwrap();
        assert_eq!(w2 - w1, Duration::from_millis(10));
        drain_at(&mut p, w2);
        p.set_rate(4_000_000);
        let w3 = p.next_wake().unwrap();
        assert_eq!(w3 - w2, Duration::from_micros(2500));
        drain_at(&mut p, w3);
        p.set_rate(0);
        assert_eq!(p.rate(), MIN_RATE_BPS);
        let w4 = p.next_wake().unwrap();
        assert_eq!(w4 - w3, Duration::from_secs(1));
    }

    #[test]
    fn rate_zero_and_time_backwards_do_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut p = Pacer::new(50, t0);
        p.set_rate(0);
        for i in 0..10 {
            p.push(i, 1200, Class::Video, t0).unwrap();
        }
        assert_eq!(drain_at(&mut p, t0).len(), 3);
        // Earlier times act as the latest time seen.
        assert!(drain_at(&mut p, t0 - Duration::from_secs(5)).is_empty());
        p.push(20, 100, Class::Audio, t0 - Duration::from_secs(9))
            .unwrap();
        assert_eq!(drain_at(&mut p, t0 - Duration::from_secs(9)).len(), 1);
        let w = p.next_wake().unwrap();
        assert!(w > t0);
        assert!(p.poll(w).is_some());
        p.probe(1, 0, 10, t0 - Duration::from_secs(1));
        p.probe(2, u64::MAX, usize::MAX, t0);
        p.set_rate(u64::MAX);
        p.set_burst(Duration::MAX, usize::MAX);
        p.set_max_padding(0);
        p.push(30, usize::MAX, Class::Video, t0).unwrap();
        p.push(31, usize::MAX, Class::Audio, t0).unwrap();
        for _ in 0..100 {
            let _ = p.poll(t0);
        }
        let _ = p.next_wake();
        p.set_burst(Duration::ZERO, 0);
        p.set_rate(0);
        for _ in 0..100 {
            let _ = p.poll(t0 + MS);
            let _ = p.next_wake();
        }
    }

    #[test]
    fn random_operations_keep_accounting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(64, t0);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = t0 + Duration::from_secs(1);
        let mut model_items = 0usize;
        let mut model_bytes = 0usize;
        let mut sizes = std::collections::HashMap::new();
        for n in 0..200_000u32 {
            let r = next();
            match r % 10 {
                0..=3 => {
                    let size = (next() % 1500) as usize;
                    let class = [Class::Audio, Class::Resend, Class::Video][(next() % 3) as usize];
                    if p.push(n, size, class, now).is_ok() {
                        model_items += 1;
                        model_bytes += size;
                        sizes.insert(n, size);
                    }
                }
                4..=6 => {
                    if let Some(Release::Packet { item, .. }) = p.poll(now) {
                        model_items -= 1;
                        model_bytes -= sizes.remove(&item).unwrap();
                    }
                }
                7 => p.set_rate(next() % 20_000_000),
                8 => {
                    if next() % 50 == 0 {
                        p.probe(n, next() % 10_000_000, (next() % 20_000) as usize, now);
                    } else if next() % 100 == 0 {
                        p.drop_video_with(|i| {
                            model_items -= 1;
                            model_bytes -= sizes.remove(&i).unwrap();
                        });
                    } else if let Some(w) = p.next_wake()
                        && w >= now
                    {
                        now = w;
                        match p.poll(now) {
                            Some(Release::Packet { item, .. }) => {
                                model_items -= 1;
                                model_bytes -= sizes.remove(&item).unwrap();
                            }
                            Some(Release::Padding { .. }) => {}
                            None => panic!("nothing at next_wake"),
                        }
                    }
                }
                _ => {
                    // Mostly forward, sometimes backwards.
                    let step = Duration::from_micros(next() % 5_000);
                    if next() % 8 == 0 {
                        now = now.checked_sub(step).unwrap_or(now);
                    } else {
                        now += step;
                    }
                }
            }
            assert_eq!(p.queued(), model_items);
            assert_eq!(p.queued_bytes(), model_bytes);
        }
    }
}
