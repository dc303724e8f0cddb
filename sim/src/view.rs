//! What each node knows of the mesh under a view policy, and what that knowledge costs in
//! control bytes.

use std::time::{Duration, Instant};

use relaycast_mesh::{Directory, NodeEntry, NodeLoad};

use crate::params::Policy;
use crate::sim::{LOAD_TTL, Sim};

/// Gossipsub's mesh degree: each gossiped message crosses about this many links per node.
pub const MESH_DEGREE: usize = 6;
/// Refreshes a presence lasts in a follower's directory (its 3 s expiry at one a second).
pub const PRESENCE_LIFE: usize = 3;

/// A node's last announced load.
#[derive(Debug, Clone)]
pub struct LoadRec {
    /// The load.
    pub load: NodeLoad,
    /// Its size as JSON, bytes.
    pub bytes: u64,
    /// The size of its presence of the stream as JSON, bytes (0 when it does not carry it).
    pub presence_bytes: u64,
    /// The size of its node-wide figures added to a presence ([`relaycast_mesh::CarrierSummary`])
    /// as JSON, bytes.
    pub summary_bytes: u64,
    /// When it was announced, simulated microseconds.
    pub at: u64,
}

/// Control bytes of one view refresh.
#[derive(Debug, Default)]
pub struct ViewCost {
    /// Received by the node.
    pub recv: u64,
    /// Sent by other nodes (node, bytes).
    pub sent: Vec<(usize, u64)>,
}

fn entry(load: &NodeLoad, seen: Instant, rtt: Duration) -> NodeEntry {
    NodeEntry { load: load.clone(), last_seen: seen, rtt: Some(rtt), connected: true }
}

/// Node `i`'s directory at `now` (simulated microseconds) under the run's policy, and its cost
/// (with `gossip`, a bounded sample due for renewal is drawn again).
pub(crate) fn build(sim: &mut Sim, i: usize, now: u64, gossip: bool) -> (Directory, ViewCost) {
    let seen = sim.instant(now);
    let mut dir = Directory::default();
    let mut cost = ViewCost::default();
    // A node is known while its last report is recent (a dead node's lingers until it
    // expires) and this node has not seen its connection drop.
    let fresh = |sim: &Sim, j: usize| {
        j != i
            && sim.loads[j].as_ref().is_some_and(|r| now.saturating_sub(r.at) <= LOAD_TTL)
            && !sim.nodes[i].lost.iter().any(|(p, _)| *p == j)
    };
    let ann_bytes = sim.announcement_bytes;
    if let Some(ann) = sim.announcement.clone()
        && (sim.origin == i || fresh(sim, sim.origin))
    {
        dir.insert_stream(ann, seen);
    }
    let degree = MESH_DEGREE as u64;
    match sim.p.policy {
        Policy::Global => {
            let mut total = ann_bytes;
            for j in 0..sim.nodes.len() {
                let Some(rec) = &sim.loads[j] else { continue };
                if now.saturating_sub(rec.at) > LOAD_TTL {
                    continue;
                }
                total += rec.bytes;
                if fresh(sim, j) {
                    dir.nodes.insert(sim.nodes[j].peer, entry(&rec.load, seen, sim.rtt(i, j)));
                }
            }
            // Flooded over the gossip mesh: in and out over each of the node's mesh links.
            cost.recv = degree * total;
        }
        Policy::Bounded => {
            // The sample: carriers with room, renewed when due, topped up when members died
            // or filled up.
            let k = sim.p.sample;
            let due = gossip && sim.nodes[i].sample_at.is_none_or(|t| now.saturating_sub(t) >= sim.p.sample_every_ms * 1000);
            let mut sample = if due { Vec::new() } else { std::mem::take(&mut sim.nodes[i].sample) };
            if due {
                sim.nodes[i].sample_at = Some(now);
            }
            sample.retain(|&j| fresh(sim, j) && sim.has_room(j));
            sim.draw_room(i, &mut sample, k);
            sample.retain(|&j| fresh(sim, j));
            let mut members: Vec<usize> = Vec::with_capacity(sample.len() + 12);
            // The tree neighbours: the upstream and the standby upstream (both feed this node).
            if let Some(r) = sim.nodes[i].core.relay_in(crate::sim::STREAM) {
                let ups = std::iter::once(r.upstream).chain(r.standby.as_ref().map(|s| s.upstream));
                for up in ups.filter_map(|u| sim.idx.get(&u).copied()) {
                    if !members.contains(&up) {
                        members.push(up);
                    }
                }
            }
            for c in sim.children_of(i) {
                if !members.contains(&c) {
                    members.push(c);
                }
            }
            for &j in &sample {
                if !members.contains(&j) {
                    members.push(j);
                }
            }
            // The origin's load rides with the stream's announcement on the one gossip topic.
            let origin = sim.origin;
            if origin != i
                && let Some(rec) = &sim.loads[origin]
                && fresh(sim, origin)
            {
                dir.nodes.insert(sim.nodes[origin].peer, entry(&rec.load, seen, sim.rtt(i, origin)));
                cost.recv += degree * (ann_bytes + rec.bytes);
            }
            for j in members {
                if j == origin || !fresh(sim, j) {
                    continue;
                }
                let Some(rec) = &sim.loads[j] else { continue };
                dir.nodes.insert(sim.nodes[j].peer, entry(&rec.load, seen, sim.rtt(i, j)));
                cost.recv += rec.bytes;
                cost.sent.push((j, rec.bytes));
            }
            sim.nodes[i].sample = sample;
        }
        Policy::OneHop => {
            // Its connections: the tree neighbours and a random sample of the mesh (peer
            // sampling), drawn again when due; their load reports come directly, one in
            // SUMMARY_EVERY refreshes.
            let k = sim.p.sample;
            let due = gossip && sim.nodes[i].sample_at.is_none_or(|t| now.saturating_sub(t) >= sim.p.sample_every_ms * 1000);
            let mut sample = if due { Vec::new() } else { std::mem::take(&mut sim.nodes[i].sample) };
            if due {
                sim.nodes[i].sample_at = Some(now);
            }
            sample.retain(|&j| fresh(sim, j));
            sim.draw_any(i, &mut sample, k);
            sample.retain(|&j| fresh(sim, j));
            let mut members: Vec<usize> = Vec::with_capacity(sample.len() + 12);
            if let Some(r) = sim.nodes[i].core.relay_in(crate::sim::STREAM) {
                let ups = std::iter::once(r.upstream).chain(r.standby.as_ref().map(|s| s.upstream));
                members.extend(ups.filter_map(|u| sim.idx.get(&u).copied()));
            }
            members.extend(sim.children_of(i));
            members.extend(sample.iter().copied());
            members.sort_unstable();
            members.dedup();
            let every = u64::from(relaycast_mesh::gossip::SUMMARY_EVERY);
            cost.recv += degree * ann_bytes;
            for &j in &members {
                if !fresh(sim, j) {
                    continue;
                }
                let Some(rec) = &sim.loads[j] else { continue };
                dir.nodes.insert(sim.nodes[j].peer, entry(&rec.load, seen, sim.rtt(i, j)));
                cost.recv += rec.bytes / every;
                cost.sent.push((j, rec.bytes / every));
            }
            // A node that carries or wants the stream follows its presence topic, gossiped among
            // the followers (about the mesh degree copies each): the origin's presence each
            // refresh, and a sample of the other carriers' (mesh `presence_rate`): about
            // PRESENCE_TARGET of them each refresh, with their figures when sampled (every
            // presence each refresh, figures one in SUMMARY_EVERY, while there are fewer). A
            // presence lasts PRESENCE_LIFE refreshes, so the view holds about that many samples.
            let carries = i == sim.origin || sim.nodes[i].core.relay_in(crate::sim::STREAM).is_some();
            if carries || sim.nodes[i].viewers > 0 || sim.nodes[i].pending > 0 {
                let mut carriers: Vec<usize> = (0..sim.nodes.len())
                    .filter(|&j| j != sim.origin && fresh(sim, j) && sim.loads[j].as_ref().is_some_and(|r| r.presence_bytes > 0))
                    .collect();
                let copies = degree.min(carriers.len() as u64 + 1);
                let target = relaycast_mesh::presence_rate::PRESENCE_TARGET as usize;
                let sampled = carriers.len() > target;
                let per_refresh = carriers.len().min(target) as u64;
                let n = carriers.len().max(1) as u64;
                let mean_bytes: u64 = carriers
                    .iter()
                    .filter_map(|&j| sim.loads[j].as_ref())
                    .map(|r| r.presence_bytes + if sampled { r.summary_bytes } else { r.summary_bytes / every })
                    .sum::<u64>()
                    / n;
                cost.recv += copies * per_refresh * mean_bytes;
                if let Some(rec) = sim.loads[sim.origin].as_ref().filter(|_| sim.origin != i) {
                    cost.recv += copies * (rec.presence_bytes + rec.summary_bytes / every);
                    dir.nodes.entry(sim.nodes[sim.origin].peer).or_insert_with(|| entry(&rec.load, seen, sim.rtt(i, sim.origin)));
                }
                sim.sample_of(&mut carriers, target * PRESENCE_LIFE);
                for j in carriers {
                    let Some(rec) = &sim.loads[j] else { continue };
                    dir.nodes.entry(sim.nodes[j].peer).or_insert_with(|| entry(&rec.load, seen, sim.rtt(i, j)));
                }
            }
            sim.nodes[i].sample = sample;
        }
    }
    (dir, cost)
}
