//! The archived CIDs a node provides on the DHTs: each once, oldest first, bounded.

use std::collections::{HashSet, VecDeque};

use libp2p::kad;

/// The DHT keys of the archived CIDs a node provides, in order, without duplicates.
#[derive(Debug, Default)]
pub(crate) struct ProvidedKeys {
    order: VecDeque<kad::RecordKey>,
    set: HashSet<kad::RecordKey>,
}

impl ProvidedKeys {
    /// Adds `key`; returns false when it was already there, and the oldest key to stop
    /// providing when the list was full.
    pub(crate) fn add(&mut self, key: kad::RecordKey, max: usize) -> (bool, Option<kad::RecordKey>) {
        if !self.set.insert(key.clone()) {
            return (false, None);
        }
        self.order.push_back(key);
        let evicted = if self.order.len() > max { self.order.pop_front() } else { None };
        if let Some(old) = &evicted {
            self.set.remove(old);
        }
        (true, evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provided_keys_are_unique_bounded_and_drop_the_oldest() {
        let key = |i: u32| kad::RecordKey::new(&i.to_be_bytes());
        let mut p = ProvidedKeys::default();
        assert_eq!(p.add(key(1), 2), (true, None));
        assert_eq!(p.add(key(1), 2), (false, None), "a key is provided once");
        assert_eq!(p.add(key(2), 2), (true, None));
        assert_eq!(p.add(key(3), 2), (true, Some(key(1))), "the oldest goes when full");
        assert_eq!(p.add(key(1), 2), (true, Some(key(2))), "a dropped key can come back");
        assert_eq!(p.order.len(), 2);
        assert_eq!(p.set.len(), 2);
    }
}
