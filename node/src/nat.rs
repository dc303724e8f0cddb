//! The node behind a NAT: at start it learns its public address (STUN `--stun`, the UPnP
//! router's external address) when `--public-ip` is not given, and maps its ports on a UPnP-IGD
//! router (`--upnp`).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use relaycast_nat::upnp::{Mapper, Mapping, Protocol, Router};
use relaycast_nat::{Discovery, NatReport, Source};
use tracing::{info, warn};

use crate::config::Args;

/// Longest SSDP search for a UPnP router.
const UPNP_SEARCH: Duration = Duration::from_secs(2);
/// Longest STUN query (with retransmissions at 0, 0.5 and 1.5 s).
const STUN_QUERY: Duration = Duration::from_secs(3);
/// Lease of the router's port mappings; renewed at half of it.
const UPNP_LEASE: Duration = Duration::from_secs(3600);

/// Learns the public address when `--public-ip` is not given and HTTP is not loopback-only
/// (`local_ip`: the address the node would announce otherwise; `bind_ip`: the media bind
/// address, where STUN requests are sent from); returns the report and the UPnP router found.
pub async fn discover(
    args: &Args,
    http_ip: IpAddr,
    local_ip: IpAddr,
    bind_ip: IpAddr,
) -> anyhow::Result<(NatReport, Option<Router>)> {
    if let Some(ip) = args.public_ip {
        let report = NatReport {
            public_ip: Some(ip),
            source: Some(Source::Flag),
            ..Default::default()
        };
        return Ok((report, None));
    }
    if http_ip.is_loopback() {
        return Ok((NatReport::default(), None));
    }
    let stun = args
        .stun
        .as_deref()
        .map(relaycast_nat::stun::StunServer::parse)
        .transpose()
        .context("--stun")?;
    let d = Discovery {
        local_ip,
        bind_ip,
        stun,
        upnp: args.upnp,
        upnp_timeout: UPNP_SEARCH,
        stun_timeout: STUN_QUERY,
    };
    let (report, gateway) = relaycast_nat::discover(&d).await;
    log_report(&report);
    Ok((report, gateway))
}

/// One log line per finding, and the warning when peers can reach the node through TURN only.
fn log_report(r: &NatReport) {
    let local = r.local_ip.map(|ip| ip.to_string()).unwrap_or_default();
    if let Some(s) = &r.stun {
        match (&s.mapped, &s.error) {
            (Some(m), _) => info!(server = %s.server, mapped = %m, %local, "STUN: the server sees this node at {m}"),
            (None, Some(e)) => warn!(server = %s.server, error = %e, "STUN: no public address learned"),
            _ => {}
        }
    }
    if r.upnp.enabled {
        match (&r.upnp.gateway, &r.upnp.external_ip, &r.upnp.error) {
            (Some(gw), Some(ip), _) => {
                info!(gateway = %gw, via = r.upnp.protocol.unwrap_or_default(), external_ip = %ip, %local, "UPnP: router found")
            }
            (Some(gw), None, Some(e)) => {
                warn!(gateway = %gw, error = %e, "UPnP: router found but it gave no external address")
            }
            (_, _, Some(e)) => {
                info!(reason = %e, "UPnP: no router to map ports on (neither UPnP-IGD nor NAT-PMP answered)")
            }
            _ => {}
        }
    }
    if let (Some(s), Some(u)) = (r.stun.as_ref().and_then(|s| s.mapped), r.upnp.external_ip)
        && s.ip() != u
    {
        warn!(stun = %s.ip(), upnp = %u, "the UPnP router's external address is not the one STUN sees: another NAT in front of the router (double NAT); mapped ports may not be reachable from the internet");
    }
    match (r.public_ip, r.source) {
        (Some(ip), Some(source)) => {
            let from = match source {
                Source::Stun => "STUN",
                Source::Upnp => "the UPnP router",
                Source::Interface => "this host's interface (public, no NAT)",
                Source::Flag => "--public-ip",
            };
            info!(public_ip = %ip, source = ?source, "public address learned from {from}: announced in ICE candidates and to the mesh");
        }
        _ if r.turn_only => warn!(
            %local,
            "no public address learned (no UPnP router, no --stun answer) and this node's address is private: peers outside its network reach it through TURN only; give --stun URL or --public-ip, or forward its ports"
        ),
        _ => {}
    }
}

/// Maps `wanted` on the router (logging each refusal) and keeps the mappings renewed.
pub async fn map_ports(gateway: Router, wanted: Vec<Mapping>) -> Mapper {
    Mapper::start(gateway, wanted, UPNP_LEASE).await
}

/// A mapping of `port` for `what`.
pub fn mapping(protocol: Protocol, port: u16, what: &str) -> Mapping {
    Mapping {
        protocol,
        port,
        what: what.to_owned(),
    }
}

/// The TCP and UDP (QUIC) ports of the mesh's listen addresses.
pub fn p2p_mappings(addrs: &[relaycast_mesh::Multiaddr]) -> Vec<Mapping> {
    use relaycast_mesh::multiaddr_protocol as P;
    let mut out: Vec<Mapping> = Vec::new();
    for a in addrs {
        let mut ip_ok = false;
        for p in a.iter() {
            match p {
                P::Ip4(ip) => ip_ok = !ip.is_loopback(),
                P::Ip6(_) => ip_ok = false,
                P::Tcp(port) if ip_ok => out.push(mapping(Protocol::Tcp, port, "p2p")),
                P::Udp(port) if ip_ok => out.push(mapping(Protocol::Udp, port, "p2p")),
                _ => {}
            }
        }
    }
    out.dedup();
    out
}
