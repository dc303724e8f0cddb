//! Publisher drivers around [`SyntheticSource`]: WebRTC over WHIP (str0m, RTP mode) and plain RTP.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::source::{SourceConfig, SourcePacket, SyntheticSource, now_ns, plain_rtp};
use crate::stats::PublisherStats;
use crate::{Error, signal};

/// Where and how the WHIP publisher connects.
#[derive(Clone, Debug)]
pub struct WhipTarget {
    /// `http://HOST:PORT/whip/STREAM`.
    pub endpoint: String,
    /// Bearer token.
    pub token: String,
    /// Local address to bind and advertise.
    pub bind_ip: IpAddr,
}

/// Runs a WHIP publisher until `stop` turns true; `ready` fires once ICE/DTLS connected.
pub async fn run_whip(
    target: WhipTarget,
    cfg: SourceConfig,
    client: reqwest::Client,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<PublisherStats, Error> {
    let sock = UdpSocket::bind(SocketAddr::new(target.bind_ip, 0)).await?;
    let local = sock.local_addr()?;
    let mut rtc = Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(relaycast_sfu::dtls::crypto_provider_for(relaycast_sfu::dtls::DtlsBackend::Dimpl))
        .clear_codecs()
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| Error::Rtc(e.to_string()))?);
    let mut sim = Simulcast::new();
    for l in &cfg.layers {
        sim.add_send_layer(SimulcastLayer::new(&l.rid));
    }
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim));
    let (offer, pending) = api.apply().ok_or(Error::Rtc("no offer".into()))?;
    let created = signal::post_offer(&client, &target.endpoint, Some(&target.token), offer.to_sdp_string()).await?;
    let answer = SdpAnswer::from_sdp_string(&created.answer).map_err(|e| Error::Rtc(e.to_string()))?;
    rtc.sdp_api().accept_answer(pending, answer).map_err(|e| Error::Rtc(e.to_string()))?;
    let pt = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .ok_or(Error::Rtc("no VP8 payload type".into()))?;
    let rids: Vec<str0m::media::Rid> = cfg.layers.iter().map(|l| l.rid.as_str().into()).collect();
    let mut source = SyntheticSource::new(cfg);
    let interval = source.frame_interval();
    let mut stats = PublisherStats::default();
    let mut ready = Some(ready);
    let mut connected = false;
    let mut next_frame = Instant::now();
    let mut pkts: Vec<SourcePacket> = Vec::new();
    let mut buf = vec![0u8; 2048];
    info!(endpoint = %target.endpoint, "publisher offering {} layers", rids.len());
    loop {
        let timeout = drain(&mut rtc, &sock, |ev| match ev {
            Event::Connected => connected = true,
            Event::KeyframeRequest(req) => {
                stats.keyframe_requests += 1;
                if let Some(i) = req.rid.and_then(|r| rids.iter().position(|x| *x == r)) {
                    source.request_keyframe(i);
                }
            }
            _ => {}
        })
        .await?;
        if connected && let Some(r) = ready.take() {
            let _ = r.send(());
            next_frame = Instant::now();
        }
        let wake = if connected { timeout.min(next_frame) } else { timeout };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, src) = r?;
                if let Ok(rcv) = Receive::new(Protocol::Udp, src, local, &buf[..n]) {
                    rtc.handle_input(Input::Receive(Instant::now(), rcv)).map_err(|e| Error::Rtc(e.to_string()))?;
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if connected && now >= next_frame {
                    pkts.clear();
                    source.next_frame(now_ns(), &mut pkts);
                    stats.frames += 1;
                    let mut api = rtc.direct_api();
                    for p in pkts.drain(..) {
                        let Some(rid) = rids.get(p.layer as usize) else { continue };
                        let Some(tx) = api.stream_tx_by_mid(mid, Some(*rid)) else { continue };
                        stats.packets += 1;
                        stats.payload_bytes += p.payload.len() as u64;
                        let w = RtpWrite::new(pt, SeqNo::from(p.seq), p.rtp_ts, now, p.payload).marker(p.marker).nackable(true);
                        tx.write_rtp(w);
                    }
                    next_frame += interval;
                    if next_frame + interval < now {
                        next_frame = now + interval;
                    }
                }
                rtc.handle_input(Input::Timeout(now)).map_err(|e| Error::Rtc(e.to_string()))?;
            }
            _ = stop.changed() => {
                if *stop.borrow() { break; }
            }
        }
    }
    signal::delete(&client, &created.location).await;
    Ok(stats)
}

/// Polls `rtc` until it asks for a timeout, sending its datagrams and passing events on.
pub async fn drain(rtc: &mut Rtc, sock: &UdpSocket, mut on_event: impl FnMut(Event)) -> Result<Instant, Error> {
    loop {
        match rtc.poll_output().map_err(|e| Error::Rtc(e.to_string()))? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                if let Err(e) = sock.send_to(&t.contents, t.destination).await {
                    debug!(error = %e, "send failed");
                }
            }
            Output::Event(e) => on_event(e),
        }
    }
}

/// Runs a plain RTP publisher (the first layer of `cfg`) to `dest` until `stop` turns true.
pub async fn run_plain_rtp(
    dest: SocketAddr,
    cfg: SourceConfig,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<PublisherStats, Error> {
    let bind: SocketAddr = if dest.is_ipv4() { "0.0.0.0:0".parse().expect("literal") } else { "[::]:0".parse().expect("literal") };
    let sock = UdpSocket::bind(bind).await?;
    let mut source = SyntheticSource::new(cfg);
    let interval = source.frame_interval();
    let mut stats = PublisherStats::default();
    let mut pkts = Vec::new();
    let _ = ready.send(());
    let mut next = tokio::time::Instant::now();
    let ssrc = 0x5eed_0001;
    info!(%dest, "plain RTP publisher");
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                pkts.clear();
                source.next_frame(now_ns(), &mut pkts);
                stats.frames += 1;
                for p in pkts.iter().filter(|p| p.layer == 0) {
                    let b = plain_rtp(96, ssrc, p);
                    stats.packets += 1;
                    stats.payload_bytes += p.payload.len() as u64;
                    if let Err(e) = sock.send_to(&b, dest).await {
                        warn!(error = %e, "plain RTP send failed");
                    }
                }
                next += interval;
                let now = tokio::time::Instant::now();
                if next + interval < now {
                    next = now + interval;
                }
            }
            _ = stop.changed() => {
                if *stop.borrow() { break; }
            }
        }
    }
    Ok(stats)
}
