//! The archive service end to end without sockets: tap events in, a real blockstore and
//! `index.json` on disk, announcements, a VOD root, and the replay routes answering from them.

mod common;

use common::{Plane, frame, temp_dir};
use relaycast_recorder::copies;
use relaycast_recorder::replica::{Limits, ReplicaAction, Replicas};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use relaycast_ipfs::{Blockstore, Cid, Profile};
use relaycast_mesh::SegmentAnnouncement;
use relaycast_recorder::core::TapInput;
use relaycast_recorder::{Archiver, RecordingIndex};
use relaycast_sfu::stream::SessionEvent;
use relaycast_signaling::auth::Auth;
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;

/// A block source with no blocks (the test's copy finds every block in the store already).
struct NoBlocks;

impl copies::BlockSource for NoBlocks {
    fn fetch(&self, cid: Cid, _from: Vec<relaycast_mesh::PeerId>, _timeout: Duration) -> copies::BoxFuture<Result<Vec<u8>, String>> {
        Box::pin(async move { Err(format!("{cid} is not here")) })
    }
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String) {
    let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_stream_is_stored_announced_closed_into_a_vod_root_and_served() {
    let dir = temp_dir("driver");
    let store = Arc::new(Blockstore::open(dir.join("blocks")).unwrap());
    let plane = Arc::new(Plane::default());
    let announced: Arc<Mutex<Vec<SegmentAnnouncement>>> = Arc::default();
    let (finished_tx, finished_rx) = oneshot::channel::<(String, String, u64)>();
    let finished_tx = Mutex::new(Some(finished_tx));
    let a = announced.clone();
    let archiver = Archiver::open(plane.clone(), store.clone(), &dir, Profile::default(), None)
        .unwrap()
        .with_announcer(Arc::new(move |seg| a.lock().unwrap().push(seg)))
        .with_on_finished(Arc::new(move |stream, vod, segments| {
            if let Some(tx) = finished_tx.lock().unwrap().take() {
                let _ = tx.send((stream.to_string(), vod.to_string(), segments));
            }
        }));
    let (tap, rx) = mpsc::channel::<TapInput>(1024);
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(archiver.clone().run(rx, stop_rx));

    tap.send(TapInput::Started { stream_id: 9, stream: "drv".into(), generation: 1 }).await.unwrap();
    // 5 s of media (keyframes every 2 s) handed over at once: two segments close while live.
    for i in 0..150 {
        tap.send(frame(i)).await.unwrap();
    }
    let app = relaycast_recorder::routes::routes(archiver.clone(), None, Auth::new("master", "api", false));
    let live = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if announced.lock().unwrap().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(live.is_ok(), "two segments announced while live");
    let (status, body) = get(&app, "/replay/drv/live.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("#EXT-X-ENDLIST"), "live playlist of a live stream: {body}");
    assert!(body.contains(&announced.lock().unwrap()[0].cid), "the live playlist lists the announced segment");

    tap.send(TapInput::Ended { stream_id: 9, generation: 1 }).await.unwrap();
    let (stream, vod, segments) = tokio::time::timeout(Duration::from_secs(20), finished_rx).await.unwrap().unwrap();
    assert_eq!((stream.as_str(), segments), ("drv", 3));
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(20), task).await.unwrap().unwrap();

    // Announcements: in order, each CID stored, each also sent to the stream's viewers.
    let announced = announced.lock().unwrap().clone();
    assert_eq!(announced.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 1, 2]);
    for s in &announced {
        let cid: Cid = s.cid.parse().unwrap();
        assert!(store.get(&cid).unwrap().is_some(), "segment {} is in the blockstore", s.seq);
        assert_eq!(s.duration, if s.seq < 2 { 2.0 } else { 1.0 });
    }
    let events = plane.events.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    assert!(matches!(&events[0].1, SessionEvent::Segment { seq: 0, duration_ms: 2000, .. }));
    assert_eq!(plane.keyframes.lock().unwrap().first(), Some(&(9, 2)), "a keyframe is asked for the chosen layer");

    // The gateway's owner index names the stream for every file and the VOD root.
    let owners = archiver.owners();
    for cid in announced.iter().map(|s| s.cid.as_str()).chain([announced[0].init.as_str(), vod.as_str()]) {
        assert_eq!(owners.stream_of(cid).as_deref(), Some("drv"), "owner of {cid}");
    }

    // The VOD root is a stored directory, and the index on disk names it.
    let root: Cid = vod.parse().unwrap();
    assert!(store.get(&root).unwrap().is_some());
    let rec = archiver.recording("drv").unwrap();
    assert_eq!(rec.vod.as_deref(), Some(vod.as_str()));
    let on_disk: RecordingIndex = serde_json::from_slice(
        &std::fs::read(dir.join("archive/drv").join(rec.started_unix_ms.to_string()).join("index.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(on_disk.vod.as_deref(), Some(vod.as_str()));
    assert_eq!(on_disk.files.len(), 4);

    // The routes answer from it.
    let (status, body) = get(&app, "/replay/drv/vod.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("#EXT-X-ENDLIST"));
    let (status, body) = get(&app, "/api/streams/drv/archive").await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ended"], true);
    assert_eq!(json["vod"], vod.as_str());
    assert_eq!(json["layer"], "f");
    assert_eq!(json["segments"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["announce_ms"]["count"], 3);
    assert_eq!(get(&app, "/api/streams/other/archive").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/replay/bad%20name/vod.m3u8").await.0, StatusCode::BAD_REQUEST);

    // A relay's copy, built from the announcements alone (its blocks already here), closes into
    // the origin's VOD root: the same files, names, sizes and manifest.
    let t = std::time::Instant::now();
    let mut copy = Replicas::new("relay", Limits::default());
    let fetches: Vec<ReplicaAction> = announced.iter().flat_map(|s| copy.announced("origin", s.clone(), t)).collect();
    assert_eq!(fetches.len(), 3);
    for f in fetches {
        let ReplicaAction::Fetch { stream, seq, roots, .. } = f else { panic!("{f:?}") };
        let mut files = Vec::new();
        for r in roots {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
            let (file, fetched) = copies::fetch_file(&store, &NoBlocks, r.parse().unwrap(), &[], deadline).await.unwrap();
            assert_eq!(fetched, 0, "every block is already here");
            files.push(file);
        }
        copy.fetched(&stream, seq, Ok(files), t);
    }
    assert!(copy.tick(t, &|_| false).is_empty(), "the stream is gone from now on");
    let built = copy.tick(t + Duration::from_secs(11), &|_| false);
    let [ReplicaAction::BuildVod { index, .. }] = built.as_slice() else { panic!("{built:?}") };
    let mut index = index.clone();
    relaycast_recorder::index::finish_index(&store, &mut index).unwrap();
    assert_eq!(index.vod.as_deref(), Some(vod.as_str()), "the copy's VOD root is the origin's");

    // A node opening the same data directory finds the recording.
    let again = Archiver::open(plane, store, &dir, Profile::default(), None).unwrap();
    assert_eq!(again.recording("drv").and_then(|r| r.vod), Some(vod));
    let _ = std::fs::remove_dir_all(&dir);
}
