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
