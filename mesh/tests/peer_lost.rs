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

    // B and C are discovered in either order: wait for both.
    let mut missing = vec![bid, cid];
    let found = next_event(&mut ea, Duration::from_secs(15), |e| {
        if let MeshEvent::PeerDiscovered(x) = e {
            missing.retain(|p| p != x);
        }
        missing.is_empty()
    })
    .await;
    assert!(found.is_some(), "A discovers B and C");
    b.set_load(NodeLoad { capacity: 5, ..Default::default() });
    let ok = eventually(Duration::from_secs(15), || async { a.directory().node(&bid).is_some() }).await;
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

/// A peer whose runtime stops answering (connection still open) is reported lost by ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_peer_is_lost_by_ping() {
    let (a, mut ea) = start(config("pa")).await;
    let mut cb = config("pb");
    cb.bootstrap = addrs(&a).await;
    let (id_tx, id_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = tokio::sync::oneshot::channel::<()>();
    let (thaw_tx, thaw_rx) = std::sync::mpsc::channel::<()>();
    // B runs on its own single-threaded runtime so blocking that thread freezes its swarm.
    let b_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let (b, _eb) = start(cb).await;
            let _ = id_tx.send(b.peer_id());
            let _ = freeze_rx.await;
            // Block the runtime thread: B's sockets stay open but nothing answers.
            let _ = thaw_rx.recv_timeout(Duration::from_secs(15));
            b.shutdown().await;
        });
    });
    let bid = tokio::time::timeout(Duration::from_secs(5), id_rx).await.expect("B starts").expect("B id");
    let ev = next_event(&mut ea, Duration::from_secs(5), |e| matches!(e, MeshEvent::PeerDiscovered(x) if *x == bid)).await;
    assert!(ev.is_some(), "A connects to B");

    let bound = relaycast_mesh::liveness::LOST_AFTER + Duration::from_secs(2);
    let t = Instant::now();
    let _ = freeze_tx.send(());
    let ev = next_event(&mut ea, bound, |e| matches!(e, MeshEvent::PeerLost(x) if *x == bid)).await;
    let elapsed = t.elapsed();
    let _ = thaw_tx.send(());
    assert!(ev.is_some(), "PeerLost(B) from a failed ping");
    assert!(elapsed < bound, "ping detects the loss within {bound:?}, took {elapsed:?}");
    println!("unresponsive peer reported lost after {elapsed:?}");
    tokio::task::spawn_blocking(move || b_thread.join()).await.expect("join").expect("B thread");
    a.shutdown().await;
}

/// A node whose own runtime stalls (a loaded host) for longer than one ping round keeps its
/// live peers: on waking, the time it did not run is not counted as their silence, and the peer
/// waiting for its answers does not drop it either (the stall is shorter than the window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_stall_does_not_lose_live_peers() {
    let (b, mut eb) = start(config("sb")).await;
    let bid = b.peer_id();
    let mut ca = config("sa");
    ca.bootstrap = addrs(&b).await;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (freeze_tx, freeze_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // A runs on its own single-threaded runtime so blocking that thread stalls all of A.
    let a_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let (a, ea) = start(ca).await;
            let _ = ready_tx.send((a.peer_id(), ea));
            let _ = freeze_rx.await;
            // Longer than two pings' interval + timeout, shorter than the loss window.
            std::thread::sleep(Duration::from_millis(3500));
            let _ = stop_rx.await;
            a.shutdown().await;
        });
    });
    let (aid, mut ea) = tokio::time::timeout(Duration::from_secs(5), ready_rx).await.expect("A starts").expect("A");
    let ev = next_event(&mut ea, Duration::from_secs(5), |e| matches!(e, MeshEvent::PeerDiscovered(x) if *x == bid)).await;
    assert!(ev.is_some(), "A connects to B");
    let ok = eventually(Duration::from_secs(5), || async { b.node_info().await.known_peers.iter().any(|p| p.peer_id == aid && p.rtt_ms.is_some()) }).await;
    assert!(ok, "B has pinged A");

    let _ = freeze_tx.send(());
    // Watch both sides through the stall and for 3 s after it.
    let watch = Duration::from_millis(3500 + 3000);
    let (lost_at_a, lost_at_b) = tokio::join!(
        next_event(&mut ea, watch, |e| matches!(e, MeshEvent::PeerLost(x) if *x == bid)),
        next_event(&mut eb, watch, |e| matches!(e, MeshEvent::PeerLost(x) if *x == aid)),
    );
    let _ = stop_tx.send(());
    tokio::task::spawn_blocking(move || a_thread.join()).await.expect("join").expect("A thread");
    assert!(lost_at_a.is_none(), "A dropped B after its own stall: {lost_at_a:?}");
    assert!(lost_at_b.is_none(), "B dropped A during A's 3.5 s stall: {lost_at_b:?}");
    b.shutdown().await;
}
