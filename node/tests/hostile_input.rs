//! Floods of what a stranger can send to a node, each against the relaycast binary started for
//! the test: the node's resident memory (VmRSS from `/proc/PID/status`) may grow only by a stated
//! bound, and publishers keep their capacity.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::{Instant, timeout};

/// Publish token the server is started with.
const TOKEN: &str = "hostile-input-token";
/// Bound on any one step that waits on the server.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The most the node's RSS may grow over one flood (the figure).
const RSS_BUDGET_KIB: u64 = 6 * 1024;
/// The most open file descriptors a flood may leave behind (the client's pooled connections
/// and the node's own lazily opened files are well under it; a leak per request is not).
const FD_BUDGET: usize = 64;

/// The relaycast process under test; killed and reaped on drop, also when the test panics.
struct Node {
    child: Child,
    base: String,
    turn: Option<SocketAddr>,
    data_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Node {
    /// Starts the binary with `args` on ephemeral ports; waits for its `http:` (and, when
    /// `with_turn`, `turn:`) lines.
    fn start(name: &str, args: &[&str], with_turn: bool) -> Node {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}-{}-{nanos}", std::process::id()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_relaycast"))
            .args(["--http", "127.0.0.1:0", "--media-port", "0", "--publish-token", TOKEN, "--no-archive"])
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .env("NO_COLOR", "1")
            .env("RELAYCAST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning the relaycast binary");
        let stdout = child.stdout.take().expect("relaycast stdout");
        let stderr = child.stderr.take().expect("relaycast stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[relaycast] {line}");
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[relaycast stdout] {line}");
                let _ = tx.send(line);
            }
        });
        let mut node = Node { child, base: String::new(), turn: None, data_dir };
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        while node.base.is_empty() || (with_turn && node.turn.is_none()) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("relaycast did not print its addresses in time");
            if let Some(b) = line.strip_prefix("  http: ") {
                node.base = b.trim().to_string();
            } else if let Some(t) = line.strip_prefix("  turn: ") {
                node.turn = Some(t.trim().parse().expect("TURN address"));
            }
        }
        node
    }

    /// The node's resident set size in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("reading /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open file descriptors of the node.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(STEP_TIMEOUT).build().expect("building the HTTP client")
}

/// A WebRTC offer as a browser sends it: Opus and VP8, bundled, `direction` on both m-lines.
fn offer(direction: &str) -> String {
    let fp = (0..32).map(|i| format!("{:02X}", (i * 7 + 3) as u8)).collect::<Vec<_>>().join(":");
    let mut s = String::new();
    s.push_str("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n");
    for (mid, kind, pt, codec) in [(0, "audio", 111, "opus/48000/2"), (1, "video", 96, "VP8/90000")] {
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:hstl\r\na=ice-pwd:hostileinputpassword0123\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 {fp}\r\na=setup:actpass\r\na=mid:{mid}\r\na={direction}\r\na=rtcp-mux\r\n\
             a=rtpmap:{pt} {codec}\r\n"
        ));
        if direction == "sendonly" {
            s.push_str(&format!("a=msid:hostile t{mid}\r\na=ssrc:{} cname:hostile\r\n", 1000 + mid));
        }
    }
    s
}

async fn post_offer(http: &reqwest::Client, url: &str, body: String, token: bool) -> reqwest::StatusCode {
    let mut req = http.post(url).header(reqwest::header::CONTENT_TYPE, "application/sdp").body(body);
    if token {
        req = req.bearer_auth(TOKEN);
    }
    req.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}")).status()
}

/// Runs `total` requests made by `f(i)` with `concurrency` at once; counts them by status.
async fn flood<F, Fut>(total: usize, concurrency: usize, f: F) -> std::collections::BTreeMap<u16, usize>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = reqwest::StatusCode> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (f, next) = (f.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return seen;
                }
                *seen.entry(f(i).await.as_u16()).or_insert(0usize) += 1;
            }
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("flood task") {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_offers_for_unknown_streams_add_little_memory() {
    let node = Node::start("whep-unknown", &[], false);
    let http = http_client();
    let body = offer("recvonly");
    let base = node.base.clone();
    let run = |n: usize, tag: &'static str| {
        let (http, body, base) = (http.clone(), body.clone(), base.clone());
        flood(n, 16, move |i| {
            let (http, body, url) = (http.clone(), body.clone(), format!("{base}/whep/{tag}-{i}"));
            async move { post_offer(&http, &url, body, false).await }
        })
    };
    // Warm-up: allocator arenas, connection pools and lazily built state settle.
    let warm = run(10_000, "warm").await;
    assert_eq!(warm.get(&404), Some(&10_000), "unknown streams answer 404: {warm:?}");
    let (before, fds_before) = (node.rss_kib(), node.fds());
    let started = Instant::now();
    let seen = run(100_000, "unknown").await;
    let (after, fds_after) = (node.rss_kib(), node.fds());
    eprintln!(
        "100,000 WHEP offers for unknown streams in {:?}: RSS {before} -> {after} KiB, fds {fds_before} -> {fds_after}",
        started.elapsed()
    );
    assert_eq!(seen.get(&404), Some(&100_000), "every offer answered 404: {seen:?}");
    assert!(after <= before + RSS_BUDGET_KIB, "RSS grew by {} KiB (budget {RSS_BUDGET_KIB})", after.saturating_sub(before));
    assert!(fds_after <= fds_before + FD_BUDGET, "open files {fds_before} -> {fds_after} (budget {FD_BUDGET})");
    let health = http.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert!(health.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_offers_that_never_connect_leave_room_for_a_publisher() {
    // A small node so that the flood fills every viewer slot.
    // No per-address cap here: this is about the share kept for publishers.
    let node = Node::start(
        "whep-pending",
        &["--max-sessions", "400", "--workers", "2", "--http-max-pending-viewers-per-ip", "0"],
        false,
    );
    let http = http_client();
    let whip = format!("{}/whip/live", node.base);
    assert_eq!(post_offer(&http, &whip, offer("sendonly"), true).await, reqwest::StatusCode::CREATED, "first publish");
    let (base, body) = (node.base.clone(), offer("recvonly"));
    let h = http.clone();
    let started = Instant::now();
    let seen = flood(2_500, 16, move |_| {
        let (http, body, url) = (h.clone(), body.clone(), format!("{base}/whep/live"));
        async move { post_offer(&http, &url, body, false).await }
    })
    .await;
    eprintln!("2,500 WHEP offers that never connect in {:?}: {seen:?}", started.elapsed());
    assert!(seen.get(&201).copied().unwrap_or(0) >= 300, "viewers were admitted up to their share: {seen:?}");
    assert!(seen.get(&503).copied().unwrap_or(0) > 0, "the viewer share filled up: {seen:?}");
    // The viewers' share is full, yet a publisher still gets in.
    let other = format!("{}/whip/second", node.base);
    assert_eq!(post_offer(&http, &other, offer("sendonly"), true).await, reqwest::StatusCode::CREATED, "publish after the flood");
    assert_eq!(
        post_offer(&http, &format!("{}/whep/live", node.base), offer("recvonly"), false).await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "viewers stay out of the publishers' reserve"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_offers_that_never_connect_are_capped_per_address() {
    // A small cap so that the flood is over long before any of its sessions expires (10 s).
    let node = Node::start("whep-per-address", &["--workers", "2", "--http-max-pending-viewers-per-ip", "16"], false);
    let http = http_client();
    let whip = format!("{}/whip/live", node.base);
    assert_eq!(post_offer(&http, &whip, offer("sendonly"), true).await, reqwest::StatusCode::CREATED, "publish");
    let (base, body) = (node.base.clone(), offer("recvonly"));
    let h = http.clone();
    let seen = flood(40, 8, move |_| {
        let (http, body, url) = (h.clone(), body.clone(), format!("{base}/whep/live"));
        async move { post_offer(&http, &url, body, false).await }
    })
    .await;
    eprintln!("40 WHEP offers that never connect from one address: {seen:?}");
    assert_eq!(seen.get(&201), Some(&16), "one address holds at most 16 unconnected sessions: {seen:?}");
    assert_eq!(seen.get(&429), Some(&24), "the rest are refused with 429: {seen:?}");
    // Another address is not affected.
    let other = reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP_TIMEOUT)
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("HTTP client bound to 127.0.0.2");
    let url = format!("{}/whep/live", node.base);
    assert_eq!(post_offer(&other, &url, offer("recvonly"), false).await, reqwest::StatusCode::CREATED, "a second address");
    let metrics = http.get(format!("{}/metrics", node.base)).send().await.expect("GET /metrics").text().await.expect("metrics");
    assert!(
        metrics.contains("relaycast_http_requests_refused_total{kind=\"pending_viewer\"} 24"),
        "refusals counted in /metrics"
    );
    // The slots come back when the sessions expire unconnected (the SFU's 10 s connect timeout).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let status = post_offer(&http, &url, offer("recvonly"), false).await;
        if status == reqwest::StatusCode::CREATED {
            break;
        }
        assert_eq!(status, reqwest::StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "slots were not given back after the sessions expired");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A STUN Allocate request without credentials (REQUESTED-TRANSPORT UDP), as a spoofer sends it.
fn allocate(txid: u128) -> Vec<u8> {
    let mut m = Vec::with_capacity(28);
    m.extend_from_slice(&0x0003u16.to_be_bytes());
    m.extend_from_slice(&8u16.to_be_bytes());
    m.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    m.extend_from_slice(&txid.to_be_bytes()[4..]);
    m.extend_from_slice(&[0x00, 0x19, 0x00, 0x04, 17, 0, 0, 0]);
    m
}

/// Sends `total` unauthenticated Allocates from `sockets` source ports, at most `window` unanswered
/// per socket; returns how many 401s came back.
async fn allocate_flood(turn: SocketAddr, total: usize, sockets: usize, window: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for s in 0..sockets {
        let (next, answered) = (next.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("binding a UDP socket");
            let mut buf = [0u8; 1500];
            let mut n = 0u128;
            loop {
                let mut sent = 0;
                for _ in 0..window {
                    if next.fetch_add(1, Ordering::Relaxed) >= total {
                        break;
                    }
                    n += 1;
                    let _ = sock.send_to(&allocate((s as u128) << 64 | n), turn).await;
                    sent += 1;
                }
                if sent == 0 {
                    return;
                }
                for _ in 0..sent {
                    match timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
                        Ok(Ok((len, _))) if len >= 20 && buf[0] == 0x01 && buf[1] == 0x13 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("flood task");
    }
    answered.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_turn_allocates_add_little_memory() {
    let node = Node::start("turn", &["--turn", "127.0.0.1:0", "--turn-secret", "hostile-secret"], true);
    let turn = node.turn.expect("TURN address");
    let warm = allocate_flood(turn, 20_000, 64, 16).await;
    assert!(warm >= 10_000, "the node answers Allocates with 401: {warm} of 20,000");
    let (before, fds_before) = (node.rss_kib(), node.fds());
    let started = Instant::now();
    let answered = allocate_flood(turn, 400_000, 256, 16).await;
    let (after, fds_after) = (node.rss_kib(), node.fds());
    eprintln!(
        "400,000 unauthenticated Allocates from 256 ports in {:?}: {answered} answered, RSS {before} -> {after} KiB, fds {fds_before} -> {fds_after}",
        started.elapsed()
    );
    assert!(fds_after <= fds_before + FD_BUDGET, "open files {fds_before} -> {fds_after} (budget {FD_BUDGET})");
    assert!(answered >= 200_000, "the node handled the flood (UDP may drop some under load): {answered} answers");
    assert!(after <= before + RSS_BUDGET_KIB, "RSS grew by {} KiB (budget {RSS_BUDGET_KIB})", after.saturating_sub(before));
    let metrics = http_client().get(format!("{}/metrics", node.base)).send().await.expect("metrics").text().await.expect("body");
    assert!(metrics.contains("relaycast_turn_challenged"), "TURN counters in /metrics");
}
