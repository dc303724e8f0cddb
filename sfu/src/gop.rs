//! The latest keyframe of each layer and the frames since it, so that a joining viewer starts at
//! once instead of asking the publisher for a keyframe and waiting for it.
//!
//! A [`GopCache`] keeps, per simulcast layer, the packets from the last keyframe start on (shared
//! `Arc`s, nothing copied). A viewer that has not had a frame yet starts from it when the cached
//! keyframe is recent and the packets since it are few: everything cached is then sent to that
//! viewer, paced by its session like any other packet, with the timestamps of the frames before
//! the newest squeezed to one tick apart ([`ReplayPlan`]), so the viewer's player shows the
//! newest frame at once and plays live from there instead of running the cached frames' age
//! behind. A cache that is too old or too big is not used: the viewer asks for a keyframe as
//! before. Everything here is sans-IO: packets and instants in, decisions out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layer::MAX_LAYERS;
use crate::packet::{MediaPacket, TrackKind};

/// Packets a layer's cache holds at most; past it the cache is dropped until the next keyframe.
pub const MAX_CACHED_PACKETS: usize = 512;
/// Payload bytes a layer's cache holds at most; past it the cache is dropped until the next
/// keyframe. About 1.3 s of a 1.5 Mbit/s layer; a viewer starts from much less
/// ([`MAX_REPLAY_BYTES`]), so this bound only caps memory.
pub const MAX_CACHED_BYTES: usize = 256 * 1024;
/// A viewer starts from the cache only if the cached keyframe arrived at most this long ago: the
/// cached frames are sent in a burst, and an older start would show a stale picture for as long.
pub const MAX_REPLAY_AGE: Duration = Duration::from_millis(600);
/// A viewer starts from the cache only if it holds at most this many payload bytes: the burst
/// must leave a new viewer's paced send queue within its 300 ms bound at the first estimate.
pub const MAX_REPLAY_BYTES: usize = 48 * 1024;

/// One layer's packets since its latest keyframe.
#[derive(Debug, Default)]
struct LayerGop {
    /// The packets, in arrival order, from a keyframe start on; empty when there is none.
    packets: Vec<Arc<MediaPacket>>,
    /// Their payload bytes.
    bytes: usize,
    /// When the keyframe's first packet arrived.
    keyframe_at: Option<Instant>,
    /// The publisher generation the packets belong to.
    generation: u32,
}

impl LayerGop {
    fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.keyframe_at = None;
    }
}

/// Why the cache cannot start a viewer (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoStart {
    /// No keyframe of the layer is cached (none yet, or the cache overflowed since).
    Empty,
    /// The cached keyframe is older than [`MAX_REPLAY_AGE`].
    TooOld,
    /// The packets since the keyframe exceed [`MAX_REPLAY_BYTES`].
    TooBig,
    /// The cached keyframe is another source's (the stream's backup or primary took over, or
    /// its publisher restarted, and the new source has sent no keyframe yet).
    OtherSource,
}

/// Per-layer keyframe caches of one stream.
#[derive(Debug, Default)]
pub struct GopCache {
    layers: [LayerGop; MAX_LAYERS],
}

impl GopCache {
    /// Records one packet of the stream (audio is ignored: a viewer's audio starts live).
    pub fn push(&mut self, pkt: &Arc<MediaPacket>) {
        if pkt.kind != TrackKind::Video {
            return;
        }
        let Some(gop) = self.layers.get_mut(usize::from(pkt.layer)) else { return };
        if pkt.keyframe_start {
            gop.clear();
            gop.keyframe_at = Some(pkt.arrival);
            gop.generation = pkt.generation;
        } else if gop.keyframe_at.is_none() {
            return;
        } else if gop.generation != pkt.generation {
            // Another source took over: its frames do not follow the cached keyframe.
            gop.clear();
            return;
        }
        let bytes = gop.bytes.saturating_add(pkt.payload.len());
        if gop.packets.len() >= MAX_CACHED_PACKETS || bytes > MAX_CACHED_BYTES {
            gop.clear();
            return;
        }
        gop.bytes = bytes;
        gop.packets.push(pkt.clone());
    }

    /// The cached packets of `layer` to start a viewer from at `now`, keyframe first, or why not.
    /// `generation` is that of the source feeding the stream now: another source's frames
    /// (a publisher that left or stalled) are never sent.
    pub fn start(&self, layer: u8, generation: u32, now: Instant) -> Result<&[Arc<MediaPacket>], NoStart> {
        let gop = self.layers.get(usize::from(layer)).ok_or(NoStart::Empty)?;
        let at = gop.keyframe_at.ok_or(NoStart::Empty)?;
        if gop.generation != generation {
            return Err(NoStart::OtherSource);
        }
        if now.saturating_duration_since(at) > MAX_REPLAY_AGE {
            return Err(NoStart::TooOld);
        }
        if gop.bytes > MAX_REPLAY_BYTES {
            return Err(NoStart::TooBig);
        }
        Ok(&gop.packets)
    }

}

/// How the cached frames are stamped for a viewer starting from them: every frame before the
/// newest gets the newest frame's timestamp minus one tick per frame between them, so that the
/// player treats them as already due (decodes them, shows the newest) and the newest frame and
/// everything live after it keep their real spacing.
#[derive(Clone, Copy, Debug)]
pub struct ReplayPlan {
    /// Source timestamp of the newest cached frame.
    newest_ts: u32,
    /// Number of distinct frames (timestamps) cached.
    frames: u32,
}

impl ReplayPlan {
    /// The plan for these cached packets (keyframe first, arrival order).
    pub fn new(packets: &[Arc<MediaPacket>]) -> Self {
        let mut frames = 0u32;
        let mut last = None;
        for p in packets {
            if last != Some(p.ts) {
                frames = frames.saturating_add(1);
                last = Some(p.ts);
            }
        }
        ReplayPlan { newest_ts: last.unwrap_or(0), frames }
    }

    /// Amount to add (wrapping) to the output timestamp of a packet of the `index`-th cached frame
    /// (0 = the keyframe) whose source timestamp is `src_ts`, so that it lands `frames - 1 -
    /// index` ticks before the newest frame's output timestamp.
    pub fn ts_shift(&self, index: u32, src_ts: u32) -> u32 {
        let before_newest = self.frames.saturating_sub(1).saturating_sub(index);
        self.newest_ts.wrapping_sub(src_ts).wrapping_sub(before_newest)
    }
}

/// Sends cached packets (keyframe first) through `forward` (a viewer's or a relay edge's rewrite)
/// with the timestamps of [`ReplayPlan`]; `emit` gets the index and output of every packet that
/// goes out. False, with nothing emitted, when `forward` does not take the first packet.
pub fn replay(
    packets: &[Arc<MediaPacket>],
    mut forward: impl FnMut(&MediaPacket) -> Option<crate::forward::Forwarded>,
    mut emit: impl FnMut(usize, crate::forward::Forwarded),
) -> bool {
    let Some(first) = packets.first() else { return false };
    let plan = ReplayPlan::new(packets);
    let mut frame = 0u32;
    let mut frame_ts = first.ts;
    for (i, pkt) in packets.iter().enumerate() {
        if pkt.ts != frame_ts {
            frame = frame.saturating_add(1);
            frame_ts = pkt.ts;
        }
        let Some(mut out) = forward(pkt) else {
            if i == 0 {
                return false;
            }
            continue;
        };
        out.ts = out.ts.wrapping_add(plan.ts_shift(frame, pkt.ts));
        emit(i, out);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::test_packet;

    fn pkt(generation: u32, layer: u8, seq: u64, ts: u32, key: bool, at: Instant) -> Arc<MediaPacket> {
        Arc::new(test_packet(generation, TrackKind::Video, layer, seq, ts, key, seq as u16, at))
    }

    #[test]
    fn keeps_the_packets_since_the_latest_keyframe_per_layer() {
        let t0 = Instant::now();
        let mut c = GopCache::default();
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::Empty));
        c.push(&pkt(1, 0, 1, 0, false, t0));
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::Empty), "nothing before a keyframe");
        c.push(&pkt(1, 0, 2, 3000, true, t0));
        c.push(&pkt(1, 0, 3, 3000, false, t0));
        c.push(&pkt(1, 1, 50, 3000, true, t0));
        c.push(&Arc::new(test_packet(1, TrackKind::Audio, 0, 9, 960, false, 0, t0)));
        c.push(&pkt(1, 0, 4, 6000, false, t0));
        let seqs: Vec<u64> = c.start(0, 1, t0).expect("layer 0").iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(c.start(1, 1, t0).expect("layer 1").len(), 1);
        assert_eq!(c.start(2, 1, t0).err(), Some(NoStart::Empty));
        // The next keyframe replaces the cache.
        c.push(&pkt(1, 0, 5, 9000, true, t0));
        assert_eq!(c.start(0, 1, t0).expect("new gop").len(), 1);
        // A packet of another layer index than MAX_LAYERS allows is ignored.
        c.push(&pkt(1, 7, 9, 0, true, t0));
    }

    #[test]
    fn too_old_too_big_overflow_and_a_new_source() {
        let t0 = Instant::now();
        let mut c = GopCache::default();
        c.push(&pkt(1, 0, 1, 0, true, t0));
        assert!(c.start(0, 1, t0 + MAX_REPLAY_AGE).is_ok());
        assert_eq!(c.start(0, 1, t0 + MAX_REPLAY_AGE + Duration::from_millis(1)).err(), Some(NoStart::TooOld));
        // Bytes: 1200 per packet here.
        let big = |seq: u64, key: bool| {
            let mut p = test_packet(1, TrackKind::Video, 0, seq, 0, key, 0, t0);
            p.payload = Arc::from(vec![0u8; 1200]);
            Arc::new(p)
        };
        let n = MAX_REPLAY_BYTES / 1200;
        c.push(&big(1, true));
        for i in 1..n as u64 {
            c.push(&big(1 + i, false));
        }
        assert!(c.start(0, 1, t0).is_ok());
        c.push(&big(1 + n as u64, false));
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::TooBig));
        // Past the packet bound (512 packets of 8 bytes stay under the byte bound) the cache drops.
        let mut c = GopCache::default();
        c.push(&pkt(1, 0, 1, 0, true, t0));
        for i in 1..MAX_CACHED_PACKETS as u64 {
            c.push(&pkt(1, 0, 1 + i, 0, false, t0));
        }
        assert!(c.start(0, 1, t0).is_ok());
        c.push(&pkt(1, 0, 9999, 0, false, t0));
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::Empty));
        c.push(&pkt(1, 0, 10_000, 0, false, t0));
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::Empty), "stays empty until a keyframe");
        // A packet of a new publisher generation that is not a keyframe drops the cache.
        c.push(&pkt(1, 0, 1, 0, true, t0));
        c.push(&pkt(2, 0, 2, 0, false, t0));
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::Empty));
        c.push(&pkt(2, 0, 3, 0, true, t0));
        assert!(c.start(0, 2, t0).is_ok());
        // Only for the source feeding the stream now.
        assert_eq!(c.start(0, 1, t0).err(), Some(NoStart::OtherSource));
    }

    #[test]
    fn replay_squeezes_the_frames_before_the_newest() {
        let t0 = Instant::now();
        // Keyframe in two packets, then two delta frames, 3000 ticks apart; timestamps wrap.
        let base = u32::MAX - 4000;
        let pkts = [
            pkt(1, 0, 1, base, true, t0),
            pkt(1, 0, 2, base, false, t0),
            pkt(1, 0, 3, base.wrapping_add(3000), false, t0),
            pkt(1, 0, 4, base.wrapping_add(6000), false, t0),
        ];
        let plan = ReplayPlan::new(&pkts);
        let out = |i: u32, src: u32| src.wrapping_add(plan.ts_shift(i, src));
        let newest = base.wrapping_add(6000);
        assert_eq!(out(0, base), newest.wrapping_sub(2));
        assert_eq!(out(1, base.wrapping_add(3000)), newest.wrapping_sub(1));
        assert_eq!(out(2, newest), newest, "the newest frame keeps its timestamp");
        // A keyframe alone is not shifted.
        let plan = ReplayPlan::new(&pkts[..2]);
        assert_eq!(plan.ts_shift(0, base), 0);
    }
}
