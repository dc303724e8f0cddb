//! Per-viewer resend history and NACK handling.
//!
//! The payload of a forwarded packet is shared by every viewer; a viewer's history keeps only a
//! small caller-defined record per sent packet (an `Arc` of the source packet plus the rewrite),
//! enough to rebuild a NACKed packet exactly and send it again.
//!
//! [`SendHistory`] is a fixed ring of `capacity` slots allocated once, indexed by extended
//! sequence number modulo the capacity; pushing, looking up and evicting never allocate.
//! Times are stored per slot as 32-bit milliseconds relative to the history's first push.
//! [`ResendBudget`] caps resent bytes to a share of the bytes sent over a sliding window, and
//! [`nacked_seqs`] expands a NACK's (pid, blp) pairs into the sequence numbers asked for.

use std::time::{Duration, Instant};

use str0m::rtp::rtcp::Nack;

/// Largest ring a [`SendHistory`] keeps: half the 16-bit sequence space, so a wire sequence
/// number from a NACK resolves to exactly one extended sequence number.
pub const MAX_CAPACITY: usize = 1 << 15;

/// Largest `max_age` a [`SendHistory`] honours; longer ages are clamped to this.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(3600);

/// Shortest interval between two resends of one packet, whatever RTT the caller passes.
pub const MIN_RESEND_INTERVAL: Duration = Duration::from_millis(10);

/// Most sequence numbers [`nacked_seqs`] appends for one NACK packet.
pub const MAX_NACKED_PER_PACKET: usize = 256;

/// One sent packet: the caller's record and compact bookkeeping.
struct Slot<R> {
    /// Low 32 bits of the extended sequence number (unique within the ring's window).
    seq: u32,
    /// When the packet was first sent, in ms since the history's base (wrapping).
    sent_ms: u32,
    /// When the packet was last sent or resent, in ms since the history's base (wrapping).
    last_ms: u32,
    /// How many times the packet was resent (saturating).
    resends: u16,
    /// The caller's record.
    record: R,
}

/// A viewer's sent packets of one SSRC, by extended sequence number, kept for `max_age` and at most `capacity`.
pub struct SendHistory<R> {
    /// The ring; slot `seq % capacity` holds packet `seq` while it is kept.
    slots: Box<[Option<Slot<R>>]>,
    /// How long a packet is kept after it was sent, in ms.
    max_age_ms: u32,
    /// Instant that slot times count from (the first push).
    base: Option<Instant>,
    /// Newest extended sequence number pushed, and when.
    newest: Option<(u64, Instant)>,
    /// Lowest extended sequence number that may still be held; every held packet is in
    /// `oldest..=newest`.
    oldest: u64,
    /// Number of occupied slots.
    len: usize,
}

impl<R> SendHistory<R> {
    /// A history of `capacity` slots (clamped to 1..=[`MAX_CAPACITY`]) keeping packets for `max_age` (clamped to [`MAX_AGE_LIMIT`]).
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let max_age_ms = max_age.min(MAX_AGE_LIMIT).as_millis() as u32;
        SendHistory {
            slots: (0..capacity).map(|_| None).collect(),
            max_age_ms,
            base: None,
            newest: None,
            oldest: 0,
            len: 0,
        }
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of packets held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no packet is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Newest extended sequence number pushed, if any.
    pub fn newest_seq(&self) -> Option<u64> {
        self.newest.map(|(s, _)| s)
    }

    /// Drops every packet held; the ring keeps its allocation.
    pub fn clear(&mut self) {
        if self.len > 0 {
            self.slots.iter_mut().for_each(|s| *s = None);
            self.len = 0;
        }
        if let Some((n, _)) = self.newest {
            self.oldest = n + 1;
        }
    }

    /// Records a packet sent with extended sequence number `seq` at `now` (seq strictly increasing; a gap leaves holes).
    ///
    /// A `seq` not above the newest one pushed, or `u64::MAX`, is ignored. Evicts by age and
    /// by capacity.
    pub fn push(&mut self, seq: u64, now: Instant, record: R) {
        let cap = self.slots.len() as u64;
        if seq == u64::MAX {
            return;
        }
        match self.newest {
            Some((n, _)) if seq <= n => return,
            Some(_) => {}
            None => {
                self.base = Some(now);
                self.oldest = seq;
            }
        }
        // Keep only `seq - cap + 1 ..= seq`: drop what the new packet pushes out of the window.
        let new_oldest = (seq + 1).saturating_sub(cap);
        if new_oldest > self.oldest {
            if new_oldest - self.oldest >= cap {
                self.clear();
            } else {
                for q in self.oldest..new_oldest {
                    self.remove_if(q);
                }
            }
            self.oldest = new_oldest;
        }
        let last_ms = self.ms(now);
        let slot = &mut self.slots[(seq % cap) as usize];
        debug_assert!(slot.is_none());
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some(Slot {
            seq: seq as u32,
            sent_ms: last_ms,
            last_ms,
            resends: 0,
            record,
        });
        self.newest = Some((seq, now));
        self.evict(now);
    }

    /// Drops what is older than max_age (call now and then or inside push).
    pub fn evict(&mut self, now: Instant) {
        let Some((newest, newest_at)) = self.newest else {
            return;
        };
        if self.len == 0 {
            return;
        }
        // Idle for longer than max_age: everything is stale (and 32-bit ms times may have wrapped).
        if now.saturating_duration_since(newest_at).as_millis() > self.max_age_ms as u128 {
            self.clear();
            return;
        }
        let now_ms = self.ms(now);
        let cap = self.slots.len() as u64;
        while self.oldest <= newest && self.len > 0 {
            let i = (self.oldest % cap) as usize;
            match &self.slots[i] {
                Some(s) if s.seq == self.oldest as u32 => {
                    // Age counts from the original send; a resend does not extend it.
                    if age_ms(now_ms, s.sent_ms) <= self.max_age_ms {
                        break;
                    }
                    self.slots[i] = None;
                    self.len -= 1;
                }
                _ => {}
            }
            self.oldest += 1;
        }
    }

    /// The record for a 16-bit wire sequence number from a NACK, resolved against the newest extended sequence number; None when unknown or evicted.
    ///
    /// What was evicted is evicted at the last [`push`](Self::push) or [`evict`](Self::evict);
    /// [`last_sent`](Self::last_sent) tells when it was last (re)sent.
    pub fn get(&self, seq: u16) -> Option<&R> {
        self.slot(seq).map(|(_, s)| &s.record)
    }

    /// The extended sequence number a 16-bit wire sequence number resolves to, when held.
    pub fn extended(&self, seq: u16) -> Option<u64> {
        self.slot(seq).map(|(x, _)| x)
    }

    /// When the packet with wire sequence number `seq` was last sent or resent (to the millisecond); None when not held.
    pub fn last_sent(&self, seq: u16) -> Option<Instant> {
        let (_, s) = self.slot(seq)?;
        let (_, newest_at) = self.newest?;
        let newest_ms = self.ms(newest_at);
        let d = s.last_ms.wrapping_sub(newest_ms) as i32;
        if d >= 0 {
            newest_at.checked_add(Duration::from_millis(d as u64))
        } else {
            newest_at.checked_sub(Duration::from_millis(d.unsigned_abs() as u64))
        }
    }

    /// How many times the packet with wire sequence number `seq` was resent; None when not held.
    pub fn resend_count(&self, seq: u16) -> Option<u16> {
        self.slot(seq).map(|(_, s)| s.resends)
    }

    /// Marks a resend at `now`; false when the packet was resent less than `min_interval` ago (an RTT, floor 10 ms) and should not be resent again.
    ///
    /// Also false when the packet is not held or older than max_age. The first resend is
    /// never throttled against the original send.
    pub fn mark_resent(&mut self, seq: u16, now: Instant, min_interval: Duration) -> bool {
        let Some(x) = self.extended(seq) else {
            return false;
        };
        let now_ms = self.ms(now);
        let max_age_ms = self.max_age_ms;
        let Some((_, newest_at)) = self.newest else {
            return false;
        };
        if now.saturating_duration_since(newest_at).as_millis() > max_age_ms as u128 {
            return false;
        }
        let interval_ms = min_interval
            .max(MIN_RESEND_INTERVAL)
            .min(MAX_AGE_LIMIT)
            .as_millis() as u32;
        let cap = self.slots.len() as u64;
        let Some(s) = self.slots[(x % cap) as usize].as_mut() else {
            return false;
        };
        if age_ms(now_ms, s.sent_ms) > max_age_ms {
            return false;
        }
        if s.resends > 0 && age_ms(now_ms, s.last_ms) < interval_ms {
            return false;
        }
        s.last_ms = now_ms;
        s.resends = s.resends.saturating_add(1);
        true
    }

    /// Resolves a wire sequence number to the held slot and its extended sequence number.
    fn slot(&self, seq: u16) -> Option<(u64, &Slot<R>)> {
        let (newest, _) = self.newest?;
        if self.len == 0 {
            return None;
        }
        // Only packets at or below the newest are held, so count back from the newest.
        let back = (newest as u16).wrapping_sub(seq) as u64;
        let x = newest.checked_sub(back)?;
        if x < self.oldest {
            return None;
        }
        let cap = self.slots.len() as u64;
        match &self.slots[(x % cap) as usize] {
            Some(s) if s.seq == x as u32 => Some((x, s)),
            _ => None,
        }
    }

    /// Empties the slot of packet `q` if it holds that packet.
    fn remove_if(&mut self, q: u64) {
        let cap = self.slots.len() as u64;
        let slot = &mut self.slots[(q % cap) as usize];
        if slot.as_ref().is_some_and(|s| s.seq == q as u32) {
            *slot = None;
            self.len -= 1;
        }
    }

    /// `now` as wrapping ms since the base instant.
    fn ms(&self, now: Instant) -> u32 {
        match self.base {
            Some(b) => now.saturating_duration_since(b).as_millis() as u64 as u32,
            None => 0,
        }
    }
}

/// Age in ms from `then` to `now` on the wrapping 32-bit ms clock; a time ahead of `now` is age 0.
fn age_ms(now: u32, then: u32) -> u32 {
    let d = now.wrapping_sub(then) as i32;
    if d < 0 { 0 } else { d as u32 }
}

/// Default share of sent bytes that may be resent, as in libwebrtc.
pub const DEFAULT_RESEND_RATIO: f32 = 0.15;

/// Number of buckets in the [`ResendBudget`] window.
const BUDGET_BUCKETS: usize = 10;

/// Length of one [`ResendBudget`] bucket; the window is 900 ms to 1 s.
const BUDGET_BUCKET: Duration = Duration::from_millis(100);

/// Caps resends to a share of what a viewer is sent (like libwebrtc: default 15%), over a sliding window (~500 ms–1 s).
///
/// The window is ten 100 ms buckets; each holds the bytes sent and resent in it.
#[derive(Debug, Clone)]
pub struct ResendBudget {
    /// Share of sent bytes that may be resent.
    ratio: f64,
    /// Bytes sent per bucket.
    sent: [u64; BUDGET_BUCKETS],
    /// Bytes resent per bucket.
    resent: [u64; BUDGET_BUCKETS],
    /// Sum of `sent`.
    sent_total: u64,
    /// Sum of `resent`.
    resent_total: u64,
    /// Index of the current bucket.
    head: usize,
    /// When the current bucket started.
    head_start: Option<Instant>,
}

impl Default for ResendBudget {
    fn default() -> Self {
        Self::new(DEFAULT_RESEND_RATIO)
    }
}

impl ResendBudget {
    /// A budget letting `ratio` of the bytes sent be resent (clamped to 0..=10; NaN gives the default).
    pub fn new(ratio: f32) -> Self {
        let ratio = if ratio.is_nan() {
            DEFAULT_RESEND_RATIO
        } else {
            ratio.clamp(0.0, 10.0)
        };
        ResendBudget {
            ratio: ratio as f64,
            sent: [0; BUDGET_BUCKETS],
            resent: [0; BUDGET_BUCKETS],
            sent_total: 0,
            resent_total: 0,
            head: 0,
            head_start: None,
        }
    }

    /// Counts `bytes` sent to the viewer at `now` (original sends; resends go through [`try_resend`](Self::try_resend)).
    pub fn on_sent(&mut self, bytes: usize, now: Instant) {
        self.advance(now);
        let b = bytes as u64;
        self.sent[self.head] = self.sent[self.head].saturating_add(b);
        self.sent_total = self.sent_total.saturating_add(b);
    }

    /// Counts a resend of `bytes` at `now` and returns true when it fits the budget; false (nothing counted) when it does not.
    pub fn try_resend(&mut self, bytes: usize, now: Instant) -> bool {
        self.advance(now);
        let b = bytes as u64;
        let allowed = self.sent_total as f64 * self.ratio;
        if (self.resent_total.saturating_add(b)) as f64 > allowed {
            return false;
        }
        self.resent[self.head] = self.resent[self.head].saturating_add(b);
        self.resent_total = self.resent_total.saturating_add(b);
        true
    }

    /// Bytes sent in the window as of the last call.
    pub fn sent_in_window(&self) -> u64 {
        self.sent_total
    }

    /// Bytes resent in the window as of the last call.
    pub fn resent_in_window(&self) -> u64 {
        self.resent_total
    }

    /// Moves the window so that `now` falls in the current bucket.
    fn advance(&mut self, now: Instant) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < BUDGET_BUCKET {
            return;
        }
        let steps = (elapsed.as_nanos() / BUDGET_BUCKET.as_nanos()) as u64;
        if steps >= BUDGET_BUCKETS as u64 {
            self.sent = [0; BUDGET_BUCKETS];
            self.resent = [0; BUDGET_BUCKETS];
            self.sent_total = 0;
            self.resent_total = 0;
        } else {
            for _ in 0..steps {
                self.head = (self.head + 1) % BUDGET_BUCKETS;
                self.sent_total -= self.sent[self.head];
                self.resent_total -= self.resent[self.head];
                self.sent[self.head] = 0;
                self.resent[self.head] = 0;
            }
        }
        // `steps` fits in u32 here unless the budget sat idle for over 13 years; then restart.
        self.head_start = match u32::try_from(steps) {
            Ok(s) => start.checked_add(BUDGET_BUCKET * s).or(Some(now)),
            Err(_) => Some(now),
        };
    }
}

/// Expands the NACK entries (pid, blp bitmask) of a `str0m::rtp::rtcp::Nack` into the 16-bit sequence numbers asked for, appended to `out`, at most [`MAX_NACKED_PER_PACKET`].
pub fn nacked_seqs(nack: &Nack, out: &mut Vec<u16>) {
    nacked_seqs_from_pairs(nack.reports.iter().map(|e| (e.pid, e.blp)), out);
}

/// Expands (pid, blp) pairs into the 16-bit sequence numbers asked for (pid, then pid+i+1 for each bit i of blp), appended to `out`, at most [`MAX_NACKED_PER_PACKET`].
pub fn nacked_seqs_from_pairs(pairs: impl IntoIterator<Item = (u16, u16)>, out: &mut Vec<u16>) {
    let mut n = 0;
    for (pid, blp) in pairs {
        if n >= MAX_NACKED_PER_PACKET {
            return;
        }
        out.push(pid);
        n += 1;
        let mut bits = blp;
        while bits != 0 {
            if n >= MAX_NACKED_PER_PACKET {
                return;
            }
            let i = bits.trailing_zeros() as u16;
            out.push(pid.wrapping_add(i + 1));
            n += 1;
            bits &= bits - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::rtcp::{NackEntry, ReportList};

    const MS: Duration = Duration::from_millis(1);

    fn hist(cap: usize, age_ms: u64) -> SendHistory<u64> {
        SendHistory::new(cap, Duration::from_millis(age_ms))
    }

    #[test]
    fn push_get_across_16_bit_wrap() {
        let t0 = Instant::now();
        let mut h = hist(512, 1000);
        let start = 3 * 65536 + 65536 - 100;
        for s in start..start + 200 {
            h.push(s, t0, s);
        }
        assert_eq!(h.len(), 200);
        for s in start..start + 200 {
            assert_eq!(h.get(s as u16), Some(&s), "seq {s}");
            assert_eq!(h.extended(s as u16), Some(s));
        }
        // Just before the window and after the newest: unknown.
        assert_eq!(h.get((start - 1) as u16), None);
        assert_eq!(h.get((start + 200) as u16), None);
    }

    #[test]
    fn eviction_by_capacity() {
        let t0 = Instant::now();
        let mut h = hist(100, 10_000);
        for s in 0..250u64 {
            h.push(s, t0, s);
        }
        assert_eq!(h.len(), 100);
        assert_eq!(h.get(149), None);
        assert_eq!(h.get(150), Some(&150));
        assert_eq!(h.get(249), Some(&249));
    }

    #[test]
    fn eviction_by_age() {
        let t0 = Instant::now();
        let mut h = hist(1000, 500);
        for s in 0..100u64 {
            h.push(s, t0 + MS * (s as u32 * 10), s);
        }
        // Newest at 990 ms; everything sent before 490 ms has gone.
        assert_eq!(h.get(48), None);
        assert_eq!(h.get(49), Some(&49));
        assert_eq!(h.len(), 51);
        h.evict(t0 + MS * 1200);
        // Exactly max_age old is still kept.
        assert_eq!(h.get(69), None);
        assert_eq!(h.get(70), Some(&70));
        // Idle past max_age: nothing left.
        h.evict(t0 + MS * 5000);
        assert!(h.is_empty());
        assert_eq!(h.get(99), None);
        // Pushing again works and keeps the seq order.
        h.push(100, t0 + MS * 5001, 100);
        assert_eq!(h.get(100), Some(&100));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn gaps_leave_holes() {
        let t0 = Instant::now();
        let mut h = hist(64, 10_000);
        h.push(10, t0, 10);
        h.push(12, t0, 12);
        h.push(20, t0, 20);
        assert_eq!(h.len(), 3);
        assert_eq!(h.get(11), None);
        assert_eq!(h.get(12), Some(&12));
        // A gap larger than the ring drops everything before it.
        h.push(1000, t0, 1000);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get(20), None);
        assert_eq!(h.get(1000), Some(&1000));
        // A gap partly inside the ring keeps what is still in the window.
        h.push(1030, t0, 1030);
        h.push(1070, t0, 1070);
        assert_eq!(h.get(1000), None);
        assert_eq!(h.get(1030), Some(&1030));
        assert_eq!(h.len(), 2);
        // Not strictly increasing: ignored.
        h.push(1070, t0, 0);
        h.push(5, t0, 0);
        assert_eq!(h.get(1070), Some(&1070));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn never_sent_or_evicted_is_none() {
        let t0 = Instant::now();
        let mut h = hist(16, 100);
        assert_eq!(h.get(0), None);
        assert!(!h.mark_resent(0, t0, MS));
        for s in 1000..1010u64 {
            h.push(s, t0, s);
        }
        for garbage in [0u16, 999, 1010, 40_000, u16::MAX] {
            assert_eq!(h.get(garbage), None);
            assert!(!h.mark_resent(garbage, t0, MS));
        }
        h.evict(t0 + MS * 101);
        assert_eq!(h.get(1005), None);
    }

    #[test]
    fn mark_resent_throttles() {
        let t0 = Instant::now();
        let mut h = hist(64, 1000);
        h.push(7, t0, 7);
        let rtt = MS * 50;
        // The first resend is not held back by the original send.
        assert!(h.mark_resent(7, t0 + MS, rtt));
        assert_eq!(h.resend_count(7), Some(1));
        assert_eq!(h.last_sent(7), Some(t0 + MS));
        assert!(!h.mark_resent(7, t0 + MS * 30, rtt));
        assert!(!h.mark_resent(7, t0 + MS * 50, rtt));
        assert!(h.mark_resent(7, t0 + MS * 51, rtt));
        assert_eq!(h.resend_count(7), Some(2));
        // The floor applies to a tiny RTT.
        assert!(!h.mark_resent(7, t0 + MS * 55, Duration::ZERO));
        assert!(h.mark_resent(7, t0 + MS * 61, Duration::ZERO));
        // Past max_age since the original send: no more resends, however recent the last one.
        assert!(!h.mark_resent(7, t0 + MS * 1001, rtt));
    }

    #[test]
    fn memory_bounded_after_a_million_pushes() {
        let t0 = Instant::now();
        let mut h = hist(1024, 1000);
        for s in 0..1_000_000u64 {
            h.push(s, t0 + Duration::from_micros(s * 5), s);
            debug_assert!(h.len() <= 1024);
        }
        assert!(h.len() <= h.capacity());
        assert_eq!(h.capacity(), 1024);
        assert_eq!(h.get(999_999u64 as u16), Some(&999_999));
        // Capacity above the limit is clamped.
        assert_eq!(hist(1 << 20, 1).capacity(), MAX_CAPACITY);
        assert_eq!(hist(0, 1).capacity(), 1);
    }

    #[test]
    fn resend_budget_caps_at_ratio() {
        let t0 = Instant::now();
        let mut b = ResendBudget::new(0.15);
        // Nothing sent: nothing to resend.
        assert!(!b.try_resend(100, t0));
        // 1 s of 100 kB/s in 1 kB packets.
        for i in 0..100u32 {
            b.on_sent(1000, t0 + MS * (i * 10));
        }
        let now = t0 + MS * 995;
        let mut resent = 0;
        while b.try_resend(1000, now) {
            resent += 1000;
        }
        let sent = b.sent_in_window();
        assert!(resent as f64 <= 0.15 * sent as f64);
        assert!(resent as f64 > 0.15 * sent as f64 - 1000.0);
        assert_eq!(b.resent_in_window(), resent);
        // Smaller resends may still fit.
        assert!(!b.try_resend(1000, now));
        // Once the window slides past the burst, with sending going on, resends fit again.
        for i in 100..200u32 {
            b.on_sent(1000, t0 + MS * (i * 10));
        }
        assert!(b.try_resend(1000, t0 + MS * 1995));
        // After a long idle gap the window is empty again.
        assert!(!b.try_resend(1, t0 + Duration::from_secs(3600)));
        assert_eq!(b.sent_in_window(), 0);
        // Garbage ratios do not panic.
        let mut z = ResendBudget::new(f32::NAN);
        z.on_sent(1000, t0);
        assert!(z.try_resend(150, t0));
        let mut z = ResendBudget::new(-1.0);
        z.on_sent(1000, t0);
        assert!(!z.try_resend(1, t0));
    }

    #[test]
    fn nacked_seqs_expands_pid_and_blp() {
        let nack = Nack {
            sender_ssrc: 1.into(),
            ssrc: 2.into(),
            reports: ReportList::from(NackEntry {
                pid: 65534,
                blp: 0b1000_0000_0000_0101,
            }),
        };
        let mut out = vec![];
        nacked_seqs(&nack, &mut out);
        assert_eq!(out, vec![65534, 65535, 1, 14]);

        // Several entries from the wire, through str0m's parser.
        let mut buf = vec![0, 0, 0, 1, 0, 0, 0, 2];
        for (pid, blp) in [(100u16, 0u16), (200, 0b11)] {
            buf.extend_from_slice(&pid.to_be_bytes());
            buf.extend_from_slice(&blp.to_be_bytes());
        }
        let nack = Nack::try_from(&buf[..]).unwrap();
        out.clear();
        nacked_seqs(&nack, &mut out);
        assert_eq!(out, vec![100, 200, 201, 202]);
    }

    #[test]
    fn nacked_seqs_bounds_garbage() {
        // 31 entries all asking for 17 packets: bounded.
        let mut buf = vec![0u8; 8];
        for i in 0..31u16 {
            buf.extend_from_slice(&i.wrapping_mul(9999).to_be_bytes());
            buf.extend_from_slice(&u16::MAX.to_be_bytes());
        }
        let nack = Nack::try_from(&buf[..]).unwrap();
        let mut out = vec![];
        nacked_seqs(&nack, &mut out);
        assert_eq!(out.len(), MAX_NACKED_PER_PACKET);
        // Appends to what is there.
        let mut out = vec![1, 2, 3];
        nacked_seqs_from_pairs([(10, 0)], &mut out);
        assert_eq!(out, vec![1, 2, 3, 10]);
        // An endless iterator stops at the bound too.
        let mut out = vec![];
        nacked_seqs_from_pairs(std::iter::repeat((5u16, 0u16)), &mut out);
        assert_eq!(out.len(), MAX_NACKED_PER_PACKET);
    }

    #[test]
    fn record_is_compact() {
        // The bookkeeping per slot stays small next to the caller's record.
        assert!(std::mem::size_of::<Option<Slot<std::sync::Arc<u8>>>>() <= 32);
    }
}
