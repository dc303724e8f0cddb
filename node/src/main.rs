//! `relaycast`: one node with the SFU, signaling and pages embedded.

/// mimalloc instead of the system allocator, with `--features mimalloc` (BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod config;
mod config_file;
mod gateway_access;
mod http_args;
mod ipfs_cmd;
mod nat;
mod rtmp;
mod token_cmd;

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use relaycast_sfu::{Sfu, SfuConfig};
use relaycast_signaling::{AppState, IceServers, router};
use relaycast_turn::{TurnLinks, TurnServer};
use tracing::{info, warn};

use crate::config::Args;

/// How often retention (`--archive-retention`, `--archive-max-bytes`) looks at the archive.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RELAYCAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,str0m=warn,is=warn,dimpl=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> anyhow::Result<()> {
    let mut args = config_file::parse()?;
    init_logs();
    if let Some(path) = &args.config {
        info!(config = %path.display(), "settings read from the config file");
    }
    if let Some(cmd) = args.command.take() {
        return cmd.run(&args);
    }
    str0m::crypto::from_feature_flags().install_process_default();
    http_args::raise_fd_limit();
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
    let api_secret = args
        .api_secret()
        .with_context(|| format!("loading the API secret in {}", args.data_dir.display()))?;
    for url in &args.webhooks {
        relaycast_signaling::webhooks::sender::check_url(url)?;
    }
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http))?;
    let http_ctx = Arc::new(relaycast_signaling::server::HttpContext::new(args.http_opts.limits()));
    let http_server =
        relaycast_signaling::server::HttpServer::new(listener, args.http_opts.server_config(), http_ctx.clone())
            .context("setting up the HTTP listener")?;
    let scheme = http_server.scheme();
    let http_addr = http_server.local_addr()?;
    let bind_ip: IpAddr = if http_addr.ip().is_loopback() && args.public_ip.is_none() {
        http_addr.ip()
    } else {
        args.media_bind
    };
    // Behind a NAT: the public address from STUN or the UPnP router stands in for --public-ip.
    let local_ip = args.candidate_ip(http_addr.ip());
    let (mut nat_report, gateway) = nat::discover(&args, http_addr.ip(), local_ip, bind_ip).await?;
    let candidate_ip = nat_report.public_ip.unwrap_or(local_ip);
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let (tap_tx, tap_rx) = if args.no_archive {
        (None, None)
    } else {
        let (tx, rx) = relaycast_sfu::tap::channel();
        (Some(tx), Some(rx))
    };
    // Publisher starts and ends, for webhooks.
    let (lifecycle_tx, lifecycle_rx) = if args.webhooks.is_empty() {
        (None, None)
    } else {
        let (tx, rx) = relaycast_sfu::lifecycle::channel();
        (Some(tx), Some(rx))
    };
    let sfu = Arc::new(
        Sfu::start(SfuConfig {
            workers,
            bind_ip,
            media_port: args.media_port,
            candidate_ip,
            max_sessions: args.max_sessions,
            publisher_reserve: args.publisher_reserve.unwrap_or((args.max_sessions / 20).max(1)).min(args.max_sessions),
            tap: tap_tx,
            lifecycle: lifecycle_tx,
            dtls_backend: args.dtls_backend,
            send_path: args.send_path,
        })
        .with_context(|| format!("binding media ports from {} on {bind_ip}", args.media_port))?,
    );
    let turn = start_turn(&args, &sfu, candidate_ip, bind_ip).await?;
    let turn_stats = turn.as_ref().map(|(server, _)| server.stats_handle());
    sfu.set_extra_counters(extra_counters(turn_stats.clone(), None));
    let mut state = AppState::new(sfu.clone(), token.clone(), api_secret.clone())
        .with_watch_auth(args.watch_auth)
        .with_http(http_ctx);
    if let Some((_, links)) = &turn {
        state = state.with_ice_servers(Arc::new(TurnIceServers(links.clone())));
    }
    // The router's port mappings: media, TURN and HTTP now, the mesh's ports once it listens.
    let mut mapper = None;
    if let Some(gw) = gateway {
        use relaycast_nat::upnp::Protocol::{Tcp, Udp};
        let mut wanted: Vec<_> = sfu.media_addrs().iter().map(|a| nat::mapping(Udp, a.port(), "media")).collect();
        if let Some((server, _)) = &turn {
            wanted.push(nat::mapping(Udp, server.udp_addr().port(), "turn"));
            if let Some(tcp) = server.tcp_addr() {
                wanted.push(nat::mapping(Tcp, tcp.port(), "turn"));
            }
        }
        wanted.push(nat::mapping(Tcp, http_addr.port(), "http"));
        let m = nat::map_ports(gw, wanted).await;
        nat_report.upnp.mappings = m.mapped();
        mapper = Some(m);
    }
    let host = if http_addr.ip().is_unspecified() { candidate_ip.to_string() } else { http_addr.ip().to_string() };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let listen_url = format!("{scheme}://{host}:{}", http_addr.port());
    // A node whose HTTP port is mapped on the router is announced at its public address.
    let mapped_url = match nat_report.public_ip {
        Some(ip) if nat_report.upnp.mappings.iter().any(|m| m.what == "http") => {
            let ip = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
            Some(format!("{scheme}://{ip}:{}", http_addr.port()))
        }
        _ => None,
    };
    let base = args.http_opts.public_url.clone().or(mapped_url).unwrap_or_else(|| listen_url.clone());

    let blocks = args.data_dir.join("blocks");
    let store = Arc::new(
        relaycast_ipfs::Blockstore::open(&blocks)
            .with_context(|| format!("opening the blockstore in {}", blocks.display()))?,
    );
    let cluster = start_mesh(&args, &sfu, &base, http_addr.ip(), store.clone()).await?;
    if let Some((server, _)) = &turn {
        cluster.feed_turn(server.mesh_peers());
    }
    cluster.set_nat(nat_report.clone());
    state = state.with_cluster(cluster.clone());
    let webhooks = match lifecycle_rx {
        Some(rx) => Some(start_webhooks(&args, api_secret, &cluster, state.webhook_metrics(), rx)?),
        None => None,
    };
    let state = Arc::new(state);
    let auth = state.auth().clone();
    let mut app = router(state)
        .merge(cluster::api::routes(cluster.clone()));
    let mut archive_task = None;
    let mut owners = Arc::default();
    if let Some(tap_rx) = tap_rx {
        let layer = args.archive_layer.as_deref().and_then(relaycast_sfu::stream::layer_of_rid);
        let archiver = relaycast_recorder::Archiver::open(sfu.clone(), store.clone(), &args.data_dir, args.archive_profile, layer)
            .with_context(|| format!("opening the archive in {}", args.data_dir.display()))?;
        owners = archiver.owners();
        let mesh = cluster.mesh().clone();
        // The origin follows its own streams' segment topics to learn which nodes copied them.
        // Each archived CID is provided on the DHT(s) by every node that stores it.
        let archiver = archiver.with_announcer(Arc::new(move |seg| {
            mesh.follow_segments(&seg.stream, true);
            mesh.announce_segment(&seg);
            mesh.provide(&seg.cid);
            mesh.provide(&seg.init);
        }));
        let mesh = cluster.mesh().clone();
        let signer = mesh.clone();
        let archiver = archiver.with_signer(Arc::new(move |seg| signer.sign_segment(seg)));
        let (held_mesh, live_mesh, url_mesh, node_mesh) = (mesh.clone(), mesh.clone(), mesh.clone(), mesh.clone());
        // Under --watch-auth the origin's archive API wants a watch grant: the mesh shares the
        // API secret, so this node mints a short one for the stream it copies.
        let token: Option<relaycast_recorder::copies::WatchToken> = args.watch_auth.then(|| {
            let auth = auth.clone();
            Arc::new(move |stream: &str| {
                let now = relaycast_signaling::token::unix_now();
                auth.verifier().mint(&relaycast_signaling::token::Claims {
                    exp: now + 60,
                    nbf: None,
                    iat: Some(now),
                    sub: Some("relaycast-copy".into()),
                    grants: relaycast_signaling::token::Grants { watch: vec![stream.to_owned()], ..Default::default() },
                })
            }) as relaycast_recorder::copies::WatchToken
        });
        let hooks = relaycast_recorder::copies::Hooks {
            source: Arc::new(mesh.clone()),
            announce: Arc::new(move |held| {
                held_mesh.provide(&held.cid);
                held_mesh.announce_held(&held);
            }),
            live: Arc::new(move |stream: &str| live_mesh.live_elsewhere(stream).is_some()),
            archive_url: Arc::new(move |stream: &str| url_mesh.live_elsewhere(stream).map(|(_, url)| url).filter(|u| !u.is_empty())),
            node_url: Arc::new(move |peer: &str| {
                let peer = peer.parse::<relaycast_mesh::PeerId>().ok()?;
                node_mesh.directory().node(&peer).map(|n| n.http_url.clone()).filter(|u| !u.is_empty())
            }),
            token,
        };
        let copies = relaycast_recorder::copies::Copies::open(mesh.peer_id(), store.clone(), &args.data_dir, hooks, archiver.owners(), archiver.stats())
        .with_context(|| format!("opening the archive's copies in {}", args.data_dir.display()))?;
        tokio::spawn(copies.clone().run());
        let archiver = archiver.with_copies(copies.clone());
        let archiver = archiver
            .with_pin_to(args.pin_to.clone())
            .with_context(|| format!("opening the pin queue in {}", args.data_dir.display()))?;
        sfu.set_extra_counters(extra_counters(turn_stats.clone(), Some(archiver.stats())));
        // A finished recording's VOD root is provided on the DHT(s) and reported to webhooks.
        let hooks = webhooks.as_ref().map(|w| w.hooks.clone());
        let vod_mesh = cluster.mesh().clone();
        let archiver = archiver.with_on_finished(Arc::new(move |stream, vod, segments| {
            vod_mesh.provide(vod);
            if let Some(h) = &hooks {
                h.recording_finished(stream, vod, segments);
            }
        }));
        // Volunteers copy short-handed streams while the archive is under 90 % of its budget.
        // (After the archiver's `with_*` builders: each needs the only reference to it.)
        let volunteer = relaycast_recorder::volunteer::Config {
            replicas: usize::from(args.mesh.replicas),
            archive_node: args.mesh.archive_node,
            ..Default::default()
        };
        let budget = args.archive_max_bytes;
        let sized = archiver.clone();
        let room: cluster::Room = Arc::new(move || budget.is_none_or(|max| sized.archive_bytes() < max / 10 * 9));
        cluster.set_copies(copies, volunteer, room);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        archive_task = Some((stop_tx, tokio::spawn(archiver.clone().run(tap_rx, stop_rx))));
        let retention = relaycast_recorder::retention::Policy { max_age: args.archive_retention, max_bytes: args.archive_max_bytes };
        if !retention.is_off() {
            info!(max_age = ?retention.max_age, max_bytes = ?retention.max_bytes, "archive retention on");
            tokio::spawn(archiver.clone().run_retention(retention, RETENTION_EVERY));
        }
        let cl = cluster.clone();
        let origin: relaycast_recorder::routes::OriginLookup = Arc::new(move |stream: &str| cl.origin_url(stream));
        app = app.merge(relaycast_recorder::routes::routes(archiver, Some(origin), auth.clone()));
    }
    // Under --watch-auth a recording's files need a watch grant for its stream.
    app = app.merge(if args.watch_auth {
        relaycast_ipfs::router_with_access(store.clone(), Arc::new(gateway_access::WatchGate { owners, auth: auth.clone() }))
    } else {
        relaycast_ipfs::router(store.clone())
    });

    let rtmp = rtmp::start(&args.rtmp, args.http_opts.server_config().tls, app.clone(), &sfu, bind_ip, candidate_ip).await?;
    let srt = rtmp::start_srt(&args.srt, app.clone(), &sfu, bind_ip, candidate_ip).await?;

    // The mesh's ports, once its listeners have addresses.
    let p2p_addrs = cluster.mesh().listen_addrs().await;
    if let Some(m) = &mapper {
        m.add(nat::p2p_mappings(&p2p_addrs)).await;
        nat_report.upnp.mappings = m.mapped();
        cluster.set_nat(nat_report.clone());
    }
    let media: Vec<String> = sfu.media_addrs().iter().map(|a| a.to_string()).collect();
    println!("relaycast {} ready", env!("CARGO_PKG_VERSION"));
    println!("  streamer: {base}/streamer.html?stream=room#token={token}");
    println!("  viewer:   {base}/viewer.html?stream=room");
    println!("  publish token: {token}");
    println!("  media: {}", media.join(" "));
    // The mesh starts once its listeners have addresses.
    for addr in p2p_addrs {
        println!("  p2p: {addr}");
    }
    println!("  http: {listen_url}");
    if let Some((server, _)) = &turn {
        println!("  turn: {}", server.udp_addr());
    }
    if let (Some(ip), Some(source)) = (nat_report.public_ip, nat_report.source) {
        println!("  public: {ip} ({})", source.as_str());
    }
    for m in &nat_report.upnp.mappings {
        println!("  upnp: {} {} ({})", m.protocol, m.port, m.what);
    }
    for line in rtmp.banner.iter().chain(&srt) {
        println!("{line}");
    }
    info!(http = %http_addr, media = ?media, "node started");

    http_server.serve(app, shutdown_signal()).await.context("HTTP server")?;
    info!("shutting down: closing sessions");
    cluster.shutdown().await;
    if let Some(m) = mapper {
        m.close().await;
    }
    if let Some((server, _)) = &turn
        && let Err(e) = server.close().await
    {
        warn!(error = %e, "closing the TURN server");
    }
    let sfu2 = sfu.clone();
    tokio::task::spawn_blocking(move || sfu2.shutdown()).await.ok();
    if let Some((stop, task)) = archive_task {
        // Publishers are gone: finish their recordings (last segments, VOD roots).
        let _ = stop.send(());
        if tokio::time::timeout(std::time::Duration::from_secs(15), task).await.is_err() {
            warn!("archive did not finish within 15 s; interrupted recordings are closed at the next start");
        }
    }
    if let Some(w) = webhooks {
        // stream.ended and recording.finished of the sessions just closed get one attempt.
        w.finish().await;
    }
    info!("bye");
    Ok(())
}

/// The webhook sender and the task that feeds it the media plane's publisher starts and ends.
struct WebhookTasks {
    hooks: relaycast_signaling::webhooks::Webhooks,
    sender: relaycast_signaling::webhooks::sender::SenderTask,
    lifecycle_stop: tokio::sync::oneshot::Sender<()>,
    lifecycle: tokio::task::JoinHandle<()>,
}

impl WebhookTasks {
    /// Forwards the last publisher ends, then sends what is queued (at most 5 s).
    async fn finish(self) {
        let _ = self.lifecycle_stop.send(());
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.lifecycle).await;
        drop(self.hooks);
        self.sender.finish(std::time::Duration::from_secs(5)).await;
    }
}

/// Starts webhooks for `--webhook` URLs, signed with the API secret, naming this node by peer id.
fn start_webhooks(
    args: &Args,
    api_secret: String,
    cluster: &cluster::Cluster,
    metrics: Arc<relaycast_signaling::webhooks::WebhookMetrics>,
    lifecycle: tokio::sync::mpsc::Receiver<relaycast_sfu::lifecycle::StreamLifecycle>,
) -> anyhow::Result<WebhookTasks> {
    use relaycast_signaling::webhooks::{WebhookConfig, Webhooks, forward_lifecycle};
    let node = cluster.mesh().peer_id().to_string();
    let cfg = WebhookConfig::new(args.webhooks.clone(), api_secret, node)?;
    let (hooks, sender) = Webhooks::start(cfg, metrics)?;
    let (lifecycle_stop, stop_rx) = tokio::sync::oneshot::channel();
    let lifecycle = tokio::spawn(forward_lifecycle(lifecycle, hooks.clone(), stop_rx));
    Ok(WebhookTasks { hooks, sender, lifecycle_stop, lifecycle })
}

/// Starts the libp2p mesh and the node's part in it.
async fn start_mesh(
    args: &Args,
    sfu: &Arc<Sfu>,
    base: &str,
    http_ip: IpAddr,
    store: Arc<relaycast_ipfs::Blockstore>,
) -> anyhow::Result<Arc<cluster::Cluster>> {
    let m = &args.mesh;
    let mut cfg = relaycast_mesh::MeshConfig::new(&args.data_dir, base);
    if !m.p2p.is_empty() {
        cfg.listen = m.p2p.clone();
    } else if http_ip.is_loopback() {
        // A loopback-only node keeps its mesh on loopback too.
        cfg.listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
    }
    cfg.bootstrap = m.bootstrap.clone();
    cfg.mdns = !m.no_mdns;
    cfg.max_peers = m.max_peers;
    cfg.ipfs_dht = m.ipfs_dht;
    cfg.ipfs_bootstrap = m.ipfs_bootstrap.clone();
    cfg.mesh_key = m.mesh_key.clone();
    cfg.trusted_peers = m.trusted_peers.clone();
    cfg.trusted_url_hosts = m.trusted_url_hosts.clone();
    cfg.region = m.region.clone();
    cfg.blocks = Some(Arc::new(StoreBlocks(store)));
    // Under --watch-auth recordings' blocks go to mesh nodes only, not to any IPFS peer.
    cfg.bitswap_mesh_only = args.watch_auth;
    let (mesh, events) = relaycast_mesh::Mesh::start(cfg).await.context("starting the libp2p mesh")?;
    info!(peer_id = %mesh.peer_id(), "mesh started");
    let capacity = u32::try_from(args.max_sessions).unwrap_or(u32::MAX);
    let cfg = relaycast_cluster::Config {
        me: mesh.peer_id(),
        http_url: base.to_string(),
        region: m.region.clone(),
        capacity,
        max_relay_children: m.max_relay_children,
        max_depth: m.max_depth,
        trusted: m.trusted_peers.clone(),
        media_addrs: sfu.media_addrs().to_vec(),
    };
    let cluster = cluster::Cluster::new(sfu.clone(), mesh, cfg);
    tokio::spawn(cluster.clone().run(events));
    Ok(cluster)
}

/// The node's blockstore as the source of blocks served over Bitswap.
pub(crate) struct StoreBlocks(pub(crate) Arc<relaycast_ipfs::Blockstore>);

impl relaycast_mesh::BlockProvider for StoreBlocks {
    fn get(&self, cid: &relaycast_mesh::Cid) -> Option<Vec<u8>> {
        match self.0.get(cid) {
            Ok(found) => found,
            Err(e) => {
                warn!(%cid, error = %e, "reading a block for bitswap");
                None
            }
        }
    }

    fn has(&self, cid: &relaycast_mesh::Cid) -> bool {
        self.0.has(cid)
    }

    fn on_arrival(&self, hook: relaycast_mesh::bitswap::ArrivalHook) -> bool {
        self.0.on_durable(hook)
    }
}

/// The node's TURN server as the source of `Link` ICE servers in WHIP/WHEP answers.
struct TurnIceServers(TurnLinks);

impl IceServers for TurnIceServers {
    fn link_headers(&self) -> Vec<String> {
        self.0.link_headers(&relaycast_signaling::random_hex(6))
    }
}

/// Starts the TURN server when `--turn` is given; the SFU's media addresses are always relayable.
/// Default TURN port when `--turn` is not given.
const DEFAULT_TURN_PORT: u16 = 3478;

/// Starts the built-in TURN server: at `--turn ADDR`, or by default on the media address at port
/// 3478 (any free port when 3478 is taken); `--no-turn` turns it off.
/// The TURN server's refusal counters and the archive's counts, for `/metrics`.
fn extra_counters(
    turn: Option<Arc<relaycast_turn::Stats>>,
    archive: Option<Arc<relaycast_recorder::stats::ArchiveStats>>,
) -> relaycast_sfu::metrics::ExtraCounters {
    use relaycast_sfu::metrics::ExtraCounter;
    use std::sync::atomic::Ordering::Relaxed;
    Arc::new(move || {
        let c = |name, help, v: &std::sync::atomic::AtomicU64| ExtraCounter { name, help, value: v.load(Relaxed) };
        let mut out = archive.as_ref().map(|a| a.counters()).unwrap_or_default();
        let Some(stats) = &turn else { return out };
        out.extend([
            c("relaycast_turn_challenged", "Unauthenticated TURN requests answered with a stateless 401 nonce", &stats.challenged),
            c("relaycast_turn_unauthorized", "Signed TURN requests refused for bad or expired credentials", &stats.unauthorized),
            c("relaycast_turn_forbidden_peers", "TURN permissions or channels refused by the peer filter", &stats.forbidden),
            c("relaycast_turn_over_quota", "TURN allocations refused over a per-user or per-client quota", &stats.over_quota),
            c("relaycast_turn_garbage", "TURN datagrams or frames dropped as neither STUN nor ChannelData", &stats.garbage),
            c("relaycast_turn_unallocated", "TURN ChannelData or indications dropped from clients without an allocation", &stats.unallocated),
            c("relaycast_turn_relay_dropped", "Relayed TURN packets dropped by the filter, bandwidth limit or lifetime", &stats.dropped),
        ]);
        out
    })
}

async fn start_turn(
    args: &Args,
    sfu: &Sfu,
    candidate_ip: IpAddr,
    bind_ip: IpAddr,
) -> anyhow::Result<Option<(TurnServer, TurnLinks)>> {
    if args.no_turn {
        return Ok(None);
    }
    let own = sfu.media_addrs().to_vec();
    let explicit = args.turn.turn.is_some();
    let mut turn_args = args.turn.clone();
    turn_args.turn.get_or_insert(std::net::SocketAddr::new(bind_ip, DEFAULT_TURN_PORT));
    let Some(mut cfg) = turn_args
        .config(&args.data_dir, own)
        .with_context(|| format!("loading the TURN secret in {}", args.data_dir.display()))?
    else {
        return Ok(None);
    };
    if cfg.relay_ip.is_none() && cfg.listen.ip().is_unspecified() {
        cfg.relay_ip = Some(candidate_ip);
    }
    let secret = cfg.secret.clone();
    let server = match TurnServer::start(cfg.clone()).await {
        Ok(s) => s,
        Err(e) if !explicit => {
            warn!(error = %e, port = DEFAULT_TURN_PORT, "default TURN port unavailable; using a free port");
            cfg.listen.set_port(0);
            TurnServer::start(cfg).await.context("starting the TURN server")?
        }
        Err(e) => return Err(anyhow::Error::new(e).context("starting the TURN server")),
    };
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
