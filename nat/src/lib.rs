//! Relaycast behind a home NAT: learn the public address (STUN Binding, UPnP-IGD
//! GetExternalIPAddress, NAT-PMP) and map the node's ports on the router (UPnP-IGD
//! AddPortMapping, or NAT-PMP where no UPnP router answers).
//!
//! The wire formats and the choice of an address are plain functions ([`stun::binding_request`],
//! [`stun::parse_binding_response`], [`choose`], [`upnp::renew_after`]); the I/O around them is
//! bounded by timeouts.

pub mod natpmp;
pub mod stun;
pub mod upnp;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

/// Where the public address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Given with `--public-ip`.
    Flag,
    /// A STUN server's XOR-MAPPED-ADDRESS.
    Stun,
    /// The UPnP router's external address.
    Upnp,
    /// The host's own interface address, which is public.
    Interface,
}

impl Source {
    /// Its name as in `/api/node` (`flag`, `stun`, `upnp`, `interface`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Stun => "stun",
            Source::Upnp => "upnp",
            Source::Interface => "interface",
        }
    }
}

/// The STUN part of a [`NatReport`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct StunReport {
    /// The server asked (`stun:HOST:PORT`).
    pub server: String,
    /// The address the server saw.
    pub mapped: Option<SocketAddr>,
    /// Why there is no answer.
    pub error: Option<String>,
}

/// The UPnP part of a [`NatReport`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct UpnpReport {
    /// Whether the node looked for a UPnP-IGD (then NAT-PMP) router.
    pub enabled: bool,
    /// How the router was found and is asked: `upnp-igd` or `nat-pmp`.
    pub protocol: Option<&'static str>,
    /// The router's control address.
    pub gateway: Option<SocketAddr>,
    /// The router's external address.
    pub external_ip: Option<IpAddr>,
    /// Ports mapped on the router now.
    pub mappings: Vec<upnp::Mapping>,
    /// Why there is no router, address or mapping.
    pub error: Option<String>,
}

/// What the node learned about its public address, for logs and `/api/node`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NatReport {
    /// The address announced to peers (ICE candidates, mesh media addresses).
    pub public_ip: Option<IpAddr>,
    /// Where it came from.
    pub source: Option<Source>,
    /// The host's own address (the one on the router's network).
    pub local_ip: Option<IpAddr>,
    /// Whether the public address differs from the local one.
    pub behind_nat: Option<bool>,
    /// STUN, when `--stun` is given.
    pub stun: Option<StunReport>,
    /// UPnP.
    pub upnp: UpnpReport,
    /// No public address learned behind a private one: peers reach the node through TURN only.
    pub turn_only: bool,
}

/// Whether `ip` is not routable on the internet (private, shared CGNAT, loopback, link-local,
/// unique local).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback() || a.is_unspecified() || (s[0] & 0xFE00) == 0xFC00 || (s[0] & 0xFFC0) == 0xFE80
        }
    }
}

/// The public address from what STUN and UPnP said: STUN's first (it is what the far side sees,
/// past every NAT), else the router's external address, else the local address when it is
/// public. `None`: the node sits behind a NAT it knows nothing of.
pub fn choose(local: IpAddr, stun: Option<SocketAddr>, upnp: Option<IpAddr>) -> Option<(IpAddr, Source)> {
    if let Some(m) = stun {
        return Some((m.ip(), Source::Stun));
    }
    if let Some(ip) = upnp.filter(|ip| !ip.is_unspecified()) {
        return Some((ip, Source::Upnp));
    }
    (!local.is_unspecified() && !is_private(local)).then_some((local, Source::Interface))
}

/// What [`discover`] does.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The node's local address (its media bind address, or the interface it would announce).
    pub local_ip: IpAddr,
    /// The address STUN requests are sent from (the media bind address; may be unspecified).
    pub bind_ip: IpAddr,
    /// STUN server to ask.
    pub stun: Option<stun::StunServer>,
    /// Look for a UPnP-IGD router.
    pub upnp: bool,
    /// Longest SSDP search, and longest NAT-PMP request when no UPnP router answers.
    pub upnp_timeout: Duration,
    /// Longest STUN query.
    pub stun_timeout: Duration,
}

/// Asks STUN and the router (UPnP-IGD, else NAT-PMP) at once; returns the report and the router
/// (to map ports on).
pub async fn discover(d: &Discovery) -> (NatReport, Option<upnp::Router>) {
    let stun_task = async {
        let server = d.stun.as_ref()?;
        Some((
            server.to_string(),
            stun::mapped_address(server, d.bind_ip, d.stun_timeout).await,
        ))
    };
    let upnp_task = async {
        if !d.upnp {
            return None;
        }
        let gw = match upnp::search(d.upnp_timeout).await {
            Ok(gw) => upnp::Router::Igd(gw),
            Err(e) => {
                // No UPnP router: a NAT-PMP one answers at the default gateway, or nobody does.
                let Ok(pmp) = natpmp::Pmp::default_gateway(d.upnp_timeout).await else {
                    return Some(Err(e.to_string()));
                };
                match pmp.external_ip().await {
                    Ok(ip) => return Some(Ok((upnp::Router::Pmp(pmp), Ok(ip)))),
                    Err(pe) => return Some(Err(format!("{e}; NAT-PMP: {pe}"))),
                }
            }
        };
        let ip = gw.external_ip().await.map_err(|e| e.to_string());
        Some(Ok((gw, ip)))
    };
    let (stun_res, upnp_res) = tokio::join!(stun_task, upnp_task);
    let mut report = NatReport {
        local_ip: Some(d.local_ip),
        ..Default::default()
    };
    report.upnp.enabled = d.upnp;
    let mut mapped = None;
    if let Some((server, res)) = stun_res {
        let mut s = StunReport {
            server,
            ..Default::default()
        };
        match res {
            Ok(addr) => {
                mapped = Some(addr);
                s.mapped = Some(addr);
            }
            Err(e) => s.error = Some(e.to_string()),
        }
        report.stun = Some(s);
    }
    let mut gateway = None;
    let mut upnp_ip = None;
    match upnp_res {
        None => {}
        Some(Err(e)) => report.upnp.error = Some(e),
        Some(Ok((gw, ip))) => {
            report.upnp.gateway = Some(gw.addr());
            report.upnp.protocol = Some(gw.protocol());
            // The mappings point at the address facing the router.
            report.local_ip = Some(gw.local_ip());
            match ip {
                Ok(ip) => {
                    upnp_ip = Some(ip);
                    report.upnp.external_ip = Some(ip);
                }
                Err(e) => report.upnp.error = Some(e),
            }
            gateway = Some(gw);
        }
    }
    let local = report.local_ip.unwrap_or(d.local_ip);
    if let Some((ip, source)) = choose(local, mapped, upnp_ip) {
        report.public_ip = Some(ip);
        report.source = Some(source);
        report.behind_nat = Some(ip != local);
    } else {
        report.turn_only = is_private(local) || local.is_unspecified();
    }
    (report, gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn source_names_are_the_json_names() {
        for s in [Source::Flag, Source::Stun, Source::Upnp, Source::Interface] {
            assert_eq!(serde_json::to_value(s).expect("json"), serde_json::json!(s.as_str()));
        }
    }

    #[test]
    fn stun_wins_then_upnp_then_a_public_interface() {
        let local = ip("192.168.1.20");
        let m: SocketAddr = "203.0.113.9:4000".parse().expect("addr");
        assert_eq!(
            choose(local, Some(m), Some(ip("198.51.100.1"))),
            Some((m.ip(), Source::Stun))
        );
        assert_eq!(
            choose(local, None, Some(ip("198.51.100.1"))),
            Some((ip("198.51.100.1"), Source::Upnp))
        );
        assert_eq!(choose(local, None, Some(ip("0.0.0.0"))), None);
        assert_eq!(choose(local, None, None), None);
        assert_eq!(
            choose(ip("203.0.113.5"), None, None),
            Some((ip("203.0.113.5"), Source::Interface))
        );
    }

    #[test]
    fn private_ranges() {
        for p in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_private(ip(p)), "{p}");
        }
        for p in ["203.0.113.1", "100.128.0.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_private(ip(p)), "{p}");
        }
    }

    #[tokio::test]
    async fn nothing_learned_behind_a_private_address_means_turn_only() {
        let d = Discovery {
            local_ip: ip("127.0.0.1"),
            bind_ip: ip("127.0.0.1"),
            stun: None,
            upnp: false,
            upnp_timeout: Duration::from_millis(100),
            stun_timeout: Duration::from_millis(100),
        };
        let (report, gw) = discover(&d).await;
        assert!(gw.is_none());
        assert!(report.turn_only);
        assert_eq!(report.public_ip, None);
    }
}
