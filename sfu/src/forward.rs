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
    config: SelectorConfig,
    selector: LayerSelector,
    video: SeqTsRewriter,
    audio: SeqTsRewriter,
    vp8: Vp8Rewriter,
    generation: Option<u32>,
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
        Forwarder { config, selector, video, audio, vp8: Vp8Rewriter::new(), generation: None }
    }

    /// The layer selector (for updates from the bandwidth estimate and preference changes).
    pub fn selector(&mut self) -> &mut LayerSelector {
        &mut self.selector
    }

    /// Read access to the layer selector.
    pub fn selector_ref(&self) -> &LayerSelector {
        &self.selector
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

    /// A publisher (re)connected: every track starts a new source and video waits for a keyframe.
    fn on_new_publisher(&mut self, generation: u32) {
        let first = self.generation.is_none();
        self.generation = Some(generation);
        if first {
            return;
        }
        let pref = self.selector.preference();
        self.selector = LayerSelector::new(self.config);
        self.selector.set_preference(pref);
        self.video.switch_source();
        self.audio.switch_source();
        self.vp8.switch_source();
    }
}
