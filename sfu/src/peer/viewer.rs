//! The viewer's side of a peer: the stream's packets forwarded to it, and its layer choice.

use super::*;

impl Peer {
    /// Sends one packet of the watched stream to this viewer, if its forwarder wants it.
    #[inline]
    pub fn forward(&mut self, pkt: &MediaPacket, now: Instant) {
        if !self.connected {
            return;
        }
        let (mid, out) = match &mut self.role {
            PeerRole::Viewer(v) => {
                let mid = match pkt.kind {
                    TrackKind::Video => v.video_mid,
                    TrackKind::Audio => v.audio_mid,
                };
                let Some(mid) = mid else { return };
                let Some(out) = v.forwarder.forward(pkt) else { return };
                self.local.layer_switches += u64::from(out.switched);
                (mid, out)
            }
            // A downstream node gets every layer the edge carries, each on its own m-line.
            PeerRole::RelayOut(r) => {
                if r.paused || (pkt.kind == TrackKind::Video && !r.layers.carries(pkt.layer)) {
                    return;
                }
                let mid = match pkt.kind {
                    TrackKind::Video => r.video_mids.get(usize::from(pkt.layer)).copied().flatten(),
                    TrackKind::Audio => r.audio_mid,
                };
                let Some(mid) = mid else { return };
                let Some(out) = r.forwarder.forward(pkt) else { return };
                (mid, out)
            }
            PeerRole::Publisher(_) => return,
        };
        self.write(mid, pkt, out, pkt.capture, now);
    }

    /// Starts a viewer waiting for its first frame, or a layer of a new relay edge, from that
    /// layer's cached packets (see [`crate::gop`]); false when it cannot (nothing was sent).
    pub fn start_from(&mut self, packets: &[Arc<MediaPacket>], now: Instant) -> bool {
        if !self.connected {
            return false;
        }
        // The cached frames go out as if captured with the newest one, so the sender reports
        // written meanwhile keep the publisher's audio/video sync.
        let (Some(first), Some(capture)) = (packets.first(), packets.last().map(|p| p.capture)) else { return false };
        let mut outs = Vec::with_capacity(packets.len());
        let mid = match &mut self.role {
            PeerRole::Viewer(v) => {
                let Some(mid) = v.video_mid else { return false };
                if !v.forwarder.start_from(packets, |i, out| outs.push((i, out))) {
                    return false;
                }
                self.local.layer_switches += 1;
                mid
            }
            PeerRole::RelayOut(r) => {
                if r.paused || !r.layers.carries(first.layer) {
                    return false;
                }
                let Some(mid) = r.video_mids.get(usize::from(first.layer)).copied().flatten() else { return false };
                if !r.forwarder.start_from(first.layer, packets, |i, out| outs.push((i, out))) {
                    return false;
                }
                mid
            }
            PeerRole::Publisher(_) => return false,
        };
        for (i, out) in outs {
            if let Some(pkt) = packets.get(i) {
                self.write(mid, pkt, out, capture, now);
            }
        }
        true
    }

    /// Writes one forwarded packet to str0m on `mid` with the viewer's payload type.
    #[inline]
    pub(super) fn write(&mut self, mid: Mid, pkt: &MediaPacket, out: crate::forward::Forwarded, capture: Instant, now: Instant) {
        let pt_map = match &mut self.role {
            PeerRole::Viewer(v) => &mut v.pt_map,
            PeerRole::RelayOut(r) => &mut r.pt_map,
            PeerRole::Publisher(_) => return,
        };
        let pub_pt = *pkt.params.pt();
        let pt = match pt_map.iter().find(|(from, _)| *from == pub_pt) {
            Some(&(_, to)) => to,
            None => {
                let to = match_pt(&self.rtc, mid, pkt.params);
                if to.is_none() {
                    warn!(session = self.id, pub_pt, "peer has no payload type for the publisher's codec");
                }
                pt_map.push((pub_pt, to));
                to
            }
        };
        let Some(pt) = pt else {
            self.local.dropped_no_payload_type += 1;
            return;
        };
        if self.write_own(pkt, &out, pt, capture, now) {
            return;
        }
        let ext = ExtensionValues {
            audio_level: pkt.audio_level,
            voice_activity: pkt.voice_activity,
            ..Default::default()
        };
        // The capture instant, not the arrival: this node's sender reports then carry the
        // publisher's audio/video sync.
        let mut w = RtpWrite::new(pt.into(), SeqNo::from(out.seq), out.ts, capture, pkt.payload.clone())
            .marker(pkt.marker)
            .ext_vals(ext)
            .nackable(pkt.kind == TrackKind::Video);
        if let Some(desc) = &pkt.vp8
            && let Some(patch) = vp8_patch_for(desc, out.picture_id, out.tl0_pic_idx)
        {
            w = w.vp8_patch(patch);
        }
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
            tx.write_rtp(w);
            self.dirty = true;
        }
    }

    pub(super) fn viewer_housekeeping(&mut self, now: Instant, fx: &mut Effects) {
        if self.connected {
            self.start_egress(now);
        }
        let PeerRole::Viewer(v) = &mut self.role else { return };
        if let Some(e) = v.egress.as_deref() {
            let bps = e.estimate();
            if v.estimate.is_none_or(|old| old.abs_diff(bps) > old / 5) {
                debug!(session = self.id, estimate_bps = bps, "bandwidth estimate");
            }
            v.estimate = Some(bps);
        }
        let layers = self.stream.layer_states();
        let want = v.forwarder.selector().update(now, v.estimate, &layers);
        if let Some(layer) = want {
            // A viewer that has not forwarded a frame yet is joining (it may start from a cached
            // keyframe); otherwise it switches.
            if v.forwarder.selector_ref().current().is_none() {
                fx.waiting.push((self.id, self.stream.clone(), layer));
            } else {
                fx.keyframes.push((self.stream.clone(), layer, KeyframeReason::Refresh));
            }
        }
        // A backed-up pacer queue means the viewer cannot take what we send: rather than let its
        // latency grow, skip to the next keyframe (the selector meanwhile lowers the layer).
        if let Some(mid) = v.video_mid {
            let oldest = match v.egress.as_deref() {
                Some(e) => e.oldest_video(),
                None => self.rtc.direct_api().stream_tx_by_mid(mid, None).and_then(|tx| tx.queue_info().and_then(|q| q.first_unsent())),
            };
            let backed_up = oldest.is_some_and(|t| now.saturating_duration_since(t) > MAX_SEND_QUEUE_DELAY);
            if backed_up && !v.forwarder.skipping() {
                debug!(session = self.id, "send queue backed up; skipping to the next keyframe");
                v.forwarder.skip_to_keyframe();
                if let Some(e) = v.egress.as_deref_mut() {
                    e.drop_video();
                }
                self.local.congestion_skips += 1;
                if let Some(layer) = v.forwarder.selector_ref().target() {
                    fx.keyframes.push((self.stream.clone(), layer, KeyframeReason::Refresh));
                }
            }
        }
        // Ask the bandwidth estimator to probe past the top layer's bitrate, so the estimate can
        // clear the selector's up-switch headroom.
        let top: u64 = layers.iter().filter(|l| l.active).map(|l| l.bitrate_bps).max().unwrap_or(0);
        let desired = (top * 2 + 100_000).max(300_000);
        match v.egress.as_deref_mut() {
            Some(e) => e.set_desired(desired),
            None => self.rtc.bwe().set_bitrate(Bitrate::kbps(100), Bitrate::bps(desired)),
        }
        let sel = v.forwarder.selector_ref();
        let now_layer = (sel.current(), sel.target());
        if now_layer != v.last_layer {
            v.last_layer = now_layer;
            let name = |l: Option<u8>| {
                l.map(|i| if self.stream.simulcast.load(Ordering::Relaxed) { RIDS.get(i as usize).copied().unwrap_or("") } else { "" }.to_string())
            };
            let ev = SessionEvent::Layer { rid: name(now_layer.0), target: name(now_layer.1) };
            fx.events.push((self.id, ev));
        }
    }

    /// Changes a viewer's layer preference.
    pub fn set_preference(&mut self, pref: LayerPreference, now: Instant, fx: &mut Effects) {
        if let PeerRole::Viewer(v) = &mut self.role {
            v.forwarder.selector().set_preference(pref);
            self.last_housekeeping = now - HOUSEKEEPING_INTERVAL;
            self.viewer_housekeeping(now, fx);
        }
    }
}

/// Finds the viewer's payload type for the publisher's codec parameters on `mid`.
fn match_pt(rtc: &Rtc, mid: Mid, params: PayloadParams) -> Option<u8> {
    let media = rtc.media(mid)?;
    let remote = media.remote_pts();
    let cfg = rtc.codec_config();
    // Best-scoring local params that the viewer also accepted.
    if let Some(p) = cfg.match_params(params)
        && remote.contains(&p.pt()) {
            return Some(*p.pt());
        }
    cfg.params()
        .iter()
        .find(|p| p.spec().codec == params.spec().codec && remote.contains(&p.pt()))
        .map(|p| *p.pt())
}
