//! RTP as the archive takes it off the media tap, Opus packets, and the whole recorder.

use std::time::{Duration, Instant};

use crate::input::Input;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("rtp", rtp),
    ("opus", opus),
    ("recorder", recorder),
];

/// RTP as the archive parses it off the media tap: header, payload bounds, sequence and
/// timestamp unwrapping over a run of packets (each a 16-bit-length-prefixed chunk).
pub fn rtp(data: &[u8]) {
    use relaycast_archive::rtp::{MediaKind, RtpHeader, SeqUnwrapper, TsUnwrapper};
    let mut seq = SeqUnwrapper::default();
    let mut ts = TsUnwrapper::default();
    let now = Instant::now();
    let mut input = Input(data);
    let mut packets = 0;
    while !input.is_empty() && packets < 256 {
        packets += 1;
        let buf = input.chunk();
        if let Ok(h) = RtpHeader::parse(buf) {
            assert!(h.payload.start <= h.payload.end && h.payload.end <= buf.len());
            ts.extend(h.timestamp);
        }
        if let Ok(p) = relaycast_archive::RtpPacket::from_bytes(buf, MediaKind::Video, &mut seq, now) {
            assert!(p.payload.len() <= buf.len());
        }
    }
}

/// Opus packets: the archive's TOC parse for the packet's duration.
pub fn opus(data: &[u8]) {
    if let Some(d) = relaycast_archive::depacketize::opus::packet_duration(data) {
        assert!(d <= 120 * 48, "an Opus packet lasts at most 120 ms");
    }
}

/// A run of RTP packets through the archive's whole recorder: reorder buffer, depacketizer
/// (VP8 or H264 by the first byte, plus Opus), segmenter and fMP4 muxer (which reads the SPS).
/// Each packet: a flags byte (bit 0 audio, bits 1..7 milliseconds to advance), then a
/// 16-bit-length-prefixed RTP packet.
pub fn recorder(data: &[u8]) {
    use relaycast_archive::rtp::{MediaKind, SeqUnwrapper};
    use relaycast_archive::{Recorder, RecorderConfig, VideoCodec};
    let mut input = Input(data);
    let video = if input.byte() & 1 == 0 { VideoCodec::Vp8 } else { VideoCodec::H264 };
    let start = Instant::now();
    let mut rec = Recorder::with_clock(
        RecorderConfig { video: Some(video), ..RecorderConfig::default() },
        start,
        std::time::SystemTime::UNIX_EPOCH,
    );
    let (mut vseq, mut aseq) = (SeqUnwrapper::default(), SeqUnwrapper::default());
    let mut now = start;
    let mut packets = 0;
    while !input.is_empty() && packets < 1024 {
        packets += 1;
        let flags = input.byte();
        now += Duration::from_millis(u64::from(flags >> 1));
        let (kind, seq) = if flags & 1 == 1 { (MediaKind::Audio, &mut aseq) } else { (MediaKind::Video, &mut vseq) };
        if let Ok(p) = relaycast_archive::RtpPacket::from_bytes(input.chunk(), kind, seq, now) {
            rec.push(p, now);
        }
        rec.poll(now);
    }
    rec.finish();
    let _ = rec.init_segment();
}
