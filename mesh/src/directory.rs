//! What a node knows about streams and other nodes (sans-IO state, snapshotted by [`crate::Mesh::directory`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::gossip::{NodeLoad, StreamAnnouncement};

/// A known stream announcement.
#[derive(Debug, Clone)]
pub struct StreamEntry {
    /// The latest announcement.
    pub announcement: StreamAnnouncement,
    /// When it was last received.
    pub last_seen: Instant,
}

/// A known node (one that sent a load report).
#[derive(Debug, Clone)]
pub struct NodeEntry {
    /// The latest load report.
    pub load: NodeLoad,
    /// When it was last received.
    pub last_seen: Instant,
    /// Latest ping round-trip time.
    pub rtt: Option<Duration>,
    /// Whether a connection to the node is open.
    pub connected: bool,
}

/// Streams by name and nodes by peer id, plus rejection counters.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Stream announcements by stream name.
    pub streams: HashMap<String, StreamEntry>,
    /// Node load reports by peer.
    pub nodes: HashMap<PeerId, NodeEntry>,
    /// Ping round-trip times by peer (also for peers without a load report).
    pub rtts: HashMap<PeerId, Duration>,
    /// Gossip messages rejected by validation since start.
    pub rejected: u64,
    /// Stream announcements rejected because their origin was not their signer.
    pub rejected_forged: u64,
}

impl Directory {
    /// The announcement of a stream, if known.
    pub fn stream(&self, name: &str) -> Option<&StreamAnnouncement> {
        self.streams.get(name).map(|e| &e.announcement)
    }

    /// The load report of a node, if known.
    pub fn node(&self, peer: &PeerId) -> Option<&NodeLoad> {
        self.nodes.get(peer).map(|e| &e.load)
    }

    /// Latest RTT to a peer.
    pub fn rtt(&self, peer: &PeerId) -> Option<Duration> {
        self.nodes.get(peer).and_then(|e| e.rtt).or_else(|| self.rtts.get(peer).copied())
    }

    /// Records a (validated) stream announcement.
    pub fn insert_stream(&mut self, announcement: StreamAnnouncement, now: Instant) {
        self.streams.insert(
            announcement.stream.clone(),
            StreamEntry { announcement, last_seen: now },
        );
    }

    /// Records a (validated) load report of `peer`.
    pub fn insert_load(&mut self, peer: PeerId, load: NodeLoad, now: Instant, connected: bool) {
        let rtt = self.rtts.get(&peer).copied();
        self.nodes.insert(peer, NodeEntry { load, last_seen: now, rtt, connected });
    }

    /// Records a ping result.
    pub fn set_rtt(&mut self, peer: PeerId, rtt: Duration) {
        self.rtts.insert(peer, rtt);
        if let Some(e) = self.nodes.get_mut(&peer) {
            e.rtt = Some(rtt);
            e.connected = true;
        }
    }

    /// Marks a peer connected.
    pub fn set_connected(&mut self, peer: PeerId) {
        if let Some(e) = self.nodes.get_mut(&peer) {
            e.connected = true;
        }
    }

    /// Forgets a peer the mesh lost: its node entry and the streams it originates.
    pub fn remove_peer(&mut self, peer: &PeerId) {
        self.nodes.remove(peer);
        self.rtts.remove(peer);
        self.streams.retain(|_, e| e.announcement.origin != *peer);
    }

    /// Drops entries not refreshed within `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        self.streams.retain(|_, e| now.saturating_duration_since(e.last_seen) <= ttl);
        self.nodes.retain(|_, e| now.saturating_duration_since(e.last_seen) <= ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(origin: PeerId, stream: &str) -> StreamAnnouncement {
        StreamAnnouncement {
            origin,
            stream: stream.into(),
            codec: "VP8".into(),
            layers: vec![],
            http_url: String::new(),
        }
    }

    #[test]
    fn entries_expire_and_lost_peers_are_dropped() {
        let t0 = Instant::now();
        let a = PeerId::random();
        let b = PeerId::random();
        let mut d = Directory::default();
        d.insert_stream(ann(a, "s1"), t0);
        d.insert_stream(ann(b, "s2"), t0 + Duration::from_secs(2));
        d.insert_load(a, NodeLoad::default(), t0, true);
        d.set_rtt(a, Duration::from_millis(5));
        assert_eq!(d.rtt(&a), Some(Duration::from_millis(5)));
        d.expire(t0 + Duration::from_secs(3), Duration::from_millis(2500));
        assert!(d.stream("s1").is_none());
        assert!(d.node(&a).is_none());
        assert!(d.stream("s2").is_some());
        d.insert_load(b, NodeLoad::default(), t0, true);
        d.remove_peer(&b);
        assert!(d.stream("s2").is_none());
        assert!(d.node(&b).is_none());
    }
}
