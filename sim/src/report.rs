//! The figures of one run, as a table for people and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::params::Params;

/// Mean, percentiles and maximum of a sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Values summarised.
    pub count: usize,
    /// Mean (0 when empty).
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Summarises `values` (nearest-rank percentiles).
    pub fn of(values: &[f64]) -> Summary {
        if values.is_empty() {
            return Summary::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Summary {
            count: v.len(),
            mean: round3(v.iter().sum::<f64>() / v.len() as f64),
            p50: round3(rank(0.5)),
            p99: round3(rank(0.99)),
            max: round3(v[v.len() - 1]),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// How the nodes hit by a failure found the stream again.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Heal {
    /// Nodes killed.
    pub killed: usize,
    /// Live nodes whose upstream was killed.
    pub orphans: usize,
    /// Orphans receiving the stream again by the end of the window.
    pub orphans_healed: usize,
    /// Milliseconds from the failure until each healed orphan received media again: its chain to
    /// the origin whole, then the first keyframe through its new edge (a round trip to the new
    /// upstream, which answers from its cached keyframe).
    pub orphan_ms: Summary,
    /// Live nodes that stopped receiving media (orphans and their subtrees).
    pub affected: usize,
    /// Of those, the nodes receiving media again by the end of the window.
    pub affected_healed: usize,
    /// Milliseconds until each healed affected node received media again (the keyframe through
    /// the orphan above it, carried down one way per hop).
    pub affected_ms: Summary,
}

/// Control traffic per node, bytes per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Control {
    /// Load reports (and the stream announcement) received and sent per node per second.
    pub bytes_per_node_s: Summary,
    /// The origin's bytes per second.
    pub origin_bytes_s: f64,
    /// Mean size of a load report as JSON, bytes.
    pub mean_report_bytes: f64,
    /// Connections per node (mesh links and tree edges under the policy).
    pub connections_per_node: Summary,
    /// Node entries held in the cores' directories at the end, in all.
    pub directory_entries: u64,
}

/// Where viewers ended up.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Viewers {
    /// Viewer arrivals (first joins and re-joins after a kill).
    pub arrivals: u64,
    /// Viewers on live nodes at the end.
    pub placed: u64,
    /// Viewers that got no node (every node full, or the stream never came).
    pub unplaced: u64,
    /// Of those, viewers whose node could not get the stream after every retry.
    pub unplaced_no_stream: u64,
    /// Viewers whose node was killed (they join again when re-joining is on).
    pub lost_with_node: u64,
    /// Viewers still waiting for their node to get the stream at the end.
    pub waiting: u64,
    /// Viewers sent to another node because theirs was full.
    pub redirected: u64,
    /// Placed viewers whose node receives no media at the end.
    pub without_media: u64,
    /// Nodes whose viewers still wait for the stream at the end.
    pub nodes_waiting: usize,
    /// Milliseconds from a node's first want (its first viewer waiting) to the stream being
    /// there: how long first attaches (and retries) take.
    pub stream_wait_ms: Summary,
}

/// The cores' counters, summed over live nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoreCounters {
    /// Re-attaches (upstream lost, stalled or moved).
    pub reattaches: u64,
    /// Re-attaches for a media stall.
    pub stalls: u64,
    /// Relay requests refused or answers abandoned because they would close a cycle.
    pub cycles_refused: u64,
    /// ... because they were over the depth cap.
    pub too_deep: u64,
    /// DHT lookups.
    pub lookups: u64,
    /// Relay requests sent.
    pub relay_requests: u64,
    /// Relay requests refused.
    pub refusals: u64,
    /// Relay requests unanswered within the node driver's timeout.
    pub timeouts: u64,
    /// Of those, requests to a live node without the stream (parked on its own attach).
    pub parked_timeouts: u64,
    /// Standby upstreams connected.
    pub standbys: u64,
    /// Relays in replaced at once by their standby upstream.
    pub standby_switches: u64,
    /// Relay children asked to move by a node over its fan-out.
    pub sheds: u64,
    /// Planned moves to the standby upstream completed (make-before-break).
    pub handovers: u64,
    /// Paths pushed down relay edges ([`relaycast_cluster::core::PathPush`]).
    pub path_pushes: u64,
    /// Relays in re-attached because a pushed path held their node or was too deep.
    pub pushed_invalid: u64,
    /// Relay requests parked because the stream was frozen at the node asked.
    pub frozen_requests: u64,
    /// Outputs of kinds the simulator does not carry out.
    pub unknown_outputs: u64,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The settings.
    pub params: Option<Params>,
    /// Nodes live at the end.
    pub live_nodes: usize,
    /// Nodes ever created (the start plus churn joins).
    pub created_nodes: usize,
    /// Live nodes by depth in the tree (0 is the origin); nodes without the stream are not
    /// counted here.
    pub depth_histogram: BTreeMap<u32, usize>,
    /// The same just before the kill.
    pub depth_before_kill: BTreeMap<u32, usize>,
    /// Live nodes that do not carry the stream at the end.
    pub nodes_without_stream: usize,
    /// Live nodes carrying the stream that receive no media at the end.
    pub carriers_without_media: usize,
    /// The origin's relay children at the end.
    pub origin_fan_out: usize,
    /// Relay children of the nodes that carry the stream.
    pub children: Summary,
    /// Carriers with more relay children than `--max-relay-children` at the end (a standby
    /// took over, and the children asked to move had nowhere to go).
    pub over_cap: usize,
    /// The kill of a fraction of the nodes at once.
    pub kill: Heal,
    /// Churn: nodes leaving one by one.
    pub churn: Heal,
    /// Control traffic and connections.
    pub control: Control,
    /// Viewers.
    pub viewers: Viewers,
    /// Core counters.
    pub counters: CoreCounters,
    /// Loop checks done (one after every event, plus a sweep of every node each second).
    pub loop_checks: u64,
    /// Loop checks that found a loop (only with `count_loops`; otherwise the run fails on the
    /// first).
    pub loops_found: u64,
    /// When the first loop was found, simulated milliseconds.
    pub first_loop_ms: Option<u64>,
    /// Events processed.
    pub events: u64,
    /// Simulated seconds.
    pub simulated_s: f64,
    /// Wall-clock milliseconds the run took (differs between identical runs).
    pub runtime_ms: u64,
    /// Remarks on the run's model.
    pub notes: Vec<String>,
}

impl Report {
    /// A copy without the wall-clock runtime (identical for identical runs).
    pub fn without_runtime(&self) -> Report {
        Report { runtime_ms: 0, ..self.clone() }
    }

    /// The report as a human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let p = self.params.clone().unwrap_or_default();
        let _ = writeln!(
            s,
            "relaycast-sim: {} nodes, {} viewers, policy {}, seed {}, max-relay-children {}, capacity {}, max-depth {}, kill {}, loss {}, churn {}/s",
            p.nodes, p.viewers, p.policy, p.seed, p.max_relay_children, p.capacity, p.max_depth, p.kill, p.loss, p.churn
        );
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<34} {v}");
        };
        let sm = |x: &Summary, unit: &str| {
            format!("mean {:.1}{unit}  p50 {:.1}{unit}  p99 {:.1}{unit}  max {:.1}{unit}  (n={})", x.mean, x.p50, x.p99, x.max, x.count)
        };
        row(&mut s, "live nodes / created", format!("{} / {}", self.live_nodes, self.created_nodes));
        let hist: Vec<String> = self.depth_histogram.iter().map(|(d, n)| format!("{d}:{n}")).collect();
        row(&mut s, "depth histogram (depth:nodes)", hist.join("  "));
        if !self.depth_before_kill.is_empty() {
            let before: Vec<String> = self.depth_before_kill.iter().map(|(d, n)| format!("{d}:{n}")).collect();
            row(&mut s, "  the same before the kill", before.join("  "));
        }
        row(&mut s, "nodes without the stream", self.nodes_without_stream.to_string());
        row(&mut s, "carriers without media", self.carriers_without_media.to_string());
        row(&mut s, "origin fan-out", self.origin_fan_out.to_string());
        row(&mut s, "relay children per carrier", format!("{}  ({} carriers over the cap)", sm(&self.children, ""), self.over_cap));
        for (name, h) in [("kill", &self.kill), ("churn", &self.churn)] {
            if h.killed == 0 {
                continue;
            }
            row(&mut s, &format!("{name}: nodes killed"), h.killed.to_string());
            row(&mut s, &format!("{name}: orphans healed / orphans"), format!("{} / {}", h.orphans_healed, h.orphans));
            row(&mut s, &format!("{name}: orphan media back"), sm(&h.orphan_ms, " ms"));
            row(&mut s, &format!("{name}: subtree healed / cut off"), format!("{} / {}", h.affected_healed, h.affected));
            row(&mut s, &format!("{name}: subtree media back"), sm(&h.affected_ms, " ms"));
        }
        row(&mut s, "control bytes/node/s", sm(&self.control.bytes_per_node_s, ""));
        row(&mut s, "origin control bytes/s", format!("{:.0}", self.control.origin_bytes_s));
        row(&mut s, "mean load report (JSON)", format!("{:.0} bytes", self.control.mean_report_bytes));
        row(&mut s, "connections per node", sm(&self.control.connections_per_node, ""));
        row(&mut s, "directory entries (all cores)", self.control.directory_entries.to_string());
        let v = &self.viewers;
        row(
            &mut s,
            "viewers",
            format!(
                "arrivals {}  placed {}  unplaced {} (no stream {})  lost-with-node {}  waiting {}  redirected {}  without-media {}",
                v.arrivals, v.placed, v.unplaced, v.unplaced_no_stream, v.lost_with_node, v.waiting, v.redirected, v.without_media
            ),
        );
        row(&mut s, "node's first want → stream", sm(&v.stream_wait_ms, " ms"));
        row(&mut s, "nodes still waiting at the end", v.nodes_waiting.to_string());
        let c = &self.counters;
        row(
            &mut s,
            "core counters",
            format!(
                "reattaches {}  stalls {}  cycles-refused {}  too-deep {}  lookups {}  requests {}  refusals {}  timeouts {} (parked {})  standbys {} (switches {})  sheds {}  handovers {}  path-pushes {}  pushed-invalid {}  frozen-requests {}  unknown-outputs {}",
                c.reattaches,
                c.stalls,
                c.cycles_refused,
                c.too_deep,
                c.lookups,
                c.relay_requests,
                c.refusals,
                c.timeouts,
                c.parked_timeouts,
                c.standbys,
                c.standby_switches,
                c.sheds,
                c.handovers,
                c.path_pushes,
                c.pushed_invalid,
                c.frozen_requests,
                c.unknown_outputs
            ),
        );
        match self.first_loop_ms {
            None => row(&mut s, "loops", format!("none ({} checks)", self.loop_checks)),
            Some(at) => row(&mut s, "loops", format!("{} of {} checks found one (first at {at} ms)", self.loops_found, self.loop_checks)),
        }
        row(&mut s, "events / simulated", format!("{} / {:.1} s", self.events, self.simulated_s));
        row(&mut s, "runtime", format!("{:.1} s", self.runtime_ms as f64 / 1000.0));
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}
