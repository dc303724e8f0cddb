//! [`Sfu`]: starts the media workers and offers sessions to the signaling layer.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use str0m::Candidate;
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{error, info};

use crate::layer::{LayerPreference, MAX_LAYERS};
use crate::metrics::{Metrics, MetricsCollector};
use crate::stream::{AdmitError, RIDS, Registry, Role, SessionEvent, SessionId};
use crate::worker::{Command, Worker};

/// Media plane settings.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Number of media workers (threads, each with its own UDP socket).
    pub workers: usize,
    /// Address the media sockets bind to.
    pub bind_ip: IpAddr,
    /// First media port; worker `i` uses `media_port + i` (0 = any free port per worker).
    pub media_port: u16,
    /// Address advertised in ICE host candidates.
    pub candidate_ip: IpAddr,
    /// Most sessions (publishers + viewers) the node accepts.
    pub max_sessions: usize,
    /// Sessions of `max_sessions` that viewers may not take: kept for publishers.
    pub publisher_reserve: usize,
    /// Where origin publishers' packets are copied for the archive (none: no archive).
    pub tap: Option<crate::tap::TapSender>,
    /// Where publisher start and end are reported (none: not reported).
    pub lifecycle: Option<crate::lifecycle::LifecycleSender>,
    /// DTLS implementation of the peer connections.
    pub dtls_backend: crate::dtls::DtlsBackend,
    /// What sends media to viewers.
    pub send_path: crate::egress::SendPath,
}

/// Why the media plane refused a request.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The SDP offer could not be parsed or accepted.
    #[error("malformed SDP: {0}")]
    BadSdp(String),
    /// The stream is not published on this node.
    #[error("stream not found")]
    StreamNotFound,
    /// The stream already has a publisher.
    #[error("stream is already being published")]
    StreamBusy,
    /// The node reached its session limit.
    #[error("node is full")]
    Full,
    /// The media worker's control queue is full; try again shortly.
    #[error("media worker is busy")]
    Overloaded,
    /// No such session.
    #[error("session not found")]
    SessionNotFound,
    /// No video format of the offer can carry the stream (or none is forwarded at all).
    #[error("{0}")]
    Codec(#[from] crate::negotiate::CodecError),
    /// A trickle ICE fragment could not be parsed.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// The media plane failed internally.
    #[error("internal error: {0}")]
    Internal(String),
}

/// State shared by the handle and all workers.
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    /// Media handoffs and keyframe requests between workers.
    pub(crate) workers: Vec<mpsc::Sender<Command>>,
    /// Session commands from signaling (start, trickle, layer, close), bounded apart from media.
    pub(crate) control: Vec<mpsc::Sender<Command>>,
    pub(crate) worker_load: Vec<AtomicUsize>,
    /// Whether each worker takes new sessions (false for a while after a panic).
    pub(crate) worker_healthy: Vec<std::sync::atomic::AtomicBool>,
    pub(crate) metrics: Metrics,
    pub(crate) tap: Option<crate::tap::TapSender>,
    pub(crate) lifecycle: Option<crate::lifecycle::LifecycleSender>,
    /// DTLS implementation of the peer connections.
    pub(crate) dtls_backend: crate::dtls::DtlsBackend,
    /// What sends media to viewers.
    pub(crate) send_path: crate::egress::SendPath,
    /// Counters of other parts of the node rendered with the media plane's.
    pub(crate) extra_counters: std::sync::Mutex<Option<crate::metrics::ExtraCounters>>,
}

/// One layer of a stream in [`StreamSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// Rid (`q`, `h`, `f`; empty for a publisher without simulcast).
    pub rid: String,
    /// Recent bitrate, bits per second.
    pub bitrate: u64,
    /// Frame width from the last keyframe.
    pub width: u32,
    /// Frame height from the last keyframe.
    pub height: u32,
    /// Packets received.
    pub packets: u64,
}

/// Audio in [`StreamSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct AudioSummary {
    /// Recent bitrate, bits per second.
    pub bitrate: u64,
    /// Packets received.
    pub packets: u64,
}

/// One stream as `/api/streams` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Stream name.
    pub name: String,
    /// Video codec (`VP8`, `H264`), `null` before the first video packet.
    pub codec: Option<&'static str>,
    /// True while a publisher is connected.
    pub live: bool,
    /// Viewers on this node.
    pub viewers: usize,
    /// Downstream nodes relaying the stream from this node.
    pub relay_children: usize,
    /// Downstream nodes standing by on a paused relay edge from this node.
    pub standby_children: usize,
    /// Incoming video layers that have carried packets.
    pub layers: Vec<LayerSummary>,
    /// Incoming audio.
    pub audio: AudioSummary,
    /// Backup ingest: which publisher feeds the stream (`primary` or `backup`); absent while
    /// the stream has no backup publisher on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// The session whose media feeds the stream (its publisher or relay from upstream), if any.
    #[serde(skip)]
    pub fed_by: Option<SessionId>,
    /// The sessions of the paused relay edges (`standby_children` of them).
    #[serde(skip)]
    pub paused_relays: Vec<SessionId>,
}

/// One publisher or viewer session as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// Session id.
    pub id: SessionId,
    /// Stream name.
    pub stream: String,
    /// `publisher`, `backup` (a backup publisher) or `viewer`.
    pub role: &'static str,
    /// The peer's media address (null until its first datagram).
    pub remote_addr: Option<SocketAddr>,
    /// When the session started, milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Recent bitrate: what a publisher sends, or what a viewer receives (its layer and audio).
    pub bitrate_bps: u64,
}

/// Depth of each worker's queue of media handoffs and keyframe requests.
pub const MEDIA_QUEUE: usize = 8192;
/// Depth of each worker's queue of session commands; past it trickle, layer and close requests
/// are refused with [`SfuError::Overloaded`] (503) and never displace media.
pub const CONTROL_QUEUE: usize = 1024;

/// Socket buffer size asked for on media sockets; bursts of fan-out must not overflow them.
const MEDIA_SOCKET_BUFFER: usize = 4 << 20;

/// Binds one non-blocking media socket with large kernel buffers.
fn bind_media_socket(addr: SocketAddr) -> std::io::Result<StdUdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel may cap these (net.core.wmem_max / rmem_max); a smaller buffer still works,
    // but fan-out bursts then overflow it sooner (counted as dropped sends), so say so once.
    let _ = sock.set_send_buffer_size(MEDIA_SOCKET_BUFFER);
    let _ = sock.set_recv_buffer_size(MEDIA_SOCKET_BUFFER);
    static WARNED: std::sync::Once = std::sync::Once::new();
    // Linux reports twice the size asked for (the kernel's bookkeeping share).
    let send = sock.send_buffer_size().unwrap_or(0);
    let recv = sock.recv_buffer_size().unwrap_or(0);
    if send < MEDIA_SOCKET_BUFFER || recv < MEDIA_SOCKET_BUFFER {
        WARNED.call_once(|| {
            tracing::warn!(
                asked = MEDIA_SOCKET_BUFFER,
                send,
                recv,
                "the kernel capped the media sockets' buffers; raise net.core.wmem_max and net.core.rmem_max \
                 (sysctl) for large audiences, or watch relaycast_dropped_packets_total{{reason=\"send_failed\"}}"
            )
        });
    }
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// The least loaded healthy worker; when every worker is paused after a panic, the least loaded
/// of all (refusing every session would harm more than a worker that recovered). `None` only
/// without workers.
pub fn pick_worker(loads: &[usize], healthy: &[bool]) -> Option<usize> {
    let least = |ok: &dyn Fn(usize) -> bool| (0..loads.len()).filter(|&i| ok(i)).min_by_key(|&i| loads[i]);
    least(&|i| healthy.get(i).copied().unwrap_or(false)).or_else(|| least(&|_| true))
}

/// The media plane: workers plus the session registry.
pub struct Sfu {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    config: SfuConfig,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Sfu {
    /// Binds the media sockets and starts the workers.
    pub fn start(config: SfuConfig) -> std::io::Result<Sfu> {
        let n = config.workers.clamp(1, 64);
        let mut sockets = Vec::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.media_port == 0 { 0 } else { config.media_port.saturating_add(i as u16) };
            let sock = bind_media_socket(SocketAddr::new(config.bind_ip, port))?;
            let port = sock.local_addr()?.port();
            addrs.push(SocketAddr::new(config.candidate_ip, port));
            sockets.push(sock);
        }
        let mut txs = Vec::with_capacity(n);
        let mut rxs = Vec::with_capacity(n);
        let mut ctl_txs = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(MEDIA_QUEUE);
            let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE);
            txs.push(tx);
            ctl_txs.push(ctl_tx);
            rxs.push((rx, ctl_rx));
        }
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            workers: txs,
            control: ctl_txs,
            worker_healthy: (0..n).map(|_| std::sync::atomic::AtomicBool::new(true)).collect(),
            worker_load: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            metrics: Metrics::default(),
            tap: config.tap.clone(),
            lifecycle: config.lifecycle.clone(),
            dtls_backend: config.dtls_backend,
            send_path: config.send_path,
            extra_counters: std::sync::Mutex::new(None),
        });
        let mut threads = Vec::with_capacity(n);
        for (i, (sock, rx)) in sockets.into_iter().zip(rxs).enumerate() {
            let shared = shared.clone();
            let local = addrs[i];
            let t = std::thread::Builder::new().name(format!("media-{i}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        error!(worker = i, error = %e, "cannot start worker runtime");
                        return;
                    }
                };
                let (rx, ctl) = rx;
                let health = shared.clone();
                rt.block_on(async move {
                    match tokio::net::UdpSocket::from_std(sock) {
                        Ok(socket) => Worker::new(i, socket, local, shared).run(rx, ctl).await,
                        Err(e) => error!(worker = i, error = %e, "cannot register media socket"),
                    }
                });
                // A worker that stopped takes no sessions.
                health.worker_healthy[i].store(false, Ordering::Relaxed);
            })?;
            threads.push(t);
        }
        info!(workers = n, addrs = ?addrs, send_path = %config.send_path, dtls_backend = %config.dtls_backend, "media plane started");
        Ok(Sfu { shared, addrs, config, threads: std::sync::Mutex::new(threads) })
    }

    /// The advertised media address of each worker.
    pub fn media_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Node-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The collector that encodes the node's metrics (to combine with other collectors).
    pub fn metrics_collector(&self) -> MetricsCollector {
        MetricsCollector { shared: self.shared.clone() }
    }

    /// Adds counters kept elsewhere in the node (read at each scrape) to [`Sfu::metrics_text`].
    pub fn set_extra_counters(&self, counters: crate::metrics::ExtraCounters) {
        *self.shared.extra_counters.lock().unwrap_or_else(|e| e.into_inner()) = Some(counters);
    }

    /// The counters set by [`Sfu::set_extra_counters`], to extend them.
    pub fn extra_counters(&self) -> Option<crate::metrics::ExtraCounters> {
        self.shared.extra_counters.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The node's metrics in the Prometheus text format.
    pub fn metrics_text(&self) -> String {
        crate::metrics::render(&MetricsCollector { shared: self.shared.clone() }).unwrap_or_default()
    }

    fn pick_worker(&self) -> Option<usize> {
        let loads: Vec<usize> = self.shared.worker_load.iter().map(|l| l.load(Ordering::Relaxed)).collect();
        pick_worker(&loads, &self.worker_health())
    }

    /// Whether each worker currently takes new sessions.
    pub fn worker_health(&self) -> Vec<bool> {
        self.shared.worker_healthy.iter().map(|h| h.load(Ordering::Relaxed)).collect()
    }

    /// Most viewer sessions: the node's limit less the publishers' reserve.
    fn max_viewers(&self) -> usize {
        self.config.max_sessions.saturating_sub(self.config.publisher_reserve)
    }

    fn parse_offer(sdp: &str) -> Result<SdpOffer, SfuError> {
        if !sdp.trim_start().starts_with("v=") {
            return Err(SfuError::BadSdp("body is not an SDP offer (must start with v=)".into()));
        }
        SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))
    }

    fn admit(&self, stream: &str, role: Role) -> Result<(SessionId, crate::stream::SessionEntry, usize), SfuError> {
        let picked = self.pick_worker().ok_or(SfuError::Full)?;
        let (id, entry) = self
            .shared
            .registry
            .admit_limited(stream, role, picked, self.config.max_sessions, self.max_viewers())
            .map_err(|e| match e {
                AdmitError::NotFound => SfuError::StreamNotFound,
                AdmitError::Busy => SfuError::StreamBusy,
                AdmitError::Full => SfuError::Full,
            })?;
        // A publisher joins its stream's other source on that one's worker.
        let worker = entry.worker;
        Ok((id, entry, worker))
    }

    /// Sends a command to a worker's control queue and waits (bounded) for its reply.
    async fn ask<T>(&self, worker: usize, cmd: Command, rx: oneshot::Receiver<Result<T, SfuError>>) -> Result<T, SfuError> {
        let sent = tokio::time::timeout(Duration::from_secs(5), self.shared.control[worker].send(cmd)).await;
        if !matches!(sent, Ok(Ok(()))) {
            return Err(SfuError::Internal("worker is gone".into()));
        }
        match tokio::time::timeout(Duration::from_secs(5), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SfuError::Internal("worker dropped the request".into())),
            Err(_) => Err(SfuError::Internal("worker did not answer in time".into())),
        }
    }

    async fn start_session(
        &self,
        stream: &str,
        role: Role,
        offer_sdp: &str,
        pref: LayerPreference,
    ) -> Result<(SessionId, String), SfuError> {
        self.start_session_as(stream, role, offer_sdp, pref, false).await
    }

    /// [`Self::start_session`]; with `standby`, a relay-out session starts paused (see
    /// [`Self::relay_serve`]).
    async fn start_session_as(
        &self,
        stream: &str,
        role: Role,
        offer_sdp: &str,
        pref: LayerPreference,
        standby: bool,
    ) -> Result<(SessionId, String), SfuError> {
        // A full node says so before looking at the offer: the caller may send it elsewhere.
        if self.shared.registry.session_count() >= self.config.max_sessions
            || (role == Role::Viewer && self.shared.registry.viewer_count() >= self.max_viewers())
        {
            return Err(SfuError::Full);
        }
        let offer = Self::parse_offer(offer_sdp)?;
        let video_mids = crate::relay::video_mids_in_order(offer_sdp);
        let published = match role {
            Role::Publisher | Role::Backup => {
                crate::negotiate::choose_for_publisher(offer_sdp).map_err(|e| self.codec_refused(e))?
            }
            _ => None,
        };
        let (id, entry, worker) = self.admit(stream, role)?;
        // Viewers of the stream were answered in its codec: a second source must send that too.
        if matches!(role, Role::Publisher | Role::Backup)
            && entry.stream.is_live()
            && let (Some(stream_codec), Some(offered)) = (entry.stream.codec(), published.map(|f| f.codec))
            && stream_codec != offered
        {
            self.shared.registry.remove(id);
            return Err(self.codec_refused(crate::negotiate::CodecError::SourceCodec {
                stream: stream_codec.name(),
                offered: offered.name(),
            }));
        }
        let video = match (role, entry.stream.video_format()) {
            (Role::Viewer, Some(sent)) => match crate::negotiate::choose_for_viewer(offer_sdp, &sent) {
                Ok(v) => v,
                Err(e) => {
                    self.shared.registry.remove(id);
                    return Err(self.codec_refused(e));
                }
            },
            _ => published,
        };
        let (reply, rx) = oneshot::channel();
        let cmd = match role {
            Role::Publisher => Command::Publish { id, entry, offer, video, backup: false, reply },
            Role::Backup => Command::Publish { id, entry, offer, video, backup: true, reply },
            Role::Viewer => Command::Subscribe { id, entry, offer, pref, video, reply },
            Role::RelayOut => Command::RelayServe { id, entry, offer, video_mids, standby, reply },
            Role::RelayIn => {
                self.shared.registry.remove(id);
                return Err(SfuError::Internal("relay-in sessions start with relay_offer".into()));
            }
        };
        let result = self.ask(worker, cmd, rx).await;
        match result {
            Ok(answer) => Ok((id, answer)),
            Err(e) => {
                self.shared.registry.remove(id);
                Err(e)
            }
        }
    }

    /// Counts an offer refused for its codecs.
    fn codec_refused(&self, e: crate::negotiate::CodecError) -> SfuError {
        self.shared.metrics.codec_refusals.fetch_add(1, Ordering::Relaxed);
        SfuError::Codec(e)
    }

    /// Starts a publisher session (WHIP) and returns its id and SDP answer.
    pub async fn publish(&self, stream: &str, offer_sdp: &str) -> Result<(SessionId, String), SfuError> {
        self.start_session(stream, Role::Publisher, offer_sdp, LayerPreference::Auto).await
    }

    /// Starts a publisher session that takes over the stream: a WHIP publisher already on it is
    /// closed first (its viewers stay and resume with the new publisher). A stream fed by a relay
    /// from another node is not taken over ([`SfuError::StreamBusy`]).
    pub async fn publish_takeover(&self, stream: &str, offer_sdp: &str) -> Result<(SessionId, String), SfuError> {
        // The offer is checked before anyone is kicked.
        Self::parse_offer(offer_sdp)?;
        match self.publish(stream, offer_sdp).await {
            Err(SfuError::StreamBusy) => {}
            other => return other,
        }
        if let Some((old, Role::Publisher)) = self.shared.registry.publisher(stream) {
            info!(stream, session = old, "publisher taken over by a new publish");
            self.end_session(old, "another publisher took over the stream").await?;
        }
        self.publish(stream, offer_sdp).await
    }

    /// Starts a backup publisher session (WHIP with `?backup=1`): it stands by, connected, while
    /// the stream's primary publisher feeds the stream, and feeds it while the primary is gone or
    /// stalled (see [`crate::failover`]). A backup already on the stream is closed first. A
    /// stream fed by a relay from another node takes no backup ([`SfuError::StreamBusy`]).
    pub async fn publish_backup(&self, stream: &str, offer_sdp: &str) -> Result<(SessionId, String), SfuError> {
        Self::parse_offer(offer_sdp)?;
        match self.start_session(stream, Role::Backup, offer_sdp, LayerPreference::Auto).await {
            Err(SfuError::StreamBusy) => {}
            other => return other,
        }
        if let Some(old) = self.shared.registry.backup(stream) {
            info!(stream, session = old, "backup publisher taken over by a new backup publish");
            self.end_session(old, "another backup publisher took over").await?;
        }
        self.start_session(stream, Role::Backup, offer_sdp, LayerPreference::Auto).await
    }

    /// The session publishing `stream` from a WHIP client on this node, if any.
    pub fn publisher_session(&self, stream: &str) -> Option<SessionId> {
        match self.shared.registry.publisher(stream) {
            Some((id, Role::Publisher)) => Some(id),
            _ => None,
        }
    }

    /// Publisher and viewer sessions on the node (relays between nodes are left out).
    pub fn sessions(&self) -> Vec<SessionSummary> {
        self.shared
            .registry
            .sessions()
            .into_iter()
            .filter_map(|(id, e)| {
                let s = &e.stream;
                let audio = s.audio.bitrate_bps.load(Ordering::Relaxed);
                let (role, bitrate_bps) = match e.role {
                    Role::Publisher | Role::Backup => {
                        let video: u64 = s.layers.iter().map(|l| l.bitrate_bps.load(Ordering::Relaxed)).sum();
                        let role = if e.role == Role::Backup { "backup" } else { "publisher" };
                        (role, video.saturating_add(audio))
                    }
                    Role::Viewer => {
                        let layer = match &*e.layer.lock().unwrap_or_else(|e| e.into_inner()) {
                            Some(SessionEvent::Layer { rid: Some(rid), .. }) => Some(crate::stream::layer_of_rid(rid).unwrap_or(0)),
                            _ => None,
                        };
                        let video = layer
                            .and_then(|l| s.layers.get(usize::from(l)))
                            .map_or(0, |l| l.bitrate_bps.load(Ordering::Relaxed));
                        ("viewer", if s.is_live() { video.saturating_add(audio) } else { 0 })
                    }
                    Role::RelayIn | Role::RelayOut => return None,
                };
                let since_unix_ms = e
                    .since
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                let remote_addr = *e.remote.lock().unwrap_or_else(|e| e.into_inner());
                Some(SessionSummary { id, stream: s.name.clone(), role, remote_addr, since_unix_ms, bitrate_bps })
            })
            .collect()
    }

    /// Starts a viewer session (WHEP) and returns its id and SDP answer.
    pub async fn subscribe(
        &self,
        stream: &str,
        offer_sdp: &str,
        pref: LayerPreference,
    ) -> Result<(SessionId, String), SfuError> {
        self.start_session(stream, Role::Viewer, offer_sdp, pref).await
    }

    /// Starts a relay-in session for `stream`: returns its id and the SDP offer to send to the
    /// upstream node (one video m-line per layer, then audio). `simulcast` tells whether the
    /// stream has several layers. With `standby`, the session is a second upstream for a stream
    /// a relay in already feeds: once answered it stands by, receiving, and feeds the stream as
    /// soon as that relay in is closed (or stalls). Finish with [`Sfu::relay_answer`].
    pub async fn relay_offer(&self, stream: &str, simulcast: bool, standby: bool) -> Result<(SessionId, String), SfuError> {
        let (id, entry, worker) = if standby {
            let (id, entry) = self.shared.registry.admit_standby(stream, self.config.max_sessions).map_err(|e| match e {
                AdmitError::NotFound => SfuError::StreamNotFound,
                AdmitError::Busy => SfuError::StreamBusy,
                AdmitError::Full => SfuError::Full,
            })?;
            let worker = entry.worker;
            (id, entry, worker)
        } else {
            self.admit(stream, Role::RelayIn)?
        };
        let (reply, rx) = oneshot::channel();
        match self.ask(worker, Command::RelayOffer { id, entry, simulcast, reply }, rx).await {
            Ok(offer) => Ok((id, offer)),
            Err(e) => {
                self.shared.registry.remove(id);
                Err(e)
            }
        }
    }

    /// Applies the upstream node's SDP answer to a relay-in session.
    pub async fn relay_answer(&self, id: SessionId, answer_sdp: &str) -> Result<(), SfuError> {
        if !answer_sdp.trim_start().starts_with("v=") {
            return Err(SfuError::BadSdp("relay answer is not SDP".into()));
        }
        let answer = SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let entry = self.shared.registry.session(id).ok_or(SfuError::SessionNotFound)?;
        // Of the relay offers made for a stream, the first answered feeds it; a standby offer
        // stands by beside it.
        let claim = self.shared.registry.claim_feed(id).map_err(|e| match e {
            AdmitError::Busy => SfuError::StreamBusy,
            _ => SfuError::SessionNotFound,
        })?;
        let standby = claim == crate::stream::Claim::Standby;
        let (reply, rx) = oneshot::channel();
        self.ask(entry.worker, Command::RelayAnswer { id, answer, standby, reply }, rx).await
    }

    /// Serves a downstream node's relay offer for `stream`; returns the session id and answer.
    /// With `standby` the edge is a downstream node's standby upstream: it connects and stays
    /// paused (no media, so it costs no bandwidth) until the downstream node asks it for a
    /// keyframe, which it does when it switches to it; then every layer starts from the cached
    /// keyframe, as on a new edge.
    pub async fn relay_serve(&self, stream: &str, offer_sdp: &str, standby: bool) -> Result<(SessionId, String), SfuError> {
        self.start_session_as(stream, Role::RelayOut, offer_sdp, LayerPreference::Auto, standby).await
    }

    /// Moves a relayed stream to its standby relay in `id` while the relay in that feeds it still
    /// does (make-before-break): the standby's keyframe request resumes its paused edge upstream,
    /// and the standby takes the stream over at its first keyframe, so viewers see no gap. The
    /// old relay in keeps feeding until then; close it once [`StreamSummary::fed_by`] names `id`.
    pub fn relay_handover(&self, id: SessionId) -> Result<(), SfuError> {
        self.send(id, Command::Handover { id })
    }

    /// Ends a session and waits (bounded) until the media plane has dropped it.
    pub async fn close_and_wait(&self, id: SessionId) -> Result<(), SfuError> {
        let (done, rx) = oneshot::channel();
        let entry = self.shared.registry.session(id).ok_or(SfuError::SessionNotFound)?;
        // A close waits for room: it frees capacity and must not be refused.
        tokio::time::timeout(Duration::from_secs(2), self.shared.control[entry.worker].send(Command::Close { id, done: Some(done) }))
            .await
            .map_err(|_| SfuError::Overloaded)?
            .map_err(|_| SfuError::Internal("worker is gone".into()))?;
        tokio::time::timeout(Duration::from_secs(2), rx)
            .await
            .map_err(|_| SfuError::Internal("worker did not close the session in time".into()))?
            .map_err(|_| SfuError::Internal("worker dropped the close".into()))
    }

    /// Tells a session's event listeners why it ends (so clients do not reconnect), then ends it
    /// and waits (bounded) until the media plane has dropped it.
    pub async fn end_session(&self, id: SessionId, reason: &str) -> Result<(), SfuError> {
        let entry = self.shared.registry.session(id).ok_or(SfuError::SessionNotFound)?;
        let _ = entry.events.send(SessionEvent::Ended { reason: reason.to_owned() });
        self.close_and_wait(id).await
    }

    /// Asks the publisher of the stream with registry id `stream_id` for a keyframe of `layer`
    /// (throttled like viewers' requests).
    pub fn request_keyframe(&self, stream_id: u64, layer: u8) {
        let Some(stream) = self.shared.registry.streams().into_iter().find(|s| s.id == stream_id) else { return };
        let w = stream.publisher_worker.load(Ordering::Acquire);
        if let Some(tx) = self.shared.workers.get(w) {
            let _ = tx.try_send(Command::Keyframe { stream_id, layer, reason: crate::keyframe::KeyframeReason::Refresh });
        }
    }

    /// Sends an event to every session of a stream (e.g. a new archived segment).
    pub fn broadcast(&self, stream: &str, event: &SessionEvent) {
        self.shared.registry.broadcast(stream, event);
    }

    /// Downstream relay sessions on the node (its relay fan-out).
    pub fn relay_children(&self) -> usize {
        self.shared.registry.streams().iter().map(|s| s.relay_children.load(Ordering::Relaxed)).sum()
    }

    /// True when `stream` has a live source on this node (a publisher or a relay from upstream).
    pub fn has_source(&self, stream: &str) -> bool {
        self.shared.registry.streams().iter().any(|s| s.name == stream && s.publisher_worker.load(Ordering::Relaxed) != usize::MAX)
    }

    /// Queues a session command on its worker's control queue; a full queue refuses it.
    fn send(&self, id: SessionId, cmd: Command) -> Result<(), SfuError> {
        let entry = self.shared.registry.session(id).ok_or(SfuError::SessionNotFound)?;
        self.shared.control[entry.worker].try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                self.shared.metrics.dropped_control.fetch_add(1, Ordering::Relaxed);
                SfuError::Overloaded
            }
            mpsc::error::TrySendError::Closed(_) => SfuError::Internal("media worker is gone".into()),
        })
    }

    /// The stream name and role of a session, if it exists.
    pub fn session_info(&self, id: SessionId) -> Option<(String, bool)> {
        self.shared.registry.session(id).map(|e| (e.stream.name.clone(), e.role.feeds()))
    }

    /// Adds trickled ICE candidates (an `application/trickle-ice-sdpfrag` body).
    pub fn trickle(&self, id: SessionId, sdpfrag: &str) -> Result<(), SfuError> {
        let mut candidates = Vec::new();
        for line in sdpfrag.lines() {
            let line = line.trim();
            if let Some(c) = line.strip_prefix("a=candidate:").map(|r| format!("candidate:{r}")) {
                let cand = Candidate::from_sdp_string(&c).map_err(|e| SfuError::BadCandidate(e.to_string()))?;
                candidates.push(cand);
            }
        }
        self.send(id, Command::Trickle { id, candidates })
    }

    /// Changes a viewer's layer preference.
    pub fn set_layer(&self, id: SessionId, pref: LayerPreference) -> Result<(), SfuError> {
        self.send(id, Command::SetLayer { id, pref })
    }

    /// Ends a session.
    pub fn close(&self, id: SessionId) -> Result<(), SfuError> {
        self.send(id, Command::Close { id, done: None })
    }

    /// Subscribes to a session's events.
    pub fn events(&self, id: SessionId) -> Result<broadcast::Receiver<SessionEvent>, SfuError> {
        let e = self.shared.registry.session(id).ok_or(SfuError::SessionNotFound)?;
        Ok(e.events.subscribe())
    }

    /// Current state of a session's stream, to greet a new event listener.
    pub fn session_snapshot(&self, id: SessionId) -> Option<Vec<SessionEvent>> {
        let e = self.shared.registry.session(id)?;
        let mut v = vec![
            SessionEvent::Publisher { live: e.stream.is_live() },
            SessionEvent::Viewers { count: e.stream.viewers.load(Ordering::Relaxed) },
        ];
        v.extend(e.layer.lock().unwrap_or_else(|e| e.into_inner()).clone());
        Some(v)
    }

    /// Number of sessions on the node.
    pub fn session_count(&self) -> usize {
        self.shared.registry.session_count()
    }

    /// All streams with their counters.
    pub fn streams(&self) -> Vec<StreamSummary> {
        self.shared
            .registry
            .streams()
            .iter()
            .map(|s| {
                let simulcast = s.simulcast.load(Ordering::Relaxed);
                let layers = (0..MAX_LAYERS)
                    .filter_map(|i| {
                        let l = &s.layers[i];
                        let packets = l.packets.load(Ordering::Relaxed);
                        (packets > 0).then(|| LayerSummary {
                            rid: if simulcast { RIDS[i].to_string() } else { String::new() },
                            bitrate: l.bitrate_bps.load(Ordering::Relaxed),
                            width: l.width.load(Ordering::Relaxed),
                            height: l.height.load(Ordering::Relaxed),
                            packets,
                        })
                    })
                    .collect();
                StreamSummary {
                    name: s.name.clone(),
                    codec: s.codec().map(|c| c.name()),
                    live: s.is_live(),
                    viewers: s.viewers.load(Ordering::Relaxed),
                    relay_children: s.relay_children.load(Ordering::Relaxed),
                    standby_children: s.standby_children.load(Ordering::Relaxed),
                    layers,
                    audio: AudioSummary {
                        bitrate: s.audio.bitrate_bps.load(Ordering::Relaxed),
                        packets: s.audio.packets.load(Ordering::Relaxed),
                    },
                    source: s.backup_state().map(|backup| if backup { "backup" } else { "primary" }),
                    fed_by: self.shared.registry.publisher(&s.name).map(|(id, _)| id),
                    paused_relays: s.paused_relays.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                }
            })
            .collect()
    }

    /// Ends every session and stops the workers.
    pub fn shutdown(&self) {
        for tx in &self.shared.control {
            let _ = tx.try_send(Command::Shutdown);
        }
        for tx in &self.shared.workers {
            let _ = tx.try_send(Command::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        info!("media plane stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::pick_worker;

    #[test]
    fn sessions_go_to_healthy_workers() {
        assert_eq!(pick_worker(&[3, 1, 2], &[true, true, true]), Some(1));
        assert_eq!(pick_worker(&[3, 1, 2], &[true, false, true]), Some(2), "a paused worker is skipped");
        assert_eq!(pick_worker(&[3, 1, 2], &[true, false, false]), Some(0));
        assert_eq!(pick_worker(&[3, 1, 2], &[false, false, false]), Some(1), "all paused: least loaded");
        assert_eq!(pick_worker(&[], &[]), None);
    }
}
