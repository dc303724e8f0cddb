//! A stream announcement signed by one peer but naming another as origin is rejected end to end.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::StreamAnnouncement;
use relaycast_mesh::gossip::{STREAMS_TOPIC, encode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_origin_is_rejected_and_genuine_is_accepted() {
    let (victim, _ev) = start(config("victim")).await;
    let (receiver, _er) = start(config("receiver")).await;
    let mut cf = config("forger");
    cf.bootstrap = addrs(&receiver).await;
    let (forger, _ef) = start(cf).await;

    let forged = StreamAnnouncement {
        origin: victim.peer_id(),
        stream: "hijack".into(),
        codec: "VP8".into(),
        layers: vec![],
        http_url: "http://evil.test".into(),
        started_ms: 0,
    };
    // Publish until the receiver has seen (and rejected) at least one copy; publishing fails
    // until the forger knows the receiver subscribes, so this retries.
    let rejected = eventually(Duration::from_secs(5), || async {
        forger.publish_raw(STREAMS_TOPIC, encode(&forged));
        tokio::time::sleep(Duration::from_millis(50)).await;
        receiver.directory().rejected_forged >= 1
    })
    .await;
    assert!(rejected, "receiver rejects the forged announcement");
    let d = receiver.directory();
    assert!(d.stream("hijack").is_none(), "forged stream not in the directory");
    assert!(d.rejected >= 1);

    // Malformed payloads are rejected too (counted, not forged).
    let before = receiver.directory().rejected;
    let ok = eventually(Duration::from_secs(5), || async {
        forger.publish_raw(STREAMS_TOPIC, b"{not json".to_vec());
        tokio::time::sleep(Duration::from_millis(50)).await;
        receiver.directory().rejected > before
    })
    .await;
    assert!(ok, "malformed payload rejected");

    // The same peer announcing its own stream is accepted.
    forger.set_local_streams(vec![StreamAnnouncement { origin: forger.peer_id(), ..forged.clone() }]);
    let got = receiver.find_stream("hijack", Duration::from_secs(5)).await.expect("genuine announcement");
    assert_eq!(got.origin, forger.peer_id());

    for m in [victim, receiver, forger] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_naming_another_stream_than_its_topic_is_rejected() {
    use relaycast_mesh::gossip::presence_topic;
    use relaycast_mesh::{NodeLoad, StreamPresence};
    let (receiver, _er) = start(config("p-receiver")).await;
    let mut cs = config("p-sender");
    cs.bootstrap = addrs(&receiver).await;
    let (sender, _es) = start(cs).await;
    // The sender announces cam (only announced streams' presences are followed) and its load
    // report makes it a node in the receiver's directory.
    sender.set_local_streams(vec![relaycast_mesh::StreamAnnouncement {
        origin: sender.peer_id(),
        stream: "cam".into(),
        codec: "VP8".into(),
        layers: vec!["f".into()],
        http_url: String::new(),
        started_ms: 0,
    }]);
    sender.set_load(NodeLoad::default());
    assert!(
        eventually(Duration::from_secs(5), || async { receiver.directory().stream("cam").is_some() }).await,
        "the receiver hears the announcement of cam"
    );
    receiver.want_stream("cam");
    let other = StreamPresence { stream: "other".into(), depth: 1, ..Default::default() };
    let rejected = eventually(Duration::from_secs(5), || async {
        sender.publish_raw(&presence_topic("cam"), encode(&other));
        tokio::time::sleep(Duration::from_millis(50)).await;
        receiver.directory().rejected >= 1
    })
    .await;
    assert!(rejected, "receiver rejects a presence of another stream on cam's topic");
    let good = StreamPresence { stream: "cam".into(), depth: 3, ..Default::default() };
    let ok = eventually(Duration::from_secs(5), || async {
        sender.publish_raw(&presence_topic("cam"), encode(&good));
        tokio::time::sleep(Duration::from_millis(50)).await;
        receiver.directory().node(&sender.peer_id()).is_some_and(|l| l.streams == vec![good.clone()])
    })
    .await;
    assert!(ok, "a valid presence is merged: {:?}", receiver.directory().node(&sender.peer_id()));
    for m in [receiver, sender] {
        m.shutdown().await;
    }
}
