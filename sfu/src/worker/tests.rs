//! Socketless tests of the worker core: str0m peers acting as a WHIP publisher and WHEP viewers
//! exchange datagrams with a [`WorkerCore`] in memory, on a virtual clock that jumps to the
//! earliest wake-up of anyone. Every loop is bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Command;
use super::core::{Transmits, WorkerCore};
use crate::layer::LayerPreference;
use crate::metrics::Metrics;
use crate::stream::{Registry, Role, SessionEvent, SessionId};
use crate::{SfuError, Shared};

/// The worker's socket address.
const SFU: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    5000,
);
/// Video frame interval of the test publisher (30 fps).
const FRAME: Duration = Duration::from_millis(33);
/// Audio packet interval of the test publisher.
const AUDIO: Duration = Duration::from_millis(20);
/// The test publisher sends a keyframe every this many frames (and when asked).
const GOP_FRAMES: u32 = 10;
/// Most loop turns of one [`World::run_for`] call: a bound, not a budget the tests approach.
const MAX_STEPS: usize = 200_000;
/// Longest a datagram waits in a bottleneck's queue ([`World::link`]) before it is dropped.
const LINK_QUEUE: Duration = Duration::from_millis(300);

/// The core's datagrams, collected for delivery.
#[derive(Default)]
struct Outbox(Vec<(SocketAddr, Vec<u8>)>);

impl Transmits for Outbox {
    fn transmit(&mut self, destination: SocketAddr, contents: DatagramSend) {
        self.0.push((destination, contents.into()));
    }
}

/// One RTP packet a client received.
#[derive(Debug, Clone)]
struct Got {
    video: bool,
    seq: u64,
    ssrc: Ssrc,
    /// A VP8 keyframe's first packet.
    keyframe_start: bool,
    /// The publisher's layer it came from (the payload's last byte).
    layer: u8,
    /// A sender report of its stream had arrived before it.
    after_sender_report: bool,
}

/// What the test publisher sends.
struct Source {
    video_mid: Mid,
    audio_mid: Mid,
    video_pt: u8,
    audio_pt: u8,
    video_seq: u64,
    audio_seq: u64,
    frames: u32,
    next_video: Instant,
    next_audio: Instant,
    want_keyframe: bool,
    keyframes_sent: usize,
    /// A stalled encoder: nothing is sent.
    paused: bool,
    /// Packets per video frame (two at least: 900 bytes for a keyframe's first and 300 for
    /// the rest; more are 1100 bytes each).
    packets_per_frame: u8,
    /// Simulcast layers, lowest first (none: one layer without a rid).
    simulcast: Vec<SimLayer>,
}

/// One simulcast layer of the test publisher.
struct SimLayer {
    rid: Rid,
    seq: u64,
    packets: u8,
    size: usize,
}

/// A str0m peer on the far side of the worker's socket.
struct Client {
    addr: SocketAddr,
    rtc: Rtc,
    connected: bool,
    next_timeout: Instant,
    got: Vec<Got>,
    keyframe_requests: usize,
    source: Option<Source>,
}

impl Client {
    fn new(port: u16, now: Instant) -> Client {
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
    fn offer(&mut self, dir: Direction, rids: &[&str]) -> (String, SdpPendingOffer, Mid, Mid) {
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

    fn video_ssrc(&self) -> Option<Ssrc> {
        self.got.iter().find(|g| g.video).map(|g| g.ssrc)
    }

    fn seqs(&self, video: bool) -> Vec<u64> {
        self.got
            .iter()
            .filter(|g| g.video == video)
            .map(|g| g.seq)
            .collect()
    }

    /// Polls the peer until it wants a timeout; its datagrams go on the wire.
    fn poll(&mut self, now: Instant, wire: &mut Wire) {
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

    fn on_event(&mut self, e: Event, _now: Instant) {
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
    fn send_media(&mut self, now: Instant) {
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

    fn wake(&self) -> Instant {
        match &self.source {
            Some(s) if self.connected => self.next_timeout.min(s.next_video).min(s.next_audio),
            _ => self.next_timeout,
        }
    }
}

/// Writes one VP8 frame of `parts` packets (sizes from `size` by part) on `tx`; each payload
/// ends in the `layer` it belongs to, so a viewer can tell which layer it receives.
#[allow(clippy::too_many_arguments)]
fn write_frame(
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
fn vp8_keyframe_start(payload: &[u8]) -> bool {
    payload.len() > 6 && payload[0] & 0x10 != 0 && payload[0] & 0x07 == 0 && payload[6] & 0x01 == 0
}

/// A datagram the network drops, by destination and contents.
type DropRule = Box<dyn FnMut(SocketAddr, &[u8]) -> bool>;

/// Datagrams in flight: (source, destination, contents).
type Wire = VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>;

/// One node's media worker: its core and what it shares with the node.
struct Node {
    addr: SocketAddr,
    core: WorkerCore,
    shared: Arc<Shared>,
    /// The worker's media queue: packets and keyframe requests from the node's other workers.
    media: mpsc::Receiver<Command>,
}

impl Node {
    /// A node with one worker at `addr`.
    fn new(addr: SocketAddr, now: Instant) -> Node {
        Node::workers(&[addr], now).pop().expect("one worker")
    }

    /// The workers of one node, without an archive tap or lifecycle listener.
    fn workers(addrs: &[SocketAddr], now: Instant) -> Vec<Node> {
        Node::workers_with(addrs, now, None, None)
    }

    /// The workers of one node (one per address, sharing the node's registry and metrics).
    fn workers_with(
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

    fn stream(&self, name: &str) -> Arc<crate::stream::StreamShared> {
        self.shared
            .registry
            .streams()
            .into_iter()
            .find(|s| s.name == name)
            .expect("stream exists")
    }
}

/// Worker cores (one per node), their peers on the far side, and the virtual clock.
struct World {
    now: Instant,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    wire: Wire,
    drop_rule: Option<DropRule>,
    dropped: usize,
    /// A bottleneck in front of one address: its capacity in bits per second. Datagrams to it
    /// queue behind each other and are dropped when they would wait over [`LINK_QUEUE`].
    link: Option<(SocketAddr, u64)>,
    /// When the bottleneck has sent everything queued so far.
    link_free: Instant,
    /// Datagrams crossing the bottleneck: (arrival, source, destination, contents).
    in_link: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
}

impl World {
    /// One node at [`SFU`].
    fn new() -> World {
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
    fn two_workers() -> World {
        let mut w = World::new();
        w.nodes = Node::workers(&[SFU, SocketAddr::new(SFU.ip(), SFU.port() + 1)], w.now);
        w
    }

    /// Another node, its worker at `port`.
    fn add_node(&mut self, port: u16) -> usize {
        self.nodes
            .push(Node::new(SocketAddr::new(SFU.ip(), port), self.now));
        self.nodes.len() - 1
    }

    fn add_client(&mut self, port: u16) -> usize {
        self.clients.push(Client::new(port, self.now));
        self.clients.len() - 1
    }

    /// The first node's worker core.
    fn core(&mut self) -> &mut WorkerCore {
        &mut self.nodes[0].core
    }

    /// What the first node shares.
    fn shared(&self) -> &Shared {
        &self.nodes[0].shared
    }

    /// Puts a core's datagrams on the wire.
    fn send(&mut self, node: usize, out: Outbox) {
        let from = self.nodes[node].addr;
        self.wire
            .extend(out.0.into_iter().map(|(to, data)| (from, to, data)));
    }

    /// Hands node `node`'s core a command and delivers what it sends.
    fn command(&mut self, node: usize, cmd: Command) {
        let mut out = Outbox::default();
        self.nodes[node]
            .core
            .handle_command(self.now, cmd, &mut out);
        self.send(node, out);
        self.pump();
    }

    /// Sends a session command to node `node`'s core and returns its answer.
    fn ask<T>(
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
    fn publish(
        &mut self,
        c: usize,
        stream: &str,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.publish_as(c, stream, false)
    }

    /// Client `c` publishes `stream` as its primary or (`backup`) its backup publisher.
    fn publish_as(
        &mut self,
        c: usize,
        stream: &str,
        backup: bool,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.publish_with(c, stream, backup, &[])
    }

    /// Client `c` publishes `stream`, its video as the simulcast `layers` (rid, packets per
    /// frame, packet size) when any.
    fn publish_with(
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
    fn subscribe(
        &mut self,
        c: usize,
        stream: &str,
    ) -> (SessionId, broadcast::Receiver<SessionEvent>) {
        self.subscribe_on(0, c, stream)
    }

    /// Client `c` watches `stream` on node `node`; returns the session and its events.
    fn subscribe_on(
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
    fn relay(&mut self, up: usize, down: usize, stream: &str) -> (SessionId, SessionId) {
        let (in_id, in_entry) = self.nodes[down]
            .shared
            .registry
            .admit_limited(stream, Role::RelayIn, 0, 100, 100)
            .expect("relay in admitted");
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
                reply,
            })
            .expect("relay served");
        let claim = self.nodes[down]
            .shared
            .registry
            .claim_feed(in_id)
            .expect("relay claims the stream");
        assert_eq!(claim, crate::stream::Claim::Feed);
        let answer = SdpAnswer::from_sdp_string(&answer).expect("relay answer parses");
        self.ask(down, |reply| Command::RelayAnswer {
            id: in_id,
            answer,
            standby: false,
            reply,
        })
        .expect("relay answer applied");
        (in_id, out_id)
    }

    /// Delivers the datagrams on the wire (unless the network drops them) until none is left;
    /// each client is polled after each datagram, as str0m in RTP mode wants. True when any
    /// datagram moved.
    fn pump(&mut self) -> bool {
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
                && rule(to, &data)
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
    fn turn(&mut self) {
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
    fn run_for(&mut self, d: Duration) {
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
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
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
    fn stream(&self, name: &str) -> Arc<crate::stream::StreamShared> {
        self.nodes[0].stream(name)
    }
}

/// Every event waiting on a session's channel.
fn drain(rx: &mut broadcast::Receiver<SessionEvent>) -> Vec<SessionEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Whether `seqs` (in arrival order) run one by one without a gap or repeat.
fn consecutive(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[1] == w[0] + 1)
}

/// A publisher and a viewer connected through the core, media flowing.
fn publisher_and_viewer() -> (World, usize, usize, SessionId, SessionId) {
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

#[test]
fn viewer_connects_and_receives_video_and_audio_with_continuous_sequence_numbers() {
    let mut w = World::new();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    let (_, mut pub_events) = w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects (ICE and DTLS)"
    );
    assert!(drain(&mut pub_events).contains(&SessionEvent::Connected));
    w.run_for(Duration::from_millis(200));
    let stream = w.stream("live");
    assert!(stream.is_live());
    assert!(
        stream.layers[0].packets.load(Ordering::Relaxed) > 0,
        "the core counts the publisher's video"
    );

    let (_, mut view_events) = w.subscribe(v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects (ICE and DTLS)"
    );
    w.run_for(Duration::from_secs(2));
    let events = drain(&mut view_events);
    assert!(events.contains(&SessionEvent::Connected), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SessionEvent::Layer { .. })),
        "the viewer is told its layer: {events:?}"
    );

    let viewer = &w.clients[v];
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    // Two seconds at 30 frames of two packets, and 50 audio packets a second.
    assert!(video.len() > 100, "video packets received: {}", video.len());
    assert!(audio.len() > 80, "audio packets received: {}", audio.len());
    assert!(
        consecutive(&video),
        "video sequence numbers run on without gaps: {video:?}"
    );
    assert!(
        consecutive(&audio),
        "audio sequence numbers run on without gaps: {audio:?}"
    );
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    // str0m reports audio less often than video: give it a few seconds.
    w.run_for(Duration::from_secs(5));
    for (video, kind) in [(true, "video"), (false, "audio")] {
        assert!(
            w.clients[v]
                .got
                .iter()
                .any(|g| g.video == video && g.after_sender_report),
            "the node sends the viewer sender reports for its {kind}"
        );
    }
    let m = &w.shared().metrics;
    assert!(m.ingress_packets.load(Ordering::Relaxed) > 0);
    assert_eq!(m.dropped_unrecognised.load(Ordering::Relaxed), 0);
}

#[test]
fn viewer_pli_reaches_the_publisher_through_the_throttle() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    let ssrc = w.clients[v].video_ssrc().expect("viewer receives video");
    let before = w.clients[p].keyframe_requests;
    let upstream_before = stream
        .counters
        .upstream_keyframe_requests
        .load(Ordering::Relaxed);
    // Two PLIs 10 ms apart: the first goes upstream, the second waits for the throttle's
    // interval and is then answered by the keyframe the first asked for.
    for _ in 0..2 {
        let mut api = w.clients[v].rtc.direct_api();
        api.stream_rx(&ssrc)
            .expect("viewer's video stream")
            .request_keyframe(KeyframeRequestKind::Pli);
        w.run_for(Duration::from_millis(10));
    }
    w.run_for(Duration::from_millis(100));
    assert_eq!(
        w.clients[p].keyframe_requests,
        before + 1,
        "one keyframe request reaches the publisher at once"
    );
    w.run_for(Duration::from_secs(1));
    assert_eq!(
        w.clients[p].keyframe_requests,
        before + 1,
        "the held request is answered by the keyframe, not sent"
    );
    assert_eq!(
        stream
            .counters
            .upstream_keyframe_requests
            .load(Ordering::Relaxed),
        upstream_before + 1
    );
    assert!(
        stream
            .counters
            .viewer_keyframe_requests
            .load(Ordering::Relaxed)
            >= 2,
        "both PLIs are counted"
    );
}

#[test]
fn a_lost_packet_is_nacked_by_the_viewer_and_retransmitted() {
    let (mut w, _, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let ssrc = w.clients[v].video_ssrc().expect("viewer receives video");
    let last = *w.clients[v].seqs(true).last().expect("video");
    // Drop the video packet 20 after the last one received, once.
    let lost = (last + 20) as u16;
    let viewer = w.clients[v].addr;
    let mut armed = true;
    w.drop_rule = Some(Box::new(move |to, data| {
        let rtp = data.len() >= 12 && data[0] >> 6 == 2 && !(192..=223).contains(&data[1]);
        let hit = armed
            && to == viewer
            && rtp
            && u32::from_be_bytes([data[8], data[9], data[10], data[11]]) == *ssrc
            && u16::from_be_bytes([data[2], data[3]]) == lost;
        if hit {
            armed = false;
        }
        hit
    }));
    w.run_for(Duration::from_secs(3));
    assert_eq!(w.dropped, 1, "the network dropped the packet");
    let got = w.clients[v].seqs(true);
    let first_at = got
        .iter()
        .position(|s| *s as u16 == lost)
        .expect("the lost packet arrives by retransmission");
    assert!(
        got[..first_at]
            .iter()
            .any(|s| *s as u16 == lost.wrapping_add(1)),
        "it arrives after later packets: a retransmission"
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert!(consecutive(&sorted), "nothing is missing once repaired");
    assert!(
        w.stream("live")
            .counters
            .viewer_nacks
            .load(Ordering::Relaxed)
            > 0,
        "the viewer's NACK is counted"
    );
}

#[test]
fn a_later_viewer_starts_from_the_cached_keyframe() {
    let (mut w, p, _, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    let requests = w.clients[p].keyframe_requests;
    let starts = stream.counters.cached_starts.load(Ordering::Relaxed);
    let v2 = w.add_client(6003);
    let (_, _) = w.subscribe(v2, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v2].connected),
        "second viewer connects"
    );
    w.run_for(Duration::from_millis(300));
    assert_eq!(
        stream.counters.cached_starts.load(Ordering::Relaxed),
        starts + 1,
        "started from the cache"
    );
    assert_eq!(
        w.clients[p].keyframe_requests, requests,
        "the publisher was not asked for a keyframe"
    );
    let second = &w.clients[v2];
    let first_video = second
        .got
        .iter()
        .find(|g| g.video)
        .expect("second viewer receives video");
    assert!(
        first_video.keyframe_start,
        "its first video packet starts a keyframe"
    );
    let video = second.seqs(true);
    assert!(
        consecutive(&video),
        "cached and live packets run on: {video:?}"
    );
    assert_eq!(w.core().peer_count(), 3);
}

#[test]
fn removing_the_publisher_ends_its_session_and_tells_the_viewers() {
    let (mut w, _, v, pub_id, view_id) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    let mut pub_events = w
        .shared()
        .registry
        .session(pub_id)
        .expect("publisher session")
        .events
        .subscribe();
    let mut view_events = w
        .shared()
        .registry
        .session(view_id)
        .expect("viewer session")
        .events
        .subscribe();
    let (done, mut done_rx) = oneshot::channel();
    w.command(
        0,
        Command::Close {
            id: pub_id,
            done: Some(done),
        },
    );
    assert!(done_rx.try_recv().is_ok(), "the close is confirmed");
    assert!(drain(&mut pub_events).contains(&SessionEvent::Closed));
    assert!(drain(&mut view_events).contains(&SessionEvent::Publisher { live: false }));
    assert!(w.shared().registry.session(pub_id).is_none());
    assert!(!stream.is_live());
    assert_eq!(w.core().peer_count(), 1);
    let received = w.clients[v].got.len();
    w.run_for(Duration::from_millis(500));
    assert_eq!(
        w.clients[v].got.len(),
        received,
        "no media after the publisher left"
    );
    // Closing the viewer ends its session too.
    w.command(
        0,
        Command::Close {
            id: view_id,
            done: None,
        },
    );
    assert!(drain(&mut view_events).contains(&SessionEvent::Closed));
    assert_eq!(w.core().peer_count(), 0);
    assert_eq!(w.shared().worker_load[0].load(Ordering::Relaxed), 0);
}

#[test]
fn a_backup_publisher_takes_over_a_stalled_primary_and_hands_back() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    let b = w.add_client(6004);
    w.publish_as(b, "live", true);
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[b].connected),
        "backup connects"
    );
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    assert_eq!(stream.backup_state(), Some(false), "the backup stands by");
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        0
    );

    // The primary stalls: after two seconds the backup feeds the stream.
    w.clients[p].source.as_mut().expect("publisher").paused = true;
    w.run_for(Duration::from_millis(1500));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        0,
        "not before the stall bound"
    );
    let before = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_millis(1500));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        1,
        "switched to the backup"
    );
    assert_eq!(
        stream.backup_state(),
        Some(true),
        "the backup feeds the stream"
    );
    assert!(
        w.clients[b].keyframe_requests > 0,
        "the backup is asked for a keyframe"
    );
    assert!(
        w.clients[v].seqs(true).len() > before + 20,
        "the viewer gets the backup's video"
    );

    // The primary sends again: after a steady second it takes over at its next keyframe.
    w.clients[p].source.as_mut().expect("publisher").paused = false;
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        w.shared().metrics.source_switches.load(Ordering::Relaxed),
        2,
        "switched back to the primary"
    );
    assert_eq!(stream.backup_state(), Some(false));
    let video = w.clients[v].seqs(true);
    assert!(
        consecutive(&video),
        "the viewer's video runs on across both switches: {video:?}"
    );
    let audio = w.clients[v].seqs(false);
    assert!(consecutive(&audio), "and so does its audio");
}

#[test]
fn a_relay_carries_the_stream_to_a_viewer_on_another_node() {
    let mut w = World::new();
    let edge = w.add_node(5001);
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_millis(200));
    w.relay(0, edge, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.nodes[1].stream("live").layers
            [0]
        .packets
        .load(Ordering::Relaxed)
            > 0),
        "the edge receives the stream's video over the relay"
    );
    assert_eq!(
        w.stream("live").relay_children.load(Ordering::Relaxed),
        1,
        "the origin counts its relay child"
    );
    assert!(
        w.nodes[edge].stream("live").is_live(),
        "the relay feeds the stream on the edge"
    );
    w.subscribe_on(edge, v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects to the edge"
    );
    w.run_for(Duration::from_secs(2));
    let viewer = &w.clients[v];
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    assert!(
        video.len() > 80,
        "video packets received over the relay: {}",
        video.len()
    );
    assert!(
        audio.len() > 60,
        "audio packets received over the relay: {}",
        audio.len()
    );
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    assert!(
        consecutive(&video),
        "video sequence numbers run on: {video:?}"
    );
    assert!(
        consecutive(&audio),
        "audio sequence numbers run on: {audio:?}"
    );
}

#[test]
fn a_viewer_whose_send_queue_backs_up_skips_to_the_next_keyframe() {
    let (mut w, p, v, _, _) = publisher_and_viewer();
    w.run_for(Duration::from_millis(500));
    let stream = w.stream("live");
    assert_eq!(stream.counters.congestion_skips.load(Ordering::Relaxed), 0);
    // A 2 Mbit/s bottleneck to the viewer holds its estimate down, and the publisher's frames
    // grow to 40 packets of 1100 bytes, about 10 Mbit/s: the viewer's pacer cannot keep up.
    w.link = Some((w.clients[v].addr, 2_000_000));
    w.clients[p]
        .source
        .as_mut()
        .expect("publisher")
        .packets_per_frame = 40;
    assert!(
        w.run_until(Duration::from_secs(10), |_| stream
            .counters
            .congestion_skips
            .load(Ordering::Relaxed)
            > 0),
        "the viewer's video skips ahead once its oldest queued packet waited past 300 ms"
    );
    let received = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_secs(1));
    assert!(
        w.clients[v].seqs(true).len() > received,
        "and goes on from a keyframe"
    );
}

#[cfg(debug_assertions)]
#[test]
fn a_panicking_session_is_dropped_and_the_core_pauses_new_sessions_then_recovers() {
    let (mut w, _, v, pub_id, view_id) = publisher_and_viewer();
    let faulty = w.add_client(6005);
    let (faulty_id, _) = w.publish(faulty, super::FAULT_INJECTION_STREAM);
    w.nodes[0].core.inject_faults = true;
    // The faulty session's next drive panics; the shell catches it and hands it to the core.
    let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        w.run_for(Duration::from_secs(1))
    }));
    let payload = turn.expect_err("the injected fault panics");
    let now = w.now;
    w.nodes[0].core.recover(payload.as_ref(), now);
    w.nodes[0].core.inject_faults = false;
    w.wire.clear();
    // Its peer on the far side has nobody to talk to any more.
    w.clients.truncate(faulty);
    let m = &w.shared().metrics;
    assert_eq!(m.worker_panics.load(Ordering::Relaxed), 1);
    assert!(
        !w.shared().worker_healthy[0].load(Ordering::Relaxed),
        "the worker takes no new sessions for a while"
    );
    assert!(
        w.shared().registry.session(faulty_id).is_none(),
        "the session that panicked is gone"
    );
    assert_eq!(w.core().peer_count(), 2, "the other sessions stay");

    let received = w.clients[v].seqs(true).len();
    w.run_for(Duration::from_secs(1));
    assert!(
        w.clients[v].seqs(true).len() > received + 30,
        "the viewer keeps receiving"
    );

    w.command(
        0,
        Command::Close {
            id: view_id,
            done: None,
        },
    );
    w.command(
        0,
        Command::Close {
            id: pub_id,
            done: None,
        },
    );
    w.run_for(super::PANIC_QUARANTINE);
    assert!(
        w.shared().worker_healthy[0].load(Ordering::Relaxed),
        "the worker takes sessions again after the quarantine"
    );
}

#[test]
fn a_viewers_simulcast_layer_follows_its_bandwidth_estimate() {
    let mut w = World::new();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    // About 100 kbit/s, 500 kbit/s and 2.6 Mbit/s.
    let layers = [("q", 1, 400), ("h", 2, 1000), ("f", 10, 1100)];
    w.publish_with(p, "live", false, &layers);
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_secs(1));
    let stream = w.stream("live");
    assert!(
        stream.simulcast.load(Ordering::Relaxed),
        "the stream is simulcast"
    );
    for l in &stream.layers {
        assert!(l.active.load(Ordering::Relaxed), "every layer arrives");
    }
    let (_, mut events) = w.subscribe(v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects"
    );
    let recent = |w: &World, f: fn(u8) -> bool| {
        let got = &w.clients[v].got;
        got.iter().filter(|g| g.video).count() > 10
            && got
                .iter()
                .rev()
                .filter(|g| g.video)
                .take(10)
                .all(|g| f(g.layer))
    };
    assert!(
        w.run_until(Duration::from_secs(3), |w| recent(w, |l| l == 2)),
        "on an open path the viewer receives the top layer"
    );
    // A 1.2 Mbit/s bottleneck to the viewer: its estimate falls below the top layer and the
    // viewer gets a lower one.
    w.link = Some((w.clients[v].addr, 1_200_000));
    assert!(
        w.run_until(Duration::from_secs(15), |w| recent(w, |l| l < 2)),
        "the viewer moves down once its estimate drops"
    );
    // The bottleneck widens: transport-wide feedback raises the estimate and the viewer climbs
    // back to the top layer.
    w.link = Some((w.clients[v].addr, 20_000_000));
    assert!(
        w.run_until(Duration::from_secs(40), |w| recent(w, |l| l == 2)),
        "the viewer climbs back as its estimate grows"
    );
    // Layer events go out with the viewer's next housekeeping.
    w.run_for(Duration::from_millis(300));
    let rids: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            SessionEvent::Layer { rid: Some(r), .. } => Some(r),
            _ => None,
        })
        .collect();
    assert!(
        rids.iter().any(|r| r != "f"),
        "the viewer is told of the lower layer: {rids:?}"
    );
    assert_eq!(
        rids.last().map(String::as_str),
        Some("f"),
        "and then of the top layer: {rids:?}"
    );
    assert!(stream.counters.layer_switches.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_viewer_on_another_worker_gets_the_stream_through_the_media_queue() {
    let mut w = World::two_workers();
    let p = w.add_client(6001);
    let v = w.add_client(6002);
    w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_millis(400));
    let stream = w.stream("live");
    let requests = w.clients[p].keyframe_requests;
    let (_, _) = w.subscribe_on(1, v, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[v].connected),
        "viewer connects to the second worker"
    );
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        stream.worker_mask.load(Ordering::Relaxed),
        0b10,
        "the stream has viewers on the second worker only"
    );
    assert_eq!(
        stream.counters.cached_starts.load(Ordering::Relaxed),
        1,
        "started from the first worker's cached keyframe"
    );
    assert_eq!(
        w.clients[p].keyframe_requests, requests,
        "the publisher was not asked for a keyframe"
    );
    let viewer = &w.clients[v];
    assert!(
        viewer
            .got
            .iter()
            .find(|g| g.video)
            .is_some_and(|g| g.keyframe_start),
        "video starts on a keyframe"
    );
    let video = viewer.seqs(true);
    let audio = viewer.seqs(false);
    assert!(
        video.len() > 100 && audio.len() > 80,
        "video {} and audio {} packets",
        video.len(),
        audio.len()
    );
    assert!(consecutive(&video), "video runs on: {video:?}");
    assert!(consecutive(&audio), "audio runs on: {audio:?}");
    assert_eq!(
        w.shared().metrics.dropped_handoff.load(Ordering::Relaxed),
        0
    );
}

#[test]
fn the_archive_tap_and_lifecycle_hear_a_publisher_start_and_end_even_when_the_tap_is_full() {
    use crate::lifecycle::StreamLifecycle;
    use crate::tap::TapEvent;
    let mut w = World::new();
    // A tap that holds eight events and is not read meanwhile: packets past it are dropped, the
    // publisher's start and end are not.
    let (tap, mut tapped) = mpsc::channel(8);
    let (lifecycle, mut lifecycle_rx) = crate::lifecycle::channel();
    w.nodes = Node::workers_with(&[SFU], w.now, Some(tap), Some(lifecycle));
    let p = w.add_client(6001);
    let (id, _) = w.publish(p, "live");
    assert!(
        w.run_until(Duration::from_secs(3), |w| w.clients[p].connected),
        "publisher connects"
    );
    w.run_for(Duration::from_secs(1));
    w.command(0, Command::Close { id, done: None });
    assert!(
        w.shared().metrics.dropped_tap.load(Ordering::Relaxed) > 0,
        "packets past the tap's room are dropped"
    );
    let mut events = Vec::new();
    while let Ok(e) = tapped.try_recv() {
        events.push(e);
    }
    // The end waited for room: it goes out once the tap was read.
    w.run_for(Duration::from_millis(100));
    while let Ok(e) = tapped.try_recv() {
        events.push(e);
    }
    let Some(TapEvent::Started {
        stream, generation, ..
    }) = events.first()
    else {
        panic!("the tap hears the start first: {events:?}")
    };
    assert_eq!(stream, "live");
    let generation = *generation;
    assert!(
        matches!(events.last(), Some(TapEvent::Ended { generation: g, .. }) if *g == generation),
        "and the end last"
    );
    assert_eq!(events.len(), 9, "seven packets fit between them");
    assert_eq!(
        lifecycle_rx.try_recv().ok(),
        Some(StreamLifecycle::Started {
            stream: "live".into(),
            generation
        })
    );
    assert_eq!(
        lifecycle_rx.try_recv().ok(),
        Some(StreamLifecycle::Ended {
            stream: "live".into(),
            generation
        })
    );
}
