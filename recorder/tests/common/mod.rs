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

