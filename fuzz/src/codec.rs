//! The codec parsers shared by the SFU's forwarding path and the archive's depacketizers
//! (`relaycast-codec`): VP8 payload descriptors, key frame headers and the PictureID/TL0PICIDX
//! rewrite; H264 RTP payloads, STAP-A units, SPS sizes and length-prefixed access units.

use crate::input::Input;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[("vp8", vp8), ("h264", h264)];

/// VP8 payloads: the one parse the SFU does per packet (descriptor, keyframe start, frame size),
/// the frame header the archive checks, and the rewrite to a PictureID and TL0PICIDX taken from
/// the first three bytes, applied to a copy and parsed back.
pub fn vp8(data: &[u8]) {
    use relaycast_codec::{VideoCodec, parse_video, vp8};
    let mut input = Input(data);
    let (pid, tl0) = (input.u16(), input.byte());
    let payload = input.0;
    let _ = vp8::parse_frame_header(payload);
    let Ok(v) = parse_video(VideoCodec::Vp8, payload) else { return };
    let Some(d) = v.vp8 else { return };
    assert!(d.len < payload.len(), "a VP8 byte follows the descriptor");
    let _ = vp8::parse_frame_header(&payload[d.len..]);
    if let Some(rw) = d.rewrite(Some(pid), Some(tl0)) {
        let mut out = payload.to_vec();
        d.apply(&rw, &mut out).expect("a parsed descriptor fits its payload");
        let again = vp8::Descriptor::parse(&out).expect("a rewrite keeps the descriptor valid");
        assert_eq!(again.len, d.len);
        assert_eq!(again.picture_id, d.picture_id.map(|_| pid & if d.picture_id_15bit { 0x7fff } else { 0x7f }));
        assert_eq!(again.tl0_pic_idx, d.tl0_pic_idx.map(|_| tl0));
    }
}

/// H264 payloads: the SFU's one-pass keyframe and SPS inspection, the archive's payload split
/// (every STAP-A unit), SPS sizes, and the same bytes as a length-prefixed access unit.
pub fn h264(data: &[u8]) {
    use relaycast_codec::h264::{self, Payload};
    let _ = relaycast_codec::parse_video(relaycast_codec::VideoCodec::H264, data);
    if let Ok(Payload::StapA(units)) = Payload::parse(data) {
        for unit in units.take(4096) {
            let Ok(nal) = unit else { break };
            let _ = h264::sps_size(nal.get(1..).unwrap_or_default());
        }
    }
    let _ = h264::sps_size(data);
    for nal in h264::length_prefixed(data).take(4096) {
        if nal.is_err() {
            break;
        }
    }
}
