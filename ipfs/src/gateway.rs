//! Trustless (and minimal path) HTTP gateway over the blockstore, as an axum router.
//!
//! `GET`/`HEAD /ipfs/{cid}[/{name}...]`:
//! - `Accept: application/vnd.ipld.raw` or `?format=raw`: the single block, verified.
//! - `Accept: application/vnd.ipld.car` or `?format=car`: the DAG as a CARv1 stream
//!   (`order=dfs`, `dups=n`), after the blocks of any path traversed.
//! - otherwise the UnixFS file bytes (with single `Range` requests), or a plain-text listing
//!   for a directory.
//!
//! [`router_with_access`] puts a [`GatewayAccess`] check (for example a token for the stream a
//! recording belongs to) before every read; its successful responses are `Cache-Control:
//! private` so that shared caches do not hand them to others.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cid::Cid;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::blockstore::Blockstore;
use crate::car::{self, CarError, CarWriter};
use crate::exporter::{self, ExportError, Kind};

/// `Cache-Control` of every successful response: content under a CID never changes.
pub const IMMUTABLE: &str = "public, max-age=29030400, immutable";
/// `Cache-Control` of successful responses behind a [`GatewayAccess`] check.
pub const PRIVATE_IMMUTABLE: &str = "private, max-age=29030400, immutable";
/// `Content-Type` of CAR responses.
pub const CAR_CONTENT_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";
/// `Content-Type` of raw block responses.
pub const RAW_CONTENT_TYPE: &str = "application/vnd.ipld.raw";

const STREAM_CHUNK: usize = 256 * 1024;

/// Decides who may read content through the gateway.
pub trait GatewayAccess: Send + Sync {
    /// `Ok` lets a request for the DAG under `cid` through; `Err` is the response sent instead.
    /// Called before the store is read; `uri` carries the query (a `?token=`).
    fn check(&self, cid: &Cid, headers: &HeaderMap, uri: &Uri) -> Result<(), Response>;
}

/// What the gateway handlers share.
#[derive(Clone)]
struct GatewayState {
    store: Arc<Blockstore>,
    access: Option<Arc<dyn GatewayAccess>>,
}

/// The gateway routes (`/ipfs/{cid}` and `/ipfs/{cid}/{*path}`) over `store`, open to everyone.
pub fn router(store: Arc<Blockstore>) -> Router {
    routes(GatewayState { store, access: None })
}

/// The gateway routes over `store`, each request checked by `access` first.
pub fn router_with_access(store: Arc<Blockstore>, access: Arc<dyn GatewayAccess>) -> Router {
    routes(GatewayState { store, access: Some(access) })
}

fn routes(state: GatewayState) -> Router {
    Router::new()
        .route("/ipfs/{cid}", get(root_handler))
        .route("/ipfs/{cid}/{*path}", get(path_handler))
        .with_state(state)
}

async fn root_handler(
    State(st): State<GatewayState>,
    Path(cid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    serve(st, cid, String::new(), query, method, uri, headers).await
}

async fn path_handler(
    State(st): State<GatewayState>,
    Path((cid, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    serve(st, cid, path, query, method, uri, headers).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Raw,
    Car,
    File,
}

/// Picks the response format: `?format=` wins over `Accept`; the first supported type listed in `Accept` wins.
fn negotiate(query: &HashMap<String, String>, headers: &HeaderMap) -> Result<Format, String> {
    if let Some(f) = query.get("format") {
        return match f.as_str() {
            "raw" => Ok(Format::Raw),
            "car" => Ok(Format::Car),
            other => Err(format!("unsupported format {other:?} (raw or car)")),
        };
    }
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mime = item.split(';').next().unwrap_or("").trim();
            if mime.eq_ignore_ascii_case(RAW_CONTENT_TYPE) {
                return Ok(Format::Raw);
            }
            if mime.eq_ignore_ascii_case("application/vnd.ipld.car") {
                if let Some(v) = item
                    .split(';')
                    .skip(1)
                    .find_map(|p| p.trim().strip_prefix("version="))
                    && v.trim() != "1"
                {
                    return Err(format!("unsupported CAR version {v}"));
                }
                return Ok(Format::Car);
            }
        }
    }
    Ok(Format::File)
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut r = (status, msg.into() + "\n").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn error_response(cid: &Cid, e: &ExportError) -> Response {
    match e {
        ExportError::Missing(c) if c == cid => {
            text(StatusCode::NOT_FOUND, format!("{cid} not found"))
        }
        ExportError::Missing(c) => text(StatusCode::BAD_GATEWAY, format!("block {c} is missing")),
        ExportError::UnsupportedCodec(c) => text(
            StatusCode::NOT_IMPLEMENTED,
            format!("unsupported codec {c:#x}"),
        ),
        other => {
            warn!(%cid, error = %other, "gateway read failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "gateway task failed"))
}

fn common_headers(h: &mut HeaderMap, ipfs_path: &str, etag: &str) {
    let mut set = |name, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set(header::ETAG, etag);
    set(header::CACHE_CONTROL, IMMUTABLE);
    set(header::HeaderName::from_static("x-ipfs-path"), ipfs_path);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::VARY, "Accept");
    set(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        "Content-Range, Content-Length, X-Ipfs-Path, X-Ipfs-Roots, ETag",
    );
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

async fn serve(
    st: GatewayState,
    cid_str: String,
    path: String,
    query: HashMap<String, String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let GatewayState { store, access } = st;
    let cid: Cid = match cid_str.parse() {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid CID {cid_str:?}: {e}"),
            );
        }
    };
    if let Some(access) = &access
        && let Err(refused) = access.check(&cid, &headers, &uri)
    {
        return refused;
    }
    let mut resp = serve_checked(store, cid, path, query, method, headers).await;
    if access.is_some() && resp.headers().contains_key(header::CACHE_CONTROL) {
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(PRIVATE_IMMUTABLE));
    }
    resp
}

/// Serves a request that passed the access check.
async fn serve_checked(
    store: Arc<Blockstore>,
    cid: Cid,
    path: String,
    query: HashMap<String, String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let format = match negotiate(&query, &headers) {
        Ok(f) => f,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };
    let head = method == Method::HEAD;
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let ipfs_path = if segments.is_empty() {
        format!("/ipfs/{cid}")
    } else {
        format!("/ipfs/{cid}/{}", segments.join("/"))
    };
    debug!(%cid, ?format, path = %path, head, "gateway request");
    match format {
        Format::Raw => {
            if !segments.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "raw blocks are served only for /ipfs/{cid}",
                );
            }
            serve_raw(store, cid, &ipfs_path, head, &headers).await
        }
        Format::Car => serve_car(store, cid, segments, &ipfs_path, head, &headers).await,
        Format::File => serve_file(store, cid, segments, &ipfs_path, head, &headers).await,
    }
}

async fn serve_raw(
    store: Arc<Blockstore>,
    cid: Cid,
    ipfs_path: &str,
    head: bool,
    req: &HeaderMap,
) -> Response {
    let got = match blocking(move || store.get(&cid)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let bytes = match got {
        Ok(Some(b)) => b,
        Ok(None) => return text(StatusCode::NOT_FOUND, format!("{cid} not found")),
        Err(e) => return error_response(&cid, &ExportError::Store(e)),
    };
    let etag = format!("\"{cid}.raw\"");
    let mut resp = if not_modified(req, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let len = bytes.len();
        let mut r = if head {
            Response::new(Body::empty())
        } else {
            Response::new(Body::from(bytes))
        };
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(RAW_CONTENT_TYPE),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{cid}.bin\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        r
    };
    common_headers(resp.headers_mut(), ipfs_path, &etag);
    resp
}

/// Resolves `segments` below `cid`; the response for a missing root or name on failure.
async fn resolve(
    store: &Arc<Blockstore>,
    cid: Cid,
    segments: Vec<String>,
) -> Result<Vec<Cid>, Response> {
    let s = store.clone();
    let result = blocking(move || {
        if !s.has(&cid) {
            return Ok(None);
        }
        let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
        exporter::resolve(&s, &cid, &refs)
    })
    .await?;
    match result {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(text(
            StatusCode::NOT_FOUND,
            format!("{cid} or a name under it not found"),
        )),
        Err(e) => Err(error_response(&cid, &e)),
    }
}

async fn serve_car(
    store: Arc<Blockstore>,
    cid: Cid,
    segments: Vec<String>,
    ipfs_path: &str,
    head: bool,
    req: &HeaderMap,
) -> Response {
    let trail = match resolve(&store, cid, segments).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let target = *trail.last().unwrap_or(&cid);
    let roots = trail
        .iter()
        .map(Cid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let etag = format!("\"{target}.car\"");
    let mut resp = if not_modified(req, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = if head {
            Body::empty()
        } else {
            let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
            tokio::task::spawn_blocking(move || {
                let mut out = ChannelWriter::new(tx.clone());
                let result = (|| -> Result<(), CarError> {
                    let mut w = CarWriter::new(&mut out, &[cid])?;
                    for c in &trail[..trail.len() - 1] {
                        let bytes = store.get(c)?.ok_or(CarError::Missing(*c))?;
                        w.write_block(c, &bytes)?;
                    }
                    car::walk_dfs(&store, &target, |c, b| Ok(w.write_block(c, b)?))?;
                    w.finish()?;
                    Ok(())
                })();
                let result = result.and_then(|_| Ok(out.flush()?));
                if let Err(e) = result {
                    debug!(%cid, error = %e, "CAR stream ended early");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
            Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        };
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CAR_CONTENT_TYPE),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{target}.car\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
        r
    };
    common_headers(resp.headers_mut(), ipfs_path, &etag);
    if let Ok(v) = HeaderValue::from_str(&roots) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static("x-ipfs-roots"), v);
    }
    resp
}

/// A single byte range request resolved against a file of known size.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeReq {
    /// No (usable) `Range`: the whole file.
    Full,
    /// Bytes `[start, end)`.
    Part(u64, u64),
    /// The range lies outside the file.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n`; multiple or malformed ranges are ignored.
pub fn parse_range(value: Option<&str>, size: u64) -> RangeReq {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if size == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Part(size.saturating_sub(n), size),
            None => RangeReq::Full,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeReq::Full;
            };
            let end = if b.is_empty() {
                size
            } else {
                match parse(b) {
                    Some(last) if last >= start => last.saturating_add(1).min(size),
                    _ => return RangeReq::Full,
                }
            };
            if start >= size {
                RangeReq::Unsatisfiable
            } else {
                RangeReq::Part(start, end)
            }
        }
        (true, true) => RangeReq::Full,
    }
}

/// A media type from the file name, else from the first bytes, else `application/octet-stream`.
pub fn sniff_content_type(name: Option<&str>, head: &[u8]) -> &'static str {
    let ext = name
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    if let Some(t) = ext.as_deref().and_then(|e| match e {
        "m3u8" => Some("application/vnd.apple.mpegurl"),
        "mp4" | "m4s" | "m4v" | "cmfv" => Some("video/mp4"),
        "m4a" | "cmfa" => Some("audio/mp4"),
        "ts" => Some("video/mp2t"),
        "webm" => Some("video/webm"),
        "json" => Some("application/json"),
        "car" => Some("application/vnd.ipld.car"),
        "txt" => Some("text/plain; charset=utf-8"),
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        _ => None,
    }) {
        return t;
    }
    if head.starts_with(b"#EXTM3U") {
        return "application/vnd.apple.mpegurl";
    }
    if head.len() >= 8 && matches!(&head[4..8], b"ftyp" | b"styp" | b"moof" | b"sidx" | b"moov") {
        return "video/mp4";
    }
    // An EBML header (a WebM init segment) or a Matroska Cluster (a WebM media segment).
    if head.starts_with(b"\x1aE\xdf\xa3") || head.starts_with(b"\x1fC\xb6u") {
        return "video/webm";
    }
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if head.starts_with(b"\xff\xd8\xff") {
        return "image/jpeg";
    }
    let textual = |b: &[u8]| {
        // A multi-byte character may be cut at the end of the sniffed prefix.
        let valid = match std::str::from_utf8(b) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        };
        valid
            && !b
                .iter()
                .any(|&c| c < 0x20 && !matches!(c, b'\n' | b'\r' | b'\t'))
    };
    if !head.is_empty() && textual(head) {
        let first = head.iter().find(|c| !c.is_ascii_whitespace());
        if matches!(first, Some(b'{') | Some(b'[')) {
            return "application/json";
        }
        return "text/plain; charset=utf-8";
    }
    "application/octet-stream"
}

async fn serve_file(
    store: Arc<Blockstore>,
    cid: Cid,
    segments: Vec<String>,
    ipfs_path: &str,
    head: bool,
    req: &HeaderMap,
) -> Response {
    let name = segments.last().cloned();
    let trail = match resolve(&store, cid, segments).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let target = *trail.last().unwrap_or(&cid);
    let s = store.clone();
    let info = blocking(move || -> Result<Option<(Kind, Vec<u8>)>, ExportError> {
        let Some(kind) = exporter::stat(&s, &target)? else {
            return Ok(None);
        };
        let mut prefix = Vec::new();
        if let Kind::File { size } = kind {
            exporter::read_range(&s, &target, 0, size.min(512), &mut |b| {
                prefix.extend_from_slice(b);
                true
            })?;
        }
        Ok(Some((kind, prefix)))
    })
    .await;
    let (kind, prefix) = match info {
        Err(resp) => return resp,
        Ok(Err(e)) => return error_response(&target, &e),
        Ok(Ok(None)) => return text(StatusCode::NOT_FOUND, format!("{target} not found")),
        Ok(Ok(Some(x))) => x,
    };
    let etag = format!("\"{target}\"");
    let mut resp = match kind {
        Kind::Directory { links } => {
            let mut listing = String::new();
            for l in &links {
                listing.push_str(&format!(
                    "{}\t{}\t{}\n",
                    l.name,
                    l.hash,
                    l.tsize.unwrap_or(0)
                ));
            }
            let mut r = if head {
                Response::new(Body::empty())
            } else {
                Response::new(Body::from(listing.clone()))
            };
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(listing.len()));
            r
        }
        Kind::Other => return text(StatusCode::NOT_IMPLEMENTED, "unsupported UnixFS node type"),
        Kind::File { size } => {
            if not_modified(req, &etag) {
                StatusCode::NOT_MODIFIED.into_response()
            } else {
                let content_type = sniff_content_type(name.as_deref(), &prefix);
                let range = req.get(header::RANGE).and_then(|v| v.to_str().ok());
                let (status, start, end) = match parse_range(range, size) {
                    RangeReq::Full => (StatusCode::OK, 0, size),
                    RangeReq::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b),
                    RangeReq::Unsatisfiable => {
                        let mut r =
                            text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                            r.headers_mut().insert(header::CONTENT_RANGE, v);
                        }
                        common_headers(r.headers_mut(), ipfs_path, &etag);
                        return r;
                    }
                };
                let body = if head || start == end {
                    Body::empty()
                } else if end <= prefix.len() as u64 {
                    Body::from(prefix[start as usize..end as usize].to_vec())
                } else {
                    stream_file(store, target, start, end)
                };
                let mut r = Response::new(body);
                *r.status_mut() = status;
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
                h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                if status == StatusCode::PARTIAL_CONTENT
                    && let Ok(v) =
                        HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1))
                {
                    h.insert(header::CONTENT_RANGE, v);
                }
                r
            }
        }
    };
    common_headers(resp.headers_mut(), ipfs_path, &etag);
    if let Ok(v) = HeaderValue::from_str(
        &trail
            .iter()
            .map(Cid::to_string)
            .collect::<Vec<_>>()
            .join(","),
    ) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static("x-ipfs-roots"), v);
    }
    resp
}

fn stream_file(store: Arc<Blockstore>, cid: Cid, start: u64, end: u64) -> Body {
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter::new(tx.clone());
        let result =
            exporter::read_range(&store, &cid, start, end, &mut |b| out.write_all(b).is_ok());
        let result = result.and_then(|_| out.flush().map_err(|_| ExportError::Closed));
        match result {
            Ok(()) | Err(ExportError::Closed) => {}
            Err(e) => {
                warn!(%cid, error = %e, "file stream ended early");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Buffers writes into chunks sent to an HTTP body; fails once the body is dropped.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<std::io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(STREAM_CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(STREAM_CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= STREAM_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeReq::Part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeReq::Part(90, 100));
        assert_eq!(
            parse_range(Some("bytes=90-500"), 100),
            RangeReq::Part(90, 100)
        );
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeReq::Part(90, 100));
        assert_eq!(parse_range(Some("bytes=-500"), 100), RangeReq::Part(0, 100));
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeReq::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-1"), 100), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeReq::Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeReq::Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 100), RangeReq::Full);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            sniff_content_type(None, b"#EXTM3U\n#EXT-X-VERSION:7"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(sniff_content_type(None, b"\0\0\0\x18ftypiso6"), "video/mp4");
        assert_eq!(sniff_content_type(None, b"\x1a\x45\xdf\xa3\x9f"), "video/webm");
        assert_eq!(sniff_content_type(None, b"\x1f\x43\xb6\x75\x01"), "video/webm");
        assert_eq!(
            sniff_content_type(Some("seg-1.m4s"), b"\0\0\0\x18styp"),
            "video/mp4"
        );
        assert_eq!(
            sniff_content_type(Some("manifest.json"), b"{}"),
            "application/json"
        );
        assert_eq!(
            sniff_content_type(None, b"hello world"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(None, b"\x00\x01\x02"),
            "application/octet-stream"
        );
        assert_eq!(sniff_content_type(None, b""), "application/octet-stream");
        assert_eq!(
            sniff_content_type(Some("page.html"), b"<html>"),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn negotiation() {
        let q = HashMap::new();
        let mut h = HeaderMap::new();
        assert_eq!(negotiate(&q, &h), Ok(Format::File));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/vnd.ipld.car; version=1, application/vnd.ipld.raw",
            ),
        );
        assert_eq!(negotiate(&q, &h), Ok(Format::Car));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.ipld.car;version=2"),
        );
        assert!(negotiate(&q, &h).is_err());
        let q: HashMap<String, String> = [("format".to_owned(), "raw".to_owned())].into();
        assert_eq!(negotiate(&q, &h), Ok(Format::Raw));
        let q: HashMap<String, String> = [("format".to_owned(), "dag-json".to_owned())].into();
        assert!(negotiate(&q, &h).is_err());
    }
}
