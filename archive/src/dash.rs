//! MPEG-DASH MPDs (ISO/IEC 23009-1) rendered from a [`Manifest`], for standard DASH players
//! (dash.js); the DASH twin of [`crate::playlist`].
//!
//! - [`live`]: `type="dynamic"`, a sliding window of the newest segments. Once the stream ended
//!   the MPD stays dynamic (a player already following it keeps its timeline) but gets a
//!   `mediaPresentationDuration` and loses `minimumUpdatePeriod`: no more updates, the
//!   presentation ends after the last segment.
//! - [`vod`]: every segment; `type="static"` with `mediaPresentationDuration` once the stream
//!   ended, and while it is live a dynamic MPD listing every segment so far (its time-shift
//!   buffer spans the whole recording, so a player may seek back to the start).
//!
//! Layout: one `Period` per run of segments sharing an init segment (a new `Period` where the
//! init segment changes, where HLS has a discontinuity), one `AdaptationSet` holding one muxed
//! video + audio `Representation` (`video/webm` with `codecs="vp8,opus"`, or `video/mp4`) per
//! recorded simulcast layer ([`live_set`], [`vod_set`]; the main one first, the others on its
//! timeline, so that players switch between them by `bandwidth`), each with a
//! `SegmentList` (`timescale="1000"`) with the `Initialization`, a `SegmentTimeline` and one
//! `SegmentURL` per segment, URIs `<prefix><cid><suffix>`. A segment that was never stored is
//! simply not listed: the timeline's `t` jumps over the hole.
//!
//! Times: segments carry media timestamps counted from the recording's origin (its first frame,
//! the start of its first segment), so the media time of a segment is its wall-clock start minus
//! the first segment's. `S@t` is that media time in milliseconds; each `Period` starts at the
//! media time of its first segment and says so in `presentationTimeOffset`, so players map the
//! segments' own timestamps onto the period timeline without any shift. `availabilityStartTime`
//! is the first segment's wall-clock start. (A recording whose very first segment was never stored
//! is off by that segment's duration: the manifest cannot tell it.)
//!
//! The output depends only on the manifest, except for `publishTime` and the
//! `urn:mpeg:dash:utc:direct:2014` clock of dynamic MPDs (the server's time, so players need no
//! time server); [`live_at`] and [`vod_at`] take that time as an argument.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::manifest::{Manifest, ManifestSegment, rfc3339_ms};
use crate::mux::Container;

/// Content type of an MPD.
pub const CONTENT_TYPE: &str = "application/dash+xml";

/// Timescale of the `SegmentList` (milliseconds).
pub const TIMESCALE: u64 = 1000;

/// `bandwidth` of a video (+ audio) Representation: segment sizes are not in the manifest, and
/// with a single Representation the value only seeds the player's buffer estimates.
pub const VIDEO_BANDWIDTH: u64 = 2_000_000;

/// `bandwidth` of an audio-only Representation.
pub const AUDIO_BANDWIDTH: u64 = 64_000;

/// How much later than the main rendition another may begin in a Period and still be listed
/// (their segments start on the same keyframes, a frame or two apart at most).
const RENDITION_SLACK_MS: u64 = 100;

/// Segment duration assumed before any segment exists (the recorder's default).
const DEFAULT_SEGMENT_MS: u64 = 2000;

/// `suggestedPresentationDelay` in segments: the newest segment may still be on its way to the
/// store, the one before it is there.
const PRESENTATION_DELAY_SEGMENTS: u64 = 3;

/// One Representation of the MPD: a recorded simulcast layer.
#[derive(Clone, Copy, Debug)]
pub struct Rendition<'a> {
    /// Its segments.
    pub manifest: &'a Manifest,
    /// Its peak bit rate (bits per second); 0 for the default of its kind.
    pub bandwidth: u64,
}

/// The live MPD: the last `window` segments, URIs `<prefix><cid><suffix>`, `publishTime` now.
pub fn live(m: &Manifest, window: usize, prefix: &str, suffix: &str) -> String {
    live_at(m, window, prefix, suffix, now_unix_ms())
}

/// [`live`] published at `now_unix_ms` (milliseconds since the Unix epoch).
pub fn live_at(m: &Manifest, window: usize, prefix: &str, suffix: &str, now_unix_ms: u64) -> String {
    live_set_at(&[Rendition { manifest: m, bandwidth: 0 }], window, prefix, suffix, now_unix_ms)
}

/// [`live`] of several renditions, the main one first (it decides the window and the Periods).
pub fn live_set(renditions: &[Rendition<'_>], window: usize, prefix: &str, suffix: &str) -> String {
    live_set_at(renditions, window, prefix, suffix, now_unix_ms())
}

/// [`live_set`] published at `now_unix_ms`.
pub fn live_set_at(renditions: &[Rendition<'_>], window: usize, prefix: &str, suffix: &str, now_unix_ms: u64) -> String {
    let Some(main) = renditions.first() else { return String::new() };
    let first = main.manifest.segments.len().saturating_sub(window.max(1));
    render(renditions, first, Some(now_unix_ms), prefix, suffix)
}

/// The VOD MPD: every segment; static once the stream ended, dynamic (published now) before.
pub fn vod(m: &Manifest, prefix: &str, suffix: &str) -> String {
    vod_at(m, prefix, suffix, now_unix_ms())
}

/// [`vod`] published at `now_unix_ms` while the stream is live (unused once it ended).
pub fn vod_at(m: &Manifest, prefix: &str, suffix: &str, now_unix_ms: u64) -> String {
    vod_set_at(&[Rendition { manifest: m, bandwidth: 0 }], prefix, suffix, now_unix_ms)
}

/// [`vod`] of several renditions, the main one first.
pub fn vod_set(renditions: &[Rendition<'_>], prefix: &str, suffix: &str) -> String {
    vod_set_at(renditions, prefix, suffix, now_unix_ms())
}

/// [`vod_set`] published at `now_unix_ms` while the stream is live.
pub fn vod_set_at(renditions: &[Rendition<'_>], prefix: &str, suffix: &str, now_unix_ms: u64) -> String {
    let Some(main) = renditions.first() else { return String::new() };
    render(renditions, 0, (!main.manifest.ended).then_some(now_unix_ms), prefix, suffix)
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `s` escaped for an XML attribute value in double quotes.
pub fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Milliseconds as an `xs:duration` (`PT12.345S`).
fn duration_attr(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

fn duration_ms(s: &ManifestSegment) -> u64 {
    let ms = (s.duration * 1000.0).round();
    if ms.is_finite() && ms > 0.0 { ms as u64 } else { 0 }
}

/// The segments of one Period: those of `m.segments[first..]` that need `init`.
struct Period<'a> {
    /// Position among the Periods of the whole recording (stable while the manifest grows).
    index: usize,
    init: &'a str,
    /// Media time (ms) of the Period's first segment in the whole recording.
    start_ms: u64,
    segments: Vec<&'a ManifestSegment>,
}

/// Splits the recording into Periods at init changes, keeping the segments from `first` on.
fn periods(m: &Manifest, first: usize, origin_ms: u64) -> Vec<Period<'_>> {
    let mut out: Vec<Period<'_>> = Vec::new();
    for (i, s) in m.segments.iter().enumerate() {
        let init = m.init_of(s);
        if out.last().is_none_or(|p| p.init != init) {
            let index = out.len();
            out.push(Period { index, init, start_ms: s.start_unix_ms.saturating_sub(origin_ms), segments: Vec::new() });
        }
        if i >= first
            && let Some(p) = out.last_mut()
        {
            p.segments.push(s);
        }
    }
    out.retain(|p| !p.segments.is_empty());
    if out.is_empty() {
        out.push(Period { index: 0, init: &m.init, start_ms: 0, segments: Vec::new() });
    }
    out
}

/// Renders the MPD of the main rendition's `segments[first..]` (and the others' segments in the
/// same time span): dynamic published at `now` when `now` is given, else static.
fn render(renditions: &[Rendition<'_>], first: usize, now: Option<u64>, prefix: &str, suffix: &str) -> String {
    let Some(main) = renditions.first() else { return String::new() };
    let m = main.manifest;
    let first = first.min(m.segments.len());
    // The recording's origin: the first segment's wall clock (an empty dynamic MPD starts now).
    let origin_ms = m.segments.first().map_or(now.unwrap_or(0), |s| s.start_unix_ms);
    let media_ms = |s: &ManifestSegment| s.start_unix_ms.saturating_sub(origin_ms);
    let end_of = |s: &ManifestSegment| media_ms(s).saturating_add(duration_ms(s));
    let end_ms = m.segments.iter().map(end_of).max().unwrap_or(0);
    let segment_ms = m.segments.iter().map(duration_ms).max().unwrap_or(DEFAULT_SEGMENT_MS).max(1000);
    let periods = periods(m, first, origin_ms);
    let container = Container::of_codecs(&m.codecs);
    let mime = container.mime_type(&m.codecs);
    let mime = mime.split(';').next().unwrap_or("video/mp4");
    let audio_only = mime.starts_with("audio/");
    let (content_type, default_bandwidth) = if audio_only { ("audio", AUDIO_BANDWIDTH) } else { ("video", VIDEO_BANDWIDTH) };

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:full:2011\"");
    match now {
        Some(now) => {
            // The time-shift buffer: the listed segments (at least one segment long).
            let window_start = m.segments.get(first).map_or(0, media_ms);
            let depth = end_ms.saturating_sub(window_start).max(segment_ms);
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\"",
                rfc3339_ms(origin_ms),
                rfc3339_ms(now)
            );
            if m.ended {
                let _ = write!(out, " mediaPresentationDuration=\"{}\"", duration_attr(end_ms));
            } else {
                let _ = write!(out, " minimumUpdatePeriod=\"{}\"", duration_attr(segment_ms));
            }
            let _ = write!(
                out,
                " timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\"",
                duration_attr(depth),
                duration_attr(segment_ms * PRESENTATION_DELAY_SEGMENTS)
            );
        }
        None => {
            let _ = write!(out, " type=\"static\" mediaPresentationDuration=\"{}\"", duration_attr(end_ms));
        }
    }
    let _ = writeln!(out, " minBufferTime=\"{}\">", duration_attr(segment_ms));
    let window_start = m.segments.get(first).map_or(0, media_ms);
    for (n, p) in periods.iter().enumerate() {
        let period_end = periods.get(n + 1).map_or(u64::MAX, |next| next.start_ms);
        let _ = writeln!(out, "  <Period id=\"p{}\" start=\"{}\">", p.index, duration_attr(p.start_ms));
        let _ = writeln!(
            out,
            concat!(
                "    <AdaptationSet id=\"0\" contentType=\"{}\" mimeType=\"{}\" codecs=\"{}\"",
                " segmentAlignment=\"true\" startWithSAP=\"1\">"
            ),
            content_type,
            escape_attr(mime),
            escape_attr(&m.codecs)
        );
        for (id, r) in renditions.iter().enumerate() {
            // The main rendition's segments of the Period; another's in the same span, when they
            // all need one init segment of the same codecs.
            let (init, segments) = if id == 0 {
                (p.init, p.segments.clone())
            } else {
                let segs: Vec<&ManifestSegment> = r
                    .manifest
                    .segments
                    .iter()
                    .filter(|s| (p.start_ms.max(window_start)..period_end).contains(&media_ms(s)))
                    .collect();
                let Some(init) = segs.first().map(|s| r.manifest.init_of(s)) else { continue };
                if r.manifest.codecs != m.codecs || segs.iter().any(|s| r.manifest.init_of(s) != init) {
                    continue;
                }
                // Only a rendition that covers the Period from where the main one starts in it:
                // a player starting on a Representation that begins later would start there.
                let main_start = p.segments.first().map_or(p.start_ms, |s| media_ms(s));
                if segs.first().is_none_or(|s| media_ms(s) > main_start.saturating_add(RENDITION_SLACK_MS)) {
                    continue;
                }
                (init, segs)
            };
            let bandwidth = if r.bandwidth > 0 { r.bandwidth } else { default_bandwidth };
            let _ = writeln!(out, "      <Representation id=\"{id}\" bandwidth=\"{bandwidth}\">");
            let _ = writeln!(out, "        <SegmentList timescale=\"{TIMESCALE}\" presentationTimeOffset=\"{}\">", p.start_ms);
            let _ = writeln!(out, "          <Initialization sourceURL=\"{}\"/>", escape_attr(&format!("{prefix}{init}{suffix}")));
            out.push_str("          <SegmentTimeline>\n");
            for s in &segments {
                let _ = writeln!(out, "            <S t=\"{}\" d=\"{}\"/>", media_ms(s), duration_ms(s));
            }
            out.push_str("          </SegmentTimeline>\n");
            for s in &segments {
                let _ = writeln!(out, "          <SegmentURL media=\"{}\"/>", escape_attr(&format!("{prefix}{}{suffix}", s.cid)));
            }
            out.push_str("        </SegmentList>\n      </Representation>\n");
        }
        out.push_str("    </AdaptationSet>\n  </Period>\n");
    }
    if let Some(now) = now {
        let _ = writeln!(out, "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>", rfc3339_ms(now));
    }
    out.push_str("</MPD>\n");
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const NOW: u64 = T0 + 60_000;

    /// `n` segments of 2 s (segment 1 lasts 2.033 s), starting at `T0`.
    fn manifest(n: u64) -> Manifest {
        let mut m = Manifest::new("bafyinit", "vp8,opus");
        for i in 0..n {
            push(&mut m, i, if i == 1 { 2033 } else { 2000 }, "bafyinit");
        }
        m
    }

    fn push(m: &mut Manifest, seq: u64, ms: u64, init: &str) {
        let start = UNIX_EPOCH + Duration::from_millis(T0 + seq * 2000);
        m.push_segment(seq, format!("bafyseg{seq}"), Duration::from_millis(ms), start, init);
    }

    /// The value of attribute `name` on the first element that has it.
    fn attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
        let key = format!(" {name}=\"");
        let at = xml.find(&key)? + key.len();
        xml[at..].split('"').next()
    }

    /// Element names in document order, checking that every element is closed in order.
    fn check_well_formed(xml: &str) -> Vec<String> {
        let body = xml.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n").expect("XML declaration");
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            assert!(rest[..open].trim().is_empty(), "text outside elements: {:?}", &rest[..open]);
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "{tag}");
            // Attribute values: no raw & except entity references, no raw quotes.
            for (i, _) in tag.match_indices('&') {
                let ent = &tag[i..];
                assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].iter().any(|e| ent.starts_with(e)), "raw & in <{tag}>");
            }
            assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "closing </{name}> out of order");
            } else {
                let name = tag.split([' ', '/']).next().unwrap_or_default().to_string();
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(rest.trim().is_empty() && stack.is_empty(), "unclosed {stack:?}");
        names
    }

    #[test]
    fn live_mpd_structure_and_timeline() {
        let m = manifest(5);
        let x = live_at(&m, 3, "/ipfs/", "", NOW);
        let names = check_well_formed(&x);
        assert_eq!(names.iter().filter(|n| *n == "Period").count(), 1, "{x}");
        assert_eq!(names.first().map(String::as_str), Some("MPD"));
        assert_eq!(names.last().map(String::as_str), Some("UTCTiming"), "UTCTiming follows the Periods");
        assert_eq!(attr(&x, "type"), Some("dynamic"));
        assert_eq!(attr(&x, "availabilityStartTime"), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(attr(&x, "publishTime"), Some("2023-11-14T22:14:20.000Z"));
        assert_eq!(attr(&x, "minimumUpdatePeriod"), Some("PT2.033S"));
        assert_eq!(attr(&x, "suggestedPresentationDelay"), Some("PT6.099S"));
        // The window: segments 2, 3, 4 = media 4.000 s to 10.000 s.
        assert_eq!(attr(&x, "timeShiftBufferDepth"), Some("PT6.000S"));
        assert!(attr(&x, "minBufferTime").is_some());
        assert!(!x.contains("mediaPresentationDuration"));
        assert!(x.contains("<AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/webm\" codecs=\"vp8,opus\""), "{x}");
        assert!(x.contains("<Representation id=\"0\" bandwidth=\"2000000\">"));
        assert!(x.contains("<Period id=\"p0\" start=\"PT0.000S\">"));
        assert!(x.contains("<SegmentList timescale=\"1000\" presentationTimeOffset=\"0\">"));
        assert!(x.contains("<Initialization sourceURL=\"/ipfs/bafyinit\"/>"));
        let timeline: Vec<&str> = x.lines().map(str::trim).skip_while(|l| *l != "<SegmentTimeline>").take(5).collect();
        assert_eq!(
            timeline,
            [
                "<SegmentTimeline>",
                "<S t=\"4000\" d=\"2000\"/>",
                "<S t=\"6000\" d=\"2000\"/>",
                "<S t=\"8000\" d=\"2000\"/>",
                "</SegmentTimeline>"
            ],
            "{x}"
        );
        let urls: Vec<&str> = x.lines().filter_map(|l| l.trim().strip_prefix("<SegmentURL media=\"")).collect();
        assert_eq!(urls, ["/ipfs/bafyseg2\"/>", "/ipfs/bafyseg3\"/>", "/ipfs/bafyseg4\"/>"]);
        assert!(x.contains("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"2023-11-14T22:14:20.000Z\"/>"));
        // Deterministic but for the publish time.
        assert_eq!(x, live_at(&m, 3, "/ipfs/", "", NOW));
        let later = live_at(&m, 3, "/ipfs/", "", NOW + 1500);
        assert_eq!(x.replace("22:14:20.000Z", "T"), later.replace("22:14:21.500Z", "T"));
    }

    #[test]
    fn segment_durations_are_milliseconds_and_the_timeline_follows_wall_clock_starts() {
        let m = manifest(3);
        let x = vod_at(&m, "/ipfs/", "", NOW);
        let s: Vec<&str> = x.lines().map(str::trim).filter(|l| l.starts_with("<S ")).collect();
        assert_eq!(s, ["<S t=\"0\" d=\"2000\"/>", "<S t=\"2000\" d=\"2033\"/>", "<S t=\"4000\" d=\"2000\"/>"], "{x}");
        // While the stream is live the VOD MPD is dynamic and lists everything.
        assert_eq!(attr(&x, "type"), Some("dynamic"));
        assert_eq!(attr(&x, "timeShiftBufferDepth"), Some("PT6.000S"));
        assert_eq!(x.matches("<SegmentURL ").count(), 3);
    }

    #[test]
    fn a_missing_segment_is_not_listed_and_t_jumps() {
        let mut m = manifest(5);
        m.segments.remove(2);
        let x = vod_at(&m, "/ipfs/", "", NOW);
        check_well_formed(&x);
        assert!(x.contains("<S t=\"2000\" d=\"2033\"/>\n            <S t=\"6000\" d=\"2000\"/>"), "{x}");
        assert!(!x.contains("bafyseg2"));
        assert_eq!(x.matches("<S ").count(), 4);
        assert_eq!(x.matches("<SegmentURL ").count(), 4);
    }

    #[test]
    fn an_init_change_starts_a_second_period_with_its_own_initialization() {
        let mut m = manifest(2);
        push(&mut m, 2, 2000, "bafyinit2");
        push(&mut m, 3, 2000, "bafyinit2");
        m.end();
        let x = vod(&m, "/ipfs/", "");
        let names = check_well_formed(&x);
        assert_eq!(names.iter().filter(|n| *n == "Period").count(), 2, "{x}");
        let (p0, p1) = x.split_once("<Period id=\"p1\"").expect("second period");
        assert!(p0.contains("<Period id=\"p0\" start=\"PT0.000S\">"));
        assert!(p0.contains("<Initialization sourceURL=\"/ipfs/bafyinit\"/>") && p0.contains("bafyseg1") && !p0.contains("bafyseg2"));
        assert!(p1.starts_with(" start=\"PT4.000S\">"), "{p1}");
        assert!(p1.contains("presentationTimeOffset=\"4000\""));
        assert!(p1.contains("<Initialization sourceURL=\"/ipfs/bafyinit2\"/>"));
        assert!(p1.contains("<S t=\"4000\" d=\"2000\"/>\n            <S t=\"6000\" d=\"2000\"/>"), "{p1}");
        // A live window past the change keeps the second Period's id and start.
        let w = live_at(&m, 1, "/ipfs/", "", NOW);
        assert!(w.contains("<Period id=\"p1\" start=\"PT4.000S\">") && !w.contains("\"p0\""), "{w}");
        assert!(w.contains("<S t=\"6000\" d=\"2000\"/>\n          </SegmentTimeline>"));
    }

    #[test]
    fn a_token_suffix_is_escaped_in_every_uri() {
        let m = manifest(2);
        let x = live_at(&m, 6, "/ipfs/", "?token=a.b&x=<\"y\">", NOW);
        check_well_formed(&x);
        assert!(x.contains("<Initialization sourceURL=\"/ipfs/bafyinit?token=a.b&amp;x=&lt;&quot;y&quot;&gt;\"/>"), "{x}");
        assert_eq!(x.matches("?token=a.b&amp;x=&lt;&quot;y&quot;&gt;\"").count(), 3, "the init and both segments");
        assert_eq!(escape_attr("a'b"), "a&apos;b");
    }

    #[test]
    fn an_ended_recording_is_static_with_its_duration() {
        let mut m = manifest(3);
        m.end();
        let x = vod(&m, "/ipfs/", "");
        check_well_formed(&x);
        assert_eq!(attr(&x, "type"), Some("static"));
        assert_eq!(attr(&x, "mediaPresentationDuration"), Some("PT6.000S"));
        for absent in ["availabilityStartTime", "publishTime", "minimumUpdatePeriod", "timeShiftBufferDepth", "UTCTiming"] {
            assert!(!x.contains(absent), "{absent} in a static MPD: {x}");
        }
        assert_eq!(x, vod(&m, "/ipfs/", ""), "deterministic");
        // The live MPD of an ended stream stops updating and ends.
        let l = live_at(&m, 2, "/ipfs/", "", NOW);
        assert_eq!(attr(&l, "type"), Some("dynamic"));
        assert_eq!(attr(&l, "mediaPresentationDuration"), Some("PT6.000S"));
        assert!(!l.contains("minimumUpdatePeriod"));
    }

    #[test]
    fn fmp4_and_audio_only_recordings_and_an_empty_manifest() {
        let mut m = Manifest::new("bafyinit", "avc1.42e01f,opus");
        push(&mut m, 0, 2000, "bafyinit");
        let x = vod_at(&m, "/ipfs/", "", NOW);
        assert!(x.contains("contentType=\"video\" mimeType=\"video/mp4\" codecs=\"avc1.42e01f,opus\""), "{x}");
        let a = vod_at(&Manifest::new("bafyinit", "opus"), "/ipfs/", "", NOW);
        assert!(a.contains("contentType=\"audio\" mimeType=\"audio/mp4\" codecs=\"opus\""), "{a}");
        assert!(a.contains("bandwidth=\"64000\""));
        // No segment yet: a valid dynamic MPD with an empty timeline that starts now.
        check_well_formed(&a);
        assert_eq!(attr(&a, "availabilityStartTime"), Some("2023-11-14T22:14:20.000Z"));
        assert!(a.contains("<SegmentTimeline>\n          </SegmentTimeline>"));
    }

    #[test]
    fn every_rendition_is_a_representation_of_the_same_periods() {
        let main = manifest(3);
        let mut low = Manifest::new("bafylowinit", "vp8,opus");
        for seq in 0..3 {
            let start = UNIX_EPOCH + Duration::from_millis(T0 + seq * 2000);
            low.push_segment(seq, format!("bafylow{seq}"), Duration::from_millis(2000), start, "bafylowinit");
        }
        // A layer that began with the second segment: left out, or players starting on it would
        // start 2 s in.
        let mut late = Manifest::new("bafylateinit", "vp8,opus");
        for seq in 0..2 {
            let start = UNIX_EPOCH + Duration::from_millis(T0 + (seq + 1) * 2000);
            late.push_segment(seq, format!("bafylate{seq}"), Duration::from_millis(2000), start, "bafylateinit");
        }
        let set = [
            Rendition { manifest: &main, bandwidth: 2_500_000 },
            Rendition { manifest: &low, bandwidth: 300_000 },
            Rendition { manifest: &late, bandwidth: 150_000 },
        ];
        let xml = vod_set_at(&set, "/ipfs/", "", NOW);
        check_well_formed(&xml);
        assert_eq!(xml.matches("<AdaptationSet").count(), 1);
        assert!(xml.contains("<Representation id=\"0\" bandwidth=\"2500000\">"), "{xml}");
        assert!(xml.contains("<Representation id=\"1\" bandwidth=\"300000\">"), "{xml}");
        assert!(xml.contains("<Initialization sourceURL=\"/ipfs/bafylowinit\"/>"));
        // On the main rendition's timeline.
        let low_part = &xml[xml.find("<Representation id=\"1\"").unwrap()..];
        assert!(low_part.contains("<S t=\"0\" d=\"2000\"/>\n            <S t=\"2000\" d=\"2000\"/>"), "{low_part}");
        assert!(!xml.contains("bafylate"), "{xml}");
        // A live window leaves out the lower layer's segments before it; there the late layer
        // covers the window and is listed.
        let live = live_set_at(&set, 1, "/ipfs/", "", NOW);
        assert!(live.contains("bafyseg2") && !live.contains("bafyseg1") && live.contains("bafylow2") && !live.contains("bafylow1\""), "{live}");
        assert!(live.contains("bafylate1") && !live.contains("bafylate0\""), "{live}");
    }

}
