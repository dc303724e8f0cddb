//! Sans-IO admission of HTTP connections and other per-address resources: counts in total and
//! per client address, plus a throttle for log lines about refusals. No sockets, no clocks of
//! its own: the caller passes addresses and instants in and gets decisions out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key an address is counted under: an IPv4 address, or the /64 of an IPv6 address (one
/// subscriber usually holds a whole /64, so counting single IPv6 addresses would let one client
/// act as many).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Why a resource was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The cap on the total is reached.
    Total,
    /// The cap for this client address is reached.
    PerAddress,
}

impl Refusal {
    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerAddress => "per_address",
        }
    }
}

/// Counts held resources in total and per address key, refusing those over either cap.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Admission with these caps (0 means no cap).
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Admission { max_total, max_per_address, total: 0, per_address: HashMap::new() }
    }

    /// Takes one unit for `ip` when both caps allow; `exempt_per_address` counts it only in the
    /// total (a trusted proxy carries many clients on its own address).
    pub fn admit(&mut self, ip: IpAddr, exempt_per_address: bool) -> Result<(), Refusal> {
        if self.max_total != 0 && self.total >= self.max_total {
            return Err(Refusal::Total);
        }
        if !exempt_per_address {
            let key = address_key(ip);
            let n = self.per_address.entry(key).or_insert(0);
            if self.max_per_address != 0 && *n >= self.max_per_address {
                return Err(Refusal::PerAddress);
            }
            *n += 1;
        }
        self.total += 1;
        Ok(())
    }

    /// Returns a unit taken by `admit` with the same arguments.
    pub fn release(&mut self, ip: IpAddr, exempt_per_address: bool) {
        self.total = self.total.saturating_sub(1);
        if !exempt_per_address {
            let key = address_key(ip);
            if let Some(n) = self.per_address.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_address.remove(&key);
                }
            }
        }
    }

    /// Units held in total.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Units held by the address key of `ip`.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.per_address.get(&address_key(ip)).copied().unwrap_or(0)
    }

    /// Distinct address keys holding units (the map never outgrows the total cap).
    pub fn addresses(&self) -> usize {
        self.per_address.len()
    }
}

/// An [`Admission`] shared between tasks, handing out guards that release on drop.
#[derive(Debug, Clone)]
pub struct SharedAdmission(Arc<Mutex<Admission>>);

impl SharedAdmission {
    /// Shared admission with these caps (0 means no cap).
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        SharedAdmission(Arc::new(Mutex::new(Admission::new(max_total, max_per_address))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one unit for `ip`; the guard gives it back when dropped.
    pub fn admit(&self, ip: IpAddr, exempt_per_address: bool) -> Result<AdmissionGuard, Refusal> {
        self.lock().admit(ip, exempt_per_address)?;
        Ok(AdmissionGuard { owner: self.clone(), ip, exempt: exempt_per_address })
    }

    /// Units held in total.
    pub fn total(&self) -> usize {
        self.lock().total()
    }
}

/// One admitted unit; released when dropped.
#[derive(Debug)]
pub struct AdmissionGuard {
    owner: SharedAdmission,
    ip: IpAddr,
    exempt: bool,
}

impl Drop for AdmissionGuard {
    fn drop(&mut self) {
        self.owner.lock().release(self.ip, self.exempt);
    }
}

/// Lets one log line through per interval and counts the ones held back, so that a flood of
/// refusals writes a line every few seconds instead of one per refusal.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    /// A throttle letting one line through per `interval`.
    pub fn new(interval: Duration) -> Self {
        LogThrottle { interval, next: None, suppressed: 0 }
    }

    /// `Some(lines held back since the last one)` when a line may be written at `now`.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.next {
            Some(next) if now < next => {
                self.suppressed = self.suppressed.saturating_add(1);
                None
            }
            _ => {
                self.next = now.checked_add(self.interval);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_per_address_and_in_total() {
        let mut a = Admission::new(3, 2);
        assert_eq!(a.admit(ip("10.0.0.1"), false), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1"), false), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.1"), false), Err(Refusal::PerAddress));
        assert_eq!(a.admit(ip("10.0.0.2"), false), Ok(()));
        assert_eq!(a.admit(ip("10.0.0.3"), false), Err(Refusal::Total));
        assert_eq!(a.total(), 3);
        a.release(ip("10.0.0.1"), false);
        assert_eq!(a.held_by(ip("10.0.0.1")), 1);
        assert_eq!(a.admit(ip("10.0.0.3"), false), Ok(()));
        // Everything released: no entries remain.
        for s in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            a.release(ip(s), false);
        }
        assert_eq!(a.total(), 0);
        assert_eq!(a.addresses(), 0);
    }

    #[test]
    fn refused_addresses_leave_no_entry() {
        let mut a = Admission::new(0, 0);
        let mut b = Admission::new(10, 0);
        assert!(a.admit(ip("10.0.0.1"), false).is_ok());
        for i in 0..10u8 {
            assert!(b.admit(IpAddr::from([10, 0, 1, i]), false).is_ok());
        }
        for i in 0..100u8 {
            assert_eq!(b.admit(IpAddr::from([10, 0, 2, i]), false), Err(Refusal::Total));
        }
        assert_eq!(b.addresses(), 10);
        let mut c = Admission::new(100, 1);
        assert!(c.admit(ip("10.0.0.1"), false).is_ok());
        assert_eq!(c.admit(ip("10.0.0.1"), false), Err(Refusal::PerAddress));
        assert_eq!(c.addresses(), 1);
    }

    #[test]
    fn proxies_count_only_in_total() {
        let mut a = Admission::new(5, 1);
        for _ in 0..5 {
            assert!(a.admit(ip("192.168.1.1"), true).is_ok());
        }
        assert_eq!(a.admit(ip("192.168.1.1"), true), Err(Refusal::Total));
        assert_eq!(a.held_by(ip("192.168.1.1")), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let mut a = Admission::new(0, 2);
        assert!(a.admit(ip("2001:db8:1:2::1"), false).is_ok());
        assert!(a.admit(ip("2001:db8:1:2:ffff::9"), false).is_ok());
        assert_eq!(a.admit(ip("2001:db8:1:2:abcd::1"), false), Err(Refusal::PerAddress));
        assert!(a.admit(ip("2001:db8:1:3::1"), false).is_ok());
        assert!(a.admit(ip("10.1.1.1"), false).is_ok());
        assert!(a.admit(ip("::ffff:10.1.1.1"), false).is_ok());
        assert_eq!(a.admit(ip("10.1.1.1"), false), Err(Refusal::PerAddress));
    }

    #[test]
    fn guards_release_on_drop() {
        let s = SharedAdmission::new(1, 1);
        let g = s.admit(ip("10.0.0.1"), false).unwrap();
        assert!(s.admit(ip("10.0.0.2"), false).is_err());
        drop(g);
        assert_eq!(s.total(), 0);
        assert!(s.admit(ip("10.0.0.2"), false).is_ok());
    }

    #[test]
    fn throttle_lets_one_line_per_interval() {
        let t0 = Instant::now();
        let mut t = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(t.allow(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow(t0 + Duration::from_secs(11)), None);
    }
}
