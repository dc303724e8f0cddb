//! Errors of the recorder.

use thiserror::Error;

/// What can go wrong storing, closing or exporting a recording.
#[derive(Debug, Error)]
pub enum RecorderError {
    /// The blockstore failed.
    #[error("blockstore: {0}")]
    Store(#[from] relaycast_ipfs::StoreError),
    /// A UnixFS directory could not be built.
    #[error("UnixFS: {0}")]
    Import(#[from] relaycast_ipfs::ImportError),
    /// A CAR could not be exported.
    #[error("CAR export: {0}")]
    Car(#[from] relaycast_ipfs::car::CarError),
    /// A CID in a recording index does not parse.
    #[error("invalid CID {cid:?} in the recording index")]
    BadCid {
        /// The text found.
        cid: String,
    },
    /// A file system operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
