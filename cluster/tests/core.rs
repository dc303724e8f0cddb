//! The cluster core driven without sockets: every failover path, loop refusal at any depth, the
//! depth cap, idle relays, placement redirects, and candidates asked in parallel.

use std::time::{Duration, Instant};

use relaycast_cluster::core::{DetachReason, IDLE_RELAY, LocalStream, MEDIA_STALL, REATTACH_FOR, REATTACH_PAUSE};
mod common;

use common::{S, config, drain, full, tree};
use relaycast_cluster::{Config, Core, Input, Output};
use relaycast_mesh::{Directory, NodeLoad, PeerId, RelayError, StreamAnnouncement};

/// The attach outputs' peers, in order.
fn attaches(out: &[Output]) -> Vec<(u64, PeerId)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Attach { attempt, peer, .. } => Some((*attempt, *peer)),
            _ => None,
        })
        .collect()
}

fn viewers(n: u32) -> Vec<LocalStream> {
    vec![LocalStream { name: S.into(), viewers: n, ..Default::default() }]
}

/// Attaches `core` to `upstream` whose path (itself last) is `answered`: a viewer wants the
/// stream, the core asks `upstream` first (it must be the best candidate), it answers.
fn attach_to(core: &mut Core, upstream: PeerId, answered: Vec<PeerId>, session: u64, now: Instant) {
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    let out = drain(core);
    let (attempt, peer) = attaches(&out)[0];
    assert_eq!(peer, upstream, "{out:?}");
    core.handle_input(Input::Answered { attempt, depth: answered.len() as u32 - 1, path: answered }, now);
    assert_eq!(drain(core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session }, now);
    let out = drain(core);
    assert!(out.contains(&Output::Ready { stream: S.into(), ok: true }), "{out:?}");
    assert!(out.contains(&Output::Follow { stream: S.into(), on: true }));
}

#[test]
fn an_ancestor_at_any_depth_is_refused_as_a_downstream() {
    for depth in 1..=7usize {
        // A chain origin, n1, ..., n_depth; the last node serves requests.
        let chain: Vec<PeerId> = (0..=depth).map(|_| PeerId::random()).collect();
        let me = chain[depth];
        let now = Instant::now();
        let mut core = Core::new(config(me));
        let upstream_path = chain[..depth].to_vec();
        let d = tree(chain[0], &[(chain[depth - 1], chain[..depth - 1].to_vec())]);
        core.handle_input(Input::Directory(full(d, chain[0])), now);
        attach_to(&mut core, chain[depth - 1], upstream_path.clone(), 1, now);
        assert_eq!(core.relay_in(S).map(|r| (r.path.clone(), r.depth)), Some((upstream_path, depth as u32)));
        for (i, ancestor) in chain[..depth].iter().enumerate() {
            core.handle_input(Input::RelayRequest { id: i as u64, from: *ancestor, stream: S.into(), has_source: true, standby: false }, now);
            let out = drain(&mut core);
            assert!(
                matches!(&out[..], [Output::Refuse { id, error: RelayError::Bad(m) }] if *id == i as u64 && m.contains("cycle")),
                "depth {depth}: ancestor {i} must be refused: {out:?}"
            );
        }
        assert_eq!(core.counters().cycles, depth as u64);
        // A stranger is served, with this node's path and itself.
        core.handle_input(Input::RelayRequest { id: 99, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
        assert_eq!(drain(&mut core), vec![Output::Serve { id: 99, depth: depth as u32, path: chain.clone(), standby: false }]);
    }
}

#[test]
fn a_grandchild_never_becomes_its_grandparents_upstream() {
    let (o, a, b, c, x) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(a));
    core.handle_input(Input::Directory(tree(o, &[])), now);
    attach_to(&mut core, o, vec![o], 1, now);
    // Below a: b, then c (a's grandchild); x is a's sibling.
    core.handle_input(Input::Directory(tree(o, &[(b, vec![o, a]), (c, vec![o, a, b]), (x, vec![o])])), now);
    core.handle_input(Input::PeerLost(o), now);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 1, reason: DetachReason::UpstreamLost });
    let tried = attaches(&out);
    assert_eq!(tried.iter().map(|t| t.1).collect::<Vec<_>>(), vec![x], "only the sibling is a candidate");
    // x fails; the next round (after the pause) finds no one else: b and c are descendants.
    core.handle_input(Input::AttachFailed { attempt: tried[0].0, fatal: false }, now);
    assert!(attaches(&drain(&mut core)).is_empty());
    // Even with a stale directory that does not show c below a, c's own answer gives it away.
    core.handle_input(Input::Directory(tree(o, &[(c, vec![])])), now);
    core.handle_timeout(now + REATTACH_PAUSE);
    let out = drain(&mut core);
    let (attempt, peer) = attaches(&out)[0];
    assert_eq!(peer, c);
    core.handle_input(Input::Answered { attempt, depth: 3, path: vec![o, a, b, c] }, now + REATTACH_PAUSE);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Abandon { attempt }, "{out:?}");
    assert_eq!(core.counters().cycles, 1);
    assert!(core.relay_in(S).is_none());
}

#[test]
fn depth_cap_refuses_deep_requests_and_deep_answers() {
    let (o, u, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(Config { max_depth: 2, ..config(me) });
    core.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), now);
    // u at depth 1 answers: me at depth 2 (the cap).
    attach_to(&mut core, o, vec![o], 5, now);
    core.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), now);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(1));
    // Move me below u: the answer from u puts me at depth 2, fine; a third level is refused.
    let v = PeerId::random();
    let mut deep = Core::new(Config { max_depth: 2, ..config(me) });
    deep.handle_input(Input::Directory(full(full(tree(o, &[(u, vec![o]), (v, vec![o, u])]), o), u)), now);
    deep.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    let out = drain(&mut deep);
    let (attempt, first) = attaches(&out)[0];
    assert_eq!(first, v, "the only node with room");
    deep.handle_input(Input::Answered { attempt, depth: 2, path: vec![o, u, v] }, now);
    let out = drain(&mut deep);
    assert_eq!(out[0], Output::Abandon { attempt });
    assert_eq!(deep.counters().too_deep, 1);
    // A node at depth 2 with a cap of 2 refuses every request.
    let mut at2 = Core::new(Config { max_depth: 2, ..config(me) });
    at2.handle_input(Input::Directory(full(tree(o, &[(u, vec![o])]), o)), now);
    at2.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    let (attempt, _) = attaches(&drain(&mut at2))[0];
    at2.handle_input(Input::Answered { attempt, depth: 1, path: vec![o, u] }, now);
    drain(&mut at2);
    at2.handle_input(Input::Connected { attempt, session: 3 }, now);
    drain(&mut at2);
    assert_eq!(at2.relay_in(S).map(|r| r.depth), Some(2));
    at2.handle_input(Input::RelayRequest { id: 1, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
    let out = drain(&mut at2);
    assert!(matches!(&out[..], [Output::Refuse { error: RelayError::Bad(m), .. }] if m.contains("depth 3 over the cap of 2")), "{out:?}");
}

#[test]
fn reattach_tries_every_other_candidate_in_rounds_until_its_deadline() {
    let (o, u1, u2, child) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let me = PeerId::random();
    let t0 = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[(u1, vec![o])])), t0);
    // The origin (least depth) is asked first.
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let (attempt, first) = attaches(&drain(&mut core))[0];
    assert_eq!(first, o);
    core.handle_input(Input::Answered { attempt, depth: 0, path: vec![o] }, t0);
    drain(&mut core);
    core.handle_input(Input::Connected { attempt, session: 10 }, t0);
    drain(&mut core);
    core.handle_input(Input::Directory(tree(o, &[(u1, vec![o]), (u2, vec![o]), (child, vec![o, me])])), t0);
    core.handle_input(Input::Tick { streams: viewers(1), ended: vec![] }, t0);
    drain(&mut core);
    core.handle_input(Input::PeerLost(first), t0);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 10, reason: DetachReason::UpstreamLost });
    let mut seen = Vec::new();
    let mut next: std::collections::VecDeque<(u64, PeerId)> = attaches(&out).into();
    assert_eq!(next.len(), 2, "two candidates asked at once");
    let mut now = t0;
    let mut rounds = 0;
    // Everyone refuses; the core goes round after round, never to the lost node or below itself.
    while let Some((attempt, peer)) = next.pop_front() {
        assert_ne!(peer, first, "never the lost upstream");
        assert_ne!(peer, child, "never a descendant");
        assert_ne!(peer, me);
        seen.push(peer);
        core.handle_input(Input::AttachFailed { attempt, fatal: false }, now);
        next.extend(attaches(&drain(&mut core)));
        if next.is_empty()
            && let Some(t) = core.poll_timeout()
        {
            assert_eq!(t, now + REATTACH_PAUSE, "a pause between rounds");
            now = t;
            rounds += 1;
            core.handle_timeout(now);
            next.extend(attaches(&drain(&mut core)));
        }
        assert!(rounds < 200, "bounded");
    }
    assert!(seen.contains(&u1) && seen.contains(&u2), "{seen:?}");
    assert!(now >= t0 + REATTACH_FOR - REATTACH_PAUSE, "gave up only at the deadline");
    assert!(rounds > 10);
    assert!(core.poll_timeout().is_none());
}

#[test]
fn reattach_after_upstream_loss_lands_on_another_node_with_its_path() {
    let (o, u1, u2) = (PeerId::random(), PeerId::random(), PeerId::random());
    let me = PeerId::random();
    let now = Instant::now();
    let mut core = Core::new(Config { max_relay_children: 1, ..config(me) });
    // Only u1 is a candidate at first (the origin is full).
    core.handle_input(Input::Directory(full(tree(o, &[(u1, vec![o])]), o)), now);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    let out = drain(&mut core);
    let (attempt, peer) = attaches(&out)[0];
    assert_eq!(peer, u1);
    core.handle_input(Input::Answered { attempt, depth: 1, path: vec![o, u1] }, now);
    drain(&mut core);
    core.handle_input(Input::Connected { attempt, session: 1 }, now);
    drain(&mut core);
    // A downstream node attaches below me.
    let d1 = PeerId::random();
    core.handle_input(Input::RelayRequest { id: 1, from: d1, stream: S.into(), has_source: true, standby: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Serve { id: 1, depth: 2, path: vec![o, u1, me], standby: false }]);
    core.handle_input(Input::Served { id: 1, session: Some(2) }, now);
    // u1 dies: u2 appears with room; me re-attaches there, d1 stays.
    core.handle_input(Input::Directory(full(tree(o, &[(u2, vec![o]), (d1, vec![o, u1, me])]), o)), now);
    core.handle_input(Input::PeerLost(u1), now);
    let out = drain(&mut core);
    let tried = attaches(&out);
    assert_eq!(tried[0].1, u2, "{out:?}");
    core.handle_input(Input::Answered { attempt: tried[0].0, depth: 1, path: vec![o, u2] }, now);
    drain(&mut core);
    core.handle_input(Input::Connected { attempt: tried[0].0, session: 3 }, now);
    drain(&mut core);
    let r = core.relay_in(S).expect("re-attached");
    assert_eq!((r.upstream, r.path.clone(), r.depth), (u2, vec![o, u2], 2));
    assert_eq!(core.counters().reattaches, 1);
    // The downstream node is now told the new path.
    core.handle_input(Input::RelayRequest { id: 2, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Refuse { id: 2, error: RelayError::Full }], "fan-out of one is used by d1");
    let load = core.load_of(&viewers(1));
    assert_eq!(load.streams[0].path, vec![o, u2]);
}

#[test]
fn peer_lost_ends_its_relays_out_and_orphans_its_streams() {
    let (o, me, down) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[])), now);
    attach_to(&mut core, o, vec![o], 1, now);
    core.handle_input(Input::RelayRequest { id: 7, from: down, stream: S.into(), has_source: true, standby: false }, now);
    drain(&mut core);
    core.handle_input(Input::Served { id: 7, session: Some(70) }, now);
    assert_eq!(core.sessions().len(), 2);
    core.handle_input(Input::PeerLost(down), now);
    assert_eq!(drain(&mut core), vec![Output::Close { session: 70 }]);
    // The origin goes: the orphan is detached; with nobody else it looks the stream up again
    // once the directory forgets it, and gives up at the deadline.
    core.handle_input(Input::Directory(Directory::default()), now);
    core.handle_input(Input::PeerLost(o), now);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 1, reason: DetachReason::UpstreamLost });
    assert_eq!(out[1], Output::Lookup { stream: S.into() });
    core.handle_input(Input::Found { stream: S.into(), announcement: None }, now);
    assert!(drain(&mut core).is_empty());
    let mut t = now;
    let mut n = 0;
    while let Some(due) = core.poll_timeout() {
        t = due;
        core.handle_timeout(t);
        for o in drain(&mut core) {
            if o == (Output::Lookup { stream: S.into() }) {
                core.handle_input(Input::Found { stream: S.into(), announcement: None }, t);
            }
        }
        n += 1;
        assert!(n < 500);
    }
    assert!(t + REATTACH_PAUSE >= now + REATTACH_FOR);
    assert!(core.relay_in(S).is_none());
    assert!(core.sessions().is_empty());
}

#[test]
fn idle_relays_are_detached_after_the_idle_time() {
    let (o, me) = (PeerId::random(), PeerId::random());
    let t0 = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[])), t0);
    attach_to(&mut core, o, vec![o], 4, t0);
    core.handle_input(Input::Tick { streams: viewers(1), ended: vec![] }, t0);
    assert!(matches!(&drain(&mut core)[..], [Output::Announce { .. }]));
    core.handle_input(Input::Tick { streams: viewers(0), ended: vec![] }, t0 + Duration::from_secs(1));
    drain(&mut core);
    core.handle_input(Input::Tick { streams: viewers(0), ended: vec![] }, t0 + Duration::from_secs(1) + IDLE_RELAY);
    assert!(!drain(&mut core).iter().any(|o| matches!(o, Output::Detach { .. })), "not yet");
    core.handle_input(Input::Tick { streams: viewers(0), ended: vec![] }, t0 + Duration::from_secs(2) + IDLE_RELAY);
    let out = drain(&mut core);
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 4, reason: DetachReason::Idle }), "{out:?}");
    assert!(out.contains(&Output::Follow { stream: S.into(), on: false }));
    assert!(core.relay_in(S).is_none());
}

#[test]
fn a_relay_that_ended_is_reattached_when_used_and_dropped_when_not() {
    let (o, me) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[])), now);
    attach_to(&mut core, o, vec![o], 4, now);
    core.handle_input(Input::Tick { streams: viewers(2), ended: vec![4] }, now);
    let out = drain(&mut core);
    assert_eq!(attaches(&out).len(), 1, "used: re-attached {out:?}");
    let mut unused = Core::new(config(me));
    unused.handle_input(Input::Directory(tree(o, &[])), now);
    attach_to(&mut unused, o, vec![o], 4, now);
    unused.handle_input(Input::Tick { streams: viewers(0), ended: vec![4] }, now);
    assert!(attaches(&drain(&mut unused)).is_empty());
    assert!(unused.relay_in(S).is_none());
}

#[test]
fn a_media_stall_moves_the_stream_to_another_upstream() {
    let (o, u, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[])), now);
    attach_to(&mut core, o, vec![o], 1, now);
    core.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), now);
    core.handle_input(Input::MediaStall { stream: S.into() }, now);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 1, reason: DetachReason::Stalled });
    assert_eq!(attaches(&out).iter().map(|a| a.1).collect::<Vec<_>>(), vec![u], "not the stalled origin");
}

fn detaches(out: &[Output]) -> bool {
    out.iter().any(|o| matches!(o, Output::Detach { .. }))
}

#[test]
fn the_stall_watchdog_reattaches_a_used_relay_whose_upstream_sends_nothing() {
    let (o, u, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let tick = |core: &mut Core, viewers: u32, packets: u64, ms: u64| {
        let streams = vec![LocalStream { name: S.into(), viewers, packets, ..Default::default() }];
        core.handle_input(Input::Tick { streams, ended: vec![] }, at(ms));
        drain(core)
    };
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), t0);
    attach_to(&mut core, o, vec![o], 1, t0);
    // Media flows: packets grow every tick, for longer than the stall time.
    for (i, ms) in (0..6000).step_by(500).enumerate() {
        assert!(!detaches(&tick(&mut core, 1, 100 * i as u64, ms)), "no stall while media flows");
    }
    // Then nothing arrives: just under the limit nothing happens, at the limit it moves.
    assert!(!detaches(&tick(&mut core, 1, 1100, 6000 + MEDIA_STALL.as_millis() as u64 - 600)));
    let out = tick(&mut core, 1, 1100, 6000 + MEDIA_STALL.as_millis() as u64);
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 1, reason: DetachReason::Stalled }), "{out:?}");
    assert_eq!(attaches(&out).iter().map(|a| a.1).collect::<Vec<_>>(), vec![u], "another upstream than the silent one");
    assert_eq!(core.counters().stalls, 1);

    // The silent upstream is the only one: a fresh edge to it.
    let mut only = Core::new(config(me));
    only.handle_input(Input::Directory(tree(o, &[])), t0);
    attach_to(&mut only, o, vec![o], 1, t0);
    tick(&mut only, 1, 5, 0);
    let out = tick(&mut only, 1, 5, 5000);
    assert!(detaches(&out));
    assert_eq!(attaches(&out).iter().map(|a| a.1).collect::<Vec<_>>(), vec![o]);

    // Nobody watching: a silent relay is left to the idle timer.
    let mut unused = Core::new(config(me));
    unused.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), t0);
    attach_to(&mut unused, o, vec![o], 1, t0);
    tick(&mut unused, 0, 5, 0);
    assert!(attaches(&tick(&mut unused, 0, 5, 5000)).is_empty());
    // The origin no longer announces the stream (it ended): nowhere better to go.
    let mut ended = Core::new(config(me));
    ended.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), t0);
    attach_to(&mut ended, o, vec![o], 1, t0);
    tick(&mut ended, 1, 5, 0);
    ended.handle_input(Input::Directory(Directory::default()), at(100));
    drain(&mut ended);
    assert!(!tick(&mut ended, 1, 5, 5000).iter().any(|o| matches!(o, Output::Detach { reason: DetachReason::Stalled, .. })));
}

#[test]
fn depth_and_path_follow_an_ancestor_that_moves() {
    let (o, x, u, me) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(full(tree(o, &[(u, vec![o])]), o)), now);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    let out = drain(&mut core);
    let (attempt, first) = attaches(&out)[0];
    assert_eq!(first, u, "the origin is full");
    core.handle_input(Input::Answered { attempt, depth: 1, path: vec![o, u] }, now);
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session: 1 }, now);
    drain(&mut core);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(2));
    // u moves below x: me is now at depth 3 with path o, x, u.
    core.handle_input(Input::Directory(tree(o, &[(x, vec![o]), (u, vec![o, x])])), now);
    assert!(drain(&mut core).is_empty());
    let r = core.relay_in(S).expect("still attached");
    assert_eq!((r.path.clone(), r.depth), (vec![o, x, u], 3));
    assert_eq!(core.load_of(&viewers(1)).streams[0].path, vec![o, x, u]);
    // u moves below me (a race of two moves): the cycle is broken at once.
    core.handle_input(Input::Directory(tree(o, &[(x, vec![o]), (u, vec![o, me])])), now);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 1, reason: DetachReason::PathInvalid }, "{out:?}");
    assert!(attaches(&out).iter().all(|a| a.1 != u), "never back below u");
    assert!(core.counters().cycles >= 1);
}

#[test]
fn a_request_for_a_stream_not_here_attaches_it_first_never_from_the_requester() {
    let (o, r, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    // r carries the stream too but asks me: it is never my upstream for this request.
    core.handle_input(Input::Directory(tree(o, &[(r, vec![o])])), now);
    core.handle_input(Input::RelayRequest { id: 5, from: r, stream: S.into(), has_source: false, standby: false }, now);
    let out = drain(&mut core);
    let tried = attaches(&out);
    assert_eq!(tried.iter().map(|a| a.1).collect::<Vec<_>>(), vec![o]);
    core.handle_input(Input::Answered { attempt: tried[0].0, depth: 0, path: vec![o] }, now);
    drain(&mut core);
    core.handle_input(Input::Connected { attempt: tried[0].0, session: 8 }, now);
    let out = drain(&mut core);
    assert!(out.contains(&Output::Serve { id: 5, depth: 1, path: vec![o, me], standby: false }), "{out:?}");
    // A request for an unknown stream once the directory is settled is refused without a lookup.
    core.handle_input(Input::RelayRequest { id: 6, from: r, stream: "nope".into(), has_source: false, standby: false }, now + Duration::from_secs(7));
    let out = drain(&mut core);
    assert!(out.contains(&Output::Refuse { id: 6, error: RelayError::NotFound }), "{out:?}");
    assert_eq!(core.counters().not_in_directory, 1);
}

#[test]
fn unknown_streams_are_looked_up_once_then_cached_absent() {
    let (other, me) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Want { stream: "x".into(), has_source: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: "x".into(), ok: false }], "alone");
    core.handle_input(Input::Directory(tree(other, &[])), now);
    core.handle_input(Input::Want { stream: "x".into(), has_source: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Lookup { stream: "x".into() }]);
    // A second viewer joins the lookup in flight.
    core.handle_input(Input::Want { stream: "x".into(), has_source: false }, now);
    assert!(drain(&mut core).is_empty());
    core.handle_input(Input::Found { stream: "x".into(), announcement: None }, now);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: "x".into(), ok: false }]);
    core.handle_input(Input::Want { stream: "x".into(), has_source: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: "x".into(), ok: false }]);
    let c = core.counters();
    assert_eq!((c.alone, c.lookups, c.negative_cache), (1, 1, 1));
}

#[test]
fn a_full_node_redirects_to_a_trusted_node_with_a_verified_url() {
    let (o, n, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    let mut d = tree(o, &[(n, vec![o])]);
    if let Some(e) = d.nodes.get_mut(&o) {
        e.load.viewers = e.load.capacity;
    }
    core.handle_input(Input::Directory(d.clone()), now);
    let own = core.load_of(&viewers(1));
    // Room here: no redirect; placement keeps the viewer.
    assert_eq!(core.placement(S, &own).map(|p| p.0), Some(n), "n carries the stream, me does not");
    assert_eq!(core.redirect(S, &own), Some("http://n/whep/s".into()));
    // n's URL was not verified: nowhere to send the viewer (the origin is full).
    let mut unverified = d.clone();
    if let Some(e) = unverified.nodes.get_mut(&n) {
        e.load.http_url.clear();
    }
    core.handle_input(Input::Directory(unverified), now);
    assert_eq!(core.redirect(S, &own), None);
    // With --trusted-peer, only trusted nodes receive viewers.
    let mut strict = Core::new(Config { trusted: vec![o], ..config(me) });
    strict.handle_input(Input::Directory(d), now);
    assert_eq!(strict.redirect(S, &own), None);
    assert_eq!(strict.origin_url(S), Some("http://origin".into()));
    assert_eq!(core.origin_url("none"), None);
}

#[test]
fn the_fan_out_counts_relays_being_set_up() {
    let (o, me) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(Config { max_relay_children: 1, ..config(me) });
    core.handle_input(Input::Directory(tree(o, &[])), now);
    core.handle_input(Input::RelayRequest { id: 1, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
    assert!(matches!(&drain(&mut core)[..], [Output::Serve { id: 1, depth: 0, .. }]));
    core.handle_input(Input::RelayRequest { id: 2, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Refuse { id: 2, error: RelayError::Full }]);
    // The first one failed at the media plane: room again.
    core.handle_input(Input::Served { id: 1, session: None }, now);
    core.handle_input(Input::RelayRequest { id: 3, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, now);
    assert!(matches!(&drain(&mut core)[..], [Output::Serve { id: 3, .. }]));
}

#[test]
fn standby_edges_are_served_paused_beside_the_fed_ones_each_capped() {
    let (o, me) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(Config { max_relay_children: 1, ..config(me) });
    core.handle_input(Input::Directory(tree(o, &[])), now);
    let request = |core: &mut Core, id: u64, standby: bool| {
        core.handle_input(Input::RelayRequest { id, from: PeerId::random(), stream: S.into(), has_source: true, standby }, now);
        drain(core)
    };
    assert!(matches!(&request(&mut core, 1, false)[..], [Output::Serve { id: 1, standby: false, .. }]));
    core.handle_input(Input::Served { id: 1, session: Some(11) }, now);
    // The fed edges are full; a standby edge takes no slot of theirs.
    assert_eq!(request(&mut core, 2, false), vec![Output::Refuse { id: 2, error: RelayError::Full }]);
    assert!(matches!(&request(&mut core, 3, true)[..], [Output::Serve { id: 3, standby: true, .. }]));
    core.handle_input(Input::Served { id: 3, session: Some(13) }, now);
    // Standby edges have a cap of their own.
    assert_eq!(request(&mut core, 4, true), vec![Output::Refuse { id: 4, error: RelayError::Full }]);
    // Its node switched to it (the media plane counts it fed): the standby slot is free again,
    // the fed edges are above their cap and stay full.
    let fed = vec![LocalStream { name: S.into(), live: true, relay_children: 2, standby_children: 0, ..Default::default() }];
    core.handle_input(Input::Tick { streams: fed, ended: vec![] }, now);
    drain(&mut core);
    assert!(matches!(&request(&mut core, 5, true)[..], [Output::Serve { id: 5, standby: true, .. }]));
    assert_eq!(request(&mut core, 6, false), vec![Output::Refuse { id: 6, error: RelayError::Full }]);
    // A node that does not carry the stream refuses a standby request instead of attaching it.
    let mut empty = Core::new(config(me));
    empty.handle_input(Input::Directory(tree(o, &[])), now);
    empty.handle_input(Input::RelayRequest { id: 7, from: PeerId::random(), stream: S.into(), has_source: false, standby: true }, now);
    assert_eq!(drain(&mut empty), vec![Output::Refuse { id: 7, error: RelayError::NotFound }]);
}

#[test]
fn lookups_are_bounded_and_their_slots_come_back() {
    let (other, me) = (PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(other, &[])), now);
    for i in 0..relaycast_cluster::bounds::MAX_LOOKUPS {
        core.handle_input(Input::Want { stream: format!("x{i}"), has_source: false }, now);
        assert_eq!(drain(&mut core), vec![Output::Lookup { stream: format!("x{i}") }]);
    }
    core.handle_input(Input::Want { stream: "y".into(), has_source: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: "y".into(), ok: false }]);
    assert_eq!(core.counters().too_many_lookups, 1);
    // One lookup finds its stream (its attach goes on), another finds nothing: two slots free.
    let ann = StreamAnnouncement {
        origin: other,
        stream: "x0".into(),
        codec: "VP8".into(),
        layers: vec![],
        http_url: String::new(),
        started_ms: 1,
    };
    core.handle_input(Input::Found { stream: "x0".into(), announcement: Some(ann) }, now);
    assert_eq!(attaches(&drain(&mut core)).iter().map(|a| a.1).collect::<Vec<_>>(), vec![other]);
    core.handle_input(Input::Found { stream: "x1".into(), announcement: None }, now);
    drain(&mut core);
    for s in ["y", "z"] {
        core.handle_input(Input::Want { stream: s.into(), has_source: false }, now);
        assert_eq!(drain(&mut core), vec![Output::Lookup { stream: s.into() }]);
    }
    core.handle_input(Input::Want { stream: "w".into(), has_source: false }, now);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: "w".into(), ok: false }]);
}

#[test]
fn a_viewer_arriving_during_a_reattach_is_answered_when_it_lands() {
    let (o, u, me) = (PeerId::random(), PeerId::random(), PeerId::random());
    let now = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[(u, vec![o])])), now);
    attach_to(&mut core, o, vec![o], 1, now);
    core.handle_input(Input::PeerLost(o), now);
    let (attempt, peer) = attaches(&drain(&mut core))[0];
    assert_eq!(peer, u);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, now);
    assert!(drain(&mut core).is_empty(), "joins the re-attach");
    core.handle_input(Input::Answered { attempt, depth: 1, path: vec![o, u] }, now);
    drain(&mut core);
    core.handle_input(Input::Connected { attempt, session: 2 }, now);
    assert!(drain(&mut core).contains(&Output::Ready { stream: S.into(), ok: true }));
    // A late answer for an attempt nobody waits for any more is dropped, its session closed.
    core.handle_input(Input::Answered { attempt: 999, depth: 0, path: vec![o] }, now);
    assert_eq!(drain(&mut core), vec![Output::Abandon { attempt: 999 }]);
    core.handle_input(Input::Connected { attempt: 999, session: 9 }, now);
    assert_eq!(drain(&mut core), vec![Output::Close { session: 9 }]);
}

#[test]
fn candidates_are_asked_two_at_once_and_the_first_good_answer_wins() {
    let (o, u1) = (PeerId::random(), PeerId::random());
    let me = PeerId::random();
    let t0 = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[(u1, vec![o])])), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let asked = attaches(&drain(&mut core));
    assert_eq!(asked.len(), 2, "two candidates at once: {asked:?}");
    let (slow, fast) = (asked[0], asked[1]);
    // The first candidate never answers (a dead node); the second does and is connected.
    let path = if fast.1 == o { vec![o] } else { vec![o, fast.1] };
    core.handle_input(Input::Answered { attempt: fast.0, depth: path.len() as u32 - 1, path }, t0);
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt: fast.0 }]);
    core.handle_input(Input::Connected { attempt: fast.0, session: 7 }, t0 + Duration::from_millis(40));
    let out = drain(&mut core);
    assert!(out.contains(&Output::Ready { stream: S.into(), ok: true }), "{out:?}");
    assert!(out.contains(&Output::Abandon { attempt: slow.0 }), "the slow attempt is abandoned: {out:?}");
    // Its late answer is abandoned again, never connected.
    core.handle_input(Input::Answered { attempt: slow.0, depth: 0, path: vec![o] }, t0 + Duration::from_secs(3));
    assert_eq!(drain(&mut core), vec![Output::Abandon { attempt: slow.0 }]);
}

#[test]
fn when_the_connecting_answer_fails_the_other_answered_one_is_connected() {
    let (o, u1, u2) = (PeerId::random(), PeerId::random(), PeerId::random());
    let me = PeerId::random();
    let t0 = Instant::now();
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree(o, &[(u1, vec![o]), (u2, vec![o])])), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let asked = attaches(&drain(&mut core));
    assert_eq!(asked.len(), 2);
    let path_of = |p: PeerId| if p == o { vec![o] } else { vec![o, p] };
    let (a, b) = (asked[0], asked[1]);
    core.handle_input(Input::Answered { attempt: a.0, depth: path_of(a.1).len() as u32 - 1, path: path_of(a.1) }, t0);
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt: a.0 }]);
    // The second answer waits while the first is being connected.
    core.handle_input(Input::Answered { attempt: b.0, depth: path_of(b.1).len() as u32 - 1, path: path_of(b.1) }, t0);
    assert!(drain(&mut core).is_empty());
    // Applying the first answer fails: the second is connected at once, no new request.
    core.handle_input(Input::AttachFailed { attempt: a.0, fatal: false }, t0);
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt: b.0 }]);
    core.handle_input(Input::Connected { attempt: b.0, session: 9 }, t0);
    let out = drain(&mut core);
    assert!(out.contains(&Output::Ready { stream: S.into(), ok: true }), "{out:?}");
    assert!(attaches(&out).is_empty());
}

#[test]
fn a_node_that_does_not_carry_the_stream_is_never_asked_beside_another() {
    let (o, spare) = (PeerId::random(), PeerId::random());
    let me = PeerId::random();
    let t0 = Instant::now();
    let mut core = Core::new(config(me));
    // `spare` has room but does not carry the stream: asking it makes it attach the stream itself.
    let mut d = tree(o, &[]);
    d.insert_load(spare, NodeLoad { http_url: "http://n".into(), capacity: 10, max_relay_children: 4, ..Default::default() }, t0, true);
    core.handle_input(Input::Directory(d), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let asked = attaches(&drain(&mut core));
    assert_eq!(asked.iter().map(|a| a.1).collect::<Vec<_>>(), vec![o], "the origin alone");
    core.handle_input(Input::AttachFailed { attempt: asked[0].0, fatal: false }, t0);
    let next = attaches(&drain(&mut core));
    assert_eq!(next.iter().map(|a| a.1).collect::<Vec<_>>(), vec![spare], "then the spare node, alone");
}
