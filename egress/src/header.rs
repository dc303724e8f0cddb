//! Writing RTP headers (RFC 3550) with one-byte header extensions (RFC 8285) for forwarded
//! packets, padding-only probe packets and RTX payload prefixes (RFC 4588).

use std::time::Duration;

/// Length of the fixed RTP header.
const FIXED_LEN: usize = 12;
/// Profile of the one-byte header extension block (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: [u8; 2] = [0xBE, 0xDE];
/// Largest element length of a one-byte header extension.
const MAX_ONE_BYTE_LEN: usize = 16;

/// One-byte-header extension ids negotiated with the viewer (RFC 8285); 0 = not negotiated.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ExtIds {
    /// Id of `urn:ietf:params:rtp-hdrext:sdes:mid`.
    pub mid: u8,
    /// Id of `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`.
    pub abs_send_time: u8,
    /// Id of `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01`.
    pub transport_cc: u8,
    /// Id of `urn:ietf:params:rtp-hdrext:ssrc-audio-level`.
    pub audio_level: u8,
}

/// What one RTP header says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header<'a> {
    /// Payload type (7 bits).
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// MID value; empty = omit (values longer than 16 bytes cannot be sent and are omitted).
    pub mid: &'a [u8],
    /// Transport-wide sequence number.
    pub transport_seq: Option<u16>,
    /// abs-send-time, 24-bit 6.18 fixed-point seconds.
    pub abs_send_time: Option<u32>,
    /// Audio level as (voice activity, level 0..=127 in -dBov).
    pub audio_level: Option<(bool, u8)>,
}

/// Whether `id` is usable in a one-byte header extension element (1..=14).
fn id_ok(id: u8) -> bool {
    (1..=14).contains(&id)
}

/// Appends one extension element (id, data) if the id is usable and data length is 1..=16.
fn push_elem(buf: &mut Vec<u8>, id: u8, data: &[u8]) {
    if id_ok(id) && !data.is_empty() && data.len() <= MAX_ONE_BYTE_LEN {
        // data.len() is 1..=16, so len - 1 fits in the low nibble.
        buf.push((id << 4) | ((data.len() - 1) as u8));
        buf.extend_from_slice(data);
    }
}

/// Appends the header with the padding bit set as given; returns its length.
fn write(buf: &mut Vec<u8>, h: &Header<'_>, ids: &ExtIds, padding: bool) -> usize {
    let start = buf.len();
    buf.push(0x80 | if padding { 0x20 } else { 0 });
    buf.push((u8::from(h.marker) << 7) | (h.pt & 0x7F));
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.ts.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());

    let ext_start = buf.len();
    buf.extend_from_slice(&ONE_BYTE_PROFILE);
    buf.extend_from_slice(&[0, 0]);
    let elems_start = buf.len();
    push_elem(buf, ids.mid, h.mid);
    if let Some(v) = h.abs_send_time {
        let b = v.to_be_bytes();
        push_elem(buf, ids.abs_send_time, &b[1..4]);
    }
    if let Some(v) = h.transport_seq {
        push_elem(buf, ids.transport_cc, &v.to_be_bytes());
    }
    if let Some((voice, level)) = h.audio_level {
        push_elem(
            buf,
            ids.audio_level,
            &[(u8::from(voice) << 7) | (level & 0x7F)],
        );
    }
    let elems_len = buf.len() - elems_start;
    if elems_len == 0 {
        buf.truncate(ext_start);
    } else {
        let padded = elems_len.div_ceil(4) * 4;
        buf.resize(elems_start + padded, 0);
        // At most 4 elements of at most 17 bytes each: the word count always fits in u16.
        let words = (padded / 4) as u16;
        buf[ext_start + 2..ext_start + 4].copy_from_slice(&words.to_be_bytes());
        buf[start] |= 0x10;
    }
    buf.len() - start
}

/// Appends the header (with a one-byte extension block 0xBEDE when any extension is present,
/// padded to 4 bytes) to `buf`; returns its length.
pub fn write_header(buf: &mut Vec<u8>, h: &Header<'_>, ids: &ExtIds) -> usize {
    write(buf, h, ids, false)
}

/// abs-send-time value (6.18 fixed-point seconds, 24 bits) for a time given as Duration since
/// some epoch.
pub fn abs_send_time(since_epoch: Duration) -> u32 {
    // as_nanos() < 2^94, so shifting by 18 stays below 2^112.
    let v = (since_epoch.as_nanos() << 18) / 1_000_000_000;
    (v & 0x00FF_FFFF) as u32
}

/// Parses the header length of an RTP packet (fixed header, CSRCs, extension block); None when
/// malformed.
pub fn rtp_header_len(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    if buf.len() < FIXED_LEN || first >> 6 != 2 {
        return None;
    }
    let mut len = FIXED_LEN.checked_add(4 * usize::from(first & 0x0F))?;
    if first & 0x10 != 0 {
        let ext = buf.get(len..len.checked_add(4)?)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len = len.checked_add(4)?.checked_add(words.checked_mul(4)?)?;
    }
    (len <= buf.len()).then_some(len)
}

/// Appends an RTP padding-only packet's header and `pad` bytes of padding (P bit set, last byte
/// = count; RFC 3550 §5.1), for bandwidth probes on the RTX SSRC; `pad` 1..=255 (0 is sent as
/// 1). Returns the number of bytes appended.
pub fn write_padding_packet(buf: &mut Vec<u8>, h: &Header<'_>, ids: &ExtIds, pad: u8) -> usize {
    let pad = pad.max(1);
    let start = buf.len();
    write(buf, h, ids, true);
    buf.resize(buf.len() + usize::from(pad) - 1, 0);
    buf.push(pad);
    buf.len() - start
}

/// Appends the 2-byte original sequence number (RFC 4588 §4) that starts an RTX payload.
pub fn write_rtx_original_seq(buf: &mut Vec<u8>, osn: u16) {
    buf.extend_from_slice(&osn.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc_shared::marshal::Unmarshal;

    const IDS: ExtIds = ExtIds {
        mid: 1,
        abs_send_time: 3,
        transport_cc: 5,
        audio_level: 10,
    };

    fn full() -> Header<'static> {
        Header {
            pt: 111,
            marker: true,
            seq: 0xABCD,
            ts: 0x1122_3344,
            ssrc: 0xDEAD_BEEF,
            mid: b"a1",
            transport_seq: Some(0x0102),
            abs_send_time: Some(0x00AB_CDEF),
            audio_level: Some((true, 42)),
        }
    }

    fn parse(buf: &[u8]) -> rtc_rtp::Header {
        let mut b = buf;
        rtc_rtp::Header::unmarshal(&mut b).expect("rtc-rtp parses our header")
    }

    #[test]
    fn no_extensions_is_12_bytes() {
        let h = Header {
            pt: 96,
            seq: 7,
            ts: 9,
            ssrc: 1,
            ..Default::default()
        };
        let mut buf = vec![0xFF]; // Existing content stays untouched.
        let n = write_header(&mut buf, &h, &IDS);
        assert_eq!(n, 12);
        assert_eq!(buf, [0xFF, 0x80, 96, 0, 7, 0, 0, 0, 9, 0, 0, 0, 1]);
        assert_eq!(rtp_header_len(&buf[1..]), Some(12));
    }

    #[test]
    fn extensions_not_negotiated_are_omitted() {
        let mut buf = Vec::new();
        let n = write_header(&mut buf, &full(), &ExtIds::default());
        assert_eq!(n, 12);
        assert_eq!(buf[0], 0x80);
        assert_eq!(buf[1], 0x80 | 111);
    }

    #[test]
    fn all_extensions_bytes() {
        let mut buf = Vec::new();
        let n = write_header(&mut buf, &full(), &IDS);
        // 12 + 4 (profile, length) + mid 3 + abs 4 + twcc 3 + level 2 = 12 bytes → 3 words.
        assert_eq!(n, 12 + 4 + 12);
        assert_eq!(buf.len(), n);
        assert_eq!(buf[0], 0x90);
        assert_eq!(buf[1], 0x80 | 111);
        assert_eq!(&buf[2..4], &[0xAB, 0xCD]);
        assert_eq!(&buf[4..8], &[0x11, 0x22, 0x33, 0x44]);
        assert_eq!(&buf[8..12], &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(&buf[12..16], &[0xBE, 0xDE, 0x00, 0x03]);
        assert_eq!(
            &buf[16..],
            &[
                0x11,
                b'a',
                b'1', // mid: id 1, len 2
                0x32,
                0xAB,
                0xCD,
                0xEF, // abs-send-time: id 3, len 3
                0x51,
                0x01,
                0x02, // transport-cc: id 5, len 2
                0xA0,
                0x80 | 42, // audio level: id 10, len 1, V bit
            ]
        );
        assert_eq!(rtp_header_len(&buf), Some(n));
    }

    #[test]
    fn parsed_back_by_rtc_rtp() {
        let mids: [&[u8]; 3] = [b"0", b"abcdefghijklmnop", b"video"];
        for mid in mids {
            for level in [(false, 0u8), (true, 127)] {
                let h = Header {
                    mid,
                    audio_level: Some(level),
                    ..full()
                };
                let mut buf = Vec::new();
                let n = write_header(&mut buf, &h, &IDS);
                assert_eq!(n % 4, 0);
                buf.extend_from_slice(&[1, 2, 3]);
                assert_eq!(rtp_header_len(&buf), Some(n));
                let p = parse(&buf);
                assert_eq!(p.version, 2);
                assert!(p.marker);
                assert!(!p.padding);
                assert_eq!(p.payload_type, 111);
                assert_eq!(p.sequence_number, 0xABCD);
                assert_eq!(p.timestamp, 0x1122_3344);
                assert_eq!(p.ssrc, 0xDEAD_BEEF);
                assert_eq!(p.extension_profile, 0xBEDE);
                assert_eq!(p.get_extension(1).as_deref(), Some(mid));
                assert_eq!(p.get_extension(3).as_deref(), Some(&[0xAB, 0xCD, 0xEF][..]));
                assert_eq!(p.get_extension(5).as_deref(), Some(&[0x01, 0x02][..]));
                let lb = (u8::from(level.0) << 7) | level.1;
                assert_eq!(p.get_extension(10).as_deref(), Some(&[lb][..]));
            }
        }
    }

    #[test]
    fn single_extension_padded_to_word() {
        let h = Header {
            transport_seq: Some(0xFFFE),
            ..Default::default()
        };
        let mut buf = Vec::new();
        let n = write_header(&mut buf, &h, &IDS);
        assert_eq!(n, 20);
        assert_eq!(&buf[12..], &[0xBE, 0xDE, 0, 1, 0x51, 0xFF, 0xFE, 0]);
        let p = parse(&buf);
        assert_eq!(p.get_extension(5).as_deref(), Some(&[0xFF, 0xFE][..]));
        assert_eq!(p.get_extension_ids(), vec![5]);
    }

    #[test]
    fn invalid_ids_and_long_mid_omitted() {
        let ids = ExtIds {
            mid: 2,
            abs_send_time: 15,
            transport_cc: 0,
            audio_level: 16,
        };
        let h = Header {
            mid: b"abcdefghijklmnopq", // 17 bytes
            ..full()
        };
        let mut buf = Vec::new();
        assert_eq!(write_header(&mut buf, &h, &ids), 12);
        assert_eq!(buf[0] & 0x10, 0);
    }

    #[test]
    fn abs_send_time_values() {
        assert_eq!(abs_send_time(Duration::ZERO), 0);
        assert_eq!(abs_send_time(Duration::from_secs(1)), 1 << 18);
        assert_eq!(abs_send_time(Duration::from_millis(500)), 1 << 17);
        // 64 s wraps to 0 (6 bits of seconds).
        assert_eq!(abs_send_time(Duration::from_secs(64)), 0);
        assert_eq!(abs_send_time(Duration::from_secs(65)), 1 << 18);
        assert_eq!(
            abs_send_time(Duration::from_secs(63) + Duration::from_nanos(999_999_999)),
            0x00FF_FFFF
        );
        assert!(abs_send_time(Duration::MAX) <= 0x00FF_FFFF);
    }

    #[test]
    fn header_len_parsing() {
        assert_eq!(rtp_header_len(&[]), None);
        assert_eq!(rtp_header_len(&[0x80; 11]), None);
        // Wrong version.
        assert_eq!(rtp_header_len(&[0x40; 12]), None);
        // Two CSRCs.
        let mut b = vec![0x82, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(rtp_header_len(&b), None);
        b.extend_from_slice(&[0; 8]);
        assert_eq!(rtp_header_len(&b), Some(20));
        // CSRC plus extension of 2 words.
        let mut b = vec![0x91, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        assert_eq!(rtp_header_len(&b), None);
        b.extend_from_slice(&[0x10, 0x00, 0x00, 0x02]);
        assert_eq!(rtp_header_len(&b), None);
        b.extend_from_slice(&[0; 7]);
        assert_eq!(rtp_header_len(&b), None);
        b.push(0);
        assert_eq!(rtp_header_len(&b), Some(28));
        // Extension length claiming 0xFFFF words.
        let mut b = vec![
            0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0xFF, 0xFF,
        ];
        assert_eq!(rtp_header_len(&b), None);
        b.resize(16 + 4 * 0xFFFF, 0);
        assert_eq!(rtp_header_len(&b), Some(16 + 4 * 0xFFFF));
        // Every prefix of a valid header is rejected or shorter.
        let mut full_buf = Vec::new();
        let n = write_header(&mut full_buf, &full(), &IDS);
        for i in 0..n {
            assert_eq!(rtp_header_len(&full_buf[..i]), None);
        }
    }

    #[test]
    fn padding_packet() {
        for pad in [1u8, 4, 200, 255] {
            let mut buf = Vec::new();
            let h = Header {
                pt: 97,
                transport_seq: Some(9),
                abs_send_time: Some(5),
                ..Default::default()
            };
            let n = write_padding_packet(&mut buf, &h, &IDS, pad);
            assert_eq!(n, buf.len());
            let hl = rtp_header_len(&buf).unwrap();
            assert_eq!(n, hl + usize::from(pad));
            assert_eq!(buf[0] & 0x20, 0x20);
            assert_eq!(*buf.last().unwrap(), pad);
            assert!(buf[hl..n - 1].iter().all(|&b| b == 0));
            let mut b = &buf[..];
            let p = rtc_rtp::Packet::unmarshal(&mut b).unwrap();
            assert!(p.header.padding);
            assert!(p.payload.is_empty());
            assert_eq!(p.header.get_extension(5).as_deref(), Some(&[0, 9][..]));
        }
        let mut buf = Vec::new();
        let n = write_padding_packet(&mut buf, &Header::default(), &IDS, 0);
        assert_eq!(n, 13);
        assert_eq!(buf[12], 1);
    }

    #[test]
    fn rtx_original_seq() {
        let mut buf = Vec::new();
        let hl = write_header(&mut buf, &full(), &IDS);
        write_rtx_original_seq(&mut buf, 0xBEEF);
        buf.extend_from_slice(b"payload");
        assert_eq!(rtp_header_len(&buf), Some(hl));
        assert_eq!(&buf[hl..hl + 2], &[0xBE, 0xEF]);
        assert_eq!(&buf[hl + 2..], b"payload");
    }
}
