//! `manifest.json`: the machine-readable index of an archived stream.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Format version written into new manifests.
pub const MANIFEST_VERSION: u32 = 1;

/// One archived media segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestSegment {
    /// Media sequence number.
    pub seq: u64,
    /// CID of the segment file.
    pub cid: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Wall-clock start, RFC 3339 UTC with milliseconds.
    pub start: String,
    /// Wall-clock start in milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// CID of the init segment this segment needs, when it differs from [`Manifest::init`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
}

/// The index of one archived stream: init segment, media segments, codecs, and whether it ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// CID of the (first) init segment.
    pub init: String,
    /// RFC 6381 codecs string, e.g. `vp08.00.10.08,opus`.
    pub codecs: String,
    /// Segments in order.
    pub segments: Vec<ManifestSegment>,
    /// True once the stream has ended (the VOD playlist then carries `EXT-X-ENDLIST`).
    pub ended: bool,
}

impl Manifest {
    /// Starts a manifest for a recording whose first init segment has CID `init`.
    pub fn new(init: impl Into<String>, codecs: impl Into<String>) -> Self {
        Self {
            version: MANIFEST_VERSION,
            init: init.into(),
            codecs: codecs.into(),
            segments: Vec::new(),
            ended: false,
        }
    }

    /// Appends a segment stored under `cid` that needs the init segment `init_cid`.
    pub fn push_segment(
        &mut self,
        seq: u64,
        cid: impl Into<String>,
        duration: Duration,
        start: SystemTime,
        init_cid: &str,
    ) {
        let start_unix_ms = start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.segments.push(ManifestSegment {
            seq,
            cid: cid.into(),
            duration: duration.as_secs_f64(),
            start: rfc3339_ms(start_unix_ms),
            start_unix_ms,
            init: (init_cid != self.init).then(|| init_cid.to_string()),
        });
    }

    /// Marks the stream as ended.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The init segment CID a segment needs.
    pub fn init_of<'a>(&'a self, seg: &'a ManifestSegment) -> &'a str {
        seg.init.as_deref().unwrap_or(&self.init)
    }

    /// Total duration of all segments in seconds.
    pub fn duration(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).sum()
    }

    /// Serializes to pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parses a manifest from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC, e.g. `2026-11-23T19:40:00.123Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_462_335_004), "2026-11-23T19:32:15.004Z");
    }

    #[test]
    fn json_round_trip_and_init_override() {
        let mut m = Manifest::new("bafyinit", "vp08.00.10.08,opus");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        m.push_segment(0, "bafyseg0", Duration::from_millis(2000), t, "bafyinit");
        m.push_segment(
            1,
            "bafyseg1",
            Duration::from_millis(1500),
            t + Duration::from_secs(2),
            "bafyinit2",
        );
        m.end();
        let json = m.to_json();
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["segments"][0]["cid"], "bafyseg0");
        assert!(v["segments"][0].get("init").is_none());
        assert_eq!(v["segments"][1]["init"], "bafyinit2");
        assert_eq!(v["segments"][1]["start_unix_ms"], 1_700_000_002_500u64);
        assert_eq!(v["ended"], true);
        let back = Manifest::from_json(&json).expect("parse");
        assert_eq!(back, m);
        assert_eq!(back.init_of(&back.segments[1]), "bafyinit2");
        assert!((back.duration() - 3.5).abs() < 1e-9);
        assert!(Manifest::from_json(b"{not json").is_err());
    }
}
