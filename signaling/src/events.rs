//! Per-session event channel as Server-Sent Events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use relaycast_sfu::stream::SessionEvent;
use tokio_stream::wrappers::BroadcastStream;

use crate::AppState;
use crate::auth::Need;
use crate::error::ApiError;
use crate::server::ClientInfo;

fn to_sse(ev: &SessionEvent) -> Event {
    Event::default().data(serde_json::to_string(ev).unwrap_or_else(|_| "{}".into()))
}

/// `GET {session}/events`: the session's events (layer, viewers, publisher, closed) as SSE.
pub async fn session_events(
    State(st): State<Arc<AppState>>,
    Path((stream, key)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    client: Option<Extension<ClientInfo>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // A viewer's events need a watch grant under --watch-auth (EventSource sends `?token=`).
    if uri.path().starts_with("/whep/") {
        st.auth().check(&headers, Some(&uri), Need::Watch(&stream))?;
    }
    let id = st.lookup(&key).ok_or_else(|| ApiError::not_found("no such session"))?;
    match st.sfu.session_info(id) {
        Some((name, publisher)) if name == stream && publisher == uri.path().starts_with("/whip/") => {}
        _ => return Err(ApiError::not_found("no such session")),
    }
    // Each open stream holds a slot of its client address until it ends.
    let slot = match client {
        Some(Extension(c)) => match st.http.event_streams.admit(c.addr, false) {
            Ok(g) => Some(g),
            Err(_) => {
                st.http.metrics.sse_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                st.http.log_refusal("an event stream", "per_address", c.addr);
                return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many event streams from this address"));
            }
        },
        None => None,
    };
    let rx = st.sfu.events(id)?;
    let greeting: Vec<_> = st.sfu.session_snapshot(id).unwrap_or_default();
    let head = stream::iter(greeting.into_iter().map(|e| Ok(to_sse(&e))));
    let live = BroadcastStream::new(rx)
        .filter_map(|r| async move { r.ok() })
        .scan(false, |closed, ev| {
            let done = *closed;
            *closed = ev == SessionEvent::Closed;
            async move { (!done).then_some(ev) }
        })
        .map(move |ev| {
            let _slot = &slot;
            Ok(to_sse(&ev))
        });
    Ok(Sse::new(head.chain(live)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
