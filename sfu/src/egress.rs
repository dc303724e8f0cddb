//! Which send path carries media to viewers, and the glue between a viewer's str0m session and
//! the send path of our own ([`relaycast_egress`]).
//!
//! With [`SendPath::Own`], str0m still runs a viewer's ICE, DTLS and incoming RTCP, but its
//! media leaves through [`relaycast_egress::session::ViewerEgress`]: one header write, one
//! seal and one place in the send batch per packet, congestion control from the viewer's
//! transport-wide feedback, resends from a compact per-viewer history of shared payloads.

use std::fmt;

use relaycast_egress::header::ExtIds;
use relaycast_egress::session::{Config, TrackConfig};
use relaycast_egress::srtp::SrtpProfile;
use str0m::Rtc;
use str0m::media::Mid;
use str0m::rtp::Extension;

use crate::dtls::SrtpKeys;

/// Which implementation sends media to viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendPath {
    /// str0m's per-viewer session (send queue, pacer, resend cache, bandwidth estimator).
    Str0m,
    /// Relaycast's own send path ([`relaycast_egress`]): the default.
    #[default]
    Own,
}

impl std::str::FromStr for SendPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "str0m" => Ok(SendPath::Str0m),
            "own" => Ok(SendPath::Own),
            other => Err(format!("unknown send path {other:?} (str0m or own)")),
        }
    }
}

impl fmt::Display for SendPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendPath::Str0m => "str0m",
            SendPath::Own => "own",
        })
    }
}

/// str0m's report interval on a viewer session whose reports the own send path writes: never.
pub const NO_REPORTS: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// The first bandwidth estimate of a viewer on the own send path.
pub const INITIAL_ESTIMATE_BPS: u64 = 1_000_000;

/// The send path's profile for a DTLS-negotiated SRTP profile.
fn profile(p: str0m::crypto::dtls::SrtpProfile) -> Option<SrtpProfile> {
    use str0m::crypto::dtls::SrtpProfile as P;
    match p {
        P::AES128_CM_SHA1_80 => Some(SrtpProfile::Aes128CmSha1_80),
        P::AEAD_AES_128_GCM => Some(SrtpProfile::AeadAes128Gcm),
        P::AEAD_AES_256_GCM => Some(SrtpProfile::AeadAes256Gcm),
        _ => None,
    }
}

/// One-byte extension ids (1..=14) the viewer accepted on `mid`; others are not sent.
fn ext_ids(rtc: &Rtc, mid: Mid) -> ExtIds {
    let Some(media) = rtc.media(mid) else { return ExtIds::default() };
    let map = media.remote_extmap();
    let id = |e: Extension| map.id_of(e).filter(|id| (1..=14).contains(id)).unwrap_or(0);
    ExtIds {
        mid: id(Extension::RtpMid),
        abs_send_time: id(Extension::AbsoluteSendTime),
        transport_cc: id(Extension::TransportSequenceNumber),
        audio_level: id(Extension::AudioLevel),
    }
}

/// How str0m negotiated the sending track of `mid`.
fn track(rtc: &mut Rtc, mid: Mid, clock_rate: u32) -> Option<TrackConfig> {
    let ext = ext_ids(rtc, mid);
    let remote: Vec<u8> = rtc.media(mid)?.remote_pts().iter().map(|pt| **pt).collect();
    let rtx_pts: Vec<(u8, u8)> = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| remote.contains(&*p.pt()))
        .filter_map(|p| p.resend().map(|r| (*p.pt(), *r)))
        .collect();
    let mut api = rtc.direct_api();
    let tx = api.stream_tx_by_mid(mid, None)?;
    let ssrc = *tx.ssrc();
    let rtx = tx.rtx().map(|s| (*s, rtx_pts));
    Some(TrackConfig { ssrc, rtx, mid: mid.to_string().into_bytes(), ext, clock_rate })
}

/// The send path's configuration for a connected viewer: its tracks as str0m negotiated them
/// and the keys its DTLS handshake exported; `None` for an SRTP profile it does not seal.
pub(crate) fn viewer_config(rtc: &mut Rtc, keys: &SrtpKeys, video: Option<Mid>, audio: Option<Mid>, cname: &str) -> Option<Config> {
    Some(Config {
        profile: profile(keys.profile)?,
        keying_material: keys.material.clone(),
        local_is_client: keys.local_is_client,
        video: video.and_then(|m| track(rtc, m, 90_000)),
        audio: audio.and_then(|m| track(rtc, m, 48_000)),
        initial_bps: INITIAL_ESTIMATE_BPS,
        cname: cname.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_path_names_parse_and_print() {
        for p in [SendPath::Str0m, SendPath::Own] {
            assert_eq!(p.to_string().parse::<SendPath>(), Ok(p));
        }
        assert!("fast".parse::<SendPath>().is_err());
        assert_eq!(SendPath::default(), SendPath::Own);
    }
}
