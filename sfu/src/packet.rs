//! The shared packet buffer handed from a publisher to every subscriber, on any worker.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;

use crate::codec::{Codec, vp8};

/// What kind of track a packet belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    /// The stream's video; `layer` tells which simulcast layer.
    Video,
    /// The stream's audio.
    Audio,
}

/// One decrypted RTP packet of a published stream, parsed once and shared by all subscribers.
///
/// Built once per incoming packet on the publisher's worker; subscribers only read it.
#[derive(Debug)]
pub struct MediaPacket {
    /// Registry id of the stream this packet belongs to.
    pub stream_id: u64,
    /// Publisher generation: changes each time a publisher (re)connects to the stream.
    pub generation: u32,
    /// Video or audio.
    pub kind: TrackKind,
    /// Simulcast layer index (0 = q, 1 = h, 2 = f); 0 for audio and non-simulcast video.
    pub layer: u8,
    /// The packet's codec.
    pub codec: Codec,
    /// The publisher's codec parameters for this packet's payload type: a viewer's payload type
    /// is matched against them (format parameters such as H264 profiles included) once per
    /// publisher payload type.
    pub params: PayloadParams,
    /// Extended (never wrapping) source sequence number.
    pub seq: u64,
    /// Source RTP timestamp.
    pub ts: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// True on the first packet of a keyframe.
    pub keyframe_start: bool,
    /// The VP8 payload descriptor, parsed once on arrival (VP8 video only); viewers' PictureID
    /// and TL0PICIDX rewrites read it.
    pub vp8: Option<vp8::Descriptor>,
    /// Audio level header extension value, if the publisher sent one.
    pub audio_level: Option<i8>,
    /// Voice activity flag from the audio level extension.
    pub voice_activity: Option<bool>,
    /// When the packet arrived at the node.
    pub arrival: Instant,
    /// When the publisher captured it, as a local instant on the timeline its sender reports
    /// give all of its sources (see [`crate::clock`]); the arrival until its source's first
    /// report. Written with the packet downstream, so this node's sender reports carry it.
    pub capture: Instant,
    /// True when `capture` comes from the publisher's sender reports.
    pub capture_synced: bool,
    /// The RTP payload (no header), shared without copying.
    pub payload: Arc<[u8]>,
}

/// A VP8 test packet of a stream (id 1) with a 15-bit picture id `pid` and TL0PICIDX `pid`.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn test_packet(
    generation: u32,
    kind: TrackKind,
    layer: u8,
    seq: u64,
    ts: u32,
    keyframe_start: bool,
    pid: u16,
    arrival: Instant,
) -> MediaPacket {
    use str0m::format::{Codec, CodecSpec, FormatParams};
    use str0m::media::Frequency;
    MediaPacket {
        stream_id: 1,
        generation,
        kind,
        layer,
        codec: if kind == TrackKind::Video { crate::codec::Codec::Vp8 } else { crate::codec::Codec::Opus },
        params: PayloadParams::new(
            96.into(),
            None,
            CodecSpec { codec: Codec::Vp8, clock_rate: Frequency::NINETY_KHZ, channels: None, format: FormatParams::default() },
        ),
        seq,
        ts,
        marker: false,
        keyframe_start,
        vp8: (kind == TrackKind::Video).then_some(vp8::Descriptor {
            picture_id: Some(pid),
            picture_id_15bit: true,
            tl0_pic_idx: Some(pid as u8),
            tid: Some(0),
            start_of_partition: true,
            starts_keyframe: keyframe_start,
            len: 6,
            ..vp8::Descriptor::default()
        }),
        audio_level: None,
        voice_activity: None,
        arrival,
        capture: arrival,
        capture_synced: false,
        payload: Arc::from(&[0u8; 8][..]),
    }
}
