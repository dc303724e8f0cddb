//! Paths pushed down relay edges: delivered with the connection's peer as sender, checked
//! against the wire's bounds, refused from untrusted peers, counted when not delivered.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::relay_protocol::{MAX_PATH, PushedPath};
use relaycast_mesh::{MeshEvent, PeerId};

fn push(stream: &str, len: usize) -> PushedPath {
    let path: Vec<PeerId> = (0..len).map(|_| PeerId::random()).collect();
    PushedPath {
        stream: stream.into(),
        depth: u32::try_from(len.saturating_sub(1)).expect("depth"),
        path,
        frozen: false,
        shed: false,
        left: false,
        room: false,
        move_to: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_paths_cross_the_wire_checked() {
    let (up, mut up_events) = start(config("push-up")).await;
    let mut cd = config("push-down");
    cd.bootstrap = addrs(&up).await;
    let (down, _de) = start(cd).await;

    // Out of bounds: refused by the receiving mesh, never passed to its node.
    down.push_path(up.peer_id(), push("bad/name", 1))
        .await
        .expect("queued");
    down.push_path(up.peer_id(), push("long", MAX_PATH + 1))
        .await
        .expect("queued");
    let refused = eventually(Duration::from_secs(10), || async {
        up.directory().path_pushes_refused == 2
    })
    .await;
    assert!(refused, "refused: {}", up.directory().path_pushes_refused);

    // In bounds: passed on as sent, with the sender taken from the connection.
    let sent = push("cam", MAX_PATH);
    down.push_path(up.peer_id(), sent.clone())
        .await
        .expect("queued");
    let frozen = PushedPath {
        stream: "cam".into(),
        depth: 0,
        path: vec![],
        frozen: true,
        shed: false,
        left: false,
        room: false,
        move_to: None,
    };
    down.push_path(up.peer_id(), frozen.clone())
        .await
        .expect("queued");
    let mut got = Vec::new();
    while got.len() < 2 {
        match next_event(&mut up_events, Duration::from_secs(10), |e| {
            matches!(e, MeshEvent::PathPushed { .. })
        })
        .await
        {
            Some(MeshEvent::PathPushed { from, push }) => {
                assert_eq!(from, down.peer_id());
                assert_eq!(push.stream, "cam", "an out-of-bounds push reached the node");
                got.push(push);
            }
            other => panic!("no pushed path: {other:?}"),
        }
    }
    assert!(got.contains(&sent) && got.contains(&frozen), "{got:?}");
    // Counted just after the event is queued.
    let counted = eventually(Duration::from_secs(5), || async {
        up.directory().path_pushes_received == 2
    })
    .await;
    assert!(counted, "received: {}", up.directory().path_pushes_received);

    // Nobody to deliver to: counted on the sending side.
    down.push_path(PeerId::random(), push("cam", 1))
        .await
        .expect("queued");
    let failed = eventually(Duration::from_secs(10), || async {
        down.directory().path_pushes_failed >= 1
    })
    .await;
    assert!(failed, "an undeliverable push was not counted");

    // A node trusting only some other peer drops `down`'s pushes.
    let mut ct = config("push-trusting");
    ct.trusted_peers = vec![PeerId::random()];
    let (trusting, mut trusting_events) = start(ct).await;
    let mut cd2 = config("push-down2");
    cd2.bootstrap = addrs(&trusting).await;
    let (down2, _d2e) = start(cd2).await;
    down2
        .push_path(trusting.peer_id(), push("cam", 1))
        .await
        .expect("queued");
    let refused = eventually(Duration::from_secs(10), || async {
        trusting.directory().path_pushes_refused == 1
    })
    .await;
    assert!(refused, "an untrusted push was not refused");
    while let Ok(ev) = trusting_events.try_recv() {
        assert!(
            !matches!(ev, MeshEvent::PathPushed { .. }),
            "an untrusted push reached the node"
        );
    }

    for m in [up, down, trusting, down2] {
        m.shutdown().await;
    }
}
