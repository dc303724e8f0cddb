//! DTLS 1.2 for str0m on OpenSSL (the system `libssl`), for peers whose certificate is RSA.
//!
//! str0m's own DTLS (`dimpl`) only takes ECDSA certificates, so GStreamer's `webrtcbin` (whose
//! DTLS presents an RSA certificate) cannot connect through it. OpenSSL takes RSA and ECDSA
//! certificates alike. Like `dimpl` it accepts any self-signed certificate: the certificate is
//! handed to str0m as [`DtlsOutput::PeerCert`] before the keying material, and str0m refuses
//! the session unless it matches the `a=fingerprint` of the remote SDP.
//!
//! The instance is sans-IO like `dimpl`: datagrams in ([`DtlsInstance::handle_packet`]),
//! datagrams and events out ([`DtlsInstance::poll_output`]), and the retransmission timer
//! driven by [`DtlsInstance::handle_timeout`]. One `SslContext` is built per certificate and
//! shared between peers (the node uses one certificate per worker).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dimpl::{CryptoOperation, SrtpProfile};
use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslSessionCacheMode, SslStream, SslVerifyMode,
    SslVersion,
};
use openssl::x509::X509;
use str0m::config::{DtlsCert, DtlsVersion};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, KeyingMaterial, ProtocolVersion};
use tracing::debug;

/// Cipher suites offered and accepted: ECDHE only, for ECDSA and RSA certificates.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";

/// DTLS-SRTP protection profiles (RFC 5764, RFC 7714), most preferred first: AES-128-GCM seals
/// a 1,200-byte packet in 11 % less time than AES-256-GCM (the `seal` benchmark of
/// relaycast-egress), and as the DTLS server (a browser offers `actpass`) the node chooses.
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_128_GCM:SRTP_AEAD_AES_256_GCM:SRTP_AES128_CM_SHA1_80";

/// RFC 5764 §4.2 exporter label for the SRTP keys.
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Link MTU when str0m gives none.
const DEFAULT_MTU: usize = 1150;

/// Most certificates whose `SslContext` is kept (the node has one per worker).
const MAX_CONTEXTS: usize = 16;

/// Most received datagrams held before OpenSSL reads them (one is fed at a time).
const MAX_INCOMING: usize = 8;

/// Most outgoing datagrams held between two polls (a handshake flight is a handful).
const MAX_OUTGOING: usize = 64;

/// Most decrypted application-data records held between two polls.
const MAX_APP_DATA: usize = 64;

/// Largest DTLS record plaintext.
const MAX_RECORD: usize = 16 * 1024;

/// OpenSSL's `DTLS_CTRL_GET_TIMEOUT` (`DTLSv1_get_timeout` is a macro over `SSL_ctrl`).
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
/// OpenSSL's `DTLS_CTRL_HANDLE_TIMEOUT` (`DTLSv1_handle_timeout`).
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// str0m DTLS provider on OpenSSL, with one `SslContext` per certificate.
pub(crate) struct OpensslDtls {
    /// Contexts by certificate DER, oldest first; locked only when a peer connection is created.
    contexts: Mutex<Vec<(Vec<u8>, SslContext)>>,
}

impl OpensslDtls {
    /// An empty provider.
    pub(crate) const fn new() -> Self {
        OpensslDtls { contexts: Mutex::new(Vec::new()) }
    }

    /// The context for `cert`, built on first use.
    fn context(&self, cert: &DtlsCert) -> Result<SslContext, ErrorStack> {
        let mut contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = contexts.iter().find(|(der, _)| *der == cert.certificate) {
            return Ok(c.clone());
        }
        let context = build_context(cert)?;
        if contexts.len() >= MAX_CONTEXTS {
            contexts.remove(0);
        }
        contexts.push((cert.certificate.clone(), context.clone()));
        Ok(context)
    }
}

impl fmt::Debug for OpensslDtls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpensslDtls").finish_non_exhaustive()
    }
}

/// A DTLS 1.2 context presenting `cert`, asking peers for a certificate of any key type.
fn build_context(cert: &DtlsCert) -> Result<SslContext, ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    b.set_tlsext_use_srtp(SRTP_PROFILES)?;
    // Self-signed certificates are the rule in WebRTC: the chain is not checked here, str0m
    // compares the certificate with the SDP fingerprint. A peer without one is refused.
    b.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, |_, _| true);
    let x509 = X509::from_der(&cert.certificate)?;
    let key = PKey::private_key_from_der(&cert.private_key)?;
    b.set_certificate(&x509)?;
    b.set_private_key(&key)?;
    b.check_private_key()?;
    b.set_options(
        SslOptions::NO_QUERY_MTU | SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION | SslOptions::SINGLE_ECDH_USE,
    );
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    Ok(b.build())
}

impl DtlsProvider for OpensslDtls {
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
        match dtls_version {
            // OpenSSL 3 has no DTLS 1.3: `Auto` negotiates 1.2.
            DtlsVersion::Dtls12 | DtlsVersion::Auto => {}
            other => return Err(CryptoError::Other(format!("OpenSSL DTLS: unsupported version {other}"))),
        }
        let setup = |e: ErrorStack| CryptoError::Other(format!("OpenSSL DTLS setup: {e}"));
        let context = self.context(cert).map_err(setup)?;
        let mut ssl = Ssl::new(&context).map_err(setup)?;
        let mtu = u32::try_from(mtu.unwrap_or(DEFAULT_MTU)).unwrap_or(u32::MAX);
        ssl.set_mtu(mtu).map_err(setup)?;
        let stream = SslStream::new(ssl, Datagrams::default()).map_err(setup)?;
        Ok(crate::dtls::capture_keys(Box::new(OpensslInstance {
            stream,
            active: None,
            phase: Phase::Idle,
            now,
            peer_cert: None,
            keying: None,
            connected_pending: false,
            app_data: VecDeque::new(),
            close_received: false,
            close_pending: false,
            close_sent: false,
        })))
    }
}

/// The datagrams between OpenSSL and str0m: OpenSSL reads one datagram per read and writes one
/// per write.
#[derive(Default)]
struct Datagrams {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl io::Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram larger than OpenSSL's buffer is cut; its record then fails to decode and
        // is dropped by OpenSSL.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl io::Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.outgoing.len() >= MAX_OUTGOING {
            return Err(io::Error::other("DTLS output queue full"));
        }
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for `set_active`.
    Idle,
    /// Handshake flights in progress.
    Handshaking,
    /// Keys exported; application data flows.
    Connected,
    /// A fatal error: every further input fails.
    Failed,
}

/// One peer connection's DTLS endpoint on OpenSSL.
struct OpensslInstance {
    stream: SslStream<Datagrams>,
    active: Option<bool>,
    phase: Phase,
    /// The latest time str0m gave (timeouts are reported relative to it).
    now: Instant,
    /// The peer's leaf certificate (DER), to report once.
    peer_cert: Option<Vec<u8>>,
    /// SRTP keying material and profile, to report once.
    keying: Option<(Vec<u8>, SrtpProfile)>,
    /// `Connected` not yet reported.
    connected_pending: bool,
    /// Decrypted application data not yet polled.
    app_data: VecDeque<Vec<u8>>,
    /// The peer sent `close_notify`.
    close_received: bool,
    /// `CloseNotify` not yet reported.
    close_pending: bool,
    /// We sent `close_notify`.
    close_sent: bool,
}

impl fmt::Debug for OpensslInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpensslInstance").field("phase", &self.phase).finish_non_exhaustive()
    }
}

/// The error str0m receives for a failed OpenSSL operation.
fn failed(op: CryptoOperation) -> DtlsImplError {
    DtlsImplError::CryptoError(dimpl::CryptoError::OperationFailed(op))
}

/// dimpl's profile for an OpenSSL SRTP profile id.
fn srtp_profile(id: SrtpProfileId) -> Option<SrtpProfile> {
    match id {
        SrtpProfileId::SRTP_AES128_CM_SHA1_80 => Some(SrtpProfile::AES128_CM_SHA1_80),
        SrtpProfileId::SRTP_AEAD_AES_128_GCM => Some(SrtpProfile::AEAD_AES_128_GCM),
        SrtpProfileId::SRTP_AEAD_AES_256_GCM => Some(SrtpProfile::AEAD_AES_256_GCM),
        _ => None,
    }
}

impl OpensslInstance {
    /// Marks the instance failed and returns the error for str0m.
    fn fail(&mut self, op: CryptoOperation, why: &dyn fmt::Display) -> DtlsImplError {
        debug!(error = %why, "OpenSSL DTLS failed");
        self.phase = Phase::Failed;
        failed(op)
    }

    /// Advances the handshake, or reads application data once connected.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        match self.phase {
            Phase::Idle => Ok(()),
            Phase::Failed => Err(failed(CryptoOperation::Decrypt)),
            Phase::Handshaking => match if self.active == Some(true) { self.stream.connect() } else { self.stream.accept() } {
                Ok(()) => {
                    self.on_handshake_done()?;
                    self.read_app_data()
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(()),
                Err(e) => Err(self.fail(CryptoOperation::VerifySignature, &e)),
            },
            Phase::Connected => self.read_app_data(),
        }
    }

    /// Takes the peer certificate and exports the SRTP keys.
    fn on_handshake_done(&mut self) -> Result<(), DtlsImplError> {
        let ssl = self.stream.ssl();
        let Some(cert) = ssl.peer_certificate() else {
            return Err(self.fail(CryptoOperation::VerifySignature, &"no peer certificate"));
        };
        let der = match cert.to_der() {
            Ok(d) => d,
            Err(e) => return Err(self.fail(CryptoOperation::VerifySignature, &e)),
        };
        let Some(profile) = ssl.selected_srtp_profile().and_then(|p| srtp_profile(p.id())) else {
            return Err(self.fail(CryptoOperation::CreateCipher, &"no SRTP profile negotiated"));
        };
        let mut km = vec![0u8; profile.keying_material_len()];
        if let Err(e) = ssl.export_keying_material(&mut km, SRTP_EXPORTER_LABEL, None) {
            return Err(self.fail(CryptoOperation::CreateCipher, &e));
        }
        self.peer_cert = Some(der);
        self.keying = Some((km, profile));
        self.connected_pending = true;
        self.phase = Phase::Connected;
        Ok(())
    }

    /// Reads every decrypted record OpenSSL has.
    fn read_app_data(&mut self) -> Result<(), DtlsImplError> {
        let mut buf = vec![0u8; MAX_RECORD];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(0) => {}
                Ok(n) => {
                    if self.app_data.len() < MAX_APP_DATA {
                        self.app_data.push_back(buf[..n].to_vec());
                    }
                    continue;
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {}
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => return Ok(()),
                Err(e) => return Err(self.fail(CryptoOperation::Decrypt, &e)),
            }
            // close_notify from the peer: answer it once and report it.
            if !self.close_received {
                self.close_received = true;
                self.close_pending = true;
                if !self.close_sent {
                    let _ = self.stream.shutdown();
                    self.close_sent = true;
                }
            }
            return Ok(());
        }
    }

    /// Time left on OpenSSL's retransmission timer, if it runs.
    fn retransmit_in(&self) -> Option<Duration> {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        // SAFETY: `DTLSv1_get_timeout` writes one `struct timeval` through the pointer, which
        // points at a live local; the SSL pointer is valid for the stream's lifetime.
        let running = unsafe {
            openssl_sys::SSL_ctrl(
                self.stream.ssl().as_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                (&mut tv as *mut libc::timeval).cast(),
            )
        };
        if running != 1 {
            return None;
        }
        let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
        let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
        Some(Duration::from_secs(secs) + Duration::from_micros(u64::from(micros)))
    }
}

impl DtlsInstance for OpensslInstance {
    fn set_active(&mut self, active: bool) {
        if self.active.is_some() {
            return;
        }
        self.active = Some(active);
        self.phase = Phase::Handshaking;
        // The client's first flight goes out now; a failure shows at the next input.
        let _ = self.drive();
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        if self.phase == Phase::Failed {
            return Err(failed(CryptoOperation::Decrypt));
        }
        // str0m hands an empty packet to start a client's handshake: drive, read nothing (an
        // empty read would look like the end of the stream to OpenSSL).
        if !packet.is_empty() {
            let incoming = &mut self.stream.get_mut().incoming;
            if incoming.len() >= MAX_INCOMING {
                incoming.pop_front();
            }
            incoming.push_back(packet.to_vec());
        }
        let r = self.drive();
        // Whatever OpenSSL did not read (a datagram before set_active) is not kept.
        self.stream.get_mut().incoming.clear();
        r
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = &mut self.stream.get_mut().outgoing;
        if let Some(d) = out.pop_front() {
            if d.len() > buf.len() {
                let needed = d.len();
                out.push_front(d);
                return DtlsOutput::BufferTooSmall { needed };
            }
            buf[..d.len()].copy_from_slice(&d);
            return DtlsOutput::Packet(&buf[..d.len()]);
        }
        // The certificate first: str0m checks it against the SDP fingerprint before it takes keys.
        if let Some(der) = self.peer_cert.take() {
            if der.len() > buf.len() {
                let needed = der.len();
                self.peer_cert = Some(der);
                return DtlsOutput::BufferTooSmall { needed };
            }
            buf[..der.len()].copy_from_slice(&der);
            return DtlsOutput::PeerCert(&buf[..der.len()]);
        }
        if let Some((km, profile)) = self.keying.take() {
            return DtlsOutput::KeyingMaterial(KeyingMaterial::new(&km), profile);
        }
        if self.connected_pending {
            self.connected_pending = false;
            return DtlsOutput::Connected;
        }
        if self.close_pending {
            self.close_pending = false;
            return DtlsOutput::CloseNotify;
        }
        if let Some(d) = self.app_data.pop_front() {
            if d.len() > buf.len() {
                let needed = d.len();
                self.app_data.push_front(d);
                return DtlsOutput::BufferTooSmall { needed };
            }
            buf[..d.len()].copy_from_slice(&d);
            return DtlsOutput::ApplicationData(&buf[..d.len()]);
        }
        let next = match self.phase {
            Phase::Handshaking => self.retransmit_in().unwrap_or(Duration::from_millis(100)),
            _ => Duration::from_secs(3600),
        };
        DtlsOutput::Timeout(self.now + next)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.now = now;
        match self.phase {
            Phase::Failed => Err(failed(CryptoOperation::Decrypt)),
            Phase::Handshaking => {
                // SAFETY: `DTLSv1_handle_timeout` takes only the SSL pointer, valid for the
                // stream's lifetime; it retransmits through the stream's BIO when the timer ran out.
                let r = unsafe {
                    openssl_sys::SSL_ctrl(self.stream.ssl().as_ptr(), DTLS_CTRL_HANDLE_TIMEOUT, 0, std::ptr::null_mut())
                };
                if r < 0 {
                    return Err(self.fail(CryptoOperation::Encrypt, &"handshake retransmissions exhausted"));
                }
                Ok(())
            }
            Phase::Idle | Phase::Connected => Ok(()),
        }
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        match self.phase {
            Phase::Failed => Err(failed(CryptoOperation::Encrypt)),
            Phase::Idle | Phase::Handshaking => Ok(0),
            Phase::Connected if data.is_empty() => Ok(0),
            Phase::Connected => match self.stream.ssl_write(data) {
                Ok(n) => Ok(n),
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(0),
                Err(e) => Err(self.fail(CryptoOperation::Encrypt, &e)),
            },
        }
    }

    fn is_active(&self) -> bool {
        self.active.unwrap_or(false)
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        (self.phase == Phase::Connected).then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.close_sent || self.close_received
    }

    fn is_closed(&self) -> bool {
        self.close_sent && self.stream.get_ref().outgoing.is_empty()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        if self.phase == Phase::Connected && !self.close_sent {
            let _ = self.stream.shutdown();
        }
        self.close_sent = true;
        Ok(())
    }
}
