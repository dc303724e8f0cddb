//! The SRT server: callers publish MPEG-TS with stream id `publish:STREAM:TOKEN` (mediamtx's
//! form); H264 goes to the node as a WHIP publisher without transcoding, AAC as Opus (see
//! [`crate::feed`]). The SRT protocol itself (handshake, ARQ, latency buffer) is `srt-tokio`'s.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::PacketSize;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::annexb;
use crate::feed::Feed;
use crate::publisher::Signaling;
use crate::session::VideoFrame;
use crate::stats::IngestStats;
use crate::ts::{Demuxer, TsEvent, adts_frames};

/// How the SRT server runs.
#[derive(Clone)]
pub struct SrtConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time without data before a connection is closed.
    pub idle_timeout: Duration,
    /// SRT receive latency (the buffer that hides retransmissions).
    pub latency: Duration,
    /// Address the WebRTC publishers bind their UDP sockets to.
    pub media_ip: IpAddr,
}

/// What a caller's stream id asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamIdRequest {
    /// Stream name.
    pub stream: String,
    /// Publish token, if given.
    pub token: Option<String>,
    /// `?backup=1` at the end: the caller is the stream's backup.
    pub backup: bool,
}

/// Parses `publish:STREAM[:TOKEN][?backup=1]`; anything else (reading, another syntax) is
/// refused.
pub fn parse_stream_id(id: &str) -> Option<StreamIdRequest> {
    let rest = id.strip_prefix("publish:")?;
    let (rest, backup) = match rest.rsplit_once('?') {
        Some((r, q)) => (r, q.split('&').any(|kv| matches!(kv, "backup=1" | "backup=true"))),
        None => (rest, false),
    };
    let (stream, token) = match rest.split_once(':') {
        Some((s, t)) => (s, (!t.is_empty()).then(|| t.to_owned())),
        None => (rest, None),
    };
    (!stream.is_empty()).then(|| StreamIdRequest { stream: stream.to_owned(), token, backup })
}

/// A bound SRT listener.
pub struct SrtServer {
    listener: SrtListener,
    incoming: SrtIncoming,
    local: SocketAddr,
    cfg: SrtConfig,
    signaling: Arc<dyn Signaling>,
    stats: Arc<IngestStats>,
}

/// Bytes of payload per SRT packet announced to callers: the live maximum, so that a libsrt
/// caller (which takes the announced size as its MTU) can send the standard 1316 (seven TS
/// packets).
const MAX_PAYLOAD: u64 = 1456;

impl SrtServer {
    /// Binds `addr` (UDP).
    pub async fn bind(addr: SocketAddr, cfg: SrtConfig, signaling: Arc<dyn Signaling>) -> std::io::Result<Self> {
        let (listener, incoming, local) = listen(addr, &cfg).await?;
        Ok(Self { listener, incoming, local, cfg, signaling, stats: Arc::default() })
    }

    /// Counts into `stats`.
    pub fn with_stats(mut self, stats: Arc<IngestStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts callers until the process ends. srt-tokio's listener task panics on some
    /// handshakes (a caller that encrypts, as the node sets no passphrase): its sessions end with
    /// it, and the listener is bound again at once, so that such a caller costs a moment, not the
    /// service.
    pub async fn run(mut self) {
        let permits = Arc::new(Semaphore::new(self.cfg.max_connections));
        loop {
            self.accept_all(&permits).await;
            IngestStats::inc(&self.stats.listener_restarts);
            warn!(addr = %self.local, "the SRT listener stopped (a caller's handshake crashed srt-tokio); binding it again");
            let mut wait = Duration::from_millis(50);
            loop {
                tokio::time::sleep(wait).await;
                match listen(self.local, &self.cfg).await {
                    Ok((listener, incoming, _)) => {
                        self.listener = listener;
                        self.incoming = incoming;
                        break;
                    }
                    Err(e) => {
                        debug!(addr = %self.local, error = %e, "SRT listener not bound yet");
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
    }

    /// Accepts callers until the listener stops.
    async fn accept_all(&mut self, permits: &Arc<Semaphore>) {
        while let Some(req) = self.incoming.incoming().next().await {
            let peer = req.remote();
            let Some(ask) = req.stream_id().and_then(|id| parse_stream_id(id)) else {
                IngestStats::inc(&self.stats.protocol_errors);
                let id = req.stream_id().map(|s| s.to_string()).unwrap_or_default();
                warn!(%peer, stream_id = %id, "SRT caller refused: the stream id must be publish:STREAM:TOKEN");
                let _ = req.reject(RejectReason::Server(ServerRejectReason::BadRequest)).await;
                continue;
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                IngestStats::inc(&self.stats.over_limit);
                warn!(%peer, max = self.cfg.max_connections, "SRT caller refused: --srt-max-connections reached");
                let _ = req.reject(RejectReason::Server(ServerRejectReason::Overload)).await;
                continue;
            };
            IngestStats::inc(&self.stats.accepted);
            let (cfg, signaling, stats) = (self.cfg.clone(), self.signaling.clone(), self.stats.clone());
            tokio::spawn(async move {
                connection(req, peer, ask, cfg, signaling, stats).await;
                drop(permit);
            });
        }
    }
}

/// An SRT listener on `addr` (bound here, so that the port is known when `addr` asks for any).
async fn listen(addr: SocketAddr, cfg: &SrtConfig) -> std::io::Result<(SrtListener, SrtIncoming, SocketAddr)> {
    let sock = tokio::net::UdpSocket::bind(addr).await?;
    let local = sock.local_addr()?;
    let (listener, incoming) = SrtListener::builder()
        .latency(cfg.latency)
        .set(|o| o.sender.max_payload_size = PacketSize(MAX_PAYLOAD))
        .socket(sock)
        .bind(local)
        .await?;
    Ok((listener, incoming, local))
}

/// Why a connection ended.
enum End {
    Closed,
    Idle,
    Refused(String),
}

async fn connection(
    req: ConnectionRequest,
    peer: SocketAddr,
    ask: StreamIdRequest,
    cfg: SrtConfig,
    signaling: Arc<dyn Signaling>,
    stats: Arc<IngestStats>,
) {
    let mut sock = match req.accept(None).await {
        Ok(s) => s,
        Err(e) => {
            debug!(%peer, error = %e, "SRT accept failed");
            return;
        }
    };
    info!(%peer, stream = %ask.stream, "SRT publish requested");
    let mut feed = Feed::new("SRT", peer, ask.stream.clone(), ask.token, signaling, stats.clone(), cfg.media_ip).with_backup(ask.backup);
    let mut demux = Demuxer::new();
    let started = Instant::now();
    let end = 'conn: loop {
        let data = match tokio::time::timeout(cfg.idle_timeout, sock.next()).await {
            Err(_) => {
                IngestStats::inc(&stats.idle_timeouts);
                break End::Idle;
            }
            Ok(None) => break End::Closed,
            Ok(Some(Err(e))) => {
                debug!(%peer, error = %e, "SRT receive failed");
                break End::Closed;
            }
            Ok(Some(Ok((_, data)))) => data,
        };
        demux.push(&data);
        while let Some(ev) = demux.poll_event() {
            match ev {
                TsEvent::Video { pts, dts, annexb } => {
                    if pts != dts {
                        IngestStats::inc(&stats.refused_b_frames);
                        break 'conn End::Refused("the H264 has B-frames, which WebRTC viewers cannot play smoothly: set the encoder to bframes=0 (OBS: x264 options bframes=0)".into());
                    }
                    let au = annexb::access_unit(&annexb, feed.avc());
                    if let Some(c) = au.new_config {
                        feed.video_config(c);
                    }
                    let frame = VideoFrame { timestamp: (dts / 90) as u32, keyframe: au.keyframe, annexb: au.annexb };
                    if let Err(e) = feed.video(frame).await {
                        break 'conn End::Refused(e.to_string());
                    }
                }
                TsEvent::Audio { adts, .. } => {
                    for f in adts_frames(&adts) {
                        feed.audio_config(&f.asc);
                        feed.audio(f.raw);
                    }
                }
                TsEvent::UnsupportedVideo(t) => {
                    IngestStats::inc(&stats.refused_codec);
                    break 'conn End::Refused(format!(
                        "video stream_type 0x{t:02x} is not H264, the codec WebRTC viewers take from SRT: encode H264"
                    ));
                }
                TsEvent::UnsupportedAudio(t) => {
                    warn!(%peer, stream = %ask.stream, stream_type = t, "SRT audio is not AAC (ADTS); viewers get video only");
                }
            }
        }
    };
    let ts = demux.stats();
    let secs = started.elapsed().as_secs();
    match end {
        End::Closed => {
            info!(%peer, stream = %ask.stream, secs, discontinuities = ts.discontinuities, "SRT connection closed")
        }
        End::Idle => info!(%peer, stream = %ask.stream, secs, "SRT connection idle; closed"),
        End::Refused(reason) => warn!(%peer, stream = %ask.stream, "SRT stream refused: {reason}"),
    }
    let _ = futures_util::SinkExt::close(&mut sock).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_name_a_stream_and_a_token() {
        assert_eq!(
            parse_stream_id("publish:room:abc"),
            Some(StreamIdRequest { stream: "room".into(), token: Some("abc".into()), backup: false })
        );
        assert_eq!(parse_stream_id("publish:room"), Some(StreamIdRequest { stream: "room".into(), token: None, backup: false }));
        assert_eq!(
            parse_stream_id("publish:room:t0k?backup=1"),
            Some(StreamIdRequest { stream: "room".into(), token: Some("t0k".into()), backup: true })
        );
        assert_eq!(parse_stream_id("publish:room?backup=1").map(|r| (r.token, r.backup)), Some((None, true)));
        // A JWT has no colon; anything after the second colon is the token.
        assert_eq!(parse_stream_id("publish:room:a:b").and_then(|r| r.token), Some("a:b".into()));
        assert_eq!(parse_stream_id("read:room"), None);
        assert_eq!(parse_stream_id("publish:"), None);
        assert_eq!(parse_stream_id("#!::r=room,m=publish"), None);
    }
}
