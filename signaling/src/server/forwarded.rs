//! Who a request comes from: the TCP peer, or the client named by `X-Forwarded-*` headers when
//! the peer is a trusted proxy (`--trusted-proxy CIDR`). Headers from anyone else are ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address block such as `10.0.0.0/8`, `2001:db8::/32` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// Why a CIDR did not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR {0:?}: expected ADDRESS or ADDRESS/PREFIX")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    /// True when `ip` lies in the block (IPv4-mapped IPv6 addresses match IPv4 blocks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The scheme a client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective client of a request, put in every request's extensions by the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address: the TCP peer, or the forwarded client behind a trusted proxy.
    pub addr: IpAddr,
    /// The TCP peer of the connection.
    pub peer: SocketAddr,
    /// The scheme the client used.
    pub scheme: Scheme,
    /// The host (and port) the client asked for, when it named a valid one.
    pub host: Option<String>,
    /// True when the connection comes from a trusted proxy.
    pub via_proxy: bool,
}

impl ClientInfo {
    /// `scheme://host` as the client sees this node, when the request named a host.
    pub fn base_url(&self) -> Option<String> {
        self.host.as_ref().map(|h| format!("{}://{h}", self.scheme))
    }
}

/// The value of the last occurrence of a comma-separated header, trimmed.
fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).last()?;
    let last = v.rsplit(',').next()?.trim();
    (!last.is_empty()).then(|| last.to_owned())
}

/// A host name or address with an optional port, without anything that could break out of a
/// URL authority (paths, user info, spaces).
pub fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_'))
}

/// Most `X-Forwarded-For` entries looked at (a longer chain is cut from the left).
pub const MAX_FORWARDED_HOPS: usize = 16;

/// Works out the effective client of a request on a connection from `peer`.
///
/// `authority` is the request's `:authority` (HTTP/2) or `Host` header. When `peer` is in
/// `trusted`, `X-Forwarded-For` is walked from the right past further trusted proxies to the
/// first address that is not one, and `X-Forwarded-Proto`/`X-Forwarded-Host` replace the scheme
/// and host; from anyone else those headers are ignored.
pub fn resolve(
    peer: SocketAddr,
    tls: bool,
    authority: Option<&str>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> ClientInfo {
    let mut info = ClientInfo {
        addr: peer.ip(),
        peer,
        scheme: if tls { Scheme::Https } else { Scheme::Http },
        host: authority.filter(|h| valid_host(h)).map(str::to_owned),
        via_proxy: false,
    };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer.ip()) {
        return info;
    }
    info.via_proxy = true;
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(MAX_FORWARDED_HOPS)
        .map_while(|s| parse_forwarded_addr(s))
        .collect();
    for ip in hops {
        info.addr = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    match last_value(headers, "x-forwarded-proto").map(|p| p.to_ascii_lowercase()).as_deref() {
        Some("https") => info.scheme = Scheme::Https,
        Some("http") => info.scheme = Scheme::Http,
        _ => {}
    }
    if let Some(h) = last_value(headers, "x-forwarded-host").filter(|h| valid_host(h)) {
        info.host = Some(h);
    }
    info
}

/// An `X-Forwarded-For` entry: an address, `[v6]`, or either with a port.
fn parse_forwarded_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn peer(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 40000)
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.200.1.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_cannot_forge() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let info = resolve(peer("203.0.113.7"), false, Some("node.example:8080"), &h, &trusted);
        assert_eq!(info.addr, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(info.scheme, Scheme::Http);
        assert_eq!(info.host.as_deref(), Some("node.example:8080"));
        assert!(!info.via_proxy);
        assert_eq!(info.base_url().as_deref(), Some("http://node.example:8080"));
        // No trusted proxies at all: the same.
        let info = resolve(peer("10.0.0.1"), true, Some("a.example"), &h, &[]);
        assert_eq!(info.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.base_url().as_deref(), Some("https://a.example"));
    }

    #[test]
    fn trusted_proxies_name_the_client() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        // A client may send its own X-Forwarded-For; the proxy appends the address it saw, and
        // the rightmost untrusted entry is the client.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "live.example.org"),
        ]);
        let info = resolve(peer("10.0.0.2"), false, Some("127.0.0.1:8080"), &h, &trusted);
        assert_eq!(info.addr, "198.51.100.9".parse::<IpAddr>().unwrap());
        assert_eq!(info.scheme, Scheme::Https);
        assert_eq!(info.base_url().as_deref(), Some("https://live.example.org"));
        assert!(info.via_proxy);
    }

    #[test]
    fn bad_forwarded_values_are_ignored() {
        let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "not-an-ip"),
            ("x-forwarded-proto", "gopher"),
            ("x-forwarded-host", "a.example/path?x"),
        ]);
        let info = resolve(peer("127.0.0.1"), false, Some("h.example"), &h, &trusted);
        assert_eq!(info.addr, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.scheme, Scheme::Http);
        assert_eq!(info.host.as_deref(), Some("h.example"));
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:1234"), ("x-forwarded-for", "192.0.2.1:99")]);
        let info = resolve(peer("127.0.0.1"), false, None, &h, &trusted);
        assert_eq!(info.addr, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.base_url(), None);
        assert!(!valid_host("a b"));
        assert!(!valid_host("user@host"));
        assert!(valid_host("[::1]:8443"));
    }
}
