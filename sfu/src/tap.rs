//! The archive tap: a copy of every origin publisher's packets, handed over without waiting.
//!
//! The worker offers each packet with `try_send` on a bounded channel; when the consumer lags the
//! packet is dropped for the tap only (counted as `archive_tap_full`), never for viewers.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::packet::MediaPacket;

/// What the tap delivers.
#[derive(Debug, Clone)]
pub enum TapEvent {
    /// A WHIP publisher started feeding a stream (relays from other nodes are not tapped).
    Started {
        /// Registry id of the stream.
        stream_id: u64,
        /// Stream name.
        stream: String,
        /// Publisher generation.
        generation: u32,
    },
    /// One packet of that publisher (every layer, and audio); its `codec` is the plain
    /// [`Codec`](crate::codec::Codec) value, and `keyframe_start` / `vp8` are already parsed.
    Packet(Arc<MediaPacket>),
    /// The publisher left.
    Ended {
        /// Registry id of the stream.
        stream_id: u64,
        /// Publisher generation.
        generation: u32,
    },
}

/// Sending half of the tap; the media plane's end.
pub type TapSender = mpsc::Sender<TapEvent>;

/// Packets (and start/end events) the tap holds before it drops.
pub const TAP_CAPACITY: usize = 8192;

/// A bounded tap channel.
pub fn channel() -> (TapSender, mpsc::Receiver<TapEvent>) {
    mpsc::channel(TAP_CAPACITY)
}
