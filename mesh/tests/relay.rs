//! Relay requests: answered through the event's reply channel; refused for untrusted peers.

mod common;

use std::time::Duration;

use common::*;
use relaycast_mesh::{MeshError, MeshEvent, PeerId, RelayError, RelayRequest, RelayResponse};

fn req(stream: &str) -> RelayRequest {
    RelayRequest { stream: stream.into(), offer_sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".into(), standby: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_request_round_trip_and_trust() {
    let mut cu = config("up");
    cu.listen.push("/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr"));
    let (up, mut up_events) = start(cu).await;
    // The downstream node reaches the upstream one over QUIC.
    let quic: Vec<_> = addrs(&up).await.into_iter().filter(|a| a.to_string().contains("/quic-v1")).collect();
    assert_eq!(quic.len(), 1, "one QUIC listener");
    let mut cd = config("down");
    cd.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr")];
    cd.bootstrap = quic;
    let (down, _de) = start(cd).await;

    // The upstream node answers through the reply channel.
    let server = tokio::spawn(async move {
        let mut answered = 0;
        while let Some(ev) = up_events.recv().await {
            if let MeshEvent::RelayRequest { from, request, reply } = ev {
                let r = match request.stream.as_str() {
                    "cam" => Ok(RelayResponse { answer_sdp: format!("answer for {from}: {}", request.offer_sdp.len()), depth: 0, path: vec![] }),
                    "deep" => Ok(RelayResponse { answer_sdp: String::new(), depth: 1, path: vec![from, from] }),
                    "drop" => {
                        drop(reply);
                        answered += 1;
                        continue;
                    }
                    _ => Err(RelayError::NotFound),
                };
                let _ = reply.send(r);
                answered += 1;
            }
        }
        answered
    });

    let r = down.request_relay(up.peer_id(), req("cam"), Duration::from_secs(5)).await.expect("answer");
    assert_eq!(r.depth, 0);
    assert_eq!(r.answer_sdp, format!("answer for {}: {}", down.peer_id(), req("cam").offer_sdp.len()));
    assert!(r.path.is_empty());
    // The ancestor path crosses the wire as given (the requester judges it).
    let r = down.request_relay(up.peer_id(), req("deep"), Duration::from_secs(5)).await.expect("answer");
    assert_eq!((r.depth, r.path), (1, vec![down.peer_id(), down.peer_id()]));
    let e = down.request_relay(up.peer_id(), req("other"), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(MeshError::Relay(RelayError::NotFound))), "{e:?}");
    let e = down.request_relay(up.peer_id(), req("drop"), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(MeshError::Relay(RelayError::Internal(_)))), "{e:?}");
    // Unknown peer: no address, fails rather than hanging.
    let e = down.request_relay(PeerId::random(), req("cam"), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(MeshError::Request(_))), "{e:?}");

    // A node trusting only some other peer refuses `down` without involving its node.
    let mut ct = config("trusting");
    ct.trusted_peers = vec![PeerId::random()];
    let (trusting, mut trusting_events) = start(ct).await;
    let mut cd2 = config("down2");
    cd2.bootstrap = addrs(&trusting).await;
    let (down2, _d2e) = start(cd2).await;
    let e = down2.request_relay(trusting.peer_id(), req("cam"), Duration::from_secs(5)).await;
    assert!(matches!(e, Err(MeshError::Relay(RelayError::NotTrusted))), "{e:?}");
    while let Ok(ev) = trusting_events.try_recv() {
        assert!(!matches!(ev, MeshEvent::RelayRequest { .. }), "untrusted request reached the node");
    }

    up.shutdown().await;
    down.shutdown().await;
    drop(up);
    let answered = tokio::time::timeout(Duration::from_secs(2), server).await.expect("server ends").expect("join");
    assert_eq!(answered, 4);
    trusting.shutdown().await;
    down2.shutdown().await;
}
