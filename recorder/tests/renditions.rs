//! Every simulcast layer recorded: a publisher sending layers f and q is recorded as a main
//! rendition (f) and a rendition q; `/replay/{stream}/vod.m3u8` and
//! `/replay/{stream}/{id}/vod.m3u8` are multivariant playlists of both, each variant plays from
//! its own media playlist, and the VOD root holds `master.m3u8` and `q/`.

mod common;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use common::{Rig, frame};
use relaycast_recorder::core::TapInput;
use relaycast_signaling::auth::Auth;
use tower::ServiceExt;

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, String) {
    let r = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
    let status = r.status();
    (status, String::from_utf8_lossy(&to_bytes(r.into_body(), 64 << 20).await.unwrap()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layers_become_two_renditions_of_one_recording() {
    let rig = Rig::start("renditions");
    rig.tap.send(TapInput::Started { stream_id: 9, stream: "room".into(), generation: 1 }).await.unwrap();
    // 5 s of layers f (2) and q (0), frame by frame.
    for i in 0..150 {
        for layer in [2u8, 0] {
            let TapInput::Packet(mut p) = frame(i) else { unreachable!() };
            p.layer = layer;
            p.rtp.seq += u64::from(layer) * 10_000;
            rig.tap.send(TapInput::Packet(p)).await.unwrap();
        }
    }
    rig.tap.send(TapInput::Ended { stream_id: 9, generation: 1 }).await.unwrap();
    let done = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while rig.finished.lock().unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the recording closed into a VOD root");

    let app = relaycast_recorder::routes::routes(rig.archiver.clone(), None, Auth::new("master", "api", false));
    // The VOD root is reported before the final index is shown: wait for the index.
    let mut archive = serde_json::Value::Null;
    for _ in 0..500 {
        let (status, body) = get(&app, "/api/streams/room/archive").await;
        assert_eq!(status, StatusCode::OK);
        archive = serde_json::from_str(&body).unwrap();
        if archive["vod"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(archive["vod"].is_string(), "{archive}");
    assert_eq!(archive["layer"], "f");
    assert_eq!(archive["renditions"], serde_json::json!(["q"]));

    let (status, master) = get(&app, "/replay/room/vod.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    let variants: Vec<&str> = master.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert_eq!(variants, ["vod/f.m3u8", "vod/q.m3u8"], "{master}");
    assert_eq!(master.matches("#EXT-X-STREAM-INF:BANDWIDTH=").count(), 2);
    assert!(master.contains("RESOLUTION=640x360,CODECS=\"vp8,opus\""), "{master}");
    for v in ["f", "q"] {
        let (status, pl) = get(&app, &format!("/replay/room/vod/{v}.m3u8")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(pl.contains("#EXT-X-ENDLIST") && pl.matches("#EXTINF:").count() >= 2 && pl.contains("/ipfs/"), "{v}: {pl}");
    }
    assert_eq!(get(&app, "/replay/room/vod/h.m3u8").await.0, StatusCode::NOT_FOUND);
    let (_, live) = get(&app, "/replay/room/live.m3u8").await;
    assert!(live.contains("live/f.m3u8") && live.contains("live/q.m3u8"), "{live}");
    assert_eq!(get(&app, "/replay/room/live/q.m3u8").await.0, StatusCode::OK);

    // The recording by its id: the same multivariant playlist, its variants under {id}/vod/.
    let id = archive["started_unix_ms"].as_u64().unwrap();
    let (status, by_id) = get(&app, &format!("/replay/room/{id}/vod.m3u8")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_id, master);
    let (status, q) = get(&app, &format!("/replay/room/{id}/vod/q.m3u8")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(q.contains("#EXT-X-ENDLIST"), "{q}");

    // The MPD: the main rendition.
    for path in ["/replay/room/vod.mpd".to_string(), format!("/replay/room/{id}/vod.mpd")] {
        let (status, mpd) = get(&app, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mpd.matches("<Representation id=").count(), 1, "{mpd}");
        assert!(mpd.contains("type=\"static\""), "{mpd}");
    }

    // The VOD root: master.m3u8 and the q rendition's directory.
    let root: relaycast_ipfs::Cid = archive["vod"].as_str().unwrap().parse().unwrap();
    for path in [&["master.m3u8"][..], &["vod.m3u8"], &["q", "vod.m3u8"], &["q", "init.webm"], &["q", "segment-000000.webm"]] {
        assert!(relaycast_ipfs::exporter::resolve(&rig.store, &root, path).unwrap().is_some(), "{path:?} in the VOD root");
    }
}
