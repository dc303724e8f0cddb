//! The host's interface addresses, for choosing a host-candidate address when none is given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Addresses of the interfaces that are up, in the order the kernel lists them.
#[cfg(target_os = "linux")]
pub fn interface_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned and has not been freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & (libc::IFF_UP as u32) == 0 {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and its family tells which sockaddr type it points to.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
        } else if family == libc::AF_INET6 {
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// Addresses of the interfaces that are up (not available on this platform: none).
#[cfg(not(target_os = "linux"))]
pub fn interface_ips() -> Vec<IpAddr> {
    Vec::new()
}

/// The address to advertise when none is configured: the first IPv4 address that is not
/// loopback or link-local, else the first such IPv6 address, else 127.0.0.1.
pub fn default_candidate_ip() -> IpAddr {
    let ips = interface_ips();
    let usable = |ip: &&IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
        IpAddr::V6(v6) => !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    ips.iter()
        .filter(usable)
        .find(|ip| ip.is_ipv4())
        .or_else(|| ips.iter().find(usable))
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed_and_never_chosen() {
        let ips = interface_ips();
        assert!(ips.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "lo is up: {ips:?}");
        let chosen = default_candidate_ip();
        let has_other = ips.iter().any(|ip| !ip.is_loopback() && !matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80));
        assert_eq!(chosen.is_loopback(), !has_other, "chosen {chosen} from {ips:?}");
    }
}
