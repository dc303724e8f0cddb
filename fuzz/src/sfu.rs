//! The media plane: RTCP and SDP as str0m parses them for the SFU. (The VP8 and H264 payload
//! parsing of the SFU and the archive is the `codec` group.)

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("rtcp", rtcp),
    ("sdp", sdp),
];

/// RTCP compound packets as str0m parses them from a peer.
pub fn rtcp(data: &[u8]) {
    let _ = str0m::rtp::rtcp::Rtcp::try_from(data);
}

/// SDP as a WHIP/WHEP offer reaches the SFU: the `v=` check, str0m's offer parse (a relay
/// answer goes through the same parser, so it is parsed once), the relay's video m-line scan,
/// str0m accepting the offer into an `Rtc` configured like the SFU's (VP8, H264, Opus, RTP mode),
/// and trickled candidate lines.
pub fn sdp(data: &[u8]) {
    use str0m::change::SdpOffer;
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        if let Some(c) = line.trim().strip_prefix("a=candidate:") {
            let _ = str0m::Candidate::from_sdp_string(&format!("candidate:{c}"));
        }
    }
    if !text.trim_start().starts_with("v=") {
        return;
    }
    let _ = relaycast_sfu::relay::video_mids_in_order(text);
    let Ok(offer) = SdpOffer::from_sdp_string(text) else { return };
    static CERT: OnceLock<str0m::config::DtlsCert> = OnceLock::new();
    let cert = CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate for the fuzz target")
    });
    let mut rtc = str0m::Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(relaycast_sfu::dtls::crypto_provider())
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .set_dtls_cert(cert.clone())
        .build(Instant::now());
    if let Ok(c) = str0m::Candidate::host(SocketAddr::from(([127, 0, 0, 1], 50000)), "udp") {
        rtc.add_local_candidate(c);
    }
    if let Ok(Ok(answer)) = accept_like_the_sfu(|| rtc.sdp_api().accept_offer(offer)) {
        let _ = answer.to_sdp_string();
    }
}

/// The one panic of str0m 0.25 the SFU knows and contains: accepting some offers panics with this
/// message (`sfu/tests/data/str0m-pt-locked-twice.sdp`; the worker catches it and refuses the
/// offer as bad SDP).
const KNOWN_STR0M_PANIC: &str = "Pt locked multiple times";

thread_local! {
    static IN_ACCEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `accept` as the SFU's worker does: the known str0m panic is caught (and not reported to
/// libFuzzer's panic hook, which would abort), so that the long run goes on looking for others;
/// any other panic still reaches the hook and is a finding.
fn accept_like_the_sfu<T>(accept: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if IN_ACCEPT.with(|f| f.get()) && message.contains(KNOWN_STR0M_PANIC) {
                return;
            }
            previous(info)
        }));
    });
    IN_ACCEPT.with(|f| f.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(accept));
    IN_ACCEPT.with(|f| f.set(false));
    result
}
