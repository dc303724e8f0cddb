//! The ingest servers' wiring (RTMP, RTMPS, SRT): their publishers offer to this node's own
//! WHIP handler in-process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, header};
use relaycast_ingest::args::{RtmpArgs, SrtArgs};
use relaycast_ingest::publisher::{Answer, BoxFuture, Refused, Signaling};
use relaycast_ingest::server::{RtmpServer, ServerConfig};
use relaycast_ingest::srt::{SrtConfig, SrtServer};
use relaycast_ingest::stats::IngestStats;
use relaycast_sfu::Sfu;
use tower::ServiceExt;
use tracing::{info, warn};

/// Default RTMP port when `--rtmp` is not given.
const DEFAULT_RTMP_PORT: u16 = 1935;
/// Largest WHIP answer read back.
const MAX_ANSWER: usize = 64 * 1024;

/// WHIP signaling through the node's router, without a socket: the same handler, token and
/// grant checks as an HTTP publisher, whatever the HTTP listener's address or TLS.
struct RouterSignaling(axum::Router);

impl RouterSignaling {
    async fn call(&self, req: Request<Body>) -> Result<(u16, Option<String>, String), Refused> {
        let resp = self.0.clone().oneshot(req).await.map_err(|e| Refused {
            status: 500,
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| Refused {
                status: 500,
                reason: e.to_string(),
            })?;
        Ok((
            status,
            location,
            String::from_utf8_lossy(&body).into_owned(),
        ))
    }
}

impl Signaling for RouterSignaling {
    fn offer<'a>(
        &'a self,
        stream: &'a str,
        token: Option<&'a str>,
        backup: bool,
        sdp: String,
    ) -> BoxFuture<'a, Result<Answer, Refused>> {
        Box::pin(async move {
            let query = if backup { "?backup=1" } else { "" };
            let mut req = Request::post(format!("/whip/{stream}{query}"))
                .header(header::CONTENT_TYPE, "application/sdp");
            if let Some(t) = token {
                req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let req = req.body(Body::from(sdp)).map_err(|e| Refused {
                status: 400,
                reason: format!("bad stream key: {e}"),
            })?;
            match self.call(req).await? {
                (201, Some(location), sdp) => Ok(Answer { sdp, location }),
                (status, _, reason) => Err(Refused { status, reason }),
            }
        })
    }

    fn delete<'a>(&'a self, location: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Ok(req) = Request::delete(location).body(Body::empty()) else {
                return;
            };
            if let Err(e) = self.call(req).await {
                warn!(%location, error = %e, "deleting an RTMP stream's WHIP session");
            }
        })
    }
}

/// The RTMP listeners started.
#[derive(Default)]
pub struct Listeners {
    /// Banner lines (`  rtmp: rtmp://HOST:PORT/live`, `  rtmps: ...`).
    pub banner: Vec<String>,
}

/// Default RTMPS port when `--rtmps` is not given.
const DEFAULT_RTMPS_PORT: u16 = 1936;

/// Binds at `addr`, or when none is given at `bind_ip:default_port` (a free port when taken).
async fn bind(
    explicit: Option<SocketAddr>,
    default: SocketAddr,
    cfg: &ServerConfig,
    signaling: &Arc<dyn Signaling>,
) -> anyhow::Result<RtmpServer> {
    match explicit {
        Some(addr) => RtmpServer::bind(addr, cfg.clone(), signaling.clone())
            .await
            .with_context(|| format!("binding RTMP on {addr}")),
        None => match RtmpServer::bind(default, cfg.clone(), signaling.clone()).await {
            Ok(s) => Ok(s),
            Err(e) => {
                warn!(error = %e, port = default.port(), "default RTMP port unavailable; using a free port");
                let any = SocketAddr::new(default.ip(), 0);
                RtmpServer::bind(any, cfg.clone(), signaling.clone())
                    .await
                    .context("binding RTMP")
            }
        },
    }
}

/// Starts the RTMP server: at `--rtmp ADDR`, or on the media address at port 1935 (a free port
/// when it is taken); with `--tls-cert/--tls-key` also RTMPS at `--rtmps ADDR` or port 1936;
/// `--no-rtmp` turns both off. Their counters join the node's `/metrics`.
pub async fn start(
    args: &RtmpArgs,
    tls: Option<relaycast_signaling::server::TlsFiles>,
    app: axum::Router,
    sfu: &Sfu,
    bind_ip: IpAddr,
    candidate_ip: IpAddr,
) -> anyhow::Result<Listeners> {
    if args.no_rtmp {
        return Ok(Listeners::default());
    }
    let media_ip = sfu
        .media_addrs()
        .first()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(candidate_ip);
    let cfg = ServerConfig {
        max_connections: args.rtmp_max_connections,
        handshake_timeout: args.handshake_timeout(),
        idle_timeout: args.idle_timeout(),
        media_ip,
    };
    let signaling: Arc<dyn Signaling> = Arc::new(RouterSignaling(app));
    let stats = Arc::new(IngestStats::default());
    let url = |scheme: &str, addr: SocketAddr| {
        let ip = if addr.ip().is_unspecified() {
            candidate_ip
        } else {
            addr.ip()
        };
        format!("{scheme}://{}/live", SocketAddr::new(ip, addr.port()))
    };
    let mut out = Listeners::default();
    let server = bind(
        args.rtmp,
        SocketAddr::new(bind_ip, DEFAULT_RTMP_PORT),
        &cfg,
        &signaling,
    )
    .await?
    .with_stats(stats.clone());
    let addr = server.local_addr()?;
    out.banner.push(format!("  rtmp: {}", url("rtmp", addr)));
    info!(%addr, max_connections = args.rtmp_max_connections, handshake_timeout_s = args.rtmp_handshake_timeout,
        idle_timeout_s = args.rtmp_idle_timeout, "RTMP ingest listening");
    tokio::spawn(server.run());
    if let Some(files) = tls {
        let cert = Arc::new(
            relaycast_signaling::server::tls::ReloadingCert::load(files)
                .context("loading the TLS certificate for RTMPS")?,
        );
        cert.watch(relaycast_signaling::server::CERT_CHECK_INTERVAL);
        let mut tls_cfg = cert.server_config().context("RTMPS TLS configuration")?;
        tls_cfg.alpn_protocols.clear();
        let server = bind(
            args.rtmps,
            SocketAddr::new(bind_ip, DEFAULT_RTMPS_PORT),
            &cfg,
            &signaling,
        )
        .await?
        .with_stats(stats.clone())
        .with_tls(tls_cfg);
        let addr = server.local_addr()?;
        out.banner.push(format!("  rtmps: {}", url("rtmps", addr)));
        info!(%addr, "RTMPS ingest listening");
        tokio::spawn(server.run());
    }
    add_counters(sfu, stats);
    Ok(out)
}

/// Default SRT port when `--srt` is not given.
const DEFAULT_SRT_PORT: u16 = 8890;

/// Starts the SRT server: at `--srt ADDR`, or on the media address at port 8890 (a free port when
/// it is taken); `--no-srt` turns it off. Returns its banner line; its counters join `/metrics`.
pub async fn start_srt(args: &SrtArgs, app: axum::Router, sfu: &Sfu, bind_ip: IpAddr, candidate_ip: IpAddr) -> anyhow::Result<Option<String>> {
    if args.no_srt {
        return Ok(None);
    }
    let media_ip = sfu.media_addrs().first().map(|a| a.ip()).filter(|ip| !ip.is_unspecified()).unwrap_or(candidate_ip);
    let cfg = SrtConfig {
        max_connections: args.srt_max_connections,
        idle_timeout: std::time::Duration::from_secs(args.srt_idle_timeout.max(1)),
        latency: std::time::Duration::from_millis(args.srt_latency_ms),
        media_ip,
    };
    let signaling: Arc<dyn Signaling> = Arc::new(RouterSignaling(app));
    let stats = Arc::new(IngestStats::default());
    let server = match args.srt {
        Some(addr) => SrtServer::bind(addr, cfg, signaling).await.with_context(|| format!("binding SRT on {addr}"))?,
        None => match SrtServer::bind(SocketAddr::new(bind_ip, DEFAULT_SRT_PORT), cfg.clone(), signaling.clone()).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, port = DEFAULT_SRT_PORT, "default SRT port unavailable; using a free port");
                SrtServer::bind(SocketAddr::new(bind_ip, 0), cfg, signaling).await.context("binding SRT")?
            }
        },
    }
    .with_stats(stats.clone());
    let addr = server.local_addr();
    let ip = if addr.ip().is_unspecified() { candidate_ip } else { addr.ip() };
    info!(%addr, max_connections = args.srt_max_connections, latency_ms = args.srt_latency_ms, "SRT ingest listening");
    tokio::spawn(server.run());
    let before = sfu.extra_counters();
    sfu.set_extra_counters(Arc::new(move || {
        use relaycast_sfu::metrics::ExtraCounter;
        let mut out = before.as_ref().map(|f| f()).unwrap_or_default();
        out.extend(stats.srt_counters().into_iter().map(|(name, help, value)| ExtraCounter { name, help, value }));
        out
    }));
    Ok(Some(format!("  srt: srt://{}?streamid=publish:STREAM:TOKEN", SocketAddr::new(ip, addr.port()))))
}

/// Adds the RTMP counters to the node's `/metrics`.
fn add_counters(sfu: &Sfu, stats: Arc<IngestStats>) {
    use relaycast_sfu::metrics::ExtraCounter;
    let before = sfu.extra_counters();
    sfu.set_extra_counters(Arc::new(move || {
        let mut out = before.as_ref().map(|f| f()).unwrap_or_default();
        out.extend(
            stats
                .counters()
                .into_iter()
                .map(|(name, help, value)| ExtraCounter { name, help, value }),
        );
        out
    }));
}
