//! The node's HTTP listener: plain HTTP or HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with a
//! certificate reloaded from disk, caps on connections in total and per client address,
//! header and idle timeouts, and the effective client ([`ClientInfo`]) of every request, which
//! honours `X-Forwarded-*` only from trusted proxies.

pub mod forwarded;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod tls;
pub mod watchdog;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::Service;
use tracing::{debug, info, warn};

pub use forwarded::{Cidr, ClientInfo, Scheme};
pub use metrics::HttpMetrics;
pub use tls::{TlsError, TlsFiles};

use io::{Activity, TrackedIo};
use limits::{LogThrottle, Refusal, SharedAdmission};
use metrics::OpenConnection;
use watchdog::{CloseReason, Timeouts};

/// Limits on what HTTP clients may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once (0 = no cap).
    pub max_connections: usize,
    /// Most connections from one client address (an IPv6 /64) at once; connections from
    /// trusted proxies count only in the total (0 = no cap).
    pub max_connections_per_ip: usize,
    /// Time from accept to a first complete request header (TLS handshake included).
    pub header_timeout: Duration,
    /// Time a connection may sit with no request and no bytes moving.
    pub idle_timeout: Duration,
    /// Most session event streams (SSE) open from one client address (0 = no cap).
    pub max_event_streams_per_ip: usize,
    /// Most WHEP sessions from one client address that have not connected yet (0 = no cap);
    /// connected viewers never count (a venue's audience shares one NAT address).
    pub max_pending_viewers_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 16384,
            max_connections_per_ip: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_event_streams_per_ip: 1024,
            max_pending_viewers_per_ip: 256,
        }
    }
}

/// What the listener and the handlers share: limits, counters and per-address counts.
#[derive(Debug)]
pub struct HttpContext {
    /// The limits.
    pub limits: HttpLimits,
    /// Counters shown in `/metrics`.
    pub metrics: Arc<HttpMetrics>,
    /// Open event streams per client address.
    pub event_streams: SharedAdmission,
    /// WHEP sessions per client address that have not connected yet.
    pub pending_viewers: SharedAdmission,
    refusal_log: Mutex<LogThrottle>,
}

impl HttpContext {
    /// A context with these limits.
    pub fn new(limits: HttpLimits) -> Self {
        HttpContext {
            event_streams: SharedAdmission::new(0, limits.max_event_streams_per_ip),
            pending_viewers: SharedAdmission::new(0, limits.max_pending_viewers_per_ip),
            limits,
            metrics: Arc::default(),
            refusal_log: Mutex::new(LogThrottle::new(Duration::from_secs(10))),
        }
    }

    /// Logs a refusal, at most one line every 10 s (with the count of those not logged).
    pub fn log_refusal(&self, what: &str, reason: &str, addr: IpAddr) {
        let allowed = self.refusal_log.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now());
        if let Some(suppressed) = allowed {
            warn!(%addr, reason, suppressed, "refused {what} (this line repeats at most every 10 s)");
        }
    }
}

impl Default for HttpContext {
    fn default() -> Self {
        Self::new(HttpLimits::default())
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The certificate or key could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listening socket failed.
    #[error("HTTP listener: {0}")]
    Io(#[from] std::io::Error),
}

/// How the listener serves.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Certificate and key: serve HTTPS when set.
    pub tls: Option<TlsFiles>,
    /// Proxies whose `X-Forwarded-For/-Proto/-Host` are believed.
    pub trusted_proxies: Vec<Cidr>,
}

/// How often the certificate files are checked for changes.
pub const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long shutdown waits for open requests to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A bound listener, ready to serve a router.
pub struct HttpServer {
    listener: TcpListener,
    cert: Option<Arc<tls::ReloadingCert>>,
    acceptor: Option<TlsAcceptor>,
    trusted: Arc<[Cidr]>,
    ctx: Arc<HttpContext>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("listener", &self.listener).field("tls", &self.cert.is_some()).finish()
    }
}

struct ConnShared {
    builder: auto::Builder<TokioExecutor>,
    acceptor: Option<TlsAcceptor>,
    trusted: Arc<[Cidr]>,
    ctx: Arc<HttpContext>,
    app: Router,
}

fn canonical(peer: SocketAddr) -> SocketAddr {
    match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), peer.port()),
            None => peer,
        },
        _ => peer,
    }
}

impl HttpServer {
    /// Prepares to serve on `listener`; loads the certificate when TLS is configured.
    pub fn new(listener: TcpListener, cfg: ServerConfig, ctx: Arc<HttpContext>) -> Result<Self, ServerError> {
        let (cert, acceptor) = match cfg.tls {
            Some(files) => {
                let cert = Arc::new(tls::ReloadingCert::load(files)?);
                let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()?));
                (Some(cert), Some(acceptor))
            }
            None => (None, None),
        };
        Ok(HttpServer { listener, cert, acceptor, trusted: cfg.trusted_proxies.into(), ctx })
    }

    /// `https` with a certificate, else `http`.
    pub fn scheme(&self) -> Scheme {
        if self.acceptor.is_some() { Scheme::Https } else { Scheme::Http }
    }

    /// The address listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `app` until `shutdown` resolves, then lets open requests finish for a moment.
    pub async fn serve(self, app: Router, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let limits = self.ctx.limits.clone();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(128)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let shared = Arc::new(ConnShared {
            builder,
            acceptor: self.acceptor.clone(),
            trusted: self.trusted.clone(),
            ctx: self.ctx.clone(),
            app,
        });
        let admission = SharedAdmission::new(limits.max_connections, limits.max_connections_per_ip);
        let watcher = self.cert.as_ref().map(|c| c.watch(CERT_CHECK_INTERVAL));
        let (stop_tx, stop_rx) = watch::channel(false);
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        let mut accept_log = LogThrottle::new(Duration::from_secs(10));
        let metrics = self.ctx.metrics.clone();
        let ordering = std::sync::atomic::Ordering::Relaxed;
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        metrics.accept_errors.fetch_add(1, ordering);
                        if let Some(suppressed) = accept_log.allow(Instant::now()) {
                            warn!(error = %e, suppressed, "accepting an HTTP connection failed");
                        }
                        // Out of descriptors, typically: give closing connections a moment.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let peer = canonical(peer);
            let proxied = self.trusted.iter().any(|c| c.contains(peer.ip()));
            let guard = match admission.admit(peer.ip(), proxied) {
                Ok(g) => g,
                Err(r) => {
                    let counter = match r {
                        Refusal::Total => &metrics.refused_total,
                        Refusal::PerAddress => &metrics.refused_per_address,
                    };
                    counter.fetch_add(1, ordering);
                    self.ctx.log_refusal("an HTTP connection", r.as_str(), peer.ip());
                    drop(stream);
                    continue;
                }
            };
            metrics.accepted.fetch_add(1, ordering);
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity::new());
            let io = TrackedIo::new(stream, activity.clone(), guard, OpenConnection::new(metrics.clone()));
            tokio::spawn(connection(io, peer, activity, shared.clone(), stop_rx.clone(), alive_tx.clone()));
        }
        drop(self.listener);
        let _ = stop_tx.send(true);
        drop(alive_tx);
        if tokio::time::timeout(SHUTDOWN_GRACE, alive_rx.recv()).await.is_err() {
            info!("HTTP connections still open at shutdown (event streams end with their sessions)");
        }
        if let Some(w) = watcher {
            w.abort();
        }
        Ok(())
    }
}

async fn connection(
    io: TrackedIo<TcpStream>,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: Arc<ConnShared>,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let Some(acceptor) = shared.acceptor.clone() else {
        return serve_http(io, false, peer, activity, &shared, stop).await;
    };
    match tokio::time::timeout(shared.ctx.limits.header_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => serve_http(tls, true, peer, activity, &shared, stop).await,
        Ok(Err(e)) => {
            shared.ctx.metrics.tls_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            shared.ctx.metrics.tls_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            debug!(%peer, "TLS handshake timed out");
        }
    }
}

async fn serve_http<I>(
    io: I,
    tls: bool,
    peer: SocketAddr,
    activity: Arc<Activity>,
    shared: &ConnShared,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let trusted = shared.trusted.clone();
    let app = shared.app.clone();
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let authority = req.uri().authority().map(|a| a.as_str().to_owned()).or_else(|| {
            req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned)
        });
        let info = forwarded::resolve(peer, tls, authority.as_deref(), req.headers(), &trusted);
        req.extensions_mut().insert(info);
        let in_flight = act.request();
        let mut router = app.clone();
        async move {
            let resp = router.call(req).await;
            drop(in_flight);
            resp
        }
    });
    let timeouts = Timeouts { header: shared.ctx.limits.header_timeout, idle: shared.ctx.limits.idle_timeout };
    let conn = shared.builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let wait = watchdog::next_check(activity.snapshot(Instant::now()), timeouts);
        tokio::select! {
            r = conn.as_mut() => {
                activity.ended_by_hyper();
                if let Err(e) = r {
                    // hyper's own header timeout (HTTP/1.1 requests after the first) counts too.
                    if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout) {
                        shared.ctx.metrics.header_timeouts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep(wait) => {
                if let Some(reason) = watchdog::verdict(activity.snapshot(Instant::now()), timeouts) {
                    let m = &shared.ctx.metrics;
                    let counter = match reason {
                        CloseReason::HeaderTimeout => &m.header_timeouts,
                        CloseReason::Idle => &m.idle_timeouts,
                    };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    debug!(%peer, reason = reason.as_str(), "closing HTTP connection");
                    return;
                }
            }
            r = stop.changed(), if !draining => {
                let _ = r;
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
