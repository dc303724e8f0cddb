//! Pure placement decisions over a [`Directory`] snapshot.

use std::cmp::Ordering;
use std::time::Duration;

use relaycast_mesh::{Directory, NodeLoad, PeerId};

struct Candidate {
    peer: PeerId,
    depth: u32,
    rtt: Option<Duration>,
    relay_children: u32,
}

/// Nodes this node could pull `stream` from, best first: least depth, then lowest RTT,
/// then fewest relay children. Excludes self, `exclude`, full nodes and nodes fed by self.
pub fn pick_upstreams(dir: &Directory, stream: &str, self_id: PeerId, exclude: &[PeerId]) -> Vec<PeerId> {
    let mut cands: Vec<Candidate> = Vec::new();
    let usable = |p: &PeerId| *p != self_id && !exclude.contains(p);
    let has_room = |load: &NodeLoad| load.relay_children < load.max_relay_children;

    if let Some(ann) = dir.stream(stream) {
        let origin = ann.origin;
        if usable(&origin) {
            let load = dir.node(&origin);
            if load.is_none_or(has_room) {
                let presence = load.and_then(|l| l.streams.iter().find(|s| s.stream == stream));
                if presence.is_none_or(|p| p.upstream != Some(self_id)) {
                    cands.push(Candidate {
                        peer: origin,
                        depth: presence.map_or(0, |p| p.depth),
                        rtt: dir.rtt(&origin),
                        relay_children: load.map_or(0, |l| l.relay_children),
                    });
                }
            }
        }
    }
    for (peer, entry) in &dir.nodes {
        if !usable(peer) || cands.iter().any(|c| c.peer == *peer) || !has_room(&entry.load) {
            continue;
        }
        let Some(presence) = entry.load.streams.iter().find(|s| s.stream == stream) else {
            continue;
        };
        if presence.upstream == Some(self_id) {
            continue;
        }
        cands.push(Candidate {
            peer: *peer,
            depth: presence.depth,
            rtt: dir.rtt(peer),
            relay_children: entry.load.relay_children,
        });
    }
    cands.sort_by(|a, b| {
        a.depth
            .cmp(&b.depth)
            .then_with(|| cmp_rtt(a.rtt, b.rtt))
            .then_with(|| a.relay_children.cmp(&b.relay_children))
            .then_with(|| a.peer.cmp(&b.peer))
    });
    cands.into_iter().map(|c| c.peer).collect()
}

fn cmp_rtt(a: Option<Duration>, b: Option<Duration>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn carries(dir: &Directory, peer: &PeerId, load: &NodeLoad, stream: &str) -> bool {
    load.streams.iter().any(|s| s.stream == stream) || dir.stream(stream).is_some_and(|a| a.origin == *peer)
}

fn fill(load: &NodeLoad) -> f64 {
    if load.capacity == 0 {
        return f64::INFINITY;
    }
    f64::from(load.viewers) / f64::from(load.capacity)
}

/// The node (possibly self) a new viewer of `stream` should use: one with room, preferring
/// the given region, then nodes carrying the stream, then the lowest viewers/capacity.
pub fn best_node_for_viewer(
    dir: &Directory,
    stream: &str,
    self_id: PeerId,
    self_load: &NodeLoad,
    region: Option<&str>,
) -> Option<(PeerId, NodeLoad)> {
    let mut cands: Vec<(PeerId, &NodeLoad)> = vec![(self_id, self_load)];
    cands.extend(dir.nodes.iter().filter(|(p, _)| **p != self_id).map(|(p, e)| (*p, &e.load)));
    cands.retain(|(_, l)| l.viewers < l.capacity);
    let key = |(peer, load): &(PeerId, &NodeLoad)| {
        let off_region = match region {
            Some(r) => load.region.as_deref() != Some(r),
            None => false,
        };
        (off_region, !carries(dir, peer, load, stream), fill(load), *peer != self_id)
    };
    cands
        .iter()
        .min_by(|a, b| {
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(ka.2.partial_cmp(&kb.2).unwrap_or(Ordering::Equal))
                .then(ka.3.cmp(&kb.3))
                .then(a.0.cmp(&b.0))
        })
        .map(|(p, l)| (*p, (*l).clone()))
}

/// Every node worth asking for a relay of `stream` (whose origin is `origin`), in the order to
/// ask: the [`pick_upstreams`] order (spare fan-out, least depth, lowest RTT); then other nodes
/// carrying the stream and the origin even if they look full (load reports lag; a node that is
/// really full refuses); then, as a last resort, any node with spare fan-out, which can fetch the
/// stream itself and pass it on (the origin may trust only some nodes). Never self, never
/// `exclude`, never a node fed by self.
pub fn relay_candidates(dir: &Directory, stream: &str, origin: PeerId, self_id: PeerId, exclude: &[PeerId]) -> Vec<PeerId> {
    let mut out = pick_upstreams(dir, stream, self_id, exclude);
    let fed_by_me = |p: &PeerId| {
        dir.node(p).is_some_and(|l| l.streams.iter().any(|s| s.stream == stream && s.upstream == Some(self_id)))
    };
    let mut add = |p: PeerId| {
        if p != self_id && !exclude.contains(&p) && !out.contains(&p) && !fed_by_me(&p) {
            out.push(p);
        }
    };
    let mut carriers: Vec<PeerId> = dir
        .nodes
        .iter()
        .filter(|(_, e)| e.load.streams.iter().any(|s| s.stream == stream))
        .map(|(p, _)| *p)
        .collect();
    carriers.sort();
    for p in carriers {
        add(p);
    }
    add(origin);
    let mut spare: Vec<PeerId> = dir
        .nodes
        .iter()
        .filter(|(_, e)| e.load.relay_children < e.load.max_relay_children)
        .map(|(p, _)| *p)
        .collect();
    spare.sort();
    for p in spare {
        add(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use relaycast_mesh::{StreamAnnouncement, StreamPresence};

    fn load(viewers: u32, capacity: u32, rc: u32, max_rc: u32, streams: Vec<StreamPresence>) -> NodeLoad {
        NodeLoad {
            http_url: String::new(),
            region: None,
            viewers,
            egress_bps: 0,
            capacity,
            relay_children: rc,
            max_relay_children: max_rc,
            streams,
            media_addrs: vec![],
        }
    }

    fn presence(depth: u32, upstream: Option<PeerId>) -> StreamPresence {
        StreamPresence { stream: "s".into(), depth, upstream, ..Default::default() }
    }

    fn announce(dir: &mut Directory, origin: PeerId) {
        dir.insert_stream(
            StreamAnnouncement {
                origin,
                stream: "s".into(),
                codec: "VP8".into(),
                layers: vec![],
                http_url: String::new(),
                started_ms: 0,
            },
            Instant::now(),
        );
    }

    #[test]
    fn upstreams_order_by_depth_then_rtt_then_children() {
        let me = PeerId::random();
        let origin = PeerId::random();
        let (r1, r2, r3) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut d = Directory::default();
        announce(&mut d, origin);
        d.insert_load(origin, load(0, 10, 5, 8, vec![presence(0, None)]), now, true);
        d.insert_load(r1, load(0, 10, 3, 8, vec![presence(1, Some(origin))]), now, true);
        d.insert_load(r2, load(0, 10, 1, 8, vec![presence(1, Some(origin))]), now, true);
        d.insert_load(r3, load(0, 10, 0, 8, vec![presence(1, Some(origin))]), now, true);
        d.set_rtt(r1, Duration::from_millis(5));
        d.set_rtt(r2, Duration::from_millis(5));
        d.set_rtt(r3, Duration::from_millis(50));
        assert_eq!(pick_upstreams(&d, "s", me, &[]), vec![origin, r2, r1, r3]);
        assert_eq!(pick_upstreams(&d, "s", me, &[origin, r2]), vec![r1, r3]);
        // Every relay is fed by the origin, so the origin itself finds no upstream (no loops).
        assert!(pick_upstreams(&d, "s", origin, &[]).is_empty());
        assert!(pick_upstreams(&d, "other", me, &[]).is_empty());
    }

    #[test]
    fn upstreams_skip_full_nodes_and_loops() {
        let me = PeerId::random();
        let origin = PeerId::random();
        let (full, child) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut d = Directory::default();
        announce(&mut d, origin);
        d.insert_load(origin, load(0, 10, 2, 2, vec![presence(0, None)]), now, true);
        d.insert_load(full, load(0, 10, 0, 0, vec![presence(1, Some(origin))]), now, true);
        d.insert_load(child, load(0, 10, 0, 4, vec![presence(2, Some(me))]), now, true);
        assert!(pick_upstreams(&d, "s", me, &[]).is_empty());
        // Origin known only from its announcement (no load yet) is still a candidate.
        let mut d2 = Directory::default();
        announce(&mut d2, origin);
        assert_eq!(pick_upstreams(&d2, "s", me, &[]), vec![origin]);
    }

    #[test]
    fn viewer_placement_prefers_region_then_stream_then_fill() {
        let me = PeerId::random();
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut d = Directory::default();
        let mut la = load(1, 10, 0, 4, vec![]);
        la.region = Some("eu".into());
        let mut lb = load(5, 10, 0, 4, vec![presence(1, None)]);
        lb.region = Some("eu".into());
        let lc = load(0, 10, 0, 4, vec![presence(0, None)]);
        d.insert_load(a, la, now, true);
        d.insert_load(b, lb, now, true);
        d.insert_load(c, lc, now, true);
        let me_load = load(9, 10, 0, 4, vec![]);
        assert_eq!(best_node_for_viewer(&d, "s", me, &me_load, Some("eu")).map(|x| x.0), Some(b));
        assert_eq!(best_node_for_viewer(&d, "s", me, &me_load, None).map(|x| x.0), Some(c));
        assert_eq!(best_node_for_viewer(&d, "x", me, &me_load, Some("eu")).map(|x| x.0), Some(a));
        // Nobody has room.
        let mut full = Directory::default();
        full.insert_load(a, load(10, 10, 0, 4, vec![]), now, true);
        assert!(best_node_for_viewer(&full, "s", me, &load(3, 3, 0, 0, vec![]), None).is_none());
        // Self wins ties.
        let mut tie = Directory::default();
        tie.insert_load(a, load(1, 10, 0, 4, vec![]), now, true);
        assert_eq!(best_node_for_viewer(&tie, "s", me, &load(1, 10, 0, 4, vec![]), None).map(|x| x.0), Some(me));
    }

    #[test]
    fn relay_candidates_fall_back_to_full_carriers_then_spare_nodes() {
        let me = PeerId::random();
        let origin = PeerId::random();
        let (relay, spare, full_idle, fed) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        let mut dir = Directory::default();
        announce(&mut dir, origin);
        let now = Instant::now();
        // The origin is full; a relay carries the stream at depth 1 with room.
        dir.insert_load(origin, load(0, 10, 1, 1, vec![presence(0, None)]), now, true);
        dir.insert_load(relay, load(0, 10, 0, 4, vec![presence(1, Some(origin))]), now, true);
        // A node without the stream but with room, one full without it, one fed by us.
        dir.insert_load(spare, load(0, 10, 0, 4, vec![]), now, true);
        dir.insert_load(full_idle, load(0, 10, 2, 2, vec![]), now, true);
        dir.insert_load(fed, load(0, 10, 0, 4, vec![presence(2, Some(me))]), now, true);
        let c = relay_candidates(&dir, "s", origin, me, &[]);
        assert_eq!(c, vec![relay, origin, spare], "room first, then the full origin, then a spare node");
        let c = relay_candidates(&dir, "s", origin, me, &[relay, origin]);
        assert_eq!(c, vec![spare]);
        assert!(!relay_candidates(&dir, "s", origin, me, &[]).contains(&me));
    }

    #[test]
    fn carriers_known_from_their_presences_only_are_placed_like_reporting_nodes() {
        // Load reports go one hop: a carrier this node is not connected to is known from its
        // presences on the stream's topic, which carry its node-wide figures.
        let me = PeerId::random();
        let origin = PeerId::random();
        let (near, far, far_full) = (PeerId::random(), PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut dir = Directory::default();
        announce(&mut dir, origin);
        // A neighbour, full, by its load report.
        dir.insert_load(near, load(10, 10, 4, 4, vec![presence(1, Some(origin))]), now, true);
        let heard = |rc: u32, max_rc: u32, viewers: u32| StreamPresence {
            node: Some(relaycast_mesh::CarrierSummary {
                http_url: "http://192.0.2.9:8080".into(),
                region: Some("eu".into()),
                viewers,
                capacity: 10,
                relay_children: rc,
                max_relay_children: max_rc,
            }),
            ..presence(1, Some(origin))
        };
        dir.insert_presence(far, heard(1, 4, 2), now);
        dir.insert_presence(far_full, heard(4, 4, 10), now);
        let before = dir.clone();
        dir.merge_presences();
        assert_eq!(pick_upstreams(&dir, "s", me, &[]), vec![origin, far], "the far carrier has room");
        // Then the carriers without room, in peer id order, whichever way they are known.
        let mut full = vec![near, far_full];
        full.sort();
        assert_eq!(relay_candidates(&dir, "s", origin, me, &[origin]), [vec![far], full].concat());
        let own = load(10, 10, 0, 4, vec![]);
        let (peer, l) = best_node_for_viewer(&dir, "s", me, &own, Some("eu")).expect("a node with room");
        assert_eq!((peer, l.http_url.as_str()), (far, "http://192.0.2.9:8080"));
        // Without the merge (a directory that knows only load reports) the far carriers are unknown.
        assert_eq!(pick_upstreams(&before, "s", me, &[]), vec![origin]);
    }
}
