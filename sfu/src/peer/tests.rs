//! Peer logic without sockets: events in, effects and counter deltas out.

use super::*;
use crate::layer::SelectorConfig;
use crate::metrics::JoinRole;
use crate::stream::{Registry, Role};
use str0m::media::KeyframeRequest;

/// A viewer peer of a fresh stream (no socket, no worker), and a listener on its channel.
fn viewer(now: Instant) -> (Peer, broadcast::Receiver<SessionEvent>) {
    let reg = Registry::default();
    let (id, entry) = reg.admit_limited("s", Role::Publisher, 0, 10, 10).expect("admitted");
    let rx = entry.events.subscribe();
    let rtc = Rtc::builder().set_rtp_mode(true).set_crypto_provider(crate::dtls::crypto_provider()).build(now);
    let forwarder = Forwarder::new(SelectorConfig::default(), LayerPreference::Auto);
    (Peer::viewer(id, rtc, entry.stream.clone(), entry.events.clone(), forwarder, entry.layer.clone(), now), rx)
}

#[test]
fn connecting_returns_the_event_and_the_join_time_instead_of_sending_them() {
    let now = Instant::now();
    let (mut peer, mut rx) = viewer(now);
    let mut fx = Effects::default();
    peer.handle_event(Event::Connected, now + Duration::from_millis(250), &mut fx);
    assert!(peer.is_connected());
    assert_eq!(fx.events, vec![(peer.id, SessionEvent::Connected)]);
    assert!(matches!(fx.joins.as_slice(), [(JoinRole::Viewer, d)] if *d == Duration::from_millis(250)));
    assert!(rx.try_recv().is_err(), "the peer sends nothing on the session's channel itself");
}

#[test]
fn counter_deltas_stay_with_the_peer_until_they_are_flushed() {
    let now = Instant::now();
    let (mut peer, _rx) = viewer(now);
    let mut fx = Effects::default();
    let req = KeyframeRequest { mid: Mid::from("0"), rid: None, kind: KeyframeRequestKind::Pli };
    peer.handle_event(Event::KeyframeRequest(req), now, &mut fx);
    peer.handle_event(Event::KeyframeRequest(req), now, &mut fx);
    assert_eq!(peer.local.viewer_keyframe_requests, 2);
    assert!(fx.keyframes.is_empty(), "a viewer that receives no layer yet asks nothing upstream");
    let counters = &peer.stream.counters;
    assert_eq!(counters.viewer_keyframe_requests.load(Ordering::Relaxed), 0, "nothing shared is written");
    let stream = peer.stream.clone();
    peer.local.flush(&stream.counters);
    assert_eq!(stream.counters.viewer_keyframe_requests.load(Ordering::Relaxed), 2);
    assert_eq!(peer.local.viewer_keyframe_requests, 0);
}

#[test]
fn a_session_expires_by_the_timeout_policy() {
    let now = Instant::now();
    let (mut peer, _rx) = viewer(now);
    assert_eq!(peer.expiry(now + VIEWER_CONNECT_TIMEOUT), None);
    assert_eq!(peer.expiry(now + VIEWER_CONNECT_TIMEOUT + Duration::from_millis(1)), Some(Expiry::NeverConnected));
    let mut fx = Effects::default();
    peer.handle_event(Event::Connected, now, &mut fx);
    assert_eq!(peer.expiry(now + SILENCE_TIMEOUT), None, "a connected session may be quiet this long");
    assert_eq!(peer.expiry(now + SILENCE_TIMEOUT + Duration::from_millis(1)), Some(Expiry::Silent));
    peer.handle_event(Event::IceConnectionStateChange(IceConnectionState::Disconnected), now, &mut fx);
    peer.last_input = now + DISCONNECT_TIMEOUT;
    assert_eq!(peer.expiry(now + DISCONNECT_TIMEOUT), None);
    assert_eq!(peer.expiry(now + DISCONNECT_TIMEOUT + Duration::from_millis(1)), Some(Expiry::Disconnected));
    peer.handle_event(Event::IceConnectionStateChange(IceConnectionState::Connected), now, &mut fx);
    assert_eq!(peer.expiry(now + DISCONNECT_TIMEOUT + Duration::from_millis(1)), None, "reconnected in time");
    peer.rtc.disconnect();
    assert_eq!(peer.expiry(now), Some(Expiry::Dead));
}

#[test]
fn housekeeping_says_when_its_periodic_part_ran() {
    let now = Instant::now();
    let (mut peer, _rx) = viewer(now);
    let mut fx = Effects::default();
    assert!(!peer.housekeeping(now + HOUSEKEEPING_INTERVAL / 2, &mut fx));
    assert!(peer.housekeeping(now + HOUSEKEEPING_INTERVAL, &mut fx));
    assert!(!peer.housekeeping(now + HOUSEKEEPING_INTERVAL + Duration::from_millis(1), &mut fx));
}
