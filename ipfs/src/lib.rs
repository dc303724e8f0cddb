//! Relaycast IPFS storage: UnixFS importer, durable blockstore, CARv1 and a trustless gateway.
