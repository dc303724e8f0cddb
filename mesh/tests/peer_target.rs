//! A target number of connections: a hub every node bootstraps from keeps only its target of
//! connections, and a peer it let go still reaches it with a relay request.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::{MeshEvent, RelayRequest, RelayResponse};

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

    // A spoke the hub let go asks it to relay: dialled on demand, answered.
    let mut far = None;
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
    let far = far.expect("a spoke the hub let go");
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
