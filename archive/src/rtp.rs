//! The packet type the archive consumes, RTP header parsing, and sequence/timestamp unwrapping.

use std::sync::Arc;
use std::time::Instant;

/// Whether a packet carries audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// The stream's audio track (Opus).
    Audio,
    /// The stream's video track (VP8 or H264).
    Video,
}

/// One decrypted RTP packet handed to the archive.
#[derive(Clone, Debug)]
pub struct RtpPacket {
    /// Audio or video.
    pub kind: MediaKind,
    /// Extended (never wrapping) sequence number; see [`SeqUnwrapper`] for raw 16-bit numbers.
    pub seq: u64,
    /// RTP timestamp as sent (wraps at 2^32).
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The RTP payload without header, padding or extensions.
    pub payload: Arc<[u8]>,
    /// When the packet arrived.
    pub arrival: Instant,
    /// When the publisher captured it, as a local instant on one timeline for all of the
    /// publisher's tracks (from its RTCP sender reports); `None` before its track's first report.
    pub capture: Option<Instant>,
}

/// Errors from parsing a raw RTP packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer bytes than the fixed header, CSRC list or extension need.
    #[error("RTP packet truncated")]
    Truncated,
    /// The version field is not 2.
    #[error("RTP version {0} is not 2")]
    BadVersion(u8),
    /// Padding length exceeds the payload.
    #[error("RTP padding larger than payload")]
    BadPadding,
}

/// The fields of a parsed RTP header plus the payload's location in the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// 16-bit sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Byte range of the payload inside the packet.
    pub payload: std::ops::Range<usize>,
}

impl RtpHeader {
    /// Parses an RTP header (RFC 3550: CSRCs, header extension and padding) from `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        if buf.len() < 12 {
            return Err(RtpError::Truncated);
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let padding = buf[0] & 0x20 != 0;
        let extension = buf[0] & 0x10 != 0;
        let csrc_count = usize::from(buf[0] & 0x0f);
        let mut start = 12 + 4 * csrc_count;
        if buf.len() < start {
            return Err(RtpError::Truncated);
        }
        if extension {
            if buf.len() < start + 4 {
                return Err(RtpError::Truncated);
            }
            let words = usize::from(u16::from_be_bytes([buf[start + 2], buf[start + 3]]));
            start += 4 + 4 * words;
            if buf.len() < start {
                return Err(RtpError::Truncated);
            }
        }
        let mut end = buf.len();
        if padding {
            let pad = usize::from(buf[end - 1]);
            if pad == 0 || pad > end - start {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(Self {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: start..end,
        })
    }
}

impl RtpPacket {
    /// Parses a raw RTP packet into an [`RtpPacket`], extending its sequence number with `unwrap`.
    pub fn from_bytes(
        buf: &[u8],
        kind: MediaKind,
        unwrap: &mut SeqUnwrapper,
        arrival: Instant,
    ) -> Result<Self, RtpError> {
        let header = RtpHeader::parse(buf)?;
        Ok(Self {
            kind,
            seq: unwrap.extend(header.seq),
            timestamp: header.timestamp,
            marker: header.marker,
            payload: Arc::from(&buf[header.payload]),
            arrival,
            capture: None,
        })
    }
}

/// Extends 16-bit RTP sequence numbers to a monotonic-ish u64 (RFC 3550 A.1 style).
#[derive(Clone, Debug, Default)]
pub struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    /// Returns the extended sequence number closest to the highest one seen so far.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => (1u64 << 16) + u64::from(seq),
            Some(last) => closest(last, u64::from(seq), 1 << 16),
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

/// Extends 32-bit RTP timestamps to u64, following forward wraparound.
#[derive(Clone, Debug, Default)]
pub struct TsUnwrapper {
    last: Option<u64>,
}

impl TsUnwrapper {
    /// Returns the extended timestamp closest to the last one seen.
    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => (1u64 << 32) + u64::from(ts),
            Some(last) => closest(last, u64::from(ts), 1 << 32),
        };
        self.last = Some(ext);
        ext
    }
}

/// The value `v + k * modulus` (k integer) nearest to `reference`, never below `modulus`.
fn closest(reference: u64, v: u64, modulus: u64) -> u64 {
    let base = reference - reference % modulus;
    let candidates = [
        base.saturating_sub(modulus) + v,
        base + v,
        base + modulus + v,
    ];
    candidates
        .into_iter()
        .filter(|c| *c >= modulus)
        .min_by_key(|c| c.abs_diff(reference))
        .unwrap_or(base + v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0x80, if marker { 0x80 | 96 } else { 96 }];
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&ts.to_be_bytes());
        b.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn parses_basic_header() {
        let raw = packet(65535, 90000, true, &[1, 2, 3]);
        let h = RtpHeader::parse(&raw).expect("valid");
        assert_eq!(
            (h.seq, h.timestamp, h.marker, h.payload_type),
            (65535, 90000, true, 96)
        );
        assert_eq!(&raw[h.payload], &[1, 2, 3]);
    }

    #[test]
    fn parses_csrc_extension_and_padding() {
        let mut raw = vec![0x80 | 0x20 | 0x10 | 1, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
        raw.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        raw.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // one-word extension
        raw.extend_from_slice(&[7, 8]);
        raw.extend_from_slice(&[0, 0, 3]); // 3 bytes padding
        let h = RtpHeader::parse(&raw).expect("valid");
        assert_eq!(&raw[h.payload], &[7, 8]);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(RtpHeader::parse(&[0x80; 5]), Err(RtpError::Truncated));
        assert_eq!(RtpHeader::parse(&[0u8; 20]), Err(RtpError::BadVersion(0)));
        let mut raw = packet(1, 1, false, &[1]);
        raw[0] |= 0x20;
        *raw.last_mut().expect("non-empty") = 50;
        assert_eq!(RtpHeader::parse(&raw), Err(RtpError::BadPadding));
        let mut raw = packet(1, 1, false, &[]);
        raw[0] |= 0x0f; // 15 CSRCs that are not there
        assert_eq!(RtpHeader::parse(&raw), Err(RtpError::Truncated));
    }

    #[test]
    fn seq_unwrap_follows_wraparound_and_reordering() {
        let mut u = SeqUnwrapper::default();
        let a = u.extend(65534);
        let b = u.extend(65535);
        let c = u.extend(0);
        let d = u.extend(65533); // late packet from before the wrap
        let e = u.extend(1);
        assert_eq!(b, a + 1);
        assert_eq!(c, a + 2);
        assert_eq!(d, a - 1);
        assert_eq!(e, a + 3);
    }

    #[test]
    fn ts_unwrap_follows_wraparound() {
        let mut u = TsUnwrapper::default();
        let a = u.extend(u32::MAX - 1500);
        let b = u.extend(1500);
        assert_eq!(b - a, 3001);
        let c = u.extend(u32::MAX - 100); // slightly older
        assert!(c < b);
    }
}
