//! Viewer drivers: one str0m `Rtc` (RTP mode, no depacketizing) and one UDP socket per viewer,
//! many viewers per runtime thread. Signaling over WHEP (Relaycast) or the Janus HTTP API.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::DtlsCert;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::debug;

use crate::publisher::drain;
use crate::signal::{self, JanusHandle};
use crate::source::now_ns;
use crate::stats::ViewerStats;
use crate::Error;

/// Phases of a run, broadcast to every viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Viewers join; nothing is measured.
    Join,
    /// The measurement window is open.
    Measure,
    /// Viewers leave and report.
    Stop,
}

/// How a viewer signals.
#[derive(Clone, Debug)]
pub enum ViewerSignal {
    /// WHEP endpoint URL (with any `?rid=` query).
    Whep(String),
    /// Janus API base URL and mountpoint id.
    Janus(String, u64),
}

/// Shared by all viewers of a run.
#[derive(Debug)]
pub struct ViewerCtx {
    /// Signaling.
    pub signal: ViewerSignal,
    /// Address viewers bind and advertise.
    pub bind_ip: IpAddr,
    /// HTTP client.
    pub client: reqwest::Client,
    /// Viewers that received a first frame.
    pub with_frames: AtomicUsize,
    /// Notified whenever `with_frames` grows.
    pub progress: Notify,
    /// Bound on signaling.
    pub signaling_timeout: Duration,
    /// One DTLS certificate for every viewer: generating a key pair per viewer would put the
    /// load generator's key generation into the join times it measures.
    pub dtls_cert: DtlsCert,
    /// Media datagrams dropped on receipt, per million (a lossy link; 0: none).
    pub drop_per_million: u32,
}

fn rtc_err(e: impl std::fmt::Display) -> Error {
    Error::Rtc(e.to_string())
}

/// Runs one viewer until the phase becomes [`Phase::Stop`]; returns its figures.
pub async fn run_viewer(
    ctx: Arc<ViewerCtx>,
    phase: watch::Receiver<Phase>,
    join_limit: Option<Arc<Semaphore>>,
) -> Result<ViewerStats, Error> {
    // Limits how many viewers signal at once; held until signaling completes.
    let permit = match join_limit {
        Some(s) => s.acquire_owned().await.ok(),
        None => None,
    };
    let sock = UdpSocket::bind(SocketAddr::new(ctx.bind_ip, 0)).await?;
    let local = sock.local_addr()?;
    let builder = || {
        Rtc::builder()
            .set_rtp_mode(true)
            .set_crypto_provider(relaycast_sfu::dtls::crypto_provider_for(relaycast_sfu::dtls::DtlsBackend::Dimpl))
            .set_dtls_cert(ctx.dtls_cert.clone())
            .clear_codecs()
            .enable_vp8(true)
            .build(Instant::now())
    };
    // Join time runs from the first signaling request to the first frame.
    let setup = async {
        match &ctx.signal {
            ViewerSignal::Whep(endpoint) => {
                let mut rtc = builder();
                rtc.add_local_candidate(Candidate::host(local, "udp").map_err(rtc_err)?);
                let mut api = rtc.sdp_api();
                api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
                let (offer, pending) = api.apply().ok_or(Error::Rtc("no offer".into()))?;
                let started = now_ns();
                let created = signal::post_offer(&ctx.client, endpoint, None, offer.to_sdp_string()).await?;
                let answer = SdpAnswer::from_sdp_string(&created.answer).map_err(rtc_err)?;
                rtc.sdp_api().accept_answer(pending, answer).map_err(rtc_err)?;
                Ok::<_, Error>((rtc, Leave::Whep(created.location), started))
            }
            ViewerSignal::Janus(base, mountpoint) => {
                let started = now_ns();
                let h = JanusHandle::attach(&ctx.client, base).await?;
                let offer = h.watch(&ctx.client, *mountpoint, ctx.signaling_timeout).await?;
                let mut rtc = builder();
                rtc.add_local_candidate(Candidate::host(local, "udp").map_err(rtc_err)?);
                let offer = SdpOffer::from_sdp_string(&offer).map_err(rtc_err)?;
                let answer = rtc.sdp_api().accept_offer(offer).map_err(rtc_err)?;
                h.start(&ctx.client, answer.to_sdp_string()).await?;
                Ok((rtc, Leave::Janus(h), started))
            }
        }
    };
    let (mut rtc, leave, started) =
        tokio::time::timeout(ctx.signaling_timeout, setup).await.map_err(|_| Error::Timeout("viewer signaling"))??;
    let mut stats = ViewerStats::new(started);
    stats.answer_ns = Some(now_ns());
    drop(permit);
    let result = drive(&ctx, &mut rtc, &sock, local, &mut stats, phase).await;
    match leave {
        Leave::Whep(loc) => signal::delete(&ctx.client, &loc).await,
        Leave::Janus(h) => h.destroy(&ctx.client).await,
    }
    result.map(|_| stats)
}

enum Leave {
    Whep(String),
    Janus(JanusHandle),
}

async fn drive(
    ctx: &ViewerCtx,
    rtc: &mut Rtc,
    sock: &UdpSocket,
    local: SocketAddr,
    stats: &mut ViewerStats,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; 2048];
    let mut recv_ns = now_ns();
    // A small xorshift, seeded per viewer from its local port: which datagrams a lossy link drops.
    let mut lossy = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(local.port());
    if *phase.borrow() == Phase::Measure {
        stats.start_window();
    }
    loop {
        let had_frame = stats.first_frame_ns.is_some();
        let timeout = drain(rtc, sock, |ev| match ev {
            Event::Connected => {
                stats.connected_ns.get_or_insert_with(now_ns);
            }
            Event::RtpPacket(p) => stats.on_rtp(*p.seq_no, p.header.timestamp, p.header.marker, &p.payload, recv_ns),
            _ => {}
        })
        .await?;
        if !had_frame && stats.first_frame_ns.is_some() {
            ctx.with_frames.fetch_add(1, Ordering::Relaxed);
            ctx.progress.notify_waiters();
        }
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, src) = r?;
                // SRTP media only (not RTCP, DTLS or STUN): the link loses what the server sends.
                if ctx.drop_per_million > 0 && n >= 2 && buf[0] >> 6 == 2 && !(192..=223).contains(&buf[1]) {
                    lossy ^= lossy << 13;
                    lossy ^= lossy >> 7;
                    lossy ^= lossy << 17;
                    if lossy % 1_000_000 < u64::from(ctx.drop_per_million) {
                        continue;
                    }
                }
                recv_ns = now_ns();
                stats.on_datagram(n);
                match Receive::new(Protocol::Udp, src, local, &buf[..n]) {
                    Ok(rcv) => rtc.handle_input(Input::Receive(Instant::now(), rcv)).map_err(rtc_err)?,
                    Err(e) => debug!(error = %e, "unparsable datagram"),
                }
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(rtc_err)?;
            }
            r = phase.changed() => {
                let p = if r.is_err() { Phase::Stop } else { *phase.borrow() };
                match p {
                    Phase::Measure => stats.start_window(),
                    Phase::Stop => return Ok(()),
                    Phase::Join => {}
                }
            }
        }
    }
}
