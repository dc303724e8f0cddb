//! The SFU's tap events in the core's terms.

use relaycast_archive::{MediaKind, RtpPacket, VideoCodec};
use relaycast_sfu::packet::{MediaPacket, TrackKind};
use relaycast_sfu::tap::TapEvent;

use crate::core::{TapInput, TapPacket};

impl From<TapEvent> for TapInput {
    fn from(ev: TapEvent) -> Self {
        input(ev)
    }
}

/// Converts one tap event for [`crate::core::Core::handle`].
pub fn input(ev: TapEvent) -> TapInput {
    match ev {
        TapEvent::Started { stream_id, stream, generation } => TapInput::Started { stream_id, stream, generation },
        TapEvent::Ended { stream_id, generation } => TapInput::Ended { stream_id, generation },
        TapEvent::Packet(pkt) => TapInput::Packet(packet(&pkt)),
    }
}

/// One tap packet as the core sees it (the payload is shared, not copied).
pub fn packet(pkt: &MediaPacket) -> TapPacket {
    let kind = match pkt.kind {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video => MediaKind::Video,
    };
    TapPacket {
        stream_id: pkt.stream_id,
        generation: pkt.generation,
        layer: pkt.layer,
        keyframe_start: pkt.keyframe_start,
        codec: video_codec(pkt),
        rtp: RtpPacket {
            kind,
            seq: pkt.seq,
            timestamp: pkt.ts,
            marker: pkt.marker,
            payload: pkt.payload.clone(),
            arrival: pkt.arrival,
            capture: pkt.capture_synced.then_some(pkt.capture),
        },
    }
}

/// The video codec a packet's payload is recorded as: the only place the packet's codec is read.
fn video_codec(pkt: &MediaPacket) -> VideoCodec {
    pkt.codec.video().unwrap_or(VideoCodec::Vp8)
}
