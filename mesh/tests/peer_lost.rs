//! PeerLost is emitted promptly when a peer shuts down or its handle is dropped.

mod common;

use std::time::{Duration, Instant};

use common::*;
use relaycast_mesh::{MeshEvent, NodeLoad};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_lost_is_fast() {
    let (a, mut ea) = start(config("a")).await;
    let boot = addrs(&a).await;
    let mut cb = config("b");
    cb.bootstrap = boot.clone();
    let (b, _eb) = start(cb).await;
    let mut cc = config("c");
    cc.bootstrap = boot;
    let (c, _ec) = start(cc).await;
    let (bid, cid) = (b.peer_id(), c.peer_id());

    for p in [bid, cid] {
        let ev = next_event(&mut ea, Duration::from_secs(5), |e| matches!(e, MeshEvent::PeerDiscovered(x) if *x == p)).await;
        assert!(ev.is_some(), "A discovers {p}");
    }
    b.set_load(NodeLoad { capacity: 5, ..Default::default() });
    let ok = eventually(Duration::from_secs(5), || async { a.directory().node(&bid).is_some() }).await;
    assert!(ok, "A knows B's load");

    let t = Instant::now();
    b.shutdown().await;
    let ev = next_event(&mut ea, Duration::from_secs(2), |e| matches!(e, MeshEvent::PeerLost(x) if *x == bid)).await;
    assert!(ev.is_some(), "PeerLost(B) within 2 s");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(a.directory().node(&bid).is_none(), "B's entry dropped at once");

    let t = Instant::now();
    drop(c);
    let ev = next_event(&mut ea, Duration::from_secs(2), |e| matches!(e, MeshEvent::PeerLost(x) if *x == cid)).await;
    assert!(ev.is_some(), "PeerLost(C) within 2 s of dropping its handle");
    assert!(t.elapsed() < Duration::from_secs(2));
    a.shutdown().await;
}
