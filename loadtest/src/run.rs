//! The orchestrator: starts the publisher, joins the viewers, measures a window, aggregates.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tracing::{info, warn};

use crate::cpu::{CpuSample, machine};
use crate::publisher::{WhipTarget, run_plain_rtp, run_whip};
use crate::source::{LayerSpec, SourceConfig};
use crate::stats::{Efficiency, Egress, JoinPhases, Layers, Loss, Percentiles, Report, cdf};
use crate::viewer::{Phase, ViewerCtx, ViewerSignal, run_viewer};
use crate::Error;

/// Which server is under test.
#[derive(Clone, Debug)]
pub enum Target {
    /// Relaycast: WHIP publisher, WHEP viewers.
    Relaycast {
        /// Base URL, e.g. `http://127.0.0.1:8080`.
        url: String,
        /// Publish token.
        token: String,
    },
    /// Janus streaming plugin: plain RTP publisher, HTTP-API viewers.
    Janus {
        /// API base, e.g. `http://127.0.0.1:8088/janus`.
        url: String,
        /// Mountpoint id.
        mountpoint: u64,
        /// Where the mountpoint listens for video RTP.
        rtp: SocketAddr,
    },
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Server under test.
    pub target: Target,
    /// Stream name (Relaycast).
    pub stream: String,
    /// Number of viewers.
    pub viewers: usize,
    /// Measurement window.
    pub duration: Duration,
    /// Viewer runtime threads.
    pub threads: usize,
    /// Forced layer for Relaycast viewers (`?rid=`).
    pub rid: Option<String>,
    /// Node the viewers watch at, when it is not the publisher's node (a relay of the mesh).
    pub viewer_url: Option<String>,
    /// Nodes where one unmeasured viewer each joins first, in order, each waiting for its first
    /// frame: the demand that grows a relay tree down to `viewer_url` (Relaycast only).
    pub feeder_urls: Vec<String>,
    /// Server process to read CPU time from.
    pub server_pid: Option<u32>,
    /// Address publisher and viewers bind and advertise.
    pub bind_ip: IpAddr,
    /// Viewers signaling at the same time.
    pub join_concurrency: usize,
    /// Bound on waiting for all viewers' first frame.
    pub join_timeout: Duration,
    /// Frames between periodic keyframes.
    pub keyframe_interval: u32,
    /// Time between the joins and the window, so layer choices settle.
    pub warmup: Duration,
    /// Share (percent) of the media datagrams each viewer drops on receipt (a lossy link).
    pub drop_percent: f64,
}

impl RunConfig {
    /// Defaults for a Relaycast target.
    pub fn relaycast(url: &str, token: &str, stream: &str, viewers: usize, duration: Duration) -> Self {
        RunConfig {
            target: Target::Relaycast { url: url.trim_end_matches('/').into(), token: token.into() },
            stream: stream.into(),
            viewers,
            duration,
            threads: 1,
            rid: None,
            viewer_url: None,
            feeder_urls: Vec::new(),
            server_pid: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            join_concurrency: 16,
            join_timeout: Duration::from_secs(30),
            keyframe_interval: 60,
            warmup: Duration::from_secs(5),
            drop_percent: 0.0,
        }
    }
}

/// Reads `relaycast_egress_bytes_total` from a node's `/metrics`, if a URL is given and it answers.
async fn scrape_egress_bytes(client: &reqwest::Client, url: Option<&str>) -> Option<u64> {
    let text = client.get(url?).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("relaycast_egress_bytes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Runs the load test; the publisher gets its own thread, viewers share `threads` threads.
pub fn run(cfg: RunConfig) -> Result<Report, Error> {
    let pub_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .thread_name("viewers")
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(64).build()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = oneshot::channel();
    let single = matches!(cfg.target, Target::Janus { .. });
    let source = SourceConfig {
        layers: if single { LayerSpec::single_f() } else { LayerSpec::simulcast3() },
        keyframe_interval: cfg.keyframe_interval,
        ..SourceConfig::default()
    };
    let rids: Vec<String> = source.layers.iter().map(|l| l.rid.clone()).collect();
    let (signal, publisher) = match &cfg.target {
        Target::Relaycast { url, token } => {
            let t = WhipTarget { endpoint: format!("{url}/whip/{}", cfg.stream), token: token.clone(), bind_ip: cfg.bind_ip };
            let c = client.clone();
            let src = source.clone();
            let h = std::thread::Builder::new()
                .name("publisher".into())
                .spawn(move || pub_rt.block_on(run_whip(t, src, c, ready_tx, stop_rx)))?;
            let q = cfg.rid.as_ref().map(|r| format!("?rid={r}")).unwrap_or_default();
            (ViewerSignal::Whep(format!("{}/whep/{}{q}", cfg.viewer_url.as_deref().unwrap_or(url).trim_end_matches('/'), cfg.stream)), h)
        }
        Target::Janus { url, mountpoint, rtp } => {
            let (dest, src) = (*rtp, source.clone());
            let h = std::thread::Builder::new()
                .name("publisher".into())
                .spawn(move || pub_rt.block_on(run_plain_rtp(dest, src, ready_tx, stop_rx)))?;
            (ViewerSignal::Janus(url.clone(), *mountpoint), h)
        }
    };
    let stop_publisher = |h: std::thread::JoinHandle<Result<_, Error>>| {
        let _ = stop_tx.send(true);
        h.join().map_err(|_| Error::Rtc("publisher thread panicked".into()))?
    };
    // Bounded wait for the publisher's connection.
    let ready = rt.block_on(async { tokio::time::timeout(Duration::from_secs(15), ready_rx).await });
    if !matches!(ready, Ok(Ok(()))) {
        let r = stop_publisher(publisher);
        return Err(match r {
            Err(e) => e,
            Ok(_) => Error::Timeout("publisher connection"),
        });
    }
    info!(viewers = cfg.viewers, "publisher connected; joining viewers");
    let rss_before = cfg.server_pid.and_then(crate::cpu::rss_kib);

    let dtls_cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| Error::Rtc("no DTLS certificate".into()))?;
    let new_ctx = |signal| {
        Arc::new(ViewerCtx {
            signal,
            bind_ip: cfg.bind_ip,
            client: client.clone(),
            with_frames: AtomicUsize::new(0),
            progress: Notify::new(),
            signaling_timeout: Duration::from_secs(20),
            dtls_cert: dtls_cert.clone(),
            drop_per_million: (cfg.drop_percent * 10_000.0) as u32,
        })
    };
    let ctx = new_ctx(signal);
    let (phase_tx, phase_rx) = watch::channel(Phase::Join);
    let self_pid = std::process::id();
    let feeder_signals: Vec<ViewerSignal> = match &cfg.target {
        Target::Relaycast { .. } => {
            let q = cfg.rid.as_ref().map(|r| format!("?rid={r}")).unwrap_or_default();
            cfg.feeder_urls.iter().map(|u| ViewerSignal::Whep(format!("{}/whep/{}{q}", u.trim_end_matches('/'), cfg.stream))).collect()
        }
        Target::Janus { .. } => Vec::new(),
    };
    let result = rt.block_on(async {
        // Feeders: one viewer per node, in order, each with its first frame before the next.
        let mut feeders = Vec::new();
        for fs in feeder_signals {
            let url = match &fs {
                ViewerSignal::Whep(u) => u.clone(),
                ViewerSignal::Janus(u, _) => u.clone(),
            };
            let fctx = new_ctx(fs);
            feeders.push(tokio::spawn(run_viewer(fctx.clone(), phase_rx.clone(), None)));
            let deadline = tokio::time::Instant::now() + cfg.join_timeout;
            while fctx.with_frames.load(Ordering::Relaxed) == 0 {
                let notified = fctx.progress.notified();
                if fctx.with_frames.load(Ordering::Relaxed) > 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    warn!(%url, "feeder viewer has no frame yet; going on");
                    break;
                }
            }
            info!(%url, "feeder viewer joined");
        }
        let sem = Arc::new(Semaphore::new(cfg.join_concurrency.max(1)));
        let mut handles = Vec::with_capacity(cfg.viewers);
        for _ in 0..cfg.viewers {
            let (ctx, ph, sem) = (ctx.clone(), phase_rx.clone(), sem.clone());
            handles.push(tokio::spawn(async move { run_viewer(ctx, ph, Some(sem)).await }));
        }
        // Bounded wait until every viewer has its first frame.
        let deadline = tokio::time::Instant::now() + cfg.join_timeout;
        loop {
            let notified = ctx.progress.notified();
            if ctx.with_frames.load(Ordering::Relaxed) >= cfg.viewers {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                warn!(with_frames = ctx.with_frames.load(Ordering::Relaxed), "join timeout; measuring anyway");
                break;
            }
        }
        info!(with_frames = ctx.with_frames.load(Ordering::Relaxed), "warming up for {:?}", cfg.warmup);
        tokio::time::sleep(cfg.warmup).await;
        info!("measuring for {:?}", cfg.duration);
        let metrics_url = match &cfg.target {
            Target::Relaycast { url, .. } => Some(format!("{}/metrics", cfg.viewer_url.as_deref().unwrap_or(url).trim_end_matches('/'))),
            Target::Janus { .. } => None,
        };
        let egress0 = scrape_egress_bytes(&client, metrics_url.as_deref()).await;
        let server0 = cfg.server_pid.and_then(CpuSample::take);
        let self0 = CpuSample::take(self_pid);
        let t0 = Instant::now();
        let _ = phase_tx.send(Phase::Measure);
        tokio::time::sleep(cfg.duration).await;
        let server1 = cfg.server_pid.and_then(CpuSample::take);
        let self1 = CpuSample::take(self_pid);
        let rss_after = cfg.server_pid.and_then(crate::cpu::rss_kib);
        let window = t0.elapsed();
        let egress1 = scrape_egress_bytes(&client, metrics_url.as_deref()).await;
        let server_egress = egress0.zip(egress1).map(|(a, b)| b.saturating_sub(a));
        let _ = phase_tx.send(Phase::Stop);
        for h in feeders {
            let _ = tokio::time::timeout(Duration::from_secs(30), h).await;
        }
        let mut stats = Vec::new();
        for h in handles {
            match tokio::time::timeout(Duration::from_secs(30), h).await {
                Ok(Ok(Ok(s))) => stats.push(s),
                Ok(Ok(Err(e))) => warn!(error = %e, "viewer failed"),
                Ok(Err(e)) => warn!(error = %e, "viewer task failed"),
                Err(_) => warn!("viewer did not stop in time"),
            }
        }
        (stats, window, server0.zip(server1), self0.zip(self1), server_egress, rss_after)
    });
    let publisher_stats = stop_publisher(publisher)?;
    let (mut stats, window, server_cpu, self_cpu, server_egress, rss_after) = result;
    rt.shutdown_timeout(Duration::from_secs(5));

    let secs = window.as_secs_f64().max(1e-9);
    let mut report = Report {
        server: match cfg.target {
            Target::Relaycast { .. } => "relaycast".into(),
            Target::Janus { .. } => "janus".into(),
        },
        url: match &cfg.target {
            Target::Relaycast { url, .. } | Target::Janus { url, .. } => url.clone(),
        },
        stream: match &cfg.target {
            Target::Relaycast { .. } => cfg.stream.clone(),
            Target::Janus { mountpoint, .. } => format!("mountpoint {mountpoint}"),
        },
        viewers: cfg.viewers,
        duration_s: secs,
        threads: cfg.threads,
        rid: cfg.rid.clone(),
        machine: machine(),
        publisher: publisher_stats,
        ..Report::default()
    };
    let mut lat: Vec<f64> = Vec::new();
    let mut frame_lat: Vec<f64> = Vec::new();
    let mut joins: Vec<f64> = Vec::new();
    let (mut answers, mut connects): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut frames = vec![0u64; rids.len().max(3)];
    let mut finals = vec![0u64; rids.len().max(3)];
    let mut loss = Loss::default();
    let mut egress = Egress::default();
    for s in &mut stats {
        let (expected, received) = s.end_window();
        loss.expected += expected;
        loss.received += received;
        egress.bytes += s.bytes;
        egress.packets += s.datagrams;
        report.viewers_connected += usize::from(s.connected_ns.is_some());
        if let Some(j) = s.join_ms() {
            report.viewers_with_frames += 1;
            joins.push(j);
        }
        answers.extend(s.since_join_ms(s.answer_ns));
        connects.extend(s.since_join_ms(s.connected_ns));
        lat.extend(s.latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
        frame_lat.extend(s.frame_latencies_us.iter().map(|&us| f64::from(us) / 1000.0));
        for (i, c) in s.frames_per_layer.iter().enumerate() {
            if let Some(f) = frames.get_mut(i) {
                *f += c;
            }
        }
        if let Some(f) = s.last_layer.and_then(|l| finals.get_mut(l as usize)) {
            *f += 1;
        }
    }
    loss.ratio = if loss.expected > 0 { 1.0 - loss.received as f64 / loss.expected as f64 } else { 0.0 };
    egress.gbps = egress.bytes as f64 * 8.0 / secs / 1e9;
    egress.packets_per_s = egress.packets as f64 / secs;
    // Cross-check against the node's own counter (`relaycast_egress_bytes_total` on /metrics).
    egress.server_reported_gbps = server_egress.map(|b| b as f64 * 8.0 / secs / 1e9);
    if let Some(server) = egress.server_reported_gbps {
        let ratio = if server > 0.0 { egress.gbps / server } else { 0.0 };
        if !(0.8..=1.25).contains(&ratio) {
            warn!(viewers_gbps = egress.gbps, server_gbps = server, "viewers' egress and the node's counter disagree");
        }
    }
    lat.sort_by(f64::total_cmp);
    frame_lat.sort_by(f64::total_cmp);
    joins.sort_by(f64::total_cmp);
    answers.sort_by(f64::total_cmp);
    connects.sort_by(f64::total_cmp);
    report.latency_ms = Percentiles::of(&lat);
    report.frame_latency_ms = Percentiles::of(&frame_lat);
    report.join_ms = Percentiles::of(&joins);
    report.join_phases_ms = JoinPhases { answer: Percentiles::of(&answers), connected: Percentiles::of(&connects) };
    report.latency_cdf = cdf(&lat, 200);
    report.frame_latency_cdf = cdf(&frame_lat, 200);
    let layer_rids: Vec<String> = if rids.len() == 1 { rids.clone() } else { vec!["q".into(), "h".into(), "f".into()] };
    frames.truncate(layer_rids.len());
    finals.truncate(layer_rids.len());
    report.layers = Layers { rids: layer_rids, frames, viewers_final: finals };
    report.loss = loss;
    report.egress = egress;
    if let Some((a, b)) = self_cpu {
        report.loadgen_cpu = a.until(&b);
    }
    if let Some((a, b)) = server_cpu {
        let cpu = a.until(&b);
        let gbit = report.egress.gbps * secs;
        report.efficiency = Efficiency {
            gbps_per_core: (cpu.cores > 0.0).then(|| report.egress.gbps / cpu.cores),
            cpu_seconds_per_gbit: (gbit > 0.0).then(|| cpu.cpu_seconds / gbit),
            cpu_percent_per_viewer: (cfg.viewers > 0).then(|| cpu.cores * 100.0 / cfg.viewers as f64),
        };
        report.server_cpu = Some(cpu);
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let connected = report.viewers_connected;
        report.server_memory = Some(crate::stats::Memory {
            rss_before_kib: before,
            rss_kib: after,
            per_viewer_kib: (connected > 0).then(|| after.saturating_sub(before) as f64 / connected as f64),
        });
    }
    Ok(report)
}
