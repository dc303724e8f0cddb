//! The mesh's counters in the OpenMetrics text format (`/metrics`): refusals, relays and their
//! failovers, path pushes, gossip traffic and bitswap.

use std::sync::atomic::Ordering;

use super::{Cluster, PushStats};

impl Cluster {
    /// The mesh's refusal counters in the OpenMetrics text format.
    pub(super) fn metrics(&self) -> String {
        use std::fmt::Write as _;
        let d = self.mesh.directory();
        let r = self.core().counters();
        let mut out = String::new();
        // Counter families with one label (`{name}_total{label="value"}`).
        let mut labelled = |name: &str, help: &str, label: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (value, v) in rows {
                let _ = writeln!(out, "{name}_total{{{label}=\"{value}\"}} {v}");
            }
        };
        labelled(
            "relaycast_mesh_refused",
            "Mesh inputs refused, by reason",
            "reason",
            &[
                ("invalid_gossip", d.rejected.saturating_sub(d.rejected_segments).saturating_sub(d.rejected_forged)),
                ("forged_origin", d.rejected_forged),
                ("competing_claim", d.rejected_claims),
                ("http_url", d.rejected_urls),
                ("segment_not_from_origin", d.rejected_segments),
                ("relay_request", d.refused_relay_requests),
                ("connection_limit", d.denied_connections),
                ("media_addr", d.rejected_media_addrs),
                ("relay_cycle", r.cycles),
                ("relay_depth", r.too_deep),
                ("relay_path", r.bad_paths),
                ("relay_stale_path", r.stale_paths),
                ("pushed_path", r.pushed_invalid),
            ],
        );
        labelled(
            "relaycast_mesh_stream_not_found",
            "Requests for streams answered as absent without waiting, by reason",
            "reason",
            &[
                ("alone", r.alone),
                ("not_in_directory", r.not_in_directory),
                ("negative_cache", r.negative_cache),
                ("too_many_lookups", r.too_many_lookups),
                ("attach_locks_full", r.attaches_full),
            ],
        );
        // Relays, their failovers and planned moves.
        labelled(
            "relaycast_mesh_relay_full_refusals",
            "Relay requests refused because this node's fan-out was full, by edge kind",
            "edge",
            &[("fed", r.full_refusals), ("standby", r.standby_full_refusals)],
        );
        labelled(
            "relaycast_mesh_relay_handovers",
            "Planned moves to the standby upstream, by result (make-before-break)",
            "result",
            &[("done", r.handovers), ("failed", r.handovers_failed)],
        );
        out.push_str(&path_push_metrics(&self.push_stats, &d));
        for (name, help, v) in [
            (
                "relaycast_mesh_relay_stalls",
                "Relays in re-attached because their upstream sent no media for 2 s while connected",
                r.stalls,
            ),
            (
                "relaycast_mesh_relay_reattaches",
                "Relays in re-attached because their upstream was lost, stalled or moved",
                r.reattaches,
            ),
            (
                "relaycast_mesh_relay_standbys",
                "Standby upstreams connected beside relays in",
                r.standbys,
            ),
            (
                "relaycast_mesh_relay_standby_switches",
                "Relays in replaced at once by their standby upstream",
                r.standby_switches,
            ),
            (
                "relaycast_mesh_relay_sheds",
                "Relay children asked to move to their standby upstream (this node over its fan-out)",
                r.sheds,
            ),
            (
                "relaycast_mesh_relay_path_pushes",
                "Paths queued for relay children by the core (on each change and re-sent each second)",
                r.path_pushes,
            ),
            (
                "relaycast_mesh_relay_frozen_requests",
                "Relay requests parked because an ancestor is re-attaching",
                r.frozen_requests,
            ),
            (
                "relaycast_mesh_lookups",
                "DHT lookups started for streams",
                r.lookups,
            ),
            (
                "relaycast_mesh_streams_taken",
                "Local publishes whose name another node holds",
                r.taken,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {v}");
        }
        let unwatched = self.volunteers.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, |v| v.unwatched);
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_volunteer_unwatched_streams Live streams of the mesh the archive volunteers do not watch (over their bound of 256)\n# TYPE relaycast_mesh_volunteer_unwatched_streams gauge\nrelaycast_mesh_volunteer_unwatched_streams {unwatched}"
        );
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_provided_evicted Archived CIDs no longer announced on the DHTs because newer ones filled the provider list\n# TYPE relaycast_mesh_provided_evicted counter\nrelaycast_mesh_provided_evicted_total {}",
            d.provided_evicted
        );
        let _ = writeln!(
            out,
            "# HELP relaycast_mesh_withdrawals Origin claims freed by their origin's signed withdrawal\n# TYPE relaycast_mesh_withdrawals counter\nrelaycast_mesh_withdrawals_total {}",
            d.withdrawals
        );
        out.push_str(&gossip_metrics(&self.mesh.gossip_traffic(), self.mesh.connected_peers()));
        if let Some(b) = self.mesh.bitswap_stats() {
            out.push_str(&bitswap_metrics(&b));
        }
        out
    }
}

/// The mesh's control-plane traffic in the OpenMetrics text format: gossip messages and bytes by
/// topic (per-stream topics summed by family) and direction, and the connected peers.
fn gossip_metrics(traffic: &relaycast_mesh::traffic::GossipTraffic, connected: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, help, bytes) in [
        (
            "relaycast_mesh_gossip_bytes",
            "Gossip message bytes by topic and direction: sent counts each copy sent to a peer (own and forwarded), received each copy received (duplicates included)",
            true,
        ),
        ("relaycast_mesh_gossip_messages", "Gossip message copies by topic and direction (as the bytes)", false),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((topic, dir), c) in traffic {
            let v = if bytes { c.bytes } else { c.messages };
            let _ = writeln!(out, "{name}_total{{topic=\"{topic}\",direction=\"{}\"}} {v}", dir.as_str());
        }
    }
    let _ = writeln!(
        out,
        "# HELP relaycast_mesh_connected_peers Mesh peers with an open connection\n# TYPE relaycast_mesh_connected_peers gauge\nrelaycast_mesh_connected_peers {connected}"
    );
    out
}

/// The path pushes' counters in the OpenMetrics text format: sent (handed to the mesh),
/// received (checked and given to the core) and dropped, in total and by reason.
fn path_push_metrics(s: &PushStats, d: &relaycast_mesh::Directory) -> String {
    use std::fmt::Write as _;
    let queue_full = s.queue_full.load(Ordering::Relaxed);
    let out_of_bounds = s.out_of_bounds.load(Ordering::Relaxed);
    let dropped = queue_full.saturating_add(out_of_bounds).saturating_add(d.path_pushes_failed).saturating_add(d.path_pushes_refused);
    let mut out = String::new();
    let name = "relaycast_mesh_path_pushes";
    let _ = writeln!(out, "# HELP {name} Paths pushed down relay edges, by direction\n# TYPE {name} counter");
    for (direction, v) in [("sent", s.sent.load(Ordering::Relaxed)), ("received", d.path_pushes_received), ("dropped", dropped)] {
        let _ = writeln!(out, "{name}_total{{direction=\"{direction}\"}} {v}");
    }
    let name = "relaycast_mesh_path_pushes_dropped";
    let _ = writeln!(out, "# HELP {name} Path pushes dropped, by reason\n# TYPE {name} counter");
    for (reason, v) in [
        ("queue_full", queue_full),
        ("out_of_bounds", out_of_bounds),
        ("not_delivered", d.path_pushes_failed),
        ("refused_on_receipt", d.path_pushes_refused),
    ] {
        let _ = writeln!(out, "{name}_total{{reason=\"{reason}\"}} {v}");
    }
    out
}

/// The Bitswap server's counters in the OpenMetrics text format: its refusals by reason (inbound
/// streams over the per-peer or total limit, malformed or oversized messages) and its traffic.
fn bitswap_metrics(b: &relaycast_mesh::bitswap::Stats) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP relaycast_mesh_bitswap_refused Bitswap inbound streams dropped, by reason\n# TYPE relaycast_mesh_bitswap_refused counter"
    );
    let _ = writeln!(out, "relaycast_mesh_bitswap_refused_total{{reason=\"streams_limit\"}} {}", b.streams_refused);
    let _ = writeln!(out, "relaycast_mesh_bitswap_refused_total{{reason=\"bad_message\"}} {}", b.bad_messages);
    let _ = writeln!(out, "relaycast_mesh_bitswap_refused_total{{reason=\"not_mesh_peer\"}} {}", b.peers_refused);
    for (name, help, v) in [
        ("relaycast_mesh_bitswap_messages_received", "Bitswap messages received", b.messages_received),
        ("relaycast_mesh_bitswap_blocks_sent", "Blocks sent over Bitswap", b.blocks_sent),
        ("relaycast_mesh_bitswap_block_bytes_sent", "Block bytes sent over Bitswap", b.bytes_sent),
        ("relaycast_mesh_bitswap_answered_on_arrival", "Waiting Bitswap wants answered when their block arrived", b.answered_on_arrival),
        ("relaycast_mesh_bitswap_wants_not_kept", "Bitswap wants not kept waiting (per-peer or total limit)", b.wants_not_kept),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {v}");
    }
    let _ = writeln!(
        out,
        "# HELP relaycast_mesh_bitswap_wants_waiting Bitswap wants waiting for their block\n# TYPE relaycast_mesh_bitswap_wants_waiting gauge\nrelaycast_mesh_bitswap_wants_waiting {}",
        b.wants_waiting
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_traffic_and_connected_peers_are_exported() {
        use relaycast_mesh::traffic::{Counts, Direction, GossipTraffic};
        let mut t = GossipTraffic::new();
        t.insert(("relaycast/load/1".into(), Direction::Sent), Counts { messages: 3, bytes: 900 });
        t.insert(("relaycast/segments/*/1".into(), Direction::Received), Counts { messages: 2, bytes: 40 });
        let text = relaycast_signaling::server::metrics::append_families("# EOF\n".into(), &gossip_metrics(&t, 7));
        assert!(text.contains("relaycast_mesh_gossip_bytes_total{topic=\"relaycast/load/1\",direction=\"sent\"} 900\n"), "{text}");
        assert!(text.contains("relaycast_mesh_gossip_messages_total{topic=\"relaycast/segments/*/1\",direction=\"received\"} 2\n"));
        assert!(text.contains("# TYPE relaycast_mesh_connected_peers gauge\nrelaycast_mesh_connected_peers 7\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn path_pushes_are_exported_by_direction_and_drop_reason() {
        let stats = PushStats::default();
        stats.sent.store(5, Ordering::Relaxed);
        stats.queue_full.store(1, Ordering::Relaxed);
        stats.out_of_bounds.store(2, Ordering::Relaxed);
        let dir = relaycast_mesh::Directory { path_pushes_received: 7, path_pushes_refused: 3, path_pushes_failed: 4, ..Default::default() };
        let text = relaycast_signaling::server::metrics::append_families("# EOF\n".into(), &path_push_metrics(&stats, &dir));
        assert!(text.contains("# TYPE relaycast_mesh_path_pushes counter\n"), "{text}");
        assert!(text.contains("relaycast_mesh_path_pushes_total{direction=\"sent\"} 5\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_total{direction=\"received\"} 7\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_total{direction=\"dropped\"} 10\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_dropped_total{reason=\"queue_full\"} 1\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_dropped_total{reason=\"out_of_bounds\"} 2\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_dropped_total{reason=\"not_delivered\"} 4\n"));
        assert!(text.contains("relaycast_mesh_path_pushes_dropped_total{reason=\"refused_on_receipt\"} 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn bitswap_refusals_are_exported() {
        let stats = relaycast_mesh::bitswap::Stats { streams_refused: 7, bad_messages: 2, peers_refused: 5, blocks_sent: 3, ..Default::default() };
        let text = relaycast_signaling::server::metrics::append_families("# EOF\n".into(), &bitswap_metrics(&stats));
        assert!(text.contains("relaycast_mesh_bitswap_refused_total{reason=\"streams_limit\"} 7\n"), "{text}");
        assert!(text.contains("relaycast_mesh_bitswap_refused_total{reason=\"bad_message\"} 2\n"));
        assert!(text.contains("relaycast_mesh_bitswap_refused_total{reason=\"not_mesh_peer\"} 5\n"));
        assert!(text.contains("# TYPE relaycast_mesh_bitswap_blocks_sent counter\nrelaycast_mesh_bitswap_blocks_sent_total 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
