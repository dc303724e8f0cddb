//! Standby upstreams driven without sockets: when one is attached and to whom (never below the
//! upstream, always nearer the origin), the switch when the upstream is lost or moves into a
//! cycle (make-before-break), and a lost, moved or failed standby.

use std::time::{Duration, Instant};

use relaycast_cluster::core::{DetachReason, IDLE_RELAY, LocalStream, STANDBY_AFTER, STANDBY_RETRY};
mod common;

use common::{S, config, drain, full, tree};
use relaycast_cluster::{Core, Input, Output};
use relaycast_mesh::{Directory, PeerId};

/// A directory where `origin` announces stream `s` and each `(peer, path)` carries it with that
/// ancestor path (origin first); the nodes in `full` have no spare fan-out.
fn tree_full(origin: PeerId, carriers: &[(PeerId, Vec<PeerId>)], full_nodes: &[PeerId]) -> Directory {
    full_nodes.iter().fold(tree(origin, carriers), |d, p| full(d, *p))
}

/// The attach outputs: (attempt, peer, standby).
fn attaches(out: &[Output]) -> Vec<(u64, PeerId, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Attach { attempt, peer, standby, .. } => Some((*attempt, *peer, *standby)),
            _ => None,
        })
        .collect()
}

/// A tick at `at` with `viewers` viewers and media flowing (the packet count grows every tick).
fn tick(core: &mut Core, viewers: u32, at: Instant) -> Vec<Output> {
    static PACKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let packets = PACKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let streams = vec![LocalStream { name: S.into(), viewers, packets, ..Default::default() }];
    core.handle_input(Input::Tick { streams, ended: vec![] }, at);
    drain(core)
}

/// The answer of an attach by `upstream` whose path (itself last) is `answered`, then connected
/// as `session`.
fn answer(core: &mut Core, attempt: u64, answered: Vec<PeerId>, session: u64, now: Instant) -> Vec<Output> {
    core.handle_input(Input::Answered { attempt, depth: answered.len() as u32 - 1, path: answered }, now);
    assert_eq!(drain(core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session }, now);
    drain(core)
}

/// Node ids of a small tree: origin `o`, `a` and `b` below it, and this node `me` below `a`.
struct Nodes {
    o: PeerId,
    a: PeerId,
    b: PeerId,
    me: PeerId,
}

/// `me` relays the stream from `a` (depth 2) with one viewer; `b` is a standby candidate (the
/// origin is full). Returns the core, the nodes and the time the relay started.
fn relay_below_a() -> (Core, Nodes, Instant) {
    let n = Nodes { o: PeerId::random(), a: PeerId::random(), b: PeerId::random(), me: PeerId::random() };
    let t0 = Instant::now();
    let mut core = Core::new(config(n.me));
    // Only a at first: the origin is full.
    core.handle_input(Input::Directory(tree_full(n.o, &[(n.a, vec![n.o])], &[n.o])), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let out = drain(&mut core);
    let (attempt, peer, standby) = attaches(&out)[0];
    assert_eq!((peer, standby), (n.a, false), "{out:?}");
    let out = answer(&mut core, attempt, vec![n.o, n.a], 1, t0);
    assert!(out.contains(&Output::Ready { stream: S.into(), ok: true }));
    core.handle_input(Input::Directory(tree_full(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o])], &[n.o])), t0);
    (core, n, t0)
}

/// [`relay_below_a`] with `b` connected as the standby (session 5).
fn with_standby() -> (Core, Nodes, Instant) {
    let (mut core, n, t0) = relay_below_a();
    let at = t0 + STANDBY_AFTER;
    let out = tick(&mut core, 1, at);
    let (attempt, peer, standby) = attaches(&out)[0];
    assert_eq!((peer, standby), (n.b, true), "{out:?}");
    let out = answer(&mut core, attempt, vec![n.o, n.b], 5, at);
    assert!(!out.iter().any(|o| matches!(o, Output::Ready { .. } | Output::Follow { .. })), "nobody waits for a standby: {out:?}");
    (core, n, t0)
}

#[test]
fn a_used_relay_gets_a_standby_nearer_the_origin_off_its_upstreams_branch() {
    let (mut core, n, t0) = relay_below_a();
    // Not at once: the relay must have run for a while.
    assert!(attaches(&tick(&mut core, 1, t0)).is_empty());
    assert!(attaches(&tick(&mut core, 1, t0 + STANDBY_AFTER - Duration::from_millis(1))).is_empty());
    // Unused relays get none.
    let (mut unused, _, u0) = relay_below_a();
    assert!(attaches(&tick(&mut unused, 0, u0 + STANDBY_AFTER * 3)).is_empty());

    let (core2, n2, _) = with_standby();
    let r = core2.relay_in(S).expect("relayed");
    assert_eq!(r.upstream, n2.a, "the upstream stays");
    assert_eq!(r.standby.as_ref().map(|s| (s.upstream, s.path.clone(), s.depth, s.session)), Some((n2.b, vec![n2.o, n2.b], 2, 5)));
    assert_eq!(core2.counters().standbys, 1);
    assert!(core2.sessions().contains(&5), "the standby's session is watched for its end");
    drop((core, n));
}

#[test]
fn a_standby_never_hangs_below_the_upstream_nor_as_deep_as_this_node() {
    let (mut core, n, t0) = relay_below_a();
    let (c, e, f) = (PeerId::random(), PeerId::random(), PeerId::random());
    // c hangs below a (a's loss would take it too), e sits as deep as this node, f is below
    // this node: none of them fits.
    let dir = tree(n.o, &[(n.a, vec![n.o]), (c, vec![n.o, n.a]), (e, vec![n.o, n.a]), (f, vec![n.o, n.a, n.me])]);
    let dir = [n.o, n.a].iter().fold(dir, |d, p| full(d, *p));
    core.handle_input(Input::Directory(dir), t0);
    let out = tick(&mut core, 1, t0 + STANDBY_AFTER);
    let peers: Vec<PeerId> = attaches(&out).iter().map(|x| x.1).collect();
    assert!(peers.iter().all(|p| ![c, e, f].contains(p)), "{out:?}");
    // Only the full origin is left: a standby edge is paused and takes no fed slot.
    assert_eq!(peers, vec![n.o], "{out:?}");
    let (attempt, _, _) = attaches(&out)[0];
    core.handle_input(Input::AttachFailed { attempt, fatal: false }, t0 + STANDBY_AFTER);
    assert!(attaches(&drain(&mut core)).is_empty());
    // The origin fits whenever it has room.
    core.handle_input(Input::Directory(tree_full(n.o, &[(n.a, vec![n.o])], &[])), t0);
    let out = tick(&mut core, 1, t0 + STANDBY_AFTER + STANDBY_RETRY);
    assert_eq!(attaches(&out).iter().map(|a| (a.1, a.2)).collect::<Vec<_>>(), vec![(n.o, true)], "{out:?}");
}

#[test]
fn losing_the_upstream_switches_to_the_standby_at_once_and_a_new_standby_follows() {
    let (mut core, n, t0) = with_standby();
    let at = t0 + Duration::from_secs(3);
    core.handle_input(Input::PeerLost(n.a), at);
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Detach { stream: S.into(), session: 1, reason: DetachReason::UpstreamLost }], "no new attach: {out:?}");
    let r = core.relay_in(S).expect("still relayed");
    assert_eq!((r.upstream, r.session, r.path.clone(), r.depth, r.standby.clone()), (n.b, 5, vec![n.o, n.b], 2, None));
    assert_eq!((core.counters().standby_switches, core.counters().reattaches), (1, 1));
    assert_eq!(core.load_of(&[LocalStream { name: S.into(), viewers: 1, ..Default::default() }]).streams[0].upstream, Some(n.b));
    // The next tick looks for a new standby (the origin has room now).
    core.handle_input(Input::Directory(tree_full(n.o, &[(n.b, vec![n.o])], &[])), at);
    let out = tick(&mut core, 1, at);
    assert_eq!(attaches(&out).iter().map(|a| (a.1, a.2)).collect::<Vec<_>>(), vec![(n.o, true)], "{out:?}");
}

#[test]
fn an_upstream_that_moves_into_a_cycle_hands_over_to_the_standby_before_it_closes() {
    let (mut core, n, t0) = with_standby();
    // a re-attached below this node: its path now holds us.
    let dir = tree_full(n.o, &[(n.a, vec![n.o, n.b, n.me]), (n.b, vec![n.o])], &[n.o]);
    core.handle_input(Input::Directory(dir), t0 + Duration::from_secs(2));
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Detach { stream: S.into(), session: 1, reason: DetachReason::PathInvalid }], "{out:?}");
    assert_eq!(core.relay_in(S).map(|r| r.upstream), Some(n.b));
    assert_eq!(core.counters().standby_switches, 1);
}

#[test]
fn a_lost_or_moved_standby_is_closed_and_the_relay_stays() {
    let (mut core, n, t0) = with_standby();
    core.handle_input(Input::PeerLost(n.b), t0 + Duration::from_secs(2));
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Detach { stream: S.into(), session: 5, reason: DetachReason::UpstreamLost }]);
    let r = core.relay_in(S).expect("relayed");
    assert_eq!((r.upstream, r.session, r.standby.clone()), (n.a, 1, None));

    // A standby that re-attaches below the upstream is no help against its loss: closed.
    let (mut core, n, t0) = with_standby();
    let dir = tree_full(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o, n.a])], &[n.o]);
    core.handle_input(Input::Directory(dir), t0 + Duration::from_secs(2));
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Detach { stream: S.into(), session: 5, reason: DetachReason::PathInvalid }]);
    assert_eq!(core.relay_in(S).and_then(|r| r.standby.clone()), None);
    // Then the upstream's loss is an ordinary re-attach.
    core.handle_input(Input::PeerLost(n.a), t0 + Duration::from_secs(3));
    let out = drain(&mut core);
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 1, reason: DetachReason::UpstreamLost }));
    assert!(core.relay_in(S).is_none());

    // A standby session that ended is forgotten at the next tick.
    let (mut core, _, t0) = with_standby();
    core.handle_input(Input::Tick { streams: vec![LocalStream { name: S.into(), viewers: 1, ..Default::default() }], ended: vec![5] }, t0 + Duration::from_secs(2));
    drain(&mut core);
    assert_eq!(core.relay_in(S).map(|r| (r.session, r.standby.is_none())), Some((1, true)));
}

#[test]
fn a_failed_standby_attach_answers_no_waiter_and_refuses_no_request() {
    let (mut core, n, t0) = relay_below_a();
    let at = t0 + STANDBY_AFTER;
    let out = tick(&mut core, 1, at);
    let (attempt, peer, _) = attaches(&out)[0];
    assert_eq!(peer, n.b);
    // A viewer and a downstream node arrive meanwhile: the stream is here, they are served.
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, at);
    assert_eq!(drain(&mut core), vec![Output::Ready { stream: S.into(), ok: true }]);
    core.handle_input(Input::RelayRequest { id: 9, from: PeerId::random(), stream: S.into(), has_source: true, standby: false }, at);
    assert!(matches!(drain(&mut core)[..], [Output::Serve { id: 9, .. }]));
    core.handle_input(Input::AttachFailed { attempt, fatal: false }, at);
    let out = drain(&mut core);
    assert!(!out.iter().any(|o| matches!(o, Output::Ready { .. } | Output::Refuse { .. } | Output::Detach { .. })), "{out:?}");
    // The next candidate, the full origin, is asked next (one at a time); it fails too.
    let (attempt, peer, _) = attaches(&out)[0];
    assert_eq!(peer, n.o);
    core.handle_input(Input::AttachFailed { attempt, fatal: false }, at);
    let out = drain(&mut core);
    assert!(attaches(&out).is_empty(), "{out:?}");
    assert_eq!(core.relay_in(S).map(|r| (r.upstream, r.standby.is_none())), Some((n.a, true)));
    // Tried again only after the retry pause.
    assert!(attaches(&tick(&mut core, 1, at + STANDBY_RETRY - Duration::from_millis(1))).is_empty());
    assert_eq!(attaches(&tick(&mut core, 1, at + STANDBY_RETRY)).len(), 1);
}

#[test]
fn an_idle_relay_closes_its_standby_too() {
    let (mut core, _, t0) = with_standby();
    let later = t0 + Duration::from_secs(2);
    tick(&mut core, 0, later);
    let out = tick(&mut core, 0, later + IDLE_RELAY + Duration::from_secs(1));
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 5, reason: DetachReason::Idle }), "{out:?}");
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 1, reason: DetachReason::Idle }));
    assert!(core.relay_in(S).is_none());
}

#[test]
fn a_standby_off_this_nodes_path_is_preferred_to_an_ancestor() {
    let (o, g, a, c, b, me) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
    let t0 = Instant::now();
    // me relays from a (depth 3, path o, g, a); the origin is full.
    let mut core = Core::new(config(me));
    core.handle_input(Input::Directory(tree_full(o, &[(g, vec![o]), (a, vec![o, g])], &[o, g])), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let (attempt, peer, _) = attaches(&drain(&mut core))[0];
    assert_eq!(peer, a);
    answer(&mut core, attempt, vec![o, g, a], 1, t0);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(3));
    // g, this node's grandparent, fits as a standby and is the nearest the origin; b (depth 2,
    // below c) fits too and is off this node's path: b is asked, g is not.
    let dir = tree_full(o, &[(g, vec![o]), (a, vec![o, g]), (c, vec![o]), (b, vec![o, c])], &[o, c]);
    core.handle_input(Input::Directory(dir), t0);
    let out = tick(&mut core, 1, t0 + STANDBY_AFTER);
    assert_eq!(attaches(&out).iter().map(|x| (x.1, x.2)).collect::<Vec<_>>(), vec![(b, true)], "{out:?}");
    // Each refusal asks the next, one at a time: the full nodes off the path (the origin, c:
    // a standby edge is paused and takes no fed slot), and only then the ancestor, better than
    // no standby.
    let mut asked = vec![];
    let mut out = out;
    for _ in 0..3 {
        let (attempt, _, _) = attaches(&out)[0];
        core.handle_input(Input::AttachFailed { attempt, fatal: false }, t0 + STANDBY_AFTER);
        out = drain(&mut core);
        asked.extend(attaches(&out).iter().map(|x| (x.1, x.2)));
    }
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked[..2].contains(&(o, true)) && asked[..2].contains(&(c, true)), "{asked:?}");
    assert_eq!(asked[2], (g, true));
}
