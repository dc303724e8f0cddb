//! Admin API for this node's sessions; every route needs a token with the `admin` grant (or the
//! master publish token).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use tracing::info;

use crate::AppState;
use crate::auth::{Access, Need};
use crate::error::ApiError;

/// One session in `GET /api/admin/sessions`.
#[derive(Debug, Serialize)]
pub struct AdminSession {
    /// Session id (for `DELETE /api/admin/sessions/{id}`).
    pub id: u64,
    /// Stream name.
    pub stream: String,
    /// `publisher` or `viewer`.
    pub role: &'static str,
    /// The peer's media address (`ip:port`), null before its first datagram.
    pub remote_addr: Option<String>,
    /// When the session started (RFC 3339, UTC).
    pub since: String,
    /// Recent bitrate in bits per second (sent by a publisher, received by a viewer).
    pub bitrate_bps: u64,
}

/// Body of `GET /api/admin/sessions`.
#[derive(Debug, Serialize)]
pub struct AdminSessions {
    /// Publisher and viewer sessions on this node.
    pub sessions: Vec<AdminSession>,
}

fn who(access: &Access) -> String {
    match access {
        Access::Token(c) => c.sub.clone().unwrap_or_default().chars().take(64).collect(),
        Access::Master => "master token".into(),
        Access::Open => String::new(),
    }
}

/// `GET /api/admin/sessions`: this node's publisher and viewer sessions.
pub async fn sessions(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<AdminSessions>, ApiError> {
    st.auth().check(&headers, None, Need::Admin)?;
    let sessions = st
        .sfu
        .sessions()
        .into_iter()
        .map(|s| AdminSession {
            id: s.id,
            stream: s.stream,
            role: s.role,
            remote_addr: s.remote_addr.map(|a| a.to_string()),
            since: relaycast_archive::manifest::rfc3339_ms(s.since_unix_ms),
            bitrate_bps: s.bitrate_bps,
        })
        .collect();
    Ok(Json(AdminSessions { sessions }))
}

/// `DELETE /api/admin/sessions/{id}`: ends (kicks) one session.
pub async fn kick_session(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let access = st.auth().check(&headers, None, Need::Admin)?;
    let id: u64 = id.parse().map_err(|_| ApiError::bad_request("session ids are decimal integers"))?;
    if !st.sfu.sessions().iter().any(|s| s.id == id) {
        return Err(ApiError::not_found("no such session"));
    }
    st.sfu.end_session(id, "ended by an administrator").await?;
    info!(session = id, by = %who(&access), "session ended by the admin API");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/admin/streams/{stream}`: ends the stream's publish on this node (viewers stay
/// connected and resume if a publisher returns).
pub async fn end_stream(
    State(st): State<Arc<AppState>>,
    Path(stream): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let access = st.auth().check(&headers, None, Need::Admin)?;
    if !crate::sessions::valid_stream_name(&stream) {
        return Err(ApiError::bad_request("invalid stream name"));
    }
    let id = st.sfu.publisher_session(&stream).ok_or_else(|| ApiError::not_found("stream is not published on this node"))?;
    st.sfu.end_session(id, "publish ended by an administrator").await?;
    info!(stream = %stream, session = id, by = %who(&access), "publish ended by the admin API");
    Ok(StatusCode::NO_CONTENT)
}
