//! JSON API and health check.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use relaycast_sfu::StreamSummary;
use serde::Serialize;

use crate::AppState;
use crate::server::metrics::append_families;

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
        {
            let mut text = append_families(render_metrics(&st), &st.auth().metrics_text());
            text = append_families(text, &st.http.metrics.render());
            if let Some(cluster) = st.cluster() {
                text = append_families(text, &cluster.metrics_text());
            }
            text
        },
    )
}

/// The media plane's metrics and the webhook counters in one exposition.
fn render_metrics(st: &AppState) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(st.sfu.metrics_collector()));
    registry.register_collector(Box::new(crate::webhooks::metrics::WebhookCollector(st.webhook_metrics())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "encoding /metrics");
    }
    out
}

/// `GET /healthz`: 200 while the node runs.
pub async fn healthz() -> &'static str {
    "ok\n"
}
