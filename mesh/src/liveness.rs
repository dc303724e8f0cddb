//! Peer liveness judged from ping answers (sans-IO: times in, lost peers out).
//!
//! A connected peer that has not answered a ping for [`LOST_AFTER`] is lost. Time in which
//! this node itself was not running (its check came late: a starved process or runtime) is
//! not counted against peers: their answers may be waiting unread in this node's sockets.
//! Without that, a node stalled for a few seconds on a loaded host declared every peer lost on
//! waking, dropped live upstreams and re-attached elsewhere.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// Silence after which a connected peer is lost: many pings, since a live node on a loaded host
/// can be descheduled for seconds (4.4 s measured with three debug-build nodes and Chromium on
/// two busy cores). Only frozen peers and silent partitions wait for it: a peer whose connection
/// closes (a crash, a kill, a reset) is lost at once, and a relay whose upstream's media stops
/// is re-attached by the media session's own timeout.
pub const LOST_AFTER: Duration = Duration::from_secs(10);
/// How often liveness is checked.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// Lateness of a check beyond which the difference counts as this node's own stall.
pub const STALL_SLACK: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Last ping answer (or connection time), shifted forward by this node's own stalls.
    last_heard: Instant,
    /// The peer does not speak ping: its liveness is left to the connection.
    no_ping: bool,
    /// Already reported lost (until it connects again).
    reported: bool,
}

/// What a check found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Peers silent for longer than the window: disconnect them and report them lost.
    pub lost: Vec<PeerId>,
    /// This node's own stall before this check (not counted against peers), if any.
    pub stalled: Option<Duration>,
}

/// Liveness of the connected peers.
#[derive(Debug)]
pub struct Liveness {
    window: Duration,
    period: Duration,
    last_check: Option<Instant>,
    peers: HashMap<PeerId, Entry>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(LOST_AFTER, CHECK_EVERY)
    }
}

impl Liveness {
    /// Judges peers lost after `window` of silence, checked every `period`.
    pub fn new(window: Duration, period: Duration) -> Self {
        Liveness { window, period, last_check: None, peers: HashMap::new() }
    }

    /// A connection to `peer` was established (the first one starts its clock).
    pub fn connected(&mut self, peer: PeerId, now: Instant) {
        let e = self.peers.entry(peer).or_insert(Entry { last_heard: now, no_ping: false, reported: false });
        if e.reported {
            *e = Entry { last_heard: now, no_ping: e.no_ping, reported: false };
        }
    }

    /// `peer` answered a ping on one of its connections.
    pub fn pong(&mut self, peer: PeerId, now: Instant) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.last_heard = e.last_heard.max(now);
        }
    }

    /// `peer` does not speak ping.
    pub fn unsupported(&mut self, peer: PeerId) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.no_ping = true;
        }
    }

    /// The last connection to `peer` closed.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// Peers being tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// No peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Periodic check at `now`: shifts every clock by this node's own stall, then returns the
    /// peers silent for longer than the window (each reported once per connection).
    pub fn check(&mut self, now: Instant) -> Check {
        let mut out = Check::default();
        if let Some(prev) = self.last_check {
            let late = now.saturating_duration_since(prev).saturating_sub(self.period);
            if late > STALL_SLACK {
                out.stalled = Some(late);
                for e in self.peers.values_mut() {
                    // Never into the future: a clock at most reaches `now`.
                    e.last_heard = e.last_heard.checked_add(late).map_or(now, |t| t.min(now));
                }
            }
        }
        self.last_check = Some(now);
        for (peer, e) in self.peers.iter_mut() {
            if !e.no_ping && !e.reported && now.saturating_duration_since(e.last_heard) > self.window {
                e.reported = true;
                out.lost.push(*peer);
            }
        }
        out.lost.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(5);
    // (The tests use their own, shorter window.)
    const P: Duration = Duration::from_millis(250);

    fn peer() -> PeerId {
        PeerId::random()
    }

    /// Runs checks every `P` from `from` for `span`; returns every peer found lost.
    fn run(l: &mut Liveness, from: Instant, span: Duration) -> Vec<PeerId> {
        let mut lost = Vec::new();
        let mut t = from;
        while t <= from + span {
            lost.extend(l.check(t).lost);
            t += P;
        }
        lost
    }

    #[test]
    fn silent_peer_is_lost_after_the_window_once() {
        let mut l = Liveness::new(W, P);
        let t0 = Instant::now();
        let (a, b) = (peer(), peer());
        l.connected(a, t0);
        l.connected(b, t0);
        // b keeps answering, a goes silent.
        let mut t = t0;
        let mut lost = Vec::new();
        while t <= t0 + Duration::from_secs(8) {
            l.pong(b, t);
            let c = l.check(t);
            assert_eq!(c.stalled, None);
            if !c.lost.is_empty() {
                assert!(t > t0 + W && t <= t0 + W + P, "lost just after the window, at {:?}", t - t0);
            }
            lost.extend(c.lost);
            t += P;
        }
        assert_eq!(lost, vec![a], "only the silent peer, reported once");
    }

    #[test]
    fn own_stall_is_not_counted_against_peers() {
        let mut l = Liveness::new(W, P);
        let t0 = Instant::now();
        let a = peer();
        l.connected(a, t0);
        assert!(run(&mut l, t0, Duration::from_secs(1)).is_empty());
        // This node is starved for 8 s (longer than the window): its next check comes late.
        let woke = t0 + Duration::from_secs(9);
        let c = l.check(woke);
        assert!(c.lost.is_empty(), "a peer is not lost for this node's own stall");
        assert!(c.stalled.is_some_and(|s| s >= Duration::from_secs(7)), "stall reported: {:?}", c.stalled);
        // The queued pong is processed right after: the peer stays.
        l.pong(a, woke + Duration::from_millis(10));
        assert!(run(&mut l, woke + P, Duration::from_secs(4)).is_empty());
        // But a peer that stays silent after this node woke up is still lost, a window later.
        let lost = run(&mut l, woke + Duration::from_secs(4) + P, Duration::from_secs(3));
        assert_eq!(lost, vec![a]);
    }

    #[test]
    fn peers_without_ping_and_disconnected_peers_are_not_judged() {
        let mut l = Liveness::new(W, P);
        let t0 = Instant::now();
        let (a, b) = (peer(), peer());
        l.connected(a, t0);
        l.connected(b, t0);
        l.unsupported(a);
        l.disconnected(&b);
        assert!(run(&mut l, t0, Duration::from_secs(10)).is_empty());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_second_connection_does_not_reset_the_clock_and_a_reconnect_rearms() {
        let mut l = Liveness::new(W, P);
        let t0 = Instant::now();
        let a = peer();
        l.connected(a, t0);
        // A duplicate connection while silent does not count as an answer.
        l.connected(a, t0 + Duration::from_secs(3));
        assert_eq!(run(&mut l, t0, Duration::from_secs(6)), vec![a]);
        // The peer reconnects after being dropped: judged afresh.
        let t1 = t0 + Duration::from_secs(7);
        l.disconnected(&a);
        l.connected(a, t1);
        assert!(run(&mut l, t1, Duration::from_secs(4)).is_empty());
        assert_eq!(run(&mut l, t1 + Duration::from_secs(4) + P, Duration::from_secs(2)), vec![a]);
    }
}
