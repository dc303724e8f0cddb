//! Codec inspection for the forwarding path, from the shared `relaycast-codec` crate: each
//! incoming packet is parsed once ([`parse_video`]) into the [`MediaPacket`](crate::packet::MediaPacket)
//! every viewer reads. This module adds the one tie to str0m: the codec of a negotiated payload type.

pub use relaycast_codec::{Codec, CodecError, VideoCodec, VideoPayload, h264, parse_video, vp8};

/// The codec of a str0m payload type, None for codecs the SFU does not negotiate.
pub fn from_str0m(codec: str0m::format::Codec) -> Option<Codec> {
    match codec {
        str0m::format::Codec::Vp8 => Some(Codec::Vp8),
        str0m::format::Codec::H264 => Some(Codec::H264),
        str0m::format::Codec::Opus => Some(Codec::Opus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use str0m::rtp::Vp8Descriptor;

    #[test]
    fn str0m_codecs() {
        assert_eq!(from_str0m(str0m::format::Codec::Vp8), Some(Codec::Vp8));
        assert_eq!(from_str0m(str0m::format::Codec::H264), Some(Codec::H264));
        assert_eq!(from_str0m(str0m::format::Codec::Opus), Some(Codec::Opus));
        assert_eq!(from_str0m(str0m::format::Codec::Vp9), None);
    }

    #[test]
    fn vp8_parse_agrees_with_str0m() {
        // The descriptor the forwarding path parses is the one str0m patches on write: both
        // accept and reject the same payloads and read the same fields.
        let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
        let leads = [0x90u8, 0x10, 0x80, 0xb0, 0x00];
        for i in 0..50_000 {
            let len = rng.random_range(0..24usize);
            let mut buf = [0u8; 24];
            rng.fill(&mut buf[..len]);
            if len > 0 && i % 2 == 0 {
                buf[0] = leads[rng.random_range(0..leads.len())];
            }
            let p = &buf[..len];
            let (ours, theirs) = (vp8::Descriptor::parse(p).ok(), Vp8Descriptor::parse(p).ok());
            assert_eq!(ours.is_some(), theirs.is_some(), "{p:02x?}");
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                assert_eq!((ours.picture_id, ours.tl0_pic_idx), (theirs.picture_id(), theirs.tl0_pic_idx()));
                assert_eq!(ours.key_idx, theirs.key_idx());
                assert_eq!(ours.starts_keyframe, theirs.starts_keyframe(p));
            }
        }
    }
}
