//! Time-limited credentials in the coturn "REST API" scheme:
//! `username = <expiry unix time>:<label>`, `password = base64(HMAC-SHA1(secret, username))`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use ring::hmac;

/// Why a username was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The username has no `<expiry>` prefix that parses as a unix time.
    #[error("username {0:?} is not <expiry>:<label>")]
    Malformed(String),
    /// The expiry time has passed.
    #[error("credentials expired at {expiry} (now {now})")]
    Expired {
        /// Expiry time in the username.
        expiry: u64,
        /// Current time.
        now: u64,
    },
}

/// A TURN username and password pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `<expiry>:<label>`.
    pub username: String,
    /// `base64(HMAC-SHA1(secret, username))`.
    pub password: String,
}

/// Seconds since the unix epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The password for `username` under `secret`.
pub fn password_for(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    BASE64_STANDARD.encode(hmac::sign(&key, username.as_bytes()).as_ref())
}

/// Credentials for `label` that expire at unix time `expiry`.
pub fn mint_until(secret: &str, label: &str, expiry: u64) -> Credentials {
    let label: String = label.chars().filter(|c| *c != ':' && !c.is_control()).collect();
    let username = format!("{expiry}:{label}");
    let password = password_for(secret, &username);
    Credentials { username, password }
}

/// Credentials for `label` valid for `ttl` from now.
pub fn mint(secret: &str, label: &str, ttl: Duration) -> Credentials {
    mint_until(secret, label, unix_now().saturating_add(ttl.as_secs()))
}

/// Checks that `username` has the `<expiry>[:<label>]` form and has not expired at `now`.
pub fn check_username(username: &str, now: u64) -> Result<u64, CredentialError> {
    let expiry_part = username.split(':').next().unwrap_or("");
    let expiry: u64 = expiry_part.parse().map_err(|_| CredentialError::Malformed(username.to_owned()))?;
    if expiry < now {
        return Err(CredentialError::Expired { expiry, now });
    }
    Ok(expiry)
}

/// Loads the secret kept in `dir/turn-secret`, creating it (random, owner-only) when absent.
pub fn load_or_create_secret(dir: &Path) -> std::io::Result<String> {
    load_or_create_secret_file(&dir.join("turn-secret"), 24)
}

/// Loads the secret kept in the file at `path` (trimmed), creating it with `bytes` random bytes in
/// hex (owner-only, synced) when the file is absent or empty.
pub fn load_or_create_secret_file(path: &Path, bytes: usize) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret: String = (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    Ok(secret)
}

/// `turn` crate auth handler for the REST scheme: refuses expired and malformed usernames;
/// a forged password fails the message-integrity check that follows.
pub struct RestAuthHandler {
    secret: String,
}

impl RestAuthHandler {
    /// A handler for this shared secret.
    pub fn new(secret: String) -> Self {
        RestAuthHandler { secret }
    }
}

impl turn::auth::AuthHandler for RestAuthHandler {
    fn auth_handle(&self, username: &str, realm: &str, src_addr: SocketAddr) -> Result<Vec<u8>, turn::Error> {
        if let Err(e) = check_username(username, unix_now()) {
            tracing::debug!(%src_addr, error = %e, "TURN credentials refused");
            return Err(turn::Error::Other(e.to_string()));
        }
        let password = password_for(&self.secret, username);
        Ok(turn::auth::generate_auth_key(username, realm, &password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turn::auth::AuthHandler;

    #[test]
    fn password_matches_coturn_scheme() {
        // HMAC-SHA1("secret", "1700000000:alice"), base64; computed independently with
        // `printf %s 1700000000:alice | openssl dgst -sha1 -hmac secret -binary | base64`.
        let c = mint_until("secret", "alice", 1_700_000_000);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, password_for("secret", "1700000000:alice"));
        assert_eq!(c.password, "d8soP47RbdIKLDUOpnJPVQyq5Ts=");
        assert_ne!(c.password, password_for("other", "1700000000:alice"));
    }

    #[test]
    fn expiry_is_checked() {
        assert_eq!(check_username("100:x", 50), Ok(100));
        assert_eq!(check_username("100", 100), Ok(100));
        assert_eq!(check_username("100:x", 101), Err(CredentialError::Expired { expiry: 100, now: 101 }));
        assert!(matches!(check_username("alice", 1), Err(CredentialError::Malformed(_))));
        assert!(matches!(check_username(":1", 1), Err(CredentialError::Malformed(_))));
    }

    #[test]
    fn label_cannot_forge_expiry() {
        let c = mint_until("s", "a:99999999999", 10);
        assert_eq!(c.username, "10:a99999999999");
    }

    #[test]
    fn handler_refuses_expired_and_keys_valid() {
        let h = RestAuthHandler::new("s".into());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(h.auth_handle("1:old", "r", addr).is_err());
        let c = mint("s", "v", Duration::from_secs(60));
        let key = h.auth_handle(&c.username, "r", addr).unwrap();
        assert_eq!(key, turn::auth::generate_auth_key(&c.username, "r", &c.password));
    }

    #[test]
    fn secret_is_created_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("rc-turn-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = load_or_create_secret(&dir).unwrap();
        let b = load_or_create_secret(&dir).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 48);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
