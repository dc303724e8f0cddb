//! `relaycast`: one node with the SFU, signaling and pages embedded.

mod config;
mod ipfs_cmd;

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use relaycast_sfu::{Sfu, SfuConfig};
use relaycast_signaling::{AppState, IceServers, router};
use relaycast_turn::{TurnLinks, TurnServer};
use tracing::{info, warn};

use crate::config::Args;

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RELAYCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,str0m=warn,is=warn,dimpl=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    init_logs();
    if let Some(cmd) = args.command.take() {
        return cmd.run();
    }
    str0m::crypto::from_feature_flags().install_process_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let token = args.publish_token.clone().unwrap_or_else(|| relaycast_signaling::random_hex(12));
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http))?;
    let http_addr = listener.local_addr()?;
    let candidate_ip = args.candidate_ip(http_addr.ip());
    let bind_ip: IpAddr = if http_addr.ip().is_loopback() && args.public_ip.is_none() {
        http_addr.ip()
    } else {
        args.media_bind
    };
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let sfu = Arc::new(
        Sfu::start(SfuConfig {
            workers,
            bind_ip,
            media_port: args.media_port,
            candidate_ip,
            max_sessions: args.max_sessions,
        })
        .with_context(|| format!("binding media ports from {} on {bind_ip}", args.media_port))?,
    );
    let turn = start_turn(&args, &sfu, candidate_ip).await?;
    let mut state = AppState::new(sfu.clone(), token.clone());
    if let Some((_, links)) = &turn {
        state = state.with_ice_servers(Arc::new(TurnIceServers(links.clone())));
    }
    let state = Arc::new(state);
    let app = router(state);

    let host = if http_addr.ip().is_unspecified() { candidate_ip.to_string() } else { http_addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let base = format!("http://{host}:{}", http_addr.port());
    let media: Vec<String> = sfu.media_addrs().iter().map(|a| a.to_string()).collect();
    println!("relaycast {} ready", env!("CARGO_PKG_VERSION"));
    println!("  streamer: {base}/streamer.html?stream=room#token={token}");
    println!("  viewer:   {base}/viewer.html?stream=room");
    println!("  publish token: {token}");
    println!("  media: {}", media.join(" "));
    println!("  http: {base}");
    if let Some((server, _)) = &turn {
        println!("  turn: {}", server.udp_addr());
    }
    info!(http = %http_addr, media = ?media, "node started");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("HTTP server")?;
    info!("shutting down: closing sessions");
    if let Some((server, _)) = &turn
        && let Err(e) = server.close().await
    {
        warn!(error = %e, "closing the TURN server");
    }
    let sfu2 = sfu.clone();
    tokio::task::spawn_blocking(move || sfu2.shutdown()).await.ok();
    info!("bye");
    Ok(())
}

/// The node's TURN server as the source of `Link` ICE servers in WHIP/WHEP answers.
struct TurnIceServers(TurnLinks);

impl IceServers for TurnIceServers {
    fn link_headers(&self) -> Vec<String> {
        self.0.link_headers(&relaycast_signaling::random_hex(6))
    }
}

/// Starts the TURN server when `--turn` is given; the SFU's media addresses are always relayable.
async fn start_turn(args: &Args, sfu: &Sfu, candidate_ip: IpAddr) -> anyhow::Result<Option<(TurnServer, TurnLinks)>> {
    let own = sfu.media_addrs().to_vec();
    let Some(mut cfg) = args
        .turn
        .config(&args.data_dir, own)
        .with_context(|| format!("loading the TURN secret in {}", args.data_dir.display()))?
    else {
        return Ok(None);
    };
    if cfg.relay_ip.is_none() && cfg.listen.ip().is_unspecified() {
        cfg.relay_ip = Some(candidate_ip);
    }
    let secret = cfg.secret.clone();
    let server = TurnServer::start(cfg).await.context("starting the TURN server")?;
    let addr = server.udp_addr();
    let host = if addr.ip().is_unspecified() { candidate_ip } else { addr.ip() };
    let links = TurnLinks {
        host,
        port: addr.port(),
        tls: server.tls(),
        tcp: server.tcp_addr().is_some(),
        secret,
        ttl: args.turn.credential_ttl(),
    };
    Ok(Some((server, links)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
