//! Which peers an allocation may relay to: the node's own media addresses, CIDRs allowed
//! explicitly and, with `--turn-open-relay`, any public address. Everything internal (including
//! IPv6 forms that embed an internal IPv4 address, and the node's own addresses on ports other
//! than its media ports) is refused.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

/// Most mesh peer media addresses held (the rest of an update is ignored).
pub const MAX_MESH_ADDRS: usize = 4096;

/// The media addresses of the node's signed mesh peers (exact IP and port), replaced as the
/// mesh changes by the node and read by the guard only when a client creates a permission or
/// binds a channel, never per packet.
#[derive(Debug, Clone, Default)]
pub struct MeshPeers(Arc<RwLock<Arc<HashSet<SocketAddr>>>>);

impl MeshPeers {
    /// Replaces the set (at most [`MAX_MESH_ADDRS`] addresses); returns whether it changed.
    pub fn set(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> bool {
        let next: HashSet<SocketAddr> =
            addrs.into_iter().map(|a| SocketAddr::new(canonical(a.ip()), a.port())).take(MAX_MESH_ADDRS).collect();
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        if **g == next {
            return false;
        }
        *g = Arc::new(next);
        true
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<HashSet<SocketAddr>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The mesh peer media addresses a permission for `ip` (IP only, RFC 8656 §9) admits.
    pub fn addrs_of(&self, ip: IpAddr) -> Vec<SocketAddr> {
        let ip = canonical(ip);
        self.snapshot().iter().filter(|a| a.ip() == ip).copied().collect()
    }

    /// Whether exactly `addr` is a mesh peer's media address.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        self.snapshot().contains(&SocketAddr::new(canonical(addr.ip()), addr.port()))
    }
}

/// A CIDR block such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR that did not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CIDR {0:?}: expected ADDR/PREFIX, e.g. 10.0.0.0/8")]
pub struct CidrError(pub String);

impl Cidr {
    /// The block `addr/prefix` (prefix clamped to the address width).
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        Cidr { addr: canonical(addr), prefix: prefix.min(max) }
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?,
            None => max,
        };
        Ok(Cidr::new(addr, prefix))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) IPv6 addresses as IPv4,
/// everything else unchanged (`::` and `::1` stay IPv6).
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u128::from(v6);
            if bits >> 32 == 0 && bits > 1 {
                return IpAddr::V4(std::net::Ipv4Addr::from(bits as u32));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// The IPv4 address a translation prefix carries inside an IPv6 address: NAT64 well-known
/// prefix `64:ff9b::/96` (last 32 bits) and 6to4 `2002::/16` (bits 16..48).
fn embedded_v4(a: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let bits = u128::from(a);
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(std::net::Ipv4Addr::from(bits as u32));
    }
    if bits >> 112 == 0x2002 {
        return Some(std::net::Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

fn is_internal_v4(a: std::net::Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        // IETF protocol assignments (192.0.0.0/24) and benchmarking (198.18.0.0/15).
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
}

/// Whether `ip` is internal: loopback, private, link-local, CGNAT, multicast, unspecified,
/// broadcast, `0.0.0.0/8`, `192.0.0.0/24`, `198.18.0.0/15`, `240.0.0.0/4`, unique-local,
/// link-local or site-local IPv6, local-use NAT64 `64:ff9b:1::/48`, Teredo `2001::/32`, and
/// IPv4-mapped, IPv4-compatible, NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) addresses whose
/// embedded IPv4 address is internal.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => is_internal_v4(a),
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x2001 && s[1] == 0)
                || embedded_v4(a).is_some_and(is_internal_v4)
        }
    }
}

/// The relay policy: the node's own media addresses (exact IP and port) and the CIDRs in
/// `allow` are always relayable; other public addresses only when `open` (`--turn-open-relay`);
/// internal addresses and the node's own IPs (`own_ips` and those of `own_addrs`) on other ports
/// never, unless inside `allow`.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Extra CIDRs that may be relayed to (`--turn-allow-peer`).
    pub allow: Vec<Cidr>,
    /// The node's own media addresses (exact IP and port).
    pub own_addrs: Vec<SocketAddr>,
    /// Further addresses of the node itself (its public or relay IP): relayable only on the
    /// ports of `own_addrs`.
    pub own_ips: Vec<IpAddr>,
    /// Whether any public peer may be relayed to (`--turn-open-relay`).
    pub open: bool,
    /// Media addresses of the node's signed mesh peers: relayable (exact IP and port) for
    /// allocations that created a permission or channel for them.
    pub mesh: MeshPeers,
}

impl PeerPolicy {
    /// A closed policy with these allowed CIDRs and own addresses.
    pub fn new(allow: Vec<Cidr>, own_addrs: Vec<SocketAddr>) -> Self {
        PeerPolicy { allow, own_addrs, own_ips: vec![], open: false, mesh: MeshPeers::default() }
    }

    /// The same policy relaying to any public peer (`open`) or only to the node's own.
    pub fn with_open(mut self, open: bool) -> Self {
        self.open = open;
        self
    }

    /// The same policy with further own IPs of the node.
    pub fn with_own_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> Self {
        self.own_ips.extend(ips.into_iter().map(canonical));
        self
    }

    fn is_own_ip(&self, ip: IpAddr) -> bool {
        self.own_addrs.iter().any(|a| canonical(a.ip()) == ip) || self.own_ips.contains(&ip)
    }

    fn allowed_by_cidr(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    fn allowed_public(&self, ip: IpAddr) -> bool {
        self.open && !is_internal(ip) && !self.is_own_ip(ip)
    }

    /// Whether a permission (IP only, RFC 8656 §9) for `ip` may be installed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed_by_cidr(ip) || self.allowed_public(ip) || self.own_addrs.iter().any(|a| canonical(a.ip()) == ip)
    }

    /// Whether data may be relayed to or from exactly `addr`.
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.allowed_by_cidr(ip)
            || self.allowed_public(ip)
            || self.own_addrs.iter().any(|a| canonical(a.ip()) == ip && a.port() == addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_peer_set_is_replaced_and_bounded() {
        let m = MeshPeers::default();
        let a: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let b: SocketAddr = "[::ffff:198.51.100.8]:40001".parse().unwrap();
        assert!(m.set([a, b]));
        assert!(!m.set([b, a]), "same set: unchanged");
        assert!(m.contains(a) && m.contains("198.51.100.8:40001".parse().unwrap()), "mapped IPv6 canonical");
        assert!(!m.contains("198.51.100.7:40001".parse().unwrap()), "exact port");
        assert_eq!(m.addrs_of(ip("198.51.100.7")), vec![a]);
        assert!(m.addrs_of(ip("198.51.100.9")).is_empty());
        // A clone shares the set (the node updates what the TURN guard reads).
        let reader = m.clone();
        m.set([]);
        assert!(!reader.contains(a));
        m.set((0..(MAX_MESH_ADDRS as u32 + 10)).map(|i| SocketAddr::new(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 1)));
        assert_eq!(reader.snapshot().len(), MAX_MESH_ADDRS);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused() {
        for s in [
            "127.0.0.1", "127.5.6.7", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
            "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.1.1", "0.0.0.0",
            "0.1.2.3", "255.255.255.255", "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1",
            "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "192.0.0.1", "192.0.0.170",
            "198.18.0.1", "198.19.255.254", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::c0a8:101",
            "64:ff9b:1::808:808", "64:ff9b:1:ffff::1", "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::5",
            "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "::127.0.0.1", "::10.0.0.1", "::169.254.169.254",
        ] {
            assert!(is_internal(ip(s)), "{s} must be internal");
            let open = PeerPolicy::default().with_open(true);
            assert!(!open.allows_ip(ip(s)), "{s} must be refused");
            assert!(!open.allows_addr(SocketAddr::new(ip(s), 3478)), "{s} must be refused");
        }
        for s in [
            "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "192.0.1.1", "198.20.0.1", "198.17.255.1",
            "2001:db8::1", "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1", "::8.8.8.8", "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip(s)), "{s} must be public");
            assert!(PeerPolicy::default().with_open(true).allows_addr(SocketAddr::new(ip(s), 9)));
            assert!(!PeerPolicy::default().allows_addr(SocketAddr::new(ip(s), 9)), "closed by default: {s}");
        }
    }

    #[test]
    fn own_public_address_only_on_media_ports() {
        let p = PeerPolicy::new(vec![], vec!["203.0.113.5:50000".parse().unwrap()])
            .with_own_ips([ip("203.0.113.9")])
            .with_open(true);
        assert!(p.allows_addr("203.0.113.5:50000".parse().unwrap()));
        assert!(!p.allows_addr("203.0.113.5:22".parse().unwrap()), "own IP, other port");
        assert!(!p.allows_addr("203.0.113.5:8080".parse().unwrap()));
        assert!(!p.allows_addr("203.0.113.9:50000".parse().unwrap()), "own relay IP");
        assert!(!p.allows_addr("[::ffff:203.0.113.5]:22".parse().unwrap()));
        assert!(p.allows_addr("203.0.113.6:22".parse().unwrap()), "a stranger's public address, open relay");
        assert!(p.allows_ip(ip("203.0.113.5")), "a permission for the own media IP");
        assert!(!p.allows_ip(ip("203.0.113.9")));
        let closed = p.clone().with_open(false);
        assert!(closed.allows_addr("203.0.113.5:50000".parse().unwrap()));
        assert!(!closed.allows_addr("203.0.113.6:22".parse().unwrap()));
        assert!(!closed.allows_ip(ip("203.0.113.6")));
    }

    #[test]
    fn own_media_addresses_are_allowed_exactly() {
        let p = PeerPolicy::new(vec![], vec!["127.0.0.1:50000".parse().unwrap()]);
        assert!(p.allows_ip(ip("127.0.0.1")));
        assert!(p.allows_addr("127.0.0.1:50000".parse().unwrap()));
        assert!(!p.allows_addr("127.0.0.1:50001".parse().unwrap()));
        assert!(!p.allows_ip(ip("127.0.0.2")));
        assert!(p.allows_addr("[::ffff:127.0.0.1]:50000".parse().unwrap()));
    }

    #[test]
    fn cidrs_allow_ranges() {
        let p = PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()], vec![]);
        assert!(p.allows_addr("127.9.9.9:1".parse().unwrap()));
        assert!(p.allows_ip(ip("fd00::5")));
        assert!(!p.allows_ip(ip("fc00::5")));
        assert!(!p.allows_ip(ip("10.0.0.1")));
        let one: Cidr = "10.1.2.3".parse().unwrap();
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("10.0.0.1")));
        assert!(!"0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("::1")));
    }

    #[test]
    fn bad_cidrs_are_rejected() {
        for s in ["", "10.0.0.0/33", "::/129", "x/8", "10.0.0.0/-1", "10.0.0/8"] {
            assert!(s.parse::<Cidr>().is_err(), "{s}");
        }
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
    }
}
