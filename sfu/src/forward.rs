//! Per-viewer forwarding decision and header rewrite: the sans-IO heart of the hot path.
//!
//! A [`Forwarder`] sees every packet of the stream a viewer watches and decides, without
//! allocating or locking, whether to forward it and with which sequence number, timestamp and
//! VP8 picture id / TL0PICIDX. The payload itself is never touched or copied.

use crate::layer::{LayerPreference, LayerSelector, PacketAction, SelectorConfig};
use crate::packet::{MediaPacket, TrackKind};
use crate::rewrite::{SeqTsRewriter, Vp8Rewriter};

/// Header values for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    /// Output extended sequence number.
    pub seq: u64,
    /// Output RTP timestamp.
    pub ts: u32,
    /// Output VP8 picture id, when rewritten.
    pub picture_id: Option<u16>,
    /// Output VP8 TL0PICIDX, when rewritten.
    pub tl0_pic_idx: Option<u8>,
    /// True when this packet is the first after a layer switch.
    pub switched: bool,
}

/// Forwarding state of one viewer: its layer selector and its per-track rewriters.
#[derive(Debug)]
pub struct Forwarder {
    selector: LayerSelector,
    video: SeqTsRewriter,
    audio: SeqTsRewriter,
    vp8: Vp8Rewriter,
    generation: Option<u32>,
    /// Video is skipped until the next keyframe of the target layer (the send queue backed up).
    skip_video: bool,
}

impl Forwarder {
    /// A forwarder with random output sequence numbers and timestamps.
    pub fn new(config: SelectorConfig, pref: LayerPreference) -> Self {
        Self::with_rewriters(config, pref, SeqTsRewriter::new(90_000), SeqTsRewriter::new(48_000))
    }

    /// A forwarder with given rewriters (deterministic starts for tests and benches).
    pub fn with_rewriters(
        config: SelectorConfig,
        pref: LayerPreference,
        video: SeqTsRewriter,
        audio: SeqTsRewriter,
    ) -> Self {
        let mut selector = LayerSelector::new(config);
        selector.set_preference(pref);
        Forwarder { selector, video, audio, vp8: Vp8Rewriter::new(), generation: None, skip_video: false }
    }

    /// The layer selector (for updates from the bandwidth estimate and preference changes).
    pub fn selector(&mut self) -> &mut LayerSelector {
        &mut self.selector
    }

    /// Read access to the layer selector.
    pub fn selector_ref(&self) -> &LayerSelector {
        &self.selector
    }

    /// Stops forwarding video until the next keyframe of the target layer: the viewer's send
    /// queue is backed up, and sending stale frames would only grow its latency.
    pub fn skip_to_keyframe(&mut self) {
        self.skip_video = true;
    }

    /// True while video waits for a keyframe after [`Forwarder::skip_to_keyframe`].
    pub fn skipping(&self) -> bool {
        self.skip_video
    }

    /// Decides whether `pkt` goes to this viewer and computes its rewritten header fields.
    #[inline]
    pub fn forward(&mut self, pkt: &MediaPacket) -> Option<Forwarded> {
        if self.generation != Some(pkt.generation) {
            self.on_new_publisher(pkt.generation);
        }
        match pkt.kind {
            TrackKind::Audio => {
                let (seq, ts) = self.audio.rewrite(pkt.seq, pkt.ts, pkt.arrival)?;
                Some(Forwarded { seq, ts, picture_id: None, tl0_pic_idx: None, switched: false })
            }
            TrackKind::Video => {
                if self.skip_video {
                    if !pkt.keyframe_start || Some(pkt.layer) != self.selector.target() {
                        return None;
                    }
                    // Resume on a keyframe with fresh numbering: the skipped packets were never
                    // sent, so the viewer must not see a gap it would NACK.
                    self.skip_video = false;
                    self.video.switch_source();
                    self.vp8.switch_source();
                }
                let switched = match self.selector.on_packet(pkt.layer, pkt.keyframe_start) {
                    PacketAction::Drop => return None,
                    PacketAction::Forward => false,
                    PacketAction::SwitchAndForward => {
                        self.video.switch_source();
                        self.vp8.switch_source();
                        true
                    }
                };
                let (seq, ts) = self.video.rewrite(pkt.seq, pkt.ts, pkt.arrival)?;
                let (picture_id, tl0_pic_idx) = match &pkt.vp8 {
                    Some(info) => self.vp8.rewrite(info),
                    None => (None, None),
                };
                Some(Forwarded { seq, ts, picture_id, tl0_pic_idx, switched })
            }
        }
    }

    /// Starts a viewer that has forwarded no video yet from a layer's cached packets (keyframe
    /// first; see [`crate::gop::replay`]), if that layer is its target; `emit` gets the index and
    /// output of every packet that goes out. Returns false (nothing forwarded) when the viewer
    /// already has video, wants another layer, or the first packet does not start it.
    pub fn start_from(&mut self, packets: &[std::sync::Arc<MediaPacket>], emit: impl FnMut(usize, Forwarded)) -> bool {
        let Some(first) = packets.first() else { return false };
        if self.selector.current().is_some() || self.selector.target() != Some(first.layer) || !first.keyframe_start {
            return false;
        }
        crate::gop::replay(packets, |pkt| self.forward(pkt), emit)
    }

    /// A publisher (re)connected: every track starts a new source and video waits for a keyframe.
    fn on_new_publisher(&mut self, generation: u32) {
        let first = self.generation.is_none();
        self.generation = Some(generation);
        if first {
            return;
        }
        // The first keyframe of the new source is forwarded (see LayerSelector::restart): a
        // switch to a backup at its keyframe shows no stall.
        self.selector.restart();
        self.skip_video = false;
        self.video.switch_source();
        self.audio.switch_source();
        self.vp8.switch_source();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::layer::{LayerState, MAX_LAYERS};

    struct Src {
        t0: Instant,
    }

    impl Src {
        #[allow(clippy::too_many_arguments)]
        fn pkt(&self, generation: u32, kind: TrackKind, layer: u8, seq: u64, ts: u32, key: bool, pid: u16, ms: u64) -> MediaPacket {
            crate::packet::test_packet(generation, kind, layer, seq, ts, key, pid, self.t0 + Duration::from_millis(ms))
        }
    }

    fn layers() -> [LayerState; MAX_LAYERS] {
        [
            LayerState { active: true, bitrate_bps: 150_000, height: Some(180) },
            LayerState { active: true, bitrate_bps: 500_000, height: Some(360) },
            LayerState { active: true, bitrate_bps: 1_500_000, height: Some(720) },
        ]
    }

    fn forwarder(pref: LayerPreference, t0: Instant) -> Forwarder {
        let mut f = Forwarder::with_rewriters(
            SelectorConfig::default(),
            pref,
            SeqTsRewriter::with_start(90_000, 100, 1000),
            SeqTsRewriter::with_start(48_000, 500, 7000),
        );
        f.selector().update(t0, None, &layers());
        f
    }

    #[test]
    fn starts_from_cached_packets_then_continues_live() {
        let t0 = Instant::now();
        let s = Src { t0 };
        let mut f = forwarder(LayerPreference::Fixed(1), t0);
        let cached: Vec<std::sync::Arc<MediaPacket>> = [
            s.pkt(1, TrackKind::Video, 1, 20, 90_000, true, 6, 0),
            s.pkt(1, TrackKind::Video, 1, 21, 90_000, false, 6, 1),
            s.pkt(1, TrackKind::Video, 1, 22, 93_000, false, 7, 33),
            s.pkt(1, TrackKind::Video, 1, 23, 96_000, false, 8, 66),
        ]
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
        // Another layer's cache does not start it.
        let mut other = forwarder(LayerPreference::Fixed(0), t0);
        assert!(!other.start_from(&cached, |_, _| panic!("nothing goes out")));
        let mut out = Vec::new();
        assert!(f.start_from(&cached, |i, o| out.push((i, o))));
        assert_eq!(out.len(), 4);
        assert!(out[0].1.switched);
        let seqs: Vec<u64> = out.iter().map(|(_, o)| o.seq).collect();
        assert_eq!(seqs, [100, 101, 102, 103], "contiguous output numbers from the start");
        let newest = out[3].1.ts;
        assert_eq!(out[0].1.ts, newest.wrapping_sub(2), "keyframe two ticks before the newest frame");
        assert_eq!(out[1].1.ts, newest.wrapping_sub(2));
        assert_eq!(out[2].1.ts, newest.wrapping_sub(1));
        // Live packets continue with their real spacing and no sequence gap.
        let live = f.forward(&s.pkt(1, TrackKind::Video, 1, 24, 99_000, false, 9, 100)).expect("live");
        assert_eq!(live.seq, 104);
        assert_eq!(live.ts, newest.wrapping_add(3000));
        // Started once: a second start is refused.
        assert!(!f.start_from(&cached, |_, _| panic!("already started")));
    }

    #[test]
    fn waits_for_keyframe_then_forwards_target_layer_only() {
        let t0 = Instant::now();
        let s = Src { t0 };
        let mut f = forwarder(LayerPreference::Fixed(1), t0);
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 1, 10, 0, false, 5, 0)), None, "no keyframe yet");
        let first = f.forward(&s.pkt(1, TrackKind::Video, 1, 11, 3000, true, 6, 33)).expect("keyframe starts");
        assert!(first.switched);
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 0, 50, 3000, true, 90, 33)), None, "other layer dropped");
        let next = f.forward(&s.pkt(1, TrackKind::Video, 1, 12, 3000, false, 6, 34)).expect("same layer continues");
        assert_eq!(next.seq, first.seq + 1);
        assert_eq!(next.ts, first.ts);
        assert_eq!(next.picture_id, first.picture_id);
    }

    #[test]
    fn layer_switch_keeps_sequence_timestamp_and_picture_id_continuous() {
        let t0 = Instant::now();
        let s = Src { t0 };
        let mut f = forwarder(LayerPreference::Fixed(0), t0);
        let mut last = None;
        for i in 0..10u64 {
            let out = f.forward(&s.pkt(1, TrackKind::Video, 0, 1000 + i, 90_000 + i as u32 * 3000, i == 0, 300 + i as u16, i * 33));
            last = out.or(last);
        }
        let before = last.expect("low layer forwarded");
        // Switch to the high layer: its numbers are unrelated to the low layer's.
        f.selector().set_preference(LayerPreference::Fixed(2));
        // Until its keyframe arrives the low layer keeps flowing.
        let still_low = f.forward(&s.pkt(1, TrackKind::Video, 0, 1010, 120_000, false, 310, 340)).expect("low continues");
        assert_eq!(still_low.seq, before.seq + 1);
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 2, 60_000, 5_000_000, false, 9000, 341)), None);
        let after = f.forward(&s.pkt(1, TrackKind::Video, 2, 60_001, 5_003_000, true, 9001, 366)).expect("switch");
        assert!(after.switched);
        assert_eq!(after.seq, still_low.seq + 1, "no sequence gap across the switch");
        let dt = after.ts.wrapping_sub(still_low.ts);
        assert!(dt > 0 && dt < 90_000, "timestamp advances by about the elapsed time, got {dt}");
        let pid_before = still_low.picture_id.expect("pid");
        assert_eq!(after.picture_id, Some((pid_before + 1) & 0x7fff), "picture id continues");
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 0, 1011, 123_000, false, 311, 370)), None, "old layer dropped");
    }

    #[test]
    fn skipping_to_keyframe_drops_video_then_resumes_without_a_gap() {
        let t0 = Instant::now();
        let s = Src { t0 };
        let mut f = forwarder(LayerPreference::Fixed(1), t0);
        let a = f.forward(&s.pkt(1, TrackKind::Video, 1, 10, 0, true, 5, 0)).expect("keyframe");
        f.skip_to_keyframe();
        assert!(f.skipping());
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 1, 11, 3000, false, 6, 33)), None);
        assert!(f.forward(&s.pkt(1, TrackKind::Audio, 0, 5, 960, false, 0, 33)).is_some(), "audio keeps flowing");
        assert_eq!(f.forward(&s.pkt(1, TrackKind::Video, 0, 90, 3000, true, 7, 40)), None, "only the target layer's keyframe");
        let b = f.forward(&s.pkt(1, TrackKind::Video, 1, 40, 90_000, true, 35, 1000)).expect("resumes at keyframe");
        assert!(!f.skipping());
        assert_eq!(b.seq, a.seq + 1, "no sequence gap for the skipped packets");
        let c = f.forward(&s.pkt(1, TrackKind::Video, 1, 41, 90_000, false, 35, 1001)).expect("continues");
        assert_eq!(c.seq, b.seq + 1);
    }

    #[test]
    fn publisher_restart_rebases_all_tracks_without_gaps() {
        let t0 = Instant::now();
        let s = Src { t0 };
        let mut f = forwarder(LayerPreference::Fixed(0), t0);
        let v1 = f.forward(&s.pkt(1, TrackKind::Video, 0, 7, 100, true, 1, 0)).expect("video");
        let a1 = f.forward(&s.pkt(1, TrackKind::Audio, 0, 70, 960, false, 0, 0)).expect("audio");
        // A new publisher generation starts from unrelated numbers.
        let a2 = f.forward(&s.pkt(2, TrackKind::Audio, 0, 40_000, 123_456, false, 0, 500)).expect("audio continues");
        assert_eq!(a2.seq, a1.seq + 1);
        assert!(a2.ts.wrapping_sub(a1.ts) > 0);
        f.selector().update(t0 + Duration::from_millis(500), None, &layers());
        assert_eq!(f.forward(&s.pkt(2, TrackKind::Video, 0, 900, 5, false, 77, 500)), None, "waits for a keyframe");
        let v2 = f.forward(&s.pkt(2, TrackKind::Video, 0, 901, 3005, true, 78, 510)).expect("keyframe resumes");
        assert_eq!(v2.seq, v1.seq + 1);
        assert_eq!(v2.picture_id, Some(v1.picture_id.unwrap_or(0).wrapping_add(1) & 0x7fff));
    }

    #[test]
    fn a_new_source_starts_on_its_first_keyframe_at_or_below_the_target() {
        let t0 = Instant::now();
        let s = Src { t0 };
        // Watching layer 2 of a simulcast primary.
        let mut f = forwarder(LayerPreference::Auto, t0);
        f.selector().update(t0, None, &layers());
        assert_eq!(f.selector_ref().target(), Some(2));
        let v1 = f.forward(&s.pkt(1, TrackKind::Video, 2, 10, 100, true, 1, 0)).expect("layer 2");
        // The backup (one layer, 0) takes over at its keyframe: forwarded at once, before any
        // update has seen the backup's layers, and without a sequence gap.
        assert_eq!(f.forward(&s.pkt(2, TrackKind::Video, 0, 500, 9_000, false, 40, 100)), None, "not before a keyframe");
        let v2 = f.forward(&s.pkt(2, TrackKind::Video, 0, 501, 12_000, true, 41, 120)).expect("the new source's keyframe");
        assert!(v2.switched);
        assert_eq!(v2.seq, v1.seq + 1);
        assert!(f.forward(&s.pkt(2, TrackKind::Video, 0, 502, 12_000, false, 41, 121)).is_some());
        // Back to the primary: its keyframe on a layer above a fixed preference is not taken.
        let mut g = forwarder(LayerPreference::Fixed(0), t0);
        g.selector().update(t0, None, &layers());
        g.forward(&s.pkt(1, TrackKind::Video, 0, 10, 100, true, 1, 0)).expect("layer 0");
        assert_eq!(g.forward(&s.pkt(3, TrackKind::Video, 2, 70, 100, true, 5, 200)), None, "above the target");
        assert!(g.forward(&s.pkt(3, TrackKind::Video, 0, 90, 100, true, 6, 200)).is_some(), "the target's keyframe");
    }
}
