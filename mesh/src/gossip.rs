//! Gossip payloads (JSON) on the stream and load topics, and their validation.

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

/// Topic carrying [`StreamAnnouncement`]s.
pub const STREAMS_TOPIC: &str = "relaycast/streams/1";
/// Topic carrying [`NodeLoad`]s, one hop only: a node publishes its load to every connected
/// subscriber (gossipsub's flood publishing), and a receiver records it and reports it ignored,
/// so it is not passed on. Each node hears the load of its connected peers, however large the mesh.
pub const LOAD_TOPIC: &str = "relaycast/load/1";
/// Topic carrying [`StreamWithdrawal`]s.
pub const WITHDRAWALS_TOPIC: &str = "relaycast/withdrawals/1";

/// Prefix of the per-stream topics carrying [`StreamPresence`]s: each node that carries a
/// stream publishes its presence there every announce interval, with its node-wide figures
/// ([`CarrierSummary`]), for the nodes that carry or want the stream (the load topic carries a
/// node's load to its connected peers only, every [`SUMMARY_EVERY`] intervals).
pub const PRESENCE_TOPIC_PREFIX: &str = "relaycast/presence/";

/// The load topic carries a node's load once every this many announce intervals.
pub const SUMMARY_EVERY: u32 = 5;

/// The topic carrying the presences of the nodes that carry `stream`.
pub fn presence_topic(stream: &str) -> String {
    format!("{PRESENCE_TOPIC_PREFIX}{stream}/1")
}

/// Prefix of the per-stream topics carrying [`SegmentAnnouncement`]s.
pub const SEGMENTS_TOPIC_PREFIX: &str = "relaycast/segments/";

/// The topic carrying the archived segments of `stream`.
pub fn segments_topic(stream: &str) -> String {
    format!("{SEGMENTS_TOPIC_PREFIX}{stream}/1")
}

/// An archived segment of a stream, announced by the stream's origin once it is durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentAnnouncement {
    /// Stream name.
    pub stream: String,
    /// Media sequence number.
    pub seq: u64,
    /// CID of the segment file.
    pub cid: String,
    /// CID of the init segment it needs.
    pub init: String,
    /// RFC 6381 codecs of the recording.
    pub codecs: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Wall-clock start, milliseconds since the Unix epoch (0 when the origin did not say).
    #[serde(default)]
    pub start_unix_ms: u64,
    /// The origin's signature of the other fields ([`segment_signing_bytes`]) with its identity
    /// key, hex; lets the announcement be passed on by any node (a holder, an archive API) and
    /// still be checked against the origin's peer id ([`verify_segment`]). Empty when unsigned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

/// The bytes an origin signs for a segment announcement (every field but `sig`).
pub fn segment_signing_bytes(seg: &SegmentAnnouncement) -> Vec<u8> {
    format!(
        "relaycast-segment/1\n{}\n{}\n{}\n{}\n{}\n{:016x}\n{}",
        seg.stream,
        seg.seq,
        seg.cid,
        seg.init,
        seg.codecs,
        seg.duration.to_bits(),
        seg.start_unix_ms
    )
    .into_bytes()
}

/// Whether `seg.sig` is `origin`'s signature of `seg` (the peer id must inline its public key,
/// as Ed25519 peer ids do).
pub fn verify_segment(seg: &SegmentAnnouncement, origin: &PeerId) -> bool {
    let mh: &libp2p::multihash::Multihash<64> = origin.as_ref();
    if mh.code() != 0 {
        return false;
    }
    let Ok(key) = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()) else { return false };
    let Some(sig) = unhex(&seg.sig) else { return false };
    key.verify(&segment_signing_bytes(seg), &sig)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The bytes of a hex string (`None` when it is not hex or longer than 512 characters).
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 512 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// A node other than the origin holds every block of an archived segment (and of its init
/// segment), announced on the stream's segment topic and signed by the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentHeld {
    /// Stream name.
    pub stream: String,
    /// Media sequence number.
    pub seq: u64,
    /// CID of the segment file.
    pub cid: String,
}

/// The two payloads of a segment topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum SegmentsPayload {
    /// `{"held": {...}}`.
    Held {
        /// The held segment.
        held: SegmentHeld,
    },
    /// A segment announcement of the origin.
    Segment(SegmentAnnouncement),
}

/// Encodes a [`SegmentHeld`] for its segment topic.
pub fn encode_held(held: &SegmentHeld) -> Vec<u8> {
    encode(&SegmentsPayload::Held { held: held.clone() })
}

/// Longest accepted stream name, codec, layer name or URL.
pub const MAX_STRING: usize = 1024;
/// Most layers or stream presences accepted in one payload.
pub const MAX_ITEMS: usize = 1024;
/// Most media addresses a node may announce.
pub const MAX_MEDIA_ADDRS: usize = 16;

/// A stream originated by `origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamAnnouncement {
    /// Node the streamer publishes to.
    pub origin: PeerId,
    /// Stream name.
    pub stream: String,
    /// Video codec (e.g. "VP8").
    pub codec: String,
    /// Simulcast layers (rids) the origin receives.
    pub layers: Vec<String>,
    /// The origin's public HTTP base URL.
    pub http_url: String,
    /// When the origin started the stream (Unix milliseconds, signed with the message); settles
    /// two claims on one name made at once (earlier wins, then the lower peer id).
    #[serde(default)]
    pub started_ms: u64,
}

/// An origin's withdrawal of its claim on a stream (its publish ended): the name is free at once
/// at every node, instead of when the claim goes stale. Signed like every message; only the
/// claim's own origin can withdraw it, and only the claim with this start time (an old
/// withdrawal replayed later cannot free a newer publish of the name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamWithdrawal {
    /// The origin withdrawing its claim (must be the message's signer).
    pub origin: PeerId,
    /// Stream name.
    pub stream: String,
    /// The signed start time of the claim being withdrawn.
    pub started_ms: u64,
}

/// A node's load and the streams it carries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeLoad {
    /// The node's public HTTP base URL.
    pub http_url: String,
    /// Region tag.
    pub region: Option<String>,
    /// Viewers connected to the node.
    pub viewers: u32,
    /// Egress in bits per second.
    pub egress_bps: u64,
    /// Viewer capacity.
    pub capacity: u32,
    /// Downstream nodes this node relays to.
    pub relay_children: u32,
    /// Most downstream nodes this node accepts.
    pub max_relay_children: u32,
    /// Streams the node carries.
    pub streams: Vec<StreamPresence>,
    /// The node's media (WebRTC) addresses: other nodes' TURN servers relay to them (receivers
    /// keep only those on an IP the node is seen at).
    #[serde(default)]
    pub media_addrs: Vec<std::net::SocketAddr>,
}

/// One stream carried by a node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamPresence {
    /// Stream name.
    pub stream: String,
    /// Hops from the origin (0 = origin).
    pub depth: u32,
    /// The node this one pulls the stream from (None at the origin).
    pub upstream: Option<PeerId>,
    /// Viewers of this stream on the node.
    pub viewers: u32,
    /// Downstream nodes fed with this stream.
    pub relay_children: u32,
    /// Ingress for this stream in bits per second.
    pub ingress_bps: u64,
    /// The node's ancestor path for the stream, origin first, its upstream last (empty at the
    /// origin, and from nodes that predate the field); at most
    /// [`crate::relay_protocol::MAX_PATH`] entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<PeerId>,
    /// A second upstream the node keeps connected, ready to take over at once (absent when it
    /// has none, and from nodes that predate the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<PeerId>,
    /// The video layers (rids) arriving at the node: fewer than the origin's when an edge above
    /// sheds layers it cannot carry (absent from nodes that predate the field); at most
    /// [`MAX_LAYERS_REPORTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The carrier's node-wide figures, added by the carrier to the presences it publishes on
    /// the presence topics every [`SUMMARY_EVERY`] intervals and when a peer starts following the
    /// topic (absent otherwise, inside load reports, and from nodes that predate the field): load
    /// reports go one hop, so the nodes that follow a stream but are not connected to a carrier
    /// place viewers and relays on it from these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<CarrierSummary>,
}

/// A carrier's node-wide figures in its stream presences: the fields of its [`NodeLoad`] that
/// placement reads (same names and meaning).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CarrierSummary {
    /// The node's public HTTP base URL (vetted like a load report's by the receiver).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub http_url: String,
    /// Region tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Viewers connected to the node.
    #[serde(default)]
    pub viewers: u32,
    /// Viewer capacity.
    #[serde(default)]
    pub capacity: u32,
    /// Downstream nodes the node relays to, all streams together.
    #[serde(default)]
    pub relay_children: u32,
    /// Most downstream nodes the node accepts.
    #[serde(default)]
    pub max_relay_children: u32,
}

impl CarrierSummary {
    /// The summary of `load` (its `http_url` and `region` as given).
    pub fn of(load: &NodeLoad) -> Self {
        CarrierSummary {
            http_url: load.http_url.clone(),
            region: load.region.clone(),
            viewers: load.viewers,
            capacity: load.capacity,
            relay_children: load.relay_children,
            max_relay_children: load.max_relay_children,
        }
    }

    /// Sets these figures on `load` (its streams and media addresses untouched; an empty
    /// `http_url` leaves the load's).
    pub fn apply_to(&self, load: &mut NodeLoad) {
        if !self.http_url.is_empty() {
            load.http_url = self.http_url.clone();
        }
        load.region = self.region.clone();
        load.viewers = self.viewers;
        load.capacity = self.capacity;
        load.relay_children = self.relay_children;
        load.max_relay_children = self.max_relay_children;
    }
}

/// Most layers a stream presence names.
pub const MAX_LAYERS_REPORTED: usize = 8;

/// Why a gossip message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// The message carried no authenticated source.
    #[error("message has no authenticated source")]
    NoSource,
    /// The payload did not parse.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The announcement names an origin other than its signer.
    #[error("announcement origin {origin} differs from its source {source_peer}")]
    ForgedOrigin {
        /// Origin claimed in the payload.
        origin: String,
        /// Authenticated publisher.
        source_peer: String,
    },
    /// A field exceeds the accepted bounds.
    #[error("field out of bounds: {0}")]
    OutOfBounds(&'static str),
    /// The message arrived on a topic this node does not handle.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
}

/// A validated gossip message.
#[derive(Debug, Clone, PartialEq)]
pub enum GossipMessage {
    /// A stream announcement whose origin is its signer.
    Stream(StreamAnnouncement),
    /// A load report, attributed to its signer.
    Load(PeerId, NodeLoad),
    /// A withdrawal whose origin is its signer.
    Withdrawal(StreamWithdrawal),
    /// An archived segment, with its (authenticated) signer; the receiver checks that the signer
    /// is the stream's origin.
    Segment(PeerId, SegmentAnnouncement),
    /// A segment held by its (authenticated) signer; the receiver checks that the signer is a
    /// known mesh node.
    Held(PeerId, SegmentHeld),
    /// A stream's presence at its (authenticated) signer, from the stream's presence topic.
    Presence(PeerId, StreamPresence),
}

/// Validates a segment announcement received on `topic`: it names the topic's stream, and its
/// fields are in bounds.
pub fn validate_segment(topic: &str, data: &[u8], source: Option<PeerId>) -> Result<(PeerId, SegmentAnnouncement), GossipError> {
    match validate_segments_payload(topic, data, source)? {
        GossipMessage::Segment(p, s) => Ok((p, s)),
        _ => Err(GossipError::Malformed("not a segment announcement".into())),
    }
}

/// Validates a payload of a segment topic: a segment announcement or a [`SegmentHeld`], naming
/// the topic's stream, its fields in bounds.
fn validate_segments_payload(topic: &str, data: &[u8], source: Option<PeerId>) -> Result<GossipMessage, GossipError> {
    let source = source.ok_or(GossipError::NoSource)?;
    let payload: SegmentsPayload = serde_json::from_slice(data).map_err(|e| GossipError::Malformed(e.to_string()))?;
    let (stream, cid) = match &payload {
        SegmentsPayload::Held { held } => (&held.stream, &held.cid),
        SegmentsPayload::Segment(seg) => (&seg.stream, &seg.cid),
    };
    check_name(stream)?;
    if topic != segments_topic(stream) {
        return Err(GossipError::OutOfBounds("stream differs from the topic's"));
    }
    check_str(cid, "cid")?;
    match payload {
        SegmentsPayload::Held { held } => Ok(GossipMessage::Held(source, held)),
        SegmentsPayload::Segment(seg) => {
            for (s, what) in [(&seg.init, "init"), (&seg.codecs, "codecs"), (&seg.sig, "sig")] {
                check_str(s, what)?;
            }
            if !seg.duration.is_finite() || seg.duration < 0.0 {
                return Err(GossipError::OutOfBounds("duration"));
            }
            Ok(GossipMessage::Segment(source, seg))
        }
    }
}

/// Stream names entering from the mesh follow the HTTP rule ([`crate::trust::valid_stream_name`]).
fn check_name(s: &str) -> Result<(), GossipError> {
    if crate::trust::valid_stream_name(s) { Ok(()) } else { Err(GossipError::OutOfBounds("stream name")) }
}

fn check_str(s: &str, what: &'static str) -> Result<(), GossipError> {
    if s.len() > MAX_STRING {
        return Err(GossipError::OutOfBounds(what));
    }
    Ok(())
}

/// Validates a stream announcement against the message's authenticated source.
pub fn validate_stream_announcement(
    data: &[u8],
    source: Option<PeerId>,
) -> Result<StreamAnnouncement, GossipError> {
    let source = source.ok_or(GossipError::NoSource)?;
    let ann: StreamAnnouncement =
        serde_json::from_slice(data).map_err(|e| GossipError::Malformed(e.to_string()))?;
    if ann.origin != source {
        return Err(GossipError::ForgedOrigin { origin: ann.origin.to_string(), source_peer: source.to_string() });
    }
    check_name(&ann.stream)?;
    check_str(&ann.codec, "codec")?;
    check_str(&ann.http_url, "http_url")?;
    if ann.layers.len() > MAX_ITEMS {
        return Err(GossipError::OutOfBounds("layers"));
    }
    for l in &ann.layers {
        check_str(l, "layer")?;
    }
    Ok(ann)
}

/// Validates a stream withdrawal against the message's authenticated source.
pub fn validate_withdrawal(data: &[u8], source: Option<PeerId>) -> Result<StreamWithdrawal, GossipError> {
    let source = source.ok_or(GossipError::NoSource)?;
    let w: StreamWithdrawal = serde_json::from_slice(data).map_err(|e| GossipError::Malformed(e.to_string()))?;
    if w.origin != source {
        return Err(GossipError::ForgedOrigin { origin: w.origin.to_string(), source_peer: source.to_string() });
    }
    check_name(&w.stream)?;
    Ok(w)
}

/// Validates a load report; it is attributed to the authenticated source only.
pub fn validate_node_load(data: &[u8], source: Option<PeerId>) -> Result<(PeerId, NodeLoad), GossipError> {
    let source = source.ok_or(GossipError::NoSource)?;
    let load: NodeLoad =
        serde_json::from_slice(data).map_err(|e| GossipError::Malformed(e.to_string()))?;
    check_str(&load.http_url, "http_url")?;
    if let Some(r) = &load.region {
        check_str(r, "region")?;
    }
    if load.streams.len() > MAX_ITEMS {
        return Err(GossipError::OutOfBounds("streams"));
    }
    if load.media_addrs.len() > MAX_MEDIA_ADDRS {
        return Err(GossipError::OutOfBounds("media_addrs"));
    }
    for s in &load.streams {
        check_presence(s, &source)?;
    }
    Ok((source, load))
}

/// Checks one stream presence of `source`: a valid name, not its own upstream, bounded path and
/// layers.
fn check_presence(s: &StreamPresence, source: &PeerId) -> Result<(), GossipError> {
    check_name(&s.stream)?;
    if s.upstream == Some(*source) {
        return Err(GossipError::OutOfBounds("upstream is the node itself"));
    }
    if s.path.len() > crate::relay_protocol::MAX_PATH {
        return Err(GossipError::OutOfBounds("path"));
    }
    if s.layers.len() > MAX_LAYERS_REPORTED || s.layers.iter().any(|l| l.is_empty() || l.len() > 16) {
        return Err(GossipError::OutOfBounds("layers"));
    }
    if let Some(n) = &s.node {
        check_str(&n.http_url, "http_url")?;
        if let Some(r) = &n.region {
            check_str(r, "region")?;
        }
    }
    Ok(())
}

/// Validates a stream presence received on `topic`: it names the topic's stream and is in bounds;
/// it is attributed to the authenticated source only.
pub fn validate_presence(topic: &str, data: &[u8], source: Option<PeerId>) -> Result<(PeerId, StreamPresence), GossipError> {
    let source = source.ok_or(GossipError::NoSource)?;
    let p: StreamPresence = serde_json::from_slice(data).map_err(|e| GossipError::Malformed(e.to_string()))?;
    check_presence(&p, &source)?;
    if topic != presence_topic(&p.stream) {
        return Err(GossipError::OutOfBounds("stream differs from the topic's"));
    }
    Ok((source, p))
}

/// Validates a message received on `topic`.
pub fn validate(topic: &str, data: &[u8], source: Option<PeerId>) -> Result<GossipMessage, GossipError> {
    match topic {
        STREAMS_TOPIC => validate_stream_announcement(data, source).map(GossipMessage::Stream),
        LOAD_TOPIC => validate_node_load(data, source).map(|(p, l)| GossipMessage::Load(p, l)),
        WITHDRAWALS_TOPIC => validate_withdrawal(data, source).map(GossipMessage::Withdrawal),
        t if t.starts_with(SEGMENTS_TOPIC_PREFIX) => validate_segments_payload(t, data, source),
        t if t.starts_with(PRESENCE_TOPIC_PREFIX) => validate_presence(t, data, source).map(|(p, s)| GossipMessage::Presence(p, s)),
        other => Err(GossipError::UnknownTopic(other.to_string())),
    }
}

/// Encodes a payload for publishing.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(origin: PeerId) -> StreamAnnouncement {
        StreamAnnouncement {
            origin,
            stream: "cam".into(),
            codec: "VP8".into(),
            layers: vec!["q".into(), "h".into(), "f".into()],
            http_url: "http://a:8080".into(),
            started_ms: 1,
        }
    }

    #[test]
    fn invalid_stream_names_are_rejected_everywhere() {
        let a = PeerId::random();
        for bad in ["", ".", "..", "../etc", "a/b", "a b"] {
            let mut x = ann(a);
            x.stream = bad.into();
            assert!(validate(STREAMS_TOPIC, &encode(&x), Some(a)).is_err(), "announcement {bad:?}");
            let load = NodeLoad {
                streams: vec![StreamPresence { stream: bad.into(), ..Default::default() }],
                ..Default::default()
            };
            assert!(validate(LOAD_TOPIC, &encode(&load), Some(a)).is_err(), "presence {bad:?}");
            let seg = SegmentAnnouncement {
                stream: bad.into(),
                seq: 0,
                cid: String::new(),
                init: String::new(),
                codecs: String::new(),
                duration: 0.0,
                start_unix_ms: 0,
                sig: String::new(),
            };
            assert!(validate(&segments_topic(bad), &encode(&seg), Some(a)).is_err(), "segment {bad:?}");
        }
        // Announcements from older nodes without a signed time still parse (time 0).
        let old = br#"{"origin":"ORIGIN","stream":"cam","codec":"VP8","layers":[],"http_url":""}"#;
        let old = String::from_utf8_lossy(old).replace("ORIGIN", &a.to_string());
        let got = validate_stream_announcement(old.as_bytes(), Some(a)).expect("old format");
        assert_eq!(got.started_ms, 0);
    }

    #[test]
    fn a_presence_must_name_its_topics_stream_and_is_its_signers() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let p = StreamPresence { stream: "cam".into(), depth: 1, upstream: Some(b), ..Default::default() };
        let got = validate(&presence_topic("cam"), &encode(&p), Some(a)).expect("valid");
        assert_eq!(got, GossipMessage::Presence(a, p.clone()));
        assert!(validate(&presence_topic("other"), &encode(&p), Some(a)).is_err(), "another stream's topic");
        assert!(validate(&presence_topic("cam"), &encode(&p), Some(b)).is_err(), "its own upstream");
        assert!(validate(&presence_topic("cam"), &encode(&p), None).is_err(), "unsigned");
        assert!(validate(&presence_topic("cam"), b"{", Some(a)).is_err(), "malformed");
    }

    #[test]
    fn announcement_from_its_origin_is_accepted() {
        let a = PeerId::random();
        let got = validate(STREAMS_TOPIC, &encode(&ann(a)), Some(a)).expect("valid");
        assert_eq!(got, GossipMessage::Stream(ann(a)));
    }

    #[test]
    fn segment_signatures_check_against_the_origins_peer_id() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let origin = PeerId::from(key.public());
        let mut seg = SegmentAnnouncement {
            stream: "room".into(),
            seq: 7,
            cid: "bafkreiseg".into(),
            init: "bafkreiinit".into(),
            codecs: "avc1.42e01f,opus".into(),
            duration: 2.05,
            start_unix_ms: 1_700_000_000_000,
            sig: String::new(),
        };
        assert!(!verify_segment(&seg, &origin), "unsigned");
        seg.sig = hex(&key.sign(&segment_signing_bytes(&seg)).expect("sign"));
        assert!(verify_segment(&seg, &origin));
        // Through JSON (an archive API) and back.
        let back: SegmentAnnouncement = serde_json::from_slice(&encode(&seg)).expect("json");
        assert!(verify_segment(&back, &origin));
        assert!(!verify_segment(&seg, &PeerId::from(libp2p::identity::Keypair::generate_ed25519().public())), "another node");
        for changed in [
            SegmentAnnouncement { cid: "bafkreiother".into(), ..seg.clone() },
            SegmentAnnouncement { seq: 8, ..seg.clone() },
            SegmentAnnouncement { duration: 2.06, ..seg.clone() },
            SegmentAnnouncement { start_unix_ms: 1, ..seg.clone() },
            SegmentAnnouncement { sig: "zz".into(), ..seg.clone() },
        ] {
            assert!(!verify_segment(&changed, &origin), "{changed:?}");
        }
        assert!(!verify_segment(&seg, &PeerId::random()), "a peer id without an inlined key");
    }

    #[test]
    fn signatures_survive_json_for_every_duration_of_a_90_khz_clock() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let origin = PeerId::from(key.public());
        for n in (150_000u64..210_000).step_by(331) {
            let mut seg = SegmentAnnouncement {
                stream: "room".into(),
                seq: n,
                cid: "bafkreiseg".into(),
                init: "bafkreiinit".into(),
                codecs: "avc1.42e01f,opus".into(),
                duration: n as f64 / 90_000.0,
                start_unix_ms: 1_700_000_000_000 + n,
                sig: String::new(),
            };
            seg.sig = hex(&key.sign(&segment_signing_bytes(&seg)).expect("sign"));
            let back: SegmentAnnouncement = serde_json::from_slice(&encode(&seg)).expect("json");
            assert_eq!(back.duration.to_bits(), seg.duration.to_bits(), "{} parsed back exactly", seg.duration);
            assert!(verify_segment(&back, &origin));
        }
    }

    #[test]
    fn held_segments_are_told_apart_from_announcements() {
        let peer = PeerId::random();
        let held = SegmentHeld { stream: "room".into(), seq: 4, cid: "bafkreiseg".into() };
        let data = encode_held(&held);
        assert_eq!(validate(&segments_topic("room"), &data, Some(peer)), Ok(GossipMessage::Held(peer, held.clone())));
        assert!(validate(&segments_topic("other"), &data, Some(peer)).is_err(), "stream must match the topic");
        assert!(validate(&segments_topic("room"), &data, None).is_err(), "unsigned");
        let long = SegmentHeld { cid: "b".repeat(MAX_STRING + 1), ..held };
        assert!(validate(&segments_topic("room"), &encode_held(&long), Some(peer)).is_err(), "cid too long");
    }

    #[test]
    fn segment_announcements_name_their_topic_stream() {
        let peer = PeerId::random();
        let seg = SegmentAnnouncement {
            stream: "room".into(),
            seq: 3,
            cid: "bafkrei".into(),
            init: "bafkreiinit".into(),
            codecs: "avc1.42e01f,opus".into(),
            duration: 2.0,
            start_unix_ms: 1_700_000_000_000,
            sig: String::new(),
        };
        let data = encode(&seg);
        let topic = segments_topic("room");
        assert_eq!(validate(&topic, &data, Some(peer)), Ok(GossipMessage::Segment(peer, seg.clone())));
        assert!(validate(&segments_topic("other"), &data, Some(peer)).is_err(), "stream must match the topic");
        assert_eq!(validate(&topic, &data, None), Err(GossipError::NoSource));
        assert!(validate(&topic, b"{garbage", Some(peer)).is_err());
        let bad = SegmentAnnouncement { duration: -1.0, ..seg };
        assert!(validate(&topic, &encode(&bad), Some(peer)).is_err());
    }

    #[test]
    fn forged_origin_is_rejected() {
        let a = PeerId::random();
        let b = PeerId::random();
        let err = validate_stream_announcement(&encode(&ann(a)), Some(b)).unwrap_err();
        assert!(matches!(err, GossipError::ForgedOrigin { .. }));
        assert_eq!(validate_stream_announcement(&encode(&ann(a)), None).unwrap_err(), GossipError::NoSource);
    }

    #[test]
    fn malformed_and_oversized_payloads_are_rejected() {
        let a = PeerId::random();
        assert!(matches!(validate(STREAMS_TOPIC, b"{nope", Some(a)), Err(GossipError::Malformed(_))));
        assert!(matches!(validate(LOAD_TOPIC, b"\xff\x00", Some(a)), Err(GossipError::Malformed(_))));
        let mut big = ann(a);
        big.stream = "x".repeat(MAX_STRING + 1);
        assert!(matches!(validate(STREAMS_TOPIC, &encode(&big), Some(a)), Err(GossipError::OutOfBounds(_))));
        assert!(matches!(validate("other", b"{}", Some(a)), Err(GossipError::UnknownTopic(_))));
    }

    #[test]
    fn withdrawal_only_from_its_origin() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let w = StreamWithdrawal { origin: a, stream: "cam".into(), started_ms: 7 };
        assert_eq!(validate(WITHDRAWALS_TOPIC, &encode(&w), Some(a)), Ok(GossipMessage::Withdrawal(w.clone())));
        assert!(matches!(validate(WITHDRAWALS_TOPIC, &encode(&w), Some(b)), Err(GossipError::ForgedOrigin { .. })));
        assert_eq!(validate(WITHDRAWALS_TOPIC, &encode(&w), None), Err(GossipError::NoSource));
        let bad = StreamWithdrawal { stream: "..".into(), ..w };
        assert!(validate(WITHDRAWALS_TOPIC, &encode(&bad), Some(a)).is_err());
    }

    #[test]
    fn media_addresses_are_bounded_and_optional() {
        let a = PeerId::random();
        let addrs = |n: u16| (0..n).map(|p| std::net::SocketAddr::from(([198, 51, 100, 1], 5000 + p))).collect();
        let ok = NodeLoad { media_addrs: addrs(MAX_MEDIA_ADDRS as u16), ..Default::default() };
        assert!(validate(LOAD_TOPIC, &encode(&ok), Some(a)).is_ok());
        let big = NodeLoad { media_addrs: addrs(MAX_MEDIA_ADDRS as u16 + 1), ..Default::default() };
        assert_eq!(validate(LOAD_TOPIC, &encode(&big), Some(a)), Err(GossipError::OutOfBounds("media_addrs")));
        // Reports of older nodes, without the field, still parse.
        let old = br#"{"http_url":"","region":null,"viewers":0,"egress_bps":0,"capacity":1,"relay_children":0,"max_relay_children":0,"streams":[]}"#;
        assert!(validate(LOAD_TOPIC, old, Some(a)).is_ok());
    }

    #[test]
    fn ancestor_paths_are_bounded_and_optional() {
        let a = PeerId::random();
        let with = |n: usize| NodeLoad {
            streams: vec![StreamPresence {
                stream: "cam".into(),
                depth: n as u32,
                path: (0..n).map(|_| PeerId::random()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let ok = with(crate::relay_protocol::MAX_PATH);
        assert_eq!(validate(LOAD_TOPIC, &encode(&ok), Some(a)), Ok(GossipMessage::Load(a, ok)));
        let long = with(crate::relay_protocol::MAX_PATH + 1);
        assert_eq!(validate(LOAD_TOPIC, &encode(&long), Some(a)), Err(GossipError::OutOfBounds("path")));
        // Presences of older nodes, without the field, parse with an empty path.
        let old = br#"{"http_url":"","region":null,"viewers":0,"egress_bps":0,"capacity":1,"relay_children":0,"max_relay_children":0,"streams":[{"stream":"cam","depth":0,"upstream":null,"viewers":0,"relay_children":0,"ingress_bps":0}]}"#;
        let Ok(GossipMessage::Load(_, load)) = validate(LOAD_TOPIC, old, Some(a)) else { panic!("old format") };
        assert!(load.streams[0].path.is_empty());
        assert!(load.streams[0].standby.is_none() && load.streams[0].layers.is_empty());
    }

    #[test]
    fn reported_layers_are_bounded() {
        let a = PeerId::random();
        let with = |layers: Vec<String>| NodeLoad {
            streams: vec![StreamPresence { stream: "cam".into(), layers, ..Default::default() }],
            ..Default::default()
        };
        let ok = with(vec!["q".into(), "h".into()]);
        assert_eq!(validate(LOAD_TOPIC, &encode(&ok), Some(a)), Ok(GossipMessage::Load(a, ok)));
        let many = with((0..=MAX_LAYERS_REPORTED).map(|i| i.to_string()).collect());
        assert_eq!(validate(LOAD_TOPIC, &encode(&many), Some(a)), Err(GossipError::OutOfBounds("layers")));
        let long = with(vec!["x".repeat(17)]);
        assert_eq!(validate(LOAD_TOPIC, &encode(&long), Some(a)), Err(GossipError::OutOfBounds("layers")));
    }

    #[test]
    fn carrier_summaries_in_presences_are_optional_and_bounded() {
        let (a, up) = (PeerId::random(), PeerId::random());
        let summary = CarrierSummary {
            http_url: "http://192.0.2.1:8080".into(),
            region: Some("eu".into()),
            viewers: 3,
            capacity: 100,
            relay_children: 2,
            max_relay_children: 4,
        };
        let p = StreamPresence {
            stream: "cam".into(),
            depth: 1,
            upstream: Some(up),
            node: Some(summary.clone()),
            ..Default::default()
        };
        let got = validate(&presence_topic("cam"), &encode(&p), Some(a)).expect("valid");
        assert_eq!(got, GossipMessage::Presence(a, p.clone()));
        // Presences of older nodes, without the field, parse without a summary; a presence
        // without one does not name the field.
        let old = format!(r#"{{"stream":"cam","depth":1,"upstream":"{up}","viewers":0,"relay_children":0,"ingress_bps":0}}"#);
        let Ok(GossipMessage::Presence(_, parsed)) = validate(&presence_topic("cam"), old.as_bytes(), Some(a)) else {
            panic!("old format")
        };
        assert!(parsed.node.is_none());
        let bare = String::from_utf8(encode(&StreamPresence { node: None, ..p.clone() })).expect("utf-8");
        assert!(!bare.contains("\"node\""), "{bare}");
        // Its strings are bounded, in presences and in load reports alike.
        let long_url = CarrierSummary { http_url: "h".repeat(MAX_STRING + 1), ..summary.clone() };
        let bad = StreamPresence { node: Some(long_url), ..p.clone() };
        assert_eq!(validate(&presence_topic("cam"), &encode(&bad), Some(a)), Err(GossipError::OutOfBounds("http_url")));
        let long_region = CarrierSummary { region: Some("r".repeat(MAX_STRING + 1)), ..summary.clone() };
        let bad = NodeLoad { streams: vec![StreamPresence { node: Some(long_region), ..p.clone() }], ..Default::default() };
        assert_eq!(validate(LOAD_TOPIC, &encode(&bad), Some(a)), Err(GossipError::OutOfBounds("region")));
        // A summary carries the load's node-wide fields and sets them back.
        let load = NodeLoad {
            http_url: summary.http_url.clone(),
            region: summary.region.clone(),
            viewers: 3,
            egress_bps: 9,
            capacity: 100,
            relay_children: 2,
            max_relay_children: 4,
            ..Default::default()
        };
        assert_eq!(CarrierSummary::of(&load), summary);
        let mut rebuilt = NodeLoad { egress_bps: 9, ..Default::default() };
        summary.apply_to(&mut rebuilt);
        assert_eq!(rebuilt, load);
    }

    #[test]
    fn load_is_attributed_to_its_source() {
        let a = PeerId::random();
        let load = NodeLoad { http_url: "http://a".into(), capacity: 10, ..Default::default() };
        let got = validate(LOAD_TOPIC, &encode(&load), Some(a)).expect("valid");
        assert_eq!(got, GossipMessage::Load(a, load));
    }
}
