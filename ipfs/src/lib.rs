//! Relaycast IPFS storage: UnixFS importer, durable blockstore, CARv1 and a trustless gateway.

pub mod block;
pub mod blockstore;
pub mod car;
pub mod dagpb;
pub mod exporter;
pub mod gateway;
pub mod unixfs;
pub mod varint;

pub use blockstore::{Blockstore, StoreError};
pub use cid::Cid;
pub use gateway::{GatewayAccess, router, router_with_access};
pub use unixfs::{BlockSink, DirectoryBuilder, Entry, FileBuilder, ImportError, Profile};
