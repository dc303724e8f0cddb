//! Relaycast archive: RTP depacketizing, keyframe-aligned segments, CMAF fMP4 muxing and HLS playlists.

pub mod depacketize;
pub mod mux;
pub mod recorder;
pub mod reorder;
pub mod rtp;
pub mod segmenter;
