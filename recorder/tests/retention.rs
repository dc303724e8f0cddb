//! Retention against a real block store: `--archive-max-bytes` deletes the oldest ended
//! recording and collects exactly the blocks no kept recording references (an init segment the
//! recordings share stays); a pinned recording and a live one are never touched.

mod common;

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::Rig;
use relaycast_ipfs::Cid;
use relaycast_recorder::RecordingIndex;
use relaycast_recorder::core::TapInput;
use relaycast_recorder::retention::{Holding, Policy};
use relaycast_signaling::auth::Auth;
use tower::ServiceExt;

fn cids(ix: &RecordingIndex) -> Vec<Cid> {
    ix.files.iter().map(|f| f.cid.as_str()).chain(ix.vod.as_deref()).map(|c| c.parse().unwrap()).collect()
}

fn bytes(ix: &RecordingIndex) -> u64 {
    ix.files.iter().map(|f| f.dag_size).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_ended_recording_goes_first_and_only_its_own_blocks_are_collected() {
    let rig = Rig::start("retention");
    let (dir, store, archiver) = (rig.dir.clone(), rig.store.clone(), rig.archiver.clone());
    // Three talks in "room", one after the other; "live" keeps going.
    rig.tap.send(TapInput::Started { stream_id: 50, stream: "live".into(), generation: 1 }).await.unwrap();
    rig.frames(50, 1, 150).await;
    for (talk, stream_id) in [(1u32, 21u64), (2, 22), (3, 23)] {
        rig.talk("room", stream_id, talk, talk as usize).await;
    }
    let room = archiver.recordings_of("room");
    assert_eq!(room.len(), 3);
    let live = archiver.recordings_of("live");
    assert_eq!(live.len(), 1);
    assert!(live[0].vod.is_none(), "still live");
    // The talks share their init segment (same codec parameters, same bytes, same CID).
    let init = |ix: &RecordingIndex| ix.files.iter().find(|f| f.name.starts_with("init")).unwrap().cid.clone();
    assert_eq!(init(&room[0]), init(&room[1]));

    // Just now, nothing is old enough to collect: recordings ended less than a minute ago count
    // as live.
    let total: u64 = room.iter().chain(&live).map(bytes).sum();
    let policy = Policy { max_age: None, max_bytes: Some(total - bytes(&room[0])) };
    assert!(archiver.apply_retention(&policy, SystemTime::now()).recordings.is_empty());

    // Two minutes on: the budget leaves room for all but the oldest talk.
    let later = SystemTime::now() + Duration::from_secs(120);
    let report = archiver.apply_retention(&policy, later);
    assert_eq!(report.recordings, vec![("room".to_string(), room[0].started_unix_ms, Holding::Own)]);
    let kept: Vec<Cid> = room[1..].iter().chain(&live).flat_map(cids).collect();
    for c in cids(&room[0]) {
        assert_eq!(store.has(&c), kept.contains(&c), "{c}: collected unless a kept recording has it");
    }
    assert!(report.blocks >= 3 && report.bytes > 0, "{report:?}");
    assert!(kept.iter().all(|c| store.has(c)), "every block of what is kept stays");
    assert_eq!(archiver.recordings_of("room").len(), 2);

    // Pin the older of the two left; a budget of one byte then deletes only the newest talk.
    let app = relaycast_recorder::routes::routes(archiver.clone(), None, Auth::new("master", "api", false));
    let pin = |auth: Option<&str>| {
        let mut r = Request::put(format!("/api/admin/recordings/room/{}/pin", room[1].started_unix_ms));
        if let Some(a) = auth {
            r = r.header("authorization", format!("Bearer {a}"));
        }
        app.clone().oneshot(r.body(Body::empty()).unwrap())
    };
    assert_eq!(pin(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(pin(Some("master")).await.unwrap().status(), StatusCode::NO_CONTENT);
    let report = archiver.apply_retention(&Policy { max_age: None, max_bytes: Some(1) }, later);
    assert_eq!(report.recordings, vec![("room".to_string(), room[2].started_unix_ms, Holding::Own)]);
    let left = archiver.recordings_of("room");
    assert_eq!(left.len(), 1);
    assert!(left[0].pinned && left[0].started_unix_ms == room[1].started_unix_ms);
    assert!(cids(&room[1]).iter().chain(&cids(&live[0])).all(|c| store.has(c)), "pinned and live recordings are whole");
    // Age alone: one second after their end, the pinned and the live one still stay.
    let report = archiver.apply_retention(&Policy { max_age: Some(Duration::from_secs(1)), max_bytes: None }, later);
    assert!(report.recordings.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
