//! H264 access units in Annex B form (MPEG-TS carries them so): NAL units split at start codes,
//! parameter sets picked out, and every keyframe sent with its SPS and PPS in front.

use crate::flv::AvcConfig;

/// The NAL units of an Annex B buffer, without start codes (empty ones skipped).
pub fn nal_units(b: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 2 < b.len() {
        if b[i] == 0 && b[i + 1] == 0 && b[i + 2] == 1 {
            if let Some(s) = start {
                // A 4-byte start code's leading zero belongs to it, not to the NAL before.
                let end = if i > s && b[i - 1] == 0 { i - 1 } else { i };
                out.push(&b[s..end.max(s)]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        out.push(&b[s.min(b.len())..]);
    }
    out.retain(|n| !n.is_empty());
    out
}

/// One access unit made ready for the publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    /// Parameters carried in this unit when they differ from the ones given.
    pub new_config: Option<AvcConfig>,
    /// It holds an IDR slice.
    pub keyframe: bool,
    /// NAL units with 4-byte start codes, access unit delimiters left out, SPS and PPS in front
    /// of a keyframe.
    pub annexb: Vec<u8>,
}

/// Prepares an Annex B access unit, given the parameters known so far.
pub fn access_unit(b: &[u8], known: Option<&AvcConfig>) -> AccessUnit {
    let nals = nal_units(b);
    let kind = |n: &[u8]| n[0] & 0x1F;
    let sps: Vec<Vec<u8>> = nals.iter().filter(|n| kind(n) == 7 && n.len() >= 4).map(|n| n.to_vec()).collect();
    let pps: Vec<Vec<u8>> = nals.iter().filter(|n| kind(n) == 8).map(|n| n.to_vec()).collect();
    let new_config = match (sps.first(), pps.is_empty()) {
        (Some(s), false) => {
            let cfg =
                AvcConfig { profile_level_id: [s[1], s[2], s[3]], length_size: 4, sps: sps.clone(), pps: pps.clone() };
            (known != Some(&cfg)).then_some(cfg)
        }
        _ => None,
    };
    let keyframe = nals.iter().any(|n| kind(n) == 5);
    let params = new_config.as_ref().or(known);
    let mut annexb = Vec::with_capacity(b.len() + 64);
    let mut put = |n: &[u8]| {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(n);
    };
    if keyframe
        && sps.is_empty()
        && let Some(p) = params
    {
        p.sps.iter().chain(p.pps.iter()).for_each(|n| put(n));
    }
    for n in nals.iter().filter(|n| kind(n) != 9) {
        put(n);
    }
    AccessUnit { new_config, keyframe, annexb }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nal_units_split_at_three_and_four_byte_start_codes() {
        let b = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 1, 2, 3, 0, 0, 0, 1, 0x68, 4, 0, 0, 1, 0x65, 5, 0];
        assert_eq!(nal_units(&b), vec![&[0x09, 0xF0][..], &[0x67, 1, 2, 3], &[0x68, 4], &[0x65, 5, 0]]);
        assert!(nal_units(&[1, 2, 3]).is_empty());
        assert!(nal_units(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn a_keyframe_gets_its_parameter_sets_and_a_new_config_is_reported_once() {
        let first = [
            &[0, 0, 0, 1, 0x09, 0xF0][..],
            &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 9],
            &[0, 0, 0, 1, 0x68, 0xCE],
            &[0, 0, 1, 0x65, 7, 7],
        ]
        .concat();
        let au = access_unit(&first, None);
        let cfg = au.new_config.clone().expect("config");
        assert_eq!(cfg.profile_level_id, [0x42, 0xC0, 0x1E]);
        assert!(au.keyframe);
        assert_eq!(nal_units(&au.annexb).len(), 3, "the delimiter is dropped");
        assert!(access_unit(&first, Some(&cfg)).new_config.is_none(), "same parameters: nothing new");
        // A keyframe without parameter sets gets the known ones in front.
        let bare = [0, 0, 0, 1, 0x65, 8, 8];
        let au = access_unit(&bare, Some(&cfg));
        assert!(au.keyframe && au.new_config.is_none());
        let nals = nal_units(&au.annexb);
        assert_eq!(nals.iter().map(|n| n[0] & 0x1F).collect::<Vec<_>>(), [7, 8, 5]);
        let delta = access_unit(&[0, 0, 0, 1, 0x41, 1], Some(&cfg));
        assert!(!delta.keyframe && nal_units(&delta.annexb).len() == 1);
    }
}
