//! Every recording of a stream, not only the latest: `GET /api/streams/{stream}/recordings`,
//! `/replay/{stream}/{id}/vod.m3u8`, and `GET /api/streams/{stream}/recordings/{id}/download`, a
//! clip cut at segment boundaries (each segment starts with a keyframe) from the archived files,
//! without re-encoding. A recording's `id` is its start in milliseconds since the Unix epoch.

use axum::Json;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use relaycast_archive::manifest::rfc3339_ms;
use relaycast_archive::{Container, Manifest};
use serde::{Deserialize, Serialize};

use crate::RecordingIndex;
use crate::routes::{ArchiveState, admit, playlist, uri_suffix};

/// One recording in `GET /api/streams/{stream}/recordings`.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordingSummary {
    /// The recording's id: its start, milliseconds since the Unix epoch.
    pub id: String,
    /// Wall-clock start (RFC 3339, UTC).
    pub started: String,
    /// Wall-clock end (RFC 3339, UTC) once the recording is over; null while live.
    pub ended: Option<String>,
    /// Seconds of media archived.
    pub duration: f64,
    /// Root CID of its VOD directory once over.
    pub vod_cid: Option<String>,
    /// Segments archived.
    pub segments: usize,
    /// Codecs (`vp8,opus`, `avc1.…,opus`, `opus`).
    pub codecs: Option<String>,
    /// Kept whatever the retention limits (admin API).
    #[serde(default)]
    pub pinned: bool,
}

/// Body of `GET /api/streams/{stream}/recordings`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordingsResponse {
    /// Stream name.
    pub stream: String,
    /// Oldest first.
    pub recordings: Vec<RecordingSummary>,
}

/// When a recording ended (ms since the Unix epoch): its last segment's end, else its start.
pub fn ended_unix_ms(ix: &RecordingIndex) -> u64 {
    ix.manifest
        .as_ref()
        .and_then(|m| m.segments.last())
        .map_or(ix.started_unix_ms, |s| s.start_unix_ms.saturating_add((s.duration * 1000.0).round() as u64))
}

/// The summary of one recording.
pub fn summary(ix: &RecordingIndex) -> RecordingSummary {
    let m = ix.manifest.as_ref();
    let duration = m.map_or(0.0, Manifest::duration);
    let over = ix.vod.is_some() || m.is_some_and(|m| m.ended);
    let ended = over.then(|| rfc3339_ms(ended_unix_ms(ix)));
    RecordingSummary {
        id: ix.started_unix_ms.to_string(),
        started: rfc3339_ms(ix.started_unix_ms),
        ended,
        duration,
        vod_cid: ix.vod.clone(),
        segments: m.map_or(0, |m| m.segments.len()),
        codecs: m.map(|m| m.codecs.clone()),
        pinned: ix.pinned,
    }
}

fn bad_request(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

fn no_recording(stream: &str, id: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no recording {id} of stream {stream:?}\n")).into_response()
}

/// Runs a disk read off the runtime; `None` if the task failed.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// `GET /api/streams/{stream}/recordings`: every recording of the stream this node holds.
pub async fn list(
    State(st): State<ArchiveState>,
    Path(stream): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let a = st.archiver.clone();
    let name = stream.clone();
    let Some(found) = blocking(move || a.recordings_of(&name)).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let recordings = found.iter().map(summary).collect();
    Json(RecordingsResponse { stream, recordings }).into_response()
}

async fn find(st: &ArchiveState, stream: &str, id: &str) -> Result<RecordingIndex, Response> {
    let Ok(n) = id.parse::<u64>() else {
        return Err(bad_request("a recording id is its start in milliseconds since the Unix epoch"));
    };
    let a = st.archiver.clone();
    let name = stream.to_owned();
    blocking(move || a.recording_by_id(&name, n)).await.flatten().ok_or_else(|| no_recording(stream, id))
}

/// `GET /replay/{stream}/{id}/vod.m3u8`: the segment list of one recording.
pub async fn vod(
    State(st): State<ArchiveState>,
    Path((stream, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let ix = match find(&st, &stream, &id).await {
        Ok(ix) => ix,
        Err(r) => return r,
    };
    let suffix = uri_suffix(&st, &headers, &uri);
    // Several renditions: the multivariant playlist of `{id}/vod/{rid}.m3u8`.
    let main = ix.layer.clone().unwrap_or_else(|| "main".into());
    let variants = ix.variants(|rid| format!("vod/{}.m3u8{suffix}", rid.unwrap_or(&main)));
    if !variants.is_empty() {
        return playlist(relaycast_archive::playlist::multivariant(&variants));
    }
    let Some(mut m) = ix.manifest else { return no_recording(&stream, &id) };
    if ix.vod.is_some() {
        m.end();
    }
    playlist(relaycast_archive::playlist::vod_with_uris(&m, relaycast_archive::playlist::URI_PREFIX, &suffix))
}

/// `GET /replay/{stream}/{id}/vod/{rid}.m3u8`: one rendition's playlist of one recording.
pub async fn vod_variant(
    State(st): State<ArchiveState>,
    Path((stream, id, name)): Path<(String, String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let ix = match find(&st, &stream, &id).await {
        Ok(ix) => ix,
        Err(r) => return r,
    };
    crate::routes::variant_vod(&ix, &name, &uri_suffix(&st, &headers, &uri))
}

/// `GET /replay/{stream}/{id}/vod.mpd`: the MPEG-DASH MPD of one recording (static once over).
pub async fn vod_mpd(
    State(st): State<ArchiveState>,
    Path((stream, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let ix = match find(&st, &stream, &id).await {
        Ok(ix) => ix,
        Err(r) => return r,
    };
    let suffix = uri_suffix(&st, &headers, &uri);
    match crate::routes::mpd_of(&ix, false, &suffix) {
        Some(body) => crate::routes::mpd(body),
        None => no_recording(&stream, &id),
    }
}

async fn set_pinned(
    st: ArchiveState,
    stream: String,
    id: String,
    headers: HeaderMap,
    uri: axum::http::Uri,
    pinned: bool,
) -> Response {
    if let Err(e) = st.auth.check(&headers, Some(&uri), relaycast_signaling::auth::Need::Admin) {
        return e.into_response();
    }
    let Ok(n) = id.parse::<u64>() else {
        return bad_request("a recording id is its start in milliseconds since the Unix epoch");
    };
    let a = st.archiver.clone();
    let name = stream.clone();
    match blocking(move || a.set_pinned(&name, n, pinned)).await {
        Some(Ok(true)) => {
            tracing::info!(%stream, id = n, pinned, "recording pin changed");
            StatusCode::NO_CONTENT.into_response()
        }
        Some(Ok(false)) => no_recording(&stream, &id),
        Some(Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the recording's index: {e}\n")).into_response()
        }
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `PUT /api/admin/recordings/{stream}/{id}/pin` (admin token): retention keeps the recording.
pub async fn pin(
    State(st): State<ArchiveState>,
    Path((stream, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    set_pinned(st, stream, id, headers, uri, true).await
}

/// `DELETE /api/admin/recordings/{stream}/{id}/pin` (admin token): retention may delete it again.
pub async fn unpin(
    State(st): State<ArchiveState>,
    Path((stream, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    set_pinned(st, stream, id, headers, uri, false).await
}

/// Query of the download route: seconds from the recording's start.
#[derive(Debug, Deserialize)]
pub struct ClipQuery {
    /// Start of the clip (default 0); the clip starts at the keyframe at or before it.
    pub from: Option<f64>,
    /// End of the clip (default the end); the clip ends with the segment holding it.
    pub to: Option<f64>,
}

/// The files of a clip: the init segment's CID, then segment CIDs, and the clip's actual span in
/// seconds from the recording's start. Segments that follow a change of init segment (a new
/// resolution) end the clip: one file has one init segment.
#[derive(Debug, PartialEq)]
pub struct Clip {
    /// Init segment CID.
    pub init: String,
    /// Media segment CIDs in order.
    pub segments: Vec<String>,
    /// Start of the first segment.
    pub from: f64,
    /// End of the last segment.
    pub to: f64,
}

/// The segments of `m` overlapping `[from, to)` (seconds from its start), cut at segment
/// boundaries; `None` when no segment overlaps.
pub fn clip(m: &Manifest, from: f64, to: f64) -> Option<Clip> {
    let mut at = 0.0;
    let mut out: Option<Clip> = None;
    for s in &m.segments {
        let (start, end) = (at, at + s.duration);
        at = end;
        if end <= from || start >= to {
            continue;
        }
        let init = m.init_of(s);
        match out.as_mut() {
            None => out = Some(Clip { init: init.to_owned(), segments: vec![s.cid.clone()], from: start, to: end }),
            Some(c) if c.init == init => {
                c.segments.push(s.cid.clone());
                c.to = end;
            }
            Some(_) => break,
        }
    }
    out
}

/// `GET /api/streams/{stream}/recordings/{id}/download?from=SECONDS&to=SECONDS`: one file (MP4,
/// or WebM for VP8) of the recording's init segment and the segments overlapping the range,
/// streamed from the block store. `X-Clip-From` / `X-Clip-To` give the span it holds.
pub async fn download(
    State(st): State<ArchiveState>,
    Path((stream, id)): Path<(String, String)>,
    Query(q): Query<ClipQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = admit(&st, &stream, &headers, &uri) {
        return *r;
    }
    let from = q.from.unwrap_or(0.0);
    let to = q.to.unwrap_or(f64::INFINITY);
    if !from.is_finite() || from < 0.0 || to.is_nan() || to <= from {
        return bad_request("from and to are seconds from the recording's start, 0 <= from < to");
    }
    let ix = match find(&st, &stream, &id).await {
        Ok(ix) => ix,
        Err(r) => return r,
    };
    let Some(m) = ix.manifest.as_ref() else { return no_recording(&stream, &id) };
    let Some(c) = clip(m, from, to) else {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("the recording lasts {:.3} s: nothing from {from} s\n", m.duration()),
        )
            .into_response();
    };
    let container = Container::of_codecs(&m.codecs);
    let size_of = |cid: &str| ix.files.iter().find(|f| f.cid == cid).map(|f| f.size);
    let mut cids = Vec::with_capacity(c.segments.len() + 1);
    cids.push(c.init.clone());
    cids.extend(c.segments.iter().cloned());
    let mut parsed = Vec::with_capacity(cids.len());
    let mut length = 0u64;
    for cid in &cids {
        let (Ok(p), Some(size)) = (cid.parse::<relaycast_ipfs::Cid>(), size_of(cid)) else {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("the recording's index does not list {cid}\n"))
                .into_response();
        };
        if !st.archiver.store().has(&p) {
            return (StatusCode::NOT_FOUND, format!("{cid} of this recording is not held here\n")).into_response();
        }
        length = length.saturating_add(size);
        parsed.push((p, size));
    }
    // Read block by block on a blocking thread; the channel bounds what is buffered.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let store = st.archiver.store().clone();
    tokio::task::spawn_blocking(move || {
        for (cid, size) in parsed {
            let mut send = |b: &[u8]| tx.blocking_send(Ok(Bytes::copy_from_slice(b))).is_ok();
            if let Err(e) = relaycast_ipfs::exporter::read_range(&store, &cid, 0, size, &mut send) {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        }
    });
    let stream_body = tokio_stream::wrappers::ReceiverStream::new(rx);
    let (ext, mime) = match container {
        Container::Fmp4 => ("mp4", if m.codecs == "opus" { "audio/mp4" } else { "video/mp4" }),
        Container::Webm => ("webm", "video/webm"),
    };
    let mut r = Response::new(Body::from_stream(stream_body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{stream}-{id}.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", c.from)) {
        h.insert("x-clip-from", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", c.to)) {
        h.insert("x-clip-to", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn manifest() -> Manifest {
        let mut m = Manifest::new("init0", "vp8,opus");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (i, d) in [2.0, 2.0, 1.5, 2.0].iter().enumerate() {
            let init = if i == 3 { "init1" } else { "init0" };
            m.push_segment(i as u64, format!("s{i}"), Duration::from_secs_f64(*d), t0, init);
        }
        m
    }

    #[test]
    fn a_clip_starts_at_the_segment_holding_from_and_ends_with_the_one_holding_to() {
        let m = manifest();
        let c = clip(&m, 2.5, 4.2).expect("clip");
        assert_eq!(c, Clip { init: "init0".into(), segments: vec!["s1".into(), "s2".into()], from: 2.0, to: 5.5 });
        let c = clip(&m, 0.0, f64::INFINITY).expect("clip");
        assert_eq!(c.segments, ["s0", "s1", "s2"], "a new init segment ends the clip");
        assert_eq!(clip(&m, 5.5, 9.0).map(|c| c.init), Some("init1".to_owned()));
        assert!(clip(&m, 7.5, 9.0).is_none());
        // A boundary belongs to the segment it starts.
        assert_eq!(clip(&m, 4.0, 4.0001).map(|c| c.segments), Some(vec!["s2".to_owned()]));
    }
}
