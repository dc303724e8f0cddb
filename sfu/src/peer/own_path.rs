//! The own send path's side of a viewer ([`crate::egress::SendPath::Own`]): starting it from
//! the DTLS keys, queueing forwarded packets on it, and reading the viewer's SRTCP.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, warn};

use super::{Effects, Peer, PeerRole};
use crate::forward::Forwarded;
use crate::keyframe::KeyframeReason;
use crate::packet::{MediaPacket, TrackKind};

impl Peer {
    /// Sends this viewer's media on the own send path, with the SRTP keys its DTLS handshake
    /// leaves in `keys` (see [`crate::dtls::with_key_capture`]).
    pub fn use_own_send_path(&mut self, keys: Arc<crate::dtls::KeySlot>) {
        if let PeerRole::Viewer(v) = &mut self.role {
            v.keys = Some(keys);
        }
    }

    /// The viewer's own send path, if it has one.
    pub fn egress_mut(&mut self) -> Option<&mut relaycast_egress::session::ViewerEgress> {
        match &mut self.role {
            PeerRole::Viewer(v) => v.egress.as_deref_mut(),
            _ => None,
        }
    }

    /// Takes an SRTCP datagram of a viewer on the own send path, which decodes it itself (str0m
    /// then never sees it); false for anything else, which goes to str0m.
    pub fn take_viewer_rtcp(&mut self, data: &[u8], now: Instant, fx: &mut Effects) -> bool {
        let rtcp = data.len() >= 8 && data[0] >> 6 == 2 && (192..=223).contains(&data[1]);
        let PeerRole::Viewer(v) = &mut self.role else { return false };
        let (true, Some(e)) = (rtcp, v.egress.as_deref_mut()) else { return false };
        match e.handle_srtcp(data, now) {
            Ok(keyframe) => {
                self.dirty = true;
                if keyframe {
                    // A viewer's PLI/FIR: ask upstream for the layer it is receiving.
                    self.local.viewer_keyframe_requests += 1;
                    let sel = v.forwarder.selector_ref();
                    if let Some(layer) = sel.current().or(sel.target()) {
                        debug!(session = self.id, layer, "viewer keyframe request");
                        fx.keyframes.push((self.stream.clone(), layer, KeyframeReason::Refresh));
                    }
                }
            }
            Err(err) => {
                self.local.viewer_rtcp_unopened += 1;
                debug!(session = self.id, error = %err, "viewer RTCP that does not open; dropped");
            }
        }
        true
    }

    /// Starts the own send path of a connected viewer once its keys are known.
    pub(super) fn start_egress(&mut self, now: Instant) {
        let PeerRole::Viewer(v) = &mut self.role else { return };
        // Its m-lines are known once str0m announced them (after it connected).
        if v.egress.is_some() || (v.video_mid.is_none() && v.audio_mid.is_none()) {
            return;
        }
        let Some(keys) = v.keys.as_ref().and_then(|k| k.get()) else { return };
        let cname = format!("relaycast-{}", self.id);
        let Some(cfg) = crate::egress::viewer_config(&mut self.rtc, &keys, v.video_mid, v.audio_mid, &cname) else {
            warn!(session = self.id, profile = ?keys.profile, "own send path has no sealing for this SRTP profile; disconnecting");
            self.rtc.disconnect();
            return;
        };
        match relaycast_egress::session::ViewerEgress::new(cfg, now, std::time::SystemTime::now()) {
            Ok(e) => {
                debug!(session = self.id, "own send path started");
                v.egress = Some(Box::new(e));
            }
            Err(e) => {
                warn!(session = self.id, error = %e, "own send path could not start; disconnecting");
                self.rtc.disconnect();
            }
        }
    }

    /// Queues one forwarded packet on a viewer's own send path (started at its first packet);
    /// false when the viewer is not on it (str0m sends the packet).
    pub(super) fn write_own(&mut self, pkt: &MediaPacket, out: &Forwarded, pt: u8, capture: Instant, now: Instant) -> bool {
        match &self.role {
            PeerRole::Viewer(v) if v.keys.is_some() => {
                if v.egress.is_none() {
                    self.start_egress(now);
                }
            }
            _ => return false,
        }
        let PeerRole::Viewer(v) = &mut self.role else { return true };
        // Not started (no keys yet, or it could not start): the packet is dropped.
        let Some(e) = v.egress.as_deref_mut() else { return true };
        let mut patch = relaycast_egress::session::Patch::default();
        if let Some(desc) = &pkt.vp8
            && let Some(rw) = desc.rewrite(out.picture_id, out.tl0_pic_idx)
        {
            for (at, byte) in desc.rewrite_bytes(&rw) {
                patch.push(at, byte);
            }
        }
        let kind = match pkt.kind {
            TrackKind::Video => relaycast_egress::session::Kind::Video,
            TrackKind::Audio => relaycast_egress::session::Kind::Audio,
        };
        let audio_level = pkt.audio_level.map(|l| (pkt.voice_activity.unwrap_or(false), l.unsigned_abs().min(127)));
        e.send(
            relaycast_egress::session::Outgoing {
                kind,
                pt,
                marker: pkt.marker,
                seq: out.seq,
                ts: out.ts,
                capture,
                payload: pkt.payload.clone(),
                patch,
                audio_level,
            },
            now,
        );
        self.dirty = true;
        true
    }
}
