//! The node's RTMP and SRT flags.

use std::net::SocketAddr;
use std::time::Duration;

/// RTMP ingest settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RtmpArgs {
    /// RTMP listen address (default: the media address, port 1935, or a free port when 1935 is
    /// taken). Publish to rtmp://HOST:PORT/live with stream key STREAM?token=TOKEN.
    #[arg(long = "rtmp", env = "RELAYCAST_RTMP", value_name = "ADDR")]
    pub rtmp: Option<SocketAddr>,

    /// RTMPS listen address, served when the node has --tls-cert/--tls-key (default: the media
    /// address, port 1936, or a free port when 1936 is taken).
    #[arg(long = "rtmps", env = "RELAYCAST_RTMPS", value_name = "ADDR")]
    pub rtmps: Option<SocketAddr>,

    /// Do not run the RTMP (and RTMPS) server.
    #[arg(long, env = "RELAYCAST_NO_RTMP")]
    pub no_rtmp: bool,

    /// Most RTMP connections open at once; more are closed at once.
    #[arg(long, env = "RELAYCAST_RTMP_MAX_CONNECTIONS", default_value_t = 64)]
    pub rtmp_max_connections: usize,

    /// Seconds an RTMP client has to finish the handshake.
    #[arg(long, env = "RELAYCAST_RTMP_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub rtmp_handshake_timeout: u64,

    /// Seconds without data after which an RTMP connection is closed.
    #[arg(long, env = "RELAYCAST_RTMP_IDLE_TIMEOUT", default_value_t = 30)]
    pub rtmp_idle_timeout: u64,
}

/// SRT ingest settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SrtArgs {
    /// SRT listen address, UDP (default: the media address, port 8890, or a free port when 8890
    /// is taken). Publish MPEG-TS to srt://HOST:PORT with streamid=publish:STREAM:TOKEN.
    #[arg(long = "srt", env = "RELAYCAST_SRT", value_name = "ADDR")]
    pub srt: Option<SocketAddr>,

    /// Do not run the SRT server.
    #[arg(long, env = "RELAYCAST_NO_SRT")]
    pub no_srt: bool,

    /// Most SRT connections open at once; more are refused in the handshake.
    #[arg(long, env = "RELAYCAST_SRT_MAX_CONNECTIONS", default_value_t = 64)]
    pub srt_max_connections: usize,

    /// SRT receive latency in milliseconds (time to recover lost packets).
    #[arg(long, env = "RELAYCAST_SRT_LATENCY_MS", default_value_t = 120)]
    pub srt_latency_ms: u64,

    /// Seconds without data after which an SRT connection is closed.
    #[arg(long, env = "RELAYCAST_SRT_IDLE_TIMEOUT", default_value_t = 10)]
    pub srt_idle_timeout: u64,
}

impl RtmpArgs {
    /// The handshake timeout.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp_handshake_timeout.max(1))
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.rtmp_idle_timeout.max(1))
    }
}
