//! VP8 RTP payload format (RFC 7741).

use relaycast_codec::vp8;

use super::{DepacketizeError, PayloadFormat};

/// Width and height from a VP8 key frame's uncompressed header (RFC 6386 section 9.1).
pub use relaycast_codec::vp8::keyframe_size as frame_size;

/// The VP8 [`PayloadFormat`]: strips descriptors and concatenates partitions.
#[derive(Debug, Default)]
pub struct Vp8Format;

impl PayloadFormat for Vp8Format {
    fn append(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<bool, DepacketizeError> {
        // The descriptor parse fails when no VP8 byte follows it: the body is never empty.
        let d = vp8::Descriptor::parse(payload)?;
        let body = payload.get(d.len..).ok_or(DepacketizeError::Truncated)?;
        if !frame.is_empty() && d.starts_frame() {
            return Err(DepacketizeError::Fragmentation(
                "second frame start in one frame",
            ));
        }
        frame.extend_from_slice(body);
        Ok(d.starts_frame())
    }

    fn finish(&mut self, frame: &[u8]) -> Result<bool, DepacketizeError> {
        // The frame tag's P bit; a key frame must carry a valid header (start code, size).
        let first = *frame.first().ok_or(DepacketizeError::Truncated)?;
        let keyframe = first & 0x01 == 0;
        if keyframe {
            vp8::parse_frame_header(frame)?;
        }
        Ok(keyframe)
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Depacketizer;
    use crate::depacketize::test_util::pkt;

    /// A minimal VP8 key frame header for 640x360 followed by `extra` filler bytes.
    pub(crate) fn keyframe(extra: usize) -> Vec<u8> {
        crate::depacketize::test_util::vp8_keyframe(640, 360, extra)
    }

    #[test]
    fn assembles_a_fragmented_keyframe_and_reads_its_size() {
        let kf = keyframe(40);
        let mut d = Depacketizer::new(Vp8Format);
        let mut out = Vec::new();
        let mut p1 = vec![0x90, 0x80, 0x05];
        p1.extend_from_slice(&kf[..20]);
        let mut p2 = vec![0x80, 0x80, 0x05];
        p2.extend_from_slice(&kf[20..]);
        d.push(&pkt(1, 3000, false, &p1), false, &mut out);
        assert!(out.is_empty());
        d.push(&pkt(2, 3000, true, &p2), false, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(out[0].data, kf);
        assert_eq!(frame_size(&out[0].data), Some((640, 360)));
    }

    #[test]
    fn frame_with_missing_start_is_dropped_until_next_keyframe() {
        let kf = keyframe(10);
        let mut d = Depacketizer::new(Vp8Format);
        let mut out = Vec::new();
        let mut p = vec![0x10];
        p.extend_from_slice(&kf);
        d.push(&pkt(1, 0, true, &p), false, &mut out);
        // Inter frame whose first packet was lost: continuation only.
        d.push(&pkt(3, 3000, true, &[0x00, 0x01, 0x02]), true, &mut out);
        // A complete inter frame is still skipped: the decoder lost a reference.
        d.push(&pkt(4, 6000, true, &[0x10, 0x01, 0x02]), false, &mut out);
        d.push(&pkt(5, 9000, true, &p), false, &mut out);
        d.push(&pkt(6, 12000, true, &[0x10, 0x01, 0x02]), false, &mut out);
        let ts: Vec<(u32, bool)> = out.iter().map(|f| (f.timestamp, f.keyframe)).collect();
        assert_eq!(ts, vec![(0, true), (9000, true), (12000, false)]);
        // The lost packet's frame and the continuation-only frame.
        assert_eq!(d.stats().corrupt_frames, 2);
        assert_eq!(d.stats().skipped_waiting_keyframe, 1);
    }

    #[test]
    fn gap_inside_a_frame_drops_it_and_timestamp_change_ends_frames() {
        let kf = keyframe(10);
        let mut d = Depacketizer::new(Vp8Format);
        let mut out = Vec::new();
        let mut p = vec![0x10];
        p.extend_from_slice(&kf[..8]);
        d.push(&pkt(1, 0, false, &p), false, &mut out);
        d.push(&pkt(3, 0, true, &[0x00, 1]), true, &mut out);
        assert!(out.is_empty());
        // A key frame without marker bit ends when the next timestamp appears.
        let mut whole = vec![0x10];
        whole.extend_from_slice(&kf);
        d.push(&pkt(4, 3000, false, &whole), false, &mut out);
        d.push(&pkt(5, 6000, true, &[0x10, 0x01]), false, &mut out);
        assert_eq!(
            out.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            vec![3000, 6000]
        );
    }

    #[test]
    fn malformed_payloads_never_panic() {
        let mut d = Depacketizer::new(Vp8Format);
        let mut out = Vec::new();
        for (i, p) in [
            &[][..],
            &[0x90],
            &[0x10],
            &[0x90, 0xff, 0xff],
            &[0x10, 0x00, 0x9d],
        ]
        .iter()
        .enumerate()
        {
            d.push(&pkt(i as u64, i as u32, true, p), false, &mut out);
        }
        assert!(out.is_empty());
    }
}
