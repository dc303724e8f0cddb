//! The in-memory world of the socketless tests: worker cores (one or more per node), str0m
//! peers acting as WHIP publishers and WHEP viewers, the wire between them (with an optional
//! bottleneck and drop rule), and a virtual clock that jumps to the earliest wake-up of anyone.
//! Every loop is bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::super::Command;
use super::super::core::{Transmits, WorkerCore};
use crate::layer::LayerPreference;
use crate::metrics::Metrics;
use crate::stream::{Registry, Role, SessionEvent, SessionId};
use crate::{SfuError, Shared};

/// The worker's socket address.
pub(super) const SFU: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    5000,
);
/// Video frame interval of the test publisher (30 fps).
pub(super) const FRAME: Duration = Duration::from_millis(33);
/// Audio packet interval of the test publisher.
pub(super) const AUDIO: Duration = Duration::from_millis(20);
/// The test publisher sends a keyframe every this many frames (and when asked).
pub(super) const GOP_FRAMES: u32 = 10;
/// Most loop turns of one [`World::run_for`] call: a bound, not a budget the tests approach.
pub(super) const MAX_STEPS: usize = 200_000;
/// Longest a datagram waits in a bottleneck's queue ([`World::link`]) before it is dropped.
pub(super) const LINK_QUEUE: Duration = Duration::from_millis(300);

/// The core's datagrams, collected for delivery.
#[derive(Default)]
pub(super) struct Outbox(Vec<(SocketAddr, Vec<u8>)>);

impl Transmits for Outbox {
    fn transmit(&mut self, destination: SocketAddr, contents: DatagramSend) {
        self.0.push((destination, contents.into()));
    }
}

/// One RTP packet a client received.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub(super) video: bool,
    pub(super) seq: u64,
    pub(super) ssrc: Ssrc,
    /// A VP8 keyframe's first packet.
    pub(super) keyframe_start: bool,
    /// The publisher's layer it came from (the payload's last byte).
    pub(super) layer: u8,
    /// A sender report of its stream had arrived before it.
    pub(super) after_sender_report: bool,
}

/// What the test publisher sends.
pub(super) struct Source {
    pub(super) video_mid: Mid,
    pub(super) audio_mid: Mid,
    pub(super) video_pt: u8,
    pub(super) audio_pt: u8,
    pub(super) video_seq: u64,
    pub(super) audio_seq: u64,
    pub(super) frames: u32,
    pub(super) next_video: Instant,
    pub(super) next_audio: Instant,
    pub(super) want_keyframe: bool,
    pub(super) keyframes_sent: usize,
    /// A stalled encoder: nothing is sent.
    pub(super) paused: bool,
    /// Packets per video frame (two at least: 900 bytes for a keyframe's first and 300 for
    /// the rest; more are 1100 bytes each).
    pub(super) packets_per_frame: u8,
    /// Simulcast layers, lowest first (none: one layer without a rid).
    pub(super) simulcast: Vec<SimLayer>,
}

/// One simulcast layer of the test publisher.
pub(super) struct SimLayer {
    pub(super) rid: Rid,
    pub(super) seq: u64,
    pub(super) packets: u8,
    pub(super) size: usize,
}

/// A str0m peer on the far side of the worker's socket.
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) rtc: Rtc,
    pub(super) connected: bool,
    pub(super) next_timeout: Instant,
    pub(super) got: Vec<Got>,
    pub(super) keyframe_requests: usize,
    pub(super) source: Option<Source>,
}

impl Client {
    pub(super) fn new(port: u16, now: Instant) -> Client {
        let addr = SocketAddr::new(SFU.ip(), port);
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .set_crypto_provider(crate::dtls::crypto_provider())
            .clear_codecs()
            .enable_vp8(true)
            .enable_opus(true, false)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        Client {
            addr,
            rtc,
            connected: false,
            next_timeout: now,
            got: Vec::new(),
            keyframe_requests: 0,
            source: None,
        }
    }

    /// An offer of video and audio, sending (a publisher) or receiving (a viewer).
    /// An offer of video (sent as simulcast layers `rids`, when any) and audio.
    pub(super) fn offer(
        &mut self,
        dir: Direction,
        rids: &[&str],
    ) -> (String, SdpPendingOffer, Mid, Mid) {
        let sim = (!rids.is_empty()).then(|| {
            let mut sim = Simulcast::new();
            for r in rids {
                sim.add_send_layer(SimulcastLayer::new(r));
            }
            sim
        });
        let mut api = self.rtc.sdp_api();
        let video = api.add_media(MediaKind::Video, dir, None, None, sim);
        let audio = api.add_media(MediaKind::Audio, dir, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        (offer.to_sdp_string(), pending, video, audio)
    }

    pub(super) fn video_ssrc(&self) -> Option<Ssrc> {
        self.got.iter().find(|g| g.video).map(|g| g.ssrc)
    }

    pub(super) fn audio_ssrc(&self) -> Option<Ssrc> {
        self.got.iter().find(|g| !g.video).map(|g| g.ssrc)
    }

    pub(super) fn seqs(&self, video: bool) -> Vec<u64> {
        self.got
            .iter()
            .filter(|g| g.video == video)
            .map(|g| g.seq)
            .collect()
    }

    /// Polls the peer until it wants a timeout; its datagrams go on the wire.
    pub(super) fn poll(&mut self, now: Instant, wire: &mut Wire) {
        for _ in 0..100_000 {
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => panic!("client {} failed: {e}", self.addr),
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => wire.push_back((t.source, t.destination, t.contents.into())),
                Output::Event(e) => self.on_event(e, now),
            }
        }
        panic!("client {} never asked for a timeout", self.addr);
    }

    pub(super) fn on_event(&mut self, e: Event, _now: Instant) {
        match e {
            Event::Connected => self.connected = true,
            Event::KeyframeRequest(_) => {
                self.keyframe_requests += 1;
                if let Some(s) = self.source.as_mut() {
                    s.want_keyframe = true;
                }
            }
            Event::RtpPacket(p) => {
                let pt = p.header.payload_type;
                let codec = self
                    .rtc
                    .codec_config()
                    .params()
                    .iter()
                    .find(|x| x.pt() == pt)
                    .map(|x| x.spec().codec);
                let video = codec == Some(Codec::Vp8);
                // VP8 descriptor: S bit with partition 0, then the frame tag's P bit clear.
                let keyframe_start = video && vp8_keyframe_start(&p.payload);
                let layer = p.payload.last().copied().unwrap_or(0);
                self.got.push(Got {
                    video,
                    seq: *p.seq_no,
                    ssrc: p.header.ssrc,
                    keyframe_start,
                    layer,
                    after_sender_report: p.last_sender_info.is_some(),
                });
            }
            _ => {}
        }
    }

    /// Writes the publisher's media due by `now`.
    pub(super) fn send_media(&mut self, now: Instant) {
        let Some(s) = self.source.as_mut() else {
            return;
        };
        if !self.connected || s.paused {
            s.next_video = now;
            s.next_audio = now;
            return;
        }
        let mut api = self.rtc.direct_api();
        while s.next_video <= now {
            let keyframe = s.want_keyframe || s.frames % GOP_FRAMES == 0;
            if keyframe {
                s.want_keyframe = false;
                s.keyframes_sent += 1;
            }
            let ts = s.frames.wrapping_mul(3000);
            if s.simulcast.is_empty() {
                let parts = s.packets_per_frame.max(2);
                let size = |part: u8| match (parts > 2, keyframe, part) {
                    (true, _, _) => 1100,
                    (false, true, 0) => 900,
                    (false, _, _) => 300,
                };
                let Some(tx) = api.stream_tx_by_mid(s.video_mid, None) else {
                    return;
                };
                write_frame(
                    tx,
                    s.video_pt,
                    &mut s.video_seq,
                    s.frames,
                    ts,
                    s.next_video,
                    keyframe,
                    parts,
                    size,
                    0,
                );
            } else {
                for (i, l) in s.simulcast.iter_mut().enumerate() {
                    let Some(tx) = api.stream_tx_by_mid(s.video_mid, Some(l.rid)) else {
                        return;
                    };
                    let size = l.size;
                    write_frame(
                        tx,
                        s.video_pt,
                        &mut l.seq,
                        s.frames,
                        ts,
                        s.next_video,
                        keyframe,
                        l.packets,
                        |_| size,
                        i as u8,
                    );
                }
            }
            s.frames += 1;
            s.next_video += FRAME;
        }
        while s.next_audio <= now {
            let ts = (s.audio_seq as u32).wrapping_mul(960);
            let Some(tx) = api.stream_tx_by_mid(s.audio_mid, None) else {
                return;
            };
            tx.write_rtp(RtpWrite::new(
                s.audio_pt.into(),
                SeqNo::from(s.audio_seq),
                ts,
                s.next_audio,
                vec![0xfc; 40],
            ));
            s.audio_seq += 1;
            s.next_audio += AUDIO;
        }
    }

    pub(super) fn wake(&self) -> Instant {
        match &self.source {
            Some(s) if self.connected => self.next_timeout.min(s.next_video).min(s.next_audio),
            _ => self.next_timeout,
        }
    }
}

/// Writes one VP8 frame of `parts` packets (sizes from `size` by part) on `tx`; each payload
/// ends in the `layer` it belongs to, so a viewer can tell which layer it receives.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_frame(
    tx: &mut str0m::rtp::StreamTx,
    pt: u8,
    seq: &mut u64,
    frame: u32,
    ts: u32,
    at: Instant,
    keyframe: bool,
    parts: u8,
    size: impl Fn(u8) -> usize,
    layer: u8,
) {
    let pid = (frame & 0x7fff) as u16;
    for part in 0..parts {
        let mut payload = vec![
            0x80 | if part == 0 { 0x10 } else { 0 },
            0xe0,
            0x80 | (pid >> 8) as u8,
            pid as u8,
            frame as u8,
            0,
        ];
        if part == 0 {
            payload.push(if keyframe { 0x10 } else { 0x11 });
            payload.extend_from_slice(&[0x02, 0x00]);
            if keyframe {
                payload.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                payload.extend_from_slice(&640u16.to_le_bytes());
                payload.extend_from_slice(&360u16.to_le_bytes());
            }
        }
        payload.resize(size(part).max(payload.len() + 1), 0x5a);
        if let Some(last) = payload.last_mut() {
            *last = layer;
        }
        let w = RtpWrite::new(pt.into(), SeqNo::from(*seq), ts, at, payload)
            .marker(part == parts - 1)
            .nackable(true);
        tx.write_rtp(w);
        *seq += 1;
    }
}

/// Whether an RTP payload starts a VP8 keyframe (descriptor as the test publisher writes it).
pub(super) fn vp8_keyframe_start(payload: &[u8]) -> bool {
    payload.len() > 6 && payload[0] & 0x10 != 0 && payload[0] & 0x07 == 0 && payload[6] & 0x01 == 0
}

/// A datagram the network drops, by time, destination and contents.
pub(super) type DropRule = Box<dyn FnMut(Instant, SocketAddr, &[u8]) -> bool>;

/// Datagrams in flight: (source, destination, contents).
pub(super) type Wire = VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>;

thread_local! {
    /// The send path of the nodes a test builds on this thread ([`on_send_path`]).
    static SEND_PATH: std::cell::Cell<crate::egress::SendPath> = const { std::cell::Cell::new(crate::egress::SendPath::Str0m) };
}

/// Runs `test` with nodes whose viewers are served by `path`.
pub(super) fn on_send_path(path: crate::egress::SendPath, test: fn()) {
    SEND_PATH.with(|p| p.set(path));
    test();
}

/// One node's media worker: its core and what it shares with the node.
pub(super) struct Node {
    pub(super) addr: SocketAddr,
    pub(super) core: WorkerCore,
    pub(super) shared: Arc<Shared>,
    /// The worker's media queue: packets and keyframe requests from the node's other workers.
    pub(super) media: mpsc::Receiver<Command>,
}

impl Node {
    /// A node with one worker at `addr`.
    pub(super) fn new(addr: SocketAddr, now: Instant) -> Node {
        Node::workers(&[addr], now).pop().expect("one worker")
    }

    /// The workers of one node, without an archive tap or lifecycle listener.
    pub(super) fn workers(addrs: &[SocketAddr], now: Instant) -> Vec<Node> {
        Node::workers_with(addrs, now, None, None)
    }

    /// The workers of one node (one per address, sharing the node's registry and metrics).
    pub(super) fn workers_with(
        addrs: &[SocketAddr],
        now: Instant,
        tap: Option<crate::tap::TapSender>,
        lifecycle: Option<crate::lifecycle::LifecycleSender>,
    ) -> Vec<Node> {
        let (txs, rxs): (Vec<_>, Vec<_>) = addrs.iter().map(|_| mpsc::channel(1024)).unzip();
        let shared = Arc::new(Shared {
            registry: Registry::default(),
            workers: txs,
            control: addrs.iter().map(|_| mpsc::channel(16).0).collect(),
            worker_load: addrs.iter().map(|_| AtomicUsize::new(0)).collect(),
            worker_healthy: addrs.iter().map(|_| AtomicBool::new(true)).collect(),
            metrics: Metrics::default(),
            tap,
            lifecycle,
            dtls_backend: crate::dtls::DtlsBackend::default(),
            send_path: SEND_PATH.with(|p| p.get()),
            extra_counters: std::sync::Mutex::new(None),
        });
        addrs
            .iter()
            .zip(rxs)
            .enumerate()
            .map(|(i, (&addr, media))| Node {
                addr,
                core: WorkerCore::new(i, addr, shared.clone(), now),
                shared: shared.clone(),
                media,
            })
            .collect()
    }

    pub(super) fn stream(&self, name: &str) -> Arc<crate::stream::StreamShared> {
        self.shared
            .registry
            .streams()
            .into_iter()
            .find(|s| s.name == name)
            .expect("stream exists")
    }
}

/// Worker cores (one per node), their peers on the far side, and the virtual clock.
pub(super) struct World {
    pub(super) now: Instant,
    pub(super) nodes: Vec<Node>,
    pub(super) clients: Vec<Client>,
    pub(super) wire: Wire,
    pub(super) drop_rule: Option<DropRule>,
    pub(super) dropped: usize,
    /// A bottleneck in front of one address: its capacity in bits per second. Datagrams to it
    /// queue behind each other and are dropped when they would wait over [`LINK_QUEUE`].
    pub(super) link: Option<(SocketAddr, u64)>,
    /// When the bottleneck has sent everything queued so far.
    pub(super) link_free: Instant,
    /// Datagrams crossing the bottleneck: (arrival, source, destination, contents).
    pub(super) in_link: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
}

impl World {
    /// One node at [`SFU`].
    pub(super) fn new() -> World {
        let now = Instant::now();
        World {
            now,
            nodes: vec![Node::new(SFU, now)],
            clients: Vec::new(),
            wire: Wire::new(),
            drop_rule: None,
            link: None,
            link_free: now,
            in_link: VecDeque::new(),
            dropped: 0,
        }
    }

    /// One node of two workers (at [`SFU`] and the port after it).
    pub(super) fn two_workers() -> World {
        let mut w = World::new();
        w.nodes = Node::workers(&[SFU, SocketAddr::new(SFU.ip(), SFU.port() + 1)], w.now);
        w
    }

    /// Another node, its worker at `port`.
    pub(super) fn add_node(&mut self, port: u16) -> usize {
        self.nodes
            .push(Node::new(SocketAddr::new(SFU.ip(), port), self.now));
        self.nodes.len() - 1
    }

    pub(super) fn add_client(&mut self, port: u16) -> usize {
        self.clients.push(Client::new(port, self.now));
        self.clients.len() - 1
    }

    /// The first node's worker core.
    pub(super) fn core(&mut self) -> &mut WorkerCore {
        &mut self.nodes[0].core
    }

    /// What the first node shares.
    pub(super) fn shared(&self) -> &Shared {
        &self.nodes[0].shared
    }

    /// Puts a core's datagrams on the wire.
    pub(super) fn send(&mut self, node: usize, out: Outbox) {
        let from = self.nodes[node].addr;
        self.wire
            .extend(out.0.into_iter().map(|(to, data)| (from, to, data)));
    }

    /// Hands node `node`'s core a command and delivers what it sends.
    pub(super) fn command(&mut self, node: usize, cmd: Command) {
        let mut out = Outbox::default();
        self.nodes[node]
            .core
            .handle_command(self.now, cmd, &mut out);
        self.send(node, out);
        self.pump();
    }

    /// Sends a session command to node `node`'s core and returns its answer.
    pub(super) fn ask<T>(
        &mut self,
        node: usize,
        cmd: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, mut rx) = oneshot::channel();
        let mut out = Outbox::default();
        self.nodes[node]
            .core
            .handle_command(self.now, cmd(reply), &mut out);
        self.send(node, out);
        self.pump();
        rx.try_recv()
            .expect("the core answers a session command at once")
    }

    /// Client `c` publishes `stream` (video and audio); returns the session and its events.
    pub(super) fn publish(
        &mut self,
        c: usize,
        stream: &str,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.publish_as(c, stream, false)
    }

    /// Client `c` publishes `stream` as its primary or (`backup`) its backup publisher.
    pub(super) fn publish_as(
        &mut self,
        c: usize,
        stream: &str,
        backup: bool,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.publish_with(c, stream, backup, &[])
    }

    /// Client `c` publishes `stream`, its video as the simulcast `layers` (rid, packets per
    /// frame, packet size) when any.
    pub(super) fn publish_with(
        &mut self,
        c: usize,
        stream: &str,
        backup: bool,
        layers: &[(&str, u8, usize)],
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        let rids: Vec<&str> = layers.iter().map(|l| l.0).collect();
        let (sdp, pending, video_mid, audio_mid) =
            self.clients[c].offer(Direction::SendOnly, &rids);
        let video = crate::negotiate::choose_for_publisher(&sdp).expect("publisher codecs");
        let role = if backup {
            Role::Backup
        } else {
            Role::Publisher
        };
        let (id, entry) = self
            .shared()
            .registry
            .admit_limited(stream, role, 0, 100, 100)
            .expect("admitted");
        let events = entry.events.subscribe();
        let offer = SdpOffer::from_sdp_string(&sdp).expect("offer parses");
        let answer = self
            .ask(0, |reply| Command::Publish {
                id,
                entry,
                offer,
                video,
                backup,
                reply,
            })
            .expect("publisher answered");
        let client = &mut self.clients[c];
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        client
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        let pt = |codec| {
            client
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| *p.pt())
                .expect("payload type")
        };
        let (video_pt, audio_pt) = (pt(Codec::Vp8), pt(Codec::Opus));
        client.source = Some(Source {
            video_mid,
            audio_mid,
            video_pt,
            audio_pt,
            video_seq: 40_000,
            audio_seq: 7_000,
            frames: 0,
            next_video: self.now,
            next_audio: self.now,
            want_keyframe: false,
            keyframes_sent: 0,
            paused: false,
            packets_per_frame: 2,
            simulcast: layers
                .iter()
                .map(|&(rid, packets, size)| SimLayer {
                    rid: rid.into(),
                    seq: 1_000,
                    packets,
                    size,
                })
                .collect(),
        });
        (id, events)
    }

    /// Client `c` watches `stream` on the first node; returns the session and its events.
    pub(super) fn subscribe(
        &mut self,
        c: usize,
        stream: &str,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.subscribe_on(0, c, stream)
    }

    /// Client `c` watches `stream` on node `node`; returns the session and its events.
    pub(super) fn subscribe_on(
        &mut self,
        node: usize,
        c: usize,
        stream: &str,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        let (sdp, pending, _, _) = self.clients[c].offer(Direction::RecvOnly, &[]);
        let (id, entry) = self.nodes[node]
            .shared
            .registry
            .admit_limited(
                stream,
                Role::Viewer,
                self.nodes[node].core.index(),
                100,
                100,
            )
            .expect("admitted");
        let video = match entry.stream.video_format() {
            Some(sent) => crate::negotiate::choose_for_viewer(&sdp, &sent).expect("viewer codecs"),
            None => None,
        };
        let events = entry.events.subscribe();
        let offer = SdpOffer::from_sdp_string(&sdp).expect("offer parses");
        let pref = LayerPreference::default();
        let answer = self
            .ask(node, |reply| Command::Subscribe {
                id,
                entry,
                offer,
                pref,
                video,
                reply,
            })
            .expect("viewer answered");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        self.clients[c]
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("answer accepted");
        (id, events)
    }

    /// Node `down` relays `stream` from node `up` as the cluster sets it up: `down` offers a
    /// relay in, `up` serves it with a relay out, `down` applies the answer. Returns the relay-in
    /// and relay-out sessions.
    pub(super) fn relay(&mut self, up: usize, down: usize, stream: &str) -> (SessionId, SessionId) {
        self.relay_with(up, down, stream, false)
    }

    /// [`Self::relay`]; with `standby`, `down` already relays `stream` from elsewhere and this
    /// edge is its standby upstream, served paused by `up`.
    pub(super) fn relay_with(&mut self, up: usize, down: usize, stream: &str, standby: bool) -> (SessionId, SessionId) {
        let registry = &self.nodes[down].shared.registry;
        let (in_id, in_entry) = if standby {
            registry.admit_standby(stream, 100).expect("standby relay in admitted")
        } else {
            registry.admit_limited(stream, Role::RelayIn, 0, 100, 100).expect("relay in admitted")
        };
        let offer = self
            .ask(down, |reply| Command::RelayOffer {
                id: in_id,
                entry: in_entry,
                simulcast: false,
                reply,
            })
            .expect("relay offer");
        let video_mids = crate::relay::video_mids_in_order(&offer);
        let (out_id, out_entry) = self.nodes[up]
            .shared
            .registry
            .admit_limited(stream, Role::RelayOut, 0, 100, 100)
            .expect("relay out admitted");
        let sdp = SdpOffer::from_sdp_string(&offer).expect("relay offer parses");
        let answer = self
            .ask(up, |reply| Command::RelayServe {
                id: out_id,
                entry: out_entry,
                offer: sdp,
                video_mids,
                standby,
                reply,
            })
            .expect("relay served");
        let claim = self.nodes[down]
            .shared
            .registry
            .claim_feed(in_id)
            .expect("relay claims the stream");
        let want = if standby { crate::stream::Claim::Standby } else { crate::stream::Claim::Feed };
        assert_eq!(claim, want);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("relay answer parses");
        self.ask(down, |reply| Command::RelayAnswer {
            id: in_id,
            answer,
            standby,
            reply,
        })
        .expect("relay answer applied");
        (in_id, out_id)
    }

    /// Delivers the datagrams on the wire (unless the network drops them) until none is left;
    /// each client is polled after each datagram, as str0m in RTP mode wants. True when any
    /// datagram moved.
    pub(super) fn pump(&mut self) -> bool {
        let mut moved = false;
        for _ in 0..1_000_000 {
            let arrived = self.in_link.front().is_some_and(|d| d.0 <= self.now);
            let next = if arrived {
                self.in_link.pop_front().map(|(_, f, t, d)| (f, t, d, true))
            } else {
                None
            };
            let Some((from, to, data, crossed)) =
                next.or_else(|| self.wire.pop_front().map(|(f, t, d)| (f, t, d, false)))
            else {
                return moved;
            };
            moved = true;
            if let Some(rule) = self.drop_rule.as_mut()
                && rule(self.now, to, &data)
            {
                self.dropped += 1;
                continue;
            }
            if let Some((addr, bps)) = self.link
                && to == addr
                && !crossed
            {
                let start = self.link_free.max(self.now);
                let arrival =
                    start + Duration::from_nanos(data.len() as u64 * 8_000_000_000 / bps.max(1));
                if arrival.saturating_duration_since(self.now) > LINK_QUEUE {
                    self.dropped += 1;
                } else {
                    self.link_free = arrival;
                    self.in_link.push_back((arrival, from, to, data));
                }
                continue;
            }
            if let Some(n) = self.nodes.iter().position(|n| n.addr == to) {
                let mut out = Outbox::default();
                self.nodes[n]
                    .core
                    .handle_datagram(self.now, from, to, &data, &mut out);
                self.send(n, out);
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to) {
                let rcv =
                    Receive::new(Protocol::Udp, from, to, &data).expect("a datagram str0m reads");
                c.rtc
                    .handle_input(Input::Receive(self.now, rcv))
                    .expect("client takes input");
                c.poll(self.now, &mut self.wire);
            }
        }
        panic!("datagrams kept moving without end");
    }

    /// Everything due at `now`, until no datagram moves.
    pub(super) fn turn(&mut self) {
        for _ in 0..64 {
            for c in &mut self.clients {
                if c.next_timeout <= self.now {
                    c.rtc
                        .handle_input(Input::Timeout(self.now))
                        .expect("client timeout");
                }
                c.send_media(self.now);
                c.poll(self.now, &mut self.wire);
            }
            let mut moved = self.pump();
            for n in 0..self.nodes.len() {
                let mut out = Outbox::default();
                // What the node's other workers handed this one, as the shell takes it.
                for _ in 0..10_000 {
                    let Ok(cmd) = self.nodes[n].media.try_recv() else {
                        break;
                    };
                    moved = true;
                    self.nodes[n].core.handle_command(self.now, cmd, &mut out);
                }
                self.nodes[n].core.handle_timeout(self.now, &mut out);
                self.send(n, out);
            }
            moved |= self.pump();
            if !moved {
                return;
            }
        }
    }

    /// Runs the virtual clock forward by `d`, jumping to the earliest wake-up each time.
    pub(super) fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..MAX_STEPS {
            self.turn();
            if self.now >= end {
                return;
            }
            let mut next = end;
            for n in &self.nodes {
                next = next.min(n.core.poll_timeout(self.now));
            }
            for c in &self.clients {
                next = next.min(c.wake());
            }
            if let Some(d) = self.in_link.front() {
                next = next.min(d.0);
            }
            self.now = next.max(self.now + Duration::from_micros(50)).min(end);
        }
        panic!("the world did not reach its end time in {MAX_STEPS} steps");
    }

    /// Runs until `done` holds (checked every 10 ms of virtual time), at most `limit`.
    pub(super) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&World) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.run_for(Duration::from_millis(10));
        }
        done(self)
    }

    /// `name` on the first node.
    pub(super) fn stream(&self, name: &str) -> Arc<crate::stream::StreamShared> {
        self.nodes[0].stream(name)
    }
}

/// Every event waiting on a session's channel.
pub(super) fn drain(rx: &mut broadcast::Receiver<SessionEvent>) -> Vec<SessionEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Whether `seqs` (in arrival order) run one by one without a gap or repeat.
pub(super) fn consecutive(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

/// A publisher and a viewer connected through the core, media flowing.
pub(super) fn publisher_and_viewer() -> (World, usize, usize, SessionId, SessionId) {
    let mut w = World::new();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    let (pub_id, _) = w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_millis(200));
    let (view_id, _) = w.subscribe(v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects"
    );
    (w, p, v, pub_id, view_id)
}
