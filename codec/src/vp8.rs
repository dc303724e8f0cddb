//! VP8: the RTP payload descriptor (RFC 7741 section 4.2), the key frame header (RFC 6386
//! section 9.1), and the PictureID / TL0PICIDX rewrite an SFU applies per viewer.

use crate::CodecError;

/// A parsed VP8 payload descriptor, plus whether the packet starts a key frame.
///
/// ```text
///  X R N S R PID      (PID: 3-bit partition index)
///  I L T K RSV        (when X)
///  M PictureID        (when I; 7 bits, or 15 bits when M)
///  TL0PICIDX          (when L)
///  TID Y KEYIDX       (when T or K)
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// N: a non-reference frame.
    pub non_reference: bool,
    /// S: the packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_index: u8,
    /// PictureID (7 or 15 bits, without the M bit), when present.
    pub picture_id: Option<u16>,
    /// Whether the PictureID field is the 15-bit form (M bit set).
    pub picture_id_15bit: bool,
    /// TL0PICIDX, when present.
    pub tl0_pic_idx: Option<u8>,
    /// TID (temporal layer index), when T is set.
    pub tid: Option<u8>,
    /// Y (layer sync) bit; false when T is clear.
    pub layer_sync: bool,
    /// KEYIDX, when K is set.
    pub key_idx: Option<u8>,
    /// Length of the descriptor in bytes: where the VP8 payload starts.
    pub len: usize,
    /// S set, partition 0, and the VP8 payload header's P bit clear: a key frame's first packet.
    pub starts_keyframe: bool,
}

/// Offset of the PictureID field when present (after the required and extension bytes).
const PICTURE_ID_OFFSET: usize = 2;

impl Descriptor {
    /// Parses the descriptor at the start of an RTP payload.
    ///
    /// Fails when the payload ends inside the descriptor or has no VP8 payload byte after it
    /// ([`CodecError::Truncated`]), or when L is set without T ([`CodecError::Malformed`]).
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        let mut off = 0usize;
        let mut next = || -> Result<u8, CodecError> {
            let b = *payload.get(off).ok_or(CodecError::Truncated)?;
            off = off.checked_add(1).ok_or(CodecError::Truncated)?;
            Ok(b)
        };
        let b0 = next()?;
        let mut d = Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_index: b0 & 0x07,
            ..Descriptor::default()
        };
        if b0 & 0x80 != 0 {
            let ext = next()?;
            let (has_pid, has_tl0, has_tid, has_keyidx) = (
                ext & 0x80 != 0,
                ext & 0x40 != 0,
                ext & 0x20 != 0,
                ext & 0x10 != 0,
            );
            if has_tl0 && !has_tid {
                return Err(CodecError::Malformed("VP8 TL0PICIDX without TID"));
            }
            if has_pid {
                let m = next()?;
                if m & 0x80 != 0 {
                    let low = next()?;
                    d.picture_id = Some((u16::from(m & 0x7f) << 8) | u16::from(low));
                    d.picture_id_15bit = true;
                } else {
                    d.picture_id = Some(u16::from(m & 0x7f));
                }
            }
            if has_tl0 {
                d.tl0_pic_idx = Some(next()?);
            }
            if has_tid || has_keyidx {
                let tk = next()?;
                if has_tid {
                    d.tid = Some(tk >> 6);
                    d.layer_sync = tk & 0x20 != 0;
                }
                if has_keyidx {
                    d.key_idx = Some(tk & 0x1f);
                }
            }
        }
        d.len = off;
        let header = *payload.get(off).ok_or(CodecError::Truncated)?;
        d.starts_keyframe = d.starts_frame() && header & 0x01 == 0;
        Ok(d)
    }

    /// True when this packet starts a VP8 frame (S set, partition index 0).
    pub fn starts_frame(&self) -> bool {
        self.start_of_partition && self.partition_index == 0
    }

    /// Offset of the PictureID field in the payload, when present.
    pub fn picture_id_offset(&self) -> Option<usize> {
        self.picture_id.map(|_| PICTURE_ID_OFFSET)
    }

    /// Offset of the TL0PICIDX field in the payload, when present.
    pub fn tl0_pic_idx_offset(&self) -> Option<usize> {
        let pid_len = match (self.picture_id, self.picture_id_15bit) {
            (None, _) => 0,
            (Some(_), false) => 1,
            (Some(_), true) => 2,
        };
        self.tl0_pic_idx.map(|_| PICTURE_ID_OFFSET + pid_len)
    }

    /// The rewrite that gives this descriptor the output `picture_id` and `tl0_pic_idx`: only
    /// fields the descriptor carries and whose value changes, the PictureID cut to the field's
    /// width (7 or 15 bits). None when nothing changes.
    pub fn rewrite(&self, picture_id: Option<u16>, tl0_pic_idx: Option<u8>) -> Option<Rewrite> {
        let mask = if self.picture_id_15bit { 0x7fff } else { 0x7f };
        let rw = Rewrite {
            picture_id: picture_id
                .zip(self.picture_id)
                .map(|(out, src)| (out & mask, src))
                .filter(|(o, s)| o != s)
                .map(|(o, _)| o),
            tl0_pic_idx: tl0_pic_idx
                .zip(self.tl0_pic_idx)
                .filter(|(o, s)| o != s)
                .map(|(o, _)| o),
        };
        (rw.picture_id.is_some() || rw.tl0_pic_idx.is_some()).then_some(rw)
    }

    /// The byte writes that apply `rw` to the payload this descriptor was parsed from: up to
    /// three (offset, byte) pairs, the PictureID keeping its M bit.
    pub fn rewrite_bytes(&self, rw: &Rewrite) -> impl Iterator<Item = (usize, u8)> {
        let mut out = [None; 3];
        if let (Some(pid), Some(at)) = (rw.picture_id, self.picture_id_offset()) {
            if self.picture_id_15bit {
                out[0] = Some((at, 0x80 | ((pid >> 8) as u8 & 0x7f)));
                out[1] = at.checked_add(1).map(|at| (at, pid as u8));
            } else {
                out[0] = Some((at, pid as u8 & 0x7f));
            }
        }
        if let (Some(tl0), Some(at)) = (rw.tl0_pic_idx, self.tl0_pic_idx_offset()) {
            out[2] = Some((at, tl0));
        }
        out.into_iter().flatten()
    }

    /// Applies `rw` to `payload` in place (a copy of the payload this descriptor was parsed
    /// from); fails without writing when the payload is shorter than the descriptor.
    pub fn apply(&self, rw: &Rewrite, payload: &mut [u8]) -> Result<(), CodecError> {
        if payload.len() <= self.len {
            return Err(CodecError::Truncated);
        }
        for (at, byte) in self.rewrite_bytes(rw) {
            *payload.get_mut(at).ok_or(CodecError::Truncated)? = byte;
        }
        Ok(())
    }
}

/// New values for a descriptor's PictureID and TL0PICIDX (see [`Descriptor::rewrite`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The PictureID to write (already cut to the field's width), if it changes.
    pub picture_id: Option<u16>,
    /// The TL0PICIDX to write, if it changes.
    pub tl0_pic_idx: Option<u8>,
}

/// The uncompressed header at the start of a VP8 frame (RFC 6386 section 9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// True for a key frame (frame tag bit 0 clear).
    pub keyframe: bool,
    /// Version (0..=3).
    pub version: u8,
    /// Whether the frame is shown.
    pub show_frame: bool,
    /// Size of the first partition in bytes.
    pub first_partition_size: u32,
    /// Width and height (14 bits each, scaling bits dropped), key frames only.
    pub size: Option<(u16, u16)>,
}

/// Parses the frame tag (and, for a key frame, start code and size) of a VP8 frame.
///
/// Fails on fewer than 3 bytes (10 for a key frame), a reserved version (4..=7), a key frame
/// whose start code is not 9d 01 2a, or a zero width or height.
pub fn parse_frame_header(frame: &[u8]) -> Result<FrameHeader, CodecError> {
    let tag = frame.get(..3).ok_or(CodecError::Truncated)?;
    let tag = u32::from(tag[0]) | (u32::from(tag[1]) << 8) | (u32::from(tag[2]) << 16);
    let keyframe = tag & 0x01 == 0;
    let version = ((tag >> 1) & 0x07) as u8;
    if version > 3 {
        return Err(CodecError::Malformed("VP8 reserved version"));
    }
    let mut h = FrameHeader {
        keyframe,
        version,
        show_frame: tag & 0x10 != 0,
        first_partition_size: tag >> 5,
        size: None,
    };
    if keyframe {
        let k = frame.get(3..10).ok_or(CodecError::Truncated)?;
        if k[..3] != [0x9d, 0x01, 0x2a] {
            return Err(CodecError::Malformed("VP8 key frame start code"));
        }
        let width = u16::from_le_bytes([k[3], k[4]]) & 0x3fff;
        let height = u16::from_le_bytes([k[5], k[6]]) & 0x3fff;
        if width == 0 || height == 0 {
            return Err(CodecError::Malformed("VP8 key frame of zero size"));
        }
        h.size = Some((width, height));
    }
    Ok(h)
}

/// Width and height of a VP8 key frame (the frame, or its first packet's payload after the
/// descriptor); None for an inter frame or a malformed header.
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    parse_frame_header(frame).ok()?.size
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// libvpx 1280x720 keyframe start: frame tag, start code, width, height, first data bytes.
    const KEY: [u8; 12] = [
        0x90, 0x77, 0x01, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02, 0x00, 0x07,
    ];
    /// libvpx interframe start.
    const INTER: [u8; 8] = [0xb1, 0x0e, 0x00, 0x13, 0x11, 0xfc, 0x00, 0x18];

    fn cat(desc: &[u8], body: &[u8]) -> Vec<u8> {
        desc.iter().chain(body).copied().collect()
    }

    #[test]
    fn every_descriptor_layout() {
        // X S; I L T K; 15-bit PictureID 0x1234; TL0PICIDX 0x56; TID 2, Y, KEYIDX 3.
        let d = Descriptor::parse(&cat(&[0x90, 0xf0, 0x92, 0x34, 0x56, 0b1010_0011], &INTER))
            .expect("full");
        let want = Descriptor {
            start_of_partition: true,
            picture_id: Some(0x1234),
            picture_id_15bit: true,
            tl0_pic_idx: Some(0x56),
            tid: Some(2),
            layer_sync: true,
            key_idx: Some(3),
            len: 6,
            ..Descriptor::default()
        };
        assert_eq!(d, want);
        assert_eq!(
            (d.picture_id_offset(), d.tl0_pic_idx_offset()),
            (Some(2), Some(4))
        );
        // 7-bit PictureID only, N set, no S; partition 5.
        let d = Descriptor::parse(&cat(&[0xa5, 0x80, 0x85 & 0x7f], &INTER)).expect("7-bit");
        assert_eq!(
            (d.picture_id, d.picture_id_15bit, d.len),
            (Some(5), false, 3)
        );
        assert!(d.non_reference && !d.start_of_partition && d.partition_index == 5);
        // 7-bit PictureID and TL0PICIDX: TL0PICIDX right after the one-byte id.
        let d = Descriptor::parse(&cat(&[0x80, 0xe0, 0x05, 0x09, 0x40], &INTER)).expect("7-bit, L");
        assert_eq!(
            (d.tl0_pic_idx, d.tl0_pic_idx_offset(), d.tid, d.layer_sync),
            (Some(9), Some(3), Some(1), false)
        );
        // L and T without I; K alone; X with no fields; no X at all.
        let d = Descriptor::parse(&cat(&[0x80, 0x60, 0x07, 0xc0], &INTER)).expect("L T");
        assert_eq!(
            (d.picture_id_offset(), d.tl0_pic_idx_offset(), d.tid),
            (None, Some(2), Some(3))
        );
        let d = Descriptor::parse(&cat(&[0x80, 0x10, 0x1f], &INTER)).expect("K");
        assert_eq!((d.key_idx, d.tid, d.len), (Some(31), None, 3));
        assert_eq!(
            Descriptor::parse(&cat(&[0x80, 0x00], &INTER)).map(|d| d.len),
            Ok(2)
        );
        assert_eq!(
            Descriptor::parse(&[0x10, 0x00]).map(|d| (d.len, d.starts_frame())),
            Ok((1, true))
        );
    }

    #[test]
    fn truncated_and_malformed_descriptors() {
        assert_eq!(Descriptor::parse(&[]), Err(CodecError::Truncated));
        // Nothing after the descriptor.
        assert_eq!(Descriptor::parse(&[0x10]), Err(CodecError::Truncated));
        assert_eq!(
            Descriptor::parse(&[0x90, 0x80, 0x81]),
            Err(CodecError::Truncated)
        );
        assert!(matches!(
            Descriptor::parse(&[0x90, 0x40, 0x01, 0x00]),
            Err(CodecError::Malformed(_))
        ));
        let full = [0x90, 0xf0, 0x92, 0x34, 0x56, 0x40, 0x00];
        for len in 0..full.len() {
            assert_eq!(
                Descriptor::parse(&full[..len]),
                Err(CodecError::Truncated),
                "len {len}"
            );
        }
        assert!(Descriptor::parse(&full).is_ok());
    }

    #[test]
    fn keyframe_starts() {
        for desc in [&[0x10][..], &[0x90, 0x80, 0x81, 0x00], &[0x90, 0x10, 0x05]] {
            let p = cat(desc, &KEY);
            let d = Descriptor::parse(&p).expect("valid");
            assert!(d.starts_keyframe);
            assert_eq!(keyframe_size(&p[d.len..]), Some((1280, 720)));
        }
        // Interframe, continuation packet, other partition.
        for p in [cat(&[0x10], &INTER), cat(&[0x00], &KEY), cat(&[0x11], &KEY)] {
            assert!(
                !Descriptor::parse(&p).expect("valid").starts_keyframe,
                "{p:02x?}"
            );
        }
    }

    #[test]
    fn frame_headers() {
        let h = parse_frame_header(&KEY).expect("key");
        assert_eq!(
            h,
            FrameHeader {
                keyframe: true,
                version: 0,
                show_frame: true,
                first_partition_size: 0x01_7790 >> 5,
                size: Some((1280, 720))
            }
        );
        let h = parse_frame_header(&INTER).expect("inter");
        assert!(!h.keyframe && h.size.is_none());
        assert_eq!(keyframe_size(&INTER), None);
        // Scaling bits are dropped.
        let mut k = KEY;
        k[7] |= 0xc0;
        k[9] |= 0x40;
        assert_eq!(keyframe_size(&k), Some((1280, 720)));
        // Short, bad start code, zero size, reserved version.
        assert_eq!(parse_frame_header(&KEY[..2]), Err(CodecError::Truncated));
        assert_eq!(parse_frame_header(&KEY[..9]), Err(CodecError::Truncated));
        let mut bad = KEY;
        bad[4] = 0x9c;
        assert!(matches!(
            parse_frame_header(&bad),
            Err(CodecError::Malformed(_))
        ));
        let mut zero = KEY;
        zero[6..8].copy_from_slice(&[0, 0xc0]);
        assert!(parse_frame_header(&zero).is_err());
        let mut v4 = KEY;
        v4[0] |= 0x08;
        assert!(parse_frame_header(&v4).is_err());
    }

    #[test]
    fn rewrites_write_the_right_bytes() {
        let p = cat(&[0x90, 0xe0, 0x92, 0x34, 0x56, 0x40], &INTER);
        let d = Descriptor::parse(&p).expect("valid");
        assert_eq!(d.rewrite(Some(0x1234), Some(0x56)), None, "unchanged");
        assert_eq!(d.rewrite(None, None), None);
        let rw = d.rewrite(Some(0xffff), Some(7)).expect("changes");
        assert_eq!(
            rw,
            Rewrite {
                picture_id: Some(0x7fff),
                tl0_pic_idx: Some(7)
            }
        );
        assert_eq!(
            d.rewrite_bytes(&rw).collect::<Vec<_>>(),
            vec![(2, 0xff), (3, 0xff), (4, 7)]
        );
        let mut out = p.clone();
        d.apply(&rw, &mut out).expect("fits");
        let again = Descriptor::parse(&out).expect("still valid");
        assert_eq!(
            (again.picture_id, again.picture_id_15bit, again.tl0_pic_idx),
            (Some(0x7fff), true, Some(7))
        );
        assert_eq!(out[5..], p[5..]);
        assert_eq!(d.apply(&rw, &mut out[..6]), Err(CodecError::Truncated));
        // 7-bit ids are cut to 7 bits; an absent TL0PICIDX is skipped.
        let p = cat(&[0x90, 0x80, 0x05], &INTER);
        let d = Descriptor::parse(&p).expect("valid");
        let rw = d.rewrite(Some(0x17f), Some(9)).expect("pid");
        assert_eq!(
            rw,
            Rewrite {
                picture_id: Some(0x7f),
                tl0_pic_idx: None
            }
        );
        assert_eq!(d.rewrite_bytes(&rw).collect::<Vec<_>>(), vec![(2, 0x7f)]);
        assert_eq!(d.rewrite(Some(0x105), None), None);
        // No extension fields: nothing to rewrite.
        assert_eq!(
            Descriptor::parse(&[0x10, 0x9d])
                .expect("valid")
                .rewrite(Some(5), Some(5)),
            None
        );
    }

    #[test]
    fn random_payloads_never_panic_and_rewrites_roundtrip() {
        let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
        for _ in 0..20_000 {
            let len = rng.random_range(0..24usize);
            let mut buf = [0u8; 24];
            rng.fill(&mut buf[..len]);
            if len > 0 && rng.random_bool(0.5) {
                buf[0] |= 0x80;
            }
            let p = &buf[..len];
            let _ = parse_frame_header(p);
            let Ok(d) = Descriptor::parse(p) else {
                continue;
            };
            assert!(d.len < p.len());
            let (pid, tl0) = (rng.random::<u16>(), rng.random::<u8>());
            if let Some(rw) = d.rewrite(Some(pid), Some(tl0)) {
                let mut out = p.to_vec();
                d.apply(&rw, &mut out).expect("fits");
                let again = Descriptor::parse(&out).expect("layout kept");
                assert_eq!(again.len, d.len);
                let mask = if d.picture_id_15bit { 0x7fff } else { 0x7f };
                assert_eq!(again.picture_id, d.picture_id.map(|_| pid & mask));
                assert_eq!(again.tl0_pic_idx, d.tl0_pic_idx.map(|_| tl0));
            }
        }
    }
}
