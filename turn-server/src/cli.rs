//! TURN flags shared by the `relaycast` node and the standalone `relaycast-turn` binary.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::creds::load_or_create_secret;
use crate::filter::{Cidr, PeerPolicy};
use crate::quota::Limits;
use crate::server::{TlsFiles, TurnConfig};

/// TURN flags; each is also settable by a `RELAYCAST_*` environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct TurnArgs {
    /// TURN listen address, UDP and TCP on the same port (off when absent; port 0 = any free).
    #[arg(long = "turn", env = "RELAYCAST_TURN", value_name = "ADDR")]
    pub turn: Option<SocketAddr>,

    /// Shared secret for time-limited TURN credentials (generated and kept in the data dir when absent).
    #[arg(long, env = "RELAYCAST_TURN_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// CIDR of internal peers TURN may relay to anyway (repeatable, or comma-separated in the env).
    #[arg(long, env = "RELAYCAST_TURN_ALLOW_PEER", value_name = "CIDR", value_delimiter = ',')]
    pub turn_allow_peer: Vec<Cidr>,

    /// Relay to any public peer; without it TURN relays only to this node's own media addresses
    /// and the `--turn-allow-peer` CIDRs.
    #[arg(long, env = "RELAYCAST_TURN_OPEN_RELAY")]
    pub turn_open_relay: bool,

    /// Address given to clients as their relayed address (default: the TURN or public IP).
    #[arg(long, env = "RELAYCAST_TURN_RELAY_IP", value_name = "IP")]
    pub turn_relay_ip: Option<IpAddr>,

    /// TURN realm.
    #[arg(long, env = "RELAYCAST_TURN_REALM", default_value = "relaycast")]
    pub turn_realm: String,

    /// Certificate chain (PEM) for TLS on the TURN TCP listener.
    #[arg(long, env = "RELAYCAST_TURN_TLS_CERT", requires = "turn_tls_key", value_name = "FILE")]
    pub turn_tls_cert: Option<PathBuf>,

    /// Private key (PEM) for TLS on the TURN TCP listener.
    #[arg(long, env = "RELAYCAST_TURN_TLS_KEY", requires = "turn_tls_cert", value_name = "FILE")]
    pub turn_tls_key: Option<PathBuf>,

    /// Seconds the credentials handed out stay valid.
    #[arg(long, env = "RELAYCAST_TURN_CREDENTIAL_TTL", default_value_t = 12 * 3600)]
    pub turn_credential_ttl: u64,

    /// Live allocations per username.
    #[arg(long, env = "RELAYCAST_TURN_MAX_PER_USER", default_value_t = Limits::default().per_user)]
    pub turn_max_per_user: usize,

    /// Live allocations per client IP.
    #[arg(long, env = "RELAYCAST_TURN_MAX_PER_IP", default_value_t = Limits::default().per_ip)]
    pub turn_max_per_ip: usize,

    /// Relayed bits per second per allocation and direction (0 = unlimited).
    #[arg(long, env = "RELAYCAST_TURN_MAX_BITRATE", default_value_t = Limits::default().bitrate)]
    pub turn_max_bitrate: u64,

    /// Longest an allocation lives, in seconds, refreshes included.
    #[arg(long, env = "RELAYCAST_TURN_MAX_LIFETIME", default_value_t = Limits::default().max_lifetime.as_secs())]
    pub turn_max_lifetime: u64,
}

impl TurnArgs {
    /// The server configuration, or `None` when TURN is off. `own_addrs` are the node's media
    /// addresses (always relayable); the secret comes from the flag or `data_dir/turn-secret`.
    pub fn config(&self, data_dir: &Path, own_addrs: Vec<SocketAddr>) -> std::io::Result<Option<TurnConfig>> {
        let Some(listen) = self.turn else { return Ok(None) };
        let secret = match &self.turn_secret {
            Some(s) if !s.is_empty() => s.clone(),
            _ => load_or_create_secret(data_dir)?,
        };
        let mut cfg = TurnConfig::new(listen, secret);
        cfg.relay_ip = self.turn_relay_ip;
        cfg.realm = self.turn_realm.clone();
        cfg.policy = PeerPolicy::new(self.turn_allow_peer.clone(), own_addrs)
            .with_open(self.turn_open_relay)
            .with_own_ips(self.turn_relay_ip);
        cfg.limits = Limits {
            per_user: self.turn_max_per_user,
            per_ip: self.turn_max_per_ip,
            bitrate: self.turn_max_bitrate,
            max_lifetime: Duration::from_secs(self.turn_max_lifetime),
        };
        if let (Some(cert), Some(key)) = (&self.turn_tls_cert, &self.turn_tls_key) {
            cfg.tls = Some(TlsFiles { cert: cert.clone(), key: key.clone() });
        }
        Ok(Some(cfg))
    }

    /// How long handed-out credentials stay valid.
    pub fn credential_ttl(&self) -> Duration {
        Duration::from_secs(self.turn_credential_ttl)
    }
}
