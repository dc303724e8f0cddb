//! The archive service of a Relaycast node: records every stream published to the node into
//! CMAF segments stored as UnixFS in the node's blockstore while it is live, announces each
//! segment once it is durable, closes each recording into a VOD root, optionally pins it to a
//! kubo node, and serves the replay playlists and the archive API.
//!
//! The media plane copies origin publishers' packets into a bounded tap channel (it never waits
//! on it). [`Archiver::run`] consumes it; [`routes::routes`] serves what it recorded.

mod error;
pub mod pin;
pub mod routes;
mod service;
pub mod stats;

pub use error::RecorderError;
pub use service::{Announce, Archiver, LIVE_WINDOW, OnFinished, RecordingIndex, StoredFile};
