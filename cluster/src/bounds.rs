//! Bounded control state of the cluster (pure, no I/O): the negative cache of names nobody in
//! the mesh has, the decision whether to look a stream up in the DHT at all, and the peers lost
//! moments ago.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use relaycast_mesh::PeerId;

/// Most names remembered as absent from the mesh.
pub const MAX_NEGATIVE: usize = 4096;
/// How long a name stays remembered as absent.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
/// Most DHT lookups for streams in flight at once.
pub const MAX_LOOKUPS: usize = 4;
/// After this long with mesh peers, every live stream's origin claim has reached this node by
/// gossip (claims are re-announced every second and expire after three), so a name missing
/// from the directory is answered at once, without a DHT lookup.
pub const SETTLED_AFTER: Duration = Duration::from_secs(6);

/// Names recently found absent from the mesh, with a bound on their number.
#[derive(Debug, Default)]
pub struct NegativeCache {
    until: HashMap<String, Instant>,
}

impl NegativeCache {
    /// Remembers `stream` as absent until `now + NEGATIVE_TTL`; when full, drops expired names
    /// and, if still full, forgets the entry closest to expiry.
    pub fn insert(&mut self, stream: &str, now: Instant) {
        if self.until.len() >= MAX_NEGATIVE && !self.until.contains_key(stream) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= MAX_NEGATIVE
                && let Some(k) = self.until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone())
            {
                self.until.remove(&k);
            }
        }
        self.until.insert(stream.to_string(), now + NEGATIVE_TTL);
    }

    /// Whether `stream` was found absent within the TTL.
    pub fn contains(&self, stream: &str, now: Instant) -> bool {
        self.until.get(stream).is_some_and(|t| *t > now)
    }

    /// Names held.
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether no name is held.
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// Most peers remembered as lost.
pub const MAX_LOST: usize = 1024;
/// How long a lost peer is remembered: a path that still names it predates its loss (paths
/// are pushed down the tree as they change, and again every second).
pub const LOST_FOR: Duration = Duration::from_secs(5);

/// Peers this node lost moments ago (until [`LOST_FOR`] has passed or they are seen again),
/// with a bound on their number. A relay path that names one is stale: it was set before that
/// node's subtree lost it and is about to change.
#[derive(Debug, Default)]
pub struct RecentlyLost {
    at: HashMap<PeerId, Instant>,
}

impl RecentlyLost {
    /// Remembers `peer` as lost at `now`; when full, drops expired peers and, if still full,
    /// forgets the oldest loss.
    pub fn insert(&mut self, peer: PeerId, now: Instant) {
        if self.at.len() >= MAX_LOST && !self.at.contains_key(&peer) {
            self.at.retain(|_, t| now.saturating_duration_since(*t) < LOST_FOR);
            if self.at.len() >= MAX_LOST
                && let Some(k) = self.at.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                self.at.remove(&k);
            }
        }
        self.at.insert(peer, now);
    }

    /// Forgets `peer` (it was seen again).
    pub fn remove(&mut self, peer: &PeerId) {
        self.at.remove(peer);
    }

    /// Whether `peer` was lost within [`LOST_FOR`] of `now`.
    pub fn contains(&self, peer: &PeerId, now: Instant) -> bool {
        self.at.get(peer).is_some_and(|t| now.saturating_duration_since(*t) < LOST_FOR)
    }

    /// Whether `path` names a peer lost within [`LOST_FOR`] of `now`.
    pub fn any_in(&self, path: &[PeerId], now: Instant) -> bool {
        !self.at.is_empty() && path.iter().any(|p| self.contains(p, now))
    }

    /// Peers held.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Whether no peer is held.
    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

/// How to answer a request for a stream this node does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The directory knows its origin: attach to the tree.
    Attach,
    /// Not found, answered at once, for this reason.
    NotFound(Absent),
    /// Look it up in the DHT (bounded by [`MAX_LOOKUPS`] and the negative cache).
    Lookup,
}

/// Why a stream is answered as absent without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// The node knows no other node.
    Alone,
    /// The node has been in the mesh long enough that its directory is complete.
    NotInDirectory,
    /// The name was looked up and found absent moments ago.
    NegativeCache,
    /// [`MAX_LOOKUPS`] lookups are already in flight.
    TooManyLookups,
}

/// Decides how to find a stream: from the directory when it knows it or is complete, else a
/// DHT lookup unless one for this name just failed or too many are in flight.
pub fn plan(known: bool, alone: bool, meshed_for: Option<Duration>, negative: bool, lookups: usize) -> Plan {
    if known {
        return Plan::Attach;
    }
    if alone {
        return Plan::NotFound(Absent::Alone);
    }
    if meshed_for.is_some_and(|d| d >= SETTLED_AFTER) {
        return Plan::NotFound(Absent::NotInDirectory);
    }
    if negative {
        return Plan::NotFound(Absent::NegativeCache);
    }
    if lookups >= MAX_LOOKUPS {
        return Plan::NotFound(Absent::TooManyLookups);
    }
    Plan::Lookup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_cache_expires_and_is_bounded() {
        let t0 = Instant::now();
        let mut n = NegativeCache::default();
        n.insert("x", t0);
        assert!(n.contains("x", t0 + Duration::from_millis(100)));
        assert!(!n.contains("x", t0 + NEGATIVE_TTL));
        for i in 0..(MAX_NEGATIVE + 100) {
            n.insert(&format!("n{i}"), t0 + Duration::from_micros(i as u64));
        }
        assert!(n.len() <= MAX_NEGATIVE);
        assert!(n.contains(&format!("n{}", MAX_NEGATIVE + 99), t0 + Duration::from_millis(500)));
    }

    #[test]
    fn lost_peers_expire_are_forgotten_when_seen_and_are_bounded() {
        let t0 = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut l = RecentlyLost::default();
        l.insert(a, t0);
        assert!(l.contains(&a, t0 + Duration::from_secs(1)));
        assert!(l.any_in(&[b, a], t0));
        assert!(!l.any_in(&[b], t0));
        assert!(!l.contains(&a, t0 + LOST_FOR));
        l.insert(b, t0);
        l.remove(&b);
        assert!(!l.contains(&b, t0));
        let peers: Vec<PeerId> = (0..MAX_LOST + 10).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            l.insert(*p, t0 + Duration::from_micros(i as u64));
        }
        assert!(l.len() <= MAX_LOST);
        assert!(l.contains(&peers[MAX_LOST + 9], t0 + Duration::from_millis(1)));
    }

    #[test]
    fn unknown_names_are_answered_without_lookups_once_settled() {
        let settled = Some(SETTLED_AFTER);
        assert_eq!(plan(true, false, settled, true, MAX_LOOKUPS), Plan::Attach);
        assert_eq!(plan(false, true, None, false, 0), Plan::NotFound(Absent::Alone));
        assert_eq!(plan(false, false, settled, false, 0), Plan::NotFound(Absent::NotInDirectory));
        assert_eq!(plan(false, false, Some(Duration::from_secs(1)), false, 0), Plan::Lookup);
        assert_eq!(plan(false, false, None, true, 0), Plan::NotFound(Absent::NegativeCache));
        assert_eq!(plan(false, false, None, false, MAX_LOOKUPS), Plan::NotFound(Absent::TooManyLookups));
    }
}
