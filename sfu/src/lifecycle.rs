//! Publisher start and end on this node, for listeners outside the media plane (webhooks).
//!
//! Workers offer each event with `try_send` on a bounded channel, once per publisher session
//! start and end (never per packet); a full channel drops the event with a log line.

use tokio::sync::mpsc;

/// A WHIP publisher (not a relay from another node) started or stopped feeding a stream here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLifecycle {
    /// The publisher's session was created (its offer answered).
    Started {
        /// Stream name.
        stream: String,
        /// Publisher generation (counts publishers of the stream on this node).
        generation: u32,
    },
    /// The publisher's session ended.
    Ended {
        /// Stream name.
        stream: String,
        /// Publisher generation.
        generation: u32,
    },
}

/// Sending half; the media plane's end.
pub type LifecycleSender = mpsc::Sender<StreamLifecycle>;

/// Events the channel holds before it drops.
pub const LIFECYCLE_CAPACITY: usize = 1024;

/// A bounded lifecycle channel.
pub fn channel() -> (LifecycleSender, mpsc::Receiver<StreamLifecycle>) {
    mpsc::channel(LIFECYCLE_CAPACITY)
}
