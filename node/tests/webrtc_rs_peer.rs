//! Interoperability with an independent WebRTC stack: a webrtc-rs publisher sends synthetic VP8
//! and Opus RTP over WHIP, a webrtc-rs viewer receives it over WHEP, both through a relaycast
//! process started for the test on ephemeral ports.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender};

/// Publish token the server is started with.
const TOKEN: &str = "webrtc-rs-peer-token";
/// Stream published and watched.
const STREAM: &str = "webrtc-rs-room";
/// Payload type registered for VP8 on both peers.
const VP8_PT: u8 = 96;
/// Payload type registered for Opus on both peers.
const OPUS_PT: u8 = 111;
/// Every this many frames the publisher sends a keyframe.
const KEYFRAME_INTERVAL: u32 = 15;
/// Frame size announced in the synthetic keyframes.
const WIDTH: u16 = 320;
/// Frame size announced in the synthetic keyframes.
const HEIGHT: u16 = 240;
/// RTP timestamp step between video frames (30 frames/s at 90 kHz).
const VIDEO_TS_STEP: u32 = 3000;
/// RTP timestamp step between audio packets (20 ms at 48 kHz).
const AUDIO_TS_STEP: u32 = 960;
/// Video packets the viewer must receive.
const MIN_VIDEO: usize = 45;
/// Audio packets the viewer must receive.
const MIN_AUDIO: usize = 50;
/// Bound on every signaling or connection step.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on receiving the media.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest sequence number jump tolerated between two packets in arrival order.
const MAX_SEQ_JUMP: i16 = 16;
/// Packets a received track may lack within the span it covers.
const MAX_MISSING: usize = 3;
/// Most frames a viewer starting from the cached keyframe gets before the newest one (600 ms of
/// this 30 fps source: the cache is used for keyframes at most that old).
const MAX_CACHED_FRAMES: usize = 19;

/// The relaycast process under test; killed and reaped on drop, also when the test panics.
struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Starts the relaycast binary on ephemeral ports and returns once it has printed its HTTP URL.
fn start_server() -> Server {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("webrtc-rs-peer-{}-{nanos}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaycast"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--media-port",
            "0",
            "--publish-token",
            TOKEN,
            "--workers",
            "2",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the relaycast binary");
    let stdout = child.stdout.take().expect("relaycast stdout");
    let stderr = child.stderr.take().expect("relaycast stderr");
    let mut server = Server {
        child,
        base: String::new(),
        data_dir,
    };
    forward_logs(stderr);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keeps reading to the end so the server never writes into a closed pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("[relaycast stdout] {line}");
            if let Some(base) = line.strip_prefix("  http: ") {
                let _ = tx.send(base.trim().to_string());
            }
        }
    });
    let base = rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("relaycast did not print its `  http: ` line in time");
    assert!(
        base.starts_with("http://127.0.0.1:"),
        "unexpected HTTP base {base:?}"
    );
    server.base = base;
    server
}

/// Copies the server's log output into the test's captured stderr.
fn forward_logs(stderr: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("[relaycast] {line}");
        }
    });
}

/// An HTTP client for the local server that ignores any proxy settings of the environment.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(STEP_TIMEOUT)
        .build()
        .expect("building the HTTP client")
}

/// Posts an SDP offer; returns the status and, on 201, the absolute session URL and the answer.
async fn post_offer(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    offer: &str,
) -> (reqwest::StatusCode, Option<(String, String)>) {
    let mut req = http
        .post(format!("{base}{path}"))
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer.to_string());
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status();
    if status != reqwest::StatusCode::CREATED {
        let body = resp.text().await.unwrap_or_default();
        eprintln!("POST {path} -> {status}: {body}");
        return (status, None);
    }
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("POST {path}: 201 without a Location header"))
        .to_string();
    let ctype = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ctype.starts_with("application/sdp"),
        "POST {path}: answer has Content-Type {ctype:?}"
    );
    let answer = resp.text().await.expect("reading the SDP answer");
    let url = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    (status, Some((url, answer)))
}

/// Sends `DELETE` to a session URL and returns the status.
async fn delete_session(http: &reqwest::Client, url: &str) -> reqwest::StatusCode {
    http.delete(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {url}: {e}"))
        .status()
}

/// Fetches `GET /api/streams` and returns the `streams` array.
async fn api_streams(http: &reqwest::Client, base: &str) -> Vec<Value> {
    let resp = http
        .get(format!("{base}/api/streams"))
        .send()
        .await
        .expect("GET /api/streams");
    assert_eq!(resp.status(), reqwest::StatusCode::OK, "GET /api/streams");
    let body: Value = resp.json().await.expect("/api/streams is JSON");
    body["streams"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("/api/streams without a streams array: {body}"))
}

/// Polls `/api/streams` until `done` accepts the stream list or the step timeout passes.
async fn poll_streams(
    http: &reqwest::Client,
    base: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let streams = api_streams(http, base).await;
        if done(&streams) {
            return streams;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /api/streams never matched; last: {streams:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The direction attribute of each m-section of an SDP, in order.
fn directions(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|a| matches!(*a, "sendrecv" | "sendonly" | "recvonly" | "inactive"))
        .collect()
}

/// Connection events of one webrtc-rs peer, passed on to the test.
struct Events {
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    packets: mpsc::UnboundedSender<(RtpCodecKind, rtp::Packet)>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let packets = self.packets.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            while let Some(event) = track.poll().await {
                let pkt = match event {
                    TrackRemoteEvent::OnRtpPacket(pkt) => pkt,
                    TrackRemoteEvent::OnEnded => break,
                    _ => continue,
                };
                if packets.send((kind, pkt)).is_err() {
                    break;
                }
            }
        });
    }
}

/// One webrtc-rs peer connection with the receiving ends of its events.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
    packets: mpsc::UnboundedReceiver<(RtpCodecKind, rtp::Packet)>,
}

/// The VP8 codec as both peers register it.
fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// The Opus codec as both peers register it.
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Builds a webrtc-rs peer on 127.0.0.1 with VP8 and Opus only, default interceptors and no mDNS.
async fn new_peer() -> Peer {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: vp8_codec(),
                payload_type: VP8_PT,
            },
            RtpCodecKind::Video,
        )
        .expect("registering VP8");
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .expect("registering Opus");
    let registry =
        register_default_interceptors(Registry::new(), &mut media).expect("default interceptors");
    let settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::default());
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::default());
    let (packets_tx, packets) = mpsc::unbounded_channel();
    let events = Events {
        gathering: gathering_tx,
        state: state_tx,
        packets: packets_tx,
    };
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(events))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .expect("building a webrtc-rs peer connection");
    Peer {
        pc: Arc::new(pc),
        gathering,
        state,
        packets,
    }
}

/// Creates and applies an offer, waits for ICE gathering, and returns the SDP with candidates.
async fn gathered_offer(peer: &mut Peer) -> String {
    let offer = peer.pc.create_offer(None).await.expect("create_offer");
    peer.pc
        .set_local_description(offer)
        .await
        .expect("set_local_description");
    timeout(
        STEP_TIMEOUT,
        peer.gathering
            .wait_for(|s| *s == RTCIceGatheringState::Complete),
    )
    .await
    .expect("ICE gathering did not complete in time")
    .expect("peer dropped its gathering state");
    peer.pc
        .local_description()
        .await
        .expect("local description after gathering")
        .sdp
}

/// Applies the server's SDP answer to the peer.
async fn apply_answer(peer: &Peer, sdp: String) {
    let answer = RTCSessionDescription::answer(sdp).expect("parsing the SDP answer");
    peer.pc
        .set_remote_description(answer)
        .await
        .expect("set_remote_description(answer)");
}

/// Waits until the peer connection is connected; panics on failure, close or timeout.
async fn wait_connected(peer: &mut Peer, who: &str) {
    let last = peer.state.clone();
    let state = timeout(
        STEP_TIMEOUT,
        peer.state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .unwrap_or_else(|_| panic!("{who}: not connected in time (state {:?})", *last.borrow()))
    .expect("peer dropped its connection state");
    assert_eq!(
        *state,
        RTCPeerConnectionState::Connected,
        "{who}: connection state"
    );
}

/// A local track that sends pre-built RTP on one fixed SSRC.
fn local_track(
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    ssrc: u32,
    id: &str,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "webrtc-rs-publisher".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

/// Adds `track` to the publisher on a sendonly transceiver, as WHIP clients offer, and returns its sender.
async fn add_sendonly(publisher: &Peer, track: Arc<TrackLocalStaticRTP>) -> Arc<dyn RtpSender> {
    let init = RTCRtpTransceiverInit {
        direction: RTCRtpTransceiverDirection::Sendonly,
        ..Default::default()
    };
    let transceiver = publisher
        .pc
        .add_transceiver_from_track(track as Arc<dyn TrackLocal>, Some(init))
        .await
        .expect("sendonly transceiver");
    transceiver
        .sender()
        .await
        .expect("transceiver sender")
        .expect("sendonly transceiver has a sender")
}

/// VP8 frame bytes (the part after the payload descriptor) for frame `n`; every
/// `KEYFRAME_INTERVAL`-th frame is keyframe-shaped.
fn vp8_frame(n: u32) -> Vec<u8> {
    let mut f = if n.is_multiple_of(KEYFRAME_INTERVAL) {
        // Frame tag with P = 0 (key frame) and show_frame, start code, 14-bit width and height.
        let [w0, w1] = WIDTH.to_le_bytes();
        let [h0, h1] = HEIGHT.to_le_bytes();
        vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, w0, w1, h0, h1]
    } else {
        // Frame tag with P = 1 (inter frame).
        vec![0x11, 0x02, 0x00]
    };
    f.extend_from_slice(&n.to_be_bytes());
    let filler = if n.is_multiple_of(KEYFRAME_INTERVAL) {
        900
    } else {
        150 + (n % 7) * 40
    };
    f.extend((0..filler).map(|i| (i.wrapping_mul(31) ^ n) as u8));
    f
}

/// Frame number carried by the VP8 frame bytes of [`vp8_frame`].
fn vp8_frame_number(frame: &[u8]) -> Option<u32> {
    let at = if frame.first()? & 0x01 == 0 { 10 } else { 3 };
    Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
}

/// Full VP8 RTP payload for frame `n`: descriptor (X, S, 15-bit picture id) plus frame bytes.
fn vp8_payload(n: u32, picture_id: u16) -> Vec<u8> {
    let pid = picture_id & 0x7fff;
    let mut p = vec![0x90, 0x80, 0x80 | (pid >> 8) as u8, pid as u8];
    p.extend(vp8_frame(n));
    p
}

/// Splits a VP8 RTP payload into the descriptor's picture id and the frame bytes after it.
fn split_vp8(p: &[u8]) -> Option<(Option<u16>, &[u8])> {
    let b0 = *p.first()?;
    let mut off = 1;
    let mut picture_id = None;
    if b0 & 0x80 != 0 {
        let ext = *p.get(off)?;
        off += 1;
        if ext & 0x80 != 0 {
            let m = *p.get(off)?;
            if m & 0x80 != 0 {
                picture_id = Some((u16::from(m & 0x7f) << 8) | u16::from(*p.get(off + 1)?));
                off += 2;
            } else {
                picture_id = Some(u16::from(m));
                off += 1;
            }
        }
        if ext & 0x40 != 0 {
            off += 1;
        }
        if ext & 0x30 != 0 {
            off += 1;
        }
    }
    Some((picture_id, p.get(off..)?))
}

/// Opus-looking payload for audio packet `n`: a TOC byte, the packet number and filler.
fn opus_payload(n: u32) -> Vec<u8> {
    let mut p = vec![0xfc];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend((0..40u32).map(|i| (i.wrapping_mul(7) ^ n) as u8));
    p
}

/// Packet number carried by an [`opus_payload`].
fn opus_number(p: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(1..5)?.try_into().ok()?))
}

/// What the publisher sends on one track.
#[derive(Clone, Copy)]
struct Outgoing {
    ssrc: u32,
    pt: u8,
}

/// Sends one VP8 frame per packet at 30/s from `track` until aborted.
fn spawn_video(track: Arc<TrackLocalStaticRTP>, out: Outgoing) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let (seq0, ts0, pid0) = (rand_u16(), rand_u32(), rand_u16());
        for n in 0u32.. {
            tick.tick().await;
            let pkt = rtp_packet(
                out,
                seq0.wrapping_add(n as u16),
                ts0.wrapping_add(n.wrapping_mul(VIDEO_TS_STEP)),
                true,
                vp8_payload(n, pid0.wrapping_add(n as u16)),
            );
            if let Err(e) = track.write_rtp(pkt).await {
                eprintln!("publisher video write_rtp: {e}");
            }
        }
    })
}

/// Sends one Opus packet every 20 ms from `track` until aborted.
fn spawn_audio(track: Arc<TrackLocalStaticRTP>, out: Outgoing) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let (seq0, ts0) = (rand_u16(), rand_u32());
        for n in 0u32.. {
            tick.tick().await;
            let pkt = rtp_packet(
                out,
                seq0.wrapping_add(n as u16),
                ts0.wrapping_add(n.wrapping_mul(AUDIO_TS_STEP)),
                n == 0,
                opus_payload(n),
            );
            if let Err(e) = track.write_rtp(pkt).await {
                eprintln!("publisher audio write_rtp: {e}");
            }
        }
    })
}

/// An RTP packet with the given header fields and payload.
fn rtp_packet(out: Outgoing, seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> rtp::Packet {
    rtp::Packet {
        header: rtp::header::Header {
            version: 2,
            marker,
            payload_type: out.pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: out.ssrc,
            ..Default::default()
        },
        payload: payload.into(),
    }
}

/// A pseudo-random 32-bit value (randomly keyed hash of the clock; enough for SSRCs and start values).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// A pseudo-random 16-bit value.
fn rand_u16() -> u16 {
    rand_u32() as u16
}

/// The payload type the sender negotiated for the codec `mime`.
async fn negotiated_pt(sender: &Arc<dyn RtpSender>, mime: &str) -> u8 {
    let params = sender.get_parameters().await.expect("sender parameters");
    params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .unwrap_or_else(|| {
            panic!(
                "{mime} not negotiated on the sender: {:?}",
                params.rtp_parameters.codecs
            )
        })
        .payload_type
}

/// Media the viewer received, in arrival order, without padding-only packets.
struct Received {
    video: Vec<rtp::Packet>,
    audio: Vec<rtp::Packet>,
    padding: usize,
}

/// Collects packets the viewer receives until it has enough of both kinds or the time is up.
async fn collect_media(viewer: &mut Peer) -> Received {
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    let mut got = Received {
        video: Vec::new(),
        audio: Vec::new(),
        padding: 0,
    };
    while got.video.len() < MIN_VIDEO || got.audio.len() < MIN_AUDIO {
        match timeout_at(deadline, viewer.packets.recv()).await {
            Ok(Some((_, pkt))) if pkt.payload.is_empty() => got.padding += 1,
            Ok(Some((RtpCodecKind::Video, pkt))) => got.video.push(pkt),
            Ok(Some((RtpCodecKind::Audio, pkt))) => got.audio.push(pkt),
            Ok(Some(_)) => {}
            Ok(None) => panic!(
                "viewer track readers ended early ({} video, {} audio)",
                got.video.len(),
                got.audio.len()
            ),
            Err(_) => panic!(
                "viewer received only {} video and {} audio packets in {MEDIA_TIMEOUT:?} (wanted {MIN_VIDEO} and {MIN_AUDIO})",
                got.video.len(),
                got.audio.len()
            ),
        }
    }
    got
}

/// Checks one received track: SSRC rewritten and stable, no large sequence jumps, few packets
/// missing, and sequence numbers and timestamps spaced exactly as the publisher's. With
/// `cached_start`, the frames a viewer starts with from the node's cached keyframe may come first,
/// one RTP tick apart (the node squeezes the frames before the newest cached one), at most
/// `MAX_CACHED_FRAMES` of them. Returns the packets with their publisher packet number, ordered by
/// it, retransmitted duplicates removed.
fn check_track<'a>(
    kind: &str,
    pkts: &'a [rtp::Packet],
    publisher_ssrc: u32,
    ts_step: u32,
    cached_start: bool,
    number: impl Fn(&[u8]) -> Option<u32>,
) -> Vec<(u32, &'a rtp::Packet)> {
    let ssrc = pkts[0].header.ssrc;
    assert_ne!(
        ssrc, publisher_ssrc,
        "{kind}: the SFU must rewrite the publisher's SSRC"
    );
    assert!(
        pkts.iter().all(|p| p.header.ssrc == ssrc),
        "{kind}: SSRC changed within the track"
    );
    for w in pkts.windows(2) {
        let (a, b) = (w[0].header.sequence_number, w[1].header.sequence_number);
        let step = b.wrapping_sub(a) as i16;
        assert!(
            (-MAX_SEQ_JUMP..=MAX_SEQ_JUMP).contains(&step) && step != 0
                || step == 0 && w[0] == w[1],
            "{kind}: sequence number jump {a} -> {b}"
        );
    }
    let mut numbered: Vec<(u32, &rtp::Packet)> = pkts
        .iter()
        .map(|p| {
            (
                number(&p.payload)
                    .unwrap_or_else(|| panic!("{kind}: payload without a packet number")),
                p,
            )
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    numbered.dedup_by_key(|(n, _)| *n);
    let (first, last) = (numbered[0].0, numbered[numbered.len() - 1].0);
    let missing: Vec<u32> = (first..=last)
        .filter(|n| numbered.binary_search_by_key(n, |(m, _)| *m).is_err())
        .collect();
    assert!(
        missing.len() <= MAX_MISSING,
        "{kind}: packets {missing:?} missing between {first} and {last}"
    );
    let mut squeezed = 0;
    let mut in_cached_start = cached_start;
    for w in numbered.windows(2) {
        let ((n0, p0), (n1, p1)) = (w[0], w[1]);
        let seq = p1
            .header
            .sequence_number
            .wrapping_sub(p0.header.sequence_number);
        assert_eq!(
            seq,
            (n1 - n0) as u16,
            "{kind}: sequence number step between packets {n0} and {n1}"
        );
        let ts = p1.header.timestamp.wrapping_sub(p0.header.timestamp);
        if in_cached_start && ts == n1 - n0 {
            squeezed += 1;
            continue;
        }
        in_cached_start = false;
        assert_eq!(
            ts,
            (n1 - n0).wrapping_mul(ts_step),
            "{kind}: timestamp step between packets {n0} and {n1}"
        );
    }
    assert!(
        squeezed <= MAX_CACHED_FRAMES,
        "{kind}: {squeezed} frames one tick apart at the start, more than a cached start sends"
    );
    if squeezed > 0 {
        eprintln!("{kind}: started from the cached keyframe, {squeezed} frames squeezed before the newest");
    }
    numbered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_publisher_and_viewer() {
    let server = start_server();
    let http = http_client();
    let base = server.base.clone();

    // Viewer offer first: WHEP for a stream nobody publishes is 404.
    let mut viewer = new_peer().await;
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        let init = RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        };
        viewer
            .pc
            .add_transceiver_from_kind(kind, Some(init))
            .await
            .expect("recvonly transceiver");
    }
    let viewer_offer = gathered_offer(&mut viewer).await;
    let (status, _) = post_offer(
        &http,
        &base,
        &format!("/whep/{STREAM}"),
        None,
        &viewer_offer,
    )
    .await;
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "WHEP before the stream is published"
    );

    // Publisher: one VP8 track (no simulcast) and one Opus track over WHIP.
    let mut publisher = new_peer().await;
    let video_ssrc = rand_u32() | 1;
    let audio_ssrc = video_ssrc.rotate_left(16) ^ 0x5a5a_5a5a;
    let video_track = local_track(
        RtpCodecKind::Video,
        vp8_codec(),
        video_ssrc,
        "webrtc-rs-video",
    );
    let audio_track = local_track(
        RtpCodecKind::Audio,
        opus_codec(),
        audio_ssrc,
        "webrtc-rs-audio",
    );
    let video_sender = add_sendonly(&publisher, video_track.clone()).await;
    let audio_sender = add_sendonly(&publisher, audio_track.clone()).await;
    let publisher_offer = gathered_offer(&mut publisher).await;
    let (status, session) = post_offer(
        &http,
        &base,
        &format!("/whip/{STREAM}"),
        Some(TOKEN),
        &publisher_offer,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "WHIP publish");
    let (publisher_url, answer) = session.expect("WHIP session");
    assert_eq!(
        directions(&answer),
        ["recvonly", "recvonly"],
        "WHIP answer directions"
    );
    apply_answer(&publisher, answer).await;
    wait_connected(&mut publisher, "publisher").await;

    let video_out = Outgoing {
        ssrc: video_ssrc,
        pt: negotiated_pt(&video_sender, MIME_TYPE_VP8).await,
    };
    let audio_out = Outgoing {
        ssrc: audio_ssrc,
        pt: negotiated_pt(&audio_sender, MIME_TYPE_OPUS).await,
    };
    let senders = [
        spawn_video(video_track, video_out),
        spawn_audio(audio_track, audio_out),
    ];

    // The stream is live once the first video packet has arrived.
    poll_streams(&http, &base, "stream goes live", |s| {
        s.iter()
            .any(|s| s["name"] == STREAM && s["live"] == true && s["codec"] == "VP8")
    })
    .await;

    // Viewer: the same recvonly offer, now accepted.
    let (status, session) = post_offer(
        &http,
        &base,
        &format!("/whep/{STREAM}"),
        None,
        &viewer_offer,
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "WHEP subscribe");
    let (viewer_url, answer) = session.expect("WHEP session");
    assert_eq!(
        directions(&answer),
        ["sendonly", "sendonly"],
        "WHEP answer directions"
    );
    apply_answer(&viewer, answer).await;
    wait_connected(&mut viewer, "viewer").await;

    let Received {
        video,
        audio,
        padding,
    } = collect_media(&mut viewer).await;
    eprintln!(
        "viewer received {} video, {} audio and {padding} padding-only packets",
        video.len(),
        audio.len()
    );

    // Video starts at a keyframe (a lost packet or two at the very start aside), payloads are
    // intact after the (rewritten) VP8 descriptor, and picture ids are continuous.
    let first = split_vp8(&video[0].payload).and_then(|(_, f)| vp8_frame_number(f));
    assert!(
        first.is_some_and(|n| (n % KEYFRAME_INTERVAL) as usize <= MAX_MISSING),
        "video must start at a keyframe (every {KEYFRAME_INTERVAL}th frame), started at frame {first:?}"
    );
    let frames = check_track("video", &video, video_ssrc, VIDEO_TS_STEP, true, |p| {
        split_vp8(p).and_then(|(_, f)| vp8_frame_number(f))
    });
    let mut picture_ids = Vec::with_capacity(frames.len());
    for &(n, pkt) in &frames {
        assert!(
            pkt.header.marker,
            "every synthetic frame is one packet with the marker bit"
        );
        let (pid, frame) =
            split_vp8(&pkt.payload).expect("received VP8 payload has a valid descriptor");
        assert_eq!(
            frame,
            vp8_frame(n).as_slice(),
            "VP8 frame {n} bytes changed in forwarding"
        );
        picture_ids.push((n, pid.expect("picture id kept in the descriptor")));
    }
    for w in picture_ids.windows(2) {
        let ((n0, p0), (n1, p1)) = (w[0], w[1]);
        assert_eq!(
            p1.wrapping_sub(p0) & 0x7fff,
            (n1 - n0) as u16 & 0x7fff,
            "picture id step between frames {n0} and {n1}"
        );
    }

    // Audio: payloads forwarded byte for byte.
    for (n, pkt) in check_track("audio", &audio, audio_ssrc, AUDIO_TS_STEP, false, opus_number) {
        assert_eq!(
            &pkt.payload[..],
            opus_payload(n).as_slice(),
            "Opus packet {n} changed in forwarding"
        );
    }
    assert_ne!(
        video[0].header.ssrc, audio[0].header.ssrc,
        "video and audio SSRCs differ"
    );

    // The API reports the stream with its viewer, layer and audio.
    let streams = poll_streams(&http, &base, "stream stats", |s| {
        s.iter().any(|s| {
            s["name"] == STREAM
                && s["codec"] == "VP8"
                && s["live"] == true
                && s["viewers"] == 1
                && s["audio"]["packets"].as_u64().is_some_and(|n| n > 0)
                && s["layers"].as_array().is_some_and(|l| !l.is_empty())
        })
    })
    .await;
    let stream = streams
        .iter()
        .find(|s| s["name"] == STREAM)
        .expect("stream listed");
    let layer = &stream["layers"][0];
    assert_eq!(layer["rid"], "", "single layer without simulcast: {stream}");
    assert!(
        layer["packets"].as_u64().is_some_and(|n| n > 0),
        "layer packets: {stream}"
    );
    assert_eq!(
        (layer["width"].as_u64(), layer["height"].as_u64()),
        (Some(320), Some(240)),
        "layer size: {stream}"
    );

    // Both joins are in the join-time histogram of /metrics.
    let metrics = http.get(format!("{base}/metrics")).send().await.expect("GET /metrics").text().await.expect("metrics body");
    for role in ["viewer", "publisher"] {
        let line = format!("relaycast_join_seconds_count{{role=\"{role}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics:\n{metrics}");
        let sum = metrics.lines().find_map(|l| l.strip_prefix(&format!("relaycast_join_seconds_sum{{role=\"{role}\"}} ")));
        eprintln!("{role} joined in {sum:?} s");
    }

    // Ending both sessions removes the stream.
    for h in &senders {
        h.abort();
    }
    assert_eq!(
        delete_session(&http, &viewer_url).await,
        reqwest::StatusCode::OK,
        "DELETE viewer session"
    );
    assert_eq!(
        delete_session(&http, &publisher_url).await,
        reqwest::StatusCode::OK,
        "DELETE publisher session"
    );
    assert_eq!(
        delete_session(&http, &viewer_url).await,
        reqwest::StatusCode::NOT_FOUND,
        "DELETE twice"
    );
    poll_streams(&http, &base, "stream removed", |s| {
        s.iter().all(|s| s["name"] != STREAM)
    })
    .await;

    let _ = timeout(STEP_TIMEOUT, viewer.pc.close()).await;
    let _ = timeout(STEP_TIMEOUT, publisher.pc.close()).await;
    drop(server);
}
