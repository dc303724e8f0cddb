//! Turning ordered RTP packets into whole codec frames (VP8, H264, Opus).
//!
//! The payload formats' headers (VP8 descriptors, H264 STAP-A and FU-A, Opus TOC) are parsed by
//! `relaycast-codec`, the same parsers the SFU's forwarding path uses; this module reassembles.

pub mod h264;
pub mod opus;
pub mod vp8;

use std::time::Instant;

use crate::rtp::RtpPacket;

/// Largest frame accepted; bigger ones are dropped as corrupt.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// One complete coded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// RTP timestamp shared by the frame's packets.
    pub timestamp: u32,
    /// Arrival time of the frame's first packet.
    pub arrival: Instant,
    /// Capture time of the frame's first packet, when its track has had a sender report.
    pub capture: Option<Instant>,
    /// True for a frame that decodes on its own (VP8 key frame, H264 IDR, every Opus packet).
    pub keyframe: bool,
    /// The frame in the form the muxer stores (VP8 frame, H264 4-byte length-prefixed NAL units,
    /// Opus packet).
    pub data: Vec<u8>,
}

/// Why a payload could not be depacketized.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DepacketizeError {
    /// The payload is shorter than its headers say.
    #[error("payload truncated")]
    Truncated,
    /// A payload type or structure the depacketizer does not support.
    #[error("unsupported payload: {0}")]
    Unsupported(&'static str),
    /// Fragments arrived in an impossible order.
    #[error("fragmentation error: {0}")]
    Fragmentation(&'static str),
    /// The assembled frame exceeds [`MAX_FRAME_BYTES`].
    #[error("frame too large")]
    TooLarge,
}

impl From<relaycast_codec::CodecError> for DepacketizeError {
    fn from(e: relaycast_codec::CodecError) -> Self {
        match e {
            relaycast_codec::CodecError::Truncated => Self::Truncated,
            relaycast_codec::CodecError::Malformed(why)
            | relaycast_codec::CodecError::Unsupported(why) => Self::Unsupported(why),
        }
    }
}

/// The codec-specific part of depacketizing: how one payload adds to a frame.
pub trait PayloadFormat {
    /// Appends the media carried by `payload` to `frame`; returns true if the payload may begin
    /// a frame (so a frame whose first packet says false is incomplete).
    fn append(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<bool, DepacketizeError>;
    /// Checks a finished frame and says whether it is a keyframe; called once per frame.
    fn finish(&mut self, frame: &[u8]) -> Result<bool, DepacketizeError>;
    /// Forgets any partial per-frame state (a new frame begins).
    fn reset(&mut self);
    /// True when every packet is a frame of its own (audio).
    fn packet_is_frame(&self) -> bool {
        false
    }
}

/// Counters describing what a [`Depacketizer`] dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DepacketizeStats {
    /// Frames emitted.
    pub frames: u64,
    /// Frames dropped because packets were missing or payloads malformed.
    pub corrupt_frames: u64,
    /// Complete frames dropped while waiting for a keyframe after a loss.
    pub skipped_waiting_keyframe: u64,
}

#[derive(Debug)]
struct Partial {
    timestamp: u32,
    arrival: Instant,
    capture: Option<Instant>,
    data: Vec<u8>,
    ok: bool,
}

/// Assembles frames from in-order packets using a [`PayloadFormat`].
///
/// A frame ends at the marker bit or when the timestamp changes. A frame with a sequence gap or a
/// malformed payload inside is dropped, and after that only a keyframe is emitted next.
#[derive(Debug)]
pub struct Depacketizer<P> {
    format: P,
    cur: Option<Partial>,
    need_keyframe: bool,
    stats: DepacketizeStats,
}

impl<P: PayloadFormat> Depacketizer<P> {
    /// Creates a depacketizer that waits for a first keyframe.
    pub fn new(format: P) -> Self {
        Self {
            format,
            cur: None,
            need_keyframe: true,
            stats: DepacketizeStats::default(),
        }
    }

    /// The codec-specific state (for example captured H264 parameter sets).
    pub fn format(&self) -> &P {
        &self.format
    }

    /// What was emitted and dropped so far.
    pub fn stats(&self) -> DepacketizeStats {
        self.stats
    }

    /// True while frames are being dropped until the next keyframe.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.need_keyframe
    }

    /// Feeds the next packet in sequence order; `lost_before` says packets before it were given
    /// up on. Completed frames are appended to `out`.
    pub fn push(&mut self, pkt: &RtpPacket, lost_before: bool, out: &mut Vec<Frame>) {
        if lost_before {
            // Lost packets carried (part of) some frame: the reference chain is broken.
            match self.cur.as_mut() {
                Some(cur) => cur.ok = false,
                None if !self.format.packet_is_frame() => {
                    self.stats.corrupt_frames += 1;
                    self.need_keyframe = true;
                }
                None => {}
            }
        }
        if self
            .cur
            .as_ref()
            .is_some_and(|c| c.timestamp != pkt.timestamp)
        {
            self.finish(out);
        }
        let cur = self.cur.get_or_insert_with(|| {
            self.format.reset();
            Partial {
                timestamp: pkt.timestamp,
                arrival: pkt.arrival,
                capture: pkt.capture,
                data: Vec::new(),
                ok: true,
            }
        });
        if cur.ok {
            let first = cur.data.is_empty();
            match self.format.append(&pkt.payload, &mut cur.data) {
                Ok(starts) => {
                    if first && !starts {
                        cur.ok = false;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, seq = pkt.seq, "dropping malformed payload");
                    cur.ok = false;
                }
            }
            if cur.data.len() > MAX_FRAME_BYTES {
                cur.ok = false;
            }
            if !cur.ok {
                cur.data = Vec::new();
            }
        }
        if pkt.marker || self.format.packet_is_frame() {
            self.finish(out);
        }
    }

    /// Ends the frame in progress (at end of stream).
    pub fn flush(&mut self, out: &mut Vec<Frame>) {
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(cur) = self.cur.take() else { return };
        let keyframe = if cur.ok && !cur.data.is_empty() {
            self.format.finish(&cur.data).ok()
        } else {
            None
        };
        self.format.reset();
        match keyframe {
            None => {
                self.stats.corrupt_frames += 1;
                self.need_keyframe = true;
            }
            Some(false) if self.need_keyframe => self.stats.skipped_waiting_keyframe += 1,
            Some(keyframe) => {
                if keyframe {
                    self.need_keyframe = false;
                }
                self.stats.frames += 1;
                out.push(Frame {
                    timestamp: cur.timestamp,
                    arrival: cur.arrival,
                    capture: cur.capture,
                    keyframe,
                    data: cur.data,
                });
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::sync::Arc;
    use std::time::Instant;

    use crate::rtp::{MediaKind, RtpPacket};

    /// A VP8 key frame (frame tag, start code, `width`×`height`) followed by `extra` filler bytes.
    pub fn vp8_keyframe(width: u16, height: u16, extra: usize) -> Vec<u8> {
        let size = (extra as u32) << 5; // first_partition_size in bits 5..24
        let tag = size | 0x10; // key frame (bit0 = 0), version 0, show_frame
        let mut f = vec![
            tag as u8,
            (tag >> 8) as u8,
            (tag >> 16) as u8,
            0x9d,
            0x01,
            0x2a,
        ];
        f.extend_from_slice(&width.to_le_bytes());
        f.extend_from_slice(&height.to_le_bytes());
        f.extend(std::iter::repeat_n(0xaa, extra));
        f
    }

    /// A video packet for depacketizer tests.
    pub fn pkt(seq: u64, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            kind: MediaKind::Video,
            seq,
            timestamp: ts,
            marker,
            payload: Arc::from(payload),
            arrival: Instant::now(),
            capture: None,
        }
    }
}
