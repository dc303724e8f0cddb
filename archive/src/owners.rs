//! Which stream each archived file belongs to, so that access to content by CID can be checked
//! against the grants for its stream (the gateway under `--watch-auth`).
//!
//! Holds one entry per file of every recording the node stores (init and media segments, VOD
//! roots): a CID string and a shared stream name, about 100 bytes per segment.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// CID → stream of the recordings a node holds.
#[derive(Debug, Default)]
pub struct Owners {
    by_cid: RwLock<HashMap<Box<str>, Arc<str>>>,
}

impl Owners {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the file `cid` belongs to a recording of `stream` (the first owner stays when
    /// two streams hold byte-identical files).
    pub fn insert<'a>(&self, stream: &str, cids: impl IntoIterator<Item = &'a str>) {
        let mut map = self.by_cid.write().unwrap_or_else(|e| e.into_inner());
        let mut name: Option<Arc<str>> = None;
        for cid in cids {
            if !map.contains_key(cid) {
                let name = name.get_or_insert_with(|| stream.into()).clone();
                map.insert(cid.into(), name);
            }
        }
    }

    /// The stream whose recording holds the file `cid`.
    pub fn stream_of(&self, cid: &str) -> Option<Arc<str>> {
        self.by_cid.read().unwrap_or_else(|e| e.into_inner()).get(cid).cloned()
    }

    /// Files indexed.
    pub fn len(&self) -> usize {
        self.by_cid.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no file is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_map_to_their_stream_and_the_first_owner_stays() {
        let o = Owners::new();
        assert!(o.is_empty());
        o.insert("talk-1", ["bafyinit", "bafyseg0"]);
        o.insert("talk-2", ["bafyseg9", "bafyinit"]);
        assert_eq!(o.stream_of("bafyseg0").as_deref(), Some("talk-1"));
        assert_eq!(o.stream_of("bafyseg9").as_deref(), Some("talk-2"));
        assert_eq!(o.stream_of("bafyinit").as_deref(), Some("talk-1"), "first owner kept");
        assert_eq!(o.stream_of("bafyother"), None);
        assert_eq!(o.len(), 3);
    }
}
