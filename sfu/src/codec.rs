//! Codec inspection for the forwarding path: keyframe detection, frame sizes and the VP8
//! payload descriptor fields that are rewritten per viewer.
//!
//! Every function takes untrusted RTP payload bytes, never panics and never allocates.

/// Video codecs the forwarding path understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payload format).
    Vp8,
    /// H.264 (RFC 6184 payload format, packetization mode 1).
    H264,
}

impl VideoCodec {
    /// The codec's name as used in SDP: "VP8" or "H264".
    pub fn name(&self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H264",
        }
    }
}

/// H.264 NAL unit type of an IDR slice.
const NAL_IDR: u8 = 5;
/// H.264 NAL unit type of a sequence parameter set.
const NAL_SPS: u8 = 7;
/// RFC 6184 single-time aggregation packet.
const NAL_STAP_A: u8 = 24;
/// RFC 6184 fragmentation unit.
const NAL_FU_A: u8 = 28;

/// True when this RTP payload is the first packet of a keyframe.
///
/// VP8 (RFC 7741): descriptor S bit set and partition index 0, and the VP8 payload header's
/// P bit is 0. H264 (RFC 6184): a single IDR or SPS NAL unit, a STAP-A containing one, or the
/// starting FU-A fragment of one.
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_header(payload).is_some(),
        VideoCodec::H264 => h264_find_nal(payload, |t| t == NAL_IDR || t == NAL_SPS).is_some(),
    }
}

/// Frame size carried in a VP8 keyframe's first packet, None otherwise.
///
/// Reads the 14-bit width and height after the 3-byte frame tag and the start code 9d 01 2a
/// (the 2-bit scaling fields are ignored). A zero dimension yields None.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let header = vp8_keyframe_header(payload)?;
    let h = header.get(..10)?;
    if h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([h[6], h[7]]) & 0x3fff;
    let height = u16::from_le_bytes([h[8], h[9]]) & 0x3fff;
    (width > 0 && height > 0).then_some((u32::from(width), u32::from(height)))
}

/// Frame size from an H264 SPS carried in this payload (single NAL, STAP-A or FU-A start), None otherwise.
///
/// The size is the decoded size after frame cropping. Anything unexpected in the SPS yields None.
pub fn h264_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let rbsp = h264_find_nal(payload, |t| t == NAL_SPS)?;
    parse_sps_size(rbsp)
}

/// VP8 payload descriptor fields needed for forwarding, parsed once per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vp8Info {
    /// PictureID (7 or 15 bits, without the M bit), when present.
    pub picture_id: Option<u16>,
    /// Whether the PictureID field is the 15-bit form.
    pub picture_id_15bit: bool,
    /// TL0PICIDX, when present.
    pub tl0_pic_idx: Option<u8>,
    /// The S bit: the packet starts a VP8 partition.
    pub start_of_partition: bool,
}

/// Parses the VP8 payload descriptor (RFC 7741 section 4.2); None when malformed or short.
///
/// A descriptor with L set but T clear, or with no payload byte after it, is malformed.
pub fn parse_vp8(payload: &[u8]) -> Option<Vp8Info> {
    vp8_descriptor(payload).map(|(info, _)| info)
}

/// Parses the VP8 descriptor; returns its fields and the offset of the VP8 payload header.
fn vp8_descriptor(p: &[u8]) -> Option<(Vp8Info, usize)> {
    let b0 = *p.first()?;
    let mut info = Vp8Info {
        start_of_partition: b0 & 0x10 != 0,
        ..Vp8Info::default()
    };
    let mut off = 1;
    if b0 & 0x80 != 0 {
        let ext = *p.get(off)?;
        off += 1;
        let (has_pid, has_tl0) = (ext & 0x80 != 0, ext & 0x40 != 0);
        let (has_tid, has_keyidx) = (ext & 0x20 != 0, ext & 0x10 != 0);
        if has_tl0 && !has_tid {
            return None;
        }
        if has_pid {
            let m = *p.get(off)?;
            off += 1;
            if m & 0x80 != 0 {
                let low = *p.get(off)?;
                off += 1;
                info.picture_id = Some((u16::from(m & 0x7f) << 8) | u16::from(low));
                info.picture_id_15bit = true;
            } else {
                info.picture_id = Some(u16::from(m & 0x7f));
            }
        }
        if has_tl0 {
            info.tl0_pic_idx = Some(*p.get(off)?);
            off += 1;
        }
        if has_tid || has_keyidx {
            p.get(off)?;
            off += 1;
        }
    }
    (off < p.len()).then_some((info, off))
}

/// The VP8 payload (from the payload header on) when this packet starts a keyframe.
fn vp8_keyframe_header(payload: &[u8]) -> Option<&[u8]> {
    let (info, off) = vp8_descriptor(payload)?;
    let partition_index = payload.first()? & 0x07;
    let header = payload.get(off..)?;
    let inter = header.first()? & 0x01 != 0;
    (info.start_of_partition && partition_index == 0 && !inter).then_some(header)
}

/// Finds the first NAL unit of a wanted type in an H264 RTP payload and returns its bytes after
/// the one-byte NAL header (for FU-A: the start fragment's bytes after the FU header).
fn h264_find_nal(payload: &[u8], wanted: impl Fn(u8) -> bool) -> Option<&[u8]> {
    let (&header, rest) = payload.split_first()?;
    match header & 0x1f {
        NAL_STAP_A => {
            let mut rest = rest;
            while let [hi, lo, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = tail.get(..size)?;
                if let Some((&nal_header, body)) = nal.split_first()
                    && wanted(nal_header & 0x1f)
                {
                    return Some(body);
                }
                rest = &tail[size..];
            }
            None
        }
        NAL_FU_A => {
            let (&fu, body) = rest.split_first()?;
            (fu & 0x80 != 0 && wanted(fu & 0x1f)).then_some(body)
        }
        t @ 1..=23 => wanted(t).then_some(rest),
        _ => None,
    }
}

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
            self.zeros = if b == 0 { self.zeros.saturating_add(1) } else { 0 };
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

/// Decoded frame size from an SPS body (the bytes after the NAL header), after cropping.
fn parse_sps_size(rbsp: &[u8]) -> Option<(u32, u32)> {
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
    let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
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
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use str0m::rtp::Vp8Descriptor;

    /// x264 constrained baseline 640x360 (profile 66, constraint flags c0, level 3.0).
    const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    /// x264 main profile 1280x720.
    const SPS_1280X720: &[u8] = &[
        0x67, 0x4d, 0x40, 0x1f, 0xec, 0xa0, 0x28, 0x02, 0xdd, 0x80, 0x88, 0x00, 0x00, 0x03, 0x00,
        0x08, 0x00, 0x00, 0x03, 0x01, 0xe0, 0x78, 0xc1, 0x8c, 0xb0,
    ];
    /// x264 high profile 1920x1080 (1088 coded, 8 rows cropped).
    const SPS_1920X1080: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// The 1920x1080 SPS re-encoded with a sequence scaling matrix (explicit and default lists).
    const SPS_1920X1080_SCALING: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xad, 0x84, 0x3f, 0xff, 0xc2, 0x28, 0x43, 0xff, 0xf9, 0x08, 0x7f,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x84, 0x76, 0x50, 0x1e, 0x00, 0x89, 0xf9, 0x70,
        0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x18, 0x31, 0x96,
    ];
    /// x264 High 4:4:4 Predictive 640x480 (chroma_format_idc 3).
    const SPS_444_640X480: &[u8] = &[
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x07, 0xb6, 0x02, 0x20, 0x00, 0x00, 0x03,
        0x00, 0x20, 0x00, 0x00, 0x07, 0x81, 0xe2, 0xc5, 0xb2, 0xc0,
    ];
    /// x264 High 4:2:2 322x242 (odd sizes: cropping in 2x1 chroma units).
    const SPS_422_322X242: &[u8] = &[
        0x67, 0x7a, 0x00, 0x0d, 0xbc, 0xd9, 0x41, 0x50, 0x87, 0x88, 0x8f, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x50, 0xa6, 0x58,
    ];
    /// x264 high profile interlaced 720x576 (frame_mbs_only_flag 0).
    const SPS_INTERLACED_720X576: &[u8] = &[
        0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0xb4, 0x24, 0xd8, 0x08, 0x80, 0x00, 0x00, 0x03,
        0x00, 0x80, 0x00, 0x00, 0x1e, 0x0f, 0x8b, 0x16, 0xcb,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x09, 0xf2, 0x62, 0x80, 0x00];
    const NON_IDR: &[u8] = &[0x41, 0x9a, 0x21, 0x6c, 0x41, 0x0f];

    /// libvpx 1280x720 keyframe start: frame tag, start code, width, height, first data bytes.
    const VP8_KEY_1280X720: &[u8] = &[
        0x90, 0x77, 0x01, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02, 0x00, 0x07, 0x08,
    ];
    /// libvpx interframe start.
    const VP8_INTER: &[u8] = &[0xb1, 0x0e, 0x00, 0x13, 0x11, 0xfc, 0x00, 0x18];

    fn with_prefix(prefix: &[u8], body: &[u8]) -> Vec<u8> {
        prefix.iter().chain(body).copied().collect()
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(nal);
        }
        out
    }

    /// FU-A fragment of `nal` carrying `body`, start bit as given.
    fn fu_a(nal: &[u8], start: bool, body: &[u8]) -> Vec<u8> {
        let indicator = (nal[0] & 0xe0) | NAL_FU_A;
        let header = (if start { 0x80 } else { 0 }) | (nal[0] & 0x1f);
        with_prefix(&[indicator, header], body)
    }

    #[test]
    fn codec_names() {
        assert_eq!(VideoCodec::Vp8.name(), "VP8");
        assert_eq!(VideoCodec::H264.name(), "H264");
    }

    #[test]
    fn vp8_descriptor_fields() {
        // X, S; I L T; 15-bit picture id 0x1234; TL0PICIDX 0x56; TID byte.
        let p = with_prefix(&[0x90, 0xe0, 0x92, 0x34, 0x56, 0x40], VP8_INTER);
        let info = parse_vp8(&p).expect("valid");
        assert_eq!(info.picture_id, Some(0x1234));
        assert!(info.picture_id_15bit);
        assert_eq!(info.tl0_pic_idx, Some(0x56));
        assert!(info.start_of_partition);

        // 7-bit picture id, no S bit.
        let p = with_prefix(&[0x80, 0x80, 0x05], VP8_INTER);
        let info = parse_vp8(&p).expect("valid");
        assert_eq!(info.picture_id, Some(5));
        assert!(!info.picture_id_15bit);
        assert_eq!(info.tl0_pic_idx, None);
        assert!(!info.start_of_partition);

        // Minimal descriptor.
        let info = parse_vp8(&[0x10, 0x00]).expect("valid");
        assert_eq!(info, Vp8Info { start_of_partition: true, ..Vp8Info::default() });
    }

    #[test]
    fn vp8_malformed_descriptors() {
        assert_eq!(parse_vp8(&[]), None);
        // No payload after the descriptor.
        assert_eq!(parse_vp8(&[0x10]), None);
        // L without T.
        assert_eq!(parse_vp8(&[0x90, 0x40, 0x01, 0x00]), None);
        // Every truncation of a full descriptor is rejected.
        let full = [0x90, 0xf0, 0x92, 0x34, 0x56, 0x40, 0x00];
        for len in 0..full.len() {
            assert_eq!(parse_vp8(&full[..len]), None, "len {len}");
        }
        assert!(parse_vp8(&full).is_some());
    }

    #[test]
    fn vp8_keyframe_detection_and_size() {
        let key = with_prefix(&[0x90, 0x80, 0x81, 0x00], VP8_KEY_1280X720);
        assert!(is_keyframe_start(VideoCodec::Vp8, &key));
        assert_eq!(vp8_keyframe_size(&key), Some((1280, 720)));
        // Minimal descriptor too.
        let key = with_prefix(&[0x10], VP8_KEY_1280X720);
        assert!(is_keyframe_start(VideoCodec::Vp8, &key));
        assert_eq!(vp8_keyframe_size(&key), Some((1280, 720)));

        // Interframe, continuation packet, other partition.
        let inter = with_prefix(&[0x10], VP8_INTER);
        assert!(!is_keyframe_start(VideoCodec::Vp8, &inter));
        assert_eq!(vp8_keyframe_size(&inter), None);
        let cont = with_prefix(&[0x00], VP8_KEY_1280X720);
        assert!(!is_keyframe_start(VideoCodec::Vp8, &cont));
        assert_eq!(vp8_keyframe_size(&cont), None);
        let part1 = with_prefix(&[0x11], VP8_KEY_1280X720);
        assert!(!is_keyframe_start(VideoCodec::Vp8, &part1));

        // Scaling bits are masked off; a bad start code or a short header has no size.
        let mut scaled = with_prefix(&[0x10], VP8_KEY_1280X720);
        scaled[8] |= 0xc0;
        scaled[10] |= 0x40;
        assert_eq!(vp8_keyframe_size(&scaled), Some((1280, 720)));
        let mut bad = with_prefix(&[0x10], VP8_KEY_1280X720);
        bad[4] = 0x9c;
        assert!(is_keyframe_start(VideoCodec::Vp8, &bad));
        assert_eq!(vp8_keyframe_size(&bad), None);
        assert_eq!(vp8_keyframe_size(&with_prefix(&[0x10], &VP8_KEY_1280X720[..9])), None);
    }

    #[test]
    fn vp8_agrees_with_str0m_descriptor() {
        let samples = [
            with_prefix(&[0x90, 0xe0, 0x92, 0x34, 0x56, 0x40], VP8_KEY_1280X720),
            with_prefix(&[0x90, 0x80, 0x7f], VP8_INTER),
            with_prefix(&[0x10], VP8_KEY_1280X720),
            with_prefix(&[0x90, 0x10, 0x05], VP8_KEY_1280X720),
        ];
        for p in &samples {
            let ours = parse_vp8(p).expect("valid");
            let theirs = Vp8Descriptor::parse(p).expect("valid");
            assert_eq!(ours.picture_id, theirs.picture_id());
            assert_eq!(ours.tl0_pic_idx, theirs.tl0_pic_idx());
            assert_eq!(is_keyframe_start(VideoCodec::Vp8, p), theirs.starts_keyframe(p));
        }
    }

    #[test]
    fn h264_sps_sizes_from_real_encoders() {
        let cases: [(&[u8], (u32, u32)); 7] = [
            (SPS_640X360, (640, 360)),
            (SPS_1280X720, (1280, 720)),
            (SPS_1920X1080, (1920, 1080)),
            (SPS_1920X1080_SCALING, (1920, 1080)),
            (SPS_444_640X480, (640, 480)),
            (SPS_422_322X242, (322, 242)),
            (SPS_INTERLACED_720X576, (720, 576)),
        ];
        for (sps, size) in cases {
            assert_eq!(h264_keyframe_size(sps), Some(size), "{sps:02x?}");
            assert!(is_keyframe_start(VideoCodec::H264, sps));
        }
    }

    #[test]
    fn h264_single_nal_keyframes() {
        assert!(is_keyframe_start(VideoCodec::H264, IDR));
        assert_eq!(h264_keyframe_size(IDR), None);
        assert!(!is_keyframe_start(VideoCodec::H264, NON_IDR));
        assert!(!is_keyframe_start(VideoCodec::H264, PPS));
        assert!(!is_keyframe_start(VideoCodec::H264, &[]));
        // A bare NAL header is a (truncated) IDR but carries no SPS.
        assert!(is_keyframe_start(VideoCodec::H264, &[0x65]));
        assert_eq!(h264_keyframe_size(&[0x67]), None);
        // STAP-B, MTAP and FU-B are not understood.
        for t in [25u8, 26, 27, 29, 0, 30, 31] {
            assert!(!is_keyframe_start(VideoCodec::H264, &[0x60 | t, 0x85, 0x67, 0x65]));
        }
    }

    #[test]
    fn h264_stap_a() {
        let p = stap_a(&[SPS_640X360, PPS, IDR]);
        assert!(is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), Some((640, 360)));

        let p = stap_a(&[PPS, IDR]);
        assert!(is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), None);

        let p = stap_a(&[PPS, NON_IDR]);
        assert!(!is_keyframe_start(VideoCodec::H264, &p));

        // Sizes pointing past the end: no panic, no match after the break.
        let mut p = stap_a(&[PPS, SPS_640X360]);
        let cut = p.len() - 3;
        p.truncate(cut);
        assert!(!is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), None);
        // Zero-sized entries are skipped.
        let p = stap_a(&[&[], SPS_1280X720]);
        assert_eq!(h264_keyframe_size(&p), Some((1280, 720)));
    }

    #[test]
    fn h264_fu_a() {
        let start = fu_a(IDR, true, &IDR[1..]);
        assert!(is_keyframe_start(VideoCodec::H264, &start));
        let middle = fu_a(IDR, false, &IDR[1..]);
        assert!(!is_keyframe_start(VideoCodec::H264, &middle));
        let non_idr = fu_a(NON_IDR, true, &NON_IDR[1..]);
        assert!(!is_keyframe_start(VideoCodec::H264, &non_idr));
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x7c]));

        let sps = fu_a(SPS_1920X1080, true, &SPS_1920X1080[1..]);
        assert!(is_keyframe_start(VideoCodec::H264, &sps));
        assert_eq!(h264_keyframe_size(&sps), Some((1920, 1080)));
        // A start fragment cut short of the size fields has no size.
        let short = fu_a(SPS_1920X1080, true, &SPS_1920X1080[1..6]);
        assert_eq!(h264_keyframe_size(&short), None);
    }

    #[test]
    fn truncated_sps_is_rejected() {
        // Every field up to frame cropping lies in the first 10 bytes of these SPSs.
        for len in 0..7 {
            assert_eq!(h264_keyframe_size(&SPS_640X360[..len]), None, "len {len}");
            assert_eq!(h264_keyframe_size(&SPS_1920X1080_SCALING[..len]), None);
        }
    }

    #[test]
    fn sps_with_unexpected_values_is_rejected() {
        // chroma_format_idc 4: profile 100, ids 0, then ue(4) = 00101.
        assert_eq!(h264_keyframe_size(&[0x67, 0x64, 0x00, 0x28, 0b1001_0100, 0xff]), None);
        // pic_order_cnt_type 3: profile 66, sps id 0, log2 frame num 0, then ue(3) = 00100.
        assert_eq!(h264_keyframe_size(&[0x67, 0x42, 0x00, 0x1e, 0b1100_1000, 0xff]), None);
        // Crop larger than the frame.
        let mut r = BitWriter::default();
        r.bits(0x42c01e, 24);
        r.ue(0);
        r.ue(0);
        r.ue(2);
        r.ue(1);
        r.bits(0, 1);
        r.ue(0); // 16 px wide
        r.ue(0); // 16 px tall
        r.bits(0b111, 3); // frame_mbs_only, direct_8x8, frame_cropping
        r.ue(4);
        r.ue(4); // crops 16 px of 16
        r.ue(0);
        r.ue(0);
        let mut nal = vec![0x67];
        nal.extend(r.finish());
        assert_eq!(h264_keyframe_size(&nal), None);
    }

    /// Bit writer for hand-built SPS fields in tests.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bits.push(v >> i & 1 == 1);
            }
        }
        fn ue(&mut self, v: u64) {
            let n = 64 - (v + 1).leading_zeros();
            self.bits(0, n - 1);
            self.bits(v + 1, n);
        }
        fn finish(mut self) -> Vec<u8> {
            self.bits.push(true);
            while self.bits.len() % 8 != 0 {
                self.bits.push(false);
            }
            self.bits
                .chunks(8)
                .map(|c| c.iter().fold(0u8, |acc, &b| acc << 1 | u8::from(b)))
                .collect()
        }
    }

    #[test]
    fn hand_built_sps_with_poc_type_1_and_cropping() {
        let mut w = BitWriter::default();
        w.bits(0x42c01f, 24);
        w.ue(3); // sps id
        w.ue(2); // log2_max_frame_num_minus4
        w.ue(1); // pic_order_cnt_type 1
        w.bits(0, 1);
        // se(v) fields are written as their ue(v) code numbers.
        w.ue(5); // offset_for_non_ref_pic
        w.ue(2); // offset_for_top_to_bottom_field
        w.ue(3); // three offset_for_ref_frame values
        w.ue(1);
        w.ue(2);
        w.ue(7);
        w.ue(4); // max_num_ref_frames
        w.bits(0, 1);
        w.ue(79); // 1280 px
        w.ue(44); // 720 px
        w.bits(0b111, 3);
        w.ue(2); // crop left 4 px
        w.ue(3); // crop right 6 px
        w.ue(1); // crop top 2 px
        w.ue(0);
        let mut nal = vec![0x67];
        nal.extend(w.finish());
        assert_eq!(h264_keyframe_size(&nal), Some((1270, 718)));
    }

    #[test]
    fn bit_reader_drops_emulation_prevention_bytes() {
        let mut r = BitReader::new(&[0x00, 0x00, 0x03, 0x01, 0x00, 0x00, 0x03, 0x03, 0xff]);
        assert_eq!(r.bits(16), Some(0));
        assert_eq!(r.bits(8), Some(0x01));
        assert_eq!(r.bits(16), Some(0));
        // The second 03 after an emulation prevention byte is data.
        assert_eq!(r.bits(8), Some(0x03));
        assert_eq!(r.bits(8), Some(0xff));
        assert_eq!(r.bit(), None);
        // Exp-Golomb with more than 31 leading zeros is rejected.
        let mut r = BitReader::new(&[0, 0, 0x03, 0, 0, 0x03, 0, 0, 0x03, 0, 0xff]);
        assert_eq!(r.ue(), None);
        let mut r = BitReader::new(&[0b0010_0011]);
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.se(), Some(-1));
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
        // First bytes that lead deep into each parser.
        let leads = [0x90u8, 0x10, 0x80, 0x67, 0x78, 0x7c, 0x65, 0x27, 0x47];
        for i in 0..20_000 {
            let len = rng.random_range(0..64usize);
            let mut buf = [0u8; 64];
            rng.fill(&mut buf[..len]);
            if len > 0 && i % 2 == 0 {
                buf[0] = leads[rng.random_range(0..leads.len())];
            }
            let p = &buf[..len];
            let info = parse_vp8(p);
            let str0m_desc = Vp8Descriptor::parse(p).ok();
            assert_eq!(info.is_some(), str0m_desc.is_some(), "{p:02x?}");
            if let (Some(info), Some(d)) = (info, str0m_desc) {
                assert_eq!(info.picture_id, d.picture_id());
                assert_eq!(info.tl0_pic_idx, d.tl0_pic_idx());
                assert_eq!(is_keyframe_start(VideoCodec::Vp8, p), d.starts_keyframe(p));
            }
            let _ = vp8_keyframe_size(p);
            let _ = is_keyframe_start(VideoCodec::H264, p);
            let _ = h264_keyframe_size(p);
            let _ = parse_sps_size(p);
        }
    }
}
