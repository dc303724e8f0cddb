//! Private network: same key connects; another key or no key cannot.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::MeshEvent;
use relaycast_mesh::pnet::generate_key_file;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_key_connect() {
    let keys = temp_dir("keys");
    let key1 = keys.join("swarm.key");
    let key2 = keys.join("other.key");
    std::fs::write(&key1, generate_key_file()).expect("write key");
    std::fs::write(&key2, generate_key_file()).expect("write key");

    let mut ca = config("pa");
    ca.mesh_key = Some(key1.clone());
    // QUIC cannot be wrapped in pnet: it is dropped from the listen set.
    ca.listen.push("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"));
    let (a, mut ea) = start(ca).await;
    let boot = addrs(&a).await;
    assert!(boot.iter().all(|m| m.to_string().contains("/tcp/")), "TCP only: {boot:?}");

    let mut cb = config("pb");
    cb.mesh_key = Some(key1);
    cb.bootstrap = boot.clone();
    let (b, _eb) = start(cb).await;
    let ev = next_event(&mut ea, Duration::from_secs(5), |e| matches!(e, MeshEvent::PeerDiscovered(p) if *p == b.peer_id())).await;
    assert!(ev.is_some(), "same key connects");

    let mut cc = config("pc");
    cc.mesh_key = Some(key2);
    cc.bootstrap = boot.clone();
    let (c, _ec) = start(cc).await;
    let mut cd = config("pd");
    cd.bootstrap = boot;
    let (d, _ed) = start(cd).await;
    let outsiders = [c.peer_id(), d.peer_id()];
    let ev = next_event(&mut ea, Duration::from_secs(2), |e| matches!(e, MeshEvent::PeerDiscovered(p) if outsiders.contains(p))).await;
    assert!(ev.is_none(), "a node with another key or none must not connect: {ev:?}");
    for m in [&c, &d] {
        let info = m.node_info().await;
        assert!(info.known_peers.iter().all(|k| !k.connected), "{info:?}");
    }
    // A malformed key file is a start error.
    let bad = keys.join("bad.key");
    std::fs::write(&bad, "/key/swarm/psk/1.0.0/\n/base16/\nnothex").expect("write");
    let mut ce = config("pe");
    ce.mesh_key = Some(bad);
    assert!(relaycast_mesh::Mesh::start(ce).await.is_err());

    for m in [a, b, c, d] {
        m.shutdown().await;
    }
}
