//! TLS for the HTTP listener: a certificate resolver whose key pair is replaced when the PEM
//! files change on disk (certbot renewals), without a restart. A bad new pair keeps the old one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("reading certificates from {path}: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("reading the private key from {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key is of a kind rustls cannot sign with, or does not match the certificate.
    #[error("certificate and key: {0}")]
    Pair(rustls::Error),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The PEM certificate chain and private key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key.
pub fn load_pair(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| TlsError::Cert { path: files.cert.clone(), reason: e.to_string() })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert { path: files.cert.clone(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Cert { path: files.cert.clone(), reason: "no CERTIFICATE block".into() });
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key { path: files.key.clone(), reason: e.to_string() })?;
    let ck = CertifiedKey::from_der(certs, key, &provider()).map_err(TlsError::Pair)?;
    Ok(ck)
}

/// Modification times of the two files (None when one cannot be read).
fn mtimes(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.cert)?, m(&files.key)?))
}

/// Serves the current key pair and swaps in a new one when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    seen: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl ReloadingCert {
    /// Loads the pair; fails when it cannot be used.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let seen = mtimes(&files);
        let ck = load_pair(&files)?;
        Ok(ReloadingCert { files, current: RwLock::new(Arc::new(ck)), seen: RwLock::new(seen) })
    }

    /// Reloads when either file's modification time changed since the last look; returns true
    /// when a new pair is now served. A pair that fails to load is logged and the old one kept.
    pub fn check(&self) -> bool {
        let now = mtimes(&self.files);
        {
            let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
            if now.is_none() || *seen == now {
                return false;
            }
        }
        *self.seen.write().unwrap_or_else(|e| e.into_inner()) = now;
        match load_pair(&self.files) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ck);
                info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                warn!(error = %e, "new TLS certificate not usable; still serving the previous one");
                false
            }
        }
    }

    /// Checks the files every `interval` until the returned task is aborted.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A stat and, rarely, a small file read: cheap enough for the runtime.
                me.check();
            }
        })
    }

    /// A rustls server configuration using this resolver, offering HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, ck.cert.pem()).unwrap();
        std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
        files
    }

    fn served(r: &ReloadingCert) -> Vec<u8> {
        r.current.read().unwrap().cert[0].to_vec()
    }

    fn bump_mtime(p: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(secs)).unwrap();
    }

    #[test]
    fn reloads_on_change_and_keeps_old_pair_on_bad_one() {
        let dir = std::env::temp_dir().join(format!("relaycast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = write_pair(&dir, "one.test");
        let r = ReloadingCert::load(files.clone()).unwrap();
        let first = served(&r);
        assert!(!r.check(), "unchanged files are not reloaded");
        write_pair(&dir, "two.test");
        bump_mtime(&files.cert, 5);
        assert!(r.check());
        let second = served(&r);
        assert_ne!(first, second);
        // A key that does not match the certificate: the old pair stays.
        let other = rcgen::generate_simple_self_signed(vec!["three.test".to_owned()]).unwrap();
        std::fs::write(&files.key, other.signing_key.serialize_pem()).unwrap();
        bump_mtime(&files.key, 10);
        assert!(!r.check());
        assert_eq!(served(&r), second);
        // Garbage: same.
        std::fs::write(&files.cert, "not a certificate").unwrap();
        bump_mtime(&files.cert, 15);
        assert!(!r.check());
        assert_eq!(served(&r), second);
        assert!(ReloadingCert::load(files).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
