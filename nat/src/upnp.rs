//! Port mappings on the router: UPnP-IGD (igd-next) or NAT-PMP ([`crate::natpmp`]); find the
//! router, ask its external address, map ports with a lease, renew them before the lease ends,
//! remove them at shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use igd_next::PortMappingProtocol;
use igd_next::aio::tokio::Tokio;
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Description the mappings carry on the router.
pub const DESCRIPTION: &str = "relaycast";
/// Longest wait for one SOAP request to the router.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why UPnP gave no gateway, address or mapping.
#[derive(Debug, thiserror::Error)]
pub enum UpnpError {
    /// No Internet Gateway Device answered the SSDP search in time (or it answered badly).
    #[error("no UPnP-IGD gateway found: {0}")]
    NoGateway(String),
    /// The gateway did not answer a request in time.
    #[error("UPnP gateway did not answer {0} within {REQUEST_TIMEOUT:?}")]
    Timeout(&'static str),
    /// GetExternalIPAddress failed.
    #[error("UPnP GetExternalIPAddress: {0}")]
    ExternalIp(String),
    /// AddPortMapping failed.
    #[error("UPnP AddPortMapping {protocol} {port}: {reason}")]
    AddPort {
        /// UDP or TCP.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// The router's answer.
        reason: String,
    },
    /// The local address facing the gateway is unknown.
    #[error("local address towards the UPnP gateway: {0}")]
    LocalAddr(std::io::Error),
}

/// Transport of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
        })
    }
}

impl From<Protocol> for PortMappingProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Udp => PortMappingProtocol::UDP,
            Protocol::Tcp => PortMappingProtocol::TCP,
        }
    }
}

/// One port to map: the same external port as the local one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    /// UDP or TCP.
    pub protocol: Protocol,
    /// Local and external port.
    pub port: u16,
    /// What it serves (`media`, `turn`, `http`, `p2p`).
    pub what: String,
}

/// When to renew a lease: at half its length (at least 10 s before it ends, never sooner than
/// 5 s). A lease of zero (infinite) needs no renewal.
pub fn renew_after(lease: Duration) -> Option<Duration> {
    if lease.is_zero() {
        return None;
    }
    let half = lease / 2;
    let early = lease.saturating_sub(Duration::from_secs(10));
    Some(half.min(early).max(Duration::from_secs(5)))
}

/// A router found by the SSDP search.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: igd_next::aio::Gateway<Tokio>,
    local_ip: IpAddr,
}

/// Searches for an Internet Gateway Device for at most `timeout`.
pub async fn search(timeout: Duration) -> Result<Gateway, UpnpError> {
    let opts = igd_next::SearchOptions {
        timeout: Some(timeout),
        single_search_timeout: Some(timeout),
        ..Default::default()
    };
    let inner = tokio::time::timeout(
        timeout + Duration::from_secs(1),
        igd_next::aio::tokio::search_gateway(opts),
    )
    .await
    .map_err(|_| UpnpError::NoGateway("no answer".into()))?
    .map_err(|e| UpnpError::NoGateway(e.to_string()))?;
    let local_ip = local_ip_towards(inner.addr).await.map_err(UpnpError::LocalAddr)?;
    Ok(Gateway { inner, local_ip })
}

/// The local address the system routes to `peer` from.
async fn local_ip_towards(peer: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(std::io::Error::other)?;
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(peer).await?;
    Ok(sock.local_addr()?.ip())
}

impl Gateway {
    /// The gateway's control address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// This host's address on the gateway's network (where mappings point).
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// The router's external address.
    pub async fn external_ip(&self) -> Result<IpAddr, UpnpError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.inner.get_external_ip())
            .await
            .map_err(|_| UpnpError::Timeout("GetExternalIPAddress"))?
            .map_err(|e| UpnpError::ExternalIp(e.to_string()))
    }

    /// Maps external `m.port` to this host's `m.port` for `lease` (seconds; 0 = no end).
    pub async fn map(&self, m: &Mapping, lease: Duration) -> Result<(), UpnpError> {
        let local = SocketAddr::new(self.local_ip, m.port);
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.inner.add_port(m.protocol.into(), m.port, local, secs, DESCRIPTION),
        )
        .await
        .map_err(|_| UpnpError::Timeout("AddPortMapping"))?
        .map_err(|e| UpnpError::AddPort {
            protocol: m.protocol,
            port: m.port,
            reason: e.to_string(),
        })
    }

    /// Removes the mapping of external `m.port`.
    pub async fn unmap(&self, m: &Mapping) -> Result<(), String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.inner.remove_port(m.protocol.into(), m.port)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".into()),
        }
    }
}

/// Why a router (UPnP-IGD or NAT-PMP) refused a request.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// UPnP-IGD.
    #[error(transparent)]
    Upnp(#[from] UpnpError),
    /// NAT-PMP.
    #[error(transparent)]
    Pmp(#[from] crate::natpmp::PmpError),
}

/// A router that maps ports: UPnP-IGD, or NAT-PMP where there is no UPnP.
#[derive(Debug, Clone)]
pub enum Router {
    /// A UPnP Internet Gateway Device.
    Igd(Gateway),
    /// A NAT-PMP gateway.
    Pmp(crate::natpmp::Pmp),
}

impl Router {
    /// The router's control address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Router::Igd(g) => g.addr(),
            Router::Pmp(p) => p.addr(),
        }
    }

    /// This host's address on the router's network.
    pub fn local_ip(&self) -> IpAddr {
        match self {
            Router::Igd(g) => g.local_ip(),
            Router::Pmp(p) => p.local_ip(),
        }
    }

    /// `upnp-igd` or `nat-pmp`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Router::Igd(_) => "upnp-igd",
            Router::Pmp(_) => "nat-pmp",
        }
    }

    /// The router's external address.
    pub async fn external_ip(&self) -> Result<IpAddr, RouterError> {
        Ok(match self {
            Router::Igd(g) => g.external_ip().await?,
            Router::Pmp(p) => p.external_ip().await?,
        })
    }

    /// Maps external `m.port` to this host's `m.port` for `lease`.
    pub async fn map(&self, m: &Mapping, lease: Duration) -> Result<(), RouterError> {
        match self {
            Router::Igd(g) => g.map(m, lease).await?,
            Router::Pmp(p) => p.map(m.protocol, m.port, lease).await?,
        }
        Ok(())
    }

    /// Removes the mapping of `m.port`.
    pub async fn unmap(&self, m: &Mapping) -> Result<(), String> {
        match self {
            Router::Igd(g) => g.unmap(m).await,
            Router::Pmp(p) => p.unmap(m.protocol, m.port).await.map_err(|e| e.to_string()),
        }
    }
}

/// Mappings kept alive by a task: renewed before their lease ends, removed by [`Mapper::close`].
pub struct Mapper {
    gateway: Router,
    lease: Duration,
    mapped: Arc<Mutex<Vec<Mapping>>>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Mapper {
    /// Maps every port of `wanted` (logging each refusal) and starts the renewal task.
    pub async fn start(gateway: Router, wanted: Vec<Mapping>, lease: Duration) -> Mapper {
        let mapped = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(renew(gateway.clone(), mapped.clone(), lease, stop_rx));
        let mapper = Mapper {
            gateway,
            lease,
            mapped,
            stop: Some(stop_tx),
        };
        mapper.add(wanted).await;
        mapper
    }

    /// Maps more ports (e.g. ones known once a listener is up), logging each refusal.
    pub async fn add(&self, wanted: Vec<Mapping>) {
        for m in wanted {
            if self.mapped().contains(&m) {
                continue;
            }
            match self.gateway.map(&m, self.lease).await {
                Ok(()) => {
                    info!(protocol = %m.protocol, port = m.port, what = %m.what, router = %self.gateway.addr(), via = self.gateway.protocol(), lease_s = self.lease.as_secs(), "port mapped on the router");
                    self.mapped.lock().unwrap_or_else(|e| e.into_inner()).push(m);
                }
                Err(e) => warn!(error = %e, what = %m.what, "the router refused a port mapping"),
            }
        }
    }

    /// The ports mapped now.
    pub fn mapped(&self) -> Vec<Mapping> {
        self.mapped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops renewing and removes the mappings (bounded by the request timeout per mapping).
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(REQUEST_TIMEOUT * 4, done_rx).await;
            }
        }
    }
}

/// Renews the mappings until told to stop, then removes them.
async fn renew(
    gateway: Router,
    mapped: Arc<Mutex<Vec<Mapping>>>,
    lease: Duration,
    mut stop: oneshot::Receiver<oneshot::Sender<()>>,
) {
    let done = loop {
        let wait = renew_after(lease).unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            done = &mut stop => break done.ok(),
            _ = tokio::time::sleep(wait) => {}
        }
        if renew_after(lease).is_none() {
            continue;
        }
        let now: Vec<Mapping> = mapped.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for m in &now {
            if let Err(e) = gateway.map(m, lease).await {
                warn!(error = %e, what = %m.what, "renewing a port mapping on the router failed");
            }
        }
    };
    let now: Vec<Mapping> = std::mem::take(&mut *mapped.lock().unwrap_or_else(|e| e.into_inner()));
    for m in &now {
        match gateway.unmap(m).await {
            Ok(()) => info!(protocol = %m.protocol, port = m.port, "port mapping removed from the router"),
            Err(e) => {
                warn!(error = %e, protocol = %m.protocol, port = m.port, "removing a port mapping from the router failed")
            }
        }
    }
    if let Some(done) = done {
        let _ = done.send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_before_the_lease_ends() {
        assert_eq!(renew_after(Duration::ZERO), None);
        assert_eq!(renew_after(Duration::from_secs(3600)), Some(Duration::from_secs(1800)));
        assert_eq!(renew_after(Duration::from_secs(16)), Some(Duration::from_secs(6)));
        assert_eq!(renew_after(Duration::from_secs(4)), Some(Duration::from_secs(5)));
    }
}
