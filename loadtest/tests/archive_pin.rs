//! The archive end to end with the synthetic publisher: a node records a stream while it is
//! live, closes it into a VOD root when it ends, and imports each segment, the init segment and
//! the VOD root as CARs into a kubo RPC endpoint (`--pin-to`); here a stand-in for kubo's
//! `POST /api/v0/dag/import` records the uploads. Also reports segment close → CID announced.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::start_node;
use relaycast_ipfs::car::CarReader;
use relaycast_loadtest::{RunConfig, run};

type Uploads = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Stand-in for kubo's RPC: stores each `dag/import` body with its query string.
async fn dag_import(State(up): State<Uploads>, uri: axum::http::Uri, body: Bytes) -> &'static str {
    up.lock().unwrap_or_else(|e| e.into_inner()).push((uri.query().unwrap_or("").to_string(), body.to_vec()));
    "{}"
}

/// The CAR inside a one-part multipart body.
fn car_of_multipart(body: &[u8]) -> &[u8] {
    let start = body.windows(4).position(|w| w == b"\r\n\r\n").expect("part headers end") + 4;
    let end = body.windows(4).rposition(|w| w == b"\r\n--").expect("closing boundary");
    &body[start..end]
}

#[test]
fn recording_ends_in_a_vod_root_that_is_pinned() {
    let uploads: Uploads = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let up = uploads.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock kubo");
            let _ = tx.send(listener.local_addr().expect("addr"));
            let app = axum::Router::new().route("/api/v0/dag/import", post(dag_import)).with_state(up);
            let _ = axum::serve(listener, app).await;
        });
    });
    let kubo = format!("http://{}", rx.recv_timeout(Duration::from_secs(10)).expect("mock kubo listening"));

    let dir = std::env::temp_dir().join(format!("relaycast-archive-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (node, url) = start_node(&dir.join("data"), &["--pin-to", &kubo]);
    let mut cfg = RunConfig::relaycast(&url, "ci-token", "pin", 1, Duration::from_secs(7));
    cfg.join_timeout = Duration::from_secs(30);
    cfg.warmup = Duration::from_secs(1);
    let report = run(cfg).expect("load test run");
    assert!(report.publisher.frames > 0);

    // The publisher has left: the recording closes, and its VOD root's CAR reaches "kubo".
    let archive_url = format!("{url}/api/streams/pin/archive");
    let deadline = Instant::now() + Duration::from_secs(30);
    let root_of = |body: &[u8]| CarReader::new(car_of_multipart(body)).ok().and_then(|c| c.roots().first().map(|r| r.to_string()));
    let (archive, upload) = loop {
        let archive = get_json(&archive_url);
        if let Some(a) = &archive
            && let Some(vod) = a["vod"].as_str()
        {
            let up = uploads.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(_, b)| root_of(b).as_deref() == Some(vod)).cloned();
            if let Some(u) = up {
                break (a.clone(), u);
            }
        }
        assert!(Instant::now() < deadline, "no VOD root and upload within 30 s: {archive:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Each segment, the init segment and the VOD root are pinned once; /metrics counts each pin
    // once kubo has answered.
    let segments = archive["segments"].as_array().expect("segments");
    let pins = segments.len() as u64 + 2;
    let metric = |text: &str, name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok());
    let metrics = loop {
        let text = common::get_text(&format!("{url}/metrics")).unwrap_or_default();
        if metric(&text, "relaycast_archive_pins_total") == Some(pins) {
            break text;
        }
        assert!(Instant::now() < deadline, "relaycast_archive_pins_total never reached {pins}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut roots: Vec<String> = uploads.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(|(_, b)| root_of(b)).collect();
    roots.sort();
    let mut expected: Vec<String> = segments.iter().map(|s| s["cid"].as_str().expect("cid").to_string()).collect();
    expected.push(archive["init"].as_str().expect("init").to_string());
    expected.push(archive["vod"].as_str().expect("vod").to_string());
    expected.sort();
    assert_eq!(roots, expected, "each segment, the init segment and the VOD root pinned once");
    drop(node);
    assert_eq!(metric(&metrics, "relaycast_archive_recordings_finished_total"), Some(1), "{metrics}");
    assert_eq!(metric(&metrics, "relaycast_archive_errors_total"), Some(0), "{metrics}");
    assert_eq!(metric(&metrics, "relaycast_archive_pin_failures_total"), Some(0), "{metrics}");
    assert!(metric(&metrics, "relaycast_archive_segments_total").is_some_and(|n| n as usize >= segments.len()), "{metrics}");
    assert!(metric(&metrics, "relaycast_archive_bytes_total").is_some_and(|n| n > 10_000), "{metrics}");
    assert!(segments.len() >= 3, "7 s of stream make at least 3 segments: {archive:#}");
    assert_eq!(archive["ended"], true);
    let (query, body) = upload;
    assert!(query.contains("pin-roots=true"), "{query}");
    let mut car = CarReader::new(car_of_multipart(&body)).expect("a CAR upload");
    let roots: Vec<String> = car.roots().iter().map(|c| c.to_string()).collect();
    assert_eq!(roots, vec![archive["vod"].as_str().expect("vod").to_string()]);
    let mut blocks = 0;
    while let Some((cid, data)) = car.next_block().expect("CAR blocks decode") {
        assert!(relaycast_ipfs::block::verify(&cid, &data).is_ok(), "block {cid} matches its CID");
        blocks += 1;
    }
    // Directory + init + segments + playlist + manifest, at least.
    assert!(blocks >= segments.len() + 4, "{blocks} blocks for {} segments", segments.len());
    let announce = &archive["announce_ms"];
    println!("segment close -> CID announced: {announce}");
    assert!(announce["count"].as_u64().is_some_and(|c| c >= 3), "{archive:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Blocking JSON GET; `None` on any failure.
fn get_json(url: &str) -> Option<serde_json::Value> {
    serde_json::from_str(&common::get_text(url)?).ok()
}
