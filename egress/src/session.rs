//! One viewer's send path: forwarded packets in, sealed datagrams out.
//!
//! [`ViewerEgress`] ties the pieces together. A forwarded packet waits in the viewer's
//! [`Pacer`]; when it leaves it gets the next transport-wide sequence number, its header is
//! written once into the datagram, the payload copied behind it once (with its codec patch
//! applied on the way) and sealed in place; a compact record of it stays in the viewer's
//! [`SendHistory`] for a second to answer NACKs. The viewer's RTCP (decoded by str0m, which still
//! runs ICE and DTLS) drives the bandwidth [`Estimator`], the resends and the round-trip time.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::rtp::rtcp::Rtcp;

use crate::bwe::Estimator;
use crate::header::{ExtIds, Header, abs_send_time, rtp_header_len, write_header, write_padding_packet, write_rtx_original_seq};
use crate::history::{ResendBudget, SendHistory, nacked_seqs};
use crate::pacer::{Class, Pacer, Release};
use crate::report::{SenderStats, ntp_timestamp, rtt_from_report_block, write_sdes_cname, write_sender_report};
use crate::srtp::{SrtpError, SrtpProfile, SrtpReceiver, SrtpSender};
use crate::twcc::{PacketResult, SendRegister};

/// Most packets waiting in one viewer's pacer; more are dropped (and counted).
pub const MAX_QUEUED: usize = 1024;
/// How long sent video packets are kept to answer NACKs (libwebrtc keeps one second at least).
pub const RESEND_AGE: Duration = Duration::from_secs(1);
/// Most sent video packets kept to answer NACKs: a second of 1200-byte packets up to
/// 2.4 Mbit/s (the ring is allocated whole, so it is what a viewer's history costs).
pub const RESEND_PACKETS: usize = 256;
/// Share of what a viewer is sent that resends may take.
pub const RESEND_RATIO: f32 = 0.15;
/// Transport-wide sequence numbers kept for feedback: over two seconds of a viewer's packets at
/// 2 Mbit/s, where feedback comes every 50–100 ms.
pub const REGISTER_PACKETS: usize = 512;
/// How often sender reports go out.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Pacing rate as a multiple of the bandwidth estimate (libwebrtc's default).
pub const PACING_FACTOR: f64 = 2.5;
/// How long media waits after the send path starts (the DTLS handshake just ended here): a peer
/// that ends its side of the handshake a moment later drops what arrives before (webrtc-rs lost
/// a cached keyframe's first packets without it).
pub const START_DELAY: Duration = Duration::from_millis(10);
/// Most RTCP packets read from one compound datagram; the rest is ignored.
pub const MAX_RTCP_PACKETS: usize = 16;
/// Room for the RTP header and its extensions in a datagram buffer.
const HEADER_ROOM: usize = 48;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An audio track.
    Audio,
    /// A video track.
    Video,
}

/// Bytes to overwrite in a payload as it is copied out (a VP8 descriptor's PictureID and
/// TL0PICIDX rewrite): at most four (offset, byte) pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Patch {
    len: u8,
    at: [(u8, u8); 4],
}

impl Patch {
    /// Adds one byte to overwrite; false (and nothing added) when full or the offset is past 255.
    pub fn push(&mut self, offset: usize, byte: u8) -> bool {
        let (Ok(offset), Some(slot)) = (u8::try_from(offset), self.at.get_mut(usize::from(self.len))) else { return false };
        *slot = (offset, byte);
        self.len += 1;
        true
    }

    /// Applies the patch to a copied payload (offsets past its end are skipped).
    fn apply(&self, payload: &mut [u8]) {
        for &(offset, byte) in self.at.iter().take(usize::from(self.len)) {
            if let Some(b) = payload.get_mut(usize::from(offset)) {
                *b = byte;
            }
        }
    }
}

/// One forwarded packet, rewritten for this viewer.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Audio or video.
    pub kind: Kind,
    /// The viewer's payload type.
    pub pt: u8,
    /// RTP marker bit.
    pub marker: bool,
    /// The viewer's extended sequence number on the track (continuous across layer switches).
    pub seq: u64,
    /// The viewer's RTP timestamp.
    pub ts: u32,
    /// When the publisher captured it (sender reports map RTP time to wall time with it).
    pub capture: Instant,
    /// The payload, shared by every viewer.
    pub payload: Arc<[u8]>,
    /// Codec bytes to rewrite in the copy.
    pub patch: Patch,
    /// Audio level extension (voice activity, level 0..=127).
    pub audio_level: Option<(bool, u8)>,
}

/// How one sending track was negotiated.
#[derive(Debug, Clone)]
pub struct TrackConfig {
    /// Its SSRC.
    pub ssrc: u32,
    /// Its RTX SSRC and the RTX payload type of each media payload type (RFC 4588).
    pub rtx: Option<(u32, Vec<(u8, u8)>)>,
    /// Its m-line's mid (sent in the mid extension).
    pub mid: Vec<u8>,
    /// The extension ids the viewer accepted on this m-line.
    pub ext: ExtIds,
    /// RTP clock rate (90 kHz video, 48 kHz Opus).
    pub clock_rate: u32,
}

/// What a viewer's send path starts from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The negotiated SRTP profile.
    pub profile: SrtpProfile,
    /// DTLS-exported keying material.
    pub keying_material: Vec<u8>,
    /// This side was the DTLS client.
    pub local_is_client: bool,
    /// The video track, if the viewer takes video.
    pub video: Option<TrackConfig>,
    /// The audio track, if the viewer takes audio.
    pub audio: Option<TrackConfig>,
    /// The first bandwidth estimate.
    pub initial_bps: u64,
    /// The CNAME for sender reports.
    pub cname: String,
}

/// Counters a viewer's send path adds up; the caller takes them with [`ViewerEgress::take_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EgressCounts {
    /// Datagrams produced (media, resends, padding, reports).
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Media packets refused by a full pacer queue.
    pub dropped_full: u64,
    /// Packets the viewer NACKed.
    pub nacks: u64,
    /// Resends sent.
    pub resends: u64,
    /// Packets that failed to seal.
    pub seal_errors: u64,
    /// NACKed packets not resent because resends would pass the budget
    /// ([`crate::history::DEFAULT_RESEND_RATIO`] of what was sent).
    pub resends_over_budget: u64,
    /// RTCP packets dropped past [`MAX_RTCP_PACKETS`] in one datagram.
    pub rtcp_over_limit: u64,
}

/// One sending track's state.
#[derive(Debug)]
struct Track {
    cfg: TrackConfig,
    stats: SenderStats,
    /// Next RTX sequence number (extended).
    rtx_seq: u64,
}

/// What a viewer's history keeps of a sent video packet to send it again exactly: the shared
/// payload and the rewrite (the sequence number is the history's key).
#[derive(Debug)]
struct Sent {
    payload: Arc<[u8]>,
    ts: u32,
    pt: u8,
    marker: bool,
    patch: Patch,
}

/// A forwarded packet while it waits in the pacer: [`Outgoing`] without its capture instant,
/// which the track's report timing took when it was queued (48 bytes instead of 64: a viewer's
/// queue holds a whole keyframe for a moment, and every viewer's does at once).
#[derive(Debug)]
struct QueuedMedia {
    payload: Arc<[u8]>,
    seq: u64,
    ts: u32,
    patch: Patch,
    kind: Kind,
    pt: u8,
    marker: bool,
    audio_level: Option<(bool, u8)>,
}

/// What waits in the pacer.
#[derive(Debug)]
enum Queued {
    /// A forwarded packet.
    Media(QueuedMedia),
    /// A resend of the video packet with this wire sequence number.
    Resend(u16),
}

/// One viewer's send path (see the module docs).
pub struct ViewerEgress {
    srtp: SrtpSender,
    /// Opens the viewer's SRTCP.
    srtp_in: SrtpReceiver,
    /// The datagram being opened (kept for its capacity).
    rtcp_buf: Vec<u8>,
    video: Option<Track>,
    audio: Option<Track>,
    register: SendRegister,
    bwe: Estimator,
    pacer: Pacer<Queued>,
    history: SendHistory<Sent>,
    budget: ResendBudget,
    cname: String,
    /// A monotonic instant and the wall time it was (also as time since the Unix epoch), for
    /// NTP times and abs-send-time.
    epoch: (Instant, SystemTime, Duration),
    next_report: Instant,
    /// No media leaves before this ([`START_DELAY`]).
    start_at: Instant,
    rtt: Option<Duration>,
    results: Vec<PacketResult>,
    nacked: Vec<u16>,
    counts: EgressCounts,
    pacing_for: u64,
}

impl std::fmt::Debug for ViewerEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewerEgress").field("estimate", &self.bwe.estimate()).field("queued", &self.pacer.queued()).finish_non_exhaustive()
    }
}

impl ViewerEgress {
    /// A viewer's send path from its negotiated tracks and keys; `wall` is the wall time at `now`.
    pub fn new(cfg: Config, now: Instant, wall: SystemTime) -> Result<Self, SrtpError> {
        let srtp = SrtpSender::new(cfg.profile, &cfg.keying_material, cfg.local_is_client)?;
        let srtp_in = SrtpReceiver::new(cfg.profile, &cfg.keying_material, cfg.local_is_client)?;
        let track = |c: Option<TrackConfig>| {
            c.map(|cfg| {
                let clock_rate = cfg.clock_rate;
                Track { cfg, stats: SenderStats::new(clock_rate), rtx_seq: u64::from(rand_u16(now)) }
            })
        };
        let mut pacer = Pacer::new(MAX_QUEUED, now);
        pacer.set_padding_overhead(HEADER_ROOM);
        pacer.set_rate((cfg.initial_bps as f64 * PACING_FACTOR) as u64);
        Ok(ViewerEgress {
            srtp,
            srtp_in,
            rtcp_buf: Vec::new(),
            video: track(cfg.video),
            audio: track(cfg.audio),
            register: SendRegister::new(REGISTER_PACKETS),
            bwe: Estimator::new(cfg.initial_bps, now),
            pacer,
            history: SendHistory::new(RESEND_PACKETS, RESEND_AGE),
            budget: ResendBudget::new(RESEND_RATIO),
            cname: cfg.cname,
            epoch: (now, wall, wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()),
            next_report: now + REPORT_INTERVAL,
            start_at: now + START_DELAY,
            rtt: None,
            results: Vec::new(),
            nacked: Vec::new(),
            counts: EgressCounts::default(),
            pacing_for: cfg.initial_bps,
        })
    }

    /// Queues one forwarded packet.
    pub fn send(&mut self, out: Outgoing, now: Instant) {
        let class = match out.kind {
            Kind::Audio => Class::Audio,
            Kind::Video => Class::Video,
        };
        let size = out.payload.len() + HEADER_ROOM;
        let track = match out.kind {
            Kind::Audio => self.audio.as_mut(),
            Kind::Video => self.video.as_mut(),
        };
        if let Some(track) = track {
            track.stats.on_timing(out.ts, out.capture);
        }
        let Outgoing { kind, pt, marker, seq, ts, payload, patch, audio_level, .. } = out;
        let item = QueuedMedia { payload, seq, ts, patch, kind, pt, marker, audio_level };
        if self.pacer.push(Queued::Media(item), size, class, now).is_err() {
            self.counts.dropped_full += 1;
        }
    }

    /// One SRTCP datagram from the viewer: opened, split into its packets (at most
    /// [`MAX_RTCP_PACKETS`]), each handled; true when one asks for a keyframe of the video (PLI
    /// or FIR). An error when it does not open: the caller drops it.
    pub fn handle_srtcp(&mut self, datagram: &[u8], now: Instant) -> Result<bool, SrtpError> {
        let mut buf = std::mem::take(&mut self.rtcp_buf);
        buf.clear();
        buf.extend_from_slice(datagram);
        let opened = self.srtp_in.open_rtcp(&mut buf);
        let mut keyframe = false;
        if opened.is_ok() {
            let video = self.video.as_ref().map(|t| t.cfg.ssrc);
            let mut rest = &buf[..];
            for _ in 0..MAX_RTCP_PACKETS {
                let Some(pkt) = next_rtcp(&mut rest) else { break };
                match Rtcp::try_from(pkt) {
                    Ok(Rtcp::Pli(p)) => keyframe |= Some(*p.ssrc) == video,
                    Ok(Rtcp::Fir(f)) => keyframe |= f.reports.iter().any(|e| Some(*e.ssrc) == video),
                    Ok(rtcp) => self.handle_rtcp(&rtcp, now),
                    Err(_) => {}
                }
            }
            // What is left past the limit is dropped, and counted (a header walk, bounded by
            // the datagram: each packet is at least 4 bytes).
            while next_rtcp(&mut rest).is_some() {
                self.counts.rtcp_over_limit += 1;
            }
        }
        // A garbage datagram does not leave a large buffer behind.
        if buf.capacity() <= 2048 {
            self.rtcp_buf = buf;
        }
        opened.map(|()| keyframe)
    }

    /// One RTCP packet the viewer sent.
    pub fn handle_rtcp(&mut self, rtcp: &Rtcp, now: Instant) {
        match rtcp {
            Rtcp::Twcc(fb) => {
                self.results.clear();
                self.register.on_feedback(fb, &mut self.results);
                if !self.results.is_empty() {
                    self.bwe.on_feedback(&self.results, now);
                    self.update_pacing();
                }
                // A feedback packet may report thousands of packets: the buffer does not keep
                // that size for the viewer's life.
                if self.results.capacity() > 64 {
                    self.results = Vec::new();
                }
            }
            Rtcp::Nack(nack) => {
                let Some(video) = &self.video else { return };
                if *nack.ssrc != video.cfg.ssrc {
                    return;
                }
                self.nacked.clear();
                nacked_seqs(nack, &mut self.nacked);
                self.history.evict(now);
                self.counts.nacks += self.nacked.len() as u64;
                let min_interval = self.rtt.unwrap_or(Duration::from_millis(10)).max(Duration::from_millis(10));
                for i in 0..self.nacked.len() {
                    let seq = self.nacked[i];
                    let Some(size) = self.history.get(seq).map(|o| o.payload.len() + HEADER_ROOM) else { continue };
                    if !self.budget.try_resend(size, now) {
                        self.counts.resends_over_budget += 1;
                        continue;
                    }
                    if !self.history.mark_resent(seq, now, min_interval) {
                        continue;
                    }
                    if self.pacer.push(Queued::Resend(seq), size, Class::Resend, now).is_err() {
                        self.counts.dropped_full += 1;
                    }
                }
            }
            Rtcp::ReceiverReport(rr) => {
                let ntp_mid = (self.ntp(now) >> 16) as u32;
                for block in rr.reports.iter() {
                    let ours = [&self.video, &self.audio].iter().any(|t| t.as_ref().is_some_and(|t| t.cfg.ssrc == *block.ssrc));
                    if ours && let Some(rtt) = rtt_from_report_block(block.last_sr_time, block.last_sr_delay, ntp_mid) {
                        self.rtt = Some(rtt);
                        self.bwe.set_rtt(rtt);
                    }
                }
            }
            _ => {}
        }
    }

    /// The bandwidth estimate in bit/s.
    pub fn estimate(&self) -> u64 {
        self.bwe.estimate()
    }

    /// What the viewer's best layer needs: the estimator probes up to it.
    pub fn set_desired(&mut self, bps: u64) {
        self.bwe.set_desired(bps);
    }

    /// When the oldest queued video packet was queued (the caller skips to the next keyframe
    /// when it waits too long).
    pub fn oldest_video(&self) -> Option<Instant> {
        self.pacer.oldest_video()
    }

    /// Drops every queued video packet (skipping to the next keyframe); how many.
    pub fn drop_video(&mut self) -> usize {
        self.pacer.drop_video()
    }

    /// Counters since the last call.
    pub fn take_counts(&mut self) -> EgressCounts {
        std::mem::take(&mut self.counts)
    }

    /// The round-trip time, once a receiver report gave one.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// When [`ViewerEgress::poll_datagram`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        self.pacer.next_wake().map_or(self.next_report, |t| t.max(self.start_at).min(self.next_report))
    }

    /// The next datagram to send at `now`, sealed; `None` until [`ViewerEgress::poll_timeout`].
    pub fn poll_datagram(&mut self, now: Instant) -> Option<Vec<u8>> {
        if now < self.start_at {
            return None;
        }
        if now >= self.next_report {
            self.next_report = now + REPORT_INTERVAL;
            if let Some(d) = self.sender_reports(now) {
                return Some(d);
            }
        }
        if self.bwe.check_feedback(now) {
            self.update_pacing();
        }
        // Probes wait for the first video packet: a receiver learns the RTX stream from it
        // (webrtc-rs binds its track to whichever stream of the m-line it hears first).
        if self.video.as_ref().is_some_and(|t| t.stats.packets > 0)
            && let Some(probe) = self.bwe.poll_probe(now)
        {
            self.pacer.probe(probe.id, probe.bitrate_bps, probe.bytes, now);
        }
        loop {
            let d = match self.pacer.poll(now)? {
                Release::Packet { item: Queued::Media(out), probe } => self.media(out, probe, now),
                Release::Packet { item: Queued::Resend(seq), probe } => self.resend(seq, probe, now),
                Release::Padding { bytes, probe } => self.padding(bytes, probe, now),
            };
            if let Some(d) = d {
                self.counts.datagrams += 1;
                self.counts.bytes += d.len() as u64;
                return Some(d);
            }
        }
    }

    fn update_pacing(&mut self) {
        let est = self.bwe.estimate();
        if est != self.pacing_for {
            self.pacing_for = est;
            self.pacer.set_rate((est as f64 * PACING_FACTOR) as u64);
        }
    }

    fn ntp(&self, now: Instant) -> u64 {
        let wall = self.epoch.1 + now.saturating_duration_since(self.epoch.0);
        ntp_timestamp(wall)
    }

    fn abs_send_time(&self, now: Instant) -> u32 {
        let since = self.epoch.2 + now.saturating_duration_since(self.epoch.0);
        abs_send_time(since)
    }

    /// Writes, registers and seals one media packet, and keeps a video packet for resends.
    fn media(&mut self, out: QueuedMedia, probe: Option<u32>, now: Instant) -> Option<Vec<u8>> {
        let ast = self.abs_send_time(now);
        let track = match out.kind {
            Kind::Audio => self.audio.as_mut()?,
            Kind::Video => self.video.as_mut()?,
        };
        let mut buf = Vec::with_capacity(HEADER_ROOM + out.payload.len() + 16);
        let twcc = (track.cfg.ext.transport_cc != 0).then(|| {
            self.bwe.on_sent(now);
            self.register.register(now, out.payload.len() + HEADER_ROOM, probe)
        });
        let h = Header {
            pt: out.pt,
            marker: out.marker,
            seq: out.seq as u16,
            ts: out.ts,
            ssrc: track.cfg.ssrc,
            mid: &track.cfg.mid,
            transport_seq: twcc,
            abs_send_time: Some(ast),
            audio_level: out.audio_level,
        };
        let header_len = write_header(&mut buf, &h, &track.cfg.ext);
        buf.extend_from_slice(&out.payload);
        out.patch.apply(&mut buf[header_len..]);
        track.stats.count(out.payload.len());
        let roc = (out.seq >> 16) as u32;
        if self.srtp.seal_rtp(&mut buf, header_len, roc).is_err() {
            self.counts.seal_errors += 1;
            return None;
        }
        self.budget.on_sent(buf.len(), now);
        if out.kind == Kind::Video {
            let QueuedMedia { payload, ts, pt, marker, patch, seq, .. } = out;
            self.history.push(seq, now, Sent { payload, ts, pt, marker, patch });
        }
        Some(buf)
    }

    /// Rebuilds a sent video packet: on its RTX stream when negotiated, else as it was.
    fn resend(&mut self, seq: u16, probe: Option<u32>, now: Instant) -> Option<Vec<u8>> {
        let ast = self.abs_send_time(now);
        let track = self.video.as_mut()?;
        let ext_seq = self.history.extended(seq)?;
        let out = self.history.get(seq)?;
        let mut buf = Vec::with_capacity(HEADER_ROOM + out.payload.len() + 18);
        let twcc = (track.cfg.ext.transport_cc != 0).then(|| {
            self.bwe.on_sent(now);
            self.register.register(now, out.payload.len() + HEADER_ROOM, probe)
        });
        let rtx = track.cfg.rtx.as_ref().and_then(|(ssrc, pts)| pts.iter().find(|(pt, _)| *pt == out.pt).map(|&(_, rtx_pt)| (*ssrc, rtx_pt)));
        let (ssrc, pt, wire_seq, roc) = match rtx {
            Some((ssrc, rtx_pt)) => {
                let s = track.rtx_seq;
                track.rtx_seq += 1;
                (ssrc, rtx_pt, s as u16, (s >> 16) as u32)
            }
            None => (track.cfg.ssrc, out.pt, seq, (ext_seq >> 16) as u32),
        };
        let h = Header {
            pt,
            marker: out.marker,
            seq: wire_seq,
            ts: out.ts,
            ssrc,
            mid: &track.cfg.mid,
            transport_seq: twcc,
            abs_send_time: Some(ast),
            audio_level: None,
        };
        let header_len = write_header(&mut buf, &h, &track.cfg.ext);
        if rtx.is_some() {
            write_rtx_original_seq(&mut buf, seq);
        }
        let start = buf.len();
        buf.extend_from_slice(&out.payload);
        out.patch.apply(&mut buf[start..]);
        if self.srtp.seal_rtp(&mut buf, header_len, roc).is_err() {
            self.counts.seal_errors += 1;
            return None;
        }
        self.counts.resends += 1;
        self.budget.on_sent(buf.len(), now);
        Some(buf)
    }

    /// A padding-only packet on the RTX stream for a bandwidth probe.
    fn padding(&mut self, bytes: usize, probe: u32, now: Instant) -> Option<Vec<u8>> {
        let ast = self.abs_send_time(now);
        let track = self.video.as_mut()?;
        let (ssrc, pts) = track.cfg.rtx.as_ref()?;
        let &(_, rtx_pt) = pts.first()?;
        let pad = u8::try_from(bytes.clamp(1, 255)).unwrap_or(255);
        let twcc = (track.cfg.ext.transport_cc != 0).then(|| {
            self.bwe.on_sent(now);
            self.register.register(now, usize::from(pad) + HEADER_ROOM, Some(probe))
        })?;
        let s = track.rtx_seq;
        track.rtx_seq += 1;
        let h = Header {
            pt: rtx_pt,
            marker: false,
            seq: s as u16,
            ts: track.stats.last_rtp_ts,
            ssrc: *ssrc,
            mid: &track.cfg.mid,
            transport_seq: Some(twcc),
            abs_send_time: Some(ast),
            audio_level: None,
        };
        let mut buf = Vec::with_capacity(HEADER_ROOM + usize::from(pad) + 16);
        write_padding_packet(&mut buf, &h, &track.cfg.ext, pad);
        let header_len = rtp_header_len(&buf)?;
        if self.srtp.seal_rtp(&mut buf, header_len, (s >> 16) as u32).is_err() {
            self.counts.seal_errors += 1;
            return None;
        }
        Some(buf)
    }

    /// One compound RTCP packet: a sender report per track that sent something, and SDES.
    fn sender_reports(&mut self, now: Instant) -> Option<Vec<u8>> {
        let ntp = self.ntp(now);
        let mut buf = Vec::with_capacity(128);
        let mut ssrcs = [0u32; 2];
        let mut n = 0;
        for t in [&self.video, &self.audio].into_iter().flatten() {
            if t.stats.packets > 0 {
                write_sender_report(&mut buf, t.cfg.ssrc, &t.stats, now, ntp);
                ssrcs[n] = t.cfg.ssrc;
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        // One SDES packet per source, each with a single chunk: some receivers (aiortc) cannot
        // read the padding between the chunks of one packet.
        for ssrc in &ssrcs[..n] {
            write_sdes_cname(&mut buf, std::slice::from_ref(ssrc), &self.cname);
        }
        if self.srtp.seal_rtcp(&mut buf).is_err() {
            self.counts.seal_errors += 1;
            return None;
        }
        self.counts.datagrams += 1;
        self.counts.bytes += buf.len() as u64;
        Some(buf)
    }
}

/// The next packet of an RTCP compound (padding removed), advancing `rest`; `None` at the end
/// or at a malformed length.
fn next_rtcp<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let buf: &'a [u8] = rest;
    let words = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
    let len = words.checked_add(1)?.checked_mul(4)?;
    let pkt = buf.get(..len)?;
    *rest = &buf[len..];
    if pkt[0] & 0x20 == 0 {
        return Some(pkt);
    }
    let pad = usize::from(*pkt.last()?);
    if pad == 0 || pad > len - 4 {
        return None;
    }
    pkt.get(..len - pad)
}

/// A start value for an RTX sequence number, without a random source in a sans-IO core: taken
/// from the instant's bits (RFC 3550 asks for an unpredictable start; SRTP protects the rest).
fn rand_u16(now: Instant) -> u16 {
    let h = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), now);
    h as u16
}

#[cfg(test)]
mod tests;
