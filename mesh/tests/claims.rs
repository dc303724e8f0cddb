//! A peer that lies about a stream cannot take it over. The liar is a real mesh node that
//! publishes raw gossip signed with its own key: a claim on a stream another node originates
//! (the origin field is its own, so the signature check passes), an `http_url` on a host it is
//! not seen at, and segment events for the stream. The receiving node keeps the first origin
//! pinned, blanks the URL, drops the segments, and rate-limits the liar's relay requests; once
//! the real origin stops, another node's claim on the name is accepted.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::gossip::{STREAMS_TOPIC, encode, segments_topic};
use relaycast_mesh::{MeshError, MeshEvent, RelayError, RelayRequest, SegmentAnnouncement, StreamAnnouncement};

/// A test config with the default announce interval (1 s: claims stay fresh for 3 s, which a
/// loaded machine's scheduling delays do not reach).
fn cfg(tag: &str) -> relaycast_mesh::MeshConfig {
    let mut c = config(tag);
    c.announce_interval = Duration::from_secs(1);
    c
}

fn claim(origin: relaycast_mesh::PeerId, stream: &str, url: &str, started_ms: u64) -> StreamAnnouncement {
    StreamAnnouncement {
        origin,
        stream: stream.into(),
        codec: "VP8".into(),
        layers: vec![],
        http_url: url.into(),
        started_ms,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_competing_claim_is_rejected_and_the_name_is_freed_when_the_origin_stops() {
    let (origin, _eo) = start(cfg("origin")).await;
    let mut cr = cfg("relay");
    cr.bootstrap = addrs(&origin).await;
    let (relay, mut relay_events) = start(cr).await;
    let mut cl = cfg("liar");
    cl.bootstrap = [addrs(&origin).await, addrs(&relay).await].concat();
    let (liar, _el) = start(cl).await;

    origin.set_local_streams(vec![claim(origin.peer_id(), "room", "", 0)]);
    let real = relay.find_stream("room", Duration::from_secs(5)).await.expect("relay learns the real origin");
    assert_eq!(real.origin, origin.peer_id());
    assert_eq!(real.http_url, "http://127.0.0.1:8080/origin", "the origin's URL is on the address it is seen at");
    relay.follow_segments("room", true);

    // The liar claims "room" with an earlier signed time, long after the real origin was pinned,
    // and announces its own stream with a URL on a host it is not seen at.
    let fake = claim(liar.peer_id(), "room", "http://192.0.2.66:8080", 1);
    let own = claim(liar.peer_id(), "liar-own", "http://192.0.2.66:8080", 1);
    let seg = SegmentAnnouncement {
        stream: "room".into(),
        seq: 1,
        cid: "bafkreifake".into(),
        init: "bafkreifakeinit".into(),
        codecs: "avc1.42e01f".into(),
        duration: 2.0,
        start_unix_ms: 0,
        sig: String::new(),
    };
    // (Each rejected message lowers the liar's gossip score; the third graylists it, so the
    // kinds of lie are sent one after the other, each until it has been seen.)
    let segs = eventually(Duration::from_secs(20), || async {
        liar.publish_raw(&segments_topic("room"), encode(&seg));
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.directory().rejected_segments >= 1
    })
    .await;
    assert!(
        segs,
        "relay rejects segments not from the stream's origin: {:?}\nliar: {:?}",
        relay.directory(),
        liar.node_info().await
    );
    let urls = eventually(Duration::from_secs(20), || async {
        liar.publish_raw(STREAMS_TOPIC, encode(&own));
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.directory().rejected_urls >= 1
    })
    .await;
    assert!(urls, "relay refuses the unverifiable URL");
    let rejected = eventually(Duration::from_secs(20), || async {
        liar.publish_raw(STREAMS_TOPIC, encode(&fake));
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.directory().rejected_claims >= 1
    })
    .await;
    let d = relay.directory();
    assert!(rejected, "relay rejects the claim, the URL and the segments: {d:?}");
    assert_eq!(d.stream("room").map(|a| a.origin), Some(origin.peer_id()), "the first origin stays pinned");
    assert_eq!(d.stream("room").map(|a| a.http_url.as_str()), Some("http://127.0.0.1:8080/origin"));
    let own_seen = d.stream("liar-own").map(|a| a.http_url.clone());
    assert!(own_seen.is_none_or(|u| u.is_empty()), "the liar's unverifiable URL is not kept");
    // No fake segment reached the node.
    while let Ok(ev) = relay_events.try_recv() {
        assert!(!matches!(ev, MeshEvent::Segment(_)), "a segment from a non-origin was passed on");
    }

    // The liar's relay requests: an invalid name is refused, and a burst is rate-limited.
    let bad = liar
        .request_relay(relay.peer_id(), RelayRequest { stream: "../etc".into(), offer_sdp: String::new(), standby: false }, Duration::from_secs(5))
        .await;
    assert!(matches!(bad, Err(MeshError::Relay(RelayError::Bad(_)))), "{bad:?}");
    let started = std::time::Instant::now();
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let liar = liar.clone();
            let to = relay.peer_id();
            tokio::spawn(async move {
                let req = RelayRequest { stream: format!("s{i}"), offer_sdp: String::new(), standby: false };
                liar.request_relay(to, req, Duration::from_secs(5)).await
            })
        })
        .collect();
    // Answer what reaches the node: nothing here.
    let answering = tokio::spawn(async move {
        while let Some(ev) = relay_events.recv().await {
            if let MeshEvent::RelayRequest { reply, .. } = ev {
                let _ = reply.send(Err(RelayError::NotFound));
            }
        }
    });
    let (mut limited, mut served) = (0u32, 0u32);
    for h in burst {
        match h.await.expect("join") {
            Err(MeshError::Relay(RelayError::RateLimited)) => limited += 1,
            Err(MeshError::Relay(RelayError::NotFound)) => served += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Burst of 16 and 4 a second: what reached the node is bounded by the time the burst took.
    let bound = 16 + (4.0 * started.elapsed().as_secs_f64()).ceil() as u32 + 1;
    assert!(limited >= 1 && served <= bound, "40 requests: {served} served (bound {bound}), {limited} rate-limited");
    assert!(relay.directory().refused_relay_requests >= u64::from(limited));

    // The real origin stops: once its claim is stale the name is free, and another node's claim
    // is accepted.
    origin.set_local_streams(vec![]);
    let mut cn = cfg("next");
    cn.bootstrap = addrs(&relay).await;
    let (next, _en) = start(cn).await;
    let freed = eventually(Duration::from_secs(10), || async { relay.directory().stream("room").is_none() }).await;
    assert!(freed, "the stopped origin's claim expires");
    next.set_local_streams(vec![claim(next.peer_id(), "room", "", 0)]);
    let taken = eventually(Duration::from_secs(20), || async {
        relay.directory().stream("room").is_some_and(|a| a.origin == next.peer_id())
    })
    .await;
    assert!(taken, "the new origin is pinned: {:?}", relay.directory().stream("room"));

    answering.abort();
    for m in [origin, relay, liar, next] {
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_announce_a_name_another_origin_holds() {
    let (a, _ea) = start(cfg("a")).await;
    let mut cb = cfg("b");
    cb.bootstrap = addrs(&a).await;
    let (b, mut eb) = start(cb).await;
    a.set_local_streams(vec![claim(a.peer_id(), "room", "", 0)]);
    assert!(b.find_stream("room", Duration::from_secs(5)).await.is_some());
    assert_eq!(b.live_elsewhere("room").map(|(p, _)| p), Some(a.peer_id()));
    assert_eq!(a.live_elsewhere("room"), None, "the origin's own stream is not elsewhere");
    // B starts a stream of the same name afterwards: it is told, and A keeps the name.
    b.set_local_streams(vec![claim(b.peer_id(), "room", "", 0)]);
    let ev = next_event(&mut eb, Duration::from_secs(5), |e| matches!(e, MeshEvent::StreamTaken { .. })).await;
    match ev {
        Some(MeshEvent::StreamTaken { stream, holder }) => {
            assert_eq!(stream, "room");
            assert_eq!(holder, a.peer_id());
        }
        other => panic!("expected StreamTaken, got {other:?}"),
    }
    // B's gossip after that point reaches A (its load report); no claim on "room" came with it.
    b.set_load(relaycast_mesh::NodeLoad { viewers: 7, ..Default::default() });
    let heard = eventually(Duration::from_secs(10), || async {
        a.directory().node(&b.peer_id()).is_some_and(|l| l.viewers == 7)
    })
    .await;
    assert!(heard, "A hears B's load");
    assert_eq!(a.directory().stream("room").map(|s| s.origin), Some(a.peer_id()));
    assert_eq!(a.directory().rejected_claims, 0, "B never announced the taken name");
    a.shutdown().await;
    b.shutdown().await;
}

/// When the origin's publish ends it gossips a signed withdrawal: the name is free at every node
/// at once, not when the claim goes stale; a withdrawal signed by anyone else frees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_withdrawal_frees_the_name_at_once() {
    // Announcements every 4 s: a claim stays fresh for 12 s, so only a withdrawal frees it fast.
    let slow = |tag: &str| {
        let mut c = config(tag);
        c.announce_interval = Duration::from_secs(4);
        c
    };
    let (origin, _eo) = start(slow("w-origin")).await;
    let boot = addrs(&origin).await;
    let mut cr = slow("w-relay");
    cr.bootstrap = boot.clone();
    let (relay, _er) = start(cr).await;
    let mut cl = slow("w-liar");
    cl.bootstrap = boot;
    let (liar, _el) = start(cl).await;
    let (o, l) = (origin.peer_id(), liar.peer_id());
    let heard = eventually(Duration::from_secs(10), || async {
        // The relay hears the liar's load too, so the liar's messages reach it.
        liar.set_load(relaycast_mesh::NodeLoad { capacity: 1, ..Default::default() });
        origin.set_local_streams(vec![claim(o, "room", "", 0)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.directory().stream("room").is_some() && relay.directory().node(&l).is_some()
    })
    .await;
    assert!(heard, "the relay knows the claim and the liar");
    let started_ms = relay.directory().stream("room").map(|a| a.started_ms).unwrap_or_default();
    assert!(started_ms > 0, "the origin signs a start time");

    // Withdrawals of the origin's claim sent by the liar: forged (naming the origin) or its own.
    // (The first node to receive the forged one rejects it and does not forward it.)
    let forged_count = || relay.directory().rejected_forged + origin.directory().rejected_forged;
    let forged = forged_count();
    for origin_field in [o, l] {
        let w = relaycast_mesh::gossip::StreamWithdrawal { origin: origin_field, stream: "room".into(), started_ms };
        liar.publish_raw(relaycast_mesh::gossip::WITHDRAWALS_TOPIC, relaycast_mesh::gossip::encode(&w));
    }
    let refused = eventually(Duration::from_secs(5), || async { forged_count() > forged }).await;
    assert!(refused, "the forged withdrawal is rejected");
    assert_eq!(relay.directory().stream("room").map(|a| a.origin), Some(o), "the claim stands");
    assert_eq!(relay.directory().withdrawals, 0);

    // The origin's publish ends: the name is free at the relay well within the claim's 12 s.
    let t = std::time::Instant::now();
    origin.set_local_streams(vec![]);
    let freed = eventually(Duration::from_secs(5), || async { relay.directory().stream("room").is_none() }).await;
    let took = t.elapsed();
    assert!(freed, "the withdrawal frees the name");
    assert_eq!(relay.live_elsewhere("room"), None);
    assert_eq!(relay.directory().withdrawals, 1);
    println!("name free at the relay {took:?} after the origin's publish ended");
    // And another node's claim on it is accepted at once.
    liar.set_local_streams(vec![claim(l, "room", "", 0)]);
    let taken = eventually(Duration::from_secs(5), || async {
        relay.directory().stream("room").is_some_and(|a| a.origin == l)
    })
    .await;
    assert!(taken, "a new claim is pinned");
    for m in [origin, relay, liar] {
        m.shutdown().await;
    }
}

/// A segment whose stream has no claim at the receiver (not heard yet, or expired while the
/// receiver was stalled) is ignored, not rejected: its honest origin is not penalised (two
/// rejections would graylist it and cut the relay off from its upstream's gossip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_of_unclaimed_streams_do_not_penalise_the_sender() {
    let (origin, _eo) = start(cfg("u-origin")).await;
    let mut cr = cfg("u-relay");
    cr.bootstrap = addrs(&origin).await;
    let (relay, mut er) = start(cr).await;
    let o = origin.peer_id();
    origin.set_local_streams(vec![claim(o, "room", "", 0)]);
    assert!(relay.find_stream("room", Duration::from_secs(5)).await.is_some(), "relay knows the claim");
    for s in ["ghost", "room"] {
        relay.follow_segments(s, true);
    }
    let seg = |stream: &str, seq| SegmentAnnouncement {
        stream: stream.into(),
        seq,
        cid: "bafkreifake".into(),
        init: "bafkreifakeinit".into(),
        codecs: "avc1.42e01f".into(),
        duration: 2.0,
        start_unix_ms: 0,
        sig: String::new(),
    };
    // Repeated until the relay's subscriptions reach the origin: three segments of a stream the
    // relay has no claim for (enough to graylist the origin if rejected), then one of "room".
    let mut got = false;
    for seq in 1..=30u64 {
        for _ in 0..3 {
            origin.announce_segment(&seg("ghost", seq));
        }
        origin.announce_segment(&seg("room", seq));
        let ev = next_event(&mut er, Duration::from_millis(300), |e| matches!(e, MeshEvent::Segment(s) if s.stream == "room")).await;
        if ev.is_some() {
            got = true;
            break;
        }
    }
    assert!(got, "the relay passes on the origin's segment of its claimed stream");
    let d = relay.directory();
    assert_eq!((d.rejected_segments, d.rejected), (0, 0), "unclaimed streams' segments are not rejected");
    for m in [origin, relay] {
        m.shutdown().await;
    }
}
