//! The node's CPU per join with each DTLS backend, in memory: a remote str0m peer offers, the
//! node's side (RTP mode, the node's crypto provider, one certificate for all peers as a worker
//! has) answers, and ICE + DTLS run to `Connected` on both sides. Only the node's side is timed,
//! in thread CPU time (so other processes on a shared machine do not count): building its `Rtc`,
//! answering the offer, and every `handle_input` / `poll_output` until it is connected.
//!
//! Run: `cargo run --release -p relaycast-sfu --example dtls_cost [JOINS] [ROUNDS]`
//! (defaults 200 and 3). Backends alternate per round; remote peers: ECDSA on dimpl (as
//! Chromium, Firefox, aiortc), and RSA on OpenSSL (as GStreamer) for the OpenSSL node only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use relaycast_sfu::dtls::{DtlsBackend, crypto_provider_for};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rsa_cert() -> DtlsCert {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "gstreamer").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    DtlsCert { certificate: b.build().to_der().unwrap(), private_key: key.private_key_to_pkcs8().unwrap() }
}

/// Moves `from`'s datagrams into `to`; returns whether `from` reported `Connected`.
fn pump(from: &mut Rtc, to: &mut Rtc, now: Instant, to_cpu: Option<&mut Duration>) -> bool {
    let mut connected = false;
    let mut spent = Duration::ZERO;
    loop {
        match from.poll_output() {
            Ok(Output::Transmit(t)) => {
                let data = t.contents.to_vec();
                let contents = data.as_slice().try_into().unwrap();
                let input =
                    Input::Receive(now, Receive { proto: Protocol::Udp, source: t.source, destination: t.destination, contents });
                let c = thread_cpu();
                to.handle_input(input).unwrap();
                spent += thread_cpu() - c;
            }
            Ok(Output::Timeout(_)) => break,
            Ok(Output::Event(Event::Connected)) => connected = true,
            Ok(Output::Event(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    if let Some(cpu) = to_cpu {
        *cpu += spent;
    }
    connected
}

/// One join; returns the node side's CPU time.
fn join(node_backend: DtlsBackend, node_cert: &DtlsCert, remote_backend: DtlsBackend, remote_cert: &DtlsCert) -> Duration {
    let start = Instant::now();
    let node_addr: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    let remote_addr: SocketAddr = "127.0.0.1:41001".parse().unwrap();
    let mut remote = Rtc::builder()
        .set_crypto_provider(crypto_provider_for(remote_backend))
        .set_dtls_cert(remote_cert.clone())
        .clear_codecs()
        .enable_h264(true)
        .build(start);
    remote.add_local_candidate(Candidate::host(remote_addr, "udp").unwrap());
    let mut change = remote.sdp_api();
    change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();

    let c = thread_cpu();
    let mut node = Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(crypto_provider_for(node_backend))
        .set_dtls_cert(node_cert.clone())
        .clear_codecs()
        .enable_h264(true)
        .build(start);
    node.add_local_candidate(Candidate::host(node_addr, "udp").unwrap());
    let answer = node.sdp_api().accept_offer(offer).unwrap();
    let mut cpu = thread_cpu() - c;
    remote.sdp_api().accept_answer(pending, answer).unwrap();

    let (mut node_ok, mut remote_ok) = (false, false);
    for step in 0..4000u64 {
        let now = start + Duration::from_millis(step * 5);
        let c = thread_cpu();
        node.handle_input(Input::Timeout(now)).unwrap();
        let mut node_cpu = thread_cpu() - c;
        remote.handle_input(Input::Timeout(now)).unwrap();
        let c = thread_cpu();
        // The node's polling is its own work; the remote's handle_input is not.
        let mut remote_side = Duration::ZERO;
        node_ok |= {
            let r = pump(&mut node, &mut remote, now, Some(&mut remote_side));
            node_cpu += (thread_cpu() - c).saturating_sub(remote_side);
            r
        };
        remote_ok |= pump(&mut remote, &mut node, now, Some(&mut node_cpu));
        cpu += node_cpu;
        if node_ok && remote_ok {
            return cpu;
        }
    }
    panic!("{node_backend} node and {remote_backend} remote did not connect");
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let median = v[v.len() / 2].as_secs_f64() * 1e6;
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e6;
    (median, mean)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let joins: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let node_cert = str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().unwrap();
    let ecdsa = str0m::crypto::from_feature_flags().dtls_provider.generate_certificate().unwrap();
    let rsa = rsa_cert();
    let cases = [
        ("dimpl node, ECDSA peer on dimpl", DtlsBackend::Dimpl, DtlsBackend::Dimpl, &ecdsa),
        ("openssl node, ECDSA peer on dimpl", DtlsBackend::Openssl, DtlsBackend::Dimpl, &ecdsa),
        ("openssl node, RSA peer on openssl", DtlsBackend::Openssl, DtlsBackend::Openssl, &rsa),
    ];
    // Warm up: the providers' shared configurations, code paths and allocator.
    for (_, node, remote, cert) in &cases {
        for _ in 0..5 {
            join(*node, &node_cert, *remote, cert);
        }
    }
    for round in 1..=rounds {
        for (name, node, remote, cert) in &cases {
            let times: Vec<Duration> = (0..joins).map(|_| join(*node, &node_cert, *remote, cert)).collect();
            let (median, mean) = stats(times);
            println!("round {round}: {name}: node CPU per join median {median:.0} µs, mean {mean:.0} µs ({joins} joins)");
        }
    }
}
