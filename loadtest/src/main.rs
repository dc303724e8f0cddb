//! `relaycast-loadtest`: load-tests a Relaycast node (WHIP/WHEP) or a Janus streaming mountpoint.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use relaycast_loadtest::{Report, RunConfig, Target, plot, run};

/// Load test for Relaycast and Janus.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Relaycast base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Stream name.
    #[arg(long, default_value = "loadtest")]
    stream: String,
    /// Publish token (Relaycast).
    #[arg(long, default_value = "")]
    token: String,
    /// Number of viewers.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Measurement window, e.g. 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Viewer threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Force every Relaycast viewer onto one layer (q, h or f).
    #[arg(long)]
    rid: Option<String>,
    /// Watch at this node instead of --url (the publisher's node), e.g. a relay of the mesh.
    #[arg(long)]
    viewer_url: Option<String>,
    /// Before the measured viewers, one unmeasured viewer joins at this node and gets its first
    /// frame (repeatable, in order): demand that grows a relay tree down to --viewer-url.
    #[arg(long = "feeder-url")]
    feeder_urls: Vec<String>,
    /// Server process whose CPU time is read from /proc/PID/stat.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write latency_cdf.svg here.
    #[arg(long)]
    svg_dir: Option<PathBuf>,
    /// Test Janus instead: its HTTP API base, e.g. http://127.0.0.1:8088/janus.
    #[arg(long)]
    janus: Option<String>,
    /// Janus streaming mountpoint id.
    #[arg(long, default_value_t = 1)]
    janus_mountpoint: u64,
    /// Where the Janus mountpoint receives video RTP.
    #[arg(long, default_value = "127.0.0.1:5004")]
    janus_rtp: SocketAddr,
    /// Address viewers and publisher bind and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Frames between periodic keyframes (30 fps).
    #[arg(long, default_value_t = 60)]
    keyframe_interval: u32,
    /// Time between the joins and the measurement window (layer choices settle).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// Bound on waiting for all viewers' first frame.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    join_timeout: Duration,
    /// Each viewer drops this share (percent, 0–50) of the media datagrams it receives before
    /// decoding them, as a lossy link would: its NACKs and the server's resends repair them, and
    /// the report's loss is what stays missing.
    #[arg(long, default_value_t = 0.0)]
    drop_percent: f64,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Draw latency_cdf.svg and cpu_per_viewer.svg from report JSON files.
    Plot {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Report files.
        reports: Vec<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?}"))?;
    Ok(Duration::from_secs_f64(v * mul))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RELAYCAST_LOG").unwrap_or_else(|_| "info,str0m=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(Cmd::Plot { out, reports }) = cli.cmd {
        std::fs::create_dir_all(&out)?;
        let mut rs: Vec<Report> = Vec::new();
        for p in &reports {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            rs.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?);
        }
        plot::latency_cdf(&rs, &out.join("latency_cdf.svg"))?;
        plot::cpu_per_viewer(&rs, &out.join("cpu_per_viewer.svg"))?;
        println!("wrote {}/latency_cdf.svg and cpu_per_viewer.svg", out.display());
        return Ok(());
    }
    let mut cfg = RunConfig::relaycast(&cli.url, &cli.token, &cli.stream, cli.viewers, cli.duration);
    if let Some(j) = &cli.janus {
        cfg.target = Target::Janus { url: j.clone(), mountpoint: cli.janus_mountpoint, rtp: cli.janus_rtp };
    }
    cfg.threads = cli.threads;
    cfg.rid = cli.rid;
    cfg.viewer_url = cli.viewer_url;
    cfg.feeder_urls = cli.feeder_urls;
    cfg.server_pid = cli.server_pid;
    cfg.bind_ip = cli.bind_ip;
    cfg.keyframe_interval = cli.keyframe_interval;
    cfg.join_timeout = cli.join_timeout;
    cfg.warmup = cli.warmup;
    anyhow::ensure!((0.0..=50.0).contains(&cli.drop_percent), "--drop-percent must be between 0 and 50");
    cfg.drop_percent = cli.drop_percent;
    let report = run(cfg)?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &cli.json {
        std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(d) = &cli.svg_dir {
        std::fs::create_dir_all(d)?;
        plot::latency_cdf(std::slice::from_ref(&report), &d.join("latency_cdf.svg"))?;
    }
    let mut summary = report.clone();
    summary.latency_cdf.clear();
    summary.frame_latency_cdf.clear();
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
