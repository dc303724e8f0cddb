//! Content addressing: CIDs of blocks and their verification.

use cid::Cid;
use multihash::Multihash;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Multicodec of raw blocks.
pub const RAW: u64 = 0x55;
/// Multicodec of dag-pb blocks.
pub const DAG_PB: u64 = 0x70;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash" (the digest is the content).
pub const IDENTITY: u64 = 0x00;

/// A block whose bytes do not match its CID, or whose CID cannot be checked.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The bytes hash to a different digest.
    #[error("block bytes do not match {0}")]
    Mismatch(Cid),
    /// The CID uses a hash function this crate does not implement.
    #[error("unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
}

/// The CIDv1 (sha2-256) of `bytes` under `codec`.
pub fn cid_of(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let mh = Multihash::<64>::wrap(SHA2_256, &digest)
        .expect("a 32-byte digest fits a 64-byte multihash");
    Cid::new_v1(codec, mh)
}

/// The content an identity CID carries inline, or `None` for hashed CIDs.
pub fn identity_content(cid: &Cid) -> Option<&[u8]> {
    (cid.hash().code() == IDENTITY).then(|| cid.hash().digest())
}

/// Checks that `bytes` are the block `cid` names.
pub fn verify(cid: &Cid, bytes: &[u8]) -> Result<(), VerifyError> {
    match cid.hash().code() {
        SHA2_256 => {
            if Sha256::digest(bytes).as_slice() == cid.hash().digest() {
                Ok(())
            } else {
                Err(VerifyError::Mismatch(*cid))
            }
        }
        IDENTITY => {
            if cid.hash().digest() == bytes {
                Ok(())
            } else {
                Err(VerifyError::Mismatch(*cid))
            }
        }
        code => Err(VerifyError::UnsupportedHash(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_fixture() {
        let c = cid_of(RAW, b"hello world");
        assert_eq!(
            c.to_string(),
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        assert_eq!(verify(&c, b"hello world"), Ok(()));
        assert_eq!(verify(&c, b"hello worle"), Err(VerifyError::Mismatch(c)));
    }

    #[test]
    fn identity_cid() {
        let c: Cid = "bafkqaaa".parse().unwrap();
        assert_eq!(identity_content(&c), Some(&[][..]));
        assert_eq!(verify(&c, b""), Ok(()));
        assert!(verify(&c, b"x").is_err());
        assert_eq!(identity_content(&cid_of(RAW, b"")), None);
    }
}
