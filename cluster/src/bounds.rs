//! Bounded control state of the cluster (pure, no I/O): the negative cache of names nobody in
//! the mesh has, and the decision whether to look a stream up in the DHT at all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

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
