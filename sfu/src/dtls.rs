//! A DTLS provider for str0m that builds its DTLS configuration once per process.
//!
//! str0m's default aws-lc-rs provider builds a fresh `dimpl::Config` for every peer connection,
//! and building one validates the crypto provider by running test key exchanges and signature
//! checks: about 11 million instructions per peer, more than the DTLS handshake itself. The
//! configuration is immutable and `dimpl` takes it behind an `Arc`, so [`crypto_provider`]
//! hands str0m a provider that builds it once per MTU and shares it between every peer. Joins
//! get cheaper for the node and for anything else that opens many peer connections (the load
//! generator uses the same provider).
//!
//! `dimpl` (the default) refuses RSA peer certificates, which GStreamer presents;
//! [`DtlsBackend::Openssl`] runs the handshake on OpenSSL instead (`crate::dtls_openssl`).

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, ProtocolVersion};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::SrtpProfile;

/// Which DTLS implementation the node's peer connections use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsBackend {
    /// OpenSSL's DTLS 1.2 (`libssl`): takes RSA and ECDSA peer certificates (GStreamer's
    /// `webrtcbin` presents RSA); about twice the CPU per join.
    Openssl,
    /// str0m's own DTLS (`dimpl`), DTLS 1.2 and 1.3: ECDSA peer certificates only.
    #[default]
    Dimpl,
}

impl std::str::FromStr for DtlsBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "openssl" => Ok(DtlsBackend::Openssl),
            "dimpl" => Ok(DtlsBackend::Dimpl),
            other => Err(format!("unknown DTLS backend {other:?} (openssl or dimpl)")),
        }
    }
}

impl fmt::Display for DtlsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DtlsBackend::Openssl => "openssl",
            DtlsBackend::Dimpl => "dimpl",
        })
    }
}

/// The crypto provider of the default backend ([`DtlsBackend::Dimpl`]).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    crypto_provider_for(DtlsBackend::default())
}

/// The crypto provider to give every `Rtc` (`RtcConfig::set_crypto_provider`): str0m's
/// aws-lc-rs provider (SRTP, hashes) with DTLS from `backend`, its configuration shared
/// between peers.
pub fn crypto_provider_for(backend: DtlsBackend) -> Arc<CryptoProvider> {
    static DIMPL: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static OPENSSL: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DIMPL_DTLS: SharedConfigDtls = SharedConfigDtls { configs: Mutex::new(Vec::new()) };
    static OPENSSL_DTLS: crate::dtls_openssl::OpensslDtls = crate::dtls_openssl::OpensslDtls::new();
    let (cell, dtls): (_, &'static dyn DtlsProvider) = match backend {
        DtlsBackend::Dimpl => (&DIMPL, &DIMPL_DTLS),
        DtlsBackend::Openssl => (&OPENSSL, &OPENSSL_DTLS),
    };
    cell.get_or_init(|| {
        let mut p = str0m::crypto::from_feature_flags();
        p.dtls_provider = dtls;
        Arc::new(p)
    })
    .clone()
}

/// DTLS provider whose `dimpl` configurations are built once per MTU.
struct SharedConfigDtls {
    /// Built configurations by MTU (`None`: dimpl's default). A handful at most; locked only
    /// when a peer connection is created, never on the media path.
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl fmt::Debug for SharedConfigDtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfigDtls").finish_non_exhaustive()
    }
}

impl SharedConfigDtls {
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        // ICE has verified return routability before DTLS starts: server cookies are redundant
        // (the same choice str0m's own provider makes).
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(builder.build().map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))?);
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags().dtls_provider.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version: {other}"))),
        };
        Ok(capture_keys(Box::new(SharedConfigInstance(dtls))))
    }
}

/// The SRTP keys a DTLS handshake exported: what a send path outside str0m seals with.
#[derive(Debug, Clone)]
pub struct SrtpKeys {
    /// The exported keying material (RFC 5764 §4.2).
    pub material: Vec<u8>,
    /// The negotiated SRTP profile.
    pub profile: SrtpProfile,
    /// This side was the DTLS client.
    pub local_is_client: bool,
}

/// Where one peer connection's DTLS endpoint leaves its SRTP keys once the handshake is done.
#[derive(Debug, Default)]
pub struct KeySlot(Mutex<Option<SrtpKeys>>);

impl KeySlot {
    /// The keys, once the handshake exported them.
    pub fn get(&self) -> Option<SrtpKeys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

thread_local! {
    /// The slot the next DTLS endpoint created on this thread reports its keys to.
    static CAPTURE: RefCell<Option<Arc<KeySlot>>> = const { RefCell::new(None) };
}

/// Runs `build` (which creates one `Rtc`) so that the DTLS endpoint it creates leaves its SRTP
/// keys in the returned slot. str0m creates the endpoint while the `Rtc` is built, on this thread.
pub fn with_key_capture<T>(build: impl FnOnce() -> T) -> (T, Arc<KeySlot>) {
    let slot = Arc::new(KeySlot::default());
    CAPTURE.with(|c| *c.borrow_mut() = Some(slot.clone()));
    let out = build();
    CAPTURE.with(|c| c.borrow_mut().take());
    (out, slot)
}

/// Wraps a new DTLS endpoint so that it reports its keys, when a capture is running on this thread.
pub(crate) fn capture_keys(inner: Box<dyn DtlsInstance>) -> Box<dyn DtlsInstance> {
    match CAPTURE.with(|c| c.borrow_mut().take()) {
        Some(slot) => Box::new(KeyCapture { inner, slot }),
        None => inner,
    }
}

/// A DTLS endpoint that copies the keying material it exports into a [`KeySlot`].
struct KeyCapture {
    inner: Box<dyn DtlsInstance>,
    slot: Arc<KeySlot>,
}

impl fmt::Debug for KeyCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCapture").finish_non_exhaustive()
    }
}

impl DtlsInstance for KeyCapture {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(km, profile) = &out {
            let keys = SrtpKeys { material: km.as_ref().to_vec(), profile: *profile, local_is_client: self.inner.is_active() };
            *self.slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

/// One peer connection's DTLS endpoint.
struct SharedConfigInstance(dimpl::Dtls);

impl fmt::Debug for SharedConfigInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfigInstance").finish_non_exhaustive()
    }
}

impl DtlsInstance for SharedConfigInstance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_and_print() {
        for b in [DtlsBackend::Openssl, DtlsBackend::Dimpl] {
            assert_eq!(b.to_string().parse::<DtlsBackend>(), Ok(b));
        }
        assert!("rustls".parse::<DtlsBackend>().is_err());
        assert_eq!(DtlsBackend::default(), DtlsBackend::Dimpl);
    }

    #[test]
    fn each_backend_has_its_own_shared_provider() {
        let o = crypto_provider_for(DtlsBackend::Openssl);
        let d = crypto_provider_for(DtlsBackend::Dimpl);
        assert!(Arc::ptr_eq(&o, &crypto_provider_for(DtlsBackend::Openssl)));
        assert!(!Arc::ptr_eq(&o, &d));
    }

    #[test]
    fn one_configuration_per_mtu_is_shared() {
        let dtls = SharedConfigDtls { configs: Mutex::new(Vec::new()) };
        let a = dtls.config(None).expect("config");
        let b = dtls.config(None).expect("config");
        let c = dtls.config(Some(1200)).expect("config");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.mtu(), 1200);
        assert_eq!(dtls.configs.lock().expect("lock").len(), 2);
    }

    #[test]
    fn provider_is_one_instance_for_the_process() {
        assert!(Arc::ptr_eq(&crypto_provider(), &crypto_provider()));
    }
}

/// What to tell the operator when a peer's DTLS fails in a way that names its cause: str0m's own
/// DTLS refuses RSA client certificates (GStreamer's webrtcbin presents one) with "no client
/// certificate received". Empty for every other error.
pub fn failure_hint(error: &str) -> &'static str {
    if error.contains("no client certificate received") {
        "the peer may present an RSA certificate (GStreamer does): start the node with --dtls-backend openssl"
    } else {
        ""
    }
}

#[cfg(test)]
mod hint_tests {
    use super::failure_hint;

    #[test]
    fn rsa_refusal_names_the_openssl_backend() {
        assert!(failure_hint("DTLS error: certificate error: no client certificate received").contains("--dtls-backend openssl"));
        assert_eq!(failure_hint("ICE failed"), "");
    }
}
