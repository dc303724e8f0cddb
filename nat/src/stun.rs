//! STUN Binding client (RFC 8489): the request's bytes, the response's parse, and one bounded
//! query over a UDP socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Default STUN port when a URL names none.
pub const DEFAULT_PORT: u16 = 3478;
/// First retransmission timeout (RFC 8489 §6.2.1); doubled after each retransmission.
const FIRST_RTO: Duration = Duration::from_millis(500);

const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const BINDING_ERROR: u16 = 0x0111;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// Why a STUN query gave no address.
#[derive(Debug, thiserror::Error)]
pub enum StunError {
    /// The URL is not `stun:HOST[:PORT]` (or `HOST[:PORT]`).
    #[error("not a STUN URL (want stun:HOST[:PORT]): {0}")]
    BadUrl(String),
    /// The server's name did not resolve.
    #[error("resolving STUN server {host}: {reason}")]
    Resolve {
        /// The host name.
        host: String,
        /// Why.
        reason: String,
    },
    /// A datagram too short or not STUN.
    #[error("not a STUN message")]
    NotStun,
    /// A well-formed message that is not a Binding response.
    #[error("not a Binding response (type {0:#06x})")]
    NotBindingResponse(u16),
    /// The server answered with an error.
    #[error("STUN error response {code}: {reason}")]
    ErrorResponse {
        /// The error code (e.g. 400).
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A success response without (XOR-)MAPPED-ADDRESS.
    #[error("Binding response without a mapped address")]
    NoMappedAddress,
    /// An attribute whose length or family is wrong.
    #[error("malformed STUN attribute {0:#06x}")]
    BadAttribute(u16),
    /// No answer within the time allowed.
    #[error("no STUN answer from {server} within {after:?}")]
    Timeout {
        /// The server asked.
        server: SocketAddr,
        /// How long it was waited for.
        after: Duration,
    },
    /// Socket trouble.
    #[error("STUN socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A STUN server named by a `stun:HOST[:PORT]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunServer {
    /// Host name or IP address.
    pub host: String,
    /// UDP port.
    pub port: u16,
}

impl StunServer {
    /// Parses `stun:HOST[:PORT]`, `HOST[:PORT]` or `stun:[V6]:PORT`.
    pub fn parse(url: &str) -> Result<Self, StunError> {
        let bad = || StunError::BadUrl(url.to_owned());
        let rest = url.trim();
        let rest = rest.strip_prefix("stun:").unwrap_or(rest);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let rest = rest.split(['?', '/']).next().unwrap_or_default();
        if rest.is_empty() {
            return Err(bad());
        }
        if let Some(v6) = rest.strip_prefix('[') {
            let (host, tail) = v6.split_once(']').ok_or_else(bad)?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if tail.is_empty() => DEFAULT_PORT,
                None => return Err(bad()),
            };
            host.parse::<Ipv6Addr>().map_err(|_| bad())?;
            return Ok(StunServer {
                host: host.to_owned(),
                port,
            });
        }
        if rest.parse::<Ipv6Addr>().is_ok() {
            return Ok(StunServer {
                host: rest.to_owned(),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (rest, DEFAULT_PORT),
        };
        if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(bad());
        }
        Ok(StunServer {
            host: host.to_owned(),
            port,
        })
    }

    /// The server's first address of the family of `local` (IPv4 when `local` is unspecified v4).
    pub async fn resolve(&self, local: IpAddr) -> Result<SocketAddr, StunError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let err = |reason: String| StunError::Resolve {
            host: self.host.clone(),
            reason,
        };
        let found = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| err("timed out".into()))?
        .map_err(|e| err(e.to_string()))?;
        let mut any = None;
        for addr in found {
            if addr.is_ipv4() == local.is_ipv4() {
                return Ok(addr);
            }
            any.get_or_insert(addr);
        }
        any.ok_or_else(|| err("no address".into()))
    }
}

impl std::fmt::Display for StunServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "stun:[{}]:{}", self.host, self.port)
        } else {
            write!(f, "stun:{}:{}", self.host, self.port)
        }
    }
}

/// A fresh random transaction id.
pub fn transaction_id() -> [u8; 12] {
    rand::random()
}

/// The bytes of a Binding request without attributes.
pub fn binding_request(tid: &[u8; 12]) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    // Message length 0: no attributes.
    out[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out[8..20].copy_from_slice(tid);
    out
}

/// Whether `buf` is a STUN message of transaction `tid` (any class).
pub fn is_response_to(buf: &[u8], tid: &[u8; 12]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE.to_be_bytes() && &buf[8..20] == tid
}

/// The mapped address in a Binding response of transaction `tid`: XOR-MAPPED-ADDRESS, else
/// MAPPED-ADDRESS (RFC 3489 servers).
pub fn parse_binding_response(buf: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    if !is_response_to(buf, tid) {
        return Err(StunError::NotStun);
    }
    let kind = u16::from_be_bytes([buf[0], buf[1]]);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let body = buf.get(HEADER_LEN..HEADER_LEN + len).ok_or(StunError::NotStun)?;
    if kind != BINDING_SUCCESS && kind != BINDING_ERROR {
        return Err(StunError::NotBindingResponse(kind));
    }
    let mut plain = None;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + alen).ok_or(StunError::BadAttribute(typ))?;
        match typ {
            ATTR_ERROR_CODE if kind == BINDING_ERROR => {
                if value.len() < 4 {
                    return Err(StunError::BadAttribute(typ));
                }
                let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
                let reason = String::from_utf8_lossy(&value[4..]).into_owned();
                return Err(StunError::ErrorResponse { code, reason });
            }
            ATTR_XOR_MAPPED_ADDRESS if kind == BINDING_SUCCESS => return xor_address(value, tid),
            ATTR_MAPPED_ADDRESS if kind == BINDING_SUCCESS => plain = Some(address(value, typ)?),
            _ => {}
        }
        at += 4 + alen.div_ceil(4) * 4;
    }
    if kind == BINDING_ERROR {
        return Err(StunError::ErrorResponse {
            code: 0,
            reason: "no ERROR-CODE".into(),
        });
    }
    plain.ok_or(StunError::NoMappedAddress)
}

/// A MAPPED-ADDRESS value.
fn address(value: &[u8], typ: u16) -> Result<SocketAddr, StunError> {
    let bad = StunError::BadAttribute(typ);
    if value.len() < 4 {
        return Err(bad);
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    let ip = match (value[1], &value[4..]) {
        (0x01, a) if a.len() == 4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        (0x02, a) if a.len() == 16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(a);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(bad),
    };
    Ok(SocketAddr::new(ip, port))
}

/// An XOR-MAPPED-ADDRESS value, un-XORed with the cookie (and the transaction id for IPv6).
fn xor_address(value: &[u8], tid: &[u8; 12]) -> Result<SocketAddr, StunError> {
    let raw = address(value, ATTR_XOR_MAPPED_ADDRESS)?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = raw.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match raw.ip() {
        IpAddr::V4(a) => {
            let mut o = a.octets();
            for (b, k) in o.iter_mut().zip(cookie) {
                *b ^= k;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(a) => {
            let mut o = a.octets();
            let key = cookie.iter().chain(tid.iter());
            for (b, k) in o.iter_mut().zip(key) {
                *b ^= k;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Asks `server` for `socket`'s mapped address, retransmitting (500 ms, then doubling) until an
/// answer or `timeout`. Datagrams that are not the answer are ignored.
pub async fn query(socket: &UdpSocket, server: SocketAddr, timeout: Duration) -> Result<SocketAddr, StunError> {
    let tid = transaction_id();
    let request = binding_request(&tid);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rto = FIRST_RTO;
    let mut buf = [0u8; 1500];
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(StunError::Timeout { server, after: timeout });
        }
        socket.send_to(&request, server).await?;
        let resend_at = (now + rto).min(deadline);
        rto *= 2;
        loop {
            match tokio::time::timeout_at(resend_at, socket.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    // An ICMP port unreachable shows as ConnectionRefused/Reset on some systems: retry.
                    tracing::debug!(error = %e, %server, "STUN receive");
                    tokio::time::sleep_until(resend_at).await;
                    break;
                }
                Ok(Ok((n, from))) => {
                    if from != server || !is_response_to(&buf[..n], &tid) {
                        continue;
                    }
                    return parse_binding_response(&buf[..n], &tid);
                }
            }
        }
    }
}

/// Binds a UDP socket on `local` (port 0) and asks the server of `url` for the mapped address.
pub async fn mapped_address(url: &StunServer, local: IpAddr, timeout: Duration) -> Result<SocketAddr, StunError> {
    let server = url.resolve(local).await?;
    let bind = if local.is_unspecified() && server.is_ipv6() != local.is_ipv6() {
        SocketAddr::new(
            if server.is_ipv6() {
                Ipv6Addr::UNSPECIFIED.into()
            } else {
                Ipv4Addr::UNSPECIFIED.into()
            },
            0,
        )
    } else {
        SocketAddr::new(local, 0)
    };
    let socket = UdpSocket::bind(bind).await?;
    query(&socket, server, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::agent::TransactionId;
    use stun::message::{BINDING_SUCCESS as S, Message, Setter};
    use stun::xoraddr::XorMappedAddress;

    /// A Binding success built by the webrtc-rs `stun` crate.
    fn success(tid: [u8; 12], addr: SocketAddr) -> Vec<u8> {
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(S),
            Box::new(TransactionId(tid)),
            Box::new(XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }),
        ];
        m.build(&setters).expect("build");
        m.raw
    }

    #[test]
    fn request_is_a_binding_request_the_stun_crate_reads() {
        let tid = [7u8; 12];
        let raw = binding_request(&tid);
        let mut m = Message::new();
        m.raw = raw.to_vec();
        m.decode().expect("decode");
        assert_eq!(m.typ, stun::message::BINDING_REQUEST);
        assert_eq!(m.transaction_id.0, tid);
    }

    #[test]
    fn parses_xor_mapped_v4_and_v6() {
        let tid = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        for addr in ["10.9.1.2:50000", "[2001:db8::7]:3478"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            assert_eq!(parse_binding_response(&success(tid, addr), &tid).expect("parse"), addr);
        }
    }

    #[test]
    fn refuses_other_transactions_and_garbage() {
        let tid = [3u8; 12];
        let raw = success(tid, "10.0.0.1:1".parse().expect("addr"));
        assert!(matches!(
            parse_binding_response(&raw, &[4u8; 12]),
            Err(StunError::NotStun)
        ));
        assert!(matches!(
            parse_binding_response(&raw[..10], &tid),
            Err(StunError::NotStun)
        ));
        let mut cut = raw.clone();
        cut.truncate(raw.len() - 2);
        assert!(parse_binding_response(&cut, &tid).is_err());
        assert!(matches!(
            parse_binding_response(&[0u8; 1], &tid),
            Err(StunError::NotStun)
        ));
    }

    #[test]
    fn error_response_carries_its_code() {
        let tid = [5u8; 12];
        let mut raw = vec![0x01, 0x11, 0, 12];
        raw.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        raw.extend_from_slice(&tid);
        raw.extend_from_slice(&[0x00, 0x09, 0, 8, 0, 0, 4, 20, b'S', b'T', b'A', b'L']);
        match parse_binding_response(&raw, &tid) {
            Err(StunError::ErrorResponse { code, reason }) => {
                assert_eq!(code, 420);
                assert_eq!(reason, "STAL");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn success_without_address() {
        let tid = [9u8; 12];
        let mut raw = vec![0x01, 0x01, 0, 0];
        raw.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        raw.extend_from_slice(&tid);
        assert!(matches!(
            parse_binding_response(&raw, &tid),
            Err(StunError::NoMappedAddress)
        ));
    }

    #[test]
    fn urls() {
        let s = |u: &str| StunServer::parse(u).map(|s| (s.host, s.port)).ok();
        assert_eq!(s("stun:1.2.3.4:3478"), Some(("1.2.3.4".into(), 3478)));
        assert_eq!(s("stun:stun.example.org"), Some(("stun.example.org".into(), 3478)));
        assert_eq!(s("10.0.0.1:19302"), Some(("10.0.0.1".into(), 19302)));
        assert_eq!(s("stun:[2001:db8::1]:5000"), Some(("2001:db8::1".into(), 5000)));
        assert_eq!(s("stun:2001:db8::1"), Some(("2001:db8::1".into(), 3478)));
        assert_eq!(s("stun:"), None);
        assert_eq!(s("stun:host:notaport"), None);
        assert_eq!(s("stun:host:0"), None);
        assert_eq!(
            StunServer::parse("stun:10.1.2.3:3478").expect("url").to_string(),
            "stun:10.1.2.3:3478"
        );
    }

    #[tokio::test]
    async fn query_times_out_and_answers() {
        // A server that answers the second request only: the client retransmits.
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server_addr = server.local_addr().expect("addr");
        let answer = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let _ = server.recv_from(&mut buf).await.expect("first");
            let (n, from) = server.recv_from(&mut buf).await.expect("second");
            let mut tid = [0u8; 12];
            tid.copy_from_slice(&buf[8..20]);
            assert_eq!(n, 20);
            server.send_to(&success(tid, from), from).await.expect("send");
        });
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mapped = query(&client, server_addr, Duration::from_secs(5))
            .await
            .expect("answer");
        assert_eq!(mapped, client.local_addr().expect("addr"));
        answer.await.expect("server");

        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let err = query(&client, silent.local_addr().expect("addr"), Duration::from_millis(300)).await;
        assert!(matches!(err, Err(StunError::Timeout { .. })), "{err:?}");
    }
}
