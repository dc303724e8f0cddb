//! Relaycast ingest: RTMP and SRT publishers become WebRTC publishers of the node.
//!
//! [`session`] is a sans-IO RTMP server connection (handshake, [`chunk`] streams, [`amf`]
//! commands, [`flv`] H264 and AAC tags); [`ts`] a sans-IO MPEG-TS demuxer for SRT. [`server`] drives it over TCP with explicit limits, and
//! [`publisher`] publishes its H264 into the node over WHIP as an in-process str0m client, so
//! tokens, grants, the archive and the mesh treat it like any WHIP publisher.

pub mod amf;
pub mod annexb;
#[cfg(feature = "server")]
pub mod args;
#[cfg(feature = "server")]
pub mod audio;
pub mod chunk;
#[cfg(feature = "server")]
pub mod feed;
pub mod flv;
#[cfg(feature = "server")]
pub mod publisher;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
#[cfg(feature = "server")]
pub mod srt;
pub mod stats;
pub mod ts;

/// What goes wrong with an RTMP connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// C0 named an RTMP version other than 3 (6 is RTMPE, not supported).
    #[error("RTMP version {0} in the handshake (only 3 is supported)")]
    Handshake(u8),
    /// A malformed chunk.
    #[error("bad chunk: {0}")]
    Chunk(&'static str),
    /// `Set Chunk Size` outside 1..=MAX_CHUNK_SIZE.
    #[error("chunk size {0} outside 1..={max}", max = chunk::MAX_CHUNK_SIZE)]
    ChunkSize(u32),
    /// A message longer than MAX_MESSAGE_LEN.
    #[error("message of {0} bytes over the limit of {max}", max = chunk::MAX_MESSAGE_LEN)]
    MessageTooLarge(u32),
    /// More chunk streams than MAX_CHUNK_STREAMS.
    #[error("more than {max} chunk streams", max = chunk::MAX_CHUNK_STREAMS)]
    TooManyChunkStreams,
    /// Malformed AMF0.
    #[error("bad AMF0: {0}")]
    Amf(&'static str),
    /// A command out of order or without its arguments.
    #[error("bad command: {0}")]
    Command(&'static str),
    /// A malformed FLV video or audio tag.
    #[error("bad FLV tag: {0}")]
    Flv(&'static str),
}
