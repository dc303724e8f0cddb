//! `--pin-to` against a stand-in kubo RPC (`POST /api/v0/dag/import`) that refuses its first
//! answers and checks every block of every CAR against its CID: each segment, init segment and
//! VOD root ends up pinned exactly once, including those of a recording a crash left open, whose
//! pins resume when the node starts again.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{Plane, frame, temp_dir};
use relaycast_ipfs::car::CarReader;
use relaycast_ipfs::{Blockstore, Profile};
use relaycast_mesh::SegmentAnnouncement;
use relaycast_recorder::Archiver;
use relaycast_recorder::core::TapInput;
use tokio::sync::{mpsc, oneshot};

/// What the stand-in kubo saw.
#[derive(Default)]
struct Kubo {
    /// Answers still to refuse with 503.
    refuse: AtomicU32,
    /// Imports taken, by root CID.
    pinned: Mutex<HashMap<String, u32>>,
    /// CARs with a block that does not hash to its CID.
    bad: AtomicU32,
}

/// The CAR inside a `multipart/form-data` body of one part.
fn car_of(body: &[u8]) -> Option<&[u8]> {
    let start = body.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let end = body.windows(4).rposition(|w| w == b"\r\n--")?;
    body.get(start..end)
}

async fn dag_import(State(k): State<Arc<Kubo>>, body: Bytes) -> (StatusCode, String) {
    if k.refuse.load(SeqCst) > 0 {
        k.refuse.fetch_sub(1, SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "busy".into());
    }
    let Some(car) = car_of(&body) else { return (StatusCode::BAD_REQUEST, "no multipart file".into()) };
    let Ok(mut reader) = CarReader::new(car) else { return (StatusCode::BAD_REQUEST, "not a CAR".into()) };
    let roots: Vec<String> = reader.roots().iter().map(ToString::to_string).collect();
    loop {
        match reader.next_block() {
            Ok(Some((cid, bytes))) => {
                if relaycast_ipfs::block::verify(&cid, &bytes).is_err() {
                    k.bad.fetch_add(1, SeqCst);
                    return (StatusCode::BAD_REQUEST, format!("block {cid} does not hash to its CID"));
                }
            }
            Ok(None) => break,
            Err(e) => {
                k.bad.fetch_add(1, SeqCst);
                return (StatusCode::BAD_REQUEST, e.to_string());
            }
        }
    }
    let mut pinned = k.pinned.lock().unwrap();
    for r in &roots {
        *pinned.entry(r.clone()).or_default() += 1;
    }
    (StatusCode::OK, format!("{{\"Root\":{{\"Cid\":{{\"/\":\"{}\"}},\"PinErrorMsg\":\"\"}}}}", roots.join(",")))
}

/// Starts the stand-in kubo; returns its base URL.
async fn start_kubo(k: Arc<Kubo>) -> String {
    let app = axum::Router::new().route("/api/v0/dag/import", axum::routing::post(dag_import)).with_state(k);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Feeds `stream` 5 s of frames; ends it when `end`. Returns once `want` segments are announced.
async fn record(
    archiver: &Arc<Archiver>,
    announced: &Arc<Mutex<Vec<SegmentAnnouncement>>>,
    stream: &str,
    stream_id: u64,
    want: usize,
    end: bool,
) -> (mpsc::Sender<TapInput>, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tap, rx) = mpsc::channel::<TapInput>(1024);
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(archiver.clone().run(rx, stop_rx));
    tap.send(TapInput::Started { stream_id, stream: stream.into(), generation: 1 }).await.unwrap();
    for i in 0..150 {
        let TapInput::Packet(mut p) = frame(i) else { unreachable!() };
        p.stream_id = stream_id;
        tap.send(TapInput::Packet(p)).await.unwrap();
    }
    if end {
        tap.send(TapInput::Ended { stream_id, generation: 1 }).await.unwrap();
    }
    let ok = tokio::time::timeout(Duration::from_secs(20), async {
        while announced.lock().unwrap().iter().filter(|s| s.stream == stream).count() < want {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "{want} segments of {stream} announced");
    (tap, stop_tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_and_vod_root_is_pinned_once_across_refusals_and_a_crash() {
    let dir = temp_dir("pinning");
    let kubo = Arc::new(Kubo::default());
    let url = start_kubo(kubo.clone()).await;
    let announced: Arc<Mutex<Vec<SegmentAnnouncement>>> = Arc::default();

    // First run: kubo refuses everything; the node dies (its runtime dropped: no task survives)
    // while the stream is live, with its pins queued on disk.
    kubo.refuse.store(u32::MAX, SeqCst);
    {
        let (dir, url, announced) = (dir.clone(), url.clone(), announced.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let store = Arc::new(Blockstore::open(dir.join("blocks")).unwrap());
                let a = announced.clone();
                let archiver = Archiver::open(Arc::new(Plane::default()), store, &dir, Profile::default(), None)
                    .unwrap()
                    .with_announcer(Arc::new(move |seg| a.lock().unwrap().push(seg)))
                    .with_pin_to(Some(url))
                    .unwrap();
                let kept = record(&archiver, &announced, "crashed", 1, 2, false).await;
                std::mem::forget(kept);
            });
            drop(rt);
        })
        .join()
        .unwrap();
    }
    let crashed: Vec<SegmentAnnouncement> = announced.lock().unwrap().clone();
    let queued = std::fs::read_dir(dir.join("pins")).unwrap().count();
    assert!(queued >= 3, "the init and two segments wait on disk ({queued})");
    assert!(kubo.pinned.lock().unwrap().is_empty());

    // Second run on the same data directory: kubo refuses its next three answers, then takes
    // them. The crashed recording is closed into a VOD root; a new stream is recorded and ends.
    kubo.refuse.store(3, SeqCst);
    let store = Arc::new(Blockstore::open(dir.join("blocks")).unwrap());
    let a = announced.clone();
    let (vod_tx, mut vod_rx) = mpsc::unbounded_channel::<(String, String)>();
    let archiver = Archiver::open(Arc::new(Plane::default()), store, &dir, Profile::default(), None)
        .unwrap()
        .with_announcer(Arc::new(move |seg| a.lock().unwrap().push(seg)))
        .with_pin_to(Some(url))
        .unwrap()
        .with_on_finished(Arc::new(move |stream, vod, _| {
            let _ = vod_tx.send((stream.to_owned(), vod.to_owned()));
        }));
    let (_tap, stop, task) = record(&archiver, &announced, "fresh", 2, 3, true).await;
    let mut vods = HashMap::new();
    while vods.len() < 2 {
        let (s, v) = tokio::time::timeout(Duration::from_secs(20), vod_rx.recv()).await.unwrap().unwrap();
        vods.insert(s, v);
    }
    let fresh: Vec<SegmentAnnouncement> = announced.lock().unwrap().iter().filter(|s| s.stream == "fresh").cloned().collect();

    let mut expected: Vec<String> = Vec::new();
    for s in crashed.iter().chain(&fresh) {
        for c in [&s.init, &s.cid] {
            if !expected.contains(c) {
                expected.push(c.clone());
            }
        }
    }
    expected.extend(vods.values().cloned());
    let done = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let pinned = kubo.pinned.lock().unwrap().clone();
            if expected.iter().all(|c| pinned.contains_key(c)) && archiver.pins_waiting() == 0 {
                return pinned;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let pinned = done.unwrap_or_else(|_| panic!("not every CID pinned: {:?} of {expected:?}", kubo.pinned.lock().unwrap()));
    for c in &expected {
        assert_eq!(pinned.get(c), Some(&1), "{c} pinned once");
    }
    assert_eq!(pinned.len(), expected.len(), "nothing else pinned: {pinned:?}");
    assert_eq!(kubo.bad.load(SeqCst), 0, "every block of every CAR hashes to its CID");
    assert_eq!(kubo.refuse.load(SeqCst), 0, "the refusals were met and retried");
    assert_eq!(std::fs::read_dir(dir.join("pins")).unwrap().count(), 0, "the queue on disk is empty");

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    let _ = std::fs::remove_dir_all(&dir);
}
