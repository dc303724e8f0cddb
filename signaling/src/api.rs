//! JSON API and health check.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use relaycast_sfu::StreamSummary;
use serde::Serialize;

use crate::AppState;

/// Body of `GET /api/streams`.
#[derive(Debug, Serialize)]
pub struct StreamsResponse {
    /// Every stream on the node.
    pub streams: Vec<StreamSummary>,
}

/// `GET /api/streams`: codec, layers with bitrates, and viewers of each stream.
pub async fn streams(State(st): State<Arc<AppState>>) -> Json<StreamsResponse> {
    Json(StreamsResponse { streams: st.sfu.streams() })
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): State<Arc<AppState>>) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        with_access_metrics(st.sfu.metrics_text(), &st.auth().metrics_text()),
    )
}

/// Inserts the access refusal counters before the `# EOF` line of the media plane's metrics.
fn with_access_metrics(mut text: String, access: &str) -> String {
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    text.insert_str(eof, access);
    if !text.ends_with("# EOF\n") && !text.ends_with("# EOF") {
        text.push_str("# EOF\n");
    }
    text
}

/// `GET /healthz`: 200 while the node runs.
pub async fn healthz() -> &'static str {
    "ok\n"
}
