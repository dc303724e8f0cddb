//! Which peers an allocation may relay to: public addresses, the node's own media addresses,
//! and CIDRs allowed explicitly. Everything internal is refused by default.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

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

/// IPv4-mapped IPv6 addresses as IPv4, everything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Whether `ip` is internal: loopback, private, link-local, CGNAT, multicast, unspecified,
/// broadcast, `0.0.0.0/8`, unique-local or link-local IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_broadcast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || o[0] >= 240
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
        }
    }
}

/// The relay policy: internal peers are refused unless they are one of `own_addrs` or inside
/// one of `allow`.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Extra CIDRs that may be relayed to (`--turn-allow-peer`).
    pub allow: Vec<Cidr>,
    /// The node's own media addresses (exact IP and port).
    pub own_addrs: Vec<SocketAddr>,
}

impl PeerPolicy {
    /// A policy with these allowed CIDRs and own addresses.
    pub fn new(allow: Vec<Cidr>, own_addrs: Vec<SocketAddr>) -> Self {
        PeerPolicy { allow, own_addrs }
    }

    fn allowed_by_cidr(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|c| c.contains(ip))
    }

    /// Whether a permission (IP only, RFC 8656 §9) for `ip` may be installed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed_by_cidr(ip) || self.own_addrs.iter().any(|a| canonical(a.ip()) == ip)
    }

    /// Whether data may be relayed to or from exactly `addr`.
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.allowed_by_cidr(ip)
            || self.own_addrs.iter().any(|a| canonical(a.ip()) == ip && a.port() == addr.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused() {
        for s in [
            "127.0.0.1", "127.5.6.7", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
            "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.1.1", "0.0.0.0",
            "0.1.2.3", "255.255.255.255", "::1", "::", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1",
            "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip(s)), "{s} must be internal");
            assert!(!PeerPolicy::default().allows_ip(ip(s)), "{s} must be refused");
        }
        for s in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "192.169.0.1", "2001:db8::1", "2606:4700::1111"] {
            assert!(!is_internal(ip(s)), "{s} must be public");
            assert!(PeerPolicy::default().allows_addr(SocketAddr::new(ip(s), 9)));
        }
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
