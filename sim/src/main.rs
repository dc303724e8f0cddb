//! `relaycast-sim`: runs the mesh simulator and prints its report (a table, or JSON).

use anyhow::Context as _;
use clap::Parser;
use relaycast_sim::{Params, Policy};

/// Simulates a Relaycast mesh: real cluster cores over a seeded network model.
#[derive(Debug, Parser)]
#[command(name = "relaycast-sim", version)]
struct Args {
    /// Nodes at the start (node 0 is the origin of the one stream).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Viewers joining over the join window.
    #[arg(long, default_value_t = 10_000)]
    viewers: u64,
    /// Seed of every random choice (same seed, same report).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Each node's most relay children.
    #[arg(long, default_value_t = 8)]
    max_relay_children: u32,
    /// Each node's viewer capacity.
    #[arg(long, default_value_t = 200)]
    capacity: u32,
    /// Each node's most hops from the origin.
    #[arg(long, default_value_t = relaycast_cluster::path::DEFAULT_MAX_DEPTH)]
    max_depth: u32,
    /// Fraction of the nodes killed at once after the joins (0 for none).
    #[arg(long, default_value_t = 0.1)]
    kill: f64,
    /// What each node knows: `global` (every node's load), `bounded` (tree neighbours and a
    /// random sample of nodes carrying the stream with room) or `onehop` (the loads of its
    /// connections, tree neighbours and a random sample; every carrier from its presences).
    #[arg(long, default_value = "bounded")]
    policy: Policy,
    /// Size of the bounded policy's sample.
    #[arg(long, default_value_t = 32)]
    sample: usize,
    /// Milliseconds between two draws of the bounded sample.
    #[arg(long, default_value_t = 5000)]
    sample_every_ms: u64,
    /// Milliseconds between two views given to a core (the gossip interval).
    #[arg(long, default_value_t = 1000)]
    refresh_ms: u64,
    /// Probability that a relay request, its answer or a path push is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Shortest one-way link latency, milliseconds.
    #[arg(long, default_value_t = 5)]
    latency_min_ms: u64,
    /// Longest one-way link latency, milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_max_ms: u64,
    /// A changed edge's first keyframe comes from the publisher, which answers a request in this
    /// many milliseconds (a publisher that sends keyframes only when asked, like Chromium);
    /// without it the new upstream answers from its cache.
    #[arg(long)]
    publisher_keyframe_ms: Option<u64>,
    /// Seconds over which the viewers join.
    #[arg(long, default_value_t = 20.0)]
    join_secs: f64,
    /// Seconds between the end of the joins and the kill.
    #[arg(long, default_value_t = 10.0)]
    settle_secs: f64,
    /// Seconds observed after the kill (and after the churn).
    #[arg(long, default_value_t = 25.0)]
    heal_secs: f64,
    /// Nodes leaving (and as many joining) per second after the kill's heal window.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// Seconds of churn.
    #[arg(long, default_value_t = 30.0)]
    churn_secs: f64,
    /// Count loops (checks that found one) instead of failing on the first.
    #[arg(long)]
    count_loops: bool,
    /// Times a viewer whose node could not get the stream asks again.
    #[arg(long, default_value_t = 5)]
    viewer_retries: u32,
    /// Redirects a viewer follows from full nodes.
    #[arg(long, default_value_t = 3)]
    max_redirects: u32,
    /// Viewers of killed nodes do not join again elsewhere.
    #[arg(long)]
    no_rejoin: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json_file: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let params = Params {
        nodes: a.nodes,
        viewers: a.viewers,
        seed: a.seed,
        max_relay_children: a.max_relay_children,
        capacity: a.capacity,
        max_depth: a.max_depth,
        kill: a.kill,
        policy: a.policy,
        sample: a.sample,
        sample_every_ms: a.sample_every_ms,
        refresh_ms: a.refresh_ms,
        loss: a.loss,
        latency_min_ms: a.latency_min_ms,
        latency_max_ms: a.latency_max_ms,
        publisher_keyframe_ms: a.publisher_keyframe_ms,
        join_secs: a.join_secs,
        settle_secs: a.settle_secs,
        heal_secs: a.heal_secs,
        churn: a.churn,
        churn_secs: a.churn_secs,
        count_loops: a.count_loops,
        viewer_retries: a.viewer_retries,
        max_redirects: a.max_redirects,
        rejoin: !a.no_rejoin,
    };
    let report = relaycast_sim::run(params).context("simulation failed")?;
    if let Some(path) = &a.json_file {
        let text = serde_json::to_string_pretty(&report).context("report as JSON")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).context("report as JSON")?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
