//! Socketless tests of the worker core: str0m peers acting as a WHIP publisher and WHEP viewers
//! exchange datagrams with [`WorkerCore`](super::core::WorkerCore)s in memory, on a virtual
//! clock ([`harness`]).

mod harness;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;
use tokio::sync::{mpsc, oneshot};

use super::Command;
use crate::stream::SessionEvent;
use harness::*;

#[test]
fn viewer_connects_and_receives_video_and_audio_with_continuous_sequence_numbers() {
    let mut w = World::new();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    let (_, mut pub_events) = w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects (ICE and DTLS)"
    );
    assert!(drain(&mut pub_events).contains(&SessionEvent::Connected));
    w.run_for(Duration::from_millis(200));
    let stream = w.stream("live");
    assert!(stream.is_live());
    assert!(
        stream.layers[0].packets.load(Ordering::Relaxed) > 0,
        "the core counts the publisher's video"
    );

    let (_, mut view_events) = w.subscribe(v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects (ICE and DTLS)"
    );
    w.run_for(Duration::from_secs(2));
    let events = drain(&mut view_events);
    assert!(events.contains(&SessionEvent::Connected), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Layer { .. })),
        "the viewer is told its layer: {events:?}"
    );

    let viewer = &w.clients[v];
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    // Two seconds at 30 frames of two packets, and 50 audio packets a second.
    assert!(video.len() > 100, "video packets received: {}", video.len());
    assert!(audio.len() > 80, "audio packets received: {}", audio.len());
    assert!(
        consecutive(&video),
        "video sequence numbers run on without gaps: {video:?}"
    );
    assert!(
        consecutive(&audio),
        "audio sequence numbers run on without gaps: {audio:?}"
    );
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    // str0m reports audio less often than video: give it a few seconds.
    w.run_for(Duration::from_secs(5));
    for (video, kind) in [(true, "video"), (false, "audio")] {
        assert!(
            w.clients[v]
                .got
                .iter()
                .any(|g| g.video == video && g.after_sender_report),
            "the node sends the viewer sender reports for its {kind}"
        );
    }
    let m = &w.shared().metrics;
    assert!(m.ingress_packets.load(Ordering::Relaxed) > 0);
    assert_eq!(m.dropped_unrecognised.load(Ordering::Relaxed), 0);
}

#[test]
fn viewer_pli_reaches_the_publisher_through_the_throttle() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    let ssrc = w.clients[v].video_ssrc().expect("viewer receives video");
    let before = w.clients[p].keyframe_requests;
    let upstream_before = stream
        .counters
        .upstream_keyframe_requests
        .load(Ordering::Relaxed);
    // Two PLIs 10 ms apart: the first goes upstream, the second waits for the throttle's
    // interval and is then answered by the keyframe the first asked for.
    for _ in 0..2 {
        let mut api = w.clients[v].rtc.direct_api();
        api.stream_rx(&ssrc)
            .expect("viewer's video stream")
            .request_keyframe(KeyframeRequestKind::Pli);
        w.run_for(Duration::from_millis(10));
    }
    w.run_for(Duration::from_millis(100));
    assert_eq!(
        w.clients[p].keyframe_requests,
        before + 1,
        "one keyframe request reaches the publisher at once"
    );
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        w.clients[p].keyframe_requests,
        before + 1,
        "the held request is answered by the keyframe, not sent"
    );
    assert_eq!(
        stream
            .counters
            .upstream_keyframe_requests
            .load(Ordering::Relaxed),
        upstream_before + 1
    );
    assert!(
        stream
            .counters
            .viewer_keyframe_requests
            .load(Ordering::Relaxed)
            >= 2,
        "both PLIs are counted"
    );
}

#[test]
fn a_lost_packet_is_nacked_by_the_viewer_and_repaired() {
    let (mut w, _, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let video = *w.clients[v].video_ssrc().expect("viewer receives video");
    let audio = *w.clients[v].audio_ssrc().expect("viewer receives audio");
    let last = *w.clients[v].seqs(true).last().expect("video");
    // Drop the video packet 20 after the last one received, once, and for 200 ms after it
    // every packet of the repair stream: str0m's probing may resend a recent packet as padding
    // at once, and this way the viewer must ask for the lost one.
    let lost = (last + 20) as u16;
    let viewer = w.clients[v].addr;
    let mut dropped_at: Option<Instant> = None;
    // Datagrams of that packet on the viewer's video stream itself (not its repair stream).
    let originals = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = originals.clone();
    w.drop_rule = Some(Box::new(move |now, to, data| {
        if to != viewer || data.len() < 12 || data[0] >> 6 != 2 || (192..=223).contains(&data[1]) {
            return false;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let seq = u16::from_be_bytes([data[2], data[3]]);
        if ssrc == video && seq == lost {
            seen.set(seen.get() + 1);
            if dropped_at.is_none() {
                dropped_at = Some(now);
                return true;
            }
        }
        let repair = ssrc != video && ssrc != audio;
        repair
            && dropped_at
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_millis(200))
    }));
    w.run_for(Duration::from_secs(3));
    assert_eq!(
        originals.get(),
        1,
        "the node sent the packet once on the video stream"
    );
    assert!(w.dropped >= 1, "the network dropped it");
    let got = w.clients[v].seqs(true);
    assert!(
        got.iter().any(|s| *s as u16 == lost),
        "the lost packet arrives, resent on the repair stream"
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert!(consecutive(&sorted), "nothing is missing once repaired");
    assert!(
        w.stream("live")
            .counters
            .viewer_nacks
            .load(Ordering::Relaxed)
            > 0,
        "the viewer's NACK reached the node"
    );
}

#[test]
fn a_later_viewer_starts_from_the_cached_keyframe() {
    let (mut w, p, _, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    let requests = w.clients[p].keyframe_requests;
    let starts = stream.counters.cached_starts.load(Ordering::Relaxed);
    let v2 = w.add_client(6003);
    let (_, _) = w.subscribe(v2, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v2].connected),
        "second viewer connects"
    );
    w.run_for(Duration::from_millis(300));
    assert_eq!(
        stream.counters.cached_starts.load(Ordering::Relaxed),
        starts + 1,
        "started from the cache"
    );
    assert_eq!(
        w.clients[p].keyframe_requests, requests,
        "the publisher was not asked for a keyframe"
    );
    let second = &w.clients[v2];
    let first_video = second
        .got
        .iter()
        .find(|g| g.video)
        .expect("second viewer receives video");
    assert!(
        first_video.keyframe_start,
        "its first video packet starts a keyframe"
    );
    let video = second.seqs(true);
    assert!(
        consecutive(&video),
        "cached and live packets run on: {video:?}"
    );
    assert_eq!(w.core().peer_count(), 3);
}

#[test]
fn removing_the_publisher_ends_its_session_and_tells_the_viewers() {
    let (mut w, _, v, pub_id, view_id) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    let mut pub_events = w
        .shared()
        .registry
        .session(pub_id)
        .expect("publisher session")
        .events
        .subscribe();
    let mut view_events = w
        .shared()
        .registry
        .session(view_id)
        .expect("viewer session")
        .events
        .subscribe();
    let (done, mut done_rx) = oneshot::channel();
    w.command(
        0,
        Command::Close {
            id: pub_id,
            done: Some(done),
        },
    );
    assert!(done_rx.try_recv().is_ok(), "the close is confirmed");
    assert!(drain(&mut pub_events).contains(&SessionEvent::Closed));
    assert!(drain(&mut view_events).contains(&SessionEvent::Publisher { live: false }));
    assert!(w.shared().registry.session(pub_id).is_none());
    assert!(!stream.is_live());
    assert_eq!(w.core().peer_count(), 1);
    let received = w.clients[v].got.len();
    w.run_for(Duration::from_millis(500));
    assert_eq!(
        w.clients[v].got.len(),
        received,
        "no media after the publisher left"
    );
    // Closing the viewer ends its session too.
    w.command(
        0,
        Command::Close {
            id: view_id,
            done: None,
        },
    );
    assert!(drain(&mut view_events).contains(&SessionEvent::Closed));
    assert_eq!(w.core().peer_count(), 0);
    assert_eq!(w.shared().worker_load[0].load(Ordering::Relaxed), 0);
}

#[test]
fn a_backup_publisher_takes_over_a_stalled_primary_and_hands_back() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    let b = w.add_client(6004);
    w.publish_as(b, "live", true);
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[b].connected),
        "backup connects"
    );
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    assert_eq!(stream.backup_state(), Some(false), "the backup stands by");
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        0
    );

    // The primary stalls: after two seconds the backup feeds the stream.
    w.clients[p].source.as_mut().expect("publisher").paused = true;
    w.run_for(Duration::from_millis(1500));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        0,
        "not before the stall bound"
    );
    let before = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_millis(1500));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        1,
        "switched to the backup"
    );
    assert_eq!(
        stream.backup_state(),
        Some(true),
        "the backup feeds the stream"
    );
    assert!(
        w.clients[b].keyframe_requests > 0,
        "the backup is asked for a keyframe"
    );
    assert!(
        w.clients[v].seqs(true).len() > before + 20,
        "the viewer gets the backup's video"
    );

    // The primary sends again: after a steady second it takes over at its next keyframe.
    w.clients[p].source.as_mut().expect("publisher").paused = false;
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        2,
        "switched back to the primary"
    );
    assert_eq!(stream.backup_state(), Some(false));
    let video = w.clients[v].seqs(true);
    assert!(
        consecutive(&video),
        "the viewer's video runs on across both switches: {video:?}"
    );
    let audio = w.clients[v].seqs(false);
    assert!(consecutive(&audio), "and so does its audio");
}

#[test]
fn a_relay_carries_the_stream_to_a_viewer_on_another_node() {
    let mut w = World::new();
    let edge = w.add_node(5001);
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_millis(200));
    w.relay(0, edge, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.nodes[1].stream("live").layers
            [0]
        .packets
        .load(Ordering::Relaxed)
            > 0),
        "the edge receives the stream's video over the relay"
    );
    assert_eq!(
        w.stream("live").relay_children.load(Ordering::Relaxed),
        1,
        "the origin counts its relay child"
    );
    assert!(
        w.nodes[edge].stream("live").is_live(),
        "the relay feeds the stream on the edge"
    );
    w.subscribe_on(edge, v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects to the edge"
    );
    w.run_for(Duration::from_secs(2));
    let viewer = &w.clients[v];
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    assert!(
        video.len() > 80,
        "video packets received over the relay: {}",
        video.len()
    );
    assert!(
        audio.len() > 60,
        "audio packets received over the relay: {}",
        audio.len()
    );
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    assert!(
        consecutive(&video),
        "video sequence numbers run on: {video:?}"
    );
    assert!(
        consecutive(&audio),
        "audio sequence numbers run on: {audio:?}"
    );
}

#[test]
fn a_viewer_whose_send_queue_backs_up_skips_to_the_next_keyframe() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    assert_eq!(stream.counters.congestion_skips.load(Ordering::Relaxed), 0);
    // A 2 Mbit/s bottleneck to the viewer holds its estimate down, and the publisher's frames
    // grow to 40 packets of 1100 bytes, about 10 Mbit/s: the viewer's pacer cannot keep up.
    w.link = Some((w.clients[v].addr, 2_000_000));
    w.clients[p]
        .source
        .as_mut()
        .expect("publisher")
        .packets_per_frame = 40;
    assert!(
        w.run_until(Duration::from_secs(10), |_| stream
            .counters
            .congestion_skips
            .load(Ordering::Relaxed)
            > 0),
        "the viewer's video skips ahead once its oldest queued packet waited past 300 ms"
    );
    let received = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_secs(1));
    assert!(
        w.clients[v].seqs(true).len() > received,
        "and goes on from a keyframe"
    );
}

#[cfg(debug_assertions)]
#[test]
fn a_panicking_session_is_dropped_and_the_core_pauses_new_sessions_then_recovers() {
    let (mut w, _, v, pub_id, view_id) = publisher_and_viewer();
    let faulty = w.add_client(6005);
    let (faulty_id, _) = w.publish(faulty, super::FAULT_INJECTION_STREAM);
    w.nodes[0].core.inject_faults = true;
    // The faulty session's next drive panics; the shell catches it and hands it to the core.
    let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.run_for(Duration::from_secs(1))
    }));
    let payload = turn.expect_err("the injected fault panics");
    let now = w.now;
    w.nodes[0].core.recover(payload.as_ref(), now);
    w.nodes[0].core.inject_faults = false;
    w.wire.clear();
    // Its peer on the far side has nobody to talk to any more.
    w.clients.truncate(faulty);
    let m = &w.shared().metrics;
    assert_eq!(m.worker_panics.load(Ordering::Relaxed), 1);
    assert!(
        !w.shared().worker_healthy[0].load(Ordering::Relaxed),
        "the worker takes no new sessions for a while"
    );
    assert!(
        w.shared().registry.session(faulty_id).is_none(),
        "the session that panicked is gone"
    );
    assert_eq!(w.core().peer_count(), 2, "the other sessions stay");

    let received = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_secs(1));
    assert!(
        w.clients[v].seqs(true).len() > received + 30,
        "the viewer keeps receiving"
    );

    w.command(
        0,
        Command::Close {
            id: view_id,
            done: None,
        },
    );
    w.command(
        0,
        Command::Close {
            id: pub_id,
            done: None,
        },
    );
    w.run_for(super::PANIC_QUARANTINE);
    assert!(
        w.shared().worker_healthy[0].load(Ordering::Relaxed),
        "the worker takes sessions again after the quarantine"
    );
}

#[test]
fn a_viewers_simulcast_layer_follows_its_bandwidth_estimate() {
    let mut w = World::new();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    // About 100 kbit/s, 500 kbit/s and 2.6 Mbit/s.
    let layers = [("q", 1, 400), ("h", 2, 1000), ("f", 10, 1100)];
    w.publish_with(p, "live", false, &layers);
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    assert!(
        stream.simulcast.load(Ordering::Relaxed),
        "the stream is simulcast"
    );
    for l in &stream.layers {
        assert!(l.active.load(Ordering::Relaxed), "every layer arrives");
    }
    let (_, mut events) = w.subscribe(v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects"
    );
    let recent = |w: &World, f: fn(u8) -> bool| {
        let got = &w.clients[v].got;
        got.iter().filter(|g| g.video).count() > 10
            && got
                .iter()
                .rev()
                .filter(|g| g.video)
                .take(10)
                .all(|g| f(g.layer))
    };
    assert!(
        w.run_until(Duration::from_secs(3), |w| recent(w, |l| l == 2)),
        "on an open path the viewer receives the top layer"
    );
    // A 1.2 Mbit/s bottleneck to the viewer: its estimate falls below the top layer and the
    // viewer gets a lower one.
    w.link = Some((w.clients[v].addr, 1_200_000));
    assert!(
        w.run_until(Duration::from_secs(15), |w| recent(w, |l| l < 2)),
        "the viewer moves down once its estimate drops"
    );
    // The bottleneck widens: transport-wide feedback raises the estimate and the viewer climbs
    // back to the top layer.
    w.link = Some((w.clients[v].addr, 20_000_000));
    assert!(
        w.run_until(Duration::from_secs(40), |w| recent(w, |l| l == 2)),
        "the viewer climbs back as its estimate grows"
    );
    // Layer events go out with the viewer's next housekeeping.
    w.run_for(Duration::from_millis(300));
    let rids: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Layer { rid: Some(r), .. } => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        rids.iter().any(|r| r != "f"),
        "the viewer is told of the lower layer: {rids:?}"
    );
    assert_eq!(
        rids.last().map(String::as_str),
        Some("f"),
        "and then of the top layer: {rids:?}"
    );
    assert!(stream.counters.layer_switches.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_viewer_on_another_worker_gets_the_stream_through_the_media_queue() {
    let mut w = World::two_workers();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_millis(400));
    let stream = w.stream("live");
    let requests = w.clients[p].keyframe_requests;
    let (_, _) = w.subscribe_on(1, v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects to the second worker"
    );
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        stream.worker_mask.load(Ordering::Relaxed),
        0b10,
        "the stream has viewers on the second worker only"
    );
    assert_eq!(
        stream.counters.cached_starts.load(Ordering::Relaxed),
        1,
        "started from the first worker's cached keyframe"
    );
    assert_eq!(
        w.clients[p].keyframe_requests, requests,
        "the publisher was not asked for a keyframe"
    );
    let viewer = &w.clients[v];
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    assert!(
        video.len() > 100 && audio.len() > 80,
        "video {} and audio {} packets",
        video.len(),
        audio.len()
    );
    assert!(consecutive(&video), "video runs on: {video:?}");
    assert!(consecutive(&audio), "audio runs on: {audio:?}");
    assert_eq!(
        w.shared().metrics.dropped_handoff.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn the_archive_tap_and_lifecycle_hear_a_publisher_start_and_end_even_when_the_tap_is_full() {
    use crate::lifecycle::StreamLifecycle;
    use crate::tap::TapEvent;
    let mut w = World::new();
    // A tap that holds eight events and is not read meanwhile: packets past it are dropped, the
    // publisher's start and end are not.
    let (tap, mut tapped) = mpsc::channel(8);
    let (lifecycle, mut lifecycle_rx) = crate::lifecycle::channel();
    w.nodes = Node::workers_with(&[SFU], w.now, Some(tap), Some(lifecycle));
    let p = w.add_client(6001);
    let (id, _) = w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_secs(1));
    w.command(0, Command::Close { id, done: None });
    assert!(
        w.shared().metrics.dropped_tap.load(Ordering::Relaxed) > 0,
        "packets past the tap's room are dropped"
    );
    let mut events = Vec::new();
    while let Ok(e) = tapped.try_recv() {
        events.push(e);
    }
    // The end waited for room: it goes out once the tap was read.
    w.run_for(Duration::from_millis(100));
    while let Ok(e) = tapped.try_recv() {
        events.push(e);
    }
    let Some(TapEvent::Started {
        stream, generation, ..
    }) = events.first()
    else {
        panic!("the tap hears the start first: {events:?}")
    };
    assert_eq!(stream, "live");
    let generation = *generation;
    assert!(
        matches!(events.last(), Some(TapEvent::Ended { generation: g, .. }) if *g == generation),
        "and the end last"
    );
    assert_eq!(events.len(), 9, "seven packets fit between them");
    assert_eq!(
        lifecycle_rx.try_recv().ok(),
        Some(StreamLifecycle::Started {
            stream: "live".into(),
            generation
        })
    );
    assert_eq!(
        lifecycle_rx.try_recv().ok(),
        Some(StreamLifecycle::Ended {
            stream: "live".into(),
            generation
        })
    );
}

/// The session `id` on node `node`, if it is there.
fn peer_on(w: &World, node: usize, id: crate::stream::SessionId) -> Option<&crate::peer::Peer> {
    let core = &w.nodes[node].core;
    core.by_id.get(&id).and_then(|&s| core.peers[s].as_deref())
}

#[test]
fn a_standby_edge_stays_paused_until_the_downstream_node_switches_to_it() {
    standby_switch(false);
}

#[test]
fn a_lost_request_to_resume_the_standby_edge_is_sent_again() {
    standby_switch(true);
}

#[test]
fn a_handover_moves_the_stream_to_the_standby_at_its_keyframe_while_the_old_upstream_feeds() {
    let StandbyWorld { mut w, edge, v, primary, standby, served } = standby_world();
    w.run_for(Duration::from_secs(1));
    let origin = w.stream("live");
    assert_eq!(origin.standby_children.load(Ordering::Relaxed), 1);
    assert_eq!(*origin.paused_relays.lock().unwrap(), vec![served], "the paused edge is listed");
    let videos = |w: &World| w.clients[v].got.iter().filter(|g| g.video).count();
    let active = |w: &World, id| peer_on(w, edge, id).is_some_and(|p| p.source_state().is_some_and(|s| s.active));

    // The cluster moves the edge to its standby; it closes the old relay in once the standby
    // feeds the stream (here 2.5 s later, past the time a backup publisher would be switched
    // back from). Video never stops for the viewer meanwhile.
    w.command(edge, Command::Handover { id: standby });
    let mut took = None;
    for step in 0..30 {
        if step == 25 {
            let (done, _) = oneshot::channel();
            w.command(edge, Command::Close { id: primary, done: Some(done) });
        }
        let before = videos(&w);
        w.run_for(Duration::from_millis(100));
        assert!(videos(&w) > before, "the viewer got no video for 100 ms (step {step})");
        if took.is_none() && active(&w, standby) {
            took = Some(step);
        }
        if took.is_some() && step < 25 {
            assert!(active(&w, standby) && !active(&w, primary), "no switch back to the old upstream (step {step})");
        }
    }
    assert!(took.is_some_and(|s| s < 3), "the standby took over within 300 ms: {took:?}");
    assert!(peer_on(&w, edge, primary).is_none(), "the old relay in is closed");
    assert!(!peer_on(&w, 0, served).is_some_and(|p| p.is_paused_relay()), "the standby edge runs");
    assert_eq!(w.nodes[edge].shared.registry.publisher("live").map(|(id, _)| id), Some(standby), "the standby feeds the stream");
    assert_eq!(origin.standby_children.load(Ordering::Relaxed), 0);
    assert!(origin.paused_relays.lock().unwrap().is_empty(), "no paused edge is listed");
    assert_eq!(origin.relay_children.load(Ordering::Relaxed), 2, "the origin feeds both nodes");
    let video: Vec<u64> = w.clients[v].got.iter().filter(|g| g.video).map(|g| g.seq).collect();
    assert!(consecutive(&video), "the viewer's sequence numbers run on across the move");
}

/// origin (0) → mid (1) → edge (2), and a standby edge origin → edge; a viewer at the edge. The
/// edge loses its upstream and switches to the standby; with `lose_resume`, every RTCP datagram
/// to the origin in the 150 ms after the switch is lost (the keyframe request that resumes the
/// paused edge among them).
/// origin (0) → mid (1) → edge (`edge`), a viewer (`v`) at the edge, and a standby edge origin
/// → edge (`standby` at the edge, `served` at the origin) beside the edge's relay in from the mid
/// node (`primary`), connected.
struct StandbyWorld {
    w: World,
    edge: usize,
    v: usize,
    primary: crate::stream::SessionId,
    standby: crate::stream::SessionId,
    served: crate::stream::SessionId,
}

fn standby_world() -> StandbyWorld {
    let mut w = World::new();
    let mid = w.add_node(5001);
    let edge = w.add_node(5002);
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    w.publish(p, "live");
    assert!(w.run_until(Duration::from_secs(3), |w| w.clients[p].connected), "publisher connects");
    w.run_for(Duration::from_millis(200));
    w.relay(0, mid, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.nodes[mid].stream("live").is_live()),
        "the mid node relays the stream"
    );
    let (primary, _) = w.relay(mid, edge, "live");
    w.subscribe_on(edge, v, "live");
    assert!(w.run_until(Duration::from_secs(3), |w| w.clients[v].connected), "viewer connects at the edge");
    let (standby, served) = w.relay_with(0, edge, "live", true);
    assert!(
        w.run_until(Duration::from_secs(3), |w| peer_on(w, edge, standby).is_some_and(|p| p.is_connected())),
        "the standby edge connects"
    );
    StandbyWorld { w, edge, v, primary, standby, served }
}

fn standby_switch(lose_resume: bool) {
    let StandbyWorld { mut w, edge, v, primary, standby, served } = standby_world();
    // Longer than the silence timeout: a paused edge must outlive it on keepalives alone.
    w.run_for(crate::peer::SILENCE_TIMEOUT + Duration::from_secs(2));
    let origin = w.stream("live");
    assert_eq!(origin.relay_children.load(Ordering::Relaxed), 1, "the origin feeds the mid node only");
    assert_eq!(origin.standby_children.load(Ordering::Relaxed), 1, "and keeps the edge's standby paused");
    assert!(peer_on(&w, 0, served).is_some_and(|p| p.is_paused_relay()), "the served edge is paused");
    let waiting = peer_on(&w, edge, standby).expect("the standby edge is still there");
    assert!(waiting.source_state().is_some_and(|s| s.last_media.is_none()), "no media crossed the paused edge");
    let before = w.clients[v].got.len();
    assert!(before > 100, "the viewer watches through the mid node: {before} packets");

    // The edge loses its upstream (the mid node's edge closes): the standby takes over.
    let t0 = w.now;
    if lose_resume {
        let origin_addr = w.nodes[0].addr;
        w.drop_rule = Some(Box::new(move |now, to, data| {
            to == origin_addr
                && data.len() > 1
                && (192..=223).contains(&data[1])
                && now.saturating_duration_since(t0) < Duration::from_millis(150)
        }));
    }
    let (done, _) = oneshot::channel();
    w.command(edge, Command::Close { id: primary, done: Some(done) });
    assert!(
        w.run_until(Duration::from_secs(2), |w| w.clients[v].got[before..].iter().any(|g| g.video && g.keyframe_start)),
        "the viewer gets a keyframe through the standby edge"
    );
    let took = w.now.saturating_duration_since(t0);
    let bound = if lose_resume { Duration::from_millis(600) } else { Duration::from_millis(100) };
    assert!(took < bound, "the viewer's next keyframe came {took:?} after the switch");
    if lose_resume {
        assert!(w.dropped > 0, "the first request was lost");
        assert!(took >= Duration::from_millis(150), "the keyframe came after the loss window: {took:?}");
    }
    assert!(!peer_on(&w, 0, served).is_some_and(|p| p.is_paused_relay()), "the edge runs");
    assert_eq!(origin.standby_children.load(Ordering::Relaxed), 0, "no standby left at the origin");
    assert_eq!(origin.relay_children.load(Ordering::Relaxed), 2, "the origin feeds both nodes now");
    w.run_for(Duration::from_secs(1));
    let video: Vec<u64> = w.clients[v].got.iter().filter(|g| g.video).map(|g| g.seq).collect();
    assert!(consecutive(&video), "the viewer's sequence numbers run on across the switch");
    assert!(w.clients[v].got.len() > before + 50, "media flows after the switch");
}

/// The viewer tests above with the viewers served by the own send path
/// ([`crate::egress::SendPath::Own`]): str0m viewers decode what it seals, answer its resends,
/// and feed its bandwidth estimator.
mod own_send_path {
    use super::harness::on_send_path;
    use crate::egress::SendPath::Own;

    #[test]
    fn viewer_connects_and_receives_video_and_audio_with_continuous_sequence_numbers() {
        on_send_path(Own, super::viewer_connects_and_receives_video_and_audio_with_continuous_sequence_numbers);
    }

    #[test]
    fn viewer_pli_reaches_the_publisher_through_the_throttle() {
        on_send_path(Own, super::viewer_pli_reaches_the_publisher_through_the_throttle);
    }

    #[test]
    fn a_lost_packet_is_nacked_by_the_viewer_and_repaired() {
        on_send_path(Own, super::a_lost_packet_is_nacked_by_the_viewer_and_repaired);
    }

    #[test]
    fn a_later_viewer_starts_from_the_cached_keyframe() {
        on_send_path(Own, super::a_later_viewer_starts_from_the_cached_keyframe);
    }

    #[test]
    fn a_relay_carries_the_stream_to_a_viewer_on_another_node() {
        on_send_path(Own, super::a_relay_carries_the_stream_to_a_viewer_on_another_node);
    }

    #[test]
    fn a_viewer_whose_send_queue_backs_up_skips_to_the_next_keyframe() {
        on_send_path(Own, super::a_viewer_whose_send_queue_backs_up_skips_to_the_next_keyframe);
    }

    #[test]
    fn a_viewers_simulcast_layer_follows_its_bandwidth_estimate() {
        on_send_path(Own, super::a_viewers_simulcast_layer_follows_its_bandwidth_estimate);
    }

    #[test]
    fn a_viewer_on_another_worker_gets_the_stream_through_the_media_queue() {
        on_send_path(Own, super::a_viewer_on_another_worker_gets_the_stream_through_the_media_queue);
    }

    /// SRTCP that does not open, from the viewer's own address, is dropped and counted under
    /// `relaycast_dropped_packets{reason="viewer_rtcp_unopened"}`; the viewer's media goes on.
    #[test]
    fn forged_viewer_rtcp_is_dropped_counted_and_harms_nothing() {
        on_send_path(Own, || {
            let (mut w, _, v, _, _) = super::publisher_and_viewer();
            w.run_for(std::time::Duration::from_millis(300));
            let before = w.clients[v].got.len();
            let viewer = w.clients[v].addr;
            let node = w.nodes[0].addr;
            for i in 0..20u8 {
                // A receiver report with an SRTCP index and a tag that do not authenticate.
                let mut d = vec![0x80, 201, 0, 1, 0, 0, 0, i];
                d.extend_from_slice(&[0x80, 0, 0, 1]);
                d.extend_from_slice(&[i; 16]);
                w.wire.push_back((viewer, node, d));
            }
            w.run_for(std::time::Duration::from_secs(2));
            let limits = &w.stream("live").counters.egress_limits;
            assert_eq!(limits.rtcp_unopened.load(std::sync::atomic::Ordering::Relaxed), 20);
            assert!(w.clients[v].got.len() > before + 50, "media goes on");
            let text = crate::metrics::render(&crate::metrics::MetricsCollector { shared: w.nodes[0].shared.clone() }).expect("renders");
            assert!(
                text.lines().any(|l| l.starts_with("relaycast_dropped_packets_total{reason=\"viewer_rtcp_unopened\"} 20")),
                "the metric counts them"
            );
        });
    }
}
