//! Sans-IO synthetic VP8 simulcast source: frame sizes from a bitrate, RFC 7741 payload
//! descriptors with a 15-bit picture id and TL0PICIDX, periodic keyframes, and a send timestamp
//! stamped into the first packet of every frame.
//!
//! Packet layout of a frame's first packet:
//!
//! ```text
//! | VP8 descriptor (6) | VP8 frame header (10) | stamp (17) | filler |
//! ```
//!
//! The descriptor is the only part an SFU rewrites (picture id, TL0PICIDX), so the stamp sits
//! after it and after the 10-byte VP8 frame header (3-byte frame tag, and on keyframes the start
//! code and frame size), at a fixed offset that never overlaps anything a forwarder reads.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Length of the VP8 payload descriptor the source writes (X, I with 15-bit id, L, T).
pub const DESCRIPTOR_LEN: usize = 6;
/// Length of the VP8 frame header area before the stamp (frame tag + keyframe start code and size).
pub const VP8_HEADER_LEN: usize = 10;
/// Magic bytes that open a stamp.
pub const STAMP_MAGIC: [u8; 4] = *b"RCLT";
/// Length of a stamp: magic, send time (u64 ns), layer (u8), frame number (u32).
pub const STAMP_LEN: usize = 17;
/// Default largest RTP payload, leaving room for RTP header, extensions and SRTP tag in 1200 bytes.
pub const DEFAULT_MAX_PAYLOAD: usize = 1100;
/// RTP clock rate of video.
pub const VIDEO_CLOCK: u32 = 90_000;

/// Process-wide monotonic epoch shared by the publisher and the viewers.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide monotonic epoch.
pub fn now_ns() -> u64 {
    instant_ns(Instant::now())
}

/// Nanoseconds between the process-wide epoch and `t` (0 if `t` is earlier).
pub fn instant_ns(t: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    t.saturating_duration_since(epoch).as_nanos() as u64
}

/// One simulcast layer of the synthetic source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    /// RID of the layer (q, h, f).
    pub rid: String,
    /// Target bitrate in bit/s.
    pub bitrate_bps: u32,
    /// Frame width written into keyframe headers.
    pub width: u16,
    /// Frame height written into keyframe headers.
    pub height: u16,
}

impl LayerSpec {
    /// The three layers of a typical 720p simulcast: q 150 kbit/s, h 500 kbit/s, f 1.5 Mbit/s.
    pub fn simulcast3() -> Vec<LayerSpec> {
        vec![
            LayerSpec { rid: "q".into(), bitrate_bps: 150_000, width: 320, height: 180 },
            LayerSpec { rid: "h".into(), bitrate_bps: 500_000, width: 640, height: 360 },
            LayerSpec { rid: "f".into(), bitrate_bps: 1_500_000, width: 1280, height: 720 },
        ]
    }

    /// The single top layer (f, 1.5 Mbit/s), for servers fed one plain RTP stream.
    pub fn single_f() -> Vec<LayerSpec> {
        vec![LayerSpec { rid: "f".into(), bitrate_bps: 1_500_000, width: 1280, height: 720 }]
    }
}

/// Configuration of the synthetic source.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Layers, lowest first.
    pub layers: Vec<LayerSpec>,
    /// Frames per second.
    pub fps: u32,
    /// A keyframe every this many frames.
    pub keyframe_interval: u32,
    /// Largest RTP payload in bytes.
    pub max_payload: usize,
    /// Keyframe size as a multiple of the average frame size.
    pub keyframe_factor: u32,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            layers: LayerSpec::simulcast3(),
            fps: 30,
            keyframe_interval: 60,
            max_payload: DEFAULT_MAX_PAYLOAD,
            keyframe_factor: 3,
        }
    }
}

/// One RTP packet produced by the source.
#[derive(Clone, Debug)]
pub struct SourcePacket {
    /// Index of the layer in [`SourceConfig::layers`].
    pub layer: u8,
    /// Extended RTP sequence number (per layer, starting at 1).
    pub seq: u64,
    /// RTP timestamp (90 kHz).
    pub rtp_ts: u32,
    /// Last packet of the frame.
    pub marker: bool,
    /// Part of a keyframe.
    pub keyframe: bool,
    /// RTP payload: VP8 descriptor and frame data.
    pub payload: Vec<u8>,
}

/// The stamp carried by a frame's first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Send time, nanoseconds since the process-wide epoch.
    pub send_ns: u64,
    /// Layer index the frame belongs to.
    pub layer: u8,
    /// Frame number within the layer.
    pub frame: u32,
}

#[derive(Clone, Debug, Default)]
struct LayerState {
    picture_id: u16,
    tl0_pic_idx: u8,
    seq: u64,
    force_keyframe: bool,
}

/// The synthetic simulcast source.
#[derive(Debug)]
pub struct SyntheticSource {
    cfg: SourceConfig,
    frame_no: u32,
    layers: Vec<LayerState>,
}

impl SyntheticSource {
    /// A source whose first frame on every layer is a keyframe.
    pub fn new(cfg: SourceConfig) -> Self {
        let layers = cfg
            .layers
            .iter()
            .enumerate()
            .map(|(i, _)| LayerState {
                picture_id: (i as u16 * 1000) & 0x7fff,
                tl0_pic_idx: i as u8 * 50,
                seq: 1,
                force_keyframe: true,
            })
            .collect();
        SyntheticSource { cfg, frame_no: 0, layers }
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// Time between frames.
    pub fn frame_interval(&self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.cfg.fps.max(1)))
    }

    /// Frames produced so far (per layer).
    pub fn frames(&self) -> u32 {
        self.frame_no
    }

    /// Makes the next frame of `layer` a keyframe (an out-of-range layer is ignored).
    pub fn request_keyframe(&mut self, layer: usize) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.force_keyframe = true;
        }
    }

    /// Average frame size in bytes of a layer.
    fn avg_frame(&self, layer: usize) -> usize {
        let bps = self.cfg.layers[layer].bitrate_bps as usize;
        (bps / 8 / self.cfg.fps.max(1) as usize).max(DESCRIPTOR_LEN + VP8_HEADER_LEN + STAMP_LEN + 16)
    }

    /// Frame data size (without descriptors) of a keyframe or a delta frame, so that a keyframe
    /// interval averages to the layer's bitrate.
    pub fn frame_size(&self, layer: usize, keyframe: bool) -> usize {
        let avg = self.avg_frame(layer);
        let k = self.cfg.keyframe_interval.max(2) as usize;
        let key = avg * self.cfg.keyframe_factor.max(1) as usize;
        let min = VP8_HEADER_LEN + STAMP_LEN + 16;
        if keyframe {
            key.max(min)
        } else {
            ((avg * k).saturating_sub(key) / (k - 1)).max(min)
        }
    }

    /// Produces the next frame on every layer, stamped with `send_ns`, appending its packets.
    pub fn next_frame(&mut self, send_ns: u64, out: &mut Vec<SourcePacket>) {
        let interval = self.cfg.keyframe_interval.max(1);
        let periodic = self.frame_no.is_multiple_of(interval);
        let rtp_ts = (u64::from(self.frame_no) * u64::from(VIDEO_CLOCK) / u64::from(self.cfg.fps.max(1))) as u32;
        for layer in 0..self.layers.len() {
            let keyframe = periodic || self.layers[layer].force_keyframe;
            let size = self.frame_size(layer, keyframe);
            let spec = self.cfg.layers[layer].clone();
            let st = &mut self.layers[layer];
            st.force_keyframe = false;
            st.picture_id = (st.picture_id + 1) & 0x7fff;
            st.tl0_pic_idx = st.tl0_pic_idx.wrapping_add(1);
            let stamp = Stamp { send_ns, layer: layer as u8, frame: self.frame_no };
            let frame = frame_data(&spec, keyframe, size, &stamp);
            let chunk = self.cfg.max_payload.saturating_sub(DESCRIPTOR_LEN).max(64);
            let count = frame.len().div_ceil(chunk);
            for (i, part) in frame.chunks(chunk).enumerate() {
                let mut payload = Vec::with_capacity(DESCRIPTOR_LEN + part.len());
                payload.extend_from_slice(&descriptor(i == 0, st.picture_id, st.tl0_pic_idx));
                payload.extend_from_slice(part);
                out.push(SourcePacket {
                    layer: layer as u8,
                    seq: st.seq,
                    rtp_ts,
                    marker: i + 1 == count,
                    keyframe,
                    payload,
                });
                st.seq += 1;
            }
        }
        self.frame_no = self.frame_no.wrapping_add(1);
    }
}

/// VP8 payload descriptor: X=1, S (start of partition 0), I with 15-bit picture id, L, T.
pub fn descriptor(start: bool, picture_id: u16, tl0_pic_idx: u8) -> [u8; DESCRIPTOR_LEN] {
    [
        0x80 | if start { 0x10 } else { 0x00 },
        0xe0,
        0x80 | ((picture_id >> 8) as u8 & 0x7f),
        picture_id as u8,
        tl0_pic_idx,
        0x00, // TID 0, Y 0, KEYIDX 0
    ]
}

/// Frame data: VP8 frame header, the stamp, then filler up to `size` bytes.
fn frame_data(spec: &LayerSpec, keyframe: bool, size: usize, stamp: &Stamp) -> Vec<u8> {
    let mut f = Vec::with_capacity(size);
    // Frame tag: P bit (0 = keyframe), version 0, show_frame 1, first partition size.
    f.push(if keyframe { 0x10 } else { 0x11 });
    f.extend_from_slice(&[0x02, 0x00]);
    if keyframe {
        f.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        f.extend_from_slice(&(spec.width & 0x3fff).to_le_bytes());
        f.extend_from_slice(&(spec.height & 0x3fff).to_le_bytes());
    } else {
        f.extend_from_slice(&[0u8; 7]);
    }
    f.extend_from_slice(&encode_stamp(stamp));
    f.resize(size.max(f.len()), 0x5a);
    f
}

/// The stamp's bytes.
pub fn encode_stamp(s: &Stamp) -> [u8; STAMP_LEN] {
    let mut b = [0u8; STAMP_LEN];
    b[..4].copy_from_slice(&STAMP_MAGIC);
    b[4..12].copy_from_slice(&s.send_ns.to_be_bytes());
    b[12] = s.layer;
    b[13..17].copy_from_slice(&s.frame.to_be_bytes());
    b
}

/// Length of a VP8 payload descriptor at the start of `payload`, None when truncated.
pub fn descriptor_len(payload: &[u8]) -> Option<usize> {
    let first = *payload.first()?;
    let mut off = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(off)?;
        off += 1;
        if ext & 0x80 != 0 {
            let pid = *payload.get(off)?;
            off += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            off += 1;
        }
        if ext & 0x30 != 0 {
            off += 1;
        }
    }
    (off <= payload.len()).then_some(off)
}

/// The stamp in a frame's first packet, None for any other payload. Never panics.
pub fn parse_stamp(payload: &[u8]) -> Option<Stamp> {
    let first = *payload.first()?;
    // Start of partition 0 only.
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return None;
    }
    let off = descriptor_len(payload)? + VP8_HEADER_LEN;
    let b = payload.get(off..off + STAMP_LEN)?;
    if b[..4] != STAMP_MAGIC {
        return None;
    }
    Some(Stamp {
        send_ns: u64::from_be_bytes(b[4..12].try_into().ok()?),
        layer: b[12],
        frame: u32::from_be_bytes(b[13..17].try_into().ok()?),
    })
}

/// A plain RTP packet (12-byte header, no extensions) for servers fed over unencrypted RTP.
pub fn plain_rtp(pt: u8, ssrc: u32, p: &SourcePacket) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + p.payload.len());
    b.push(0x80);
    b.push((pt & 0x7f) | if p.marker { 0x80 } else { 0 });
    b.extend_from_slice(&(p.seq as u16).to_be_bytes());
    b.extend_from_slice(&p.rtp_ts.to_be_bytes());
    b.extend_from_slice(&ssrc.to_be_bytes());
    b.extend_from_slice(&p.payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::Vp8Descriptor;

    fn frames(src: &mut SyntheticSource, n: usize) -> Vec<Vec<SourcePacket>> {
        (0..n)
            .map(|i| {
                let mut v = Vec::new();
                src.next_frame(1_000 + i as u64, &mut v);
                v
            })
            .collect()
    }

    #[test]
    fn descriptors_parse_with_str0m() {
        let mut src = SyntheticSource::new(SourceConfig::default());
        let mut last_pid = [None::<u16>; 3];
        for frame in frames(&mut src, 10) {
            for p in &frame {
                let d = Vp8Descriptor::parse(&p.payload).expect("valid descriptor");
                let pid = d.picture_id().expect("picture id");
                assert!(d.tl0_pic_idx().is_some());
                let l = p.layer as usize;
                if let Some(prev) = last_pid[l]
                    && prev != pid
                {
                    assert_eq!(pid, (prev + 1) & 0x7fff, "picture id increments per frame");
                }
                last_pid[l] = Some(pid);
                assert!(p.payload.len() <= DEFAULT_MAX_PAYLOAD);
            }
        }
    }

    #[test]
    fn keyframe_cadence_and_str0m_detection() {
        let cfg = SourceConfig { keyframe_interval: 5, ..SourceConfig::default() };
        let mut src = SyntheticSource::new(cfg);
        for (i, frame) in frames(&mut src, 16).into_iter().enumerate() {
            let first: Vec<_> = frame.iter().filter(|p| p.payload[0] & 0x10 != 0).collect();
            assert_eq!(first.len(), 3, "one frame start per layer");
            for p in first {
                let d = Vp8Descriptor::parse(&p.payload).unwrap();
                assert_eq!(d.starts_keyframe(&p.payload), i % 5 == 0, "frame {i}");
                assert_eq!(p.keyframe, i % 5 == 0);
            }
            assert!(frame.iter().filter(|p| p.marker).count() == 3);
        }
        src.request_keyframe(1);
        let mut v = Vec::new();
        src.next_frame(0, &mut v);
        let keys: Vec<u8> = v.iter().filter(|p| p.keyframe && p.payload[0] & 0x10 != 0).map(|p| p.layer).collect();
        assert_eq!(keys, vec![1]);
    }

    #[test]
    fn bitrate_matches_layer() {
        let mut src = SyntheticSource::new(SourceConfig::default());
        let mut bytes = [0usize; 3];
        for frame in frames(&mut src, 60) {
            for p in frame {
                bytes[p.layer as usize] += p.payload.len();
            }
        }
        for (i, spec) in LayerSpec::simulcast3().iter().enumerate() {
            let bps = bytes[i] * 8 / 2;
            let target = spec.bitrate_bps as usize;
            assert!(bps > target * 9 / 10 && bps < target * 12 / 10, "layer {i}: {bps} vs {target}");
        }
    }

    #[test]
    fn stamp_roundtrip_survives_descriptor_rewrite() {
        let mut src = SyntheticSource::new(SourceConfig::default());
        let mut v = Vec::new();
        src.next_frame(123_456_789_012, &mut v);
        let first = v.iter().find(|p| p.layer == 2 && p.payload[0] & 0x10 != 0).unwrap();
        let mut payload = first.payload.clone();
        // str0m accepts a picture id / TL0PICIDX patch of this descriptor (what an SFU applies
        // while serialising); the patched bytes are written by hand here.
        let d = Vp8Descriptor::parse(&payload).unwrap();
        assert!(d.patch().picture_id(42).tl0_pic_idx(9).build().is_ok());
        payload[2] = 0x80;
        payload[3] = 42;
        payload[4] = 9;
        let s = parse_stamp(&payload).expect("stamp");
        assert_eq!(s, Stamp { send_ns: 123_456_789_012, layer: 2, frame: 0 });
        // Continuation packets and garbage carry no stamp, and never panic.
        let cont = v.iter().find(|p| p.layer == 2 && p.payload[0] & 0x10 == 0).unwrap();
        assert_eq!(parse_stamp(&cont.payload), None);
        for n in 0..40 {
            let _ = parse_stamp(&payload[..n]);
        }
        assert_eq!(parse_stamp(&[]), None);
        assert_eq!(parse_stamp(&[0x90, 0xff]), None);
    }

    #[test]
    fn plain_rtp_header() {
        let p = SourcePacket { layer: 0, seq: 65_537, rtp_ts: 3000, marker: true, keyframe: false, payload: vec![1, 2] };
        let b = plain_rtp(96, 0x01020304, &p);
        assert_eq!(b, vec![0x80, 0xe0, 0, 1, 0, 0, 0x0b, 0xb8, 1, 2, 3, 4, 1, 2]);
    }
}
