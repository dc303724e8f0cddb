//! Paths pushed down the relay edges, driven without sockets: children told their new path on
//! every change, a pushed path that closes a cycle or is too deep sends the stream elsewhere, a
//! re-attaching node's subtree is frozen (requests wait), standbys and answers are kept current
//! by pushes, and paths through a node lost moments ago are refused.

use std::time::{Duration, Instant};

use relaycast_cluster::core::{DetachReason, LocalStream, PATH_REPUSH, STANDBY_AFTER};
mod common;

use common::{S, config, drain, full, tree};
use relaycast_cluster::{Config, Core, Input, Output};
use relaycast_mesh::PeerId;

/// The attach outputs: (attempt, peer, standby).
fn attaches(out: &[Output]) -> Vec<(u64, PeerId, bool)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Attach {
                attempt,
                peer,
                standby,
                ..
            } => Some((*attempt, *peer, *standby)),
            _ => None,
        })
        .collect()
}

/// The paths queued for relay children since the last call: (peer, depth, path, frozen).
fn pushes(core: &mut Core) -> Vec<(PeerId, u32, Vec<PeerId>, bool)> {
    std::iter::from_fn(|| core.poll_push())
        .filter(|p| p.stream == S && !p.left)
        .map(|p| (p.peer, p.depth, p.path, p.frozen))
        .collect()
}

/// A tick at `at` with one viewer, a relay child and media flowing.
fn tick(core: &mut Core, at: Instant) -> Vec<Output> {
    static PACKETS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let packets = PACKETS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let streams = vec![LocalStream {
        name: S.into(),
        viewers: 1,
        relay_children: 1,
        packets,
        ..Default::default()
    }];
    core.handle_input(
        Input::Tick {
            streams,
            ended: vec![],
        },
        at,
    );
    drain(core)
}

/// Connects the attempt of `core` to the upstream whose path (itself last) is `answered`.
fn answer(
    core: &mut Core,
    attempt: u64,
    answered: Vec<PeerId>,
    session: u64,
    now: Instant,
) -> Vec<Output> {
    core.handle_input(
        Input::Answered {
            attempt,
            depth: answered.len() as u32 - 1,
            path: answered,
        },
        now,
    );
    assert_eq!(drain(core), vec![Output::Connect { attempt }]);
    core.handle_input(Input::Connected { attempt, session }, now);
    drain(core)
}

/// A pushed path from `from` (its path with itself appended).
fn update(from: PeerId, path: Vec<PeerId>, frozen: bool) -> Input {
    let depth = if frozen { 0 } else { path.len() as u32 - 1 };
    Input::PathUpdate {
        from,
        stream: S.into(),
        depth,
        path: if frozen { vec![] } else { path },
        frozen,
        shed: false,
        left: false,
        room: false,
        move_to: None,
    }
}

/// Node ids: origin `o`, `a` and `b` below it, this node `me` below `a`, and `child` below
/// this node.
struct Nodes {
    o: PeerId,
    a: PeerId,
    b: PeerId,
    me: PeerId,
    child: PeerId,
}

/// `me` relays the stream from `a` (depth 2) to `child` (relay-out session 7); `b` carries it
/// too (the origin is full).
fn relay_with_child(cfg: impl FnOnce(PeerId) -> Config) -> (Core, Nodes, Instant) {
    let n = Nodes {
        o: PeerId::random(),
        a: PeerId::random(),
        b: PeerId::random(),
        me: PeerId::random(),
        child: PeerId::random(),
    };
    let t0 = Instant::now();
    let mut core = Core::new(cfg(n.me));
    core.handle_input(
        Input::Directory(full(tree(n.o, &[(n.a, vec![n.o])]), n.o)),
        t0,
    );
    core.handle_input(
        Input::Want {
            stream: S.into(),
            has_source: false,
        },
        t0,
    );
    let (attempt, peer, _) = attaches(&drain(&mut core))[0];
    assert_eq!(peer, n.a);
    answer(&mut core, attempt, vec![n.o, n.a], 1, t0);
    core.handle_input(
        Input::RelayRequest {
            id: 3,
            from: n.child,
            stream: S.into(),
            has_source: true,
            standby: false,
        },
        t0,
    );
    assert_eq!(
        drain(&mut core),
        vec![Output::Serve {
            id: 3,
            depth: 2,
            path: vec![n.o, n.a, n.me],
            standby: false
        }]
    );
    core.handle_input(
        Input::Served {
            id: 3,
            session: Some(7),
        },
        t0,
    );
    core.handle_input(
        Input::Directory(full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o])]), n.o)),
        t0,
    );
    drain(&mut core);
    (core, n, t0)
}

#[test]
fn a_reattach_freezes_the_children_then_pushes_them_the_new_path() {
    let (mut core, n, t0) = relay_with_child(config);
    core.handle_input(Input::PeerLost(n.a), t0);
    let out = drain(&mut core);
    assert_eq!(
        pushes(&mut core),
        vec![(n.child, 0, vec![], true)],
        "the child is frozen at once: {out:?}"
    );
    let (attempt, peer, _) = attaches(&out)[0];
    assert_eq!(peer, n.b);
    let out = answer(&mut core, attempt, vec![n.o, n.b], 2, t0);
    assert_eq!(
        pushes(&mut core),
        vec![(n.child, 2, vec![n.o, n.b, n.me], false)],
        "{out:?}"
    );
    assert_eq!(
        core.relay_in(S).map(|r| (r.path.clone(), r.frozen)),
        Some((vec![n.o, n.b], false))
    );
}

#[test]
fn an_ancestors_move_is_pushed_on_and_again_after_the_repush_interval() {
    let (mut core, n, t0) = relay_with_child(config);
    let x = PeerId::random();
    // a re-attached below x: a pushes its new path; this node takes it and tells its child.
    core.handle_input(update(n.a, vec![n.o, x, n.a], false), t0);
    let out = drain(&mut core);
    assert_eq!(
        pushes(&mut core),
        vec![(n.child, 3, vec![n.o, x, n.a, n.me], false)],
        "{out:?}"
    );
    assert_eq!(
        core.relay_in(S).map(|r| (r.path.clone(), r.depth)),
        Some((vec![n.o, x, n.a], 3))
    );
    // The same path again changes nothing and is not passed on.
    core.handle_input(update(n.a, vec![n.o, x, n.a], false), t0);
    assert!(drain(&mut core).is_empty());
    assert!(pushes(&mut core).is_empty());
    // A later load report of a still naming its old path does not undo the push.
    core.handle_input(
        Input::Directory(full(tree(n.o, &[(n.a, vec![n.o]), (n.b, vec![n.o])]), n.o)),
        t0,
    );
    drain(&mut core);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(3));
    // A path longer than the relay protocol allows is ignored, even from the upstream.
    let long: Vec<PeerId> = (0..=relaycast_mesh::relay_protocol::MAX_PATH)
        .map(|_| PeerId::random())
        .collect();
    core.handle_input(update(n.a, long, false), t0);
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.counters().bad_paths, 1);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(3));
    // Pushes from a node that is not this node's upstream are ignored.
    core.handle_input(update(n.b, vec![n.o, n.b], false), t0);
    assert!(drain(&mut core).is_empty());
    assert!(pushes(&mut core).is_empty());
    assert_eq!(core.relay_in(S).map(|r| r.upstream), Some(n.a));
    // Ticks repeat the path every PATH_REPUSH (a lost push is corrected by the next).
    tick(&mut core, t0);
    let first = pushes(&mut core);
    assert_eq!(first, vec![(n.child, 3, vec![n.o, x, n.a, n.me], false)]);
    tick(&mut core, t0 + PATH_REPUSH / 2);
    assert!(pushes(&mut core).is_empty());
    tick(&mut core, t0 + PATH_REPUSH);
    assert_eq!(pushes(&mut core), first);
    // A push queued for a node that is no longer a relay child is dropped at the next tick.
    core.handle_input(update(n.a, vec![n.o, n.a], false), t0);
    core.handle_input(
        Input::Tick {
            streams: vec![],
            ended: vec![7],
        },
        t0,
    );
    assert!(pushes(&mut core).is_empty());
}

#[test]
fn a_pushed_path_holding_this_node_detaches_and_reattaches_off_that_path() {
    let (mut core, n, t0) = relay_with_child(config);
    // a re-attached below this node's child: the pushed path holds this node.
    core.handle_input(update(n.a, vec![n.o, n.me, n.child, n.a], false), t0);
    let out = drain(&mut core);
    assert_eq!(
        out[0],
        Output::Detach {
            stream: S.into(),
            session: 1,
            reason: DetachReason::PathInvalid
        },
        "{out:?}"
    );
    let all: Vec<_> = std::iter::from_fn(|| core.poll_push()).collect();
    assert!(
        all.iter().filter(|p| !p.left).all(|p| p.frozen),
        "the child is frozen: {all:?}"
    );
    assert!(all.iter().any(|p| p.left && p.peer == n.a), "the upstream that moved below is told: {all:?}");
    let asked: Vec<PeerId> = attaches(&out).iter().map(|a| a.1).collect();
    assert_eq!(asked[0], n.b, "{out:?}");
    assert!(
        !asked.contains(&n.a) && !asked.contains(&n.child),
        "never a, nor the child: {out:?}"
    );
    assert!(core.relay_in(S).is_none());
    assert_eq!(
        (core.counters().pushed_invalid, core.counters().cycles),
        (1, 1)
    );
}

#[test]
fn a_pushed_path_over_the_depth_cap_detaches() {
    let (mut core, n, t0) = relay_with_child(|me| Config {
        max_depth: 3,
        ..config(me)
    });
    let (x, y) = (PeerId::random(), PeerId::random());
    // Depth 3 is still under the cap.
    core.handle_input(update(n.a, vec![n.o, x, n.a], false), t0);
    drain(&mut core);
    assert_eq!(core.relay_in(S).map(|r| r.depth), Some(3));
    core.handle_input(update(n.a, vec![n.o, x, y, n.a], false), t0);
    let out = drain(&mut core);
    assert_eq!(
        out[0],
        Output::Detach {
            stream: S.into(),
            session: 1,
            reason: DetachReason::PathInvalid
        },
        "{out:?}"
    );
    assert!(core.relay_in(S).is_none());
    assert_eq!(
        (core.counters().pushed_invalid, core.counters().too_deep),
        (1, 1)
    );
}

#[test]
fn a_frozen_node_parks_relay_requests_until_it_has_a_path_again() {
    let (mut core, n, t0) = relay_with_child(config);
    let z = PeerId::random();
    // The upstream is re-attaching: this node is frozen, and so is its child.
    core.handle_input(update(n.a, vec![], true), t0);
    assert_eq!(
        {
            drain(&mut core);
            pushes(&mut core)
        },
        vec![(n.child, 0, vec![], true)]
    );
    assert_eq!(core.relay_in(S).map(|r| r.frozen), Some(true));
    // Nobody is served while frozen, not even with a source, and the stream is not reported as
    // carried (nobody should pick this node as its upstream).
    core.handle_input(
        Input::RelayRequest {
            id: 9,
            from: z,
            stream: S.into(),
            has_source: true,
            standby: false,
        },
        t0,
    );
    assert!(drain(&mut core).is_empty());
    assert_eq!(core.counters().frozen_requests, 1);
    let streams = [LocalStream {
        name: S.into(),
        viewers: 1,
        ..Default::default()
    }];
    assert!(core.load_of(&streams).streams.is_empty());
    // A viewer arriving meanwhile is answered at once but the request stays parked.
    core.handle_input(
        Input::Want {
            stream: S.into(),
            has_source: true,
        },
        t0,
    );
    let out = drain(&mut core);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Serve { .. } | Output::Refuse { .. })),
        "{out:?}"
    );
    // a has a path again (it moved below b): the child is told, the request served with it.
    core.handle_input(update(n.a, vec![n.o, n.b, n.a], false), t0);
    let out = drain(&mut core);
    assert_eq!(
        pushes(&mut core),
        vec![(n.child, 3, vec![n.o, n.b, n.a, n.me], false)],
        "{out:?}"
    );
    assert!(
        out.contains(&Output::Serve {
            id: 9,
            depth: 3,
            path: vec![n.o, n.b, n.a, n.me],
            standby: false
        }),
        "{out:?}"
    );
    assert_eq!(core.load_of(&streams).streams.len(), 1);
}

#[test]
fn a_node_that_lost_its_upstream_parks_requests_until_it_is_attached_again() {
    let (mut core, n, t0) = relay_with_child(config);
    let z = PeerId::random();
    core.handle_input(Input::PeerLost(n.a), t0);
    let (attempt, _, _) = attaches(&drain(&mut core))[0];
    // The media plane may still hold a source: the request waits anyway.
    core.handle_input(
        Input::RelayRequest {
            id: 9,
            from: z,
            stream: S.into(),
            has_source: true,
            standby: false,
        },
        t0,
    );
    assert!(drain(&mut core).is_empty());
    let out = answer(&mut core, attempt, vec![n.o, n.b], 2, t0);
    assert!(
        out.contains(&Output::Serve {
            id: 9,
            depth: 2,
            path: vec![n.o, n.b, n.me],
            standby: false
        }),
        "{out:?}"
    );
}

#[test]
fn a_standby_on_the_cycle_a_pushed_path_reveals_is_not_switched_to() {
    let (mut core, n, t0) = relay_with_child(config);
    let at = t0 + STANDBY_AFTER;
    let out = tick(&mut core, at);
    let (attempt, peer, standby) = attaches(&out)[0];
    assert_eq!((peer, standby), (n.b, true), "{out:?}");
    answer(&mut core, attempt, vec![n.o, n.b], 5, at);
    assert_eq!(
        core.relay_in(S)
            .and_then(|r| r.standby.as_ref().map(|s| s.upstream)),
        Some(n.b)
    );
    // a's pushed path runs through this node and then b: b is below this node now.
    core.handle_input(update(n.a, vec![n.o, n.me, n.b, n.a], false), at);
    let out = drain(&mut core);
    assert!(
        out.contains(&Output::Detach {
            stream: S.into(),
            session: 1,
            reason: DetachReason::PathInvalid
        }),
        "{out:?}"
    );
    assert!(
        out.contains(&Output::Detach {
            stream: S.into(),
            session: 5,
            reason: DetachReason::PathInvalid
        }),
        "{out:?}"
    );
    assert!(core.relay_in(S).is_none(), "no switch to b");
    assert!(
        attaches(&out).iter().all(|a| a.1 != n.b && a.1 != n.a),
        "{out:?}"
    );
    assert_eq!(core.counters().standby_switches, 0);
}

#[test]
fn a_standby_that_pushes_a_frozen_or_cyclic_path_is_closed() {
    let (mut core, n, t0) = relay_with_child(config);
    let at = t0 + STANDBY_AFTER;
    let (attempt, _, _) = attaches(&tick(&mut core, at))[0];
    answer(&mut core, attempt, vec![n.o, n.b], 5, at);
    // A valid push keeps the standby's path current.
    let x = PeerId::random();
    core.handle_input(update(n.b, vec![n.o, x, n.b], false), at);
    assert!(drain(&mut core).is_empty());
    assert_eq!(
        core.relay_in(S)
            .and_then(|r| r.standby.as_ref().map(|s| (s.path.clone(), s.depth))),
        Some((vec![n.o, x, n.b], 3))
    );
    // Frozen: it would take over without a path; it is closed and the relay stays.
    core.handle_input(update(n.b, vec![], true), at);
    assert_eq!(
        drain(&mut core),
        vec![Output::Detach {
            stream: S.into(),
            session: 5,
            reason: DetachReason::PathInvalid
        }]
    );
    let r = core.relay_in(S).expect("relayed");
    assert_eq!((r.upstream, r.standby.is_none()), (n.a, true));
}

#[test]
fn an_answer_whose_upstream_moves_before_it_is_connected_is_abandoned() {
    let (mut core, n, t0) = relay_with_child(config);
    core.handle_input(Input::PeerLost(n.a), t0);
    let (attempt, peer, _) = attaches(&drain(&mut core))[0];
    assert_eq!(peer, n.b);
    core.handle_input(
        Input::Answered {
            attempt,
            depth: 1,
            path: vec![n.o, n.b],
        },
        t0,
    );
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt }]);
    // Before the answer is applied, b moves below this node's child.
    core.handle_input(update(n.b, vec![n.o, n.me, n.child, n.b], false), t0);
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Abandon { attempt }, "{out:?}");
    core.handle_input(
        Input::Connected {
            attempt,
            session: 2,
        },
        t0,
    );
    assert!(drain(&mut core).contains(&Output::Close { session: 2 }));
    assert!(core.relay_in(S).is_none());
}

#[test]
fn a_path_through_a_node_lost_moments_ago_is_refused() {
    let (mut core, n, t0) = relay_with_child(config);
    let c = PeerId::random();
    core.handle_input(Input::PeerLost(n.a), t0);
    let asked = attaches(&drain(&mut core));
    let (attempt, peer, _) = asked[0];
    assert_eq!(peer, n.b);
    // b still hangs below a by its answer: its subtree lost a too and is re-attaching.
    core.handle_input(
        Input::Answered {
            attempt,
            depth: 3,
            path: vec![n.o, n.a, c, n.b],
        },
        t0,
    );
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Abandon { attempt }, "{out:?}");
    assert_eq!(core.counters().stale_paths, 1);
    for (other, _, _) in &asked[1..] {
        core.handle_input(
            Input::AttachFailed {
                attempt: *other,
                fatal: false,
            },
            t0,
        );
    }
    drain(&mut core);
    // Once the loss is old news, the same answer is taken.
    core.handle_input(
        Input::Directory(full(tree(n.o, &[(n.b, vec![n.o, n.a, c])]), n.o)),
        t0,
    );
    let later = t0 + relaycast_cluster::bounds::LOST_FOR + Duration::from_millis(1);
    core.handle_timeout(later);
    let (attempt, peer, _) = attaches(&drain(&mut core))[0];
    assert_eq!(peer, n.b);
    core.handle_input(
        Input::Answered {
            attempt,
            depth: 3,
            path: vec![n.o, n.a, c, n.b],
        },
        later,
    );
    assert_eq!(drain(&mut core), vec![Output::Connect { attempt }]);
}

#[test]
fn a_standby_kept_current_by_pushes_takes_over_when_the_upstream_is_lost() {
    let (mut core, n, t0) = relay_with_child(config);
    let at = t0 + STANDBY_AFTER;
    let (attempt, peer, _) = attaches(&tick(&mut core, at))[0];
    assert_eq!(peer, n.b);
    answer(&mut core, attempt, vec![n.o, n.b], 5, at);
    // b pushes its path (unchanged: depth 1), then a is lost: b takes over at once, at the
    // same depth as through a, and the child is told its new path.
    core.handle_input(update(n.b, vec![n.o, n.b], false), at);
    drain(&mut core);
    pushes(&mut core);
    core.handle_input(Input::PeerLost(n.a), at);
    let out = drain(&mut core);
    assert_eq!(
        out,
        vec![Output::Detach {
            stream: S.into(),
            session: 1,
            reason: DetachReason::UpstreamLost
        }],
        "no new attach: {out:?}"
    );
    let r = core.relay_in(S).expect("relayed");
    assert_eq!((r.upstream, r.session, r.depth), (n.b, 5, 2));
    assert_eq!(
        pushes(&mut core),
        vec![(n.child, 2, vec![n.o, n.b, n.me], false)]
    );
    assert_eq!(core.counters().standby_switches, 1);
    // A standby deeper than this node would be through the upstream is no help: not switched to.
    let (mut core, n, t0) = relay_with_child(config);
    let at = t0 + STANDBY_AFTER;
    let (attempt, _, _) = attaches(&tick(&mut core, at))[0];
    answer(&mut core, attempt, vec![n.o, n.b], 5, at);
    let x = PeerId::random();
    core.handle_input(update(n.b, vec![n.o, x, n.b], false), at);
    drain(&mut core);
    core.handle_input(Input::PeerLost(n.a), at);
    drain(&mut core);
    assert!(core.relay_in(S).is_none());
    assert_eq!(core.counters().standby_switches, 0);
}
