//! An SDP offer that makes str0m panic while accepting it (found by the `sdp` fuzz target) is
//! refused as bad SDP, and the worker that took it keeps taking sessions.

use std::net::{IpAddr, Ipv4Addr};

use relaycast_sfu::sfu::{Sfu, SfuConfig, SfuError};

fn sfu() -> Sfu {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Sfu::start(SfuConfig {
        workers: 1,
        bind_ip: lo,
        media_port: 0,
        candidate_ip: lo,
        max_sessions: 16,
        publisher_reserve: 0,
        tap: None,
        lifecycle: None,
        dtls_backend: Default::default(),
        send_path: Default::default(),
    })
    .expect("sfu")
}

/// A str0m offer with the given media (send only for a publisher, receive only for a viewer).
fn offer(kinds: &[str0m::media::MediaKind], dir: str0m::media::Direction) -> String {
    let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
    let addr = "127.0.0.1:40000".parse().expect("addr");
    rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("candidate"));
    let mut api = rtc.sdp_api();
    for k in kinds {
        api.add_media(*k, dir, None, None, None);
    }
    let (offer, _) = api.apply().expect("offer");
    offer.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_panics_the_webrtc_stack_is_refused_and_the_worker_carries_on() {
    use str0m::media::{Direction, MediaKind};
    let sfu = sfu();
    // An audio-only stream (a radio): its viewers are offered every video codec, the set the
    // crafted offer needs.
    sfu.publish("radio", &offer(&[MediaKind::Audio], Direction::SendOnly)).await.expect("audio publisher");
    let crafted = include_str!("data/str0m-pt-locked-twice.sdp");
    let r = sfu.subscribe("radio", crafted, Default::default()).await;
    assert!(matches!(r, Err(SfuError::BadSdp(_))), "{r:?}");
    // The one worker still takes sessions at once (no panic quarantine).
    let ok = sfu.subscribe("radio", &offer(&[MediaKind::Video, MediaKind::Audio], Direction::RecvOnly), Default::default()).await;
    assert!(ok.is_ok(), "{ok:?}");
    sfu.shutdown();
}
