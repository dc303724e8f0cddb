//! Flags of the HTTP listener: TLS, trusted proxies and connection limits.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use relaycast_signaling::server::{Cidr, HttpLimits, ServerConfig, TlsFiles};

/// HTTPS, proxies and limits of the `--http` listener.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// PEM certificate chain: the --http listener serves HTTPS (HTTP/2 and HTTP/1.1). Reloaded
    /// without a restart when the file changes (certbot renewals).
    #[arg(long, env = "RELAYCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "RELAYCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Address or CIDR of a reverse proxy whose X-Forwarded-For, -Proto and -Host are believed
    /// (repeatable; env comma-separated). From anyone else those headers are ignored.
    #[arg(long = "trusted-proxy", env = "RELAYCAST_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<Cidr>,

    /// This node's public base URL (e.g. https://live.example.org), printed in the banner and
    /// given to other nodes of the mesh to send viewers here; by default the scheme, address
    /// and port it listens on. Set it behind a proxy or when the certificate names a domain.
    #[arg(long, env = "RELAYCAST_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Most HTTP connections open at once.
    #[arg(long, env = "RELAYCAST_HTTP_MAX_CONNECTIONS", default_value_t = 16384)]
    pub http_max_connections: usize,

    /// Most HTTP connections from one client address (an IPv6 /64) at once; a trusted proxy's
    /// connections count only in the total.
    #[arg(long, env = "RELAYCAST_HTTP_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub http_max_connections_per_ip: usize,

    /// Seconds a connection may take to send its first complete request header (TLS included).
    #[arg(long, env = "RELAYCAST_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    pub http_header_timeout: u64,

    /// Seconds an HTTP connection may stay idle (no request, no bytes) before it is closed.
    #[arg(long, env = "RELAYCAST_HTTP_IDLE_TIMEOUT", default_value_t = 60)]
    pub http_idle_timeout: u64,

    /// Most session event streams (SSE) open from one client address at once.
    #[arg(long, env = "RELAYCAST_HTTP_MAX_EVENT_STREAMS_PER_IP", default_value_t = 1024)]
    pub http_max_event_streams_per_ip: usize,

    /// Most WHEP sessions from one client address that have not connected yet (0 = no cap);
    /// connected viewers never count.
    #[arg(long, env = "RELAYCAST_HTTP_MAX_PENDING_VIEWERS_PER_IP", default_value_t = 256)]
    pub http_max_pending_viewers_per_ip: usize,
}

impl HttpArgs {
    /// The listener's limits.
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            max_connections: self.http_max_connections,
            max_connections_per_ip: self.http_max_connections_per_ip,
            header_timeout: Duration::from_secs(self.http_header_timeout.max(1)),
            idle_timeout: Duration::from_secs(self.http_idle_timeout.max(1)),
            max_event_streams_per_ip: self.http_max_event_streams_per_ip,
            max_pending_viewers_per_ip: self.http_max_pending_viewers_per_ip,
        }
    }

    /// TLS files and trusted proxies.
    pub fn server_config(&self) -> ServerConfig {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            _ => None,
        };
        ServerConfig { tls, trusted_proxies: self.trusted_proxy.clone() }
    }
}

/// An absolute `http://` or `https://` URL with a host and no path, query or fragment; the
/// trailing slash is dropped.
fn parse_public_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| "the public URL must start with http:// or https://".to_string())?;
    if rest.is_empty() || !relaycast_signaling::server::forwarded::valid_host(rest) {
        return Err("the public URL must be scheme://host[:port], without a path".into());
    }
    Ok(s.to_owned())
}

/// Raises the soft limit on open files to the hard limit, so that the connection caps, not
/// the descriptor limit, decide how many clients the node holds.
pub fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                tracing::debug!("could not raise the open-file limit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(parse_public_url("https://live.example.org/").unwrap(), "https://live.example.org");
        assert_eq!(parse_public_url("http://[2001:db8::1]:8080").unwrap(), "http://[2001:db8::1]:8080");
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("https://x/path").is_err());
        assert!(parse_public_url("https://").is_err());
    }
}
