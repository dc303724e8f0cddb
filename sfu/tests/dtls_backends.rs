//! The node's DTLS backends against peers with ECDSA and RSA certificates, in memory: who
//! connects, and that a certificate not matching the SDP fingerprint is refused.
//!
//! The node side is a str0m peer in RTP mode with the node's crypto provider (as the workers make
//! it); the remote side is a str0m peer with its own certificate, offering a data channel so
//! that application data crosses the DTLS session once it is up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use relaycast_sfu::dtls::{DtlsBackend, SrtpKeys, crypto_provider_for, with_key_capture};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// A self-signed RSA-2048 certificate, like the one GStreamer's DTLS element makes.
fn rsa_cert() -> DtlsCert {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "gstreamer").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("x509");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("serial");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time")).expect("not after");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    DtlsCert { certificate: b.build().to_der().expect("der"), private_key: key.private_key_to_pkcs8().expect("pkcs8") }
}

/// An ECDSA P-256 certificate, like Chromium's, Firefox's and aiortc's.
fn ecdsa_cert() -> DtlsCert {
    str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().expect("ecdsa cert")
}

/// How a handshake between the node and a remote peer ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Both sides connected and the remote's data channel opened on the node.
    Connected,
    /// The node refused the session (the error it gave).
    Refused(String),
}

/// Moves `from`'s datagrams to `to`; returns `from`'s events, `from`'s error (polling) and
/// `to`'s error (taking the datagrams).
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant) -> (Vec<Event>, Option<String>, Option<String>) {
    let mut events = Vec::new();
    let mut to_err = None;
    loop {
        match from.poll_output() {
            Ok(Output::Transmit(t)) => {
                let data = t.contents.to_vec();
                if let Ok(contents) = data.as_slice().try_into() {
                    let input = Input::Receive(
                        now,
                        Receive { proto: Protocol::Udp, source: t.source, destination: t.destination, contents },
                    );
                    if let Err(e) = to.handle_input(input) {
                        to_err.get_or_insert(e.to_string());
                    }
                }
            }
            Ok(Output::Timeout(_)) => return (events, None, to_err),
            Ok(Output::Event(e)) => events.push(e),
            Err(e) => return (events, Some(e.to_string()), to_err),
        }
    }
}

/// The remote peer (certificate `remote_cert`, DTLS from `remote_backend`) offers to the node
/// (`node_backend`); `tamper` may change the offer's SDP before the node sees it.
fn handshake(
    node_backend: DtlsBackend,
    remote_backend: DtlsBackend,
    remote_cert: DtlsCert,
    tamper: impl Fn(String) -> String,
) -> Outcome {
    handshake_keys(node_backend, remote_backend, remote_cert, tamper).0
}

/// [`handshake`], and the SRTP keys the node's DTLS endpoint exported.
fn handshake_keys(
    node_backend: DtlsBackend,
    remote_backend: DtlsBackend,
    remote_cert: DtlsCert,
    tamper: impl Fn(String) -> String,
) -> (Outcome, Option<SrtpKeys>) {
    let start = Instant::now();
    let node_addr: SocketAddr = "127.0.0.1:41000".parse().expect("addr");
    let remote_addr: SocketAddr = "127.0.0.1:41001".parse().expect("addr");
    let mut remote = Rtc::builder()
        .set_crypto_provider(crypto_provider_for(remote_backend))
        .set_dtls_cert(remote_cert)
        .clear_codecs()
        .enable_h264(true)
        .build(start);
    let (mut node, keys) = with_key_capture(|| {
        Rtc::builder()
            .set_rtp_mode(true)
            .set_crypto_provider(crypto_provider_for(node_backend))
            .clear_codecs()
            .enable_h264(true)
            .build(start)
    });
    let outcome = run_handshake(&mut node, &mut remote, start, node_addr, remote_addr, tamper);
    (outcome, keys.get())
}

/// Offers from `remote` to `node` and runs both until they connect or the node refuses.
fn run_handshake(
    node: &mut Rtc,
    remote: &mut Rtc,
    start: Instant,
    node_addr: SocketAddr,
    remote_addr: SocketAddr,
    tamper: impl Fn(String) -> String,
) -> Outcome {
    remote.add_local_candidate(Candidate::host(remote_addr, "udp").expect("candidate"));
    node.add_local_candidate(Candidate::host(node_addr, "udp").expect("candidate"));
    let mut change = remote.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    change.add_channel("check".into());
    let (offer, pending) = change.apply().expect("offer");
    let offer = SdpOffer::from_sdp_string(&tamper(offer.to_sdp_string())).expect("offer parses");
    let answer = node.sdp_api().accept_offer(offer).expect("node answers");
    remote.sdp_api().accept_answer(pending, answer).expect("remote takes the answer");

    let (mut node_connected, mut remote_connected, mut channel) = (false, false, false);
    // Simulated time: 10 s in 5 ms steps is long enough for retransmissions, bounded either way.
    for step in 0..2000u64 {
        let now = start + Duration::from_millis(step * 5);
        let _ = node.handle_input(Input::Timeout(now));
        let _ = remote.handle_input(Input::Timeout(now));
        let (events, err, _) = pump(node, remote, now);
        if let Some(e) = err {
            return Outcome::Refused(e);
        }
        for e in events {
            match e {
                Event::Connected => node_connected = true,
                Event::ChannelOpen(..) => channel = true,
                _ => {}
            }
        }
        if !node.is_alive() {
            return Outcome::Refused("node disconnected".into());
        }
        let (events, _, err) = pump(remote, node, now);
        if let Some(e) = err {
            return Outcome::Refused(e);
        }
        remote_connected |= events.iter().any(|e| matches!(e, Event::Connected));
        if node_connected && remote_connected && channel {
            return Outcome::Connected;
        }
    }
    Outcome::Refused(format!(
        "no outcome: node connected {node_connected}, remote connected {remote_connected}, channel {channel}"
    ))
}

/// Changes one hex digit of the offer's `a=fingerprint`.
fn wrong_fingerprint(sdp: String) -> String {
    let at = sdp.find("a=fingerprint:sha-256 ").expect("fingerprint line") + "a=fingerprint:sha-256 ".len();
    let mut bytes = sdp.into_bytes();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn openssl_node_takes_an_rsa_peer() {
    assert_eq!(handshake(DtlsBackend::Openssl, DtlsBackend::Openssl, rsa_cert(), |s| s), Outcome::Connected);
}

#[test]
fn openssl_node_takes_an_ecdsa_peer_on_dimpl() {
    // A Chromium-like peer: ECDSA certificate, a different DTLS implementation.
    assert_eq!(handshake(DtlsBackend::Openssl, DtlsBackend::Dimpl, ecdsa_cert(), |s| s), Outcome::Connected);
}

#[test]
fn openssl_nodes_connect_to_each_other() {
    // Node to node (relays): both DTLS roles on OpenSSL.
    assert_eq!(handshake(DtlsBackend::Openssl, DtlsBackend::Openssl, ecdsa_cert(), |s| s), Outcome::Connected);
}

#[test]
fn dimpl_node_refuses_an_rsa_peer() {
    // Why GStreamer needs the OpenSSL backend: dimpl takes no RSA client certificates.
    let outcome = handshake(DtlsBackend::Dimpl, DtlsBackend::Openssl, rsa_cert(), |s| s);
    assert_ne!(outcome, Outcome::Connected);
}

#[test]
fn rsa_certificate_not_matching_the_fingerprint_is_refused() {
    let outcome = handshake(DtlsBackend::Openssl, DtlsBackend::Openssl, rsa_cert(), wrong_fingerprint);
    assert!(matches!(&outcome, Outcome::Refused(e) if e.contains("fingerprint")), "{outcome:?}");
}

#[test]
fn ecdsa_certificate_not_matching_the_fingerprint_is_refused() {
    let outcome = handshake(DtlsBackend::Openssl, DtlsBackend::Dimpl, ecdsa_cert(), wrong_fingerprint);
    assert!(matches!(&outcome, Outcome::Refused(e) if e.contains("fingerprint")), "{outcome:?}");
}

#[test]
fn dimpl_node_still_checks_the_fingerprint() {
    let outcome = handshake(DtlsBackend::Dimpl, DtlsBackend::Dimpl, ecdsa_cert(), wrong_fingerprint);
    assert!(matches!(&outcome, Outcome::Refused(e) if e.contains("fingerprint")), "{outcome:?}");
}

#[test]
fn an_openssl_node_prefers_aes_128_gcm_and_a_dimpl_node_gets_aes_256_gcm() {
    // The node answers an `actpass` offer as the DTLS server and picks the SRTP profile: with
    // OpenSSL its preference, AES-128-GCM (11 % cheaper to seal than AES-256-GCM: the `seal`
    // benchmark of relaycast-egress); dimpl always picks AES-256-GCM.
    for (node, remote, want) in [
        (DtlsBackend::Openssl, DtlsBackend::Dimpl, "AEAD_AES_128_GCM"),
        (DtlsBackend::Openssl, DtlsBackend::Openssl, "AEAD_AES_128_GCM"),
        (DtlsBackend::Dimpl, DtlsBackend::Dimpl, "AEAD_AES_256_GCM"),
    ] {
        let (outcome, keys) = handshake_keys(node, remote, ecdsa_cert(), |s| s);
        assert_eq!(outcome, Outcome::Connected);
        let keys = keys.expect("the node's DTLS endpoint exported its keys");
        assert_eq!(format!("{:?}", keys.profile), want, "{node:?} node, {remote:?} remote");
        assert!(!keys.local_is_client, "the node answered as the DTLS server");
    }
}
