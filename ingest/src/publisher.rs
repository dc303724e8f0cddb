//! Publishes an ingested (RTMP or SRT) stream's H264 and Opus into the node as a WebRTC (WHIP)
//! publisher built on str0m.
//!
//! The offer goes through [`Signaling`] (the node calls its own WHIP handler, so tokens, grants
//! and stream conflicts are checked as for any WHIP publisher); media goes over UDP to the SFU's
//! media ports. str0m packetizes each access unit per RFC 6184 (packetization mode 1).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::flv::AvcConfig;
use crate::session::VideoFrame;
use crate::stats::IngestStats;

/// The node's answer to a WHIP offer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// SDP answer.
    pub sdp: String,
    /// The session resource (`/whip/STREAM/KEY`), for the DELETE at the end.
    pub location: String,
}

/// A refusal from the node's WHIP endpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {reason}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// The response body.
    pub reason: String,
}

/// A boxed future of the signaling calls.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// WHIP signaling with the node.
pub trait Signaling: Send + Sync + 'static {
    /// `POST /whip/{stream}` with `Authorization: Bearer token` (and `?backup=1` for a backup).
    fn offer<'a>(
        &'a self,
        stream: &'a str,
        token: Option<&'a str>,
        backup: bool,
        sdp: String,
    ) -> BoxFuture<'a, Result<Answer, Refused>>;
    /// `DELETE location`.
    fn delete<'a>(&'a self, location: &'a str) -> BoxFuture<'a, ()>;
}

/// Payload type offered for H264.
const H264_PT: u8 = 102;
/// Bytes of access units kept from the last keyframe until the WebRTC session connects.
const MAX_PENDING_BYTES: usize = 8 * 1024 * 1024;
/// How long ICE and DTLS may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Media for the WebRTC session.
#[derive(Debug)]
pub enum Media {
    /// An H264 access unit.
    Video(VideoFrame),
    /// A 20 ms Opus packet.
    Opus(Vec<u8>),
}

/// A running publisher: send it access units and Opus packets; dropping it ends the WHIP session.
#[derive(Debug)]
pub struct Publisher {
    frames: mpsc::Sender<Media>,
}

impl Publisher {
    /// Queues an access unit; false when the queue is full (the frame is dropped).
    pub fn send(&self, f: VideoFrame) -> bool {
        self.frames.try_send(Media::Video(f)).is_ok()
    }

    /// Queues an Opus packet of 20 ms; false when the queue is full.
    pub fn send_opus(&self, packet: Vec<u8>) -> bool {
        self.frames.try_send(Media::Opus(packet)).is_ok()
    }
}

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The node refused the offer.
    #[error("the node refused the publish: {0}")]
    Refused(#[from] Refused),
    /// WebRTC setup failed.
    #[error("WebRTC: {0}")]
    Rtc(String),
    /// A socket error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

fn rtc_err(e: impl std::fmt::Display) -> PublishError {
    PublishError::Rtc(e.to_string())
}

/// Offers H264 with `cfg`'s profile, binds a UDP socket on `bind_ip`, and runs the session in a
/// task. Returns once the node answered; the WebRTC connection completes in the background.
pub async fn start(
    signaling: Arc<dyn Signaling>,
    stream: String,
    token: Option<String>,
    backup: bool,
    cfg: &AvcConfig,
    bind_ip: IpAddr,
    stats: Arc<IngestStats>,
) -> Result<(Publisher, oneshot::Receiver<()>), PublishError> {
    let sock = UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
    let local = sock.local_addr()?;
    let mut rc = Rtc::builder().clear_codecs().enable_opus(true, false);
    let format = FormatParams {
        profile_level_id: Some(u32::from_be_bytes([
            0,
            cfg.profile_level_id[0],
            cfg.profile_level_id[1],
            cfg.profile_level_id[2],
        ])),
        packetization_mode: Some(1),
        level_asymmetry_allowed: Some(true),
        ..FormatParams::default()
    };
    rc.codec_config().add_config(
        Pt::from(H264_PT),
        None,
        Codec::H264,
        Frequency::NINETY_KHZ,
        None,
        format,
    );
    let mut rtc = rc.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(rtc_err)?);
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let audio_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| PublishError::Rtc("no offer".into()))?;
    let answer = signaling
        .offer(&stream, token.as_deref(), backup, offer.to_sdp_string())
        .await?;
    let sdp = SdpAnswer::from_sdp_string(&answer.sdp).map_err(rtc_err)?;
    rtc.sdp_api().accept_answer(pending, sdp).map_err(rtc_err)?;
    let pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::H264)
        .map(|p| p.pt())
        .ok_or_else(|| PublishError::Rtc("the answer has no H264".into()))?;
    let opus_pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| p.pt());
    let audio = opus_pt.map(|pt| (audio_mid, pt));
    let (tx, rx) = mpsc::channel(512);
    let (connected_tx, connected_rx) = oneshot::channel();
    info!(%stream, profile_level_id = %cfg.profile_level_id_hex(), "ingest stream published over WHIP");
    tokio::spawn(async move {
        let r = run(
            &mut rtc,
            &sock,
            local,
            (mid, pt),
            audio,
            rx,
            connected_tx,
            &stats,
        )
        .await;
        if let Err(e) = r {
            warn!(%stream, error = %e, "ingest stream's WebRTC session ended");
        }
        signaling.delete(&answer.location).await;
        debug!(%stream, "ingest stream's WHIP session deleted");
    });
    Ok((Publisher { frames: tx }, connected_rx))
}

#[allow(clippy::too_many_arguments)]
async fn run(
    rtc: &mut Rtc,
    sock: &UdpSocket,
    local: SocketAddr,
    (mid, pt): (Mid, Pt),
    audio: Option<(Mid, Pt)>,
    mut frames: mpsc::Receiver<Media>,
    connected_tx: oneshot::Sender<()>,
    stats: &IngestStats,
) -> Result<(), PublishError> {
    let mut buf = vec![0u8; 2048];
    let mut connected = false;
    let mut connected_tx = Some(connected_tx);
    let mut pending: Vec<VideoFrame> = Vec::new();
    let mut pending_bytes = 0usize;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut first_ts: Option<u32> = None;
    let mut audio_samples: u64 = 0;
    loop {
        let timeout = loop {
            match rtc.poll_output().map_err(rtc_err)? {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    if let Err(e) = sock.send_to(&t.contents, t.destination).await {
                        debug!(error = %e, "send failed");
                    }
                }
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::IceConnectionStateChange(
                    str0m::IceConnectionState::Disconnected,
                )) => {
                    return Err(PublishError::Rtc("ICE disconnected".into()));
                }
                Output::Event(_) => {}
            }
        };
        if !rtc.is_alive() {
            return Ok(());
        }
        if connected && let Some(c) = connected_tx.take() {
            let _ = c.send(());
            for f in pending.drain(..) {
                write(rtc, mid, pt, &mut first_ts, f, stats)?;
            }
            pending_bytes = 0;
        }
        if !connected && Instant::now() > deadline {
            return Err(PublishError::Rtc("ICE/DTLS did not connect in 10 s".into()));
        }
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, src) = r?;
                if let Ok(rcv) = Receive::new(Protocol::Udp, src, local, &buf[..n]) {
                    rtc.handle_input(Input::Receive(Instant::now(), rcv)).map_err(rtc_err)?;
                }
            }
            f = frames.recv() => {
                let f = match f {
                    None => { rtc.disconnect(); return Ok(()) }
                    Some(Media::Opus(p)) => {
                        if connected && let Some((amid, apt)) = audio {
                            let t = MediaTime::new(audio_samples, Frequency::FORTY_EIGHT_KHZ);
                            audio_samples += crate::audio::FRAME as u64;
                            if let Some(w) = rtc.writer(amid) {
                                w.write(apt, Instant::now(), t, p).map_err(rtc_err)?;
                            }
                        }
                        continue;
                    }
                    Some(Media::Video(f)) => f,
                };
                if connected {
                    write(rtc, mid, pt, &mut first_ts, f, stats)?;
                } else {
                    if f.keyframe {
                        IngestStats::add(&stats.video_dropped, pending.len() as u64);
                        pending.clear();
                        pending_bytes = 0;
                    }
                    // Nothing before the first keyframe, nothing over the byte limit.
                    if (pending.is_empty() && !f.keyframe)
                        || pending_bytes.saturating_add(f.annexb.len()) > MAX_PENDING_BYTES
                    {
                        IngestStats::inc(&stats.video_dropped);
                    } else {
                        pending_bytes += f.annexb.len();
                        pending.push(f);
                    }
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(rtc_err)?;
            }
        }
    }
}

fn write(
    rtc: &mut Rtc,
    mid: Mid,
    pt: Pt,
    first: &mut Option<u32>,
    f: VideoFrame,
    stats: &IngestStats,
) -> Result<(), PublishError> {
    let base = *first.get_or_insert(f.timestamp);
    let ms = u64::from(f.timestamp.wrapping_sub(base));
    let rtp_time = MediaTime::new(ms * 90, Frequency::NINETY_KHZ);
    let Some(w) = rtc.writer(mid) else {
        return Err(PublishError::Rtc("no writer for the video".into()));
    };
    w.write(pt, Instant::now(), rtp_time, f.annexb)
        .map_err(rtc_err)?;
    IngestStats::inc(&stats.video_frames);
    Ok(())
}
