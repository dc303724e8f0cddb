//! Webhook events and their JSON bodies.

use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A publisher started feeding a stream on this node.
    StreamStarted,
    /// That publisher left.
    StreamEnded,
    /// A recording's VOD root was written.
    RecordingFinished,
}

impl EventKind {
    /// The event's `type` in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StreamStarted => "stream.started",
            EventKind::StreamEnded => "stream.ended",
            EventKind::RecordingFinished => "recording.finished",
        }
    }
}

/// One event as POSTed: `{"id", "type", "stream", "node", "time"}` plus `vod_cid` and `segments`
/// for `recording.finished`.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique per event; the same on every retry, so receivers can deduplicate.
    pub id: String,
    /// `stream.started`, `stream.ended` or `recording.finished`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Stream name.
    pub stream: String,
    /// The peer id of the node that sends the event.
    pub node: String,
    /// When it happened, RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Root CID of the recording's VOD directory (`recording.finished` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vod_cid: Option<String>,
    /// Media segments in the recording (`recording.finished` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<u64>,
}

impl Event {
    /// An event of `kind` about `stream` from `node` at `unix_ms`, with the given unique `id`.
    pub fn new(kind: EventKind, id: String, stream: &str, node: &str, unix_ms: u64) -> Self {
        Event {
            id,
            kind: kind.as_str(),
            stream: stream.to_owned(),
            node: node.to_owned(),
            time: rfc3339_ms(unix_ms),
            vod_cid: None,
            segments: None,
        }
    }

    /// A `recording.finished` event with the VOD root CID and the number of media segments.
    pub fn recording_finished(id: String, stream: &str, node: &str, unix_ms: u64, vod_cid: &str, segments: u64) -> Self {
        Event {
            vod_cid: Some(vod_cid.to_owned()),
            segments: Some(segments),
            ..Event::new(EventKind::RecordingFinished, id, stream, node, unix_ms)
        }
    }

    /// The JSON body, as sent (and signed) on every attempt.
    pub fn to_body(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-12-05T04:10:00.250Z`
/// (the archive's manifest uses the same format).
pub use relaycast_archive::manifest::rfc3339_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_time_like_gnu_date() {
        // Expected values from `date -u -d @SECS +%Y-%m-%dT%H:%M:%S.%3NZ`.
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_443_800_250), "2026-12-05T04:10:00.250Z");
    }

    #[test]
    fn body_has_the_contract_fields_only() {
        let e = Event::new(EventKind::StreamStarted, "abc".into(), "room", "12D3KooWTest", 1_796_443_800_250);
        let v: serde_json::Value = serde_json::from_slice(&e.to_body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "abc", "type": "stream.started", "stream": "room", "node": "12D3KooWTest",
                "time": "2026-12-05T04:10:00.250Z"})
        );
        let e = Event::recording_finished("x".into(), "room", "n", 0, "bafyroot", 7);
        let v: serde_json::Value = serde_json::from_slice(&e.to_body()).unwrap();
        assert_eq!(v["type"], "recording.finished");
        assert_eq!(v["vod_cid"], "bafyroot");
        assert_eq!(v["segments"], 7);
    }
}
