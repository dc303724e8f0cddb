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
        /// Padding size in bytes (1 ..= the padding maximum); counted as this many bytes sent,
        /// with the padding overhead ([`Pacer::set_padding_overhead`]).
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
    /// Bytes a padding packet carries besides its padding (headers), counted with it.
    padding_overhead: usize,
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
            padding_overhead: 0,
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

    /// Sets the bytes each padding packet carries besides its padding (its headers): they count
    /// against the rate and the probe like the padding itself.
    pub fn set_padding_overhead(&mut self, bytes: usize) {
        self.padding_overhead = bytes;
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
        let overhead = self.padding_overhead;
        let bytes = p.remaining.saturating_sub(overhead).min(self.max_padding).max(1);
        let id = p.id;
        let wire = bytes.saturating_add(overhead);
        self.debt = self.debt.saturating_add(nanobits(wire));
        self.count_probe(wire);
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
mod tests;
