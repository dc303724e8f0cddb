//! MPEG-TS (ISO/IEC 13818-1) demuxing for SRT ingest: PAT, then PMT, then the program's H264 and
//! AAC (ADTS) elementary streams reassembled from PES packets. Sans-IO: bytes in (split
//! anywhere), events out. Every length read from the input is bounded; what does not parse is
//! counted and skipped.

use std::collections::VecDeque;

/// Bytes of one TS packet.
pub const PACKET: usize = 188;
/// Largest PES packet reassembled (a 4K keyframe fits); a longer one is dropped.
pub const MAX_PES: usize = 8 << 20;
/// Events held before the oldest are dropped (the driver polls after every push).
pub const MAX_EVENTS: usize = 1024;

const SYNC: u8 = 0x47;
const PAT_PID: u16 = 0;
const NULL_PID: u16 = 0x1FFF;

/// `stream_type` of H264 video.
pub const STREAM_H264: u8 = 0x1B;
/// `stream_type` of AAC audio in ADTS.
pub const STREAM_AAC_ADTS: u8 = 0x0F;

/// What the demuxer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsEvent {
    /// An H264 access unit (Annex B, as carried) with its PTS and DTS (90 kHz, 33 bits).
    Video {
        /// Presentation time.
        pts: u64,
        /// Decoding time (the PTS when the PES has none).
        dts: u64,
        /// NAL units with start codes.
        annexb: Vec<u8>,
    },
    /// One PES of AAC audio: one or more ADTS frames, with the PTS of the first.
    Audio {
        /// Presentation time (90 kHz).
        pts: u64,
        /// ADTS frames.
        adts: Vec<u8>,
    },
    /// The program's video is not H264 (its `stream_type`); reported once.
    UnsupportedVideo(u8),
    /// The program's audio is not AAC in ADTS (its `stream_type`); reported once.
    UnsupportedAudio(u8),
}

/// Counters of a [`Demuxer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TsStats {
    /// TS packets read.
    pub packets: u64,
    /// Bytes skipped to find a sync byte.
    pub resync_bytes: u64,
    /// Packets with a continuity counter gap (the PES in progress is dropped).
    pub discontinuities: u64,
    /// PES packets dropped: too long, malformed, or cut by a gap.
    pub dropped_pes: u64,
    /// Events dropped because the driver did not poll.
    pub dropped_events: u64,
}

#[derive(Debug)]
struct Pes {
    pid: u16,
    buf: Vec<u8>,
    /// Continuity counter of the last packet.
    cc: Option<u8>,
    /// A PES is being assembled (its start was seen and nothing was lost since).
    open: bool,
}

impl Pes {
    fn new(pid: u16) -> Self {
        Self { pid, buf: Vec::new(), cc: None, open: false }
    }
}

/// The demuxer of one SRT connection's transport stream.
#[derive(Debug, Default)]
pub struct Demuxer {
    carry: Vec<u8>,
    pmt_pid: Option<u16>,
    video: Option<Pes>,
    audio: Option<Pes>,
    reported_video: Option<u8>,
    reported_audio: Option<u8>,
    events: VecDeque<TsEvent>,
    stats: TsStats,
}

impl Demuxer {
    /// A demuxer that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> TsStats {
        self.stats
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<TsEvent> {
        self.events.pop_front()
    }

    /// Feeds bytes of the transport stream.
    pub fn push(&mut self, data: &[u8]) {
        self.carry.extend_from_slice(data);
        let mut at = 0;
        while self.carry.len() - at >= PACKET {
            // A sync byte, and the next packet's where there is one (a lone 0x47 in garbage is
            // not a packet start).
            let synced = self.carry[at] == SYNC && self.carry.get(at + PACKET).is_none_or(|b| *b == SYNC);
            if !synced {
                // Lost sync: skip to the next sync byte.
                let skip =
                    self.carry[at + 1..].iter().position(|b| *b == SYNC).map_or(self.carry.len() - at, |p| p + 1);
                self.stats.resync_bytes += skip as u64;
                at += skip;
                continue;
            }
            let mut packet = [0u8; PACKET];
            packet.copy_from_slice(&self.carry[at..at + PACKET]);
            at += PACKET;
            self.packet(&packet);
        }
        self.carry.drain(..at);
    }

    /// Emits what is still being assembled (the stream ended).
    pub fn flush(&mut self) {
        for video in [true, false] {
            let slot = if video { &mut self.video } else { &mut self.audio };
            if let Some(pes) = slot.as_mut()
                && pes.open
            {
                let buf = std::mem::take(&mut pes.buf);
                pes.open = false;
                self.finish_pes(video, buf);
            }
        }
    }

    fn emit(&mut self, e: TsEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.dropped_events += 1;
        }
        self.events.push_back(e);
    }

    fn packet(&mut self, p: &[u8; PACKET]) {
        self.stats.packets += 1;
        let error = p[1] & 0x80 != 0;
        let unit_start = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        let scrambled = p[3] & 0xC0 != 0;
        let adaptation = (p[3] >> 4) & 0x3;
        let cc = p[3] & 0x0F;
        if error || scrambled || pid == NULL_PID {
            return;
        }
        let mut start = 4usize;
        if adaptation & 0x2 != 0 {
            start = 5 + usize::from(p[4]);
        }
        if adaptation & 0x1 == 0 || start >= PACKET {
            return;
        }
        let payload = &p[start..];
        if pid == PAT_PID {
            self.pat(unit_start, payload);
        } else if Some(pid) == self.pmt_pid {
            self.pmt(unit_start, payload);
        } else if self.video.as_ref().is_some_and(|v| v.pid == pid) {
            self.pes(true, unit_start, cc, payload);
        } else if self.audio.as_ref().is_some_and(|a| a.pid == pid) {
            self.pes(false, unit_start, cc, payload);
        }
    }

    /// The section in a packet's payload (one-packet sections only, as PAT and PMT are).
    fn section(unit_start: bool, payload: &[u8], table_id: u8) -> Option<&[u8]> {
        if !unit_start {
            return None;
        }
        let pointer = usize::from(*payload.first()?);
        let s = payload.get(1 + pointer..)?;
        if *s.first()? != table_id {
            return None;
        }
        let len = (usize::from(*s.get(1)? & 0x0F) << 8) | usize::from(*s.get(2)?);
        // Without the 4-byte CRC.
        s.get(3..(3 + len).checked_sub(4)?)
    }

    fn pat(&mut self, unit_start: bool, payload: &[u8]) {
        let Some(s) = Self::section(unit_start, payload, 0x00) else { return };
        // transport_stream_id, version, section numbers: 5 bytes; then 4-byte program entries.
        for e in s.get(5..).unwrap_or(&[]).chunks_exact(4) {
            let program = u16::from_be_bytes([e[0], e[1]]);
            if program != 0 {
                let pid = (u16::from(e[2] & 0x1F) << 8) | u16::from(e[3]);
                self.pmt_pid = Some(pid);
                return;
            }
        }
    }

    fn pmt(&mut self, unit_start: bool, payload: &[u8]) {
        let Some(s) = Self::section(unit_start, payload, 0x02) else { return };
        let Some(info_len) = s.get(7..9).map(|b| (usize::from(b[0] & 0x0F) << 8) | usize::from(b[1])) else { return };
        let mut at = 9 + info_len;
        let mut video = None;
        let mut audio = None;
        while let Some(e) = s.get(at..at + 5) {
            let stream_type = e[0];
            let pid = (u16::from(e[1] & 0x1F) << 8) | u16::from(e[2]);
            let es_len = (usize::from(e[3] & 0x0F) << 8) | usize::from(e[4]);
            at += 5 + es_len;
            match stream_type {
                STREAM_AAC_ADTS if audio.is_none() => audio = Some((pid, stream_type)),
                // MPEG-1/2 video, MPEG-4 part 2, H264, HEVC, VVC.
                0x01 | 0x02 | 0x10 | STREAM_H264 | 0x24 | 0x33 if video.is_none() => video = Some((pid, stream_type)),
                // MPEG audio, AAC in LATM, AC-3, E-AC-3.
                0x03 | 0x04 | 0x11 | 0x81 | 0x87 if audio.is_none() => audio = Some((pid, stream_type)),
                _ => {}
            }
        }
        match video {
            Some((pid, STREAM_H264)) => {
                if self.video.as_ref().is_none_or(|v| v.pid != pid) {
                    self.video = Some(Pes::new(pid));
                }
            }
            Some((_, other)) if self.reported_video != Some(other) => {
                self.reported_video = Some(other);
                self.video = None;
                self.emit(TsEvent::UnsupportedVideo(other));
            }
            _ => {}
        }
        match audio {
            Some((pid, STREAM_AAC_ADTS)) => {
                if self.audio.as_ref().is_none_or(|a| a.pid != pid) {
                    self.audio = Some(Pes::new(pid));
                }
            }
            Some((_, other)) if self.reported_audio != Some(other) => {
                self.reported_audio = Some(other);
                self.audio = None;
                self.emit(TsEvent::UnsupportedAudio(other));
            }
            _ => {}
        }
    }

    fn pes(&mut self, video: bool, unit_start: bool, cc: u8, payload: &[u8]) {
        let mut finished = None;
        let mut dropped = 0;
        {
            let Some(pes) = (if video { self.video.as_mut() } else { self.audio.as_mut() }) else { return };
            if pes.cc == Some(cc) && !unit_start {
                // A repeated packet.
                return;
            }
            let gap = pes.cc.is_some_and(|prev| (prev + 1) & 0x0F != cc);
            pes.cc = Some(cc);
            if gap {
                self.stats.discontinuities += 1;
                if pes.open {
                    dropped += 1;
                }
                pes.open = false;
                pes.buf.clear();
            }
            if unit_start {
                if pes.open {
                    finished = Some(std::mem::take(&mut pes.buf));
                }
                pes.buf.clear();
                pes.open = true;
            }
            if pes.open {
                if pes.buf.len() + payload.len() > MAX_PES {
                    dropped += 1;
                    pes.open = false;
                    pes.buf.clear();
                } else {
                    pes.buf.extend_from_slice(payload);
                    // A PES that states its length (audio does) is complete as soon as it is all
                    // here; one of length 0 (video) ends at the next unit start.
                    let stated = match pes.buf.get(4..6) {
                        Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
                        None => 0,
                    };
                    if stated > 0 && pes.buf.len() >= 6 + stated {
                        pes.buf.truncate(6 + stated);
                        pes.open = false;
                        finished = Some(std::mem::take(&mut pes.buf));
                    }
                }
            }
        }
        self.stats.dropped_pes += dropped;
        if let Some(buf) = finished {
            self.finish_pes(video, buf);
        }
    }

    fn finish_pes(&mut self, video: bool, buf: Vec<u8>) {
        let Some((pts, dts, start)) = pes_header(&buf) else {
            self.stats.dropped_pes += 1;
            return;
        };
        let data = buf[start..].to_vec();
        if data.is_empty() {
            return;
        }
        self.emit(if video { TsEvent::Video { pts, dts, annexb: data } } else { TsEvent::Audio { pts, adts: data } });
    }
}

/// A 33-bit timestamp of a PES header (5 bytes with marker bits).
fn timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 0x07) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// PTS, DTS (the PTS when absent) and where the payload starts; `None` for a PES without a PTS
/// or a malformed header.
fn pes_header(b: &[u8]) -> Option<(u64, u64, usize)> {
    if b.get(..3)? != [0, 0, 1] {
        return None;
    }
    let flags = *b.get(7)?;
    let header_len = usize::from(*b.get(8)?);
    let start = 9 + header_len;
    if b.len() < start {
        return None;
    }
    let pts = match flags >> 6 {
        0b10 | 0b11 => timestamp(b.get(9..14)?),
        _ => return None,
    };
    let dts = if flags >> 6 == 0b11 { timestamp(b.get(14..19)?) } else { pts };
    Some((pts, dts, start))
}

/// One ADTS frame: its AudioSpecificConfig and its raw AAC payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdtsFrame<'a> {
    /// The 2-byte AudioSpecificConfig the header describes (object type, rate index, channels).
    pub asc: [u8; 2],
    /// The raw AAC frame.
    pub raw: &'a [u8],
}

/// Splits ADTS frames (ISO/IEC 14496-3 1.A.2); stops at the first malformed header.
pub fn adts_frames(mut b: &[u8]) -> Vec<AdtsFrame<'_>> {
    let mut out = Vec::new();
    while b.len() >= 7 && b[0] == 0xFF && b[1] & 0xF0 == 0xF0 {
        let protection_absent = b[1] & 0x01 != 0;
        let profile = b[2] >> 6;
        let rate = (b[2] >> 2) & 0x0F;
        let channels = ((b[2] & 0x01) << 2) | (b[3] >> 6);
        let len = (usize::from(b[3] & 0x03) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        if len <= header || len > b.len() || rate > 12 {
            break;
        }
        let object = profile + 1;
        let asc = [(object << 3) | (rate >> 1), ((rate & 1) << 7) | (channels << 3)];
        out.push(AdtsFrame { asc, raw: &b[header..len] });
        b = &b[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TS packets carrying `payload` on `pid` (the first with unit start), stuffed with an
    /// adaptation field to 188 bytes.
    fn packets(pid: u16, payload: &[u8], cc: &mut u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut first = true;
        for chunk in payload.chunks(184) {
            let mut p = vec![SYNC, ((pid >> 8) as u8 & 0x1F) | if first { 0x40 } else { 0 }, pid as u8];
            let stuffing = 184 - chunk.len();
            if stuffing > 0 {
                p.push(0x30 | *cc);
                p.push((stuffing - 1) as u8);
                if stuffing > 1 {
                    p.push(0);
                    p.extend(std::iter::repeat_n(0xFF, stuffing - 2));
                }
            } else {
                p.push(0x10 | *cc);
            }
            p.extend_from_slice(chunk);
            assert_eq!(p.len(), PACKET);
            out.extend(p);
            *cc = (*cc + 1) & 0x0F;
            first = false;
        }
        out
    }

    fn section(table_id: u8, body: &[u8]) -> Vec<u8> {
        let len = body.len() + 4;
        let mut s = vec![0, table_id, 0xB0 | (len >> 8) as u8, len as u8];
        s.extend_from_slice(body);
        s.extend_from_slice(&[0, 0, 0, 0]);
        s
    }

    fn pts_bytes(marker: u8, t: u64) -> [u8; 5] {
        [
            (marker << 4) | (((t >> 30) as u8 & 0x07) << 1) | 1,
            (t >> 22) as u8,
            (((t >> 15) as u8) << 1) | 1,
            (t >> 7) as u8,
            ((t as u8) << 1) | 1,
        ]
    }

    /// A PES packet; audio states its length, video (as ffmpeg writes it) does not.
    fn pes(stream_id: u8, pts: u64, dts: Option<u64>, data: &[u8]) -> Vec<u8> {
        let mut h = vec![0, 0, 1, stream_id, 0, 0, 0x80];
        match dts {
            Some(d) => {
                h.push(0xC0);
                h.push(10);
                h.extend(pts_bytes(3, pts));
                h.extend(pts_bytes(1, d));
            }
            None => {
                h.push(0x80);
                h.push(5);
                h.extend(pts_bytes(2, pts));
            }
        }
        h.extend_from_slice(data);
        if stream_id & 0xE0 == 0xC0 {
            let len = (h.len() - 6) as u16;
            h[4..6].copy_from_slice(&len.to_be_bytes());
        }
        h
    }

    fn stream(video_type: u8) -> Vec<u8> {
        let (mut c0, mut c1, mut cv, mut ca) = (0, 0, 0, 0);
        let mut ts = packets(0, &section(0, &[0, 1, 0xC1, 0, 0, 0, 1, 0xF0, 0x00]), &mut c0);
        // PMT: PCR on 0x100, H264 (or `video_type`) on 0x100, AAC on 0x101.
        let pmt = [
            0,
            1,
            0xC1,
            0,
            0,
            0xE1,
            0x00,
            0xF0,
            0x00,
            video_type,
            0xE1,
            0x00,
            0xF0,
            0x00,
            STREAM_AAC_ADTS,
            0xE1,
            0x01,
            0xF0,
            0x00,
        ];
        ts.extend(packets(0x1000, &section(2, &pmt), &mut c1));
        let key: Vec<u8> =
            [&[0, 0, 0, 1, 0x67, 0x42][..], &[0, 0, 0, 1, 0x68, 0xCE], &[0, 0, 0, 1, 0x65], &[0xAB; 500]].concat();
        ts.extend(packets(0x100, &pes(0xE0, 3600, Some(3600), &key), &mut cv));
        let adts = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x5F, 0xFC, 1, 2, 3];
        ts.extend(packets(0x101, &pes(0xC0, 3000, None, &adts), &mut ca));
        ts.extend(packets(0x100, &pes(0xE0, 6600, Some(6600), &[0, 0, 0, 1, 0x41, 9, 9]), &mut cv));
        ts
    }

    #[test]
    fn h264_and_aac_come_out_with_their_timestamps_whatever_the_split() {
        let ts = stream(STREAM_H264);
        for split in [1, 7, 188, 1316, ts.len()] {
            let mut d = Demuxer::new();
            for chunk in ts.chunks(split) {
                d.push(chunk);
            }
            d.flush();
            let events: Vec<TsEvent> = std::iter::from_fn(|| d.poll_event()).collect();
            assert_eq!(events.len(), 3, "split {split}: {events:?}");
            let TsEvent::Video { pts, dts, annexb } = &events[1] else { panic!("{events:?}") };
            assert_eq!((*pts, *dts, annexb.len()), (3600, 3600, 4 + 2 + 4 + 2 + 4 + 1 + 500));
            let TsEvent::Audio { pts, adts } = &events[0] else { panic!("{events:?}") };
            assert_eq!(*pts, 3000);
            let frames = adts_frames(adts);
            // AAC LC (object 2), 44.1 kHz (index 4), stereo: ASC 0x12 0x10.
            assert_eq!(frames, vec![AdtsFrame { asc: [0x12, 0x10], raw: &[1, 2, 3] }]);
            assert!(matches!(&events[2], TsEvent::Video { pts: 6600, .. }));
        }
    }

    #[test]
    fn a_codec_viewers_cannot_take_is_reported_once() {
        let mut d = Demuxer::new();
        d.push(&stream(0x24));
        d.push(&stream(0x24));
        let events: Vec<TsEvent> = std::iter::from_fn(|| d.poll_event()).collect();
        assert_eq!(events.iter().filter(|e| matches!(e, TsEvent::UnsupportedVideo(0x24))).count(), 1);
        assert!(!events.iter().any(|e| matches!(e, TsEvent::Video { .. })));
    }

    #[test]
    fn garbage_and_lost_packets_cost_only_what_they_touch() {
        let mut ts = vec![0x12, 0x47, 0x00];
        ts.extend(stream(STREAM_H264));
        // Lose the second packet of the keyframe's PES.
        let mut d = Demuxer::new();
        let start = 3 + 2 * PACKET;
        let mut cut = ts.clone();
        cut.drain(start + PACKET..start + 2 * PACKET);
        d.push(&cut);
        d.flush();
        let events: Vec<TsEvent> = std::iter::from_fn(|| d.poll_event()).collect();
        assert!(d.stats().resync_bytes >= 3);
        assert_eq!(d.stats().discontinuities, 1);
        assert!(!events.iter().any(|e| matches!(e, TsEvent::Video { pts: 3600, .. })), "the damaged frame is dropped");
        assert!(events.iter().any(|e| matches!(e, TsEvent::Video { pts: 6600, .. })));
        // Pure noise produces nothing and keeps no more than a packet.
        let mut d = Demuxer::new();
        d.push(&vec![0x47; 100_000]);
        assert!(d.poll_event().is_none());
        assert!(d.carry.len() < PACKET);
    }
}
