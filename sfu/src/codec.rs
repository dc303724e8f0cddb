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
    let mut info = Vp8Info { start_of_partition: b0 & 0x10 != 0, ..Vp8Info::default() };
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
        Self { data, current: 0, bits_left: 0, zeros: 0 }
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
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
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

    /// SPS NAL units from x264 (the last two hand-built) and the decoded size each describes.
    const SPS: [(&str, (u32, u32)); 8] = [
        // Constrained baseline (profile 66, constraint flags c0), level 3.0.
        ("67 42 c0 1e d9 00 a0 2f f9 70 11 00 00 03 00 01 00 00 03 00 3c 0f 16 2e 48", (640, 360)),
        ("67 4d 40 1f ec a0 28 02 dd 80 88 00 00 03 00 08 00 00 03 01 e0 78 c1 8c b0", (1280, 720)),
        // High profile, 1088 coded rows with 8 cropped.
        ("67 64 00 28 ac d9 40 78 02 27 e5 c0 44 00 00 03 00 04 00 00 03 00 f0 3c 60 c6 58", (1920, 1080)),
        // The same re-encoded with a sequence scaling matrix (explicit and default lists).
        (
            "67 64 00 28 ad 84 3f ff c2 28 43 ff f9 08 7f ff ff ff ff ff ff ff 84 76 50 1e 00 89 f9 70 \
             11 00 00 03 00 01 00 00 03 00 3c 0f 18 31 96",
            (1920, 1080),
        ),
        // High 4:4:4 (chroma_format_idc 3), High 4:2:2 with odd sizes, interlaced high profile.
        ("67 f4 00 1e 91 9b 28 14 07 b6 02 20 00 00 03 00 20 00 00 07 81 e2 c5 b2 c0", (640, 480)),
        ("67 7a 00 0d bc d9 41 50 87 88 8f c0 44 00 00 03 00 04 00 00 03 00 f0 3c 50 a6 58", (322, 242)),
        ("67 64 00 1f ac d9 40 b4 24 d8 08 80 00 00 03 00 80 00 00 1e 0f 8b 16 cb", (720, 576)),
        // pic_order_cnt_type 1 with three ref frame offsets; crop 4 left, 6 right, 2 top.
        ("67 42 c0 1f 23 43 32 26 20 a0 28 02 de c8 b0", (1270, 718)),
    ];
    const PPS: &str = "68 cb 83 cb 20";
    const IDR: &str = "65 88 84 09 f2 62 80 00";
    const NON_IDR: &str = "41 9a 21 6c 41 0f";
    /// libvpx 1280x720 keyframe start: frame tag, start code, width, height, first data bytes.
    const VP8_KEY: &str = "90 77 01 9d 01 2a 00 05 d0 02 00 07 08";
    /// libvpx interframe start.
    const VP8_INTER: &str = "b1 0e 00 13 11 fc 00 18";

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex")).collect()
    }

    fn cat(a: &[u8], b: &str) -> Vec<u8> {
        a.iter().copied().chain(hex(b)).collect()
    }

    fn stap_a(nals: &[&str]) -> Vec<u8> {
        let mut out = vec![0x78];
        for nal in nals.iter().map(|n| hex(n)) {
            out.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            out.extend_from_slice(&nal);
        }
        out
    }

    /// FU-A fragment of `nal` (its body, possibly cut to `len` bytes), start bit as given.
    fn fu_a(nal: &str, start: bool, len: usize) -> Vec<u8> {
        let nal = hex(nal);
        let mut out = vec![(nal[0] & 0xe0) | NAL_FU_A, (if start { 0x80 } else { 0 }) | (nal[0] & 0x1f)];
        out.extend(nal[1..].iter().take(len));
        out
    }

    #[test]
    fn codec_names() {
        assert_eq!((VideoCodec::Vp8.name(), VideoCodec::H264.name()), ("VP8", "H264"));
    }

    #[test]
    fn vp8_descriptor() {
        // X, S; I L T; 15-bit picture id 0x1234; TL0PICIDX 0x56; TID byte.
        let info = parse_vp8(&cat(&[0x90, 0xe0, 0x92, 0x34, 0x56, 0x40], VP8_INTER)).expect("valid");
        let want = Vp8Info {
            picture_id: Some(0x1234),
            picture_id_15bit: true,
            tl0_pic_idx: Some(0x56),
            start_of_partition: true,
        };
        assert_eq!(info, want);
        // 7-bit picture id, no S bit; minimal descriptor.
        let want = Vp8Info { picture_id: Some(5), ..Vp8Info::default() };
        assert_eq!(parse_vp8(&cat(&[0x80, 0x80, 0x05], VP8_INTER)), Some(want));
        assert_eq!(parse_vp8(&[0x10, 0x00]), Some(Vp8Info { start_of_partition: true, ..Vp8Info::default() }));
        // Malformed: empty, nothing after the descriptor, L without T, any truncation.
        assert_eq!(parse_vp8(&[]), None);
        assert_eq!(parse_vp8(&[0x10]), None);
        assert_eq!(parse_vp8(&[0x90, 0x40, 0x01, 0x00]), None);
        let full = [0x90, 0xf0, 0x92, 0x34, 0x56, 0x40, 0x00];
        for len in 0..full.len() {
            assert_eq!(parse_vp8(&full[..len]), None, "len {len}");
        }
        assert!(parse_vp8(&full).is_some());
    }

    #[test]
    fn vp8_keyframes() {
        for desc in [&[0x10][..], &[0x90, 0x80, 0x81, 0x00], &[0x90, 0x10, 0x05]] {
            let key = cat(desc, VP8_KEY);
            assert!(is_keyframe_start(VideoCodec::Vp8, &key));
            assert_eq!(vp8_keyframe_size(&key), Some((1280, 720)));
        }
        // Interframe, continuation packet, other partition.
        for p in [cat(&[0x10], VP8_INTER), cat(&[0x00], VP8_KEY), cat(&[0x11], VP8_KEY)] {
            assert!(!is_keyframe_start(VideoCodec::Vp8, &p));
            assert_eq!(vp8_keyframe_size(&p), None);
        }
        // Scaling bits are masked off; a bad start code or a short header has no size.
        let mut p = cat(&[0x10], VP8_KEY);
        p[8] |= 0xc0;
        p[10] |= 0x40;
        assert_eq!(vp8_keyframe_size(&p), Some((1280, 720)));
        p[4] = 0x9c;
        assert!(is_keyframe_start(VideoCodec::Vp8, &p));
        assert_eq!(vp8_keyframe_size(&p), None);
        assert_eq!(vp8_keyframe_size(&cat(&[0x10], VP8_KEY)[..10]), None);
    }

    #[test]
    fn h264_sps_sizes() {
        for (sps, size) in SPS {
            let sps = hex(sps);
            assert_eq!(h264_keyframe_size(&sps), Some(size), "{sps:02x?}");
            assert!(is_keyframe_start(VideoCodec::H264, &sps));
            // Every truncation that loses the size fields is rejected.
            for len in 0..7 {
                assert_eq!(h264_keyframe_size(&sps[..len]), None);
            }
        }
        // chroma_format_idc 4; pic_order_cnt_type 3; a crop as large as the frame.
        for bad in ["67 64 00 28 94 ff", "67 42 00 1e c8 ff", "67 42 c0 1e da 7c a5 e0"] {
            assert_eq!(h264_keyframe_size(&hex(bad)), None, "{bad}");
        }
    }

    #[test]
    fn h264_single_nal_units() {
        assert!(is_keyframe_start(VideoCodec::H264, &hex(IDR)));
        assert_eq!(h264_keyframe_size(&hex(IDR)), None);
        assert!(!is_keyframe_start(VideoCodec::H264, &hex(NON_IDR)));
        assert!(!is_keyframe_start(VideoCodec::H264, &hex(PPS)));
        assert!(!is_keyframe_start(VideoCodec::H264, &[]));
        assert!(is_keyframe_start(VideoCodec::H264, &[0x65]));
        assert_eq!(h264_keyframe_size(&[0x67]), None);
        // STAP-B, MTAP, FU-B and reserved types are not understood.
        for t in [25u8, 26, 27, 29, 0, 30, 31] {
            assert!(!is_keyframe_start(VideoCodec::H264, &[0x60 | t, 0x85, 0x67, 0x65]));
        }
    }

    #[test]
    fn h264_stap_a() {
        let p = stap_a(&[SPS[0].0, PPS, IDR]);
        assert!(is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), Some((640, 360)));
        let p = stap_a(&[PPS, IDR]);
        assert!(is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), None);
        assert!(!is_keyframe_start(VideoCodec::H264, &stap_a(&[PPS, NON_IDR])));
        // A size pointing past the end: no panic, no match.
        let mut p = stap_a(&[PPS, SPS[0].0]);
        p.truncate(p.len() - 3);
        assert!(!is_keyframe_start(VideoCodec::H264, &p));
        assert_eq!(h264_keyframe_size(&p), None);
        // Zero-sized entries are skipped.
        assert_eq!(h264_keyframe_size(&stap_a(&["", SPS[1].0])), Some((1280, 720)));
    }

    #[test]
    fn h264_fu_a() {
        assert!(is_keyframe_start(VideoCodec::H264, &fu_a(IDR, true, 100)));
        assert!(!is_keyframe_start(VideoCodec::H264, &fu_a(IDR, false, 100)));
        assert!(!is_keyframe_start(VideoCodec::H264, &fu_a(NON_IDR, true, 100)));
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x7c]));
        let sps = fu_a(SPS[2].0, true, 100);
        assert!(is_keyframe_start(VideoCodec::H264, &sps));
        assert_eq!(h264_keyframe_size(&sps), Some((1920, 1080)));
        assert_eq!(h264_keyframe_size(&fu_a(SPS[2].0, true, 5)), None);
        assert_eq!(h264_keyframe_size(&fu_a(SPS[2].0, false, 100)), None);
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
        assert_eq!(BitReader::new(&[0, 0, 0x03, 0, 0, 0x03, 0, 0, 0x03, 0, 0xff]).ue(), None);
        let mut r = BitReader::new(&[0b0010_0011]);
        assert_eq!((r.ue(), r.se()), (Some(3), Some(-1)));
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
            // The VP8 parser agrees with str0m's on every input.
            let (ours, theirs) = (parse_vp8(p), Vp8Descriptor::parse(p).ok());
            assert_eq!(ours.is_some(), theirs.is_some(), "{p:02x?}");
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                assert_eq!((ours.picture_id, ours.tl0_pic_idx), (theirs.picture_id(), theirs.tl0_pic_idx()));
                assert_eq!(is_keyframe_start(VideoCodec::Vp8, p), theirs.starts_keyframe(p));
            }
            let _ = (vp8_keyframe_size(p), is_keyframe_start(VideoCodec::H264, p), h264_keyframe_size(p));
            let _ = parse_sps_size(p);
        }
    }
}
