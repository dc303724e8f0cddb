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
        with_cluster_metrics(st.sfu.metrics_text(), st.cluster().map(|c| c.metrics_text())),
    )
}

/// The media plane's metrics with the mesh's inserted before the closing `# EOF`.
fn with_cluster_metrics(mut text: String, cluster: Option<String>) -> String {
    let Some(extra) = cluster.filter(|e| !e.is_empty()) else { return text };
    let body_end = text.rfind("# EOF").unwrap_or(text.len());
    text.truncate(body_end);
    text.push_str(&extra);
    if !extra.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# EOF\n");
    text
}

/// `GET /healthz`: 200 while the node runs.
pub async fn healthz() -> &'static str {
    "ok\n"
}
