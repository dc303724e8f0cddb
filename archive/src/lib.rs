//! Relaycast archive: RTP depacketizing, keyframe-aligned segments, CMAF fMP4 (H264, Opus) and
//! WebM (VP8) muxing, and HLS playlists.
//!
//! The entry point is [`recorder::Recorder`], a sans-IO state machine: feed it
//! [`rtp::RtpPacket`]s, store the [`recorder::InitSegment`]s and [`recorder::Segment`]s it returns,
//! forward its keyframe requests upstream, and index stored segments in a [`manifest::Manifest`]
//! from which [`playlist`] renders HLS. With [`segmenter::SegmenterConfig::part_target`] it also
//! returns each segment's parts as its frames arrive ([`recorder::Part`]), which a
//! [`lowlatency::LiveEdge`] keeps for low-latency HLS.
//!
//! ```
//! use std::time::Instant;
//! use relaycast_archive::{Manifest, Recorder, RecorderConfig, RecorderOutput, RtpPacket, MediaKind, playlist};
//!
//! let mut recorder = Recorder::new(RecorderConfig::default()); // VP8 + Opus, 2 s segments
//! let mut manifest: Option<Manifest> = None;
//! let mut init_cid = String::new();
//! let packet = RtpPacket {
//!     kind: MediaKind::Video,
//!     seq: 1,
//!     timestamp: 0,
//!     marker: true,
//!     payload: vec![0x10, 0x01, 0x00].into(),
//!     arrival: Instant::now(),
//!     capture: None,
//! };
//! for out in recorder.push(packet, Instant::now()) {
//!     match out {
//!         RecorderOutput::InitSegment(init) => {
//!             init_cid = format!("cid-of-{}-bytes", init.bytes.len()); // store, get a CID
//!             manifest.get_or_insert_with(|| Manifest::new(init_cid.clone(), init.codecs()));
//!         }
//!         RecorderOutput::Segment(seg) => {
//!             let cid = format!("cid-of-{}-bytes", seg.bytes.len()); // store, get a CID
//!             if let Some(m) = manifest.as_mut() {
//!                 m.push_segment(seg.seq, cid, seg.duration, seg.start_wallclock, &init_cid);
//!             }
//!         }
//!         RecorderOutput::RequestKeyframe => { /* send a PLI to the publisher */ }
//!         RecorderOutput::Part(_) => { /* low-latency HLS only */ }
//!     }
//! }
//! if let Some(m) = &manifest {
//!     let _live = playlist::live(m, 6);
//!     let _vod = playlist::vod(m);
//! }
//! ```

#![warn(missing_docs)]

pub mod dash;
pub mod depacketize;
pub mod lowlatency;
pub mod manifest;
pub mod mux;
pub mod owners;
pub mod playlist;
pub mod recorder;
pub mod reorder;
pub mod rtp;
pub mod segmenter;
pub mod webm;

pub use manifest::{Manifest, ManifestSegment};
pub use mux::Container;
pub use lowlatency::{EdgeUpdate, LiveEdge};
pub use recorder::{InitSegment, Part, Recorder, RecorderConfig, RecorderOutput, Segment, VideoCodec};
pub use rtp::{MediaKind, RtpPacket};
