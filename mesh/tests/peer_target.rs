//! A target number of connections: a hub every node bootstraps from keeps only its target of
//! connections, and a peer it let go still reaches it with a relay request.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::{MeshEvent, NodeLoad, RelayRequest, RelayResponse, StreamPresence};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_over_its_target_lets_peers_go_and_they_still_reach_it_for_relays() {
    let mut ch = config("hub");
    ch.max_peers = 2;
    let (hub, mut hub_events) = start(ch).await;
    let mut spokes = Vec::new();
    for i in 0..4 {
        let mut c = config(&format!("spoke{i}"));
        c.bootstrap = addrs(&hub).await;
        c.max_peers = 8;
        spokes.push(start(c).await);
    }
    // The spokes find each other through the hub's DHT (each dials until it has 4 connections);
    // the hub, over its target of 2, closes the excess once its connections are 10 s old.
    let ok = eventually(Duration::from_secs(25), || async {
        hub.connected_peers() <= 2 && spokes.iter().all(|(s, _)| s.connected_peers() >= 3)
    })
    .await;
    let counts: Vec<usize> = spokes.iter().map(|(s, _)| s.connected_peers()).collect();
    assert!(
        ok,
        "hub holds {} connections, spokes {counts:?}",
        hub.connected_peers()
    );

    // A spoke the hub let go asks it to relay: dialled on demand, answered. (Wait for one that
    // is not connected at the moment: the hub lets the others go once their connections are
    // 10 s old.)
    let mut far = None;
    for _ in 0..150 {
        for (s, _) in &spokes {
            let info = s.node_info().await;
            if !info
                .known_peers
                .iter()
                .any(|k| k.peer_id == hub.peer_id() && k.connected)
            {
                far = Some(s);
            }
        }
        if far.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let far = far.expect("a spoke the hub let go (15 s)");
    // Under half its own target, the spoke would dial the hub back every 3 s (and be let go
    // again 10 s later): the early close put the hub on a backoff of 20 s at least.
    let connected_to_hub = || async {
        far.node_info().await.known_peers.iter().any(|k| k.peer_id == hub.peer_id() && k.connected)
    };
    for _ in 0..40 {
        assert!(!connected_to_hub().await, "the spoke dialled the hub back while it was let go moments ago");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let server = tokio::spawn(async move {
        while let Some(ev) = hub_events.recv().await {
            if let MeshEvent::RelayRequest { reply, .. } = ev {
                let _ = reply.send(Ok(RelayResponse {
                    answer_sdp: "answer".into(),
                    depth: 0,
                    path: vec![],
                }));
                return true;
            }
        }
        false
    });
    let req = RelayRequest {
        stream: "cam".into(),
        offer_sdp: "v=0\r\n".into(),
        standby: false,
    };
    let r = far
        .request_relay(hub.peer_id(), req, Duration::from_secs(5))
        .await
        .expect("the hub answers");
    assert_eq!(r.answer_sdp, "answer");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("in time")
            .expect("join")
    );
    for (s, _) in &spokes {
        s.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_its_target_keeps_the_peer_whose_load_names_it_as_upstream() {
    let mut ch = config("keep-hub");
    ch.max_peers = 1;
    let (hub, _hub_events) = start(ch).await;
    let mut spokes = Vec::new();
    for i in 0..3 {
        let mut c = config(&format!("keep-spoke{i}"));
        c.bootstrap = addrs(&hub).await;
        c.max_peers = 2;
        spokes.push(start(c).await);
    }
    // The first spoke relays a stream from the hub: its load names the hub as its upstream.
    let child = &spokes[0].0;
    child.set_load(NodeLoad {
        streams: vec![StreamPresence {
            stream: "cam".into(),
            depth: 1,
            upstream: Some(hub.peer_id()),
            ..Default::default()
        }],
        ..Default::default()
    });
    let child_id = child.peer_id();
    // Every spoke joins through the hub...
    let others: Vec<_> = spokes[1..].iter().map(|(s, _)| s.peer_id()).collect();
    let joined = eventually(Duration::from_secs(5), || async {
        let info = hub.node_info().await;
        info.known_peers.iter().filter(|k| k.connected).count() == 3
    })
    .await;
    assert!(
        joined,
        "the spokes connect to the hub: {:?}",
        hub.node_info().await.known_peers
    );
    // ...which, over its target of 1, closes the others' connections once they are 10 s old...
    let ok = eventually(Duration::from_secs(25), || async {
        let info = hub.node_info().await;
        let connected = |p| {
            info.known_peers
                .iter()
                .any(|k| k.peer_id == p && k.connected)
        };
        connected(child_id) && others.iter().all(|p| !connected(*p))
    })
    .await;
    assert!(
        ok,
        "the hub keeps only its relay child: {:?}",
        hub.node_info().await.known_peers
    );
    // ...and never the child's (its events since the start hold no loss of the hub).
    let hub_id = hub.peer_id();
    let lost = next_event(
        &mut spokes[0].1,
        Duration::from_secs(4),
        |e| matches!(e, MeshEvent::PeerLost(p) if *p == hub_id),
    )
    .await;
    assert!(lost.is_none(), "the child lost its upstream");
    for (s, _) in &spokes {
        s.shutdown().await;
    }
    hub.shutdown().await;
}
