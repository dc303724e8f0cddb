//! WHIP (RFC 9725) and WHEP session endpoints.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use relaycast_sfu::layer::LayerPreference;
use relaycast_sfu::SfuError;
use relaycast_sfu::stream::layer_of_rid;
use serde::Deserialize;
use tracing::info;

use crate::AppState;
use crate::auth::{Access, Need, request_token};
use crate::error::ApiError;
use crate::server::{ClientInfo, Scheme};

/// Stream names: 1–128 characters of letters, digits, `-`, `_`, `.`, not starting with `.` (so
/// never `.` or `..`, which would name directories in the archive's paths).
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_stream(name: &str) -> Result<(), ApiError> {
    if valid_stream_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request("stream names are 1-128 characters of A-Z a-z 0-9 - _ . and do not start with ."))
    }
}

fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim();
    if base.eq_ignore_ascii_case(expected) {
        Ok(())
    } else if ct.is_empty() {
        Err(ApiError::bad_request(format!("missing Content-Type; expected {expected}")))
    } else {
        Err(ApiError::bad_request(format!("unsupported Content-Type {ct:?}; expected {expected}")))
    }
}

fn sdp_text(body: &Bytes) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|_| ApiError::bad_request("malformed SDP: body is not UTF-8"))
}

fn created(st: &AppState, location: String, answer: String) -> Response {
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    for link in st.ice_server_links() {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    resp
}

/// Query parameters of `POST /whip/{stream}`.
#[derive(Debug, Default, Deserialize)]
pub struct WhipQuery {
    /// `1` (or `true`): the publisher is the stream's backup, held ready while the primary feeds.
    pub backup: Option<String>,
}

impl WhipQuery {
    /// True when the publisher declared itself backup.
    pub fn is_backup(&self) -> bool {
        matches!(self.backup.as_deref(), Some("1" | "true"))
    }
}

/// `POST /whip/{stream}`: a publisher offers; the answer accepts its simulcast layers. With
/// `?backup=1` it is the stream's backup publisher (same grant as a primary).
pub async fn whip_post(
    State(st): State<Arc<AppState>>,
    Path(stream): Path<String>,
    Query(q): Query<WhipQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_stream(&stream)?;
    let access = st.auth().check(&headers, None, Need::Publish(&stream))?;
    require_content_type(&headers, "application/sdp")?;
    // Stream names are unique across the mesh while live.
    if let Some(holder) = st.cluster().and_then(|c| c.live_elsewhere(&stream)) {
        return Err(ApiError::new(StatusCode::CONFLICT, holder));
    }
    // An authorized publisher takes the stream over from an earlier publish of it on this node
    // (a backup from an earlier backup).
    let backup = q.is_backup();
    let (id, answer) = if backup {
        st.sfu.publish_backup(&stream, sdp_text(&body)?).await?
    } else {
        st.sfu.publish_takeover(&stream, sdp_text(&body)?).await?
    };
    let key = st.add_session(id);
    let sub = match &access {
        Access::Token(c) => c.sub.as_deref().unwrap_or("").chars().take(64).collect(),
        _ => String::new(),
    };
    info!(stream = %stream, session = id, sub = %sub, backup, "WHIP publisher accepted");
    Ok(created(&st, format!("/whip/{stream}/{key}"), answer))
}

/// Query parameters of `POST /whep/{stream}`.
#[derive(Debug, Default, Deserialize)]
pub struct WhepQuery {
    /// Fixed layer (`q`, `h`, `f`).
    pub rid: Option<String>,
    /// Highest frame height wanted.
    #[serde(rename = "maxHeight")]
    pub max_height: Option<u32>,
}

/// Body of `POST {whep session}/layer`.
#[derive(Debug, Default, Deserialize)]
pub struct LayerRequest {
    /// Fixed layer (`q`, `h`, `f`), or null for automatic.
    pub rid: Option<String>,
    /// Highest frame height wanted.
    #[serde(rename = "maxHeight")]
    pub max_height: Option<u32>,
}

/// Turns a rid / maxHeight pair into a preference.
pub fn preference(rid: Option<&str>, max_height: Option<u32>) -> Result<LayerPreference, ApiError> {
    match (rid, max_height) {
        (Some(r), _) if !r.is_empty() => layer_of_rid(r)
            .map(LayerPreference::Fixed)
            .ok_or_else(|| ApiError::bad_request(format!("unknown rid {r:?}; use q, h or f"))),
        (_, Some(h)) => Ok(LayerPreference::MaxHeight(h)),
        _ => Ok(LayerPreference::Auto),
    }
}

/// `POST /whep/{stream}`: a viewer offers to receive the stream.
pub async fn whep_post(
    State(st): State<Arc<AppState>>,
    Path(stream): Path<String>,
    Query(q): Query<WhepQuery>,
    uri: Uri,
    headers: HeaderMap,
    client: Option<Extension<ClientInfo>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_stream(&stream)?;
    st.auth().check(&headers, Some(&uri), Need::Watch(&stream))?;
    require_content_type(&headers, "application/sdp")?;
    let pref = preference(q.rid.as_deref(), q.max_height)?;
    let offer = sdp_text(&body)?;
    // A slot of the client's address until the session connects: offers alone cannot fill the node.
    let pending = match &client {
        Some(Extension(c)) => match st.http.pending_viewers.admit(c.addr, false) {
            Ok(slot) => Some(slot),
            Err(_) => {
                st.http.metrics.pending_viewers_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                st.http.log_refusal("a WHEP offer", "pending_per_address", c.addr);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many viewer sessions from this address have not connected yet",
                ));
            }
        },
        None => None,
    };
    let mut result = st.sfu.subscribe(&stream, offer, pref).await;
    if let Some(cluster) = st.cluster() {
        match &result {
            // Not here: relay it from a node of the mesh that has it, then subscribe again.
            Err(SfuError::StreamNotFound) if cluster.ensure_stream(&stream).await => {
                result = st.sfu.subscribe(&stream, offer, pref).await;
            }
            // Full: send the viewer to a node with room (the SDK follows the redirect).
            Err(SfuError::Full) => {
                let scheme = client.as_ref().map_or(Scheme::Http, |c| c.0.scheme);
                if let Some(url) = cluster.redirect(&stream).await
                    && same_scheme(&url, scheme)
                {
                    info!(stream = %stream, to = %url, "node full: redirecting viewer");
                    // Browsers drop Authorization on cross-origin redirects: the token goes in ?token=.
                    let token = if st.auth().watch_auth() { request_token(&headers, &uri) } else { None };
                    return Ok(redirect(&url, uri.query(), token.as_deref()));
                }
            }
            _ => {}
        }
    }
    let (id, answer) = result?;
    if let (Some(slot), Ok(events)) = (pending, st.sfu.events(id)) {
        tokio::spawn(crate::pending::hold_until_connected(events, slot, crate::pending::HOLD_LIMIT));
    }
    let key = st.add_session(id);
    info!(stream = %stream, session = id, "WHEP viewer accepted");
    Ok(created(&st, format!("/whep/{stream}/{key}"), answer))
}

/// `307 Temporary Redirect` to another node's WHEP endpoint (method and body are kept); the
/// query is kept, and `token` is put in `?token=` unless the query already carries one.
fn redirect(url: &str, query: Option<&str>, token: Option<&str>) -> Response {
    let target = redirect_target(url, query, token);
    let mut resp = (StatusCode::TEMPORARY_REDIRECT, "node full; use the node in Location\n").into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// True when `url` uses `scheme`: a viewer is redirected only to a node reached the same way, so a
/// token in `?token=` never leaves HTTPS for plain HTTP.
pub fn same_scheme(url: &str, scheme: Scheme) -> bool {
    url.strip_prefix(scheme.as_str()).is_some_and(|rest| rest.starts_with("://"))
}

/// The URL a WHEP redirect points at: `url`, the original query, and `token=` when the query has
/// none (tokens are base64url with dots, so they need no escaping).
pub fn redirect_target(url: &str, query: Option<&str>, token: Option<&str>) -> String {
    let mut params: Vec<String> = query
        .filter(|q| !q.is_empty())
        .map(|q| q.split('&').filter(|p| !p.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(t) = token
        && !params.iter().any(|p| p.starts_with("token="))
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    {
        params.push(format!("token={t}"));
    }
    if params.is_empty() { url.to_string() } else { format!("{url}?{}", params.join("&")) }
}

fn session_for(st: &AppState, stream: &str, key: &str, uri: &Uri) -> Result<u64, ApiError> {
    let id = st.lookup(key).ok_or_else(|| ApiError::not_found("no such session"))?;
    let (name, publisher) = st.sfu.session_info(id).ok_or_else(|| ApiError::not_found("no such session"))?;
    let wants_publisher = uri.path().starts_with("/whip/");
    if name != stream || publisher != wants_publisher {
        return Err(ApiError::not_found("no such session"));
    }
    Ok(id)
}

/// `PATCH {session}`: trickle ICE candidates (`application/trickle-ice-sdpfrag`).
pub async fn session_patch(
    State(st): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = session_for(&st, &stream, &key, &uri)?;
    require_content_type(&headers, "application/trickle-ice-sdpfrag")?;
    let frag = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("sdpfrag is not UTF-8"))?;
    st.sfu.trickle(id, frag)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE {session}`: ends the session.
pub async fn session_delete(
    State(st): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let id = session_for(&st, &stream, &key, &uri)?;
    st.sfu.close(id)?;
    st.forget(&key);
    info!(stream = %stream, session = id, "session deleted");
    Ok(StatusCode::OK)
}

/// `POST /whep/{stream}/{session}/layer`: sets the viewer's layer preference.
pub async fn whep_layer(
    State(st): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let path = uri.path().trim_end_matches("/layer").to_string();
    let uri: Uri = path.parse().map_err(|_| ApiError::bad_request("bad path"))?;
    let id = session_for(&st, &stream, &key, &uri)?;
    let req: LayerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LayerRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let pref = preference(req.rid.as_deref(), req.max_height)?;
    st.sfu.set_layer(id, pref)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(valid_stream_name("room-1.a_b"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name("a/b"));
        assert!(!valid_stream_name("."));
        assert!(!valid_stream_name(".."));
        assert!(!valid_stream_name(".hidden"));
        assert!(valid_stream_name("a..b"));
        assert!(!valid_stream_name(&"x".repeat(129)));
    }

    #[test]
    fn redirects_keep_the_scheme() {
        assert!(same_scheme("https://b.example:8443/whep/room", Scheme::Https));
        assert!(!same_scheme("http://b.example:8080/whep/room", Scheme::Https));
        assert!(same_scheme("http://10.0.0.2:8080/whep/room", Scheme::Http));
        assert!(!same_scheme("https://b.example/whep/room", Scheme::Http));
        assert!(!same_scheme("httpx://b.example/whep/room", Scheme::Http));
    }

    #[test]
    fn redirect_targets() {
        let u = "http://10.0.0.2:8080/whep/a";
        assert_eq!(redirect_target(u, None, None), u);
        assert_eq!(redirect_target(u, Some("rid=q"), None), format!("{u}?rid=q"));
        assert_eq!(redirect_target(u, Some("rid=q"), Some("x.y.z")), format!("{u}?rid=q&token=x.y.z"));
        assert_eq!(redirect_target(u, None, Some("x.y.z")), format!("{u}?token=x.y.z"));
        assert_eq!(redirect_target(u, Some("token=x.y.z"), Some("x.y.z")), format!("{u}?token=x.y.z"));
        // A master token with characters that would need escaping is not put in a URL.
        assert_eq!(redirect_target(u, None, Some("a b&c")), u);
    }

    #[test]
    fn preferences() {
        assert_eq!(preference(Some("q"), None).unwrap(), LayerPreference::Fixed(0));
        assert_eq!(preference(Some("f"), Some(100)).unwrap(), LayerPreference::Fixed(2));
        assert_eq!(preference(None, Some(360)).unwrap(), LayerPreference::MaxHeight(360));
        assert_eq!(preference(None, None).unwrap(), LayerPreference::Auto);
        assert_eq!(preference(Some(""), None).unwrap(), LayerPreference::Auto);
        assert!(preference(Some("x"), None).is_err());
    }
}
