//! Archive HTTP routes: `/api/streams/{stream}/archive`, `/replay/{stream}/live.m3u8` and
//! `/replay/{stream}/vod.m3u8` (segments themselves are served by the gateway at `/ipfs/{cid}`);
//! every recording of a stream is listed, played and cut by [`crate::recordings`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use relaycast_signaling::auth::{Auth, Need};

use crate::stats::ArchiveStats;
use crate::{Archiver, LIVE_WINDOW};

/// Finds the HTTP base URL of the node a stream originates at (the mesh's stream announcement).
pub type OriginLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the archive routes share.
#[derive(Clone)]
pub struct ArchiveState {
    pub(crate) archiver: Arc<Archiver>,
    origin: Option<OriginLookup>,
    pub(crate) auth: Auth,
}

/// Routes of the archive. With `origin`, a node without a recording of a stream (a relay)
/// redirects to the archive of the stream's origin node. With `--watch-auth`, `auth` asks for a
/// `watch` grant (Bearer header or `?token=`).
pub fn routes(archiver: Arc<Archiver>, origin: Option<OriginLookup>, auth: Auth) -> Router {
    Router::new()
        .route("/api/streams/{stream}/archive", get(archive))
        .route("/replay/{stream}/live.m3u8", get(live))
        .route("/replay/{stream}/vod.m3u8", get(vod))
        .route("/replay/{stream}/live.mpd", get(live_mpd))
        .route("/replay/{stream}/vod.mpd", get(vod_mpd))
        .route("/replay/{stream}/ll/{name}", get(edge_file))
        .route("/replay/{stream}/live/{variant}", get(live_variant))
        .route("/replay/{stream}/vod/{variant}", get(vod_variant))
        .route("/api/streams/{stream}/recordings", get(crate::recordings::list))
        .route("/api/streams/{stream}/recordings/{id}/download", get(crate::recordings::download))
        .route("/replay/{stream}/{id}/vod.m3u8", get(crate::recordings::vod))
        .route("/replay/{stream}/{id}/vod/{variant}", get(crate::recordings::vod_variant))
        .route("/replay/{stream}/{id}/vod.mpd", get(crate::recordings::vod_mpd))
        .route("/api/admin/recordings/{stream}/{id}/pin", axum::routing::put(crate::recordings::pin).delete(crate::recordings::unpin))
        .with_state(ArchiveState { archiver, origin, auth })
}

/// One segment in `GET /api/streams/{stream}/archive`.
#[derive(Debug, Serialize)]
pub struct ArchiveSegment {
    /// Media sequence number.
    pub seq: u64,
    /// CID of the segment file.
    pub cid: String,
    /// Duration in seconds.
    pub duration: f64,
    /// Wall-clock start (RFC 3339, UTC).
    pub start: String,
    /// Init segment CID, when it differs from the recording's first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    /// Wall-clock start in milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Peer ids of the mesh nodes known to hold the segment: the origin and every node that
    /// announced a copy.
    pub providers: Vec<String>,
    /// The origin's Ed25519 signature of the segment's announcement (hex; see
    /// `relaycast_mesh::gossip::verify_segment`), so that any node can copy the recording from
    /// any holder and check it. Absent when unknown.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sig: String,
}

/// Body of `GET /api/streams/{stream}/archive`.
#[derive(Debug, Serialize)]
pub struct ArchiveResponse {
    /// Stream name.
    pub stream: String,
    /// CID of the init segment (null until the first one is stored).
    pub init: Option<String>,
    /// RFC 6381 codecs of the recording.
    pub codecs: Option<String>,
    /// Archived segments in order.
    pub segments: Vec<ArchiveSegment>,
    /// True once the stream ended.
    pub ended: bool,
    /// Root CID of the VOD directory once the stream ended.
    pub vod: Option<String>,
    /// Wall-clock start of the recording, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The simulcast layer of the main rendition (`q`, `h`, `f`): the highest recorded.
    pub layer: Option<String>,
    /// The other simulcast layers recorded, each a variant of the multivariant playlists.
    pub renditions: Vec<String>,
    /// Segment close → CID announced, milliseconds, over this recording's segments.
    pub announce_ms: AnnounceStats,
}

/// Distribution of segment-close-to-announce times.
#[derive(Debug, Serialize)]
pub struct AnnounceStats {
    /// Segments measured (since the node started).
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

fn announce_stats(v: &[f64]) -> AnnounceStats {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * p).round() as usize] };
    AnnounceStats { count: v.len(), p50: q(0.5), p99: q(0.99), max: v.last().copied().unwrap_or(0.0) }
}

/// 404, or a 307 to the same path at the stream's origin node when the mesh knows it.
fn not_here(st: &ArchiveState, stream: &str, uri: &axum::http::Uri) -> Response {
    if let Some(base) = st.origin.as_ref().and_then(|f| f(stream)) {
        // The query (and a `?token=` in it) goes along to the origin node.
        let to = match uri.query() {
            Some(q) => format!("{}{}?{q}", base.trim_end_matches('/'), uri.path()),
            None => format!("{}{}", base.trim_end_matches('/'), uri.path()),
        };
        if let Ok(v) = axum::http::HeaderValue::from_str(&to) {
            let mut r = (StatusCode::TEMPORARY_REDIRECT, "archived at the stream's origin node\n").into_response();
            r.headers_mut().insert(header::LOCATION, v);
            return r;
        }
    }
    (StatusCode::NOT_FOUND, format!("no archive for stream {stream:?}\n")).into_response()
}

fn valid(stream: &str) -> bool {
    relaycast_signaling::sessions::valid_stream_name(stream)
}

/// A valid stream name, and under `--watch-auth` a watch grant for it; else the error response.
pub(crate) fn admit(st: &ArchiveState, stream: &str, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), Box<Response>> {
    if !valid(stream) {
        return Err(Box::new((StatusCode::BAD_REQUEST, "invalid stream name\n").into_response()));
    }
    st.auth.check(headers, Some(uri), Need::Watch(stream)).map(|_| ()).map_err(|e| Box::new(e.into_response()))
}

/// `GET /api/streams/{stream}/archive`: init CID, segments, and the VOD root once ended.
async fn archive(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let a = &st.archiver;
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let Some(ix) = a.recording(&stream) else { return not_here(&st, &stream, &uri) };
    let m = ix.manifest.as_ref();
    let segments: Vec<ArchiveSegment> = m
        .map(|m| {
            let providers = a.providers(&stream, m.segments.iter().map(|s| s.seq));
            let sigs = a.signatures(&stream, m);
            m.segments
                .iter()
                .zip(providers)
                .zip(sigs)
                .map(|((s, providers), sig)| ArchiveSegment {
                    seq: s.seq,
                    cid: s.cid.clone(),
                    duration: s.duration,
                    start: s.start.clone(),
                    init: s.init.clone(),
                    start_unix_ms: s.start_unix_ms,
                    providers,
                    sig,
                })
                .collect()
        })
        .unwrap_or_default();
    Json(ArchiveResponse {
        stream,
        init: m.map(|m| m.init.clone()),
        codecs: m.map(|m| m.codecs.clone()),
        segments,
        ended: ix.vod.is_some() || m.is_some_and(|m| m.ended),
        vod: ix.vod.clone(),
        started_unix_ms: ix.started_unix_ms,
        layer: ix.layer.clone(),
        renditions: ix.renditions.iter().filter(|r| r.manifest.is_some()).map(|r| r.rid.clone()).collect(),
        announce_ms: announce_stats(&ix.announce_ms),
    })
    .into_response()
}

pub(crate) fn playlist(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl"), (header::CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The URI suffix of segments in a playlist: under `--watch-auth`, `?token=` with the token the
/// playlist request carried (header or query), so that players that cannot set headers (native
/// HLS, plain `<video>`) fetch the segments from the gateway with it.
pub(crate) fn uri_suffix(st: &ArchiveState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    if !st.auth.watch_auth() {
        return String::new();
    }
    let token = match relaycast_signaling::auth::bearer(headers) {
        Ok(Some(t)) => Some(t.to_owned()),
        _ => relaycast_signaling::auth::query_token(uri),
    };
    token.map(|t| format!("?token={}", percent_encode(&t))).unwrap_or_default()
}

/// `s` with every byte but RFC 3986 unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// How long a blocking playlist reload or a preload-hinted part request waits (three target
/// durations of the 2 s segments).
pub const BLOCKING_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// The low-latency HLS delivery directives of a playlist request (`_HLS_msn`, `_HLS_part`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Directives {
    msn: Option<u64>,
    part: Option<u32>,
}

/// Parses the query's delivery directives; an unparsable value, or `_HLS_part` without
/// `_HLS_msn`, is an error (RFC 8216bis §6.2.5.2: 400).
fn directives(uri: &axum::http::Uri) -> Result<Directives, &'static str> {
    let mut d = Directives::default();
    for pair in uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "_HLS_msn" => d.msn = Some(v.parse().map_err(|_| "_HLS_msn is not a number\n")?),
            "_HLS_part" => d.part = Some(v.parse().map_err(|_| "_HLS_part is not a number\n")?),
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err("_HLS_part needs _HLS_msn\n");
    }
    Ok(d)
}

/// Counts and logs (at debug: players ask for parts that just fell out of the edge all the time)
/// a refused low-latency request.
fn ll_refused(st: &ArchiveState, stream: &str, why: &'static str) {
    ArchiveStats::count(&st.archiver.stats().ll_refused);
    tracing::debug!(stream, why, "low-latency HLS request refused");
}

/// The live recording of `stream` made here with its edge (parts: fMP4 fragments, or WebM
/// clusters).
fn low_latency(st: &ArchiveState, stream: &str) -> Option<(Arc<crate::Edge>, relaycast_archive::Manifest)> {
    let edge = st.archiver.edge(stream)?;
    let m = st.archiver.own_recording(stream)?.manifest?;
    Some((edge, m))
}

/// The multivariant playlist of the recording of `stream` made here when it has several
/// renditions: each variant `{kind}/{rid}.m3u8` (`kind` is `live` or `vod`).
fn master(st: &ArchiveState, stream: &str, kind: &str, suffix: &str) -> Option<Response> {
    let ix = st.archiver.own_recording(stream)?;
    let main = ix.layer.clone().unwrap_or_else(|| "main".into());
    let variants = ix.variants(|rid| format!("{kind}/{}.m3u8{suffix}", rid.unwrap_or(&main)));
    (!variants.is_empty()).then(|| playlist(relaycast_archive::playlist::multivariant(&variants)))
}

/// The VOD playlist of the rendition a variant playlist name (`{rid}.m3u8`) asks for in `ix`.
pub(crate) fn variant_vod(ix: &crate::RecordingIndex, name: &str, suffix: &str) -> Response {
    match name.strip_suffix(".m3u8").and_then(|rid| ix.rendition(rid)) {
        Some(m) => playlist(relaycast_archive::playlist::vod_with_uris(&m, relaycast_archive::playlist::URI_PREFIX, suffix)),
        None => (StatusCode::NOT_FOUND, "no such rendition\n").into_response(),
    }
}

/// `GET /replay/{stream}/live.m3u8`: with several renditions, the multivariant playlist of the
/// `live/{rid}.m3u8` variants; else the main rendition's live playlist (see [`live_media`]).
async fn live(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    if let Some(m) = master(&st, &stream, "live", &uri_suffix(&st, &headers, &uri)) {
        return m;
    }
    live_media(st, stream, uri, headers).await
}

/// `GET /replay/{stream}/live/{rid}.m3u8`: one rendition's live playlist (the main one's is
/// low-latency).
async fn live_variant(
    State(st): State<ArchiveState>,
    Path((stream, name)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let Some(ix) = st.archiver.own_recording(&stream) else { return (StatusCode::NOT_FOUND, "no such rendition\n").into_response() };
    let rid = name.strip_suffix(".m3u8").unwrap_or("");
    if rid == ix.layer.as_deref().unwrap_or("main") {
        return live_media(st, stream, uri, headers).await;
    }
    match ix.rendition(rid) {
        Some(m) => {
            let suffix = uri_suffix(&st, &headers, &uri);
            playlist(relaycast_archive::playlist::live_with_uris(&m, LIVE_WINDOW, relaycast_archive::playlist::URI_PREFIX, &suffix))
        }
        None => (StatusCode::NOT_FOUND, "no such rendition\n").into_response(),
    }
}

/// `GET /replay/{stream}/vod/{rid}.m3u8`: one rendition's VOD playlist.
async fn vod_variant(
    State(st): State<ArchiveState>,
    Path((stream, name)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    match st.archiver.own_recording(&stream) {
        Some(ix) => variant_vod(&ix, &name, &uri_suffix(&st, &headers, &uri)),
        None => (StatusCode::NOT_FOUND, "no such rendition\n").into_response(),
    }
}

/// The main rendition's live playlist: a sliding window of the latest segments. For a live fMP4
/// recording made here, a low-latency playlist (parts, preload hint, blocking reloads with
/// `_HLS_msn` / `_HLS_part`).
async fn live_media(st: ArchiveState, stream: String, uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let a = &st.archiver;
    let want = match directives(&uri) {
        Ok(d) => d,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    if let Some((edge, mut m)) = low_latency(&st, &stream) {
        let suffix = uri_suffix(&st, &headers, &uri);
        let edge_prefix = format!("/replay/{stream}/ll/");
        if let Some(msn) = want.msn {
            let mut changed = edge.subscribe();
            let deadline = tokio::time::Instant::now() + BLOCKING_WAIT;
            loop {
                {
                    let e = edge.lock();
                    // A request more than two segments past the newest can never be answered in
                    // time (§6.2.5.2).
                    if e.last_seq(&m).is_some_and(|last| msn > last.saturating_add(2)) {
                        ll_refused(&st, &stream, "blocking reload too far ahead");
                        return (StatusCode::BAD_REQUEST, "_HLS_msn is more than two segments ahead of the playlist\n").into_response();
                    }
                    if e.contains(&m, msn, want.part) {
                        break;
                    }
                }
                match tokio::time::timeout_at(deadline, changed.changed()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        ll_refused(&st, &stream, "blocking reload timed out");
                        return (StatusCode::SERVICE_UNAVAILABLE, "the requested part did not appear in time\n").into_response();
                    }
                }
                match low_latency(&st, &stream) {
                    Some((_, now)) => m = now,
                    None => break,
                }
            }
        }
        let body = edge.lock().render(&m, LIVE_WINDOW, relaycast_archive::playlist::URI_PREFIX, &edge_prefix, &suffix);
        return playlist(body);
    }
    match a.recording(&stream).and_then(|ix| ix.manifest) {
        Some(m) => {
            let suffix = uri_suffix(&st, &headers, &uri);
            playlist(relaycast_archive::playlist::live_with_uris(&m, LIVE_WINDOW, relaycast_archive::playlist::URI_PREFIX, &suffix))
        }
        None => not_here(&st, &stream, &uri),
    }
}

/// `GET /replay/{stream}/ll/{seq}.{part}.m4s` (`.webm` for WebM): a part, from the live edge in
/// memory. The next
/// part (the playlist's preload hint) is waited for; anything else missing is 404.
async fn edge_file(
    State(st): State<ArchiveState>,
    Path((stream, name)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let (stem, content_type) = match (name.strip_suffix(".m4s"), name.strip_suffix(".webm")) {
        (Some(stem), _) => (Some(stem), "video/mp4"),
        (_, Some(stem)) => (Some(stem), "video/webm"),
        _ => (None, ""),
    };
    let parsed = stem.and_then(|stem| stem.split_once('.')).and_then(|(seq, part)| Some((seq.parse::<u64>().ok()?, part.parse::<u32>().ok()?)));
    let Some((seq, part)) = parsed else { return (StatusCode::NOT_FOUND, "no such file\n").into_response() };
    let Some(edge) = st.archiver.edge(&stream) else { return (StatusCode::NOT_FOUND, "no live recording of this stream here\n").into_response() };
    let mut changed = edge.subscribe();
    let deadline = tokio::time::Instant::now() + BLOCKING_WAIT;
    loop {
        let manifest = st.archiver.own_recording(&stream).and_then(|ix| ix.manifest);
        {
            let e = edge.lock();
            if let Some(bytes) = e.part(seq, part) {
                return ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], axum::body::Bytes::from_owner(bytes)).into_response();
            }
            // Only the part the playlist hints at next (or the first of the next segment while
            // the last one is being stored) is worth waiting for.
            let next = manifest.as_ref().and_then(|m| e.last_seq(m).map(|last| (e.next_part(m), last)));
            let awaited = match next {
                Some((Some(hint), _)) => hint == (seq, part),
                Some((None, last)) => (seq, part) == (last.saturating_add(1), 0),
                None => false,
            };
            if !awaited {
                ll_refused(&st, &stream, "part not at the live edge");
                return (StatusCode::NOT_FOUND, "not at the live edge\n").into_response();
            }
        }
        if !matches!(tokio::time::timeout_at(deadline, changed.changed()).await, Ok(Ok(()))) {
            ll_refused(&st, &stream, "hinted part timed out");
            return (StatusCode::NOT_FOUND, "the hinted part did not appear in time\n").into_response();
        }
    }
}

/// `GET /replay/{stream}/vod.m3u8`: every segment so far, with `#EXT-X-ENDLIST` once ended;
/// with several renditions, the multivariant playlist of the `vod/{rid}.m3u8` variants.
async fn vod(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let a = &st.archiver;
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    if let Some(m) = master(&st, &stream, "vod", &uri_suffix(&st, &headers, &uri)) {
        return m;
    }
    match a.recording(&stream) {
        Some(ix) => match ix.manifest {
            Some(mut m) => {
                if ix.vod.is_some() {
                    m.end();
                }
                let suffix = uri_suffix(&st, &headers, &uri);
                playlist(relaycast_archive::playlist::vod_with_uris(&m, relaycast_archive::playlist::URI_PREFIX, &suffix))
            }
            None => not_here(&st, &stream, &uri),
        },
        None => not_here(&st, &stream, &uri),
    }
}

/// An MPEG-DASH MPD response (`application/dash+xml`, not cached).
pub(crate) fn mpd(body: String) -> Response {
    ([(header::CONTENT_TYPE, relaycast_archive::dash::CONTENT_TYPE), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /replay/{stream}/live.mpd`: a dynamic MPEG-DASH MPD of the latest segments.
async fn live_mpd(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let suffix = uri_suffix(&st, &headers, &uri);
    match st.archiver.recording(&stream).and_then(|ix| mpd_of(&ix, true, &suffix)) {
        Some(body) => mpd(body),
        None => not_here(&st, &stream, &uri),
    }
}

/// The MPD of a recording (live: its live window): its main rendition. The other renditions'
/// segments start on their own keyframes, up to a frame apart from the main one's, and dash.js
/// stalls on the gap that leaves when it switches between them; the multivariant HLS playlists
/// carry them instead.
pub(crate) fn mpd_of(ix: &crate::RecordingIndex, live: bool, suffix: &str) -> Option<String> {
    let mut layers = ix.layers();
    layers.truncate(1);
    let set: Vec<relaycast_archive::dash::Rendition<'_>> =
        layers.iter().map(|(m, bandwidth)| relaycast_archive::dash::Rendition { manifest: m, bandwidth: *bandwidth }).collect();
    if set.is_empty() {
        return None;
    }
    let prefix = relaycast_archive::playlist::URI_PREFIX;
    Some(match live {
        true => relaycast_archive::dash::live_set(&set, LIVE_WINDOW, prefix, suffix),
        false => relaycast_archive::dash::vod_set(&set, prefix, suffix),
    })
}

/// `GET /replay/{stream}/vod.mpd`: every segment so far; a static MPD once ended.
async fn vod_mpd(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let suffix = uri_suffix(&st, &headers, &uri);
    match st.archiver.recording(&stream).and_then(|ix| mpd_of(&ix, false, &suffix)) {
        Some(body) => mpd(body),
        None => not_here(&st, &stream, &uri),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_directives_are_parsed_and_a_part_needs_a_sequence_number() {
        let d = |q: &str| super::directives(&format!("/replay/s/live.m3u8{q}").parse().unwrap());
        assert_eq!(d(""), Ok(super::Directives::default()));
        assert_eq!(d("?_HLS_msn=12&_HLS_part=3&token=x"), Ok(super::Directives { msn: Some(12), part: Some(3) }));
        assert_eq!(d("?_HLS_msn=12"), Ok(super::Directives { msn: Some(12), part: None }));
        assert!(d("?_HLS_part=3").is_err());
        assert!(d("?_HLS_msn=-1").is_err());
        assert!(d("?_HLS_msn=1&_HLS_part=x").is_err());
    }

    #[test]
    fn tokens_are_percent_encoded_for_a_query() {
        assert_eq!(super::percent_encode("eyJ.a-b_c~"), "eyJ.a-b_c~");
        assert_eq!(super::percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
