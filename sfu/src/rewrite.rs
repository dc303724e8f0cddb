//! Per-viewer RTP rewriting that hides source switches (simulcast layer changes, publisher
//! restarts) from the receiver.
//!
//! [`SeqTsRewriter`] keeps sequence numbers and timestamps continuous; [`Vp8Rewriter`] and
//! [`vp8_patch`] do the same for the VP8 payload descriptor's PictureID and TL0PICIDX.
//! All of it is allocation-free and a handful of integer operations per packet.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

use crate::codec::vp8;

/// Largest output sequence number `new()` starts from (exclusive), so the SRTP rollover counter starts at 0.
const MAX_RANDOM_START_SEQ: u64 = 1 << 15;

/// Keeps one outgoing track's sequence numbers and timestamps continuous across source switches.
#[derive(Clone, Debug)]
pub struct SeqTsRewriter {
    /// RTP clock rate in Hz.
    clock_rate: u32,
    /// Output sequence number of the very first packet.
    first_seq: u64,
    /// Output timestamp of the very first packet.
    first_ts: u32,
    /// The next packet starts a new source.
    rebase: bool,
    /// Source sequence number the current source was re-based on.
    base_src_seq: u64,
    /// Output sequence number given to `base_src_seq`.
    base_out_seq: u64,
    /// Added (wrapping) to source timestamps of the current source.
    ts_offset: u32,
    /// Highest output sequence number before the current source started; packets at or below are dropped.
    floor: Option<u64>,
    /// Highest output sequence number so far.
    highest_seq: Option<u64>,
    /// Output timestamp of the packet with the highest output sequence number.
    highest_ts: u32,
    /// Arrival time of the packet with the highest output sequence number.
    highest_arrival: Option<Instant>,
}

impl SeqTsRewriter {
    /// `clock_rate` in Hz (90000 video, 48000 audio). Output seq starts at a random value below 2^15 (so the SRTP rollover counter starts at 0) and output ts at a random u32.
    pub fn new(clock_rate: u32) -> Self {
        let seq = rand::random_range(0..MAX_RANDOM_START_SEQ);
        Self::with_start(clock_rate, seq, rand::random())
    }

    /// Like new() but with fixed starting output values (for tests and benches).
    pub fn with_start(clock_rate: u32, first_seq: u64, first_ts: u32) -> Self {
        Self {
            clock_rate,
            first_seq,
            first_ts,
            rebase: true,
            base_src_seq: 0,
            base_out_seq: first_seq,
            ts_offset: 0,
            floor: None,
            highest_seq: None,
            highest_ts: first_ts,
            highest_arrival: None,
        }
    }

    /// The next rewritten packet comes from a different source (layer switch or publisher restart): re-base on it.
    pub fn switch_source(&mut self) {
        self.rebase = true;
    }

    /// `elapsed` in RTP clock ticks, modulo 2^32 like the timestamps themselves.
    fn ticks(&self, elapsed: Duration) -> u32 {
        let ticks = elapsed.as_nanos().saturating_mul(u128::from(self.clock_rate)) / 1_000_000_000;
        // Truncation is the intended modulo-2^32 wrap.
        ticks as u32
    }

    /// Rewrites one source packet. `src_seq` is the source's extended (u64, never wraps) sequence number, `src_ts` its RTP timestamp (u32, wraps), `arrival` when it arrived.
    ///
    /// Returns (output extended seq u64, output ts u32), or None when the packet must be dropped
    /// (it precedes the current source's base after a switch, or is a duplicate older than what a
    /// switch started from).
    pub fn rewrite(&mut self, src_seq: u64, src_ts: u32, arrival: Instant) -> Option<(u64, u32)> {
        let (out_seq, out_ts) = if self.rebase {
            let (out_seq, out_ts) = match (self.highest_seq, self.highest_arrival) {
                (Some(highest), Some(last_arrival)) => {
                    let elapsed = arrival.saturating_duration_since(last_arrival);
                    let advance = self.ticks(elapsed).max(1);
                    (highest.checked_add(1)?, self.highest_ts.wrapping_add(advance))
                }
                _ => (self.first_seq, self.first_ts),
            };
            self.rebase = false;
            self.floor = self.highest_seq;
            self.base_src_seq = src_seq;
            self.base_out_seq = out_seq;
            self.ts_offset = out_ts.wrapping_sub(src_ts);
            (out_seq, out_ts)
        } else {
            let out_seq = if src_seq >= self.base_src_seq {
                self.base_out_seq.checked_add(src_seq - self.base_src_seq)?
            } else {
                self.base_out_seq.checked_sub(self.base_src_seq - src_seq)?
            };
            if self.floor.is_some_and(|floor| out_seq <= floor) {
                return None;
            }
            (out_seq, src_ts.wrapping_add(self.ts_offset))
        };
        if self.highest_seq.is_none_or(|highest| out_seq > highest) {
            self.highest_seq = Some(out_seq);
            self.highest_ts = out_ts;
            self.highest_arrival = Some(arrival);
        }
        Some((out_seq, out_ts))
    }

    /// Highest output sequence number sent so far.
    pub fn last_seq(&self) -> Option<u64> {
        self.highest_seq
    }
}

/// True when `a` is newer than `b` in a circular space of `mask + 1` values.
fn is_newer(a: u16, b: u16, mask: u16) -> bool {
    let diff = a.wrapping_sub(b) & mask;
    diff != 0 && diff <= mask / 2
}

/// Keeps VP8 picture ids and TL0PICIDX continuous across source switches.
#[derive(Clone, Debug)]
pub struct Vp8Rewriter {
    /// The next packet carrying a PictureID re-bases it.
    rebase_picture_id: bool,
    /// The next packet carrying a TL0PICIDX re-bases it.
    rebase_tl0: bool,
    /// Added to source PictureIDs (modulo 2^15, or 2^7 for 7-bit ids).
    picture_id_offset: u16,
    /// Newest output PictureID.
    highest_picture_id: Option<u16>,
    /// Added (wrapping) to source TL0PICIDX values.
    tl0_offset: u8,
    /// Newest output TL0PICIDX.
    highest_tl0: Option<u8>,
}

impl Default for Vp8Rewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Vp8Rewriter {
    /// Creates a rewriter; the first source passes through unchanged.
    pub fn new() -> Self {
        Self {
            rebase_picture_id: true,
            rebase_tl0: true,
            picture_id_offset: 0,
            highest_picture_id: None,
            tl0_offset: 0,
            highest_tl0: None,
        }
    }

    /// The next rewritten packet comes from a different source: re-base both fields on it.
    pub fn switch_source(&mut self) {
        self.rebase_picture_id = true;
        self.rebase_tl0 = true;
    }

    /// Returns the output (picture_id, tl0_pic_idx) for a packet with these source values.
    ///
    /// At a switch the PictureID continues from the newest output + 1 (15-bit wrap, or 7-bit when
    /// `!picture_id_15bit`); later packets keep the source's spacing, so packets of one frame share
    /// an output id. TL0PICIDX likewise with an 8-bit wrap. A field absent from the packet yields
    /// None and stays pending re-basing until a packet carries it.
    pub fn rewrite(&mut self, info: &vp8::Descriptor) -> (Option<u16>, Option<u8>) {
        let picture_id = info.picture_id.map(|src| {
            let mask: u16 = if info.picture_id_15bit { 0x7fff } else { 0x7f };
            let src = src & mask;
            if self.rebase_picture_id {
                let out = self.highest_picture_id.map_or(src, |h| h.wrapping_add(1) & mask);
                self.picture_id_offset = out.wrapping_sub(src) & 0x7fff;
                self.rebase_picture_id = false;
            }
            let out = src.wrapping_add(self.picture_id_offset) & mask;
            if self.highest_picture_id.is_none_or(|h| is_newer(out, h & mask, mask)) {
                self.highest_picture_id = Some(out);
            }
            out
        });
        let tl0_pic_idx = info.tl0_pic_idx.map(|src| {
            if self.rebase_tl0 {
                let out = self.highest_tl0.map_or(src, |h| h.wrapping_add(1));
                self.tl0_offset = out.wrapping_sub(src);
                self.rebase_tl0 = false;
            }
            let out = src.wrapping_add(self.tl0_offset);
            if self.highest_tl0.is_none_or(|h| is_newer(out.into(), h.into(), 0xff)) {
                self.highest_tl0 = Some(out);
            }
            out
        });
        (picture_id, tl0_pic_idx)
    }
}

/// One str0m descriptor per VP8 descriptor layout (PictureID absent, 7-bit or 15-bit; TL0PICIDX
/// absent or present), each parsed once per process from a template payload.
///
/// str0m builds its zero-copy [`Vp8Patch`] only from a descriptor it parsed itself, and a
/// PictureID / TL0PICIDX patch depends on nothing but the field offsets and the PictureID width:
/// a template of the same layout yields the patch str0m would build from the packet itself (the
/// `patch_from_layout_equals_str0m_parse` test checks every layout on random payloads). So the
/// packet is parsed once, by [`vp8::Descriptor::parse`], and no viewer parses it again.
static LAYOUTS: LazyLock<[Option<Vp8Descriptor>; 6]> = LazyLock::new(|| {
    let templates: [&[u8]; 6] = [
        &[0x80, 0x00, 0x00],
        &[0x80, 0x60, 0x00, 0x00, 0x00],
        &[0x80, 0x80, 0x00, 0x00],
        &[0x80, 0xe0, 0x00, 0x00, 0x00, 0x00],
        &[0x80, 0x80, 0x80, 0x00, 0x00],
        &[0x80, 0xe0, 0x80, 0x00, 0x00, 0x00, 0x00],
    ];
    templates.map(|t| Vp8Descriptor::parse(t).ok())
});

/// Index into [`LAYOUTS`] of a descriptor's layout.
fn layout(d: &vp8::Descriptor) -> usize {
    let pid = match (d.picture_id, d.picture_id_15bit) {
        (None, _) => 0,
        (Some(_), false) => 1,
        (Some(_), true) => 2,
    };
    pid * 2 + usize::from(d.tl0_pic_idx.is_some())
}

/// The str0m patch that writes these output values into the packet whose descriptor is `desc`
/// (None if nothing changes or the descriptor lacks the fields). Allocation-free and parse-free:
/// the per-viewer half of the VP8 rewrite.
#[inline]
pub fn vp8_patch_for(desc: &vp8::Descriptor, picture_id: Option<u16>, tl0_pic_idx: Option<u8>) -> Option<Vp8Patch> {
    let rw = desc.rewrite(picture_id, tl0_pic_idx)?;
    let mut builder = LAYOUTS.get(layout(desc))?.as_ref()?.patch();
    if let Some(pid) = rw.picture_id {
        builder = builder.picture_id(pid);
    }
    if let Some(tl0) = rw.tl0_pic_idx {
        builder = builder.tl0_pic_idx(tl0);
    }
    builder.build().ok()
}

/// Like [`vp8_patch_for`], parsing the descriptor from `payload` first (tests and fuzzing; the
/// forwarding path parses once per packet and calls [`vp8_patch_for`]).
pub fn vp8_patch(payload: &[u8], picture_id: Option<u16>, tl0_pic_idx: Option<u8>) -> Option<Vp8Patch> {
    vp8_patch_for(&vp8::Descriptor::parse(payload).ok()?, picture_id, tl0_pic_idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn gaps_reordering_and_switch_continuity() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(90_000, 1000, 5000);
        assert_eq!(r.last_seq(), None);
        assert_eq!(r.rewrite(50_000, 123_456, t0), Some((1000, 5000)));
        // A gap stays a gap (so the viewer can NACK it), reordering stays reordering.
        assert_eq!(r.rewrite(50_003, 126_456, t0 + ms(33)), Some((1003, 8000)));
        assert_eq!(r.rewrite(50_001, 123_456, t0 + ms(34)), Some((1001, 5000)));
        // Within the first source a packet before the first one still maps below it.
        assert_eq!(r.rewrite(49_999, 120_456, t0 + ms(35)), Some((999, 2000)));
        assert_eq!(r.last_seq(), Some(1003));
        // Another source with unrelated numbering, 50 ms after the highest packet's arrival.
        r.switch_source();
        assert_eq!(r.rewrite(9000, 777, t0 + ms(83)), Some((1004, 8000 + 4500)));
        assert_eq!(r.rewrite(9001, 777 + 3000, t0 + ms(116)), Some((1005, 15_500)));
        // Duplicates of the new source are still forwarded; anything before its base is not.
        assert_eq!(r.rewrite(9000, 777, t0 + ms(117)), Some((1004, 12_500)));
        for src in [8999, 8000, 0] {
            assert_eq!(r.rewrite(src, 0, t0 + ms(118)), None);
        }
        assert_eq!(r.last_seq(), Some(1005));
    }

    #[test]
    fn switch_timestamp_advance() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut r = SeqTsRewriter::with_start(90_000, 0, 100);
        r.rewrite(10, 0, t0);
        r.switch_source();
        // At least one tick, also when the arrival is not later than the last forwarded one.
        assert_eq!(r.rewrite(500, 42, t0), Some((1, 101)));
        r.switch_source();
        assert_eq!(r.rewrite(70, 42, t0 - ms(500)), Some((2, 102)));
        // A day-long pause wraps the timestamp modulo 2^32.
        r.switch_source();
        let day = (86_400u64 * 90_000 % (1 << 32)) as u32;
        let later = t0 - ms(500) + Duration::from_secs(86_400);
        assert_eq!(r.rewrite(0, 0, later), Some((3, 102u32.wrapping_add(day))));
        // Audio clock: 20 ms is 960 ticks at 48 kHz.
        let mut r = SeqTsRewriter::with_start(48_000, 7, 0);
        r.rewrite(1, 960, t0);
        r.switch_source();
        assert_eq!(r.rewrite(1, 0, t0 + ms(20)), Some((8, 960)));
        assert_eq!(r.rewrite(2, 960, t0 + ms(40)), Some((9, 1920)));
    }

    #[test]
    fn sequence_numbers_cross_u16_boundaries() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(90_000, 65_530, 0);
        // The output's low 16 bits wrap while the u64 keeps growing, with switches just before
        // and at the wrap; the source's (extended) numbers cross 65535 -> 65536 too.
        for i in 0..20u64 {
            if i == 5 || i == 6 {
                r.switch_source();
            }
            let src = if i < 6 { 65_530 + i } else { (3 << 16) + 65_530 + i };
            assert_eq!(r.rewrite(src, 0, t0 + ms(i)).map(|o| o.0), Some(65_530 + i));
        }
        assert_eq!(r.last_seq().map(|s| (s, s as u16)), Some((65_549, 13)));
    }

    #[test]
    fn timestamp_wraps_on_source_and_output() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(90_000, 0, u32::MAX - 4000);
        let src_start = u32::MAX - 7000;
        let mut prev_ts = None;
        for i in 0..10u32 {
            let src_ts = src_start.wrapping_add(3000 * i);
            let (_, ts) = r.rewrite(u64::from(i), src_ts, t0 + ms(u64::from(i) * 33)).expect("fwd");
            assert_eq!(ts, (u32::MAX - 4000).wrapping_add(3000 * i));
            if let Some(p) = prev_ts {
                assert_eq!(ts.wrapping_sub(p), 3000);
            }
            prev_ts = Some(ts);
        }
        // Switch onto a source whose timestamps are just below the wrap, 40 ms later.
        r.switch_source();
        let last = prev_ts.expect("some");
        let (_, ts) = r.rewrite(77, u32::MAX, t0 + ms(9 * 33 + 40)).expect("fwd");
        assert_eq!(ts, last.wrapping_add(3600));
        let (_, ts2) = r.rewrite(78, 2999, t0 + ms(9 * 33 + 73)).expect("fwd");
        assert_eq!(ts2.wrapping_sub(ts), 3000);
    }

    #[test]
    fn switching_back_and_forth_many_times() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(90_000, 30_000, 1_000_000);
        // Two sources with their own numbering, both running; a frame of two packets every 33 ms.
        let mut src = [(10_000u64, 0u32), (60_000u64, 4_000_000_000u32)];
        let mut last: Option<(u64, u32)> = None;
        let mut now = t0;
        for round in 0..2000 {
            r.switch_source();
            for _frame in 0..3 {
                now += ms(33);
                for s in &mut src {
                    s.1 = s.1.wrapping_add(2970);
                }
                for packet in 0..2 {
                    for s in &mut src {
                        s.0 += 1;
                    }
                    let (seq_in, ts_in) = src[round % 2];
                    let (seq, ts) = r.rewrite(seq_in, ts_in, now).expect("forwarded");
                    if let Some((prev_seq, prev_ts)) = last {
                        assert_eq!(seq, prev_seq + 1, "no seq gap, round {round}");
                        // 33 ms of 90 kHz clock per frame, the same timestamp within a frame.
                        let step = if packet == 0 { 2970 } else { 0 };
                        assert_eq!(ts.wrapping_sub(prev_ts), step, "round {round}");
                    }
                    last = Some((seq, ts));
                }
            }
        }
        assert_eq!(r.last_seq(), Some(30_000 + 2000 * 6 - 1));
    }

    #[test]
    fn new_starts_below_2_pow_15() {
        let now = Instant::now();
        let starts: Vec<_> = (0..200).filter_map(|_| SeqTsRewriter::new(90_000).rewrite(12_345_678, 99, now)).collect();
        assert!(starts.iter().all(|&(seq, _)| seq < 1 << 15));
        let mut ts: Vec<_> = starts.iter().map(|s| s.1).collect();
        ts.sort_unstable();
        ts.dedup();
        assert!(ts.len() > 100, "timestamps are random");
    }

    #[test]
    fn extreme_values_never_panic() {
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(u32::MAX, u64::MAX - 1, u32::MAX);
        assert_eq!(r.rewrite(u64::MAX, u32::MAX, t0), Some((u64::MAX - 1, u32::MAX)));
        assert_eq!(r.rewrite(0, 0, t0), None);
        assert!(r.rewrite(u64::MAX, 0, t0).is_some());
        r.switch_source();
        // u64::MAX - 1 + 1 fits; the next switch would overflow and is dropped.
        assert_eq!(r.rewrite(5, 5, t0 + Duration::from_secs(100_000)).map(|o| o.0), Some(u64::MAX));
        r.switch_source();
        assert_eq!(r.rewrite(6, 6, t0), None);

        let mut r = SeqTsRewriter::with_start(0, 0, 0);
        r.rewrite(3, 3, t0);
        r.switch_source();
        assert_eq!(r.rewrite(3, 3, t0 + ms(100)), Some((1, 1)));
    }

    #[test]
    fn random_sequences_keep_invariants() {
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut r = SeqTsRewriter::with_start(90_000, 100, 0);
        let mut highest = None::<u64>;
        let mut floor = None::<u64>;
        for i in 0..20_000u64 {
            if rng.random_bool(0.01) {
                r.switch_source();
                floor = highest;
            }
            let src = rng.random_range(0..1_000u64) + (i / 10);
            let now = t0 + ms(rng.random_range(0..100_000));
            if let Some((seq, _)) = r.rewrite(src, rng.random(), now) {
                assert!(floor.is_none_or(|f| seq > f));
                highest = highest.max(Some(seq));
            }
            assert_eq!(r.last_seq(), highest);
        }
    }

    /// Descriptor fields with a 15-bit PictureID.
    fn vp8(picture_id: Option<u16>, tl0: Option<u8>) -> vp8::Descriptor {
        vp8::Descriptor { picture_id, picture_id_15bit: true, tl0_pic_idx: tl0, start_of_partition: true, ..Default::default() }
    }

    #[test]
    fn vp8_switch_continues_ids() {
        let mut r = Vp8Rewriter::default();
        // The first source passes through unchanged.
        for pid in [100u16, 101, 103, 102] {
            assert_eq!(r.rewrite(&vp8(Some(pid), Some(pid as u8))), (Some(pid), Some(pid as u8)));
        }
        assert_eq!(r.rewrite(&vp8(None, None)), (None, None));
        r.switch_source();
        // Continues from the newest output (103), not the last one seen (102).
        assert_eq!(r.rewrite(&vp8(Some(3000), Some(200))), (Some(104), Some(104)));
        // Same frame keeps the same id; later frames keep the source's spacing.
        assert_eq!(r.rewrite(&vp8(Some(3000), Some(200))), (Some(104), Some(104)));
        assert_eq!(r.rewrite(&vp8(Some(3001), Some(200))), (Some(105), Some(104)));
        assert_eq!(r.rewrite(&vp8(Some(3003), Some(201))), (Some(107), Some(105)));
        r.switch_source();
        // A field the packet lacks stays pending until a packet carries it.
        assert_eq!(r.rewrite(&vp8(None, None)), (None, None));
        assert_eq!(r.rewrite(&vp8(Some(5), None)), (Some(108), None));
        assert_eq!(r.rewrite(&vp8(Some(6), Some(0))), (Some(109), Some(106)));
    }

    #[test]
    fn vp8_ids_wrap() {
        let mut r = Vp8Rewriter::new();
        r.rewrite(&vp8(Some(0x7fff), Some(255)));
        r.switch_source();
        assert_eq!(r.rewrite(&vp8(Some(10), Some(10))), (Some(0), Some(0)));
        assert_eq!(r.rewrite(&vp8(Some(11), Some(11))), (Some(1), Some(1)));
        // Wrapping within a source.
        let mut r = Vp8Rewriter::new();
        r.rewrite(&vp8(Some(0x7ffe), Some(254)));
        r.switch_source();
        assert_eq!(r.rewrite(&vp8(Some(0x7ffe), Some(254))), (Some(0x7fff), Some(255)));
        assert_eq!(r.rewrite(&vp8(Some(0x7fff), Some(255))), (Some(0), Some(0)));
        assert_eq!(r.rewrite(&vp8(Some(0), Some(0))), (Some(1), Some(1)));
        r.switch_source();
        assert_eq!(r.rewrite(&vp8(Some(500), None)), (Some(2), None));
        // 7-bit ids wrap at 128.
        let short = |pid| vp8::Descriptor { picture_id: Some(pid), ..vp8::Descriptor::default() };
        let mut r = Vp8Rewriter::new();
        r.rewrite(&short(126));
        r.switch_source();
        assert_eq!(r.rewrite(&short(40)).0, Some(127));
        assert_eq!(r.rewrite(&short(41)).0, Some(0));
        r.switch_source();
        assert_eq!(r.rewrite(&short(7)).0, Some(1));
    }

    /// Payload with X, S; I, L, T; 15-bit PictureID 0x1234; TL0PICIDX 0x56; TID; VP8 data.
    const DESC_FULL: [u8; 8] = [0x90, 0xe0, 0x92, 0x34, 0x56, 0x40, 0x9d, 0x01];

    #[test]
    fn vp8_patch_matches_str0m_builder() {
        let d = Vp8Descriptor::parse(&DESC_FULL).expect("valid");
        let expected = d.patch().picture_id(1).tl0_pic_idx(7).build().expect("valid");
        let patch = vp8_patch(&DESC_FULL, Some(1), Some(7)).expect("patch");
        assert_eq!(patch, expected);
        // The 15-bit form keeps the M bit: bytes 2..=4 become 80 01 07.
        let dbg = format!("{patch:?}");
        assert!(dbg.contains("offsets: [2, 3, 4, 0]") && dbg.contains("bytes: [128, 1, 7, 0]"), "{dbg}");

        let only_tl0 = d.patch().tl0_pic_idx(7).build().expect("valid");
        assert_eq!(vp8_patch(&DESC_FULL, Some(0x1234), Some(7)), Some(only_tl0));
        assert_eq!(vp8_patch(&DESC_FULL, None, Some(7)), Some(only_tl0));
        let only_pid = d.patch().picture_id(0x7fff).build().expect("valid");
        assert_eq!(vp8_patch(&DESC_FULL, Some(0xffff), None), Some(only_pid));
    }

    #[test]
    fn vp8_patch_7bit_picture_id() {
        let p = [0x90, 0x80, 0x05, 0x9d];
        let expected = Vp8Descriptor::parse(&p).expect("valid").patch().picture_id(0x7f).build().expect("valid");
        // Values are cut to 7 bits instead of failing; the absent TL0PICIDX is skipped.
        assert_eq!(vp8_patch(&p, Some(0x17f), None), Some(expected));
        assert_eq!(vp8_patch(&p, Some(0x17f), Some(9)), Some(expected));
        assert_eq!(vp8_patch(&p, Some(0x105), None), None);
    }

    #[test]
    fn vp8_patch_nothing_to_do() {
        assert_eq!(vp8_patch(&DESC_FULL, None, None), None);
        assert_eq!(vp8_patch(&DESC_FULL, Some(0x1234), Some(0x56)), None);
        assert_eq!(vp8_patch(&[0x10, 0x9d], Some(5), Some(5)), None, "no extension fields");
        // Malformed or short descriptors, including random ones.
        assert_eq!(vp8_patch(&[], Some(5), Some(5)), None);
        assert_eq!(vp8_patch(&DESC_FULL[..5], Some(5), Some(5)), None);
        assert_eq!(vp8_patch(&[0x90, 0x40, 0x01, 0x00], Some(5), Some(5)), None);
        let mut rng = StdRng::seed_from_u64(99);
        for _ in 0..10_000 {
            let mut buf = [0u8; 24];
            let len = rng.random_range(0..24usize);
            rng.fill(&mut buf[..len]);
            buf[0] |= 0x80;
            let _ = vp8_patch(&buf[..len], Some(rng.random()), Some(rng.random()));
        }
    }

    #[test]
    fn patch_from_layout_equals_str0m_parse() {
        // Every layout (PictureID none / 7 / 15 bits, TL0PICIDX with or without, K, no X), on
        // random payloads and values: the patch built from the layout template is the patch
        // str0m builds from its own parse of the packet.
        let mut rng = StdRng::seed_from_u64(0x1a_7e);
        let (mut checked, mut layouts) = (0, [0u32; 6]);
        for _ in 0..50_000 {
            let mut buf = [0u8; 16];
            let len = rng.random_range(1..16usize);
            rng.fill(&mut buf[..len]);
            buf[0] |= 0x80;
            let p = &buf[..len];
            let (Ok(ours), Ok(theirs)) = (vp8::Descriptor::parse(p), Vp8Descriptor::parse(p)) else { continue };
            let (pid, tl0) = (rng.random::<u16>(), rng.random::<u8>());
            let (pid, tl0) = (rng.random_bool(0.8).then_some(pid), rng.random_bool(0.8).then_some(tl0));
            let expected = ours.rewrite(pid, tl0).and_then(|rw| {
                let mut b = theirs.patch();
                if let Some(v) = rw.picture_id {
                    b = b.picture_id(v);
                }
                if let Some(v) = rw.tl0_pic_idx {
                    b = b.tl0_pic_idx(v);
                }
                b.build().ok()
            });
            assert_eq!(vp8_patch_for(&ours, pid, tl0), expected, "{p:02x?}");
            checked += usize::from(expected.is_some());
            layouts[layout(&ours)] += 1;
        }
        assert!(checked > 10_000, "{checked}");
        assert!(layouts.iter().all(|&n| n > 100), "{layouts:?}");
    }
}
