//! The RTMP server: a TCP listener driving one [`Session`] per connection, with explicit limits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::feed::Feed;
use crate::publisher::{self, Signaling};
use crate::session::{Event, PublishRequest, Refusal, Session};
use crate::stats::IngestStats;

/// How the RTMP server runs.
#[derive(Clone)]
pub struct ServerConfig {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to finish the handshake.
    pub handshake_timeout: Duration,
    /// Time without data before a connection is closed.
    pub idle_timeout: Duration,
    /// Address the WebRTC publishers bind their UDP sockets to (an address of this host that
    /// reaches the SFU's media ports).
    pub media_ip: IpAddr,
}

/// A bound RTMP listener.
pub struct RtmpServer {
    listener: TcpListener,
    cfg: ServerConfig,
    signaling: Arc<dyn Signaling>,
    stats: Arc<IngestStats>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// How long a closing connection's input is still read (so the client reads the reason).
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read while lingering.
const LINGER_BYTES: usize = 8 * 1024 * 1024;
/// Keeps "over the limit" logs to one per this interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl RtmpServer {
    /// Binds `addr`.
    pub async fn bind(
        addr: SocketAddr,
        cfg: ServerConfig,
        signaling: Arc<dyn Signaling>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(RtmpServer {
            listener,
            cfg,
            signaling,
            stats: Arc::default(),
            tls: None,
        })
    }

    /// Serves RTMPS: TLS with `config` (within the handshake timeout) before RTMP.
    pub fn with_tls(mut self, config: tokio_rustls::rustls::ServerConfig) -> Self {
        self.tls = Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        self
    }

    /// Counts into `stats` (shared by the RTMP and RTMPS listeners).
    pub fn with_stats(mut self, stats: Arc<IngestStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The server's counters.
    pub fn stats(&self) -> Arc<IngestStats> {
        self.stats.clone()
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) {
        let permits = Arc::new(Semaphore::new(self.cfg.max_connections));
        let mut last_log: Option<Instant> = None;
        loop {
            let (sock, peer) = match self.listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "RTMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                IngestStats::inc(&self.stats.over_limit);
                if last_log.is_none_or(|t| t.elapsed() > LOG_EVERY) {
                    last_log = Some(Instant::now());
                    warn!(%peer, max = self.cfg.max_connections, "RTMP connection refused: --rtmp-max-connections reached");
                }
                continue;
            };
            IngestStats::inc(&self.stats.accepted);
            let conn = Connection {
                cfg: self.cfg.clone(),
                signaling: self.signaling.clone(),
                stats: self.stats.clone(),
                peer,
            };
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                match tls {
                    None => conn.run(sock).await,
                    Some(acceptor) => match tokio::time::timeout(
                        conn.cfg.handshake_timeout,
                        acceptor.accept(sock),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => conn.run(tls).await,
                        Ok(Err(e)) => {
                            IngestStats::inc(&conn.stats.protocol_errors);
                            debug!(peer = %conn.peer, error = %e, "RTMPS TLS handshake failed");
                        }
                        Err(_) => {
                            IngestStats::inc(&conn.stats.handshake_timeouts);
                            debug!(peer = %conn.peer, "RTMPS TLS handshake timed out");
                        }
                    },
                }
                drop(permit);
            });
        }
    }
}

struct Connection {
    cfg: ServerConfig,
    signaling: Arc<dyn Signaling>,
    stats: Arc<IngestStats>,
    peer: SocketAddr,
}

/// How a connection ended, for the log.
enum End {
    Closed,
    Timeout(&'static str),
    Error(String),
}

impl Connection {
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(self, mut sock: S) {
        let mut s = Session::new();
        let started = tokio::time::Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        let mut request: Option<PublishRequest> = None;
        let mut feed: Option<Feed> = None;
        // Parameters that came before the publish request.
        let mut early_avc: Option<crate::flv::AvcConfig> = None;
        let end = loop {
            let deadline = if s.handshake_done() {
                tokio::time::Instant::now() + self.cfg.idle_timeout
            } else {
                started + self.cfg.handshake_timeout
            };
            let n = match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
                Err(_) if s.handshake_done() => {
                    IngestStats::inc(&self.stats.idle_timeouts);
                    break End::Timeout("idle");
                }
                Err(_) => {
                    IngestStats::inc(&self.stats.handshake_timeouts);
                    break End::Timeout("handshake");
                }
                Ok(Ok(0)) => break End::Closed,
                Ok(Ok(n)) => n,
                Ok(Err(e)) => break End::Error(e.to_string()),
            };
            let r = s.handle_input(&buf[..n]);
            let mut end = None;
            if let Err(e) = r {
                IngestStats::inc(&self.stats.protocol_errors);
                end = Some(End::Error(e.to_string()));
            }
            while let Some(ev) = s.poll_event() {
                match ev {
                    Event::Publish(req) => {
                        info!(peer = %self.peer, stream = %req.stream, backup = req.backup, "RTMP publish requested");
                        let mut f = Feed::new("RTMP", self.peer, req.stream.clone(), req.token.clone(), self.signaling.clone(), self.stats.clone(), self.cfg.media_ip).with_backup(req.backup);
                        if let Some(cfg) = early_avc.take() {
                            f.video_config(cfg);
                        }
                        feed = Some(f);
                        request = Some(req);
                        // The node checks the token when the first H264 frame arrives (the offer
                        // needs the profile); until then media is accepted.
                        s.accept_publish();
                    }
                    Event::VideoConfig(cfg) => match feed.as_mut() {
                        Some(f) => f.video_config(cfg),
                        None => early_avc = Some(cfg),
                    },
                    // Published at the first frame (not at the sequence header): a stream with
                    // B-frames is refused by then, before it reaches the node.
                    Event::Video(f) => match feed.as_mut() {
                        Some(feed) => {
                            if let Err(e) = feed.video(f).await {
                                let (code, reason) = match &e {
                                    publisher::PublishError::Refused(r) if r.status == 401 || r.status == 403 => {
                                        ("NetStream.Publish.BadName", format!("{}: {}", r.status, r.reason.trim()))
                                    }
                                    publisher::PublishError::Refused(r) => ("NetStream.Publish.Rejected", format!("{}: {}", r.status, r.reason.trim())),
                                    other => ("NetStream.Publish.Rejected", other.to_string()),
                                };
                                s.reject_publish(code, &reason);
                            }
                        }
                        None => IngestStats::inc(&self.stats.video_dropped),
                    },
                    Event::AudioConfig(asc) => match feed.as_mut() {
                        Some(f) => f.audio_config(&asc),
                        None => IngestStats::inc(&self.stats.audio_dropped),
                    },
                    Event::Audio { data, .. } => match feed.as_mut() {
                        Some(f) => f.audio(&data),
                        None => IngestStats::inc(&self.stats.audio_dropped),
                    },
                    Event::UnsupportedAudio(format) => {
                        IngestStats::inc(&self.stats.audio_dropped);
                        debug!(peer = %self.peer, format, "RTMP audio other than AAC dropped");
                    }
                    Event::Refused(r) => {
                        IngestStats::inc(match r {
                            Refusal::BFrames => &self.stats.refused_b_frames,
                            Refusal::VideoCodec(_) => &self.stats.refused_codec,
                        });
                        let stream = request.as_ref().map(|r| r.stream.as_str()).unwrap_or("");
                        warn!(peer = %self.peer, %stream, reason = r.name(), "RTMP stream refused: {}", r.description());
                    }
                    Event::Unpublish => {
                        debug!(peer = %self.peer, "RTMP unpublish");
                    }
                }
            }
            let out = s.take_output();
            if !out.is_empty()
                && let Err(e) = tokio::time::timeout(self.cfg.idle_timeout, sock.write_all(&out))
                    .await
                    .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
            {
                break End::Error(e.to_string());
            }
            if let Some(e) = end {
                break e;
            }
            if s.is_closed() {
                break End::Closed;
            }
        };
        // Close the sending side, then read and drop what the client still sends for a moment:
        // closing with unread input would reset the connection and lose the onStatus reason.
        let _ = sock.shutdown().await;
        let _ = tokio::time::timeout(LINGER, async {
            let mut left = LINGER_BYTES;
            while let Ok(n) = sock.read(&mut buf).await {
                if n == 0 || n >= left {
                    break;
                }
                left -= n;
            }
        })
        .await;
        let stream = request.as_ref().map(|r| r.stream.as_str()).unwrap_or("");
        match end {
            End::Closed => info!(peer = %self.peer, %stream, "RTMP connection closed"),
            End::Timeout(what) => {
                info!(peer = %self.peer, %stream, "RTMP connection closed: {what} timeout")
            }
            End::Error(e) => {
                info!(peer = %self.peer, %stream, error = %e, "RTMP connection closed")
            }
        }
        drop(feed);
    }
}
