//! The frame size an H264 sequence parameter set describes (H.264 section 7.3.2.1.1 and the
//! cropping of equations 7-19..7-22), read without allocating.

use crate::CodecError;

/// Reads bits MSB first from an H264 NAL unit body, dropping emulation prevention bytes.
struct BitReader<'a> {
    /// NAL bytes still to read.
    data: &'a [u8],
    /// Byte currently being consumed.
    current: u8,
    /// Unread bits left in `current`.
    bits_left: u8,
    /// Consecutive zero bytes just read (to spot 00 00 03).
    zeros: u8,
}

impl<'a> BitReader<'a> {
    /// Starts reading at the first byte of `data`.
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            current: 0,
            bits_left: 0,
            zeros: 0,
        }
    }

    /// Next RBSP byte, skipping an emulation prevention byte after two zero bytes.
    fn next_byte(&mut self) -> Option<u8> {
        loop {
            let (&b, rest) = self.data.split_first()?;
            self.data = rest;
            if self.zeros >= 2 && b == 0x03 {
                self.zeros = 0;
                continue;
            }
            self.zeros = if b == 0 {
                self.zeros.saturating_add(1)
            } else {
                0
            };
            return Some(b);
        }
    }

    /// One bit.
    fn bit(&mut self) -> Option<u32> {
        if self.bits_left == 0 {
            self.current = self.next_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Some(u32::from((self.current >> self.bits_left) & 1))
    }

    /// `n` bits (at most 32) as an unsigned value.
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u64;
        for _ in 0..n.min(32) {
            v = (v << 1) | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    /// A one-bit flag.
    fn flag(&mut self) -> Option<bool> {
        self.bit().map(|b| b == 1)
    }

    /// Unsigned exp-Golomb value (ue(v)); None past 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut leading = 0;
        while self.bit()? == 0 {
            leading += 1;
            if leading > 31 {
                return None;
            }
        }
        let suffix = u64::from(self.bits(leading)?);
        u32::try_from((1u64 << leading) - 1 + suffix).ok()
    }

    /// Signed exp-Golomb value (se(v)).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Skips one scaling_list() of `size` entries (H.264 7.3.2.1.1.1).
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i64, 8i64);
    for _ in 0..size {
        if next != 0 {
            next = (last + r.se()? + 256).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Decoded frame size (after cropping) from an SPS body: the bytes after the NAL header.
///
/// Fails on a truncated SPS or any field out of its range (profile-specific chroma format, bit
/// depths, frame number and picture order sizes, a crop as large as the frame).
pub fn sps_size(body: &[u8]) -> Result<(u32, u32), CodecError> {
    parse(body).ok_or(CodecError::Malformed("H264 SPS"))
}

/// [`sps_size`] without the error value.
fn parse(rbsp: &[u8]) -> Option<(u32, u32)> {
    let mut r = BitReader::new(rbsp);
    let profile_idc = r.bits(8)?;
    let _constraints_and_level = r.bits(16)?;
    if r.ue()? > 31 {
        return None; // seq_parameter_set_id
    }
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        if r.ue()? > 6 || r.ue()? > 6 {
            return None; // bit_depth_luma_minus8, bit_depth_chroma_minus8
        }
        let _qpprime_y_zero_transform_bypass = r.flag()?;
        if r.flag()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    if r.ue()? > 12 {
        return None; // log2_max_frame_num_minus4
    }
    match r.ue()? {
        0 => {
            if r.ue()? > 12 {
                return None; // log2_max_pic_order_cnt_lsb_minus4
            }
        }
        1 => {
            let _delta_pic_order_always_zero = r.flag()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_allowed = r.flag()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.flag()?;
    }
    let _direct_8x8_inference = r.flag()?;
    let (mut crop_x, mut crop_y) = (0u64, 0u64);
    if r.flag()? {
        crop_x = u64::from(r.ue()?) + u64::from(r.ue()?);
        crop_y = u64::from(r.ue()?) + u64::from(r.ue()?);
    }
    // Table 6-1 and equations 7-19..7-22.
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * crop_unit_x)?;
    let height = (height_map_units * 16 * field_factor).checked_sub(crop_y * crop_unit_y)?;
    if width == 0 || height == 0 {
        return None;
    }
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h264::tests::hex;

    /// SPS NAL units from x264 (the last two hand-built) and the decoded size each describes.
    const SPS: [(&str, (u32, u32)); 8] = [
        // Constrained baseline (profile 66, constraint flags c0), level 3.0.
        (
            "67 42 c0 1e d9 00 a0 2f f9 70 11 00 00 03 00 01 00 00 03 00 3c 0f 16 2e 48",
            (640, 360),
        ),
        (
            "67 4d 40 1f ec a0 28 02 dd 80 88 00 00 03 00 08 00 00 03 01 e0 78 c1 8c b0",
            (1280, 720),
        ),
        // High profile, 1088 coded rows with 8 cropped.
        (
            "67 64 00 28 ac d9 40 78 02 27 e5 c0 44 00 00 03 00 04 00 00 03 00 f0 3c 60 c6 58",
            (1920, 1080),
        ),
        // The same re-encoded with a sequence scaling matrix (explicit and default lists).
        (
            "67 64 00 28 ad 84 3f ff c2 28 43 ff f9 08 7f ff ff ff ff ff ff ff 84 76 50 1e 00 89 f9 70 \
             11 00 00 03 00 01 00 00 03 00 3c 0f 18 31 96",
            (1920, 1080),
        ),
        // High 4:4:4 (chroma_format_idc 3), High 4:2:2 with odd sizes, interlaced high profile.
        (
            "67 f4 00 1e 91 9b 28 14 07 b6 02 20 00 00 03 00 20 00 00 07 81 e2 c5 b2 c0",
            (640, 480),
        ),
        (
            "67 7a 00 0d bc d9 41 50 87 88 8f c0 44 00 00 03 00 04 00 00 03 00 f0 3c 50 a6 58",
            (322, 242),
        ),
        (
            "67 64 00 1f ac d9 40 b4 24 d8 08 80 00 00 03 00 80 00 00 1e 0f 8b 16 cb",
            (720, 576),
        ),
        // pic_order_cnt_type 1 with three ref frame offsets; crop 4 left, 6 right, 2 top.
        ("67 42 c0 1f 23 43 32 26 20 a0 28 02 de c8 b0", (1270, 718)),
    ];

    #[test]
    fn sps_sizes() {
        for (sps, size) in SPS {
            let sps = hex(sps);
            assert_eq!(sps_size(&sps[1..]), Ok(size), "{sps:02x?}");
            assert_eq!(
                crate::h264::inspect(&sps).map(|k| (k.keyframe_start, k.sps_size)),
                Ok((true, Some(size)))
            );
            // Every truncation that loses the size fields is rejected.
            for len in 0..6 {
                assert!(sps_size(&sps[1..1 + len]).is_err());
            }
        }
        // chroma_format_idc 4; pic_order_cnt_type 3; a crop as large as the frame.
        for bad in ["64 00 28 94 ff", "42 00 1e c8 ff", "42 c0 1e da 7c a5 e0"] {
            assert_eq!(
                sps_size(&hex(bad)),
                Err(CodecError::Malformed("H264 SPS")),
                "{bad}"
            );
        }
    }

    #[test]
    fn bit_reader() {
        // Emulation prevention bytes are dropped; a 03 right after one is data.
        let mut r = BitReader::new(&[0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x03, 0xff]);
        assert_eq!(
            (r.bits(16), r.bits(8), r.bits(16), r.bits(8), r.bits(8)),
            (Some(0), Some(1), Some(0), Some(3), Some(0xff))
        );
        assert_eq!(r.bit(), None);
        // Exp-Golomb with more than 31 leading zeros is rejected.
        assert_eq!(
            BitReader::new(&[0, 0, 0x03, 0, 0, 0x03, 0, 0, 0x03, 0, 0xff]).ue(),
            None
        );
        let mut r = BitReader::new(&[0b0010_0011]);
        assert_eq!((r.ue(), r.se()), (Some(3), Some(-1)));
    }
}
