//! HLS media playlists (RFC 8216, version 7) rendered from a [`Manifest`].
//!
//! - [`live`]: a sliding window of the newest segments with `EXT-X-MEDIA-SEQUENCE` (and
//!   `EXT-X-ENDLIST` once the stream ended).
//! - [`vod`]: every segment; `EXT-X-PLAYLIST-TYPE:EVENT` while the stream is live, then
//!   `EXT-X-PLAYLIST-TYPE:VOD` and `EXT-X-ENDLIST`.
//!
//! URIs are `/ipfs/<cid>`; the init segment is referenced with `EXT-X-MAP`, repeated after an
//! `EXT-X-DISCONTINUITY` wherever the init segment changes. A segment that was never stored (a
//! failed write, a stalled disk) is a hole in the sequence numbers: it is listed as an
//! `EXT-X-GAP` entry whose duration is the time between its neighbours, so sequence numbers
//! never shift and players skip the hole in time. Gaps come from the segment list alone, so every
//! node holding the same segments renders the same playlist.

use std::fmt::Write;

use crate::manifest::{Manifest, ManifestSegment, rfc3339_ms};

/// Path prefix of segment and init URIs.
pub const URI_PREFIX: &str = "/ipfs/";

/// The live playlist: the last `window` segments, URIs `/ipfs/<cid>`.
pub fn live(m: &Manifest, window: usize) -> String {
    live_with_prefix(m, window, URI_PREFIX)
}

/// The VOD playlist: all segments (an `EVENT` playlist while the stream is live), URIs
/// `/ipfs/<cid>`.
pub fn vod(m: &Manifest) -> String {
    vod_with_prefix(m, URI_PREFIX)
}

/// [`live`] with URIs `<prefix><cid>`.
pub fn live_with_prefix(m: &Manifest, window: usize, prefix: &str) -> String {
    live_with_uris(m, window, prefix, "")
}

/// [`vod`] with URIs `<prefix><cid>`.
pub fn vod_with_prefix(m: &Manifest, prefix: &str) -> String {
    vod_with_uris(m, prefix, "")
}

/// [`live`] with URIs `<prefix><cid><suffix>` (a suffix such as `?token=...` lets players that
/// cannot set headers fetch segments behind an access check).
pub fn live_with_uris(m: &Manifest, window: usize, prefix: &str, suffix: &str) -> String {
    let first = m.segments.len().saturating_sub(window.max(1));
    render(m, first, None, prefix, suffix)
}

/// [`vod`] with URIs `<prefix><cid><suffix>`.
pub fn vod_with_uris(m: &Manifest, prefix: &str, suffix: &str) -> String {
    render(m, 0, Some(if m.ended { "VOD" } else { "EVENT" }), prefix, suffix)
}

/// One variant stream of a multivariant playlist: a simulcast layer's recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// URI of its media playlist (relative to the multivariant playlist's).
    pub uri: String,
    /// Peak segment bit rate, bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Frame size (`RESOLUTION`), when known.
    pub resolution: Option<[u32; 2]>,
    /// RFC 6381 codecs (`CODECS`).
    pub codecs: String,
}

/// A multivariant playlist (`EXT-X-STREAM-INF` per variant, RFC 8216 §4.3.4.2), in the order
/// given: players start with the first and switch by bandwidth.
pub fn multivariant(variants: &[Variant]) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some([w, h]) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        let _ = writeln!(out, ",CODECS=\"{}\"\n{}", v.codecs, v.uri);
    }
    out
}

/// Peak bit rate (bits per second) of segments given as `(bytes, seconds)`: `BANDWIDTH` of a
/// variant (RFC 8216 §4.3.4.2). Segments shorter than 0.5 s are left out (the last one of a
/// recording can be a few frames, whose rate says nothing). 0 when nothing is left.
pub fn peak_bitrate(segments: impl IntoIterator<Item = (u64, f64)>) -> u64 {
    segments
        .into_iter()
        .filter(|&(_, secs)| secs >= 0.5)
        .map(|(bytes, secs)| (bytes as f64 * 8.0 / secs).ceil() as u64)
        .max()
        .unwrap_or(0)
}

/// Most `EXT-X-GAP` entries written for one hole in the sequence numbers.
pub const MAX_GAP_ENTRIES: u64 = 1000;

/// URI of a gap entry (players do not load it).
pub const GAP_URI: &str = "gap";

/// `EXT-X-GAP` entries for the sequence numbers missing between `prev` and `next`: the time
/// between them shared equally (at least 1 ms each).
pub(crate) fn write_gaps(out: &mut String, prev: &ManifestSegment, next: &ManifestSegment, prefix: &str, suffix: &str) {
    let missing = next.seq.saturating_sub(prev.seq).saturating_sub(1);
    if missing == 0 {
        return;
    }
    let entries = missing.min(MAX_GAP_ENTRIES);
    let span = next.start_unix_ms.saturating_sub(prev.start_unix_ms) as f64 / 1000.0 - prev.duration;
    let each = (span / entries as f64).max(0.001);
    for _ in 0..entries {
        let _ = writeln!(out, "#EXTINF:{each:.3},\n#EXT-X-GAP\n{prefix}{GAP_URI}{suffix}");
    }
}

/// The sequence numbers missing between consecutive segments of `m` (segments never stored).
pub fn gaps(m: &Manifest) -> Vec<u64> {
    m.segments
        .windows(2)
        .flat_map(|w| (w[0].seq + 1..w[1].seq).take(MAX_GAP_ENTRIES as usize))
        .collect()
}

fn target_duration(segments: &[ManifestSegment]) -> u64 {
    let max = segments
        .iter()
        .map(|s| round3(s.duration))
        .fold(0.0, f64::max);
    (max.ceil() as u64).max(1)
}

fn round3(d: f64) -> f64 {
    (d * 1000.0).round() / 1000.0
}

fn render(m: &Manifest, first: usize, playlist_type: Option<&str>, prefix: &str, suffix: &str) -> String {
    let segments = &m.segments[first.min(m.segments.len())..];
    // Discontinuities that scrolled out of the window before its first segment.
    let discontinuity_seq = m.segments[..first.min(m.segments.len())]
        .windows(2)
        .filter(|w| m.init_of(&w[0]) != m.init_of(&w[1]))
        .count()
        + usize::from(
            first > 0
                && first < m.segments.len()
                && m.init_of(&m.segments[first - 1]) != m.init_of(&m.segments[first]),
        );
    let mut out = String::new();
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(
        out,
        "#EXT-X-TARGETDURATION:{}",
        target_duration(&m.segments)
    );
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.seq)
    );
    if discontinuity_seq > 0 {
        let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_seq}");
    }
    if let Some(t) = playlist_type {
        let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{t}");
    }
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let mut current_init: Option<&str> = None;
    let mut prev: Option<&ManifestSegment> = None;
    for s in segments {
        let init = m.init_of(s);
        if current_init != Some(init) {
            if current_init.is_some() {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}{init}{suffix}\"");
            current_init = Some(init);
        }
        if let Some(prev) = prev {
            write_gaps(&mut out, prev, s, prefix, suffix);
        }
        prev = Some(s);
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            rfc3339_ms(s.start_unix_ms)
        );
        let _ = writeln!(out, "#EXTINF:{:.3},", s.duration);
        let _ = writeln!(out, "{prefix}{}{suffix}", s.cid);
    }
    if m.ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn manifest(n: u64) -> Manifest {
        let mut m = Manifest::new("bafyinit", "avc1.42c01e,opus");
        for i in 0..n {
            let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + i * 2000);
            let d = if i == 1 {
                Duration::from_millis(2033)
            } else {
                Duration::from_secs(2)
            };
            m.push_segment(i, format!("bafyseg{i}"), d, start, "bafyinit");
        }
        m
    }

    #[test]
    fn a_multivariant_playlist_lists_every_variant_with_its_bandwidth_resolution_and_codecs() {
        let v = |uri: &str, bandwidth, resolution| Variant { uri: uri.into(), bandwidth, resolution, codecs: "avc1.42e01f,opus".into() };
        let p = multivariant(&[v("live/f.m3u8", 2_500_000, Some([1280, 720])), v("live/q.m3u8", 300_000, None)]);
        assert_eq!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS=\"avc1.42e01f,opus\"\nlive/f.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS=\"avc1.42e01f,opus\"\nlive/q.m3u8\n"
        );
        assert_eq!(peak_bitrate([(250_000, 2.0), (300_000, 2.0), (90_000, 0.1)]), 1_200_000);
        assert_eq!(peak_bitrate([]), 0);
    }

    #[test]
    fn a_segment_never_stored_is_a_gap_and_sequence_numbers_do_not_shift() {
        let mut m = manifest(5);
        m.segments.remove(2);
        assert_eq!(gaps(&m), [2]);
        let vod = vod(&m);
        let entries: Vec<&str> = vod.lines().filter(|l| l.starts_with("#EXTINF") || l.starts_with("#EXT-X-GAP")).collect();
        assert_eq!(entries.len(), 6, "{vod}");
        // Segment 1 lasts 2.033 s and segment 3 starts 4 s after it: the hole is 1.967 s.
        assert!(vod.contains("#EXTINF:1.967,\n#EXT-X-GAP\n/ipfs/gap\n#EXT-X-PROGRAM-DATE-TIME"), "{vod}");
        // Position in the playlist = sequence number: segment 3 is the fourth entry.
        let uris: Vec<&str> = vod.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(uris, ["/ipfs/bafyseg0", "/ipfs/bafyseg1", "/ipfs/gap", "/ipfs/bafyseg3", "/ipfs/bafyseg4"]);
        // A live window that starts after the hole names its first segment.
        assert!(live(&m, 2).contains("#EXT-X-MEDIA-SEQUENCE:3"));
    }

    #[test]
    fn uri_suffix_goes_on_every_segment_and_init_uri() {
        let m = manifest(3);
        let p = vod_with_uris(&m, URI_PREFIX, "?token=abc.def");
        assert!(p.contains("#EXT-X-MAP:URI=\"/ipfs/bafyinit?token=abc.def\"\n"), "{p}");
        for i in 0..3 {
            assert!(p.contains(&format!("\n/ipfs/bafyseg{i}?token=abc.def\n")), "{p}");
        }
        assert_eq!(live_with_uris(&m, 2, URI_PREFIX, "?t=1").matches("?t=1").count(), 3, "two segments and the map");
        assert_eq!(vod_with_uris(&m, URI_PREFIX, ""), vod(&m));
    }

    #[test]
    fn live_window_slides_with_media_sequence() {
        let m = manifest(5);
        let p = live(&m, 3);
        assert!(
            p.starts_with(
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:2\n"
            ),
            "{p}"
        );
        assert!(p.contains("#EXT-X-MAP:URI=\"/ipfs/bafyinit\"\n"));
        assert!(!p.contains("bafyseg1"));
        assert_eq!(p.matches("#EXTINF:2.000,\n").count(), 3);
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:24.000Z\n#EXTINF:2.000,\n/ipfs/bafyseg2\n"), "{p}");
        assert!(!p.contains("PLAYLIST-TYPE"));
        assert!(!p.contains("ENDLIST"));
    }

    #[test]
    fn vod_is_event_while_live_then_ends() {
        let mut m = manifest(3);
        let p = vod(&m);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(p.contains("#EXTINF:2.033,\n/ipfs/bafyseg1\n"));
        assert!(!p.contains("ENDLIST"));
        m.end();
        let p = vod(&m);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.ends_with("/ipfs/bafyseg2\n#EXT-X-ENDLIST\n"));
        assert!(live(&m, 2).ends_with("#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn init_change_adds_discontinuity_and_map() {
        let mut m = manifest(2);
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_004);
        m.push_segment(2, "bafyseg2", Duration::from_secs(2), t, "bafyinit2");
        m.push_segment(
            3,
            "bafyseg3",
            Duration::from_secs(2),
            t + Duration::from_secs(2),
            "bafyinit2",
        );
        let p = vod(&m);
        assert!(
            p.contains(
                "/ipfs/bafyseg1\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"/ipfs/bafyinit2\"\n"
            ),
            "{p}"
        );
        assert_eq!(p.matches("#EXT-X-MAP").count(), 2);
        let w = live(&m, 1);
        assert!(w.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{w}");
        assert!(w.contains("#EXT-X-MAP:URI=\"/ipfs/bafyinit2\"\n"));
        assert!(!w.contains("#EXT-X-DISCONTINUITY\n"));
        let w2 = live(&m, 2);
        assert!(w2.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{w2}");
    }

    #[test]
    fn empty_manifest_renders_a_valid_header() {
        let m = Manifest::new("bafyinit", "opus");
        let p = live(&m, 5);
        assert!(p.contains("#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"));
        assert!(!p.contains("#EXTINF"));
    }
}
