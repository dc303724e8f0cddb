//! Relaycast archive: RTP depacketizing, keyframe-aligned segments, CMAF fMP4 muxing and HLS playlists.
//!
//! The entry point is [`recorder::Recorder`], a sans-IO state machine: feed it
//! [`rtp::RtpPacket`]s, store the [`recorder::InitSegment`]s and [`recorder::Segment`]s it returns,
//! forward its keyframe requests upstream, and index stored segments in a [`manifest::Manifest`]
//! from which [`playlist`] renders HLS.

#![warn(missing_docs)]

pub mod depacketize;
pub mod manifest;
pub mod mux;
pub mod playlist;
pub mod recorder;
pub mod reorder;
pub mod rtp;
pub mod segmenter;

pub use manifest::{Manifest, ManifestSegment};
pub use recorder::{InitSegment, Recorder, RecorderConfig, RecorderOutput, Segment, VideoCodec};
pub use rtp::{MediaKind, RtpPacket};
