//! The TURN server: UDP and TCP (optionally TLS) listeners on one address, driven by the `turn`
//! crate, with the policy wrappers of [`crate::guard`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use turn::server::Server;
use turn::server::config::{ConnConfig, ServerConfig};

use crate::creds::{Credentials, RestAuthHandler, mint};
use crate::filter::PeerPolicy;
use crate::guard::{GuardedConn, RelayGen, Shared, Stats, StreamClosers, stream_closed};
use crate::quota::{Limits, QuotaTracker};
use crate::stream::{OnClose, StreamConn, StreamLimits};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// A listener could not be bound.
    #[error("binding TURN {proto} on {addr}: {source}")]
    Bind {
        /// `UDP` or `TCP`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("TURN TLS: {0}")]
    Tls(String),
    /// The `turn` crate refused the configuration.
    #[error("TURN server: {0}")]
    Server(#[from] turn::Error),
}

/// Certificate chain and private key files (PEM) for TLS on the TCP listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM.
    pub key: PathBuf,
}

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Listen address for UDP and TCP (port 0: any port free on both).
    pub listen: SocketAddr,
    /// Address put in relayed-address attributes (default: the listen IP, or the first
    /// non-unspecified own address).
    pub relay_ip: Option<IpAddr>,
    /// Realm.
    pub realm: String,
    /// Shared secret of the REST credential scheme.
    pub secret: String,
    /// Which peers may be relayed to.
    pub policy: PeerPolicy,
    /// Quotas.
    pub limits: Limits,
    /// Stream limits for the TCP listener.
    pub stream_limits: StreamLimits,
    /// TLS on the TCP listener.
    pub tls: Option<TlsFiles>,
    /// Whether to run the TCP listener at all.
    pub tcp: bool,
}

impl TurnConfig {
    /// A configuration with defaults for everything but the address and secret.
    pub fn new(listen: SocketAddr, secret: String) -> Self {
        TurnConfig {
            listen,
            relay_ip: None,
            realm: "relaycast".into(),
            secret,
            policy: PeerPolicy::default(),
            limits: Limits::default(),
            stream_limits: StreamLimits::default(),
            tls: None,
            tcp: true,
        }
    }
}

/// A running TURN server.
pub struct TurnServer {
    server: Server,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    tls: bool,
    secret: String,
    stats: Arc<Stats>,
    quotas: Arc<QuotaTracker>,
    mesh_peers: crate::filter::MeshPeers,
}

fn load_tls(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TurnError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TurnError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(TurnError::Tls(format!("{}: no certificate", files.cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TurnError::Tls(format!("{}: {e}", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| TurnError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn bind_pair(listen: SocketAddr, tcp: bool) -> Result<(tokio::net::UdpSocket, Option<tokio::net::TcpListener>), TurnError> {
    let mut last = None;
    for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
        let udp = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|source| TurnError::Bind { proto: "UDP", addr: listen, source })?;
        let at = udp.local_addr().map_err(|source| TurnError::Bind { proto: "UDP", addr: listen, source })?;
        if !tcp {
            return Ok((udp, None));
        }
        match tokio::net::TcpListener::bind(at).await {
            Ok(t) => return Ok((udp, Some(t))),
            Err(source) => last = Some(TurnError::Bind { proto: "TCP", addr: at, source }),
        }
    }
    Err(last.unwrap_or_else(|| TurnError::Bind {
        proto: "TCP",
        addr: listen,
        source: std::io::Error::other("no port free for both UDP and TCP"),
    }))
}

impl TurnServer {
    /// Binds the listeners and starts serving.
    pub async fn start(cfg: TurnConfig) -> Result<Self, TurnError> {
        let acceptor = cfg.tls.as_ref().map(load_tls).transpose()?;
        let (udp, tcp) = bind_pair(cfg.listen, cfg.tcp).await?;
        let udp_addr = udp.local_addr().map_err(|source| TurnError::Bind { proto: "UDP", addr: cfg.listen, source })?;
        let relay_ip = cfg.relay_ip.unwrap_or_else(|| {
            if !udp_addr.ip().is_unspecified() {
                udp_addr.ip()
            } else {
                cfg.policy
                    .own_addrs
                    .iter()
                    .map(|a| a.ip())
                    .find(|ip| !ip.is_unspecified())
                    .unwrap_or(IpAddr::from([127, 0, 0, 1]))
            }
        });
        let quotas = QuotaTracker::new(cfg.limits);
        let stats = Arc::new(Stats::default());
        // The TURN server's own addresses are never relay peers (other than the media ports).
        let mut own = vec![relay_ip];
        if !udp_addr.ip().is_unspecified() {
            own.push(udp_addr.ip());
        }
        let policy = cfg.policy.clone().with_own_ips(own);
        let shared = Arc::new(Shared::new(cfg.secret.clone(), cfg.realm.clone(), policy, quotas.clone(), stats.clone()));

        let mut listeners: Vec<(Arc<dyn webrtc_util::Conn + Send + Sync>, Option<StreamClosers>)> =
            vec![(Arc::new(udp), None)];
        let mut tcp_addr = None;
        if let Some(l) = tcp {
            tcp_addr = l.local_addr().ok();
            let closers: StreamClosers = Arc::default();
            let c2 = closers.clone();
            let on_close: OnClose = Arc::new(move |client| stream_closed(&c2, client));
            let sc = StreamConn::start(l, acceptor.clone(), cfg.stream_limits, Some(on_close))
                .map_err(|source| TurnError::Bind { proto: "TCP", addr: udp_addr, source })?;
            listeners.push((sc, Some(closers)));
        }
        let conn_configs = listeners
            .into_iter()
            .map(|(inner, closers)| {
                let ctx = Arc::new(Mutex::new(None));
                ConnConfig {
                    conn: Arc::new(GuardedConn { inner, shared: shared.clone(), ctx: ctx.clone() }),
                    relay_addr_generator: Box::new(RelayGen {
                        bind_ip: udp_addr.ip(),
                        relay_ip,
                        shared: shared.clone(),
                        ctx,
                        closers,
                    }),
                }
            })
            .collect();
        let server = Server::new(ServerConfig {
            conn_configs,
            realm: cfg.realm.clone(),
            auth_handler: Arc::new(RestAuthHandler::new(cfg.secret.clone())),
            channel_bind_timeout: Duration::from_secs(0),
            alloc_close_notify: None,
        })
        .await?;
        tracing::info!(udp = %udp_addr, tcp = ?tcp_addr, tls = acceptor.is_some(), relay_ip = %relay_ip, "TURN server started");
        let mesh_peers = cfg.policy.mesh.clone();
        Ok(TurnServer { server, udp_addr, tcp_addr, tls: acceptor.is_some(), secret: cfg.secret, stats, quotas, mesh_peers })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP address (same port as UDP), if TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Whether the TCP listener speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Fresh credentials for `label`, valid for `ttl`.
    pub fn credentials(&self, label: &str, ttl: Duration) -> Credentials {
        mint(&self.secret, label, ttl)
    }

    /// Counters of refused traffic.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The media addresses of signed mesh peers this server relays to (the node keeps it current).
    pub fn mesh_peers(&self) -> crate::filter::MeshPeers {
        self.mesh_peers.clone()
    }

    /// The counters, to read after the server is moved.
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Live allocations counted for `user` and for `ip`.
    pub fn usage(&self, user: &str, ip: IpAddr) -> (usize, usize) {
        self.quotas.usage(user, ip)
    }

    /// Stops the listeners and drops every allocation.
    pub async fn close(&self) -> Result<(), TurnError> {
        Ok(self.server.close().await?)
    }
}
