//! H264: RTP payloads (RFC 6184 single NAL unit, STAP-A and FU-A packets), 4-byte
//! length-prefixed access units (the `avcC` sample format), and the frame size an SPS describes.

mod sps;

pub use sps::sps_size;

use crate::CodecError;

/// NAL unit type of a non-IDR slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// NAL unit type of filler data.
pub const NAL_FILLER: u8 = 12;
/// RFC 6184 single-time aggregation packet.
pub const STAP_A: u8 = 24;
/// RFC 6184 fragmentation unit.
pub const FU_A: u8 = 28;

/// The NAL unit type (5 bits) of a NAL unit header byte.
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// One H264 RTP payload, split by its packetization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A single NAL unit packet (types 1..=23): the whole NAL unit, header included.
    Single(&'a [u8]),
    /// A STAP-A: iterate it for its NAL units.
    StapA(StapA<'a>),
    /// One FU-A fragment.
    FuA(FuA<'a>),
}

impl<'a> Payload<'a> {
    /// Splits an RTP payload; fails when empty or truncated, and on types this SFU does not
    /// negotiate (STAP-B, MTAP, FU-B, reserved) or a forbidden bit set in the first byte.
    pub fn parse(payload: &'a [u8]) -> Result<Self, CodecError> {
        let (&first, rest) = payload.split_first().ok_or(CodecError::Truncated)?;
        if first & 0x80 != 0 {
            return Err(CodecError::Malformed("H264 forbidden_zero_bit set"));
        }
        match nal_type(first) {
            1..=23 => Ok(Payload::Single(payload)),
            STAP_A if rest.is_empty() => Err(CodecError::Truncated),
            STAP_A => Ok(Payload::StapA(StapA { rest })),
            FU_A => {
                let (&header, body) = rest.split_first().ok_or(CodecError::Truncated)?;
                Ok(Payload::FuA(FuA {
                    indicator: first,
                    header,
                    body,
                }))
            }
            _ => Err(CodecError::Unsupported("H264 packetization type")),
        }
    }
}

/// The NAL units of a STAP-A (each a 16-bit size and the unit); yields an error once and then
/// stops when a size runs past the end or one byte is left over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StapA<'a> {
    /// Aggregation units not yet read.
    rest: &'a [u8],
}

impl<'a> Iterator for StapA<'a> {
    type Item = Result<&'a [u8], CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.rest);
        let (size, tail) = match rest {
            [hi, lo, tail @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
            _ => return Some(Err(CodecError::Truncated)),
        };
        let Some(nal) = tail.get(..size) else {
            return Some(Err(CodecError::Truncated));
        };
        self.rest = tail.get(size..).unwrap_or_default();
        Some(Ok(nal))
    }
}

/// One FU-A fragment (RFC 6184 section 5.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuA<'a> {
    /// The FU indicator byte (F and NRI of the fragmented NAL unit, type 28).
    pub indicator: u8,
    /// The FU header byte (S, E, R, type of the fragmented NAL unit).
    pub header: u8,
    /// The fragment's bytes (for the first fragment: the NAL unit after its header byte).
    pub body: &'a [u8],
}

impl FuA<'_> {
    /// S: the first fragment of the NAL unit.
    pub fn start(&self) -> bool {
        self.header & 0x80 != 0
    }

    /// E: the last fragment of the NAL unit.
    pub fn end(&self) -> bool {
        self.header & 0x40 != 0
    }

    /// Type of the fragmented NAL unit.
    pub fn nal_type(&self) -> u8 {
        nal_type(self.header)
    }

    /// The fragmented NAL unit's header byte, rebuilt from indicator and FU header.
    pub fn nal_header(&self) -> u8 {
        (self.indicator & 0xe0) | nal_type(self.header)
    }
}

/// What [`inspect`] found in one payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keyframe {
    /// An IDR or SPS NAL unit starts in this packet (single, inside a STAP-A, or a first FU-A).
    pub keyframe_start: bool,
    /// Frame size from the first SPS starting in this packet, when it parses.
    pub sps_size: Option<(u32, u32)>,
}

/// Reads an H264 RTP payload once for keyframe detection and the SPS frame size.
///
/// Fails when the payload itself is malformed ([`Payload::parse`]); a STAP-A that breaks off
/// after some units reports what those units carried.
pub fn inspect(payload: &[u8]) -> Result<Keyframe, CodecError> {
    let mut k = Keyframe::default();
    let mut look = |header: u8, body: &[u8]| match nal_type(header) {
        NAL_IDR => k.keyframe_start = true,
        NAL_SPS => {
            k.keyframe_start = true;
            if k.sps_size.is_none() {
                k.sps_size = sps_size(body).ok();
            }
        }
        _ => {}
    };
    match Payload::parse(payload)? {
        Payload::Single(nal) => look(nal[0], &nal[1..]),
        Payload::StapA(units) => {
            for nal in units.map_while(Result::ok) {
                if let Some((&header, body)) = nal.split_first() {
                    look(header, body);
                }
            }
        }
        Payload::FuA(fu) if fu.start() => look(fu.header, fu.body),
        Payload::FuA(_) => {}
    }
    Ok(k)
}

/// Iterates over the NAL units of a 4-byte length-prefixed buffer (an `avcC` sample); yields an
/// error once and then stops when a length runs past the end.
pub fn length_prefixed(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], CodecError>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let all = std::mem::take(&mut rest);
        let Some((len, tail)) = all.split_first_chunk::<4>() else {
            return Some(Err(CodecError::Truncated));
        };
        let Ok(len) = usize::try_from(u32::from_be_bytes(*len)) else {
            return Some(Err(CodecError::Truncated));
        };
        let Some(nal) = tail.get(..len) else {
            return Some(Err(CodecError::Truncated));
        };
        rest = tail.get(len..).unwrap_or_default();
        Some(Ok(nal))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    }

    const SPS_640: &str =
        "67 42 c0 1e d9 00 a0 2f f9 70 11 00 00 03 00 01 00 00 03 00 3c 0f 16 2e 48";
    const SPS_1080: &str =
        "67 64 00 28 ac d9 40 78 02 27 e5 c0 44 00 00 03 00 04 00 00 03 00 f0 3c 60 c6 58";
    const SPS_720: &str =
        "67 4d 40 1f ec a0 28 02 dd 80 88 00 00 03 00 08 00 00 03 01 e0 78 c1 8c b0";
    const PPS: &str = "68 cb 83 cb 20";
    const IDR: &str = "65 88 84 09 f2 62 80 00";
    const NON_IDR: &str = "41 9a 21 6c 41 0f";

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
        let mut out = vec![
            (nal[0] & 0xe0) | FU_A,
            (if start { 0x80 } else { 0 }) | (nal[0] & 0x1f),
        ];
        out.extend(nal[1..].iter().take(len));
        out
    }

    fn key(p: &[u8]) -> bool {
        inspect(p).is_ok_and(|k| k.keyframe_start)
    }

    fn size(p: &[u8]) -> Option<(u32, u32)> {
        inspect(p).ok()?.sps_size
    }

    #[test]
    fn payload_kinds() {
        assert_eq!(
            Payload::parse(&hex(IDR)),
            Ok(Payload::Single(&hex(IDR)[..]))
        );
        let p = stap_a(&[PPS, IDR]);
        let Ok(Payload::StapA(units)) = Payload::parse(&p) else {
            panic!("stap-a")
        };
        assert_eq!(
            units.collect::<Vec<_>>(),
            vec![Ok(&hex(PPS)[..]), Ok(&hex(IDR)[..])]
        );
        let p = fu_a(IDR, true, 3);
        let Ok(Payload::FuA(fu)) = Payload::parse(&p) else {
            panic!("fu-a")
        };
        assert!(fu.start() && !fu.end());
        assert_eq!(
            (fu.nal_type(), fu.nal_header(), fu.body),
            (NAL_IDR, 0x65, &hex(IDR)[1..4])
        );
        let end = FuA {
            indicator: 0x7c,
            header: 0x45,
            body: &[],
        };
        assert!(end.end() && !end.start());
        // Empty, STAP-A with no units, FU-A with no header, forbidden bit, other types.
        assert_eq!(Payload::parse(&[]), Err(CodecError::Truncated));
        assert_eq!(Payload::parse(&[0x78]), Err(CodecError::Truncated));
        assert_eq!(Payload::parse(&[0x7c]), Err(CodecError::Truncated));
        assert!(matches!(
            Payload::parse(&[0xe5, 0x00]),
            Err(CodecError::Malformed(_))
        ));
        for t in [0u8, 25, 26, 27, 29, 30, 31] {
            assert!(
                matches!(
                    Payload::parse(&[0x60 | t, 0x85, 0x67]),
                    Err(CodecError::Unsupported(_))
                ),
                "type {t}"
            );
        }
    }

    #[test]
    fn stap_a_truncations() {
        // A size past the end, and a single leftover byte: one error, then the end.
        let mut p = stap_a(&[PPS, IDR]);
        p.truncate(p.len() - 3);
        let Ok(Payload::StapA(units)) = Payload::parse(&p) else {
            panic!("stap-a")
        };
        assert_eq!(
            units.collect::<Vec<_>>(),
            vec![Ok(&hex(PPS)[..]), Err(CodecError::Truncated)]
        );
        let mut p = stap_a(&[PPS]);
        p.push(0x00);
        let Ok(Payload::StapA(units)) = Payload::parse(&p) else {
            panic!("stap-a")
        };
        assert_eq!(
            units.collect::<Vec<_>>(),
            vec![Ok(&hex(PPS)[..]), Err(CodecError::Truncated)]
        );
        // Zero-sized units are yielded empty.
        let p = stap_a(&["", PPS]);
        let Ok(Payload::StapA(units)) = Payload::parse(&p) else {
            panic!("stap-a")
        };
        assert_eq!(units.count(), 2);
    }

    #[test]
    fn single_nal_keyframes() {
        assert!(key(&hex(IDR)));
        assert_eq!(size(&hex(IDR)), None);
        assert!(!key(&hex(NON_IDR)));
        assert!(!key(&hex(PPS)));
        assert!(!key(&[]));
        assert!(key(&[0x65]));
        assert!(
            key(&[0x67]),
            "an SPS starts a keyframe even when it does not parse"
        );
        assert_eq!(size(&[0x67]), None);
        assert_eq!(size(&hex(SPS_640)), Some((640, 360)));
    }

    #[test]
    fn stap_a_keyframes() {
        let p = stap_a(&[SPS_640, PPS, IDR]);
        assert_eq!(
            inspect(&p),
            Ok(Keyframe {
                keyframe_start: true,
                sps_size: Some((640, 360))
            })
        );
        let p = stap_a(&[PPS, IDR]);
        assert_eq!(
            inspect(&p),
            Ok(Keyframe {
                keyframe_start: true,
                sps_size: None
            })
        );
        assert!(!key(&stap_a(&[PPS, NON_IDR])));
        // A size pointing past the end: no panic, no match.
        let mut p = stap_a(&[PPS, SPS_640]);
        p.truncate(p.len() - 3);
        assert_eq!(inspect(&p), Ok(Keyframe::default()));
        // Zero-sized entries are skipped.
        assert_eq!(size(&stap_a(&["", SPS_720])), Some((1280, 720)));
    }

    #[test]
    fn fu_a_keyframes() {
        assert!(key(&fu_a(IDR, true, 100)));
        assert!(!key(&fu_a(IDR, false, 100)));
        assert!(!key(&fu_a(NON_IDR, true, 100)));
        let sps = fu_a(SPS_1080, true, 100);
        assert_eq!(
            inspect(&sps),
            Ok(Keyframe {
                keyframe_start: true,
                sps_size: Some((1920, 1080))
            })
        );
        assert_eq!(size(&fu_a(SPS_1080, true, 5)), None);
        assert_eq!(size(&fu_a(SPS_1080, false, 100)), None);
    }

    #[test]
    fn length_prefixed_units() {
        let buf = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41];
        let units: Vec<_> = length_prefixed(&buf).collect();
        assert_eq!(units, vec![Ok(&[0x65, 1][..]), Ok(&[0x41][..])]);
        assert_eq!(
            length_prefixed(&[0, 0, 0, 9, 1]).collect::<Vec<_>>(),
            vec![Err(CodecError::Truncated)]
        );
        assert_eq!(
            length_prefixed(&[0, 0]).collect::<Vec<_>>(),
            vec![Err(CodecError::Truncated)]
        );
        assert_eq!(
            length_prefixed(&[0, 0, 0, 0]).collect::<Vec<_>>(),
            vec![Ok(&[][..])]
        );
        assert_eq!(length_prefixed(&[]).count(), 0);
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(0x5eed_c0de);
        let leads = [0x67u8, 0x78, 0x7c, 0x65, 0x27, 0x47, 0x18];
        for i in 0..20_000 {
            let len = rng.random_range(0..64usize);
            let mut buf = [0u8; 64];
            rng.fill(&mut buf[..len]);
            if len > 0 && i % 2 == 0 {
                buf[0] = leads[rng.random_range(0..leads.len())];
            }
            let p = &buf[..len];
            let _ = inspect(p);
            let _ = sps_size(p);
            assert!(length_prefixed(p).take(100).count() <= 17);
        }
    }
}
