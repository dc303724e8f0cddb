//! Every recording of a stream: two talks recorded under one stream name are both listed by
//! `GET /api/streams/{stream}/recordings`, each plays from `/replay/{stream}/{id}/vod.m3u8`, and
//! `…/recordings/{id}/download?from=&to=` returns one WebM file of the segments overlapping the
//! range (ffprobe reads it), with clear errors for what cannot be served.

mod common;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use common::Rig;
use relaycast_recorder::recordings::RecordingsResponse;
use relaycast_signaling::auth::Auth;
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let r = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let (parts, body) = r.into_parts();
    (parts.status, parts.headers, to_bytes(body, 64 << 20).await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_recordings_of_one_stream_are_listed_played_and_cut() {
    let rig = Rig::start("recordings");
    let (dir, archiver, finished) = (rig.dir.clone(), rig.archiver.clone(), rig.finished.clone());
    // Two talks in one room, one after the other: 5 s of 30 fps VP8 each, a keyframe every 2 s.
    rig.talk("room", 21, 1, 1).await;
    rig.talk("room", 22, 2, 2).await;

    let app = relaycast_recorder::routes::routes(archiver.clone(), None, Auth::new("master", "api", false));
    let (status, _, body) = get(&app, "/api/streams/room/recordings").await;
    assert_eq!(status, StatusCode::OK);
    let list: RecordingsResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(list.recordings.len(), 2, "{}", String::from_utf8_lossy(&body));
    let vods: Vec<Option<String>> = list.recordings.iter().map(|r| r.vod_cid.clone()).collect();
    assert_eq!(
        vods,
        finished.lock().unwrap().iter().cloned().map(Some).collect::<Vec<_>>(),
        "oldest first, each with its VOD root"
    );
    for r in &list.recordings {
        assert!(r.ended.is_some() && r.duration > 3.5 && r.segments >= 2, "{r:?}");
        assert_eq!(r.codecs.as_deref(), Some("vp8,opus"));
    }
    assert!(list.recordings[0].id < list.recordings[1].id);

    // Each recording's own segment list; the latest's is also /replay/room/vod.m3u8.
    let first = &list.recordings[0];
    let (status, _, pl) = get(&app, &format!("/replay/room/{}/vod.m3u8", first.id)).await;
    assert_eq!(status, StatusCode::OK);
    let pl = String::from_utf8(pl).unwrap();
    assert!(pl.contains("#EXT-X-ENDLIST") && pl.matches("#EXTINF").count() == first.segments, "{pl}");
    let (_, _, latest) = get(&app, "/replay/room/vod.m3u8").await;
    let (_, _, second) = get(&app, &format!("/replay/room/{}/vod.m3u8", list.recordings[1].id)).await;
    assert_eq!(latest, second);
    assert_ne!(pl.as_bytes(), &second[..], "two recordings, two segment lists");

    // A clip from 2.5 s to 3 s is the segment from 2 s to 4 s, after the init segment.
    let (status, headers, clip) =
        get(&app, &format!("/api/streams/room/recordings/{}/download?from=2.5&to=3", first.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/webm");
    assert_eq!(headers["x-clip-from"], "2.000");
    assert_eq!(headers["x-clip-to"], "4.000");
    assert_eq!(headers["content-length"].to_str().unwrap(), clip.len().to_string());
    assert!(clip.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]), "the file starts with the init segment");
    let ix = archiver.recording_by_id("room", first.id.parse().unwrap()).unwrap();
    let seg1 = ix.files.iter().find(|f| f.name == "segment-000001.webm").unwrap();
    let init = ix.files.iter().find(|f| f.name == "init.webm").unwrap();
    assert_eq!(clip.len() as u64, init.size + seg1.size);
    let path = dir.join("clip.webm");
    std::fs::write(&path, &clip).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=format_name:stream=codec_name,width,height", "-of", "json"])
        .arg(&path)
        .output()
        .expect("ffprobe runs");
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert!(probe.contains("matroska,webm") && probe.contains("\"vp8\"") && probe.contains("640"), "{probe}");

    // The whole recording.
    let (status, headers, all) = get(&app, &format!("/api/streams/room/recordings/{}/download", first.id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-clip-from"], "0.000");
    assert_eq!(all.len() as u64, ix.files.iter().map(|f| f.size).sum::<u64>());

    // What cannot be served says why.
    for (uri, want) in [
        ("/api/streams/room/recordings/123/download".to_string(), StatusCode::NOT_FOUND),
        ("/api/streams/room/recordings/abc/download".to_string(), StatusCode::BAD_REQUEST),
        (format!("/api/streams/room/recordings/{}/download?from=3&to=2", first.id), StatusCode::BAD_REQUEST),
        (format!("/api/streams/room/recordings/{}/download?from=60", first.id), StatusCode::RANGE_NOT_SATISFIABLE),
        ("/replay/room/123/vod.m3u8".to_string(), StatusCode::NOT_FOUND),
        ("/api/streams/..%2F/recordings".to_string(), StatusCode::BAD_REQUEST),
    ] {
        let (status, _, body) = get(&app, &uri).await;
        assert_eq!(status, want, "{uri}: {}", String::from_utf8_lossy(&body));
    }
    let (status, _, body) = get(&app, "/api/streams/nobody/recordings").await;
    assert_eq!(status, StatusCode::OK);
    assert!(serde_json::from_slice::<RecordingsResponse>(&body).unwrap().recordings.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
