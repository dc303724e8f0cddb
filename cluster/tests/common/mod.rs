//! Helpers shared by the cluster core's tests: a node's settings, directories of a stream's
//! tree, and draining outputs.

#![allow(dead_code)]

use std::time::Instant;

use relaycast_cluster::{Config, Core, Output};
use relaycast_mesh::{Directory, NodeLoad, PeerId, StreamAnnouncement, StreamPresence};

/// The stream of the tests.
pub const S: &str = "s";

/// Settings of node `me`: capacity 10, fan-out 2, depth cap 8, any peer trusted.
pub fn config(me: PeerId) -> Config {
    Config {
        me,
        http_url: "http://me".into(),
        region: None,
        capacity: 10,
        max_relay_children: 2,
        max_depth: 8,
        trusted: vec![],
        media_addrs: vec![],
    }
}

/// A directory where `origin` announces stream `s` and each `(peer, path)` carries it with that
/// ancestor path (origin first); every node has room.
pub fn tree(origin: PeerId, carriers: &[(PeerId, Vec<PeerId>)]) -> Directory {
    let now = Instant::now();
    let mut d = Directory::default();
    d.insert_stream(
        StreamAnnouncement {
            origin,
            stream: S.into(),
            codec: "VP8".into(),
            layers: vec![],
            http_url: "http://origin".into(),
            started_ms: 1,
        },
        now,
    );
    let load = |streams| NodeLoad {
        http_url: "http://n".into(),
        capacity: 10,
        max_relay_children: 4,
        streams,
        ..Default::default()
    };
    d.insert_load(origin, load(vec![StreamPresence { stream: S.into(), ..Default::default() }]), now, true);
    for (peer, path) in carriers {
        let p = StreamPresence {
            stream: S.into(),
            depth: path.len() as u32,
            upstream: path.last().copied(),
            path: path.clone(),
            ..Default::default()
        };
        d.insert_load(*peer, load(vec![p]), now, true);
    }
    d
}

/// Marks `peer` as having no spare fan-out.
pub fn full(mut d: Directory, peer: PeerId) -> Directory {
    if let Some(e) = d.nodes.get_mut(&peer) {
        e.load.relay_children = e.load.max_relay_children;
    }
    d
}

/// Every pending output of `core`.
pub fn drain(core: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

