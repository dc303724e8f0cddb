//! The archive service of a Relaycast node: records every stream published to the node into
//! CMAF segments stored as UnixFS in the node's blockstore while it is live, announces each
//! segment once it is durable, closes each recording into a VOD root, optionally pins it to a
//! kubo node, and serves the replay playlists and the archive API.
//!
//! The media plane copies origin publishers' packets into a bounded tap channel (it never waits
//! on it). [`core::Core`] is the sans-IO state of every recording; [`Archiver::run`] drives it
//! from the tap and performs its storage and announcements; [`routes::routes`] serves what it recorded.
//! [`replica::Replicas`] (driven by [`copies::Copies`]) keeps copies of the recordings of the
//! streams a node relays, fetched block by block from the origin, and serves them the same way.

#![warn(missing_docs)]

pub mod copies;
pub mod core;
mod error;
pub mod index;
pub mod pin;
pub mod recordings;
pub mod retention;
pub mod replica;
pub mod routes;
mod service;
pub mod stats;
pub mod tap;
pub mod volunteer;

pub use error::RecorderError;
pub use index::{RecordingIndex, StoredFile};
pub use service::{Announce, Archiver, Edge, GC_GRACE, LIVE_WINDOW, MAX_LISTED_RECORDINGS, RetentionReport, MediaPlane, OnFinished, Signer};
