//! NAT-PMP (RFC 6886), for routers without UPnP-IGD: the default gateway's external address
//! and port mappings. The messages are plain functions; [`Pmp`] sends them with bounded
//! retransmissions.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::upnp::Protocol;

/// The NAT-PMP server port on the gateway.
pub const PORT: u16 = 5351;
/// First retransmission timeout (RFC 6886 §3.1: 250 ms, doubled each time).
const FIRST_RTO: Duration = Duration::from_millis(250);

/// Why NAT-PMP gave no address or mapping.
#[derive(Debug, thiserror::Error)]
pub enum PmpError {
    /// No IPv4 default route.
    #[error("no IPv4 default gateway")]
    NoGateway,
    /// The gateway did not answer in time.
    #[error("no NAT-PMP answer from {gateway} within {after:?}")]
    Timeout {
        /// The gateway asked.
        gateway: SocketAddr,
        /// How long it was waited for.
        after: Duration,
    },
    /// The gateway answered with a result code other than success.
    #[error("NAT-PMP result code {code} ({})", result_name(*code))]
    Refused {
        /// The result code.
        code: u16,
    },
    /// An answer of the wrong size or opcode.
    #[error("malformed NAT-PMP answer")]
    Malformed,
    /// The gateway mapped another external port than the one asked for.
    #[error("NAT-PMP mapped external port {got} instead of {want}")]
    OtherPort {
        /// Asked for.
        want: u16,
        /// Given.
        got: u16,
    },
    /// Socket trouble.
    #[error("NAT-PMP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// RFC 6886 §3.5 result codes.
fn result_name(code: u16) -> &'static str {
    match code {
        1 => "unsupported version",
        2 => "not authorized or refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown",
    }
}

/// The IPv4 default gateway in the text of `/proc/net/route`.
pub fn default_gateway(proc_net_route: &str) -> Option<Ipv4Addr> {
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            continue;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        if gw != 0 {
            // The kernel prints the address in host (little-endian) byte order.
            return Some(Ipv4Addr::from(gw.to_le_bytes()));
        }
    }
    None
}

/// The external-address request.
pub fn external_address_request() -> [u8; 2] {
    [0, 0]
}

/// The external address in an answer to [`external_address_request`].
pub fn parse_external_address(buf: &[u8]) -> Result<Ipv4Addr, PmpError> {
    if buf.len() < 12 || buf[0] != 0 || buf[1] != 128 {
        return Err(PmpError::Malformed);
    }
    let code = u16::from_be_bytes([buf[2], buf[3]]);
    if code != 0 {
        return Err(PmpError::Refused { code });
    }
    Ok(Ipv4Addr::new(buf[8], buf[9], buf[10], buf[11]))
}

fn opcode(p: Protocol) -> u8 {
    match p {
        Protocol::Udp => 1,
        Protocol::Tcp => 2,
    }
}

/// A mapping request of `internal` port to `external` for `lifetime` seconds (0 deletes it).
pub fn map_request(p: Protocol, internal: u16, external: u16, lifetime: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[1] = opcode(p);
    out[4..6].copy_from_slice(&internal.to_be_bytes());
    out[6..8].copy_from_slice(&external.to_be_bytes());
    out[8..12].copy_from_slice(&lifetime.to_be_bytes());
    out
}

/// An answer to [`map_request`]: (internal port, external port, lifetime in seconds).
pub fn parse_map_response(buf: &[u8], p: Protocol) -> Result<(u16, u16, u32), PmpError> {
    if buf.len() < 16 || buf[0] != 0 || buf[1] != 128 + opcode(p) {
        return Err(PmpError::Malformed);
    }
    let code = u16::from_be_bytes([buf[2], buf[3]]);
    if code != 0 {
        return Err(PmpError::Refused { code });
    }
    let internal = u16::from_be_bytes([buf[8], buf[9]]);
    let external = u16::from_be_bytes([buf[10], buf[11]]);
    let lifetime = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
    Ok((internal, external, lifetime))
}

/// A NAT-PMP gateway.
#[derive(Debug, Clone)]
pub struct Pmp {
    gateway: SocketAddr,
    local_ip: IpAddr,
    timeout: Duration,
}

impl Pmp {
    /// The default gateway of this host (from `/proc/net/route`), asked with answers awaited
    /// at most `timeout` per request.
    pub async fn default_gateway(timeout: Duration) -> Result<Pmp, PmpError> {
        let text = tokio::fs::read_to_string("/proc/net/route").await?;
        let gw = default_gateway(&text).ok_or(PmpError::NoGateway)?;
        let gateway = SocketAddr::new(IpAddr::V4(gw), PORT);
        let sock = UdpSocket::bind("0.0.0.0:0").await?;
        sock.connect(gateway).await?;
        let local_ip = sock.local_addr()?.ip();
        Ok(Pmp {
            gateway,
            local_ip,
            timeout,
        })
    }

    /// The gateway's NAT-PMP address.
    pub fn addr(&self) -> SocketAddr {
        self.gateway
    }

    /// This host's address facing the gateway.
    pub fn local_ip(&self) -> IpAddr {
        self.local_ip
    }

    /// Sends `req` and returns the first answer from the gateway whose opcode is `want_op`.
    async fn ask(&self, req: &[u8], want_op: u8) -> Result<Vec<u8>, PmpError> {
        let sock = UdpSocket::bind("0.0.0.0:0").await?;
        sock.connect(self.gateway).await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut rto = FIRST_RTO;
        let mut buf = [0u8; 64];
        while tokio::time::Instant::now() < deadline {
            sock.send(req).await?;
            let resend_at = (tokio::time::Instant::now() + rto).min(deadline);
            rto *= 2;
            loop {
                match tokio::time::timeout_at(resend_at, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(e)) => {
                        // An ICMP port unreachable (no NAT-PMP server) shows as an error here.
                        tracing::debug!(error = %e, gateway = %self.gateway, "NAT-PMP receive");
                        tokio::time::sleep_until(resend_at).await;
                        break;
                    }
                    Ok(Ok(n)) if n >= 2 && buf[1] == want_op => return Ok(buf[..n].to_vec()),
                    Ok(Ok(_)) => continue,
                }
            }
        }
        Err(PmpError::Timeout {
            gateway: self.gateway,
            after: self.timeout,
        })
    }

    /// The gateway's external address.
    pub async fn external_ip(&self) -> Result<IpAddr, PmpError> {
        let answer = self.ask(&external_address_request(), 128).await?;
        Ok(IpAddr::V4(parse_external_address(&answer)?))
    }

    /// Maps external `port` to this host's `port` for `lease`; refuses another external port.
    pub async fn map(&self, p: Protocol, port: u16, lease: Duration) -> Result<(), PmpError> {
        let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX);
        let answer = self.ask(&map_request(p, port, port, secs), 128 + opcode(p)).await?;
        let (_, external, _) = parse_map_response(&answer, p)?;
        if external != port {
            let _ = self.unmap(p, port).await;
            return Err(PmpError::OtherPort {
                want: port,
                got: external,
            });
        }
        Ok(())
    }

    /// Removes the mapping of this host's `port`.
    pub async fn unmap(&self, p: Protocol, port: u16) -> Result<(), PmpError> {
        let answer = self.ask(&map_request(p, port, 0, 0), 128 + opcode(p)).await?;
        parse_map_response(&answer, p).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00E8A80A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    eth0\t00000000\t01E8A80A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(text), Some(Ipv4Addr::new(10, 168, 232, 1)));
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
    }

    #[test]
    fn messages() {
        assert_eq!(
            map_request(Protocol::Udp, 50000, 50000, 3600),
            [0, 1, 0, 0, 0xC3, 0x50, 0xC3, 0x50, 0, 0, 0x0E, 0x10]
        );
        assert_eq!(map_request(Protocol::Tcp, 80, 0, 0)[1], 2);
        let ok = [0, 129, 0, 0, 0, 0, 0, 9, 0xC3, 0x50, 0xC3, 0x51, 0, 0, 0x0E, 0x10];
        assert_eq!(
            parse_map_response(&ok, Protocol::Udp).expect("ok"),
            (50000, 50001, 3600)
        );
        assert!(matches!(
            parse_map_response(&ok, Protocol::Tcp),
            Err(PmpError::Malformed)
        ));
        let refused = [0, 130, 0, 2, 0, 0, 0, 9, 0, 80, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            parse_map_response(&refused, Protocol::Tcp),
            Err(PmpError::Refused { code: 2 })
        ));
        let ext = [0, 128, 0, 0, 0, 0, 0, 1, 10, 231, 7, 2];
        assert_eq!(parse_external_address(&ext).expect("ext"), Ipv4Addr::new(10, 231, 7, 2));
        assert!(matches!(parse_external_address(&ext[..8]), Err(PmpError::Malformed)));
    }
}
