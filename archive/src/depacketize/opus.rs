//! Opus RTP payload format (RFC 7587): one RTP packet carries one Opus packet.

use super::{DepacketizeError, PayloadFormat};

/// The Opus [`PayloadFormat`].
#[derive(Debug, Default)]
pub struct OpusFormat;

impl PayloadFormat for OpusFormat {
    fn append(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<bool, DepacketizeError> {
        if payload.is_empty() {
            return Err(DepacketizeError::Truncated);
        }
        frame.extend_from_slice(payload);
        Ok(true)
    }

    fn finish(&mut self, frame: &[u8]) -> Result<bool, DepacketizeError> {
        packet_duration(frame).ok_or(DepacketizeError::Unsupported("invalid Opus packet"))?;
        Ok(true)
    }

    fn reset(&mut self) {}

    fn packet_is_frame(&self) -> bool {
        true
    }
}

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 section 3.1); None
/// for a malformed packet.
pub fn packet_duration(packet: &[u8]) -> Option<u32> {
    relaycast_codec::opus::packet_duration(packet).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Depacketizer;
    use crate::depacketize::test_util::pkt;

    #[test]
    fn every_packet_is_a_keyframe() {
        let mut d = Depacketizer::new(OpusFormat);
        let mut out = Vec::new();
        d.push(&pkt(1, 0, true, &[0xfc, 1, 2]), false, &mut out);
        d.push(&pkt(2, 960, false, &[0xfc, 3]), false, &mut out);
        d.push(&pkt(4, 2880, false, &[0xfc, 4]), true, &mut out);
        d.push(&pkt(5, 3840, false, &[]), false, &mut out);
        d.push(&pkt(6, 4800, false, &[0xfb]), false, &mut out); // code 3 without count byte
        assert_eq!(
            out.iter().map(|f| f.timestamp).collect::<Vec<_>>(),
            vec![0, 960, 2880]
        );
        assert!(out.iter().all(|f| f.keyframe));
    }

    #[test]
    fn toc_durations() {
        assert_eq!(packet_duration(&[0xfc]), Some(960)); // CELT FB 20 ms
        assert_eq!(packet_duration(&[0x78 | 1]), Some(960 * 2)); // SILK 20 ms, two frames
        assert_eq!(packet_duration(&[0x03, 0x03]), Some(480 * 3));
        assert_eq!(packet_duration(&[0x1b, 0x03]), None); // 180 ms > 120 ms
        assert_eq!(packet_duration(&[]), None);
    }
}
