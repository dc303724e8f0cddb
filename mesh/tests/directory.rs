//! Two and three nodes on loopback: bootstrap, gossip into the directory, find_stream.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::{NodeLoad, StreamAnnouncement, StreamPresence};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_reach_the_directory_and_find_stream_works() {
    let (a, _ea) = start(config("a")).await;
    let mut cb = config("b");
    cb.bootstrap = addrs(&a).await;
    let (b, _eb) = start(cb).await;
    let mut cc = config("c");
    cc.bootstrap = addrs(&a).await;
    cc.region = Some("eu".into());
    let (c, _ec) = start(cc).await;

    // Bootstrap connects, and Kademlia/identify lead B and C to each other as well.
    let ok = eventually(Duration::from_secs(5), || async {
        let info = b.node_info().await;
        let connected = |p| info.known_peers.iter().any(|k| k.peer_id == p && k.connected);
        connected(a.peer_id()) && connected(c.peer_id())
    })
    .await;
    assert!(ok, "B connects to A and C: {:?}", b.node_info().await);
    let info_a = a.node_info().await;
    assert_eq!(info_a.peer_id, a.peer_id());
    assert!(info_a.listen_addrs.iter().any(|s| s.starts_with("/ip4/127.0.0.1/tcp/")));
    let json = serde_json::to_value(&info_a).expect("json");
    assert_eq!(json["peer_id"], a.peer_id().to_string());

    a.set_local_streams(vec![StreamAnnouncement {
        origin: a.peer_id(),
        stream: "cam1".into(),
        codec: "VP8".into(),
        layers: vec!["q".into(), "h".into(), "f".into()],
        http_url: String::new(),
        started_ms: 0,
    }]);
    a.set_load(NodeLoad {
        viewers: 3,
        capacity: 100,
        max_relay_children: 4,
        streams: vec![StreamPresence { stream: "cam1".into(), ..Default::default() }],
        // One media address on the IP A is seen at, one elsewhere (a third party's).
        media_addrs: vec!["127.0.0.1:5004".parse().expect("addr"), "192.0.2.9:5004".parse().expect("addr")],
        ..Default::default()
    });

    let found = b.find_stream("cam1", Duration::from_secs(5)).await.expect("B finds cam1");
    assert_eq!(found.origin, a.peer_id());
    assert_eq!(found.layers, vec!["q", "h", "f"]);
    assert_eq!(found.http_url, "http://127.0.0.1:8080/a", "empty http_url is filled from the config");

    let ok = eventually(Duration::from_secs(5), || async {
        let d = c.directory();
        d.node(&a.peer_id()).is_some_and(|l| l.viewers == 3 && l.http_url == "http://127.0.0.1:8080/a")
            && d.stream("cam1").is_some()
    })
    .await;
    assert!(ok, "C learns A's load and stream: {:?}", c.directory());
    let d = c.directory();
    let media = d.node(&a.peer_id()).map(|l| l.media_addrs.clone()).unwrap_or_default();
    assert_eq!(media, vec!["127.0.0.1:5004".parse::<std::net::SocketAddr>().expect("addr")], "only A's own IP");
    assert!(d.rejected_media_addrs > 0);
    // C's own load (default, with its region) reaches A.
    let ok = eventually(Duration::from_secs(5), || async {
        a.directory().node(&c.peer_id()).is_some_and(|l| l.region.as_deref() == Some("eu"))
    })
    .await;
    assert!(ok, "A learns C's region");
    let info_b = b.node_info().await;
    let ka = info_b.known_peers.iter().find(|k| k.peer_id == a.peer_id()).expect("A known");
    assert_eq!(ka.http_url.as_deref(), Some("http://127.0.0.1:8080/a"));

    assert!(b.find_stream("nope", Duration::from_millis(300)).await.is_none());

    // Withdrawn streams expire from peers' directories.
    a.set_local_streams(vec![]);
    let ok = eventually(Duration::from_secs(5), || async { b.directory().stream("cam1").is_none() }).await;
    assert!(ok, "withdrawn stream expires");

    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_traffic_and_connected_peers_are_counted() {
    use relaycast_mesh::traffic::Direction;
    let (a, _ea) = start(config("ta")).await;
    let mut cb = config("tb");
    cb.bootstrap = addrs(&a).await;
    let (b, _eb) = start(cb).await;
    assert_eq!(a.gossip_traffic().values().map(|c| c.bytes).sum::<u64>(), 0, "nothing counted before a peer");
    let load = |m: &relaycast_mesh::Mesh, d| {
        m.gossip_traffic().get(&("relaycast/load/1".to_string(), d)).copied().unwrap_or_default()
    };
    let ok = eventually(Duration::from_secs(5), || async {
        load(&a, Direction::Sent).messages >= 2 && load(&b, Direction::Received).messages >= 2
    })
    .await;
    assert!(ok, "load reports counted: a {:?}, b {:?}", a.gossip_traffic(), b.gossip_traffic());
    let (sent, received) = (load(&a, Direction::Sent), load(&b, Direction::Received));
    assert!(sent.bytes > 100 * sent.messages / 2, "bytes counted with messages: {sent:?}");
    assert!(received.bytes > 0);
    assert_eq!((a.connected_peers(), b.connected_peers()), (1, 1));
    b.shutdown().await;
    assert!(eventually(Duration::from_secs(5), || async { a.connected_peers() == 0 }).await, "A counts B gone");
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presences_reach_the_nodes_that_want_the_stream_only() {
    use relaycast_mesh::traffic::Direction;
    let (a, _ea) = start(config("pa")).await;
    let mut cb = config("pb");
    cb.bootstrap = addrs(&a).await;
    let (b, _eb) = start(cb).await;
    let mut cc = config("pc");
    cc.bootstrap = addrs(&a).await;
    let (c, _ec) = start(cc).await;
    let presence = |depth| StreamPresence { stream: "cam".into(), depth, ..Default::default() };
    a.set_local_streams(vec![StreamAnnouncement {
        origin: a.peer_id(),
        stream: "cam".into(),
        codec: "VP8".into(),
        layers: vec!["f".into()],
        http_url: String::new(),
        started_ms: 0,
    }]);
    a.set_load(NodeLoad { capacity: 7, streams: vec![presence(1)], ..Default::default() });
    // Only announced streams are followed: B wants cam once it has A's announcement.
    assert!(
        eventually(Duration::from_secs(5), || async { b.directory().stream("cam").is_some() }).await,
        "B hears the announcement of cam"
    );
    b.want_stream("cam");
    let ok = eventually(Duration::from_secs(5), || async {
        b.directory().node(&a.peer_id()).is_some_and(|l| l.capacity == 7 && l.streams == vec![presence(1)])
    })
    .await;
    assert!(ok, "B learns A's load: {:?}", b.directory().node(&a.peer_id()));
    // A moves: B, which wants the stream, hears it within an interval or two, before A's next
    // load report (every 5 intervals of 300 ms).
    a.set_load(NodeLoad { capacity: 7, streams: vec![presence(2)], ..Default::default() });
    let t = std::time::Instant::now();
    let ok = eventually(Duration::from_secs(5), || async {
        b.directory().node(&a.peer_id()).is_some_and(|l| l.streams == vec![presence(2)])
    })
    .await;
    assert!(ok, "B hears A's new presence");
    assert!(t.elapsed() < Duration::from_millis(1200), "from the presence topic: {:?}", t.elapsed());
    let presence_bytes = |m: &relaycast_mesh::Mesh| {
        m.gossip_traffic().get(&("relaycast/presence/*/1".to_string(), Direction::Received)).map_or(0, |c| c.bytes)
    };
    assert!(presence_bytes(&b) > 0);
    assert_eq!(presence_bytes(&c), 0, "C neither carries nor wants the stream");
    for m in [a, b, c] {
        m.shutdown().await;
    }
}
