//! Command-line flags; each is also settable by a `RELAYCAST_*` environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

/// Relaycast node: WebRTC SFU with WHIP/WHEP signaling, SDK and pages.
#[derive(Debug, Parser)]
#[command(name = "relaycast", version, about)]
pub struct Args {
    /// TOML file of settings named like these flags (e.g. `http = "0.0.0.0:8080"`, repeatable
    /// flags as arrays, switches as true/false); flags and environment variables override it.
    #[arg(long, env = "RELAYCAST_CONFIG", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// HTTP listen address (WHIP, WHEP, API, pages).
    #[arg(long, env = "RELAYCAST_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,

    /// First UDP media port; worker i listens on PORT+i (0 = any free port).
    #[arg(long, env = "RELAYCAST_MEDIA_PORT", default_value_t = 50000)]
    pub media_port: u16,

    /// Address the media sockets bind to when the node is not loopback-only.
    #[arg(long, env = "RELAYCAST_MEDIA_BIND", default_value = "0.0.0.0")]
    pub media_bind: IpAddr,

    /// IP address advertised to peers in ICE candidates (the host's public address).
    #[arg(long, env = "RELAYCAST_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// STUN server (`stun:HOST[:PORT]`) asked at start for the node's public address when
    /// --public-ip is not given, e.g. another node's TURN port (it answers STUN Binding requests).
    #[arg(long, env = "RELAYCAST_STUN", value_name = "URL")]
    pub stun: Option<String>,

    /// When --public-ip is not given and HTTP is not loopback-only: look for a UPnP-IGD router,
    /// take its external address and map the media, TURN, HTTP and p2p ports on it (on|off).
    #[arg(long, env = "RELAYCAST_UPNP", value_name = "on|off", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::TypedValueParser::map(clap::builder::PossibleValuesParser::new(["on", "off"]), |s| s == "on"))]
    pub upnp: bool,

    /// Directory for node state.
    #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "relaycast-data")]
    pub data_dir: PathBuf,

    /// Bearer token publishers must send; generated and printed when absent.
    #[arg(long, env = "RELAYCAST_PUBLISH_TOKEN")]
    pub publish_token: Option<String>,

    /// Secret that signs access tokens (JWT HS256) and webhooks; the nodes of one mesh share it.
    /// Generated and kept in DATA_DIR/api-secret when absent.
    #[arg(long, env = "RELAYCAST_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,

    /// Watching (WHEP, viewer events, replay playlists, archive API) needs an access token with a
    /// `watch` grant for the stream (Bearer header or `?token=`); without it watching is open.
    #[arg(long, env = "RELAYCAST_WATCH_AUTH")]
    pub watch_auth: bool,

    /// Media worker threads (default: one per core).
    #[arg(long, env = "RELAYCAST_WORKERS")]
    pub workers: Option<usize>,

    /// Most sessions (publishers + viewers) the node accepts before answering 503.
    #[arg(long, env = "RELAYCAST_MAX_SESSIONS", default_value_t = 2000)]
    pub max_sessions: usize,

    /// Sessions of --max-sessions that viewers cannot take, kept for publishers
    /// (default: 5% of --max-sessions, at least 1).
    #[arg(long, env = "RELAYCAST_PUBLISHER_RESERVE")]
    pub publisher_reserve: Option<usize>,

    /// DTLS implementation for peer connections: `dimpl` (str0m's own, ECDSA peer certificates:
    /// browsers, aiortc, webrtc-rs) or `openssl` (also RSA: GStreamer's webrtcbin).
    #[arg(long, env = "RELAYCAST_DTLS_BACKEND", default_value = "dimpl")]
    pub dtls_backend: relaycast_sfu::dtls::DtlsBackend,

    /// What sends media to viewers: `own` (Relaycast's send path: one header write, one seal and
    /// one batch place per packet, 1.5× the egress per core and a third of the memory per viewer;
    /// BENCHMARKS.md) or `str0m` (str0m's per-viewer session, as before).
    #[arg(long, env = "RELAYCAST_SEND_PATH", default_value = "own")]
    pub send_path: relaycast_sfu::egress::SendPath,

    /// Subcommand (`ipfs ...`, `token ...`); without one the node runs.
    #[command(subcommand)]
    pub command: Option<crate::ipfs_cmd::Command>,

    /// Built-in TURN server.
    #[command(flatten)]
    pub turn: relaycast_turn::TurnArgs,

    /// Do not run the built-in TURN server (by default it listens on the media address, port 3478).
    #[arg(long, env = "RELAYCAST_NO_TURN")]
    pub no_turn: bool,

    /// RTMP ingest.
    #[command(flatten)]
    pub rtmp: relaycast_ingest::args::RtmpArgs,

    /// SRT ingest.
    #[command(flatten)]
    pub srt: relaycast_ingest::args::SrtArgs,

    /// Do not archive streams to IPFS (by default every stream published to this node is).
    #[arg(long, env = "RELAYCAST_NO_ARCHIVE")]
    pub no_archive: bool,

    /// Record this simulcast layer alone: q, h or f (default: every layer the publisher sends).
    #[arg(long, env = "RELAYCAST_ARCHIVE_LAYER", value_parser = ["q", "h", "f"])]
    pub archive_layer: Option<String>,

    /// Delete ended recordings this long after their end (e.g. 30d, 12h, 90m; a bare number is
    /// seconds), copies of other nodes' recordings included. Default: kept forever.
    #[arg(long, env = "RELAYCAST_ARCHIVE_RETENTION", value_parser = relaycast_recorder::retention::parse_duration)]
    pub archive_retention: Option<std::time::Duration>,

    /// The whole archive's budget (e.g. 50GB, 500MiB; a bare number is bytes), copies included:
    /// the oldest ended recordings are deleted to stay under it (never a live or pinned one).
    #[arg(long, env = "RELAYCAST_ARCHIVE_MAX_BYTES", value_parser = relaycast_recorder::retention::parse_bytes)]
    pub archive_max_bytes: Option<u64>,

    /// UnixFS profile of archived files: unixfs-v1-2025 (1 MiB chunks) or kubo (256 KiB).
    #[arg(long, env = "RELAYCAST_ARCHIVE_PROFILE", default_value = "unixfs-v1-2025")]
    pub archive_profile: relaycast_ipfs::Profile,

    /// Kubo RPC base URL (e.g. http://127.0.0.1:5001): each segment, init segment and VOD root is
    /// imported there as a CAR and pinned, queued on disk and retried until kubo takes it.
    #[arg(long, env = "RELAYCAST_PIN_TO")]
    pub pin_to: Option<String>,

    /// HTTPS, trusted proxies and HTTP connection limits.
    #[command(flatten)]
    pub http_opts: crate::http_args::HttpArgs,

    /// URL that receives signed webhook events (stream.started, stream.ended,
    /// recording.finished); repeatable; the environment variable takes a comma-separated list.
    #[arg(long = "webhook", value_name = "URL", env = "RELAYCAST_WEBHOOK", value_delimiter = ',')]
    pub webhooks: Vec<String>,

    /// The mesh (libp2p discovery and relaying between nodes).
    #[command(flatten)]
    pub mesh: crate::cluster::args::MeshArgs,
}

impl Args {
    /// The API secret: `--api-secret`, else the one kept in `DATA_DIR/api-secret` (created when
    /// absent: 32 random bytes in hex).
    pub fn api_secret(&self) -> std::io::Result<String> {
        match &self.api_secret {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => relaycast_turn::creds::load_or_create_secret_file(&self.data_dir.join("api-secret"), 32),
        }
    }

    /// The address to advertise in ICE candidates.
    pub fn candidate_ip(&self, http_ip: IpAddr) -> IpAddr {
        if let Some(ip) = self.public_ip {
            return ip;
        }
        if !http_ip.is_unspecified() {
            return http_ip;
        }
        if !self.media_bind.is_unspecified() {
            return self.media_bind;
        }
        let ip = relaycast_sfu::interfaces::default_candidate_ip();
        tracing::info!(%ip, "no --public-ip given: advertising this interface address; set --public-ip behind NAT");
        ip
    }
}
