//! Node-to-node relaying: the sans-IO parts of a relay edge.
//!
//! A downstream node receives every simulcast layer of a stream from its upstream node over one
//! WebRTC connection, so that it can pick layers for its own viewers. The edge carries one video
//! m-line per layer (in layer order `q`, `h`, `f`) plus one audio m-line: both ends are Relaycast
//! nodes, so plain m-lines are simpler and cheaper than simulcast negotiation and keep per-layer
//! keyframe requests unambiguous.
//!
//! [`RelayForwarder`] is the upstream side's per-edge header rewrite: like a viewer's
//! [`crate::forward::Forwarder`] but without layer selection — every layer goes out on its own
//! m-line with sequence numbers, timestamps and VP8 picture ids kept continuous across publisher
//! restarts and switches to or from a backup publisher; after such a change each layer starts
//! again at the new source's keyframe (the downstream node's viewers then switch without a
//! broken frame).

use std::time::{Duration, Instant};

use crate::forward::Forwarded;
use crate::layer::{LayerState, MAX_LAYERS};
use crate::packet::{MediaPacket, TrackKind};
use crate::rewrite::{SeqTsRewriter, Vp8Rewriter};

/// Header rewrite state of one relay edge (upstream side).
#[derive(Debug)]
pub struct RelayForwarder {
    video: [SeqTsRewriter; MAX_LAYERS],
    vp8: [Vp8Rewriter; MAX_LAYERS],
    audio: SeqTsRewriter,
    generation: Option<u32>,
    /// Layers that wait for the current source's first keyframe (after a source change).
    waiting: [bool; MAX_LAYERS],
}

impl Default for RelayForwarder {
    fn default() -> Self {
        Self::new()
    }
}

impl RelayForwarder {
    /// A relay forwarder with random output sequence numbers and timestamps.
    pub fn new() -> Self {
        Self::with_rewriters(
            [SeqTsRewriter::new(90_000), SeqTsRewriter::new(90_000), SeqTsRewriter::new(90_000)],
            SeqTsRewriter::new(48_000),
        )
    }

    /// A relay forwarder with given rewriters (deterministic starts for tests).
    pub fn with_rewriters(video: [SeqTsRewriter; MAX_LAYERS], audio: SeqTsRewriter) -> Self {
        RelayForwarder { video, vp8: Default::default(), audio, generation: None, waiting: [false; MAX_LAYERS] }
    }

    /// Starts `layer` of a new edge from that layer's cached packets (keyframe first; see
    /// [`crate::gop::replay`]) when nothing of the layer went out yet; `emit` gets the index and
    /// output of every packet that goes out. Returns false (nothing forwarded) otherwise.
    pub fn start_from(&mut self, layer: u8, packets: &[std::sync::Arc<MediaPacket>], emit: impl FnMut(usize, Forwarded)) -> bool {
        let Some(first) = packets.first() else { return false };
        let slot = usize::from(layer);
        if slot >= MAX_LAYERS || first.layer != layer || !first.keyframe_start || self.video[slot].last_seq().is_some() {
            return false;
        }
        crate::gop::replay(packets, |pkt| self.forward(pkt), emit)
    }

    /// Sends `layer` again after a pause (shed by congestion control): from its next keyframe,
    /// its sequence numbers continuing from the last one sent.
    pub fn resume_layer(&mut self, layer: u8) {
        let slot = usize::from(layer);
        if slot < MAX_LAYERS {
            self.video[slot].switch_source();
            self.vp8[slot].switch_source();
            self.waiting[slot] = true;
        }
    }

    /// Computes the rewritten header of `pkt` on its layer's m-line (every packet is forwarded
    /// except stragglers from before a publisher restart).
    #[inline]
    pub fn forward(&mut self, pkt: &MediaPacket) -> Option<Forwarded> {
        if self.generation != Some(pkt.generation) {
            if self.generation.is_some() {
                for v in &mut self.video {
                    v.switch_source();
                }
                for v in &mut self.vp8 {
                    v.switch_source();
                }
                self.audio.switch_source();
                self.waiting = [true; MAX_LAYERS];
            }
            self.generation = Some(pkt.generation);
        }
        match pkt.kind {
            TrackKind::Audio => {
                let (seq, ts) = self.audio.rewrite(pkt.seq, pkt.ts, pkt.arrival)?;
                Some(Forwarded { seq, ts, picture_id: None, tl0_pic_idx: None, switched: false })
            }
            TrackKind::Video => {
                let layer = usize::from(pkt.layer).min(MAX_LAYERS - 1);
                if self.waiting[layer] {
                    if !pkt.keyframe_start {
                        return None;
                    }
                    self.waiting[layer] = false;
                }
                let (seq, ts) = self.video[layer].rewrite(pkt.seq, pkt.ts, pkt.arrival)?;
                let (picture_id, tl0_pic_idx) = match &pkt.vp8 {
                    Some(info) => self.vp8[layer].rewrite(info),
                    None => (None, None),
                };
                Some(Forwarded { seq, ts, picture_id, tl0_pic_idx, switched: false })
            }
        }
    }
}

/// How long the edge's estimate must stay under what its layers need before the highest is shed.
pub const SHED_AFTER: Duration = Duration::from_secs(1);
/// How long the estimate must clear the next layer's need (with [`RESTORE_HEADROOM`]) before
/// that layer is carried again.
pub const RESTORE_AFTER: Duration = Duration::from_secs(4);
/// The estimate must exceed what the layers need by this factor to carry one more.
pub const RESTORE_HEADROOM: f64 = 1.25;
/// The initial bandwidth estimate of a relay edge: every layer goes out until the estimate says
/// otherwise (nodes usually sit on good links; a viewer starts low instead).
pub const EDGE_INITIAL_ESTIMATE_BPS: u64 = 20_000_000;

/// A change of the layers a relay edge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeChange {
    /// Layer `n` and above are no longer sent.
    Shed(u8),
    /// Layer `n` is sent again (from its next keyframe).
    Restore(u8),
}

/// Congestion control of one relay edge (upstream side), sans-IO: from the edge's bandwidth
/// estimate and the stream's layer bitrates it decides how many layers, lowest first, the edge
/// carries. The lowest layer and audio always go out; the highest layers are shed while the
/// estimate stays under what they need for [`SHED_AFTER`], and come back one at a time once it
/// clears their need by [`RESTORE_HEADROOM`] for [`RESTORE_AFTER`].
#[derive(Debug, Clone)]
pub struct EdgeLayers {
    /// Layers below this index are carried.
    carried: u8,
    under_since: Option<Instant>,
    over_since: Option<Instant>,
}

impl Default for EdgeLayers {
    fn default() -> Self {
        EdgeLayers { carried: MAX_LAYERS as u8, under_since: None, over_since: None }
    }
}

impl EdgeLayers {
    /// Whether layer `layer` goes out on this edge.
    #[inline]
    pub fn carries(&self, layer: u8) -> bool {
        layer < self.carried
    }

    /// Layers below this index are carried (all: [`MAX_LAYERS`]).
    pub fn carried(&self) -> u8 {
        self.carried
    }

    /// Bits per second audio and the active layers below `upto` need.
    fn need(layers: &[LayerState], audio_bps: u64, upto: u8) -> u64 {
        layers.iter().take(usize::from(upto)).filter(|l| l.active).map(|l| l.bitrate_bps).fold(audio_bps, u64::saturating_add)
    }

    /// Takes the edge's estimate (none yet: nothing changes) and the layers' state at `now`.
    pub fn update(&mut self, now: Instant, estimate: Option<u64>, layers: &[LayerState], audio_bps: u64) -> Option<EdgeChange> {
        let Some(estimate) = estimate else {
            self.under_since = None;
            self.over_since = None;
            return None;
        };
        // The highest carried layer that is active: shedding an idle layer changes nothing.
        let top = (1..self.carried).rev().find(|&i| layers.get(usize::from(i)).is_some_and(|l| l.active));
        if let Some(top) = top
            && estimate < Self::need(layers, audio_bps, self.carried)
        {
            self.over_since = None;
            let since = *self.under_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= SHED_AFTER {
                self.carried = top;
                self.under_since = None;
                return Some(EdgeChange::Shed(top));
            }
            return None;
        }
        self.under_since = None;
        // The next layer up that the publisher sends.
        let next = (self.carried..MAX_LAYERS as u8).find(|&i| layers.get(usize::from(i)).is_some_and(|l| l.active));
        match next {
            Some(next) if estimate as f64 > Self::need(layers, audio_bps, next + 1) as f64 * RESTORE_HEADROOM => {
                let since = *self.over_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= RESTORE_AFTER {
                    self.carried = next + 1;
                    self.over_since = None;
                    return Some(EdgeChange::Restore(next));
                }
                None
            }
            _ => {
                self.over_since = None;
                None
            }
        }
    }
}

/// The `a=mid` values of an SDP's video m-lines, in m-line order (relay edges map them to
/// layers `q`, `h`, `f`).
pub fn video_mids_in_order(sdp: &str) -> Vec<String> {
    let mut mids = Vec::new();
    let mut in_video = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ");
        } else if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
            mids.push(mid.to_string());
            in_video = false;
        }
    }
    mids
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    fn layers(bps: [u64; 3]) -> [LayerState; 3] {
        bps.map(|b| LayerState { active: b > 0, bitrate_bps: b, height: None })
    }

    #[test]
    fn the_highest_layers_are_shed_under_a_low_estimate_and_the_lowest_never() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let l = layers([150_000, 500_000, 1_500_000]);
        let mut e = EdgeLayers::default();
        assert!((0..3).all(|i| e.carries(i)));
        // No estimate yet, or enough for everything: all layers.
        assert_eq!(e.update(at(0), None, &l, 50_000), None);
        assert_eq!(e.update(at(0), Some(3_000_000), &l, 50_000), None);
        // 1 Mbit/s: not enough for all three (2.2); shed only after SHED_AFTER.
        assert_eq!(e.update(at(100), Some(1_000_000), &l, 50_000), None);
        assert_eq!(e.update(at(100 + SHED_AFTER.as_millis() as u64 - 1), Some(1_000_000), &l, 50_000), None);
        assert_eq!(e.update(at(100 + SHED_AFTER.as_millis() as u64), Some(1_000_000), &l, 50_000), Some(EdgeChange::Shed(2)));
        assert!(e.carries(1) && !e.carries(2));
        // 0.7 Mbit/s carries q and h (0.7 needed): no further shedding.
        assert_eq!(e.update(at(5_000), Some(700_000), &l, 50_000), None);
        assert_eq!(e.update(at(9_000), Some(700_000), &l, 50_000), None);
        // 100 kbit/s: h goes after a second, q stays whatever the estimate.
        assert_eq!(e.update(at(10_000), Some(100_000), &l, 50_000), None);
        assert_eq!(e.update(at(11_000), Some(100_000), &l, 50_000), Some(EdgeChange::Shed(1)));
        assert_eq!(e.update(at(20_000), Some(10_000), &l, 50_000), None);
        assert_eq!(e.carried(), 1);
        assert!(e.carries(0));
    }

    #[test]
    fn a_shed_layer_comes_back_one_at_a_time_after_sustained_headroom() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let l = layers([150_000, 500_000, 1_500_000]);
        let mut e = EdgeLayers::default();
        e.update(at(0), Some(100_000), &l, 0);
        assert_eq!(e.update(at(1_000), Some(100_000), &l, 0), Some(EdgeChange::Shed(2)));
        e.update(at(1_500), Some(100_000), &l, 0);
        assert_eq!(e.update(at(2_500), Some(100_000), &l, 0), Some(EdgeChange::Shed(1)));
        assert_eq!(e.carried(), 1);
        // Just the need of q+h (650 k) is not enough: the headroom is required.
        assert_eq!(e.update(at(3_000), Some(700_000), &l, 0), None);
        assert_eq!(e.update(at(3_000 + RESTORE_AFTER.as_millis() as u64), Some(700_000), &l, 0), None);
        // 1 Mbit/s clears 650 k × 1.25: h returns after RESTORE_AFTER of it, not before.
        assert_eq!(e.update(at(10_000), Some(1_000_000), &l, 0), None);
        assert_eq!(e.update(at(10_000 + RESTORE_AFTER.as_millis() as u64 - 1), Some(1_000_000), &l, 0), None);
        assert_eq!(e.update(at(10_000 + RESTORE_AFTER.as_millis() as u64), Some(1_000_000), &l, 0), Some(EdgeChange::Restore(1)));
        // A dip resets the wait for the next one.
        assert_eq!(e.update(at(20_000), Some(3_000_000), &l, 0), None);
        assert_eq!(e.update(at(22_000), Some(2_000_000), &l, 0), None);
        assert_eq!(e.update(at(25_000), Some(3_000_000), &l, 0), None);
        assert_eq!(e.update(at(25_000 + RESTORE_AFTER.as_millis() as u64), Some(3_000_000), &l, 0), Some(EdgeChange::Restore(2)));
        assert_eq!(e.carried(), 3);
    }

    #[test]
    fn idle_layers_are_neither_shed_nor_waited_for() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A publisher without simulcast: one layer, never shed.
        let one = layers([2_000_000, 0, 0]);
        let mut e = EdgeLayers::default();
        e.update(at(0), Some(100_000), &one, 0);
        assert_eq!(e.update(at(5_000), Some(100_000), &one, 0), None);
        assert!(e.carries(0));
        // q and f only (h idle): f is the one shed, and it comes back directly.
        let gap = layers([150_000, 0, 1_500_000]);
        let mut e = EdgeLayers::default();
        e.update(at(0), Some(500_000), &gap, 0);
        assert_eq!(e.update(at(1_000), Some(500_000), &gap, 0), Some(EdgeChange::Shed(2)));
        e.update(at(2_000), Some(5_000_000), &gap, 0);
        assert_eq!(e.update(at(2_000 + RESTORE_AFTER.as_millis() as u64), Some(5_000_000), &gap, 0), Some(EdgeChange::Restore(2)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn pkt(t0: Instant, generation: u32, kind: TrackKind, layer: u8, seq: u64, ts: u32, pid: u16) -> MediaPacket {
        crate::packet::test_packet(generation, kind, layer, seq, ts, false, pid, t0 + Duration::from_millis(u64::from(pid)))
    }

    fn relay() -> RelayForwarder {
        RelayForwarder::with_rewriters(
            [
                SeqTsRewriter::with_start(90_000, 100, 1000),
                SeqTsRewriter::with_start(90_000, 200, 2000),
                SeqTsRewriter::with_start(90_000, 300, 3000),
            ],
            SeqTsRewriter::with_start(48_000, 400, 4000),
        )
    }

    #[test]
    fn every_layer_is_forwarded_on_its_own_numbering() {
        let t0 = Instant::now();
        let mut r = relay();
        for layer in 0..3u8 {
            let a = r.forward(&pkt(t0, 1, TrackKind::Video, layer, 5000, 90_000, 10)).expect("forwarded");
            let b = r.forward(&pkt(t0, 1, TrackKind::Video, layer, 5001, 93_000, 11)).expect("forwarded");
            assert_eq!(a.seq, 100 + 100 * u64::from(layer));
            assert_eq!(b.seq, a.seq + 1);
            assert_eq!(b.ts.wrapping_sub(a.ts), 3000);
            assert_eq!(b.picture_id.zip(a.picture_id).map(|(b, a)| b.wrapping_sub(a)), Some(1));
        }
        let au = r.forward(&pkt(t0, 1, TrackKind::Audio, 0, 9, 960, 0)).expect("audio");
        assert_eq!(au.seq, 400);
    }

    #[test]
    fn a_new_publisher_continues_each_numbering() {
        let t0 = Instant::now();
        let mut r = relay();
        let a = r.forward(&pkt(t0, 1, TrackKind::Video, 1, 50_000, 1_000_000, 700)).expect("first");
        // The publisher restarts with unrelated numbering: each layer resumes at its keyframe.
        assert_eq!(r.forward(&pkt(t0, 2, TrackKind::Video, 1, 2, 17, 5)), None, "not before a keyframe");
        let key = crate::packet::test_packet(2, TrackKind::Video, 1, 3, 17, true, 5, t0 + Duration::from_millis(5));
        let b = r.forward(&key).expect("after restart");
        assert!(r.forward(&pkt(t0, 2, TrackKind::Video, 1, 4, 17, 5)).is_some(), "then every packet");
        assert!(r.forward(&pkt(t0, 2, TrackKind::Audio, 0, 9, 960, 5)).is_some(), "audio at once");
        assert!(b.seq > a.seq, "sequence numbers keep rising across a restart");
        assert!(b.seq - a.seq < 10);
        let pa = a.picture_id.expect("pid");
        let pb = b.picture_id.expect("pid");
        assert!(pb.wrapping_sub(pa) & 0x7fff < 10, "picture ids continue: {pa} -> {pb}");
    }

    #[test]
    fn a_new_edge_starts_a_layer_from_cached_packets_once() {
        let t0 = Instant::now();
        let mut r = relay();
        let key = |seq: u64, ts: u32| std::sync::Arc::new(crate::packet::test_packet(1, TrackKind::Video, 1, seq, ts, true, 5, t0));
        let delta = |seq: u64, ts: u32| std::sync::Arc::new(crate::packet::test_packet(1, TrackKind::Video, 1, seq, ts, false, 6, t0));
        let cached = [key(10, 90_000), delta(11, 93_000), delta(12, 96_000)];
        // Not for another layer, and not from a packet that is not a keyframe.
        assert!(!r.start_from(0, &cached, |_, _| panic!("wrong layer")));
        assert!(!r.start_from(1, &cached[1..], |_, _| panic!("no keyframe")));
        let mut out = Vec::new();
        assert!(r.start_from(1, &cached, |i, o| out.push((i, o))));
        assert_eq!(out.iter().map(|(i, o)| (*i, o.seq)).collect::<Vec<_>>(), [(0, 200), (1, 201), (2, 202)]);
        let newest = out[2].1.ts;
        assert_eq!(out[0].1.ts, newest.wrapping_sub(2));
        assert_eq!(out[1].1.ts, newest.wrapping_sub(1));
        let live = r.forward(&delta(13, 99_000)).expect("live continues");
        assert_eq!((live.seq, live.ts), (203, newest.wrapping_add(3000)));
        // Once a layer has sent anything it is not started again.
        assert!(!r.start_from(1, &cached, |_, _| panic!("already sent")));
    }

    #[test]
    fn a_resumed_layer_restarts_at_its_keyframe_with_continuous_sequence_numbers() {
        let t0 = Instant::now();
        let mut r = relay();
        let a = r.forward(&pkt(t0, 1, TrackKind::Video, 2, 7000, 90_000, 10)).expect("sent");
        // The layer was shed for a while (its packets 7001..7999 never reached the forwarder).
        r.resume_layer(2);
        assert_eq!(r.forward(&pkt(t0, 1, TrackKind::Video, 2, 8000, 990_000, 300)), None, "not before a keyframe");
        let key = crate::packet::test_packet(1, TrackKind::Video, 2, 8001, 993_000, true, 301, t0 + Duration::from_millis(301));
        let b = r.forward(&key).expect("from the keyframe");
        assert_eq!(b.seq, a.seq + 1, "no gap for the downstream node to ask for");
        let pa = a.picture_id.expect("pid");
        let pb = b.picture_id.expect("pid");
        assert_eq!(pb.wrapping_sub(pa) & 0x7fff, 1, "picture ids continue");
        // Other layers were not touched.
        assert!(r.forward(&pkt(t0, 1, TrackKind::Video, 0, 5, 90_000, 302)).is_some());
    }

    #[test]
    fn video_mids_follow_m_line_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:x\r\n";
        assert_eq!(video_mids_in_order(sdp), vec!["0", "1", "x"]);
        assert!(video_mids_in_order("garbage").is_empty());
    }
}
