//! Trust checks on what peers tell the mesh: stream names, announced HTTP URLs, request rates,
//! and rate-limited logging of refusals (pure functions and small state machines, no I/O).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Longest stream name.
pub const MAX_STREAM_NAME: usize = 128;

/// Whether `name` is a valid stream name: 1–128 characters of letters, digits, `-`, `_`, `.`,
/// not starting with `.`. The same rule as `relaycast_signaling::sessions::valid_stream_name`
/// (the mesh crate cannot depend on signaling, so it keeps an equivalent here).
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STREAM_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why an announced HTTP URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Not an absolute `scheme://host[:port][/path]` URL.
    #[error("not an absolute http(s) URL")]
    Malformed,
    /// The scheme is not `http` or `https`.
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    /// The host is neither an address the peer is seen at nor a trusted host.
    #[error("host {0:?} is not an address the peer is seen at nor a trusted host")]
    Host(String),
}

/// The host of an `http(s)://` URL, lowercased, without brackets or port; the scheme lowercased.
pub fn url_scheme_host(url: &str) -> Result<(String, String), UrlRefusal> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlRefusal::Malformed)?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.is_empty() {
        return Err(UrlRefusal::Malformed);
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']').ok_or(UrlRefusal::Malformed)?;
        if !(tail.is_empty() || tail.starts_with(':')) {
            return Err(UrlRefusal::Malformed);
        }
        h
    } else {
        match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return Err(UrlRefusal::Malformed),
            None => authority,
        }
    };
    if host.is_empty() {
        return Err(UrlRefusal::Malformed);
    }
    Ok((scheme, host.to_ascii_lowercase()))
}

/// Checks a peer's announced HTTP base URL: scheme `http` or `https`, and a host that is one of
/// `seen` (IP addresses the peer's connections come from) or listed in `trusted_hosts`.
pub fn check_http_url(url: &str, seen: &[IpAddr], trusted_hosts: &[String]) -> Result<(), UrlRefusal> {
    let (scheme, host) = url_scheme_host(url)?;
    if scheme != "http" && scheme != "https" {
        return Err(UrlRefusal::Scheme(scheme));
    }
    if trusted_hosts.iter().any(|t| t.eq_ignore_ascii_case(&host)) {
        return Ok(());
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if seen.iter().any(|s| same_ip(*s, ip)) => Ok(()),
        _ => Err(UrlRefusal::Host(host)),
    }
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// The IP address of a direct connection's multiaddr (`/ip4/…` or `/ip6/…`); `None` for a
/// circuit through a relay (its address is the relay's, not the peer's).
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    })
}

/// A token bucket: `burst` requests at once, refilled at `per_sec`.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: u32, now: Instant) -> Self {
        Bucket { tokens: f64::from(burst), last: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, burst: u32, per_sec: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-key token buckets with a bound on the number of keys (the oldest-used key is evicted).
#[derive(Debug)]
pub struct RateLimiter<K> {
    buckets: HashMap<K, Bucket>,
    burst: u32,
    per_sec: f64,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// Limits each key to `burst` at once and `per_sec` sustained, tracking at most `max_keys`.
    pub fn new(burst: u32, per_sec: f64, max_keys: usize) -> Self {
        RateLimiter { buckets: HashMap::new(), burst, per_sec, max_keys: max_keys.max(1) }
    }

    /// Whether `key` may make one more request now.
    pub fn allow(&mut self, key: &K, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            // Evict the key that has been quiet longest (its bucket is the fullest anyway).
            if let Some(old) = self.buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| k.clone()) {
                self.buckets.remove(&old);
            }
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.buckets.entry(key.clone()).or_insert_with(|| Bucket::new(burst, now)).take(burst, per_sec, now)
    }

    /// Forgets a key (its peer disconnected).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Lets one log line through per `every`; counts what it held back.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Self {
        LogLimiter { every, last: None, suppressed: 0 }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < self.every) {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        for ok in ["room", "a", "cam-1_x.y", &"x".repeat(128)] {
            assert!(valid_stream_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", &"x".repeat(129), "a\0"] {
            assert!(!valid_stream_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn url_host_must_be_seen_or_trusted() {
        let seen: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let trusted = vec!["cdn.example.com".to_string()];
        assert_eq!(check_http_url("http://127.0.0.1:8080", &seen, &trusted), Ok(()));
        assert_eq!(check_http_url("https://127.0.0.1/base", &seen, &trusted), Ok(()));
        assert_eq!(check_http_url("http://[2001:db8::1]:80/", &seen, &trusted), Ok(()));
        assert_eq!(check_http_url("HTTPS://CDN.example.com:443", &seen, &trusted), Ok(()));
        assert_eq!(
            check_http_url("http://10.9.9.9:8080", &seen, &trusted),
            Err(UrlRefusal::Host("10.9.9.9".into()))
        );
        assert_eq!(check_http_url("http://evil.test", &seen, &trusted), Err(UrlRefusal::Host("evil.test".into())));
        assert_eq!(check_http_url("ftp://127.0.0.1", &seen, &trusted), Err(UrlRefusal::Scheme("ftp".into())));
        assert_eq!(check_http_url("javascript:alert(1)", &seen, &trusted), Err(UrlRefusal::Malformed));
        assert_eq!(check_http_url("http://127.0.0.1@evil.test/", &seen, &trusted), Err(UrlRefusal::Malformed));
        assert_eq!(check_http_url("http://127.0.0.1:80x", &seen, &trusted), Err(UrlRefusal::Malformed));
        assert_eq!(check_http_url("http://", &seen, &trusted), Err(UrlRefusal::Malformed));
        // An IPv4-mapped address is the same host.
        assert_eq!(check_http_url("http://[::ffff:127.0.0.1]:1", &seen, &[]), Ok(()));
        assert!(check_http_url("http://127.0.0.1", &[], &[]).is_err(), "nothing seen, nothing trusted");
    }

    #[test]
    fn circuit_addresses_are_not_the_peer() {
        let direct: Multiaddr = "/ip4/192.0.2.7/tcp/4001".parse().unwrap();
        assert_eq!(ip_of(&direct), Some("192.0.2.7".parse().unwrap()));
        let circuit: Multiaddr =
            "/ip4/198.51.100.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
                .parse()
                .unwrap();
        assert_eq!(ip_of(&circuit), None);
    }

    #[test]
    fn rate_limiter_bounds_rate_and_keys() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(3, 1.0, 2);
        let allowed = (0..10).filter(|_| rl.allow(&"a", t0)).count();
        assert_eq!(allowed, 3, "burst of 3");
        assert!(rl.allow(&"a", t0 + Duration::from_millis(1100)), "refilled after a second");
        assert!(!rl.allow(&"a", t0 + Duration::from_millis(1200)));
        assert!(rl.allow(&"b", t0));
        assert!(rl.allow(&"c", t0));
        assert_eq!(rl.len(), 2, "key count bounded");
        rl.forget(&"c");
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn log_limiter_holds_back_and_counts() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.check(t0), Some(0));
        assert_eq!(l.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.check(t0 + Duration::from_secs(2)), None);
        assert_eq!(l.check(t0 + Duration::from_secs(11)), Some(2));
    }
}
