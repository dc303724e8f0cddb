//! Planned moves driven without sockets: a node over its fan-out asks its newest fed children to
//! move; a child so asked hands over to its standby upstream and closes the old edge only once
//! the standby feeds the stream (make-before-break); a move that cannot or does not happen.

use std::time::{Duration, Instant};

use relaycast_cluster::core::{DetachReason, HANDOVER_FOR, LocalStream, PathPush, STANDBY_AFTER};
mod common;

use common::{S, config, drain, full, tree};
use relaycast_cluster::{Core, Input, Output};
use relaycast_mesh::PeerId;

/// Every queued path push of `core`.
fn pushes(core: &mut Core) -> Vec<PathPush> {
    std::iter::from_fn(|| core.poll_push()).collect()
}

/// A tick with the stream live here (this node is its origin), `fed` fed and `paused` standby
/// relay children, and the sessions in `ended` gone.
fn origin_tick(core: &mut Core, fed: u32, paused: u32, ended: Vec<u64>, at: Instant) -> Vec<Output> {
    let streams = vec![LocalStream { name: S.into(), live: true, relay_children: fed, standby_children: paused, ..Default::default() }];
    core.handle_input(Input::Tick { streams, ended }, at);
    drain(core)
}

/// Serves a relay request from `from` as `session`.
fn serve(core: &mut Core, id: u64, from: PeerId, standby: bool, session: u64, now: Instant) {
    core.handle_input(Input::RelayRequest { id, from, stream: S.into(), has_source: true, standby }, now);
    let out = drain(core);
    assert!(matches!(out.as_slice(), [Output::Serve { standby: s, .. }] if *s == standby), "{out:?}");
    core.handle_input(Input::Served { id, session: Some(session) }, now);
}

/// An origin node (the stream live here) serving relay edges to `edges` (`(peer, standby)`;
/// request ids 1.., sessions 11..), with `dir` as its directory when given.
fn origin_serving(me: PeerId, dir: Option<relaycast_mesh::Directory>, edges: &[(PeerId, bool)], t0: Instant) -> Core {
    let mut core = Core::new(config(me));
    if let Some(d) = dir {
        core.handle_input(Input::Directory(d), t0);
    }
    origin_tick(&mut core, 0, 0, vec![], t0);
    for (i, (peer, standby)) in edges.iter().enumerate() {
        let id = i as u64 + 1;
        serve(&mut core, id, *peer, *standby, 10 + id, t0);
    }
    core
}

#[test]
fn a_node_over_its_fan_out_asks_its_newest_fed_children_to_move_until_it_is_not() {
    let t0 = Instant::now();
    let (c1, c2, c3) = (PeerId::random(), PeerId::random(), PeerId::random());
    let mut core = origin_serving(PeerId::random(), None, &[(c1, false), (c2, false), (c3, true)], t0);
    origin_tick(&mut core, 2, 1, vec![], t0);
    assert!(pushes(&mut core).iter().all(|p| !p.shed), "at its cap (2 fed, 1 paused): nobody is asked to move");
    // c3 switched to its standby edge here: three fed edges at a cap of two. The newest goes.
    let at = t0 + Duration::from_millis(100);
    origin_tick(&mut core, 3, 0, vec![], at);
    let shed: Vec<PeerId> = pushes(&mut core).iter().filter(|p| p.shed).map(|p| p.peer).collect();
    assert_eq!(shed, vec![c3]);
    assert_eq!(core.counters().sheds, 1);
    // Every re-push asks again (a lost push is made good), and only c3.
    let at = at + Duration::from_secs(2);
    origin_tick(&mut core, 3, 0, vec![], at);
    let p = pushes(&mut core);
    assert!(p.iter().any(|p| p.peer == c3 && p.shed) && p.iter().all(|p| p.peer == c3 || !p.shed), "{p:?}");
    assert_eq!(core.counters().sheds, 1, "counted once per child asked");
    // c3 left: at the cap again, nobody is asked.
    let at = at + Duration::from_secs(2);
    origin_tick(&mut core, 2, 0, vec![13], at);
    let p = pushes(&mut core);
    assert!(!p.is_empty() && p.iter().all(|p| !p.shed && p.peer != c3), "{p:?}");
}

/// Node ids of a small tree: origin `o`, `a` and `b` below it, and this node `me` below `a`.
struct Nodes {
    o: PeerId,
    a: PeerId,
    b: PeerId,
}

/// This node relays the stream from `a` (session 1, depth 2, one viewer) with `b` standing by
/// (session 5); the origin is full.
fn relay_with_standby() -> (Core, Nodes, Instant) {
    let n = Nodes { o: PeerId::random(), a: PeerId::random(), b: PeerId::random() };
    let t0 = Instant::now();
    let mut core = Core::new(config(PeerId::random()));
    core.handle_input(Input::Directory(full(tree(n.o, &[(n.a, vec![n.o])]), n.o)), t0);
    core.handle_input(Input::Want { stream: S.into(), has_source: false }, t0);
    let attempt = attempt_to(&drain(&mut core), n.a);
    connect(&mut core, attempt, vec![n.o, n.a], 1, t0);
    core.handle_input(Input::Directory(full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o])]), n.o)), t0);
    let at = t0 + STANDBY_AFTER;
    let out = tick(&mut core, Some(1), at);
    let attempt = attempt_to(&out, n.b);
    connect(&mut core, attempt, vec![n.o, n.b], 5, at);
    assert_eq!(core.relay_in(S).and_then(|r| r.standby.as_ref()).map(|s| s.session), Some(5));
    (core, n, at)
}

fn attempt_to(out: &[Output], peer: PeerId) -> u64 {
    out.iter()
        .find_map(|o| match o {
            Output::Attach { attempt, peer: p, .. } if *p == peer => Some(*attempt),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no attach to {peer}: {out:?}"))
}

fn connect(core: &mut Core, attempt: u64, answered: Vec<PeerId>, session: u64, now: Instant) {
    core.handle_input(Input::Answered { attempt, depth: answered.len() as u32 - 1, path: answered }, now);
    assert_eq!(drain(core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session }, now);
    drain(core);
}

/// A tick with one viewer, media flowing and the stream fed by session `fed_by`.
fn tick(core: &mut Core, fed_by: Option<u64>, at: Instant) -> Vec<Output> {
    static PACKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let packets = PACKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let streams = vec![LocalStream { name: S.into(), viewers: 1, packets, fed_by, ..Default::default() }];
    core.handle_input(Input::Tick { streams, ended: vec![] }, at);
    drain(core)
}

/// A path push from `from` (its path, itself last) asking this node to move or not.
fn pushed(core: &mut Core, from: PeerId, path: Vec<PeerId>, shed: bool, at: Instant) -> Vec<Output> {
    let depth = path.len() as u32 - 1;
    core.handle_input(Input::PathUpdate { from, stream: S.into(), depth, path, frozen: false, shed, left: false, room: false, move_to: None }, at);
    drain(core)
}

#[test]
fn a_child_asked_to_move_hands_over_to_its_standby_and_closes_the_old_edge_only_once_the_standby_feeds() {
    let (mut core, n, t0) = relay_with_standby();
    let at = t0 + Duration::from_millis(10);
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, at);
    assert_eq!(out, vec![Output::Handover { stream: S.into(), session: 5 }]);
    assert!(core.relay_in(S).is_some_and(|r| r.moving == Some(at) && r.upstream == n.a));
    // The old upstream still feeds the stream: nothing is closed; a repeated push asks the
    // media plane again.
    let out = tick(&mut core, Some(1), at + Duration::from_millis(500));
    assert!(!out.iter().any(|o| matches!(o, Output::Detach { .. })), "{out:?}");
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, at + Duration::from_secs(1));
    assert_eq!(out, vec![Output::Handover { stream: S.into(), session: 5 }]);
    // The standby took over: the old relay in closes, the standby is the relay in.
    let out = tick(&mut core, Some(5), at + Duration::from_millis(1500));
    assert_eq!(out.iter().filter(|o| matches!(o, Output::Detach { .. })).collect::<Vec<_>>(), vec![&Output::Detach {
        stream: S.into(),
        session: 1,
        reason: DetachReason::Moved
    }]);
    let r = core.relay_in(S).expect("still relayed");
    assert_eq!((r.upstream, r.session, r.path.clone(), r.depth, r.moving), (n.b, 5, vec![n.o, n.b], 2, None));
    assert_eq!((core.counters().handovers, core.counters().standby_switches, core.counters().reattaches), (1, 0, 0));
    // The old upstream is told at once, so that it stops sending rather than at its timeout.
    let left: Vec<PeerId> = pushes(&mut core).iter().filter(|p| p.left).map(|p| p.peer).collect();
    assert_eq!(left, vec![n.a]);
    // A push from the old upstream asks nothing of this node any more.
    assert!(pushed(&mut core, n.a, vec![n.o, n.a], true, at + Duration::from_secs(2)).is_empty());
}

#[test]
fn a_child_stays_when_its_standby_has_no_room_or_the_ask_is_not_from_its_upstream() {
    let (mut core, n, t0) = relay_with_standby();
    // b filled up since it stood by.
    core.handle_input(Input::Directory(full(full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o])]), n.o), n.b)), t0);
    assert!(pushed(&mut core, n.a, vec![n.o, n.a], true, t0).is_empty(), "the standby is full: moving would make it shed");
    assert!(core.relay_in(S).is_some_and(|r| r.moving.is_none()));
    let (mut core, n, t0) = relay_with_standby();
    assert!(pushed(&mut core, n.b, vec![n.o, n.b], true, t0).is_empty(), "only the upstream may ask");
    assert!(pushed(&mut core, n.a, vec![n.o, n.a], false, t0).is_empty());
    assert_eq!(core.counters().handovers, 0);
}

#[test]
fn a_move_the_standby_does_not_complete_in_time_closes_the_standby_and_keeps_the_upstream() {
    let (mut core, n, t0) = relay_with_standby();
    pushed(&mut core, n.a, vec![n.o, n.a], true, t0);
    let out = tick(&mut core, Some(1), t0 + HANDOVER_FOR - Duration::from_millis(1));
    assert!(!out.iter().any(|o| matches!(o, Output::Detach { .. })), "{out:?}");
    let out = tick(&mut core, Some(1), t0 + HANDOVER_FOR);
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 5, reason: DetachReason::Stalled }), "{out:?}");
    let r = core.relay_in(S).expect("still relayed");
    assert_eq!((r.upstream, r.session, r.standby.is_none(), r.moving), (n.a, 1, true, None));
    assert_eq!(core.counters().handovers_failed, 1);
    assert!(pushes(&mut core).iter().any(|p| p.left && p.peer == n.b), "the standby's node is told");
}

#[test]
fn a_child_whose_standby_is_full_replaces_it_with_one_that_has_room_then_moves() {
    let (mut core, n, t0) = relay_with_standby();
    let c = PeerId::random();
    // b filled up since it stood by; c, beside it, has room.
    let dir = full(full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o]), (c, vec![n.o])]), n.o), n.b);
    core.handle_input(Input::Directory(dir), t0);
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, t0);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 5, reason: DetachReason::Replaced }, "{out:?}");
    let attempt = attempt_to(&out, c);
    assert!(out.iter().all(|o| !matches!(o, Output::Handover { .. })), "no move onto the full standby: {out:?}");
    // Asked again while the new standby connects: nothing more.
    assert!(pushed(&mut core, n.a, vec![n.o, n.a], true, t0).is_empty());
    connect(&mut core, attempt, vec![n.o, c], 6, t0);
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, t0 + Duration::from_secs(1));
    assert_eq!(out, vec![Output::Handover { stream: S.into(), session: 6 }]);
}

#[test]
fn a_child_that_leaves_closes_its_edge_at_the_upstream_at_once_and_only_its_own() {
    let t0 = Instant::now();
    let (c1, c2) = (PeerId::random(), PeerId::random());
    let mut core = origin_serving(PeerId::random(), None, &[(c1, false), (c2, true)], t0);
    core.handle_input(Input::PathUpdate { from: c1, stream: "other".into(), depth: 0, path: vec![], frozen: false, shed: false, left: true, room: false, move_to: None }, t0);
    assert!(drain(&mut core).is_empty(), "not an edge of that stream");
    core.handle_input(Input::PathUpdate { from: c1, stream: S.into(), depth: 0, path: vec![], frozen: false, shed: false, left: true, room: false, move_to: None }, t0);
    assert_eq!(drain(&mut core), vec![Output::Close { session: 11 }]);
    core.handle_input(Input::PathUpdate { from: c2, stream: S.into(), depth: 0, path: vec![], frozen: false, shed: false, left: true, room: false, move_to: None }, t0);
    assert_eq!(drain(&mut core), vec![Output::Close { session: 12 }], "a standby edge too");
    core.handle_input(Input::PathUpdate { from: c2, stream: S.into(), depth: 0, path: vec![], frozen: false, shed: false, left: true, room: false, move_to: None }, t0);
    assert!(drain(&mut core).is_empty(), "already closed");
}

#[test]
fn a_lost_upstream_is_not_told_and_a_live_one_is() {
    let (mut core, n, t0) = relay_with_standby();
    core.handle_input(Input::PeerLost(n.a), t0);
    drain(&mut core);
    assert!(pushes(&mut core).iter().all(|p| !p.left), "nothing to the lost node");
    // The standby (now the upstream) pushes a path holding this node: a cycle; it is told.
    let me = core.config().me;
    core.handle_input(Input::PathUpdate { from: n.b, stream: S.into(), depth: 3, path: vec![n.o, me, n.b], frozen: false, shed: false, left: false, room: false, move_to: None }, t0);
    drain(&mut core);
    assert!(pushes(&mut core).iter().any(|p| p.left && p.peer == n.b));
}

#[test]
fn each_spare_fed_slot_is_offered_to_one_standby_child_at_a_time() {
    let t0 = Instant::now();
    let (c1, s1, s2) = (PeerId::random(), PeerId::random(), PeerId::random());
    let mut core = origin_serving(PeerId::random(), None, &[(c1, false), (s1, true), (s2, true)], t0);
    origin_tick(&mut core, 1, 2, vec![], t0);
    let room = |p: &[PathPush]| p.iter().filter(|p| p.room).map(|p| p.peer).collect::<Vec<_>>();
    assert_eq!(room(&pushes(&mut core)), vec![s1], "one spare slot (cap 2, one fed): the oldest standby edge gets it");
    // s1 moved onto it: no spare slot left, nobody is offered one.
    let at = t0 + Duration::from_secs(2);
    origin_tick(&mut core, 2, 1, vec![], at);
    let p = pushes(&mut core);
    assert!(!p.is_empty() && room(&p).is_empty(), "{p:?}");
}

#[test]
fn a_child_moves_only_onto_a_slot_its_standby_offers_it() {
    let (mut core, n, t0) = relay_with_standby();
    let standby_push = |core: &mut Core, room: bool| {
        core.handle_input(Input::PathUpdate { from: n.b, stream: S.into(), depth: 1, path: vec![n.o, n.b], frozen: false, shed: false, left: false, room, move_to: None }, t0);
        drain(core);
    };
    // The directory says b has room, but b's own push says its slot is kept for another child.
    standby_push(&mut core, false);
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, t0);
    assert!(!out.iter().any(|o| matches!(o, Output::Handover { .. })), "{out:?}");
    standby_push(&mut core, true);
    let out = pushed(&mut core, n.a, vec![n.o, n.a], true, t0);
    assert_eq!(out, vec![Output::Handover { stream: S.into(), session: 5 }]);
}

#[test]
fn refusals_for_a_full_fan_out_are_counted_by_edge_kind() {
    let t0 = Instant::now();
    let mut core = Core::new(config(PeerId::random()));
    origin_tick(&mut core, 0, 0, vec![], t0);
    for (id, standby) in [(1, false), (2, false), (3, true), (4, true)] {
        serve(&mut core, id, PeerId::random(), standby, 10 + id, t0);
    }
    for (id, standby) in [(5, false), (6, true), (7, true)] {
        core.handle_input(Input::RelayRequest { id, from: PeerId::random(), stream: S.into(), has_source: true, standby }, t0);
        assert!(matches!(drain(&mut core).as_slice(), [Output::Refuse { .. }]));
    }
    assert_eq!((core.counters().full_refusals, core.counters().standby_full_refusals), (1, 2));
}

#[test]
fn a_child_asked_to_move_is_named_a_sibling_with_room_and_moves_below_it() {
    // The upstream: fed c1 and c2 (c2 reports room), then c3 over the cap; c2 and c3 relay to
    // nobody, c1 to its cap: c3, the newer leaf, is asked to move.
    let t0 = Instant::now();
    let me = PeerId::random();
    let (c1, c2, c3) = (PeerId::random(), PeerId::random(), PeerId::random());
    let full_c1 = full(tree(me, &[(c1, vec![me]), (c2, vec![me]), (c3, vec![me])]), c1);
    let mut up = origin_serving(me, Some(full_c1), &[(c1, false), (c2, false), (c3, true)], t0);
    origin_tick(&mut up, 3, 0, vec![], t0);
    let p = pushes(&mut up);
    let to_c3 = p.iter().find(|p| p.peer == c3).expect("a push to c3");
    assert!(to_c3.shed && to_c3.move_to == Some(c2), "{p:?}");
    assert!(p.iter().filter(|p| p.peer != c3).all(|p| !p.shed && p.move_to.is_none()), "{p:?}");

    // A child asked so, whose standby has no slot for it (b pushed no room): a fed edge from
    // the sibling, held as the standby, then the move.
    let (mut core, n, t0) = relay_with_standby();
    let sibling = PeerId::random();
    let dir = full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o]), (sibling, vec![n.o, n.a])]), n.o);
    core.handle_input(Input::Directory(dir), t0);
    core.handle_input(Input::PathUpdate { from: n.b, stream: S.into(), depth: 1, path: vec![n.o, n.b], frozen: false, shed: false, left: false, room: false, move_to: None }, t0);
    drain(&mut core);
    core.handle_input(Input::PathUpdate { from: n.a, stream: S.into(), depth: 1, path: vec![n.o, n.a], frozen: false, shed: true, left: false, room: false, move_to: Some(sibling) }, t0);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Detach { stream: S.into(), session: 5, reason: DetachReason::Replaced }, "{out:?}");
    let attempt = match &out[1] {
        Output::Attach { attempt, peer, standby: true, fed: true, .. } if *peer == sibling => *attempt,
        o => panic!("a fed attach to the sibling: {o:?} in {out:?}"),
    };
    core.handle_input(Input::Answered { attempt, depth: 2, path: vec![n.o, n.a, sibling] }, t0);
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session: 7 }, t0);
    let out = drain(&mut core);
    assert_eq!(out, vec![Output::Handover { stream: S.into(), session: 7 }], "the move starts at once");
    // The sibling's edge hangs below the upstream by design: the standby checks keep it.
    let out = tick(&mut core, Some(1), t0 + Duration::from_millis(500));
    assert!(!out.iter().any(|o| matches!(o, Output::Detach { .. })), "{out:?}");
    let out = tick(&mut core, Some(7), t0 + Duration::from_secs(1));
    assert!(out.contains(&Output::Detach { stream: S.into(), session: 1, reason: DetachReason::Moved }), "{out:?}");
    let r = core.relay_in(S).expect("relayed");
    assert_eq!((r.upstream, r.depth, r.path.clone()), (sibling, 3, vec![n.o, n.a, sibling]));
}

#[test]
fn the_media_planes_list_of_paused_edges_says_which_standby_resumed() {
    let t0 = Instant::now();
    let (c1, s1, s2) = (PeerId::random(), PeerId::random(), PeerId::random());
    let mut core = origin_serving(PeerId::random(), None, &[(c1, false), (s1, true), (s2, true)], t0);
    // s2's edge (13) resumed, s1's (12) is still paused: with two fed, s1 is offered no slot
    // and nobody is shed.
    let streams = vec![LocalStream { name: S.into(), live: true, relay_children: 2, standby_children: 1, paused_relays: vec![12], ..Default::default() }];
    core.handle_input(Input::Tick { streams, ended: vec![] }, t0);
    drain(&mut core);
    let p = pushes(&mut core);
    assert!(p.iter().all(|p| !p.room && !p.shed), "{p:?}");
    // s2 leaves: one fed slot spare, offered to s1's paused edge.
    let streams = vec![LocalStream { name: S.into(), live: true, relay_children: 1, standby_children: 1, paused_relays: vec![12], ..Default::default() }];
    core.handle_input(Input::Tick { streams, ended: vec![13] }, t0 + Duration::from_secs(2));
    drain(&mut core);
    let room: Vec<PeerId> = pushes(&mut core).iter().filter(|p| p.room).map(|p| p.peer).collect();
    assert_eq!(room, vec![s1]);
}

#[test]
fn a_child_that_relays_to_fewer_nodes_is_asked_to_move_before_a_newer_one() {
    let t0 = Instant::now();
    let me = PeerId::random();
    let (c1, c2, c3) = (PeerId::random(), PeerId::random(), PeerId::random());
    // c3, the newest, relays to two nodes; c2 to none.
    let mut dir = tree(me, &[(c1, vec![me]), (c2, vec![me]), (c3, vec![me])]);
    if let Some(e) = dir.nodes.get_mut(&c3) {
        e.load.relay_children = 2;
    }
    let mut up = origin_serving(me, Some(dir), &[(c1, false), (c2, false), (c3, true)], t0);
    origin_tick(&mut up, 3, 0, vec![], t0);
    let shed: Vec<PeerId> = pushes(&mut up).iter().filter(|p| p.shed).map(|p| p.peer).collect();
    assert_eq!(shed, vec![c2], "a leaf's move deepens nobody else");
}
