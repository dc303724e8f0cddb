//! `OPTIONS` on the WHIP and WHEP endpoints (RFC 9725 section 4.6): a client learns the ICE
//! servers (TURN with fresh credentials) before it builds its offer, so its first attempt can
//! already gather relay candidates.
//!
//! tower-http's CORS layer answers every `OPTIONS` request as a preflight, so these requests are
//! answered by a middleware in front of it: an `OPTIONS` without `Access-Control-Request-Method`
//! on `/whip/{stream}` or `/whep/{stream}` is this, any other goes on to CORS.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;
use crate::sessions::valid_stream_name;

/// The stream of a `/whip/{stream}` or `/whep/{stream}` path.
fn endpoint_stream(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/whip/").or_else(|| path.strip_prefix("/whep/"))?;
    (!rest.contains('/')).then_some(rest)
}

/// Middleware (in front of CORS) that answers `OPTIONS /whip/{stream}` and
/// `OPTIONS /whep/{stream}` with [`endpoint_options`]; preflights and everything else pass on.
pub async fn options_layer(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS
        && !req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && let Some(stream) = endpoint_stream(req.uri().path())
    {
        let mut resp = endpoint_options(&st, stream).unwrap_or_else(IntoResponse::into_response);
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("link, accept-post"));
        return resp;
    }
    next.run(req).await
}

/// `204 No Content` with one `Link: <turn:…>; rel="ice-server"` header per ICE server (none
/// when the node has no TURN server), `Allow` and `Accept-Post`; `400` for a bad stream name.
pub fn endpoint_options(st: &AppState, stream: &str) -> Result<Response, ApiError> {
    if !valid_stream_name(stream) {
        return Err(ApiError::bad_request("stream names are 1-128 characters of A-Z a-z 0-9 - _ . and do not start with ."));
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("OPTIONS, POST"));
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    for link in st.ice_server_links() {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths() {
        assert_eq!(endpoint_stream("/whip/room"), Some("room"));
        assert_eq!(endpoint_stream("/whep/a.b-c"), Some("a.b-c"));
        assert_eq!(endpoint_stream("/whep/room/abc"), None);
        assert_eq!(endpoint_stream("/api/streams"), None);
        assert_eq!(endpoint_stream("/whep/"), Some(""));
    }
}
