//! The Bitswap server against a minimal Bitswap client on a second swarm (TCP + noise + yamux):
//! blocks, HAVE and DONT_HAVE answers, 1.0.0 peers, large blocks across messages, and garbage
//! input that must not stop the server, and bursts of wantlist streams (one stream per message,
//! as Helia sends them) that must all be answered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, noise, tcp, yamux};
use relaycast_mesh::bitswap::ledger::prefix;
use relaycast_mesh::bitswap::message::{self, Entry, Message, Presence, WantType, Wantlist};
use relaycast_mesh::{BlockProvider, Cid, Mesh};

const WAIT: Duration = Duration::from_secs(10);

struct MemBlocks(HashMap<Cid, Vec<u8>>);

impl BlockProvider for MemBlocks {
    fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.0.get(cid).cloned()
    }
    fn has(&self, cid: &Cid) -> bool {
        self.0.contains_key(cid)
    }
}

fn cid_of(n: u8) -> Cid {
    let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[n; 32]).expect("multihash");
    Cid::new_v1(0x55, mh)
}

/// A Bitswap client: sends wantlists on streams it opens, reads answers on a stream the server opens.
struct Client {
    control: libp2p_stream::Control,
    server: PeerId,
    protocol: StreamProtocol,
    incoming: libp2p_stream::IncomingStreams,
    inbox: Option<(Stream, Vec<u8>)>,
}

impl Client {
    async fn connect(addr: &Multiaddr, server: PeerId, protocol: &'static str) -> Client {
        let mut control = connected_control(addr, server).await;
        let protocol = StreamProtocol::new(protocol);
        let incoming = control.accept(protocol.clone()).expect("accept");
        Client {
            control,
            server,
            protocol,
            incoming,
            inbox: None,
        }
    }

    /// Opens a new stream and writes raw bytes on it.
    async fn send_raw(&mut self, bytes: &[u8]) {
        let mut s = tokio::time::timeout(
            WAIT,
            self.control.open_stream(self.server, self.protocol.clone()),
        )
        .await
        .expect("open in time")
        .expect("open stream");
        if let Err(e) = s.write_all(bytes).await {
            panic!(
                "write of {} bytes starting {:02x?}: {e}",
                bytes.len(),
                &bytes[..bytes.len().min(4)]
            );
        }
        s.close().await.expect("close");
    }

    async fn want(&mut self, entries: Vec<Entry>) {
        let msg = Message {
            wantlist: Some(Wantlist {
                entries,
                full: false,
            }),
            ..Default::default()
        };
        self.send_raw(&message::frame(&msg)).await;
    }

    /// The next answer message (bounded wait).
    async fn next(&mut self) -> Message {
        tokio::time::timeout(WAIT, async {
            if self.inbox.is_none() {
                let (peer, s) = self.incoming.next().await.expect("answer stream");
                assert_eq!(peer, self.server);
                self.inbox = Some((s, Vec::new()));
            }
            let (s, buf) = self.inbox.as_mut().expect("inbox");
            loop {
                if let Some((body, used)) =
                    message::split_frame(buf, message::MAX_MESSAGE).expect("frame")
                {
                    let m = Message::decode(body).expect("decode");
                    buf.drain(..used);
                    return m;
                }
                let mut chunk = vec![0u8; 65536];
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "answer stream ended");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("answer in time")
    }
}

/// A second swarm (TCP + noise + yamux + raw streams) connected to `server`; returns its stream control.
async fn connected_control(addr: &Multiaddr, server: PeerId) -> libp2p_stream::Control {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let control = swarm.behaviour().new_control();
    swarm.dial(addr.clone()).expect("dial");
    tokio::time::timeout(WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
                && peer_id == server
            {
                break;
            }
        }
    })
    .await
    .expect("connected in time");
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    control
}

fn want(cid: &Cid, want_type: WantType, send_dont_have: bool) -> Entry {
    Entry {
        cid: cid.to_bytes(),
        priority: 1,
        cancel: false,
        want_type,
        send_dont_have,
    }
}

async fn server(blocks: HashMap<Cid, Vec<u8>>) -> (Mesh, Multiaddr) {
    let mut c = config("bitswap");
    c.blocks = Some(Arc::new(MemBlocks(blocks)));
    let (m, _events) = start(c).await;
    let addr = addrs(&m).await.remove(0);
    (m, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_blocks_haves_and_dont_haves() {
    let (a, b, c, d) = (cid_of(1), cid_of(2), cid_of(3), cid_of(4));
    let blocks = HashMap::from([(a, b"block a".to_vec()), (b, vec![7u8; 5000])]);
    let (mesh, addr) = server(blocks).await;
    let mut client = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;

    client
        .want(vec![
            want(&a, WantType::Block, true),
            want(&b, WantType::Have, true),
            want(&c, WantType::Block, true),
            want(&d, WantType::Block, false),
        ])
        .await;
    // Then a marker: its presence answer comes after the first message's presences (a block's
    // data is read off the store and may follow it).
    client
        .want(vec![want(&cid_of(9), WantType::Have, true)])
        .await;

    let mut payload = Vec::new();
    let mut presences = Vec::new();
    // Each read waits at most WAIT; a missing answer fails the test there.
    while payload.is_empty()
        || !presences
            .iter()
            .any(|p: &message::BlockPresence| p.cid == cid_of(9).to_bytes())
    {
        let m = client.next().await;
        assert!(m.blocks.is_empty(), "1.2.0 answers carry prefixed blocks");
        payload.extend(m.payload);
        presences.extend(m.block_presences);
    }
    assert_eq!(payload.len(), 1);
    assert_eq!(payload[0].data, b"block a");
    assert_eq!(payload[0].prefix, prefix(&a));
    let have: Vec<_> = presences
        .iter()
        .filter(|p| p.presence == Presence::Have)
        .map(|p| p.cid.clone())
        .collect();
    let dont: Vec<_> = presences
        .iter()
        .filter(|p| p.presence == Presence::DontHave)
        .map(|p| p.cid.clone())
        .collect();
    assert_eq!(have, vec![b.to_bytes()]);
    assert_eq!(
        dont,
        vec![c.to_bytes(), cid_of(9).to_bytes()],
        "nothing for a miss without send_dont_have"
    );

    let stats = mesh.bitswap_stats().expect("bitswap on");
    assert_eq!(stats.blocks_sent, 1);
    assert_eq!(stats.messages_received, 2);
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blocks_span_messages_and_old_versions_get_plain_blocks() {
    let big: Vec<(Cid, Vec<u8>)> = (0..4u8)
        .map(|i| (cid_of(10 + i), vec![i; 1024 * 1024 + 100]))
        .collect();
    let (mesh, addr) = server(big.iter().cloned().collect()).await;

    let mut v12 = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;
    v12.want(
        big.iter()
            .map(|(c, _)| want(c, WantType::Block, true))
            .collect(),
    )
    .await;
    let mut got = Vec::new();
    let mut messages = 0;
    while got.len() < big.len() {
        let m = v12.next().await;
        messages += 1;
        assert!(message::frame(&m).len() <= message::MAX_MESSAGE);
        got.extend(m.payload.into_iter().map(|b| b.data));
    }
    assert!(
        messages >= 2,
        "4 MiB of blocks are split over several messages"
    );
    for (_, data) in &big {
        assert!(got.contains(data));
    }

    let mut v10 = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.0.0").await;
    v10.want(vec![want(&big[0].0, WantType::Block, false)])
        .await;
    let m = v10.next().await;
    assert!(m.payload.is_empty() && m.block_presences.is_empty());
    assert_eq!(m.blocks, vec![big[0].1.clone()]);
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_dropped_and_the_server_keeps_serving() {
    let a = cid_of(1);
    let (mesh, addr) = server(HashMap::from([(a, b"still here".to_vec())])).await;
    let mut client = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;

    // A length prefix far over the limit, a malformed protobuf, an overlong varint.
    let mut huge = Vec::new();
    message::put_varint(&mut huge, 64 * 1024 * 1024);
    huge.extend_from_slice(&[0u8; 100]);
    client.send_raw(&huge).await;
    client.send_raw(&[0x05, 0x0a, 0x7f, 0x01, 0x02, 0x03]).await;
    client.send_raw(&[0xff; 12]).await;
    // Entries with undecodable CIDs are skipped.
    client
        .want(vec![Entry {
            cid: vec![0xde, 0xad],
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: true,
        }])
        .await;

    client.want(vec![want(&a, WantType::Block, true)]).await;
    let m = client.next().await;
    assert_eq!(m.payload.len(), 1);
    assert_eq!(m.payload[0].data, b"still here");
    let stats = mesh.bitswap_stats().expect("bitswap on");
    assert!(stats.bad_messages >= 3, "bad messages counted: {stats:?}");
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_blocks_bitswap_is_off() {
    let (m, _e) = start(config("nobitswap")).await;
    assert!(m.bitswap_stats().is_none());
    let addr = addrs(&m).await.remove(0);
    let mut control = connected_control(&addr, m.peer_id()).await;
    let r = tokio::time::timeout(
        WAIT,
        control.open_stream(m.peer_id(), StreamProtocol::new("/ipfs/bitswap/1.2.0")),
    )
    .await
    .expect("answer in time");
    assert!(
        matches!(
            r,
            Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(_))
        ),
        "a node without blocks does not speak bitswap"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wantlist_streams_is_answered_in_full() {
    let present: Vec<Cid> = (0..40u8).map(cid_of).collect();
    let blocks = present.iter().map(|c| (*c, c.to_bytes())).collect();
    let (mesh, addr) = server(blocks).await;
    let mut client = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;
    // Open every stream first, then write them all: the server sees them at once.
    let mut streams = Vec::new();
    for _ in 0..80 {
        let s = tokio::time::timeout(
            WAIT,
            client
                .control
                .open_stream(client.server, client.protocol.clone()),
        )
        .await
        .expect("open in time")
        .expect("open");
        streams.push(s);
    }
    let wanted: Vec<Cid> = (0..80u8).map(cid_of).collect();
    for (s, c) in streams.iter_mut().zip(&wanted) {
        let msg = Message {
            wantlist: Some(Wantlist {
                entries: vec![want(c, WantType::Block, true)],
                full: false,
            }),
            ..Default::default()
        };
        s.write_all(&message::frame(&msg)).await.expect("write");
    }
    for mut s in streams {
        s.close().await.expect("close");
    }
    let (mut blocks, mut dont) = (0, 0);
    while blocks + dont < wanted.len() {
        let m = client.next().await;
        blocks += m.payload.len();
        dont += m
            .block_presences
            .iter()
            .filter(|p| p.presence == Presence::DontHave)
            .count();
    }
    assert_eq!((blocks, dont), (40, 40));
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_only_server_refuses_a_peer_that_is_not_a_mesh_node() {
    let a = cid_of(1);
    let mut c = config("bitswap-mesh-only");
    c.blocks = Some(Arc::new(MemBlocks(HashMap::from([(a, b"block a".to_vec())]))));
    c.bitswap_mesh_only = true;
    let (mesh, _events) = start(c).await;
    let addr = addrs(&mesh).await.remove(0);
    let mut client = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;
    let msg = Message { wantlist: Some(Wantlist { entries: vec![want(&a, WantType::Block, true)], full: false }), ..Default::default() };
    let mut s = tokio::time::timeout(WAIT, client.control.open_stream(mesh.peer_id(), client.protocol.clone()))
        .await
        .expect("open in time")
        .expect("open stream");
    // The server drops the stream unread, so the write may fail: either way no answer comes.
    let _ = s.write_all(&message::frame(&msg)).await;
    let _ = s.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while mesh.bitswap_stats().expect("bitswap on").peers_refused == 0 {
        assert!(tokio::time::Instant::now() < deadline, "refusal not counted in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = tokio::time::timeout(Duration::from_millis(500), client.incoming.next()).await;
    assert!(answer.is_err(), "a peer that is not a mesh node got an answer");
    let stats = mesh.bitswap_stats().expect("bitswap on");
    assert_eq!((stats.blocks_sent, stats.messages_received), (0, 0));
    mesh.shutdown().await;
}

/// Blocks that can be added while the server runs, telling the server of each.
#[derive(Default)]
struct GrowingBlocks {
    blocks: std::sync::Mutex<HashMap<Cid, Vec<u8>>>,
    hook: std::sync::OnceLock<relaycast_mesh::bitswap::ArrivalHook>,
}

impl GrowingBlocks {
    fn add(&self, cid: Cid, data: Vec<u8>) {
        self.blocks.lock().unwrap().insert(cid, data);
        if let Some(h) = self.hook.get() {
            h(&cid);
        }
    }
}

impl BlockProvider for GrowingBlocks {
    fn get(&self, cid: &Cid) -> Option<Vec<u8>> {
        self.blocks.lock().unwrap().get(cid).cloned()
    }
    fn has(&self, cid: &Cid) -> bool {
        self.blocks.lock().unwrap().contains_key(cid)
    }
    fn on_arrival(&self, hook: relaycast_mesh::bitswap::ArrivalHook) -> bool {
        self.hook.set(hook).is_ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_want_for_a_block_that_does_not_exist_yet_is_answered_when_it_arrives() {
    let (live, cancelled, have) = (cid_of(1), cid_of(2), cid_of(3));
    let blocks = Arc::new(GrowingBlocks::default());
    let mut c = config("bitswap-patient");
    c.blocks = Some(blocks.clone());
    let (mesh, _events) = start(c).await;
    let addr = addrs(&mesh).await.remove(0);
    let mut client = Client::connect(&addr, mesh.peer_id(), "/ipfs/bitswap/1.2.0").await;

    client
        .want(vec![
            want(&live, WantType::Block, true),
            want(&cancelled, WantType::Block, false),
            want(&have, WantType::Have, false),
        ])
        .await;
    // DONT_HAVE at once where asked for; the wants stay.
    let first = client.next().await;
    assert_eq!(first.block_presences.len(), 1);
    assert_eq!(first.block_presences[0].cid, live.to_bytes());
    assert_eq!(first.block_presences[0].presence, Presence::DontHave);
    let deadline = tokio::time::Instant::now() + WAIT;
    while mesh.bitswap_stats().expect("bitswap on").wants_waiting < 3 {
        assert!(tokio::time::Instant::now() < deadline, "wants not kept waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancel = Entry { cid: cancelled.to_bytes(), priority: 1, cancel: true, want_type: WantType::Block, send_dont_have: false };
    client.want(vec![cancel]).await;
    while mesh.bitswap_stats().expect("bitswap on").wants_waiting > 2 {
        assert!(tokio::time::Instant::now() < deadline, "cancel not applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The blocks arrive: the live one and the HAVE go out; the cancelled one does not.
    blocks.add(cancelled, b"cancelled".to_vec());
    blocks.add(live, b"live segment".to_vec());
    blocks.add(have, b"have".to_vec());
    let mut payload = Vec::new();
    let mut presences = Vec::new();
    while payload.is_empty() || presences.is_empty() {
        let m = client.next().await;
        payload.extend(m.payload);
        presences.extend(m.block_presences);
    }
    assert_eq!(payload.len(), 1, "only the live block");
    assert_eq!(payload[0].data, b"live segment");
    assert_eq!(payload[0].prefix, prefix(&live));
    assert_eq!(presences.len(), 1);
    assert_eq!((presences[0].cid.clone(), presences[0].presence), (have.to_bytes(), Presence::Have));
    let stats = mesh.bitswap_stats().expect("bitswap on");
    assert_eq!((stats.answered_on_arrival, stats.wants_waiting), (2, 0));
    mesh.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_node_fetches_blocks_from_another_also_before_they_exist() {
    let never = cid_of(12);
    let real = |data: &[u8]| {
        use sha2::Digest as _;
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &sha2::Sha256::digest(data)).expect("multihash");
        Cid::new_v1(0x55, mh)
    };
    let (present_data, live_data) = (b"present block".to_vec(), b"a live segment, stored later".to_vec());
    let (present, live) = (real(&present_data), real(&live_data));
    let origin_blocks = Arc::new(GrowingBlocks::default());
    origin_blocks.add(present, present_data.clone());
    // Both serve mesh nodes only, as under --watch-auth: they are mesh nodes to each other.
    let mut ca = config("fetch-origin");
    ca.blocks = Some(origin_blocks.clone());
    ca.bitswap_mesh_only = true;
    let (a, _ea) = start(ca).await;
    let mut cb = config("fetch-relay");
    cb.blocks = Some(Arc::new(MemBlocks(HashMap::new())));
    cb.bitswap_mesh_only = true;
    cb.bootstrap = addrs(&a).await;
    let (b, _eb) = start(cb).await;
    let (pa, pb) = (a.peer_id(), b.peer_id());
    assert!(
        eventually(WAIT, || async { a.directory().nodes.contains_key(&pb) && b.directory().nodes.contains_key(&pa) }).await,
        "the nodes see each other's load reports"
    );

    let got = b.fetch_block(present, vec![pa], WAIT).await.expect("fetch a present block");
    assert_eq!(got, present_data);

    let fetching = tokio::spawn({
        let b = b.clone();
        async move { b.fetch_block(live, vec![pa], WAIT).await }
    });
    assert!(eventually(WAIT, || async { a.bitswap_stats().expect("on").wants_waiting == 1 }).await, "the want waits at the origin");
    origin_blocks.add(live, live_data.clone());
    let got = fetching.await.expect("join").expect("fetch a block stored after the want");
    assert_eq!(got, live_data);
    assert_eq!(a.bitswap_stats().expect("on").answered_on_arrival, 1);

    let stranger = PeerId::random();
    let r = b.fetch_block(never, vec![stranger], WAIT).await;
    assert_eq!(r, Err(relaycast_mesh::bitswap::fetch::FetchError::NotFound), "a provider that cannot be reached");
    let t0 = tokio::time::Instant::now();
    let r = b.fetch_block(never, vec![pa], Duration::from_millis(800)).await;
    assert_eq!(r, Err(relaycast_mesh::bitswap::fetch::FetchError::Timeout));
    assert!(t0.elapsed() < WAIT, "the deadline holds");
    assert!(eventually(WAIT, || async { a.bitswap_stats().expect("on").wants_waiting == 0 }).await, "the timed-out want is cancelled at the origin");
    a.shutdown().await;
    b.shutdown().await;
}
