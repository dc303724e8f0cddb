//! Load reports go one hop: in a line A–B–C, B hears A's load and C does not, while C, following
//! a stream A originates and B relays, knows A as a carrier with its node-wide figures from A's
//! presences.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::{NodeLoad, StreamAnnouncement, StreamPresence, peers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_report_reaches_the_neighbours_only_and_presences_tell_the_rest() {
    // A line: B bootstraps from A, C from B; A (a target of one connection) and C (two), with
    // a connection each, never dial the nodes they hear of.
    let mut ca = config("line-a");
    ca.max_peers = 1;
    let (a, _ea) = start(ca).await;
    let mut cb = config("line-b");
    cb.bootstrap = addrs(&a).await;
    cb.max_peers = 4;
    let (b, _eb) = start(cb).await;
    let mut cc = config("line-c");
    cc.bootstrap = addrs(&b).await;
    cc.max_peers = 2;
    // C is never connected to A: A's URL is accepted on a host C trusts, not on an address it
    // sees A at.
    cc.trusted_url_hosts = vec!["127.0.0.1".into()];
    let (c, _ec) = start(cc).await;

    a.set_local_streams(vec![StreamAnnouncement {
        origin: a.peer_id(),
        stream: "cam".into(),
        codec: "VP8".into(),
        layers: vec!["f".into()],
        http_url: String::new(),
        started_ms: 0,
    }]);
    let a_load = NodeLoad {
        viewers: 3,
        capacity: 100,
        egress_bps: 123_456,
        relay_children: 1,
        max_relay_children: 4,
        streams: vec![StreamPresence {
            stream: "cam".into(),
            relay_children: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    a.set_load(a_load.clone());
    // B relays cam from A.
    b.set_load(NodeLoad {
        capacity: 10,
        max_relay_children: 2,
        streams: vec![StreamPresence {
            stream: "cam".into(),
            depth: 1,
            upstream: Some(a.peer_id()),
            path: vec![a.peer_id()],
            ..Default::default()
        }],
        ..Default::default()
    });

    // Kademlia's own queries (A providing cam, C's bootstrap walk) may connect A and C for a
    // while: A, over its target, closes that connection once it is 10 s old (B, its relay child,
    // stays).
    tokio::time::sleep(peers::TRIM_GRACE).await;
    let connected = |info: relaycast_mesh::NodeInfo, p| {
        info.known_peers
            .iter()
            .any(|k| k.peer_id == p && k.connected)
    };
    let apart = eventually(Duration::from_secs(20), || async {
        let (ia, ic) = (a.node_info().await, c.node_info().await);
        !connected(ic.clone(), a.peer_id())
            && !connected(ia, c.peer_id())
            && connected(ic, b.peer_id())
    })
    .await;
    assert!(
        apart,
        "A and C are not connected: {:?}",
        c.node_info().await.known_peers
    );

    // B, A's neighbour, gets A's whole load report; C gets B's, and hears of cam.
    let ok = eventually(Duration::from_secs(10), || async {
        let (db, dc) = (b.directory(), c.directory());
        db.node(&a.peer_id())
            .is_some_and(|l| l.egress_bps == 123_456)
            && dc
                .node(&b.peer_id())
                .is_some_and(|l| l.max_relay_children == 2)
            && dc.stream("cam").is_some()
    })
    .await;
    assert!(
        ok,
        "B: {:?}\nC: {:?}",
        b.directory().node(&a.peer_id()),
        c.directory().node(&b.peer_id())
    );

    // Over several load periods (one every 5 intervals of 300 ms) C never records A's load:
    // B does not pass it on.
    for _ in 0..30 {
        assert!(
            c.directory().node(&a.peer_id()).is_none(),
            "C learnt A's load: {:?}",
            c.directory().node(&a.peer_id())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // C wants cam: it follows cam's presence topic, which B (a carrier) passes A's presences on
    // over; A becomes a node at C, with the figures placement reads, but no more than those.
    c.want_stream("cam");
    let ok = eventually(Duration::from_secs(10), || async {
        let d = c.directory();
        d.node(&a.peer_id()).is_some_and(|l| {
            l.streams
                .iter()
                .any(|s| s.stream == "cam" && s.depth == 0 && s.node.is_none())
                && l.http_url == "http://127.0.0.1:8080/line-a"
                && (
                    l.viewers,
                    l.capacity,
                    l.relay_children,
                    l.max_relay_children,
                ) == (3, 100, 1, 4)
        }) && d.node(&b.peer_id()).is_some_and(|l| {
            l.streams
                .iter()
                .any(|s| s.stream == "cam" && s.upstream == Some(a.peer_id()))
        })
    })
    .await;
    assert!(
        ok,
        "C knows A as a carrier of cam: {:?}",
        c.directory().node(&a.peer_id())
    );
    let d = c.directory();
    let entry = d.nodes.get(&a.peer_id()).expect("A at C");
    assert!(!entry.connected);
    assert_eq!(
        entry.load.egress_bps, 0,
        "only the presence's figures, not A's load report"
    );
    assert!(
        d.nodes.get(&b.peer_id()).is_some_and(|e| e.connected),
        "B, a neighbour, by its load report"
    );
    assert!(
        !connected(c.node_info().await, a.peer_id()),
        "A and C are still not connected"
    );

    for m in [c, b, a] {
        m.shutdown().await;
    }
}
