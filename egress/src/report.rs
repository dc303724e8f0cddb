//! RTCP sender reports and SDES for the SSRCs sent to a viewer, and RTT from the viewer's
//! receiver report blocks.
//!
//! Writers append to a caller-owned buffer; the caller assembles the compound packet and
//! seals it. The NTP wall clock comes in as a 64-bit NTP timestamp ([`ntp_timestamp`]).

use std::time::{Duration, Instant, SystemTime};

/// RTCP packet type of a sender report.
pub const PT_SR: u8 = 200;

/// RTCP packet type of a source description.
pub const PT_SDES: u8 = 202;

/// Length in bytes of a sender report without report blocks.
pub const SR_LEN: usize = 28;

/// SDES item type of a canonical name.
const SDES_CNAME: u8 = 1;

/// Most chunks one SDES packet carries (5-bit source count).
const MAX_SDES_CHUNKS: usize = 31;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Largest RTT [`rtt_from_report_block`] accepts.
pub const MAX_RTT: Duration = Duration::from_secs(10);

/// What a sender report says about one SSRC we send.
#[derive(Default, Clone, Copy, Debug)]
pub struct SenderStats {
    /// RTP packets sent on the SSRC (wrapping).
    pub packets: u32,
    /// Payload octets sent on the SSRC, RTP header and padding excluded (RFC 3550; wrapping).
    pub octets: u32,
    /// RTP timestamp of the last packet sent.
    pub last_rtp_ts: u32,
    /// The capture instant that `last_rtp_ts` corresponds to.
    pub last_capture: Option<Instant>,
    /// RTP clock rate in Hz (90000 for video, 48000 for Opus).
    pub clock_rate: u32,
}

impl SenderStats {
    /// Stats for an SSRC with RTP clock rate `clock_rate`, nothing sent yet.
    pub fn new(clock_rate: u32) -> Self {
        SenderStats {
            clock_rate,
            ..Default::default()
        }
    }

    /// Counts one RTP packet of `payload_len` payload octets with timestamp `rtp_ts` captured at `capture`.
    pub fn on_sent(&mut self, payload_len: usize, rtp_ts: u32, capture: Instant) {
        self.count(payload_len);
        self.on_timing(rtp_ts, capture);
    }

    /// Counts one RTP packet of `payload_len` payload octets.
    pub fn count(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }

    /// Maps RTP time `rtp_ts` to its capture instant (any packet's pair will do: reports
    /// extrapolate from it with the clock rate).
    pub fn on_timing(&mut self, rtp_ts: u32, capture: Instant) {
        self.last_rtp_ts = rtp_ts;
        self.last_capture = Some(capture);
    }

    /// The RTP timestamp at `now`, extrapolated from the last packet with the clock rate (wrapping).
    pub fn rtp_ts_at(&self, now: Instant) -> u32 {
        let Some(capture) = self.last_capture else {
            return self.last_rtp_ts;
        };
        if now >= capture {
            self.last_rtp_ts
                .wrapping_add(ticks(now - capture, self.clock_rate))
        } else {
            self.last_rtp_ts
                .wrapping_sub(ticks(capture - now, self.clock_rate))
        }
    }
}

/// `d` in ticks of a `rate` Hz clock, rounded to nearest, modulo 2^32.
fn ticks(d: Duration, rate: u32) -> u32 {
    let t = (d.as_nanos() * rate as u128 + 500_000_000) / 1_000_000_000;
    t as u32
}

/// Appends an RTCP SR (RFC 3550 §6.4.1, no report blocks) for `ssrc` to `buf`; the RTP timestamp extrapolated from the last packet to `now` with the clock rate; NTP time from `ntp_now`.
pub fn write_sender_report(
    buf: &mut Vec<u8>,
    ssrc: u32,
    stats: &SenderStats,
    now: Instant,
    ntp_now: u64,
) {
    buf.reserve(SR_LEN);
    // V=2, P=0, RC=0; length in 32-bit words minus one.
    buf.extend_from_slice(&[0x80, PT_SR]);
    buf.extend_from_slice(&((SR_LEN / 4 - 1) as u16).to_be_bytes());
    buf.extend_from_slice(&ssrc.to_be_bytes());
    buf.extend_from_slice(&ntp_now.to_be_bytes());
    buf.extend_from_slice(&stats.rtp_ts_at(now).to_be_bytes());
    buf.extend_from_slice(&stats.packets.to_be_bytes());
    buf.extend_from_slice(&stats.octets.to_be_bytes());
}

/// Appends an SDES with a CNAME chunk (RFC 3550 §6.5) for each listed SSRC; one SDES packet per 31 SSRCs, nothing for none.
///
/// The CNAME is cut to 255 bytes (at a character boundary).
pub fn write_sdes_cname(buf: &mut Vec<u8>, ssrcs: &[u32], cname: &str) {
    let mut end = cname.len().min(255);
    while !cname.is_char_boundary(end) {
        end -= 1;
    }
    let name = &cname.as_bytes()[..end];
    // Item: type, length, text; then one to four null octets up to the next 32-bit boundary.
    let item = 2 + name.len();
    let nulls = 4 - item % 4;
    let chunk_len = 4 + item + nulls;
    for group in ssrcs.chunks(MAX_SDES_CHUNKS) {
        let len = 4 + chunk_len * group.len();
        buf.reserve(len);
        buf.push(0x80 | group.len() as u8);
        buf.push(PT_SDES);
        buf.extend_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        for ssrc in group {
            buf.extend_from_slice(&ssrc.to_be_bytes());
            buf.push(SDES_CNAME);
            buf.push(name.len() as u8);
            buf.extend_from_slice(name);
            buf.extend(std::iter::repeat_n(0u8, nulls));
        }
    }
}

/// NTP 64-bit timestamp from a SystemTime.
///
/// Seconds since 1900 in the high 32 bits (modulo 2^32, so era 1 from 2036 wraps as NTP does),
/// fraction of a second in the low 32 bits.
pub fn ntp_timestamp(t: SystemTime) -> u64 {
    const NANOS: i128 = 1_000_000_000;
    let since_unix: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    let nanos = since_unix + NTP_UNIX_OFFSET_SECS as i128 * NANOS;
    if nanos <= 0 {
        return 0;
    }
    let secs = nanos / NANOS;
    let frac = ((nanos % NANOS) << 32) / NANOS;
    ((secs as u64) << 32) | frac as u64
}

/// The middle 32 bits of a 64-bit NTP timestamp (the LSR of an SR sent at that time).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RTT from a report block of a receiver report (LSR, DLSR; RFC 3550 §6.4.1) given the middle 32 bits of the NTP time now; None when LSR is 0 or the result is negative/garbage (> 10 s).
pub fn rtt_from_report_block(lsr: u32, dlsr: u32, ntp_now_middle32: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    // All in units of 1/65536 s on the wrapping 32-bit clock.
    let since_sr = ntp_now_middle32.wrapping_sub(lsr);
    if since_sr > i32::MAX as u32 {
        return None;
    }
    let rtt = since_sr.checked_sub(dlsr)?;
    let rtt = Duration::from_nanos(rtt as u64 * 1_000_000_000 / 65536);
    (rtt <= MAX_RTT).then_some(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::rtcp::{Rtcp, SdesType};

    /// Splits a compound RTCP buffer into packets by their length fields.
    fn packets(mut buf: &[u8]) -> Vec<&[u8]> {
        let mut out = vec![];
        while buf.len() >= 4 {
            let len = (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4;
            assert!(len <= buf.len(), "length field past the end");
            out.push(&buf[..len]);
            buf = &buf[len..];
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn sender_report_parses_back() {
        let t0 = Instant::now();
        let mut stats = SenderStats::new(90_000);
        for i in 0..10u32 {
            stats.on_sent(1000 + i as usize, 1_000 + i * 3000, t0);
        }
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ntp = ntp_timestamp(wall);
        let mut buf = vec![0xAA];
        write_sender_report(&mut buf, 0x1234_5678, &stats, t0, ntp);
        let sr = &buf[1..];
        assert_eq!(sr.len(), SR_LEN);
        assert_eq!(sr[0], 0x80);
        assert_eq!(sr[1], 200);
        assert_eq!(u16::from_be_bytes([sr[2], sr[3]]), 6);
        assert_eq!(&sr[8..16], &ntp.to_be_bytes());

        let Ok(Rtcp::SenderReport(parsed)) = Rtcp::try_from(sr) else {
            panic!("not an SR");
        };
        let info = parsed.sender_info;
        assert_eq!(*info.ssrc, 0x1234_5678);
        assert_eq!(info.rtp_time.numer(), 1_000 + 9 * 3000);
        assert_eq!(info.sender_packet_count, 10);
        assert_eq!(info.sender_octet_count, 10 * 1000 + 45);
        assert!(parsed.reports.is_empty());
        let skew = info
            .ntp_time
            .duration_since(wall)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_micros(1), "{skew:?}");
    }

    #[test]
    fn rtp_timestamp_extrapolates_and_wraps() {
        let t0 = Instant::now();
        let mut stats = SenderStats::new(90_000);
        stats.on_sent(100, u32::MAX - 1000, t0);
        let mut buf = vec![];
        write_sender_report(&mut buf, 1, &stats, t0 + Duration::from_millis(100), 0);
        let ts = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
        assert_eq!(ts, (u32::MAX - 1000).wrapping_add(9000));
        assert_eq!(ts, 7999);
        // Opus at 48 kHz, 20 ms later.
        let mut audio = SenderStats::new(48_000);
        audio.on_sent(80, 5000, t0);
        assert_eq!(audio.rtp_ts_at(t0 + Duration::from_millis(20)), 5960);
        // Nothing sent, or no clock rate: the last timestamp as is.
        assert_eq!(SenderStats::new(90_000).rtp_ts_at(t0), 0);
        let mut no_rate = SenderStats::default();
        no_rate.on_sent(1, 77, t0);
        assert_eq!(no_rate.rtp_ts_at(t0 + Duration::from_secs(5)), 77);
        // A capture instant after `now` counts backwards.
        let mut ahead = SenderStats::new(90_000);
        ahead.on_sent(1, 100, t0 + Duration::from_millis(10));
        assert_eq!(ahead.rtp_ts_at(t0), 100u32.wrapping_sub(900));
        // Counters wrap.
        let mut w = SenderStats {
            packets: u32::MAX,
            octets: u32::MAX - 1,
            ..SenderStats::new(90_000)
        };
        w.on_sent(3, 0, t0);
        assert_eq!((w.packets, w.octets), (0, 1));
    }

    #[test]
    fn sdes_padding_and_parse() {
        for name_len in 0..12usize {
            let cname: String = "abcdefghijklmnop"[..name_len].to_string();
            let mut buf = vec![];
            write_sdes_cname(&mut buf, &[7, 8], &cname);
            assert_eq!(buf.len() % 4, 0, "name_len {name_len}");
            assert_eq!(buf[0], 0x80 | 2);
            assert_eq!(buf[1], 202);
            assert_eq!(
                (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4,
                buf.len()
            );
            // Each chunk: SSRC, type, length, text, at least one null, to a 32-bit boundary.
            let chunk = (4 + 2 + name_len + 1).div_ceil(4) * 4;
            assert_eq!(buf.len(), 4 + 2 * chunk);
            assert_eq!(buf[4 + chunk - 1], 0);
            assert_eq!(&buf[4 + chunk..8 + chunk], &8u32.to_be_bytes());

            let Ok(Rtcp::SourceDescription(d)) = Rtcp::try_from(&buf[..]) else {
                panic!("not an SDES");
            };
            let ssrcs: Vec<u32> = d.reports.iter().map(|s| *s.ssrc).collect();
            assert_eq!(ssrcs, vec![7, 8]);
            for s in d.reports.iter() {
                let values: Vec<_> = s.values.iter().cloned().collect();
                if name_len > 0 {
                    assert_eq!(values, vec![(SdesType::CNAME, cname.clone())]);
                }
            }
        }
    }

    #[test]
    fn sdes_many_ssrcs_and_long_names() {
        let ssrcs: Vec<u32> = (0..40).collect();
        let long = "é".repeat(200); // 400 bytes, cut at a character boundary
        let mut buf = vec![];
        write_sdes_cname(&mut buf, &ssrcs, &long);
        let pkts = packets(&buf);
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0][0] & 0x1f, 31);
        assert_eq!(pkts[1][0] & 0x1f, 9);
        let Ok(Rtcp::SourceDescription(d)) = Rtcp::try_from(pkts[1]) else {
            panic!("not an SDES");
        };
        let s = d.reports.iter().next().unwrap();
        assert_eq!(*s.ssrc, 31);
        let (ty, name) = s.values.iter().next().unwrap();
        assert_eq!(*ty, SdesType::CNAME);
        assert_eq!(name.len(), 254);
        // No SSRCs: nothing written.
        let mut empty = vec![];
        write_sdes_cname(&mut empty, &[], "x");
        assert!(empty.is_empty());
    }

    #[test]
    fn compound_sr_sdes() {
        let t0 = Instant::now();
        let mut buf = vec![];
        let stats = SenderStats::new(90_000);
        write_sender_report(&mut buf, 1, &stats, t0, 1 << 40);
        write_sender_report(&mut buf, 2, &stats, t0, 1 << 40);
        write_sdes_cname(&mut buf, &[1, 2], "relaycast");
        let pkts = packets(&buf);
        assert_eq!(pkts.len(), 3);
        assert!(matches!(Rtcp::try_from(pkts[1]), Ok(Rtcp::SenderReport(_))));
        assert!(matches!(
            Rtcp::try_from(pkts[2]),
            Ok(Rtcp::SourceDescription(_))
        ));
    }

    #[test]
    fn ntp_timestamp_known_values() {
        assert_eq!(
            ntp_timestamp(SystemTime::UNIX_EPOCH),
            NTP_UNIX_OFFSET_SECS << 32
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1500);
        assert_eq!(
            ntp_timestamp(t),
            ((NTP_UNIX_OFFSET_SECS + 1) << 32) | (1 << 31)
        );
        // Before 1970 still counts from 1900.
        let t = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(ntp_timestamp(t), (NTP_UNIX_OFFSET_SECS - 10) << 32);
        assert_eq!(ntp_middle32(0x1122_3344_5566_7788), 0x3344_5566);
    }

    #[test]
    fn rtt_known_values_and_garbage() {
        // SR sent at middle32 = 0x0001_0000 (1 s); RR says it held it 0.5 s; now is 1.6 s.
        let lsr = 0x0001_0000;
        let dlsr = 0x8000;
        let now = 0x0001_0000 + 0x8000 + 6554; // 6554 / 65536 s is 100.006 ms
        let rtt = rtt_from_report_block(lsr, dlsr, now).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(100)) < Duration::from_micros(50));
        // Across the wrap of the 32-bit clock.
        let rtt = rtt_from_report_block(0xFFFF_F000, 0x1000, 0x0000_0CCD).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(50)) < Duration::from_micros(50));
        // Exactly zero.
        assert_eq!(rtt_from_report_block(100, 50, 150), Some(Duration::ZERO));
        // No SR received yet.
        assert_eq!(rtt_from_report_block(0, 0, 12345), None);
        // Negative: DLSR longer than the time since the SR.
        assert_eq!(rtt_from_report_block(1000, 2000, 2500), None);
        // LSR in the future.
        assert_eq!(rtt_from_report_block(5000, 0, 4000), None);
        // Longer than 10 s.
        assert_eq!(rtt_from_report_block(1, 0, 1 + 11 * 65536), None);
        assert!(rtt_from_report_block(1, 0, 1 + 10 * 65536).is_some());
        // Garbage values do not panic.
        for (a, b, c) in [
            (u32::MAX, u32::MAX, 0),
            (1, u32::MAX, u32::MAX),
            (u32::MAX, 0, u32::MAX),
        ] {
            let _ = rtt_from_report_block(a, b, c);
        }
    }
}
