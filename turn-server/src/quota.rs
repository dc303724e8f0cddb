//! Quotas: live allocations per username and per client (an IPv4 address or an IPv6 /64),
//! bandwidth per allocation (a token bucket), and a maximum allocation lifetime.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits a server enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live allocations one username may hold.
    pub per_user: usize,
    /// Live allocations one client may hold (an IPv4 address, or an IPv6 /64).
    pub per_ip: usize,
    /// Relayed bits per second per allocation, in each direction (0 = unlimited).
    pub bitrate: u64,
    /// Longest an allocation lives, refreshes included.
    pub max_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_user: 16, per_ip: 32, bitrate: 20_000_000, max_lifetime: Duration::from_secs(12 * 3600) }
    }
}

/// A quota that would be exceeded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    /// The username holds its maximum of allocations.
    #[error("username {0:?} has reached its allocation quota")]
    User(String),
    /// The client IP holds its maximum of allocations.
    #[error("client {0} has reached its allocation quota")]
    Ip(IpAddr),
}

/// The client a quota counts `ip` as: an IPv4 address (IPv4-mapped IPv6 included) or the /64
/// of an IPv6 address, which one subscriber typically holds whole.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Counts {
    users: HashMap<String, usize>,
    ips: HashMap<IpAddr, usize>,
}

/// Counts live allocations per username and per client IP.
#[derive(Debug)]
pub struct QuotaTracker {
    limits: Limits,
    counts: Mutex<Counts>,
}

impl QuotaTracker {
    /// A tracker enforcing `limits`.
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(QuotaTracker { limits, counts: Mutex::new(Counts::default()) })
    }

    /// The limits enforced.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_locked(&self, c: &Counts, user: &str, ip: IpAddr) -> Result<(), QuotaError> {
        let ip = client_key(ip);
        if c.users.get(user).copied().unwrap_or(0) >= self.limits.per_user {
            return Err(QuotaError::User(user.to_owned()));
        }
        if c.ips.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
            return Err(QuotaError::Ip(ip));
        }
        Ok(())
    }

    /// Whether one more allocation for `user` from `ip` fits.
    pub fn check(&self, user: &str, ip: IpAddr) -> Result<(), QuotaError> {
        self.check_locked(&self.counts(), user, ip)
    }

    /// Counts one more allocation; it is released when the guard drops.
    pub fn acquire(self: &Arc<Self>, user: &str, ip: IpAddr) -> Result<QuotaGuard, QuotaError> {
        let mut c = self.counts();
        self.check_locked(&c, user, ip)?;
        let ip = client_key(ip);
        *c.users.entry(user.to_owned()).or_insert(0) += 1;
        *c.ips.entry(ip).or_insert(0) += 1;
        Ok(QuotaGuard { tracker: self.clone(), user: user.to_owned(), ip })
    }

    /// Live allocations counted for `user` and for `ip`.
    pub fn usage(&self, user: &str, ip: IpAddr) -> (usize, usize) {
        let c = self.counts();
        (c.users.get(user).copied().unwrap_or(0), c.ips.get(&client_key(ip)).copied().unwrap_or(0))
    }
}

/// One counted allocation; dropping it releases the count.
#[derive(Debug)]
pub struct QuotaGuard {
    tracker: Arc<QuotaTracker>,
    user: String,
    ip: IpAddr,
}

impl Drop for QuotaGuard {
    fn drop(&mut self) {
        let mut c = self.tracker.counts();
        if let Some(n) = c.users.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.users.remove(&self.user);
            }
        }
        if let Some(n) = c.ips.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.ips.remove(&self.ip);
            }
        }
    }
}

/// A token bucket in bytes: `rate` bytes per second, holding at most one second's worth.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `bits_per_sec` (0 = unlimited).
    pub fn new(bits_per_sec: u64, now: Instant) -> Self {
        let rate = bits_per_sec as f64 / 8.0;
        TokenBucket { rate, tokens: rate, last: now }
    }

    /// Takes `bytes` if they fit at `now`; `false` means the packet must be dropped.
    pub fn take(&mut self, bytes: usize, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate).min(self.rate);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_user: usize, per_ip: usize) -> Limits {
        Limits { per_user, per_ip, ..Limits::default() }
    }

    #[test]
    fn per_user_and_per_ip_limits() {
        let t = QuotaTracker::new(limits(2, 3));
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let g1 = t.acquire("u", a).unwrap();
        let _g2 = t.acquire("u", b).unwrap();
        assert_eq!(t.acquire("u", a).unwrap_err(), QuotaError::User("u".into()));
        let _g3 = t.acquire("v", a).unwrap();
        let _g4 = t.acquire("w", a).unwrap();
        assert_eq!(t.check("x", a), Err(QuotaError::Ip(a)));
        assert_eq!(t.usage("u", a), (2, 3));
        drop(g1);
        assert_eq!(t.usage("u", a), (1, 2));
        assert!(t.acquire("u", a).is_ok());
    }

    #[test]
    fn an_ipv6_64_is_one_client() {
        let t = QuotaTracker::new(limits(100, 2));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _g1 = t.acquire("u1", a).unwrap();
        let _g2 = t.acquire("u2", b).unwrap();
        assert!(matches!(t.acquire("u3", "2001:db8:1:2::99".parse().unwrap()), Err(QuotaError::Ip(_))));
        assert!(t.acquire("u3", other).is_ok(), "another /64 is another client");
        assert_eq!(t.usage("x", "2001:db8:1:2:abcd::".parse().unwrap()).1, 2);
        let v4: IpAddr = "203.0.113.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.1".parse().unwrap();
        let _g3 = t.acquire("u4", v4).unwrap();
        let _g4 = t.acquire("u5", mapped).unwrap();
        assert!(t.check("u6", "203.0.113.1".parse().unwrap()).is_err(), "mapped and plain IPv4 are one client");
        assert!(t.check("u6", "203.0.113.2".parse().unwrap()).is_ok(), "IPv4 addresses are separate clients");
    }

    #[test]
    fn guards_release_everything() {
        let t = QuotaTracker::new(limits(1, 1));
        let ip: IpAddr = "::1".parse().unwrap();
        for _ in 0..5 {
            let g = t.acquire("u", ip).unwrap();
            assert!(t.acquire("u", ip).is_err());
            drop(g);
        }
        assert_eq!(t.usage("u", ip), (0, 0));
    }

    #[test]
    fn bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(8000, t0); // 1000 bytes/s
        assert!(b.take(600, t0));
        assert!(!b.take(600, t0));
        assert!(b.take(400, t0));
        assert!(!b.take(1, t0));
        assert!(b.take(500, t0 + Duration::from_millis(500)));
        assert!(!b.take(1500, t0 + Duration::from_secs(100)), "burst is capped at one second");
        assert!(b.take(1000, t0 + Duration::from_secs(100)));
        let mut unlimited = TokenBucket::new(0, t0);
        assert!(unlimited.take(usize::MAX, t0));
    }
}
