//! The SDK, pages and examples, compiled into the binary.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { path: "/sdk/relaycast.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/relaycast.js") },
    Asset { path: "/sdk/lib/errors.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/errors.js") },
    Asset { path: "/sdk/lib/signaling.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/signaling.js") },
    Asset { path: "/sdk/lib/connection.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/connection.js") },
    Asset { path: "/sdk/lib/session.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/session.js") },
    Asset { path: "/sdk/lib/watch.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/watch.js") },
    Asset { path: "/sdk/lib/publish.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/publish.js") },
    Asset { path: "/sdk/lib/mse.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/mse.js") },
    Asset { path: "/sdk/lib/replay.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/lib/replay.js") },
    Asset { path: "/sdk/hls.min.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/vendor/hls.min.js") },
    Asset { path: "/sdk/dash.all.min.js", content_type: "text/javascript; charset=utf-8", body: include_str!("../../sdk/vendor/dash.all.min.js") },
    Asset { path: "/sdk/relaycast.d.ts", content_type: "application/typescript; charset=utf-8", body: include_str!("../../sdk/relaycast.d.ts") },
    Asset { path: "/streamer.html", content_type: "text/html; charset=utf-8", body: include_str!("../../sdk/pages/streamer.html") },
    Asset { path: "/viewer.html", content_type: "text/html; charset=utf-8", body: include_str!("../../sdk/pages/viewer.html") },
    Asset { path: "/dashboard.html", content_type: "text/html; charset=utf-8", body: include_str!("../../sdk/pages/dashboard.html") },
    Asset { path: "/examples/watch.html", content_type: "text/html; charset=utf-8", body: include_str!("../../examples/watch.html") },
];

fn serve(asset: &'static Asset) -> Response {
    let mut r = asset.body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Routes for every embedded asset, plus `/` → the streamer page.
pub fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new().route("/", get(|| async { Redirect::temporary("/streamer.html") }));
    for a in ASSETS {
        r = r.route(a.path, get(move || async move { serve(a) }));
    }
    r
}
