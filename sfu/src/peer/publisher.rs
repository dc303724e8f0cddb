//! The publisher's side of a peer: its incoming packets become the stream's shared packets, and
//! keyframe requests go to it, held back by the throttle.

use super::*;

impl Peer {
    /// New NACKs since the last cumulative count str0m reported for this (mid, rid).
    pub(super) fn nack_delta(&mut self, mid: Mid, rid: Option<Rid>, total: u64) -> u64 {
        match self.nacks_seen.iter_mut().find(|(m, r, _)| *m == mid && *r == rid) {
            Some((_, _, seen)) => {
                let d = total.saturating_sub(*seen);
                *seen = total;
                d
            }
            None => {
                self.nacks_seen.push((mid, rid, total));
                total
            }
        }
    }

    /// Turns an incoming publisher packet into a shared [`MediaPacket`]; `None` for a packet
    /// that is not forwarded (a publisher standing by, or an unknown stream or payload type).
    pub(super) fn on_publisher_rtp(&mut self, pkt: RtpPacket, now: Instant, fx: &mut Effects) -> Option<MediaPacket> {
        let PeerRole::Publisher(p) = &mut self.role else { return None };
        p.source.on_media(now);
        let ssrc = pkt.header.ssrc;
        let (kind, layer) = match p.ssrcs.iter().find(|(s, _, _)| *s == ssrc) {
            Some(&(_, k, l)) => (k, l),
            None => {
                let mut api = self.rtc.direct_api();
                let rx = api.stream_rx(&ssrc)?;
                let (mid, rid) = (rx.mid(), rx.rid());
                let kind = if Some(mid) == p.audio_mid { TrackKind::Audio } else { TrackKind::Video };
                let relay_layer = p.relay_mids.and_then(|mids| mids.iter().position(|m| *m == mid));
                let layer = match rid {
                    _ if kind == TrackKind::Video && p.relay_mids.is_some() => relay_layer? as u8,
                    Some(r) => p.rids.iter().position(|x| *x == Some(r)).map(|i| i as u8).or_else(|| layer_of_rid(&r))?,
                    None => 0,
                };
                debug!(session = self.id, ?ssrc, ?kind, layer, "new incoming stream");
                p.ssrcs.push((ssrc, kind, layer));
                (kind, layer)
            }
        };
        let pt = pkt.header.payload_type;
        let params = *p.params.iter().find(|x| x.pt() == pt)?;
        let payload = pkt.payload;
        let bytes = payload.len();
        self.local.ingress_packets += 1;
        self.local.ingress_bytes += bytes as u64;
        let codec = codec::from_str0m(params.spec().codec)?;
        let (keyframe_start, vp8) = match kind {
            TrackKind::Audio => {
                p.audio_meter.add(now, bytes);
                if !p.source.active {
                    return None;
                }
                (false, None)
            }
            TrackKind::Video => {
                let vc = codec.video()?;
                // The one parse of this packet: keyframe start, frame size and VP8 descriptor.
                // A payload that does not parse is still forwarded, as neither a keyframe nor
                // rewritable.
                let parsed = codec::parse_video(vc, &payload).unwrap_or_default();
                if !p.source.active {
                    p.meters[usize::from(layer).min(MAX_LAYERS - 1)].add(now, bytes);
                    if parsed.keyframe_start {
                        p.throttle.keyframe_arrived(layer);
                    }
                    if !(p.source.pending && parsed.keyframe_start) {
                        return None;
                    }
                    // A backup ingest source takes its stream over on its own keyframe.
                    p.source.active = true;
                    p.source.pending = false;
                    p.video_pt = None;
                    self.stream.clear_layers();
                    self.stream.simulcast.store(p.simulcast, Ordering::Relaxed);
                    fx.took_over.push(self.id);
                }
                if p.video_pt != Some(*pt) || self.stream.codec() != Some(vc) {
                    // The format viewers are answered in: a relay's packets carry the format
                    // this node negotiated with its upstream node.
                    p.video_pt = Some(*pt);
                    match VideoFormat::from_params(&params) {
                        Some(f) => self.stream.set_video_format(f),
                        None => self.stream.set_codec(vc),
                    }
                }
                let counters = self.stream.layers.get(layer as usize)?;
                counters.packets.fetch_add(1, Ordering::Relaxed);
                if !counters.active.load(Ordering::Relaxed) {
                    counters.active.store(true, Ordering::Relaxed);
                }
                p.meters[layer as usize].add(now, bytes);
                if parsed.keyframe_start {
                    // Viewers waiting for this layer start on this keyframe: a request held
                    // back by the throttle is answered.
                    p.throttle.keyframe_arrived(layer);
                    if let Some((w, h)) = parsed.frame_size {
                        counters.width.store(w, Ordering::Relaxed);
                        counters.height.store(h, Ordering::Relaxed);
                    }
                }
                (parsed.keyframe_start, parsed.vp8)
            }
        };
        if kind == TrackKind::Audio {
            self.stream.audio.packets.fetch_add(1, Ordering::Relaxed);
        }
        let capture = p.clock.capture(*ssrc, pkt.header.timestamp, pkt.timestamp);
        Some(MediaPacket {
            stream_id: self.stream.id,
            generation: p.generation,
            kind,
            layer,
            codec,
            params,
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            marker: pkt.header.marker,
            keyframe_start,
            vp8,
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            arrival: pkt.timestamp,
            capture: capture.at,
            capture_synced: capture.synced,
            payload,
        })
    }

    /// Asks the publisher for a keyframe of `layer`, throttled per layer (a throttled request
    /// goes out when its interval ends, from [`Peer::housekeeping`]).
    pub fn request_keyframe(&mut self, layer: u8, reason: KeyframeReason, now: Instant) {
        let PeerRole::Publisher(p) = &mut self.role else { return };
        if p.throttle.allow(layer, reason, now) {
            self.send_keyframe_request(layer);
        }
    }

    /// When a keyframe request held back by the throttle is due to go out (publishers only):
    /// the worker services the peer by then even if str0m has nothing to do earlier.
    pub fn held_keyframe_due(&self) -> Option<Instant> {
        match &self.role {
            PeerRole::Publisher(p) => p.throttle.next_due(),
            _ => None,
        }
    }

    /// Sends a PLI for `layer` to the publisher, unthrottled.
    pub(super) fn send_keyframe_request(&mut self, layer: u8) {
        let PeerRole::Publisher(p) = &mut self.role else { return };
        let (mid, rid) = match p.relay_mids {
            Some(mids) => (mids[usize::from(layer).min(MAX_LAYERS - 1)], None),
            None => {
                let Some(mid) = p.video_mid else { return };
                (mid, p.rids.get(layer as usize).copied().flatten())
            }
        };
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
            debug!(session = self.id, layer, "requesting keyframe upstream");
            self.local.upstream_keyframe_requests += 1;
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.dirty = true;
        }
    }
}
