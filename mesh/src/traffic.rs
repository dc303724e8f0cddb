//! Gossip traffic by topic and direction, read from the gossipsub behaviour's own counters (its
//! prometheus-client registry) and summed over each family of per-stream topics, so the
//! node's metrics keep a bounded set of labels however many streams the mesh carries.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::gossip::{LOAD_TOPIC, PRESENCE_TOPIC_PREFIX, SEGMENTS_TOPIC_PREFIX, STREAMS_TOPIC, WITHDRAWALS_TOPIC};

/// Topics whose traffic gossipsub counts (past it, new topics go uncounted).
pub const MAX_TOPICS_COUNTED: usize = 4096;

/// A direction of gossip traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Message copies sent to peers: this node's own messages and those it forwards.
    Sent,
    /// Message copies received from peers, duplicates included.
    Received,
}

impl Direction {
    /// The label value (`sent`, `received`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// Messages and bytes of one topic (family) in one direction since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Message copies.
    pub messages: u64,
    /// Bytes of those copies (their protobuf encoding: payload, signature, topic, sequence).
    pub bytes: u64,
}

/// Gossip traffic since start by (topic label, direction); see [`topic_label`].
pub type GossipTraffic = BTreeMap<(String, Direction), Counts>;

/// The metric label of a topic: the topic itself for the mesh-wide ones, the family
/// (`relaycast/segments/*/1`, `relaycast/presence/*/1`) for per-stream ones, `other` otherwise.
pub fn topic_label(topic: &str) -> String {
    if [STREAMS_TOPIC, LOAD_TOPIC, WITHDRAWALS_TOPIC].contains(&topic) {
        topic.to_string()
    } else if topic.starts_with(SEGMENTS_TOPIC_PREFIX) {
        format!("{SEGMENTS_TOPIC_PREFIX}*/1")
    } else if topic.starts_with(PRESENCE_TOPIC_PREFIX) {
        format!("{PRESENCE_TOPIC_PREFIX}*/1")
    } else {
        "other".to_string()
    }
}

/// The gossipsub counters read: (metric name, direction, whether it counts bytes).
const COUNTERS: [(&str, Direction, bool); 4] = [
    ("topic_msg_sent_counts_total", Direction::Sent, false),
    ("topic_msg_sent_bytes_total", Direction::Sent, true),
    (
        "topic_msg_recv_counts_unfiltered_total",
        Direction::Received,
        false,
    ),
    (
        "topic_msg_recv_bytes_unfiltered_total",
        Direction::Received,
        true,
    ),
];

/// Sums the per-topic gossipsub counters found in `text` (the OpenMetrics encoding of the
/// behaviour's registry) by [`topic_label`] and direction. Lines that do not parse are skipped.
pub fn parse(text: &str) -> GossipTraffic {
    let mut out = GossipTraffic::new();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some(&(_, dir, bytes)) = COUNTERS.iter().find(|(n, _, _)| *n == name) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let topic = labels.split(',').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            matches!(k, "hash" | "topic_hash").then(|| v.trim_matches('"'))
        });
        let Some(topic) = topic else { continue };
        let c = out.entry((topic_label(topic), dir)).or_default();
        if bytes {
            c.bytes += value;
        } else {
            c.messages += value;
        }
    }
    out
}

/// Reads the gossip traffic counters of a registry the gossipsub behaviour counts into.
pub(crate) fn read(registry: &Arc<prometheus_client::registry::Registry>) -> GossipTraffic {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::debug!("encoding the gossipsub counters: {e}");
        return GossipTraffic::new();
    }
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_stream_topics_are_summed_by_family_and_directions_kept_apart() {
        let text = "# TYPE topic_msg_sent_bytes counter\n\
            topic_msg_sent_bytes_total{partial=\"false\",topic_hash=\"relaycast/load/1\"} 1000\n\
            topic_msg_sent_counts_total{hash=\"relaycast/load/1\"} 4\n\
            topic_msg_recv_bytes_unfiltered_total{hash=\"relaycast/load/1\"} 3000\n\
            topic_msg_recv_counts_unfiltered_total{hash=\"relaycast/load/1\"} 12\n\
            topic_msg_recv_bytes_total{hash=\"relaycast/load/1\"} 999999\n\
            topic_msg_sent_bytes_total{partial=\"false\",topic_hash=\"relaycast/segments/a/1\"} 10\n\
            topic_msg_sent_bytes_total{partial=\"false\",topic_hash=\"relaycast/segments/b/1\"} 20\n\
            topic_msg_sent_bytes_total{partial=\"false\",topic_hash=\"junk\"} 5\n\
            topic_msg_sent_bytes_total{partial=\"false\",topic_hash=\"relaycast/load/1\"} notanumber\n\
            # EOF\n";
        let t = parse(text);
        let get = |topic: &str, d| t.get(&(topic.to_string(), d)).copied().unwrap_or_default();
        assert_eq!(
            get("relaycast/load/1", Direction::Sent),
            Counts {
                messages: 4,
                bytes: 1000
            }
        );
        assert_eq!(
            get("relaycast/load/1", Direction::Received),
            Counts {
                messages: 12,
                bytes: 3000
            },
            "duplicates included, filtered counter ignored"
        );
        assert_eq!(get("relaycast/segments/*/1", Direction::Sent).bytes, 30);
        assert_eq!(get("other", Direction::Sent).bytes, 5);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn the_registry_of_a_gossipsub_behaviour_parses() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut registry = prometheus_client::registry::Registry::default();
        let mut gs: libp2p::gossipsub::Behaviour = libp2p::gossipsub::Behaviour::new(
            libp2p::gossipsub::MessageAuthenticity::Signed(key),
            libp2p::gossipsub::Config::default(),
        )
        .expect("gossipsub")
        .with_metrics(&mut registry, libp2p_gossipsub::MetricsConfig::default());
        gs.subscribe(&libp2p::gossipsub::IdentTopic::new(LOAD_TOPIC))
            .expect("subscribe");
        let registry = Arc::new(registry);
        // Nothing sent yet: no counts, and the encoding is read without error.
        assert!(read(&registry).values().all(|c| *c == Counts::default()));
    }
}
