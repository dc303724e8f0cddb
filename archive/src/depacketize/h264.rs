//! H264 RTP payload format (RFC 6184): single NAL unit, STAP-A and FU-A packets.
//!
//! Frames are produced as 4-byte length-prefixed NAL units (the `avcC` sample format). Parameter
//! sets stay in-band (so each segment decodes alone) and are also captured for the `avcC` box.

use relaycast_codec::h264::{
    NAL_AUD, NAL_FILLER, NAL_IDR, NAL_PPS, NAL_SPS, Payload, length_prefixed, nal_type,
};

use super::{DepacketizeError, PayloadFormat};

/// The H264 [`PayloadFormat`].
#[derive(Debug, Default)]
pub struct H264Format {
    /// Offset in the frame of the length prefix of the FU-A NAL unit being reassembled.
    fu_start: Option<usize>,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl H264Format {
    /// The most recent sequence parameter set seen in a complete frame.
    pub fn sps(&self) -> Option<&[u8]> {
        self.sps.as_deref()
    }

    /// The most recent picture parameter set seen in a complete frame.
    pub fn pps(&self) -> Option<&[u8]> {
        self.pps.as_deref()
    }

    fn push_nal(&mut self, nal: &[u8], frame: &mut Vec<u8>) -> Result<(), DepacketizeError> {
        let header = *nal.first().ok_or(DepacketizeError::Truncated)?;
        if header & 0x80 != 0 {
            return Err(DepacketizeError::Unsupported("forbidden_zero_bit set"));
        }
        match nal_type(header) {
            NAL_AUD | NAL_FILLER => {}
            0 | 24..=31 => return Err(DepacketizeError::Unsupported("NAL type inside aggregate")),
            _ => {
                let len = u32::try_from(nal.len()).map_err(|_| DepacketizeError::TooLarge)?;
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(nal);
            }
        }
        Ok(())
    }
}

impl PayloadFormat for H264Format {
    fn append(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<bool, DepacketizeError> {
        let payload = Payload::parse(payload)?;
        if !matches!(payload, Payload::FuA(_)) && self.fu_start.is_some() {
            return Err(DepacketizeError::Fragmentation("FU-A interrupted"));
        }
        match payload {
            Payload::Single(nal) => {
                self.push_nal(nal, frame)?;
                Ok(true)
            }
            Payload::StapA(units) => {
                for nal in units {
                    self.push_nal(nal?, frame)?;
                }
                Ok(true)
            }
            Payload::FuA(fu) => {
                if fu.start() {
                    if self.fu_start.is_some() {
                        return Err(DepacketizeError::Fragmentation(
                            "FU-A start while one is open",
                        ));
                    }
                    self.fu_start = Some(frame.len());
                    frame.extend_from_slice(&[0, 0, 0, 0, fu.nal_header()]);
                } else if self.fu_start.is_none() {
                    return Err(DepacketizeError::Fragmentation(
                        "FU-A continuation without start",
                    ));
                }
                frame.extend_from_slice(fu.body);
                if fu.end() {
                    let at = self
                        .fu_start
                        .take()
                        .ok_or(DepacketizeError::Fragmentation("FU-A end"))?;
                    let nal_len = frame
                        .len()
                        .checked_sub(at)
                        .and_then(|n| n.checked_sub(4))
                        .ok_or(DepacketizeError::Fragmentation("FU-A end"))?;
                    let len = u32::try_from(nal_len).map_err(|_| DepacketizeError::TooLarge)?;
                    frame
                        .get_mut(at..at + 4)
                        .ok_or(DepacketizeError::Fragmentation("FU-A end"))?
                        .copy_from_slice(&len.to_be_bytes());
                }
                Ok(fu.start())
            }
        }
    }

    fn finish(&mut self, frame: &[u8]) -> Result<bool, DepacketizeError> {
        if self.fu_start.is_some() {
            return Err(DepacketizeError::Fragmentation("frame ended inside FU-A"));
        }
        let mut keyframe = false;
        let mut has_slice = false;
        let (mut sps, mut pps) = (None, None);
        for nal in length_prefixed(frame) {
            let nal = nal?;
            match nal.first().map(|&h| nal_type(h)) {
                Some(NAL_IDR) => {
                    keyframe = true;
                    has_slice = true;
                }
                Some(1..=4) => has_slice = true,
                Some(NAL_SPS) => sps = Some(nal),
                Some(NAL_PPS) => pps = Some(nal),
                _ => {}
            }
        }
        if !has_slice {
            return Err(DepacketizeError::Unsupported("access unit without a slice"));
        }
        if keyframe
            && (sps.is_none() || pps.is_none())
            && (self.sps.is_none() || self.pps.is_none())
        {
            return Err(DepacketizeError::Unsupported(
                "IDR without known parameter sets",
            ));
        }
        if let Some(s) = sps {
            self.sps = Some(s.to_vec());
        }
        if let Some(p) = pps {
            self.pps = Some(p.to_vec());
        }
        Ok(keyframe)
    }

    fn reset(&mut self) {
        self.fu_start = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Depacketizer;
    use crate::depacketize::test_util::pkt;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00];
    const PPS: &[u8] = &[0x68, 0xce, 0x38, 0x80];

    fn prefixed(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = vec![0x78];
        for n in nals {
            v.extend_from_slice(&(n.len() as u16).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn stap_a_then_fu_a_builds_an_idr_access_unit() {
        let idr: Vec<u8> = std::iter::once(0x65)
            .chain((0..100).map(|i| i as u8))
            .collect();
        let mut d = Depacketizer::new(H264Format::default());
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, &stap_a(&[SPS, PPS])), false, &mut out);
        let mut f1 = vec![0x7c, 0x80 | 5];
        f1.extend_from_slice(&idr[1..40]);
        let mut f2 = vec![0x7c, 5];
        f2.extend_from_slice(&idr[40..70]);
        let mut f3 = vec![0x7c, 0x40 | 5];
        f3.extend_from_slice(&idr[70..]);
        for (i, p) in [f1, f2, f3].iter().enumerate() {
            d.push(&pkt(2 + i as u64, 0, i == 2, p), false, &mut out);
        }
        assert_eq!(out.len(), 1);
        assert!(out[0].keyframe);
        assert_eq!(out[0].data, prefixed(&[SPS, PPS, &idr]));
        assert_eq!(d.format().sps(), Some(SPS));
        assert_eq!(d.format().pps(), Some(PPS));
        // A single-NAL non-IDR slice follows.
        d.push(&pkt(5, 3000, true, &[0x41, 0x9a, 0x01]), false, &mut out);
        assert_eq!(out.len(), 2);
        assert!(!out[1].keyframe);
        assert_eq!(out[1].data, prefixed(&[&[0x41, 0x9a, 0x01]]));
    }

    #[test]
    fn lost_fu_a_fragment_drops_the_frame_and_waits_for_idr() {
        let mut d = Depacketizer::new(H264Format::default());
        let mut out = Vec::new();
        d.push(&pkt(1, 0, false, &stap_a(&[SPS, PPS])), false, &mut out);
        d.push(&pkt(2, 0, true, &[0x65, 1, 2, 3]), false, &mut out);
        d.push(&pkt(3, 3000, false, &[0x5c, 0x81, 1, 2]), false, &mut out);
        // seq 4 (middle fragment) lost
        d.push(&pkt(5, 3000, true, &[0x5c, 0x41, 5, 6]), true, &mut out);
        d.push(&pkt(6, 6000, true, &[0x41, 7]), false, &mut out);
        // FU-A continuation arriving first in a frame is never a start.
        d.push(&pkt(7, 9000, true, &[0x5c, 0x41, 5, 6]), false, &mut out);
        d.push(
            &pkt(8, 12000, true, &stap_a(&[SPS, PPS, &[0x65, 9]])),
            false,
            &mut out,
        );
        let got: Vec<(u32, bool)> = out.iter().map(|f| (f.timestamp, f.keyframe)).collect();
        assert_eq!(got, vec![(0, true), (12000, true)]);
    }

    #[test]
    fn idr_without_parameter_sets_is_rejected() {
        let mut d = Depacketizer::new(H264Format::default());
        let mut out = Vec::new();
        d.push(&pkt(1, 0, true, &[0x65, 1, 2]), false, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn malformed_payloads_never_panic() {
        let bad: [&[u8]; 9] = [
            &[],
            &[0x78],
            &[0x78, 0x00],
            &[0x78, 0x00, 0x05, 0x65],
            &[0x7c],
            &[0x7c, 0x05, 1],
            &[0x7d, 0x00],
            &[0x9f, 0x00],
            &[0x78, 0x00, 0x01, 0x18],
        ];
        let mut d = Depacketizer::new(H264Format::default());
        let mut out = Vec::new();
        for (i, p) in bad.iter().enumerate() {
            d.push(&pkt(i as u64, i as u32, true, p), false, &mut out);
        }
        assert!(out.is_empty());
        assert!(length_prefixed(&[0, 0, 0, 9, 1]).any(|r| r.is_err()));
    }
}
