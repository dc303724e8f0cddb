//! The node's persistent Ed25519 identity.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

use crate::MeshError;

/// File name of the identity inside the data directory.
pub const IDENTITY_FILE: &str = "p2p-identity.key";

/// Path of the identity file for a data directory.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IDENTITY_FILE)
}

/// Loads the keypair from `<data_dir>/p2p-identity.key`, creating it (mode 0600) if absent.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, MeshError> {
    let path = identity_path(data_dir);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| MeshError::Identity(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir)?;
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| MeshError::Identity(e.to_string()))?;
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut file = opts.open(&path)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("relaycast-mesh-id-{}", rand::random::<u64>()));
        let a = load_or_create(&dir).expect("create");
        let b = load_or_create(&dir).expect("reload");
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(identity_path(&dir)).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(identity_path(&dir), b"garbage").expect("write");
        assert!(load_or_create(&dir).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
