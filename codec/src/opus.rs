//! Opus: the duration of a packet from its TOC byte (RFC 6716 section 3.1). One RTP packet
//! carries one Opus packet (RFC 7587).

use crate::CodecError;

/// Longest Opus packet in 48 kHz samples (120 ms).
pub const MAX_PACKET_SAMPLES: u32 = 5760;

/// Duration of an Opus packet in 48 kHz samples, from its TOC byte and (code 3) frame count.
///
/// Fails on an empty packet, a code 3 packet without its count byte, zero frames, or more than
/// 120 ms of audio.
pub fn packet_duration(packet: &[u8]) -> Result<u32, CodecError> {
    let toc = *packet.first().ok_or(CodecError::Truncated)?;
    let config = toc >> 3;
    let frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1).ok_or(CodecError::Truncated)? & 0x3f),
    };
    if frames == 0 {
        return Err(CodecError::Malformed("Opus packet of zero frames"));
    }
    let total = frame
        .checked_mul(frames)
        .ok_or(CodecError::Malformed("Opus packet too long"))?;
    if total > MAX_PACKET_SAMPLES {
        return Err(CodecError::Malformed("Opus packet longer than 120 ms"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        assert_eq!(packet_duration(&[0xfc]), Ok(960)); // CELT FB 20 ms
        assert_eq!(packet_duration(&[0x78 | 1]), Ok(960 * 2)); // SILK 20 ms, two frames
        assert_eq!(packet_duration(&[0x6a]), Ok(960 * 2)); // hybrid 20 ms, code 2
        assert_eq!(packet_duration(&[0x60]), Ok(480)); // hybrid 10 ms
        assert_eq!(packet_duration(&[0x03, 0x03]), Ok(480 * 3));
        assert_eq!(
            packet_duration(&[0x1b, 0x03]),
            Err(CodecError::Malformed("Opus packet longer than 120 ms"))
        );
        assert_eq!(
            packet_duration(&[0x03, 0x40]),
            Err(CodecError::Malformed("Opus packet of zero frames"))
        );
        assert_eq!(packet_duration(&[0xfb]), Err(CodecError::Truncated)); // code 3 without count
        assert_eq!(packet_duration(&[]), Err(CodecError::Truncated));
        // Every TOC with every count stays within 120 ms or fails.
        for toc in 0..=255u8 {
            for count in 0..=255u8 {
                assert!(
                    packet_duration(&[toc, count]).is_ok_and(|d| d <= MAX_PACKET_SAMPLES)
                        || packet_duration(&[toc, count]).is_err()
                );
            }
        }
    }
}
