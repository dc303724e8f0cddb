//! What the recorder's integration tests share: a media plane that records what it is asked,
//! and synthetic VP8 frames for the tap.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use relaycast_archive::{MediaKind, RtpPacket, VideoCodec};
use relaycast_recorder::MediaPlane;
use relaycast_recorder::core::{TapInput, TapPacket};
use relaycast_sfu::stream::SessionEvent;

/// Records what the archive asks of the media plane.
#[derive(Default)]
pub struct Plane {
    pub keyframes: Mutex<Vec<(u64, u8)>>,
    pub events: Mutex<Vec<(String, SessionEvent)>>,
}

impl MediaPlane for Plane {
    fn request_keyframe(&self, stream_id: u64, layer: u8) {
        self.keyframes.lock().unwrap().push((stream_id, layer));
    }

    fn broadcast(&self, stream: &str, event: &SessionEvent) {
        self.events.lock().unwrap().push((stream.to_string(), event.clone()));
    }
}

/// A VP8 payload: a 640×360 keyframe or an interframe.
pub fn vp8(key: bool) -> Vec<u8> {
    let mut p = vec![0x10];
    if key {
        let tag: u32 = (4 << 5) | 0x10;
        p.extend_from_slice(&[tag as u8, (tag >> 8) as u8, (tag >> 16) as u8, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&640u16.to_le_bytes());
        p.extend_from_slice(&360u16.to_le_bytes());
        p.extend_from_slice(&[0xaa; 4]);
    } else {
        p.extend_from_slice(&[0x01, 0, 0, 7, 7]);
    }
    p
}

pub fn frame(i: u64) -> TapInput {
    let key = i.is_multiple_of(60);
    TapInput::Packet(TapPacket {
        stream_id: 9,
        generation: 1,
        layer: 2,
        keyframe_start: key,
        codec: VideoCodec::Vp8,
        rtp: RtpPacket {
            kind: MediaKind::Video,
            seq: 500 + i,
            timestamp: (i * 3000) as u32,
            marker: true,
            payload: Arc::from(vp8(key)),
            arrival: Instant::now(),
            capture: None,
        },
    })
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaycast-recorder-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An archiver recording what a test feeds its tap, in `dir`, and the VOD roots it finished.
pub struct Rig {
    pub dir: PathBuf,
    pub store: Arc<relaycast_ipfs::Blockstore>,
    pub archiver: Arc<relaycast_recorder::Archiver>,
    pub tap: tokio::sync::mpsc::Sender<TapInput>,
    pub finished: Arc<Mutex<Vec<String>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Rig {
    /// A fresh archive in a temporary directory named after `name`, its recorder running.
    pub fn start(name: &str) -> Self {
        let dir = temp_dir(name);
        let store = Arc::new(relaycast_ipfs::Blockstore::open(dir.join("blocks")).unwrap());
        let finished: Arc<Mutex<Vec<String>>> = Arc::default();
        let f = finished.clone();
        let archiver = relaycast_recorder::Archiver::open(
            Arc::new(Plane::default()),
            store.clone(),
            &dir,
            relaycast_ipfs::Profile::default(),
            None,
        )
        .unwrap()
        .with_on_finished(Arc::new(move |_, vod, _| f.lock().unwrap().push(vod.to_owned())));
        let (tap, rx) = tokio::sync::mpsc::channel::<TapInput>(1024);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(archiver.clone().run(rx, stop_rx));
        Self { dir, store, archiver, tap, finished, _stop: stop }
    }

    /// `n` VP8 frames at 30 fps (a keyframe every 2 s) of publisher `generation` of `stream_id`.
    pub async fn frames(&self, stream_id: u64, generation: u32, n: u64) {
        for i in 0..n {
            let TapInput::Packet(mut p) = frame(i) else { unreachable!() };
            p.stream_id = stream_id;
            p.generation = generation;
            self.tap.send(TapInput::Packet(p)).await.unwrap();
        }
    }

    /// A whole talk in `stream`: started, 5 s of video, ended; returns once its VOD root is
    /// built (the `nth` recording finished), a few ms later so that the next one starts later.
    pub async fn talk(&self, stream: &str, stream_id: u64, generation: u32, nth: usize) {
        self.tap.send(TapInput::Started { stream_id, stream: stream.into(), generation }).await.unwrap();
        self.frames(stream_id, generation, 150).await;
        self.tap.send(TapInput::Ended { stream_id, generation }).await.unwrap();
        let done = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            while self.finished.lock().unwrap().len() < nth {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(done.is_ok(), "recording {nth} closed into a VOD root");
        // Recordings are named by their start in milliseconds.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
