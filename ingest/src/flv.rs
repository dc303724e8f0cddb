//! FLV tag bodies carried by RTMP video and audio messages: H264 (AVC) and AAC.

use crate::Error;

/// FLV video codec id of AVC (H264).
pub const CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
pub const SOUND_AAC: u8 = 10;
/// Most SPS or PPS in one decoder configuration record.
pub const MAX_PARAMETER_SETS: usize = 8;

/// A parsed video tag body.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoTag<'a> {
    /// AVC sequence header: an `AVCDecoderConfigurationRecord`.
    AvcConfig(AvcConfig),
    /// AVC NAL units (length-prefixed), with the composition time offset in milliseconds.
    AvcNalus {
        /// Frame type 1: a keyframe.
        keyframe: bool,
        /// Presentation minus decoding time; not 0 when the encoder uses B-frames.
        composition_time: i32,
        /// The length-prefixed NAL units.
        data: &'a [u8],
    },
    /// AVC end of sequence.
    AvcEnd,
    /// A codec other than AVC (FLV codec id; 0x80 | fourcc byte for Enhanced RTMP).
    Unsupported(u8),
    /// A video info/command frame (frame type 5): nothing to show.
    Info,
}

/// H264 parameters from an `AVCDecoderConfigurationRecord` (ISO 14496-15 5.2.4.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// profile_idc, constraint flags, level_idc: the SDP `profile-level-id`.
    pub profile_level_id: [u8; 3],
    /// Bytes of each NAL unit's length prefix (1, 2 or 4).
    pub length_size: usize,
    /// Sequence parameter sets.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets.
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// `profile-level-id` as the 6 hex digits of SDP.
    pub fn profile_level_id_hex(&self) -> String {
        self.profile_level_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn u16_at(b: &[u8], pos: usize) -> Result<usize, Error> {
    let s = b
        .get(pos..pos.checked_add(2).ok_or(Error::Flv("length overflow"))?)
        .ok_or(Error::Flv("truncated"))?;
    Ok(usize::from(u16::from_be_bytes([s[0], s[1]])))
}

/// Parses an `AVCDecoderConfigurationRecord`.
pub fn parse_avc_config(b: &[u8]) -> Result<AvcConfig, Error> {
    if b.len() < 6 || b[0] != 1 {
        return Err(Error::Flv("not an AVC decoder configuration record"));
    }
    let length_size = usize::from(b[4] & 3) + 1;
    if length_size == 3 {
        return Err(Error::Flv("NAL length size 3"));
    }
    let mut pos = 5usize;
    let sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, Error> {
        if count > MAX_PARAMETER_SETS {
            return Err(Error::Flv("too many parameter sets"));
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let n = u16_at(b, *pos)?;
            let start = *pos + 2;
            let end = start.checked_add(n).ok_or(Error::Flv("length overflow"))?;
            let s = b
                .get(start..end)
                .ok_or(Error::Flv("truncated parameter set"))?;
            if s.is_empty() {
                return Err(Error::Flv("empty parameter set"));
            }
            out.push(s.to_vec());
            *pos = end;
        }
        Ok(out)
    };
    let n_sps = usize::from(b[pos] & 0x1f);
    pos += 1;
    let sps = sets(n_sps, &mut pos)?;
    let n_pps = usize::from(*b.get(pos).ok_or(Error::Flv("truncated"))?);
    pos += 1;
    let pps = sets(n_pps, &mut pos)?;
    if sps.is_empty() || pps.is_empty() {
        return Err(Error::Flv("no SPS or no PPS"));
    }
    Ok(AvcConfig {
        profile_level_id: [b[1], b[2], b[3]],
        length_size,
        sps,
        pps,
    })
}

/// Parses the body of an RTMP video message.
pub fn parse_video(b: &[u8]) -> Result<VideoTag<'_>, Error> {
    let &first = b.first().ok_or(Error::Flv("empty video message"))?;
    if first & 0x80 != 0 {
        // Enhanced RTMP (HEVC, AV1, VP9 by fourcc).
        return Ok(VideoTag::Unsupported(first));
    }
    let frame_type = first >> 4;
    let codec = first & 0x0f;
    if frame_type == 5 {
        return Ok(VideoTag::Info);
    }
    if codec != CODEC_AVC {
        return Ok(VideoTag::Unsupported(codec));
    }
    let h = b
        .get(1..5)
        .ok_or(Error::Flv("truncated AVC video header"))?;
    // 24-bit signed composition time.
    let cts = ((i32::from(h[1]) << 24) | (i32::from(h[2]) << 16) | (i32::from(h[3]) << 8)) >> 8;
    match h[0] {
        0 => Ok(VideoTag::AvcConfig(parse_avc_config(&b[5..])?)),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == 1,
            composition_time: cts,
            data: &b[5..],
        }),
        2 => Ok(VideoTag::AvcEnd),
        _ => Err(Error::Flv("unknown AVC packet type")),
    }
}

/// Converts length-prefixed NAL units to Annex B (start codes), dropping access unit
/// delimiters; with `params`, SPS and PPS go first when the units do not carry them.
pub fn avcc_to_annexb(
    data: &[u8],
    length_size: usize,
    params: Option<&AvcConfig>,
) -> Result<Vec<u8>, Error> {
    let mut nalus = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let end = pos
            .checked_add(length_size)
            .ok_or(Error::Flv("length overflow"))?;
        let len = data
            .get(pos..end)
            .ok_or(Error::Flv("truncated NAL length"))?;
        let n = len.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x));
        let stop = end.checked_add(n).ok_or(Error::Flv("length overflow"))?;
        let nalu = data
            .get(end..stop)
            .ok_or(Error::Flv("NAL unit longer than its message"))?;
        pos = stop;
        if !nalu.is_empty() {
            nalus.push(nalu);
        }
    }
    let has_params = nalus.iter().any(|n| n[0] & 0x1f == 7);
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut put = |n: &[u8]| {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n);
    };
    if let (Some(p), false) = (params, has_params) {
        p.sps.iter().chain(p.pps.iter()).for_each(|n| put(n));
    }
    for n in nalus {
        if n[0] & 0x1f != 9 {
            put(n);
        }
    }
    Ok(out)
}

/// A parsed audio tag body.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioTag<'a> {
    /// AAC sequence header: the AudioSpecificConfig.
    AacConfig(&'a [u8]),
    /// One raw AAC frame.
    AacRaw(&'a [u8]),
    /// Another sound format (FLV sound format id).
    Unsupported(u8),
}

/// Parses the body of an RTMP audio message.
pub fn parse_audio(b: &[u8]) -> Result<AudioTag<'_>, Error> {
    let &first = b.first().ok_or(Error::Flv("empty audio message"))?;
    let format = first >> 4;
    if format != SOUND_AAC {
        return Ok(AudioTag::Unsupported(format));
    }
    match b.get(1) {
        Some(0) => Ok(AudioTag::AacConfig(&b[2..])),
        Some(1) => Ok(AudioTag::AacRaw(&b[2..])),
        _ => Err(Error::Flv("bad AAC packet type")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A configuration record of constrained baseline level 3.0 with one SPS and one PPS.
    pub(crate) fn config_record() -> Vec<u8> {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let mut b = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.len() as u8];
        b.extend_from_slice(&sps);
        b.extend_from_slice(&[1, 0, pps.len() as u8]);
        b.extend_from_slice(&pps);
        b
    }

    #[test]
    fn sequence_header() {
        let mut tag = vec![0x17, 0, 0, 0, 0];
        tag.extend(config_record());
        let VideoTag::AvcConfig(c) = parse_video(&tag).unwrap() else {
            panic!("not a config")
        };
        assert_eq!(c.profile_level_id_hex(), "42c01e");
        assert_eq!(c.length_size, 4);
        assert_eq!(c.sps, vec![vec![0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02]]);
        assert_eq!(c.pps.len(), 1);
    }

    #[test]
    fn nalus_composition_time_and_annexb() {
        // Keyframe, NALU packet, composition time -40 (0xffffd8): AUD, IDR slice.
        let tag = [
            0x17, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 3, 0x65, 0x88, 0x84,
        ];
        let VideoTag::AvcNalus {
            keyframe,
            composition_time,
            data,
        } = parse_video(&tag).unwrap()
        else {
            panic!()
        };
        assert!(keyframe);
        assert_eq!(composition_time, -40);
        let cfg = parse_avc_config(&config_record()).unwrap();
        let annexb = avcc_to_annexb(data, 4, Some(&cfg)).unwrap();
        let mut want = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x02, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        want.extend_from_slice(&[0, 0, 0, 1, 0x65, 0x88, 0x84]);
        assert_eq!(annexb, want);
        assert_eq!(
            avcc_to_annexb(&[0, 0, 0, 2, 0x41, 1], 4, None).unwrap(),
            vec![0, 0, 0, 1, 0x41, 1]
        );
    }

    #[test]
    fn other_codecs_and_garbage() {
        assert_eq!(parse_video(&[0x12, 0]).unwrap(), VideoTag::Unsupported(2));
        assert_eq!(
            parse_video(&[0x90, b'h', b'v', b'c', b'1']).unwrap(),
            VideoTag::Unsupported(0x90)
        );
        assert!(parse_video(&[]).is_err());
        assert!(parse_video(&[0x17, 0]).is_err());
        assert!(parse_video(&[0x17, 0, 0, 0, 0, 1, 0x42]).is_err());
        assert!(parse_avc_config(&[1, 0x42, 0, 0x1e, 0xff, 0xe1, 0xff, 0xff]).is_err());
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 1], 4, None).is_err());
        assert!(avcc_to_annexb(&[0xff, 0xff, 0xff, 0xff], 4, None).is_err());
        assert_eq!(parse_audio(&[0x2f, 1]).unwrap(), AudioTag::Unsupported(2));
        assert_eq!(
            parse_audio(&[0xaf, 0, 0x12, 0x10]).unwrap(),
            AudioTag::AacConfig(&[0x12, 0x10])
        );
        assert!(parse_audio(&[0xaf]).is_err());
    }
}
