//! A target number of connections per node (sans-IO): whether to dial a peer, and which
//! connections to close when a node holds more than its target (e.g. the bootstrap node, which
//! every new node dials first).
//!
//! A node dials the peers it merely hears of (mDNS, Kademlia routing updates), its bootstrap
//! peers and recently lost peers only while it has fewer than half its target of connections;
//! it always dials the peers it needs (a stream's provider, a relay request's target, a lost
//! relay tree neighbour). It accepts connections up to its target and, over it, closes the
//! excess, keeping protected peers (relay tree neighbours, peers of recent relay requests, young
//! connections) and a uniform random sample of the others. The gap between the two thresholds
//! keeps connections from churning: a node that was let go has at least half its target
//! elsewhere and does not dial straight back (with both at the target, nodes under it dialled
//! the nodes at it, which closed the new connections, and so on). A node under half its target
//! would still dial back a peer that lets it go (a hub over its own target): a connection that
//! closes within [`SHORT_CONNECTION`] puts the peer on a backoff, doubling from
//! [`REDIAL_BACKOFF_MIN`] to [`REDIAL_BACKOFF_MAX`], during which it is dialled only when needed
//! or when the node has no connection at all ([`next_backoff`], [`backed_off`]).

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;

/// Default target number of connections per node (`--max-peers`).
pub const DEFAULT_MAX_PEERS: usize = 24;
/// A connection younger than this is not closed for being over the target (it may be the one a
/// relay request is about to use, and identify/Kademlia need a moment on it).
pub const TRIM_GRACE: Duration = Duration::from_secs(10);

/// A connection that closes sooner than this after it was established puts its peer on a
/// redial backoff (it was let go, or its path drops it).
pub const SHORT_CONNECTION: Duration = Duration::from_secs(30);
/// The first redial backoff after a short connection.
pub const REDIAL_BACKOFF_MIN: Duration = Duration::from_secs(20);
/// The longest redial backoff (short connections one after another double it up to this).
pub const REDIAL_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The redial backoff of a peer whose connection closed after `lasted`, its backoff having been
/// `prev`: none after a connection that lasted [`SHORT_CONNECTION`], else `prev` doubled within
/// [`REDIAL_BACKOFF_MIN`]..=[`REDIAL_BACKOFF_MAX`].
pub fn next_backoff(prev: Duration, lasted: Duration) -> Duration {
    if lasted >= SHORT_CONNECTION {
        return Duration::ZERO;
    }
    prev.saturating_mul(2).clamp(REDIAL_BACKOFF_MIN, REDIAL_BACKOFF_MAX)
}

/// Whether a dial for `reason` waits for a backoff that lasts `until`, at `now`, with `connected`
/// connections: a needed peer is dialled whatever its backoff, and so is every peer of a node
/// with no connection at all.
pub fn backed_off(reason: DialReason, connected: usize, until: Option<Instant>, now: Instant) -> bool {
    reason != DialReason::Needed && connected > 0 && until.is_some_and(|u| now < u)
}

/// Why a peer would be dialled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialReason {
    /// A configured bootstrap peer.
    Bootstrap,
    /// A peer the node needs: a stream's provider, the target of a relay request, a lost relay
    /// tree neighbour, an address the node was told to dial.
    Needed,
    /// A peer the node merely heard of (mDNS, a Kademlia routing update).
    Heard,
    /// A peer lost recently (redialled in case the loss was a missed ping).
    Redial,
}

/// Whether to dial a peer for `reason` while `connected` peers are connected, with a target of
/// `max` connections (0: no target): needed peers always, the others under half the target (at
/// least an isolated node).
pub fn should_dial(reason: DialReason, connected: usize, max: usize) -> bool {
    max == 0 || reason == DialReason::Needed || connected < max.div_ceil(2)
}

/// The connected peers to close so that at most `max` stay (0: no target): never one in
/// `protected`; the others kept are a uniform random sample drawn with `rng`. When the
/// protected peers alone exceed `max`, all unprotected ones are closed.
pub fn excess<T: Clone + Eq + Hash, R: rand::Rng + ?Sized>(
    connected: &[T],
    protected: &HashSet<T>,
    max: usize,
    rng: &mut R,
) -> Vec<T> {
    if max == 0 || connected.len() <= max {
        return Vec::new();
    }
    let kept_protected = connected.iter().filter(|p| protected.contains(p)).count();
    let mut free: Vec<T> = connected
        .iter()
        .filter(|p| !protected.contains(p))
        .cloned()
        .collect();
    let room = max.saturating_sub(kept_protected);
    if free.len() <= room {
        return Vec::new();
    }
    free.shuffle(rng);
    free.split_off(room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn a_peer_whose_connections_close_early_waits_longer_each_time_and_a_long_one_clears_it() {
        let s = Duration::from_secs;
        let b = next_backoff(Duration::ZERO, s(11));
        assert_eq!(b, REDIAL_BACKOFF_MIN);
        let b = next_backoff(b, s(11));
        assert_eq!(b, s(40));
        let mut b = b;
        for _ in 0..10 {
            b = next_backoff(b, s(11));
        }
        assert_eq!(b, REDIAL_BACKOFF_MAX, "bounded");
        assert_eq!(next_backoff(b, SHORT_CONNECTION), Duration::ZERO, "a connection that lasted clears it");
    }

    #[test]
    fn a_backoff_holds_back_all_but_needed_dials_unless_the_node_is_alone() {
        let now = Instant::now();
        let until = Some(now + Duration::from_secs(20));
        for reason in [DialReason::Bootstrap, DialReason::Heard, DialReason::Redial] {
            assert!(backed_off(reason, 3, until, now));
            assert!(!backed_off(reason, 0, until, now), "an isolated node dials anyone");
            assert!(!backed_off(reason, 3, until, now + Duration::from_secs(20)), "over");
            assert!(!backed_off(reason, 3, None, now));
        }
        assert!(!backed_off(DialReason::Needed, 3, until, now));
    }

    #[test]
    fn heard_of_bootstrap_and_lost_peers_are_dialled_only_under_half_the_target() {
        for reason in [DialReason::Heard, DialReason::Bootstrap, DialReason::Redial] {
            assert!(should_dial(reason, 0, 24), "an isolated node");
            assert!(should_dial(reason, 11, 24));
            assert!(
                !should_dial(reason, 12, 24),
                "a node the bootstrap node let go: {reason:?}"
            );
            assert!(
                should_dial(reason, 9, 24),
                "a ten-node mesh dials as before"
            );
            assert!(should_dial(reason, 1000, 0), "0: no target");
        }
        assert!(
            should_dial(DialReason::Bootstrap, 0, 1),
            "an isolated node always"
        );
        assert!(!should_dial(DialReason::Heard, 1, 1));
    }

    #[test]
    fn needed_peers_are_always_dialled() {
        assert!(
            should_dial(DialReason::Needed, 500, 24),
            "a relay request reaches any peer"
        );
    }

    #[test]
    fn a_node_over_its_target_closes_the_excess_but_never_a_protected_peer() {
        let peers: Vec<u32> = (0..100).collect();
        let protected: HashSet<u32> = [3, 50, 99].into_iter().collect();
        let mut rng = StdRng::seed_from_u64(7);
        let closed = excess(&peers, &protected, 24, &mut rng);
        assert_eq!(closed.len(), 76, "100 connections down to 24");
        assert!(closed.iter().all(|p| !protected.contains(p)));
        let unique: HashSet<u32> = closed.iter().copied().collect();
        assert_eq!(unique.len(), closed.len(), "each closed once");
        assert!(
            excess(&peers[..24], &protected, 24, &mut rng).is_empty(),
            "at the target"
        );
        assert!(
            excess(&peers, &protected, 0, &mut rng).is_empty(),
            "no target"
        );
    }

    #[test]
    fn protected_peers_over_the_target_stay_and_the_others_go() {
        let peers: Vec<u32> = (0..10).collect();
        let protected: HashSet<u32> = (0..8).collect();
        let closed = excess(&peers, &protected, 4, &mut StdRng::seed_from_u64(1));
        assert_eq!(closed.len(), 2);
        assert!(closed.contains(&8) && closed.contains(&9));
    }

    #[test]
    fn the_kept_sample_is_random_not_the_first_connected() {
        let peers: Vec<u32> = (0..50).collect();
        let none = HashSet::new();
        let mut kept_counts = [0u32; 50];
        let mut rng = StdRng::seed_from_u64(42);
        for _ in 0..400 {
            let closed: HashSet<u32> = excess(&peers, &none, 10, &mut rng).into_iter().collect();
            for p in peers.iter().filter(|p| !closed.contains(p)) {
                kept_counts[*p as usize] += 1;
            }
        }
        // Each peer is kept with probability 1/5: about 80 times in 400 draws.
        assert!(
            kept_counts.iter().all(|&c| (40..=130).contains(&c)),
            "{kept_counts:?}"
        );
    }
}
