//! Private-network pre-shared key files (go-ipfs `swarm.key` format).

use std::path::Path;

use libp2p::pnet::PreSharedKey;

use crate::MeshError;

/// Reads and parses a `swarm.key` file.
pub fn load_key(path: &Path) -> Result<PreSharedKey, MeshError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MeshError::MeshKey(format!("{}: {e}", path.display())))?;
    parse_key(&text).map_err(|e| MeshError::MeshKey(format!("{}: {e}", path.display())))
}

/// Parses the text of a `swarm.key` file.
pub fn parse_key(text: &str) -> Result<PreSharedKey, MeshError> {
    text.trim_start()
        .parse::<PreSharedKey>()
        .map_err(|e| MeshError::MeshKey(e.to_string()))
}

/// Generates a fresh random key in `swarm.key` format.
pub fn generate_key_file() -> String {
    PreSharedKey::new(rand::random::<[u8; 32]>()).to_key_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_and_garbage_is_rejected() {
        let text = generate_key_file();
        let key = parse_key(&text).expect("parse");
        assert_eq!(key.to_key_file(), text);
        assert!(parse_key("/key/swarm/psk/1.0.0/\n/base16/\nzz").is_err());
        assert!(parse_key("").is_err());
    }
}
