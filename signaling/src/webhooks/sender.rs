//! The thin tokio layer: a bounded queue that producers never wait on, and one task that drives
//! the [`Dispatcher`] with real time and makes the HTTP requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::dispatch::{Attempt, Dispatcher, Outcome, Resolution, RetryPolicy};
use super::event::{Event, EventKind};
use super::metrics::WebhookMetrics;
use super::sign::SIGNATURE_HEADER;

/// Why webhooks cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A URL that is not an absolute `http://` or `https://` URL.
    #[error("webhook URL {url:?} is not an http(s) URL: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Receiver URLs; every event goes to each.
    pub urls: Vec<String>,
    /// The API secret whose UTF-8 bytes key the signatures.
    pub secret: String,
    /// This node's peer id (the events' `node`).
    pub node: String,
    /// Retries.
    pub policy: RetryPolicy,
    /// Longest time one request may take (connect, send, answer).
    pub request_timeout: Duration,
    /// Events the queue between producers and the sender holds.
    pub queue: usize,
    /// Deliveries the sender keeps (queued, in flight, waiting for a retry).
    pub max_pending: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

impl WebhookConfig {
    /// Settings with the defaults: 5 attempts waiting 2, 4, 8, 16 s, 5 s per request (55 s at
    /// most per delivery), 1024 queued events, 4096 pending deliveries, 16 requests in flight.
    pub fn new(urls: Vec<String>, secret: String, node: String) -> Result<Self, WebhookError> {
        for url in &urls {
            check_url(url)?;
        }
        Ok(WebhookConfig {
            urls,
            secret,
            node,
            policy: RetryPolicy::default(),
            request_timeout: Duration::from_secs(5),
            queue: 1024,
            max_pending: 4096,
            max_in_flight: 16,
        })
    }
}

/// Checks that `url` is an absolute http(s) URL with a host.
pub fn check_url(url: &str) -> Result<(), WebhookError> {
    let bad = |reason: &str| WebhookError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

/// The URL without credentials, query or fragment (webhook URLs may carry secrets; logs do not).
fn loggable(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!("{}://{}{}", u.scheme(), u.host_str().unwrap_or(""), match u.port() {
            Some(p) => format!(":{p}{}", u.path()),
            None => u.path().to_owned(),
        }),
        Err(_) => "<bad url>".to_owned(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds between two "queue full" log lines.
const FULL_LOG_INTERVAL_MS: u64 = 10_000;

/// The producers' handle: queues events without waiting. Cloning is cheap.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::Sender<Event>,
    node: Arc<str>,
    urls: usize,
    metrics: Arc<WebhookMetrics>,
    last_full_log_ms: Arc<AtomicU64>,
}

/// The running sender task; [`SenderTask::finish`] ends it at shutdown.
pub struct SenderTask {
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

impl SenderTask {
    /// Stops retrying, sends what is queued once, and waits at most `grace` for it.
    pub async fn finish(self, grace: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(grace, self.handle).await.is_err() {
            warn!(grace_s = grace.as_secs(), "webhooks still in flight at shutdown were not sent");
        }
    }
}

impl Webhooks {
    /// Starts the sender task (on the current tokio runtime).
    pub fn start(cfg: WebhookConfig, metrics: Arc<WebhookMetrics>) -> Result<(Webhooks, SenderTask), WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("relaycast/", env!("CARGO_PKG_VERSION"), " webhooks"))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let dispatcher = Dispatcher::new(cfg.urls.clone(), cfg.secret.as_bytes(), cfg.policy, cfg.max_pending, cfg.max_in_flight);
        info!(
            urls = ?cfg.urls.iter().map(|u| loggable(u)).collect::<Vec<_>>(),
            attempts = cfg.policy.max_attempts,
            worst_case_s = cfg.policy.worst_case(cfg.request_timeout).as_secs(),
            "webhooks enabled"
        );
        let handle = tokio::spawn(run(rx, stop_rx, dispatcher, client, metrics.clone()));
        let hooks = Webhooks {
            tx,
            node: cfg.node.into(),
            urls: cfg.urls.len(),
            metrics,
            last_full_log_ms: Arc::new(AtomicU64::new(0)),
        };
        Ok((hooks, SenderTask { stop: stop_tx, handle }))
    }

    /// A publisher started feeding `stream` on this node.
    pub fn stream_started(&self, stream: &str) {
        self.emit(Event::new(EventKind::StreamStarted, crate::random_hex(16), stream, &self.node, unix_ms()));
    }

    /// The publisher of `stream` on this node left.
    pub fn stream_ended(&self, stream: &str) {
        self.emit(Event::new(EventKind::StreamEnded, crate::random_hex(16), stream, &self.node, unix_ms()));
    }

    /// A recording of `stream` was closed into the VOD root `vod_cid` with `segments` media segments.
    pub fn recording_finished(&self, stream: &str, vod_cid: &str, segments: u64) {
        self.emit(Event::recording_finished(crate::random_hex(16), stream, &self.node, unix_ms(), vod_cid, segments));
    }

    /// Queues an event; when the queue is full the event is dropped, counted and (at most every
    /// 10 s) logged.
    pub fn emit(&self, event: Event) {
        debug!(id = %event.id, kind = event.kind, stream = %event.stream, "webhook event");
        if let Err(e) = self.tx.try_send(event) {
            WebhookMetrics::add(&self.metrics.queue_full, self.urls as u64);
            let now = unix_ms();
            let last = self.last_full_log_ms.load(Ordering::Relaxed);
            if now.saturating_sub(last) >= FULL_LOG_INTERVAL_MS
                && self.last_full_log_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                let ev = e.into_inner();
                warn!(kind = ev.kind, stream = %ev.stream, "webhook queue full; event dropped (relaycast_webhook_deliveries_total{{result=\"queue_full\"}} counts them)");
            }
        }
    }
}

/// How one request ended.
#[derive(Debug)]
enum Answer {
    Ok,
    Status(u16),
    Timeout,
    Error(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Ok => f.write_str("2xx"),
            Answer::Status(code) => write!(f, "HTTP {code}"),
            Answer::Timeout => f.write_str("no answer in time"),
            Answer::Error(e) => f.write_str(e),
        }
    }
}

async fn send(client: reqwest::Client, a: Attempt) -> (Attempt, Answer) {
    let req = client
        .post(&a.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, &a.signature)
        .body(a.body.to_vec());
    let answer = match req.send().await {
        Ok(resp) if resp.status().is_success() => Answer::Ok,
        Ok(resp) => Answer::Status(resp.status().as_u16()),
        Err(e) if e.is_timeout() => Answer::Timeout,
        Err(e) => Answer::Error(error_chain(&e)),
    };
    (a, answer)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

async fn run(
    mut rx: mpsc::Receiver<Event>,
    mut stop: oneshot::Receiver<()>,
    mut d: Dispatcher,
    client: reqwest::Client,
    metrics: Arc<WebhookMetrics>,
) {
    let mut in_flight: JoinSet<(Attempt, Answer)> = JoinSet::new();
    let mut open = true;
    let mut stopping = false;
    let push = |d: &mut Dispatcher, ev: Event| {
        if let Err(full) = d.push(&ev) {
            WebhookMetrics::add(&metrics.queue_full, full.dropped as u64);
            warn!(id = %ev.id, kind = ev.kind, stream = %ev.stream, "webhook deliveries at their limit; event dropped");
        }
    };
    loop {
        let unix_secs = unix_ms() / 1000;
        for a in d.poll(Instant::now(), unix_secs) {
            in_flight.spawn(send(client.clone(), a));
        }
        metrics.pending.store(d.pending() as u64, Ordering::Relaxed);
        if !open && d.is_idle() && in_flight.is_empty() {
            break;
        }
        let wake = d.next_wakeup();
        tokio::select! {
            ev = rx.recv(), if open => match ev {
                Some(ev) => push(&mut d, ev),
                None => open = false,
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                let Ok((a, answer)) = joined else { continue };
                let outcome = match &answer {
                    Answer::Ok => {
                        WebhookMetrics::add(&metrics.attempts_ok, 1);
                        Outcome::Success
                    }
                    Answer::Status(_) => {
                        WebhookMetrics::add(&metrics.attempts_status, 1);
                        Outcome::Failure
                    }
                    Answer::Timeout => {
                        WebhookMetrics::add(&metrics.attempts_timeout, 1);
                        Outcome::Failure
                    }
                    Answer::Error(_) => {
                        WebhookMetrics::add(&metrics.attempts_error, 1);
                        Outcome::Failure
                    }
                };
                let url = loggable(&a.url);
                match d.on_outcome(a.delivery, outcome, Instant::now()) {
                    Resolution::Delivered { attempts } => {
                        WebhookMetrics::add(&metrics.delivered, 1);
                        debug!(id = %a.event_id, kind = a.kind, %url, attempts, "webhook delivered");
                    }
                    Resolution::Retry { at, attempts } => {
                        let in_s = at.saturating_duration_since(Instant::now()).as_secs_f32();
                        debug!(id = %a.event_id, kind = a.kind, %url, attempts, answer = %answer, retry_in_s = in_s, "webhook attempt failed; will retry");
                    }
                    Resolution::GaveUp { attempts } => {
                        WebhookMetrics::add(&metrics.gave_up, 1);
                        warn!(id = %a.event_id, kind = a.kind, %url, attempts, last = %answer, "webhook not delivered; dropped");
                    }
                    Resolution::Unknown => {}
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now).into()), if wake.is_some() => {}
            _ = &mut stop, if !stopping => {
                stopping = true;
                // What is queued gets one attempt; retries that are waiting are dropped.
                while let Ok(ev) = rx.try_recv() {
                    push(&mut d, ev);
                }
                rx.close();
                open = false;
                let dropped = d.close();
                if dropped > 0 {
                    WebhookMetrics::add(&metrics.shutdown, dropped as u64);
                    warn!(dropped, "shutting down: webhook retries dropped");
                }
            }
        }
    }
    metrics.pending.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://hooks.example.com/x?k=1").is_ok());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("/relative").is_err());
        assert!(check_url("http://").is_err());
    }

    /// A loopback HTTP receiver answering every request with `status` (or never, with `None`);
    /// returns its URL and a channel of the request heads and bodies it read.
    async fn receiver(status: Option<u16>) -> (String, mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut sock, _)) = listener.accept().await {
                let Some(status) = status else {
                    held.push(sock);
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut n = 0;
                    // One request per connection: read until the body (Content-Length) is in.
                    while let Ok(k) = sock.read(&mut buf[n..]).await {
                        if k == 0 {
                            break;
                        }
                        n += k;
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                                .unwrap_or(0);
                            if body.len() >= len {
                                let _ = tx.send(text.clone());
                                let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                                let _ = sock.write_all(resp.as_bytes()).await;
                                break;
                            }
                        }
                    }
                });
            }
        });
        (url, rx)
    }

    fn quick(urls: Vec<String>) -> WebhookConfig {
        let mut cfg = WebhookConfig::new(urls, "secret".into(), "node-a".into()).unwrap();
        cfg.policy = RetryPolicy { max_attempts: 3, first_backoff: Duration::from_millis(20), max_backoff: Duration::from_millis(40) };
        cfg.request_timeout = Duration::from_millis(300);
        cfg
    }

    #[tokio::test]
    async fn delivers_signed_json() {
        let (url, mut rx) = receiver(Some(204)).await;
        let metrics = Arc::new(WebhookMetrics::default());
        let (hooks, task) = Webhooks::start(quick(vec![url]), metrics.clone()).unwrap();
        hooks.stream_started("room");
        let req = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /hook HTTP/1.1"));
        let head = head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/json"));
        let sig = head.lines().find_map(|l| l.strip_prefix("relaycast-signature: ")).unwrap();
        let t: u64 = sig.strip_prefix("t=").unwrap().split(',').next().unwrap().parse().unwrap();
        assert_eq!(sig, super::super::sign::signature_header(b"secret", t, body.as_bytes()));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!((v["type"].as_str(), v["stream"].as_str(), v["node"].as_str()), (Some("stream.started"), Some("room"), Some("node-a")));
        task.finish(Duration::from_secs(5)).await;
        assert_eq!(metrics.delivered.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.attempts_ok.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn retries_then_gives_up_and_counts() {
        let (failing, mut rx) = receiver(Some(500)).await;
        let (silent, _rx) = receiver(None).await;
        let metrics = Arc::new(WebhookMetrics::default());
        let (hooks, task) = Webhooks::start(quick(vec![failing, silent]), metrics.clone()).unwrap();
        hooks.recording_finished("room", "bafyroot", 3);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let req = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
            let body = req.split_once("\r\n\r\n").unwrap().1.to_owned();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["vod_cid"], "bafyroot");
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        assert!(ids.iter().all(|i| *i == ids[0]), "the id is kept across retries");
        // Both deliveries resolve within the policy's bound: 3 attempts, waits 20 + 40 ms, 300 ms each.
        let bound = quick(vec![]).policy.worst_case(Duration::from_millis(300)) + Duration::from_secs(2);
        let deadline = Instant::now() + bound;
        while metrics.gave_up.load(Ordering::Relaxed) < 2 {
            assert!(Instant::now() < deadline, "both deliveries given up within {bound:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(metrics.attempts_status.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.attempts_timeout.load(Ordering::Relaxed), 3);
        assert_eq!(metrics.delivered.load(Ordering::Relaxed), 0);
        task.finish(Duration::from_secs(1)).await;
        assert!(tokio::time::timeout(Duration::from_millis(100), rx.recv()).await.map_or(true, |r| r.is_none()), "no fourth attempt");
    }

    #[tokio::test]
    async fn https_receivers_get_a_tls_handshake() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://localhost:{}/hook", listener.local_addr().unwrap().port());
        let (hooks, task) = Webhooks::start(quick(vec![url]), Arc::default()).unwrap();
        hooks.stream_ended("room");
        let (mut sock, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await.unwrap().unwrap();
        let mut head = [0u8; 6];
        tokio::time::timeout(Duration::from_secs(5), sock.read_exact(&mut head)).await.unwrap().unwrap();
        // A TLS record carrying a handshake message (type 1, ClientHello).
        assert_eq!((head[0], head[1], head[5]), (0x16, 0x03, 0x01), "TLS ClientHello, got {head:02x?}");
        drop(sock);
        task.finish(Duration::from_secs(2)).await;
    }

    #[tokio::test]
    async fn emit_never_waits_and_counts_drops() {
        let (silent, _rx) = receiver(None).await;
        let mut cfg = quick(vec![silent]);
        cfg.queue = 4;
        cfg.max_pending = 4;
        cfg.max_in_flight = 1;
        let metrics = Arc::new(WebhookMetrics::default());
        let (hooks, task) = Webhooks::start(cfg, metrics.clone()).unwrap();
        let t0 = Instant::now();
        for i in 0..1000 {
            hooks.stream_started(&format!("s{i}"));
        }
        assert!(t0.elapsed() < Duration::from_millis(500), "1000 emits took {:?}", t0.elapsed());
        assert!(metrics.queue_full.load(Ordering::Relaxed) >= 1000 - 4 - 4);
        task.finish(Duration::from_secs(2)).await;
    }

    #[test]
    fn logs_no_query_or_credentials() {
        assert_eq!(loggable("https://user:pw@hooks.example.com:8443/in?key=secret#f"), "https://hooks.example.com:8443/in");
        assert_eq!(loggable("http://h/p"), "http://h/p");
    }
}
