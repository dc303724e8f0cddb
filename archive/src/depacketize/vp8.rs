//! VP8 RTP payload format (RFC 7741).

use super::{DepacketizeError, PayloadFormat};

/// The fields of a VP8 payload descriptor (RFC 7741 section 4.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: non-reference frame.
    pub non_reference: bool,
    /// S: start of a VP8 partition.
    pub start_of_partition: bool,
    /// PID: partition index.
    pub partition_id: u8,
    /// 7- or 15-bit picture id, when present.
    pub picture_id: Option<u16>,
    /// TL0PICIDX, when present.
    pub tl0_pic_idx: Option<u8>,
    /// TID, when T is set.
    pub tid: Option<u8>,
    /// KEYIDX, when K is set.
    pub key_idx: Option<u8>,
    /// Length of the descriptor in bytes (where the VP8 payload starts).
    pub len: usize,
}

impl Vp8Descriptor {
    /// Parses the descriptor at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Self, DepacketizeError> {
        let b0 = *payload.first().ok_or(DepacketizeError::Truncated)?;
        let mut d = Self {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x0f,
            ..Self::default()
        };
        let mut i = 1;
        let next = |i: &mut usize| -> Result<u8, DepacketizeError> {
            let b = *payload.get(*i).ok_or(DepacketizeError::Truncated)?;
            *i += 1;
            Ok(b)
        };
        if b0 & 0x80 != 0 {
            let x = next(&mut i)?;
            if x & 0x80 != 0 {
                let p0 = next(&mut i)?;
                d.picture_id = Some(if p0 & 0x80 != 0 {
                    (u16::from(p0 & 0x7f) << 8) | u16::from(next(&mut i)?)
                } else {
                    u16::from(p0)
                });
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(next(&mut i)?);
            }
            if x & 0x30 != 0 {
                let tk = next(&mut i)?;
                if x & 0x20 != 0 {
                    d.tid = Some(tk >> 6);
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(tk & 0x1f);
                }
            }
        }
        d.len = i;
        Ok(d)
    }

    /// True when this packet starts a VP8 frame (S=1 and PID=0).
    pub fn starts_frame(&self) -> bool {
        self.start_of_partition && self.partition_id == 0
    }
}

/// The VP8 [`PayloadFormat`]: strips descriptors and concatenates partitions.
#[derive(Debug, Default)]
pub struct Vp8Format;

impl PayloadFormat for Vp8Format {
    fn append(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<bool, DepacketizeError> {
        let d = Vp8Descriptor::parse(payload)?;
        let body = &payload[d.len..];
        if body.is_empty() {
            return Err(DepacketizeError::Truncated);
        }
        if !frame.is_empty() && d.starts_frame() {
            return Err(DepacketizeError::Fragmentation(
                "second frame start in one frame",
            ));
        }
        frame.extend_from_slice(body);
        Ok(d.starts_frame())
    }

    fn finish(&mut self, frame: &[u8]) -> Result<bool, DepacketizeError> {
        let first = *frame.first().ok_or(DepacketizeError::Truncated)?;
        let keyframe = first & 0x01 == 0;
        if keyframe && frame_size(frame).is_none() {
            return Err(DepacketizeError::Unsupported(
                "VP8 key frame without a valid header",
            ));
        }
        Ok(keyframe)
    }

    fn reset(&mut self) {}
}

/// Width and height from a VP8 key frame's uncompressed header (RFC 6386 section 9.1).
pub fn frame_size(frame: &[u8]) -> Option<(u16, u16)> {
    let h = shiguredo_mp4::bitstream::vp8::parse_frame_header(frame).ok()?;
    h.keyframe.map(|k| (k.width, k.height))
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
    fn parses_descriptor_variants() {
        let d = Vp8Descriptor::parse(&[0x10, 0xff]).expect("short");
        assert!(d.starts_frame());
        assert_eq!(d.len, 1);
        // X, I with M (15-bit picture id), L, T and K.
        let d =
            Vp8Descriptor::parse(&[0x90, 0xf0, 0x81, 0x23, 0x07, 0b1010_0011, 0]).expect("full");
        assert_eq!(d.picture_id, Some(0x0123));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.tid, Some(2));
        assert_eq!(d.key_idx, Some(3));
        assert_eq!(d.len, 6);
        // X with 7-bit picture id only.
        let d = Vp8Descriptor::parse(&[0x80, 0x80, 0x15]).expect("7-bit");
        assert_eq!(d.picture_id, Some(0x15));
        assert!(!d.starts_frame());
        // Second partition start is not a frame start.
        let d = Vp8Descriptor::parse(&[0x11]).expect("pid 1");
        assert!(!d.starts_frame());
        // Truncated variants.
        assert!(Vp8Descriptor::parse(&[]).is_err());
        assert!(Vp8Descriptor::parse(&[0x90, 0x80, 0x81]).is_err());
        assert!(Vp8Descriptor::parse(&[0x90, 0x40]).is_err());
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
