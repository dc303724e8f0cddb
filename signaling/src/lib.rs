//! Relaycast control plane over HTTP: WHIP and WHEP sessions, per-session events, the stream
//! API, health, and the SDK and pages every node serves.

pub mod admin;
pub mod api;
pub mod assets;
pub mod auth;
pub mod error;
pub mod events;
pub mod ice;
pub mod pending;
pub mod server;
pub mod sessions;
pub mod token;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Method, header};
use axum::routing::{get, post};
use relaycast_sfu::Sfu;
use relaycast_sfu::stream::SessionId;
use tower_http::cors::{Any, CorsLayer};

/// Largest request body accepted (SDP offers, candidates, JSON).
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
pub struct AppState {
    /// The media plane.
    pub sfu: Arc<Sfu>,
    /// Bearer token required to publish.
    pub publish_token: String,
    /// Secret that signs access tokens and webhooks (shared by the nodes of one mesh).
    pub api_secret: String,
    /// Access checks: master token, signed tokens, `--watch-auth`.
    auth: auth::Auth,
    /// Unguessable resource key in a session URL → session id.
    sessions: Mutex<HashMap<String, SessionId>>,
    /// ICE servers (TURN with fresh credentials) advertised in WHIP/WHEP answers.
    ice_servers: Option<Arc<dyn IceServers>>,
    /// The mesh: other nodes that can supply streams and take viewers.
    cluster: Option<Arc<dyn Cluster>>,
    /// HTTP limits, counters and per-address counts shared with the listener.
    pub http: Arc<server::HttpContext>,
    /// Webhook delivery counters, reported on `/metrics` (zero without `--webhook`).
    webhook_metrics: Arc<webhooks::WebhookMetrics>,
}

/// What the mesh does for WHEP: fetch streams from other nodes, and send viewers elsewhere.
pub trait Cluster: Send + Sync {
    /// Makes `stream` available on this node by relaying it from another node that has it;
    /// resolves to false when no reachable node has it.
    fn ensure_stream<'a>(&'a self, stream: &'a str) -> futures_util::future::BoxFuture<'a, bool>;
    /// The WHEP URL of another node with room for a viewer of `stream` (this node is full).
    fn redirect<'a>(&'a self, stream: &'a str) -> futures_util::future::BoxFuture<'a, Option<String>>;
    /// When `stream` is live on another node of the mesh: a reason naming that node (peer id
    /// and HTTP URL), sent with the `409` that refuses a WHIP publish of the same name here.
    fn live_elsewhere(&self, _stream: &str) -> Option<String> {
        None
    }
    /// The mesh's counters in the OpenMetrics text format (without `# EOF`), for `/metrics`.
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// Supplies the `Link: <turn:…>; rel="ice-server"` header values put in each WHIP/WHEP answer.
pub trait IceServers: Send + Sync {
    /// `Link` header values for one new session, each with fresh credentials.
    fn link_headers(&self) -> Vec<String>;
}

impl AppState {
    /// State for a node with this media plane, publish token and API secret.
    pub fn new(sfu: Arc<Sfu>, publish_token: String, api_secret: String) -> Self {
        let auth = auth::Auth::new(&publish_token, &api_secret, false);
        AppState { sfu, publish_token, api_secret, auth, sessions: Mutex::new(HashMap::new()), ice_servers: None, cluster: None, http: Arc::default(), webhook_metrics: Arc::default() }
    }

    /// The same state, requiring a `watch` grant to watch when `on` (`--watch-auth`).
    pub fn with_watch_auth(mut self, on: bool) -> Self {
        self.auth = auth::Auth::new(&self.publish_token, &self.api_secret, on);
        self
    }

    /// Access checks (also for routes outside this crate, such as replay and archive).
    pub fn auth(&self) -> &auth::Auth {
        &self.auth
    }

    /// The webhook counters `/metrics` reports; the webhook sender updates them.
    pub fn webhook_metrics(&self) -> Arc<webhooks::WebhookMetrics> {
        self.webhook_metrics.clone()
    }

    /// The same state, relaying streams from the mesh and redirecting viewers when full.
    pub fn with_cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The same state, with these HTTP limits and counters (shared with the listener).
    pub fn with_http(mut self, http: Arc<server::HttpContext>) -> Self {
        self.http = http;
        self
    }

    /// The mesh, when the node is part of one.
    pub fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.as_ref()
    }

    /// The same state, advertising these ICE servers in WHIP/WHEP answers.
    pub fn with_ice_servers(mut self, ice_servers: Arc<dyn IceServers>) -> Self {
        self.ice_servers = Some(ice_servers);
        self
    }

    /// `Link` header values for a new session (empty without ICE servers).
    pub fn ice_server_links(&self) -> Vec<String> {
        self.ice_servers.as_ref().map(|p| p.link_headers()).unwrap_or_default()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionId>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session under a fresh random key and returns the key.
    pub fn add_session(&self, id: SessionId) -> String {
        let key = random_hex(16);
        let mut g = self.sessions();
        // Forget keys of sessions the media plane has already dropped.
        g.retain(|_, sid| self.sfu.session_info(*sid).is_some());
        g.insert(key.clone(), id);
        key
    }

    /// The session id for a URL key, if the session still exists.
    pub fn lookup(&self, key: &str) -> Option<SessionId> {
        let id = *self.sessions().get(key)?;
        self.sfu.session_info(id).map(|_| id)
    }

    /// Forgets a session key.
    pub fn forget(&self, key: &str) {
        self.sessions().remove(key);
    }
}

/// Random lowercase hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    use std::fmt::Write;
    let mut rng = rand::rng();
    let mut s = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(s, "{:02x}", rng.random::<u8>());
    }
    s
}

/// Builds the node's HTTP router.
pub fn router(state: Arc<AppState>) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("if-match")])
        .expose_headers([header::LOCATION, header::LINK, header::ETAG, header::RETRY_AFTER]);
    Router::new()
        .route("/whip/{stream}", post(sessions::whip_post))
        .route("/whep/{stream}", post(sessions::whep_post))
        .route(
            "/whip/{stream}/{key}",
            axum::routing::patch(sessions::session_patch).delete(sessions::session_delete),
        )
        .route(
            "/whep/{stream}/{key}",
            axum::routing::patch(sessions::session_patch).delete(sessions::session_delete),
        )
        .route("/whep/{stream}/{key}/layer", post(sessions::whep_layer))
        .route("/whip/{stream}/{key}/events", get(events::session_events))
        .route("/whep/{stream}/{key}/events", get(events::session_events))
        .route("/api/streams", get(api::streams))
        .route("/api/admin/sessions", get(admin::sessions))
        .route("/api/admin/sessions/{id}", axum::routing::delete(admin::kick_session))
        .route("/api/admin/streams/{stream}", axum::routing::delete(admin::end_stream))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .merge(assets::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(state.clone(), ice::options_layer))
        .with_state(state)
}
