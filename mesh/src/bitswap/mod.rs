//! A Bitswap server (1.2.0, also 1.1.0 and 1.0.0) so IPFS peers (kubo, Helia) fetch blocks
//! from this node by CID.
//!
//! Streams are used one way, as boxo and Helia do: a peer sends its wantlist on streams it
//! opens; answers go back on one stream this node opens to the peer (reused while it works).
//! Messages are unsigned-varint length-prefixed protobufs of at most [`message::MAX_MESSAGE`]
//! bytes. Lookups run on the blocking pool, one batch of 4 wants at a time per
//! peer; each peer has a bounded answer queue (about 8 MiB), and reading its wantlists
//! pauses while that queue is full, so a peer holds at most the queue, one lookup batch and its
//! unread wantlist messages in memory. Inbound streams are capped per peer and in total, and
//! at most [`READERS_TOTAL`] are read at once; the decoder caps entries, blocks and presences
//! per message as it decodes.
//!
//! The server is patient: a want it cannot answer yet waits (see [`pending`]) when the provider
//! reports new blocks ([`BlockProvider::on_arrival`]), and the block goes out when it arrives, as a
//! live segment wanted before it is cut needs. A DONT_HAVE asked for is still sent at once.
//!
//! The same node is a client: [`Server::fetch`] asks providers for a block (see [`fetch`] for the
//! policy) on streams it opens, and the answers come in on the streams the providers open, read
//! by the same readers as wantlists.

pub mod fetch;
pub mod ledger;
pub mod message;
pub mod pending;
pub mod streams;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use futures_util::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{Notify, Semaphore, mpsc};

use ledger::{Found, PeerQueue, Version};
use message::{Message, WantType};
use streams::{Control, Inbound};

/// A source of blocks served over Bitswap. Calls may block on disk; they run on the blocking pool.
pub trait BlockProvider: Send + Sync + 'static {
    /// The block's bytes, if present.
    fn get(&self, cid: &Cid) -> Option<Vec<u8>>;
    /// Whether the block is present.
    fn has(&self, cid: &Cid) -> bool;
    /// Registers `hook` to be told each block added from now on; false when the provider cannot
    /// (the server then answers only what is present when asked).
    fn on_arrival(&self, hook: ArrivalHook) -> bool {
        let _ = hook;
        false
    }
}

/// Told the CID of each block a [`BlockProvider`] gains.
pub type ArrivalHook = Arc<dyn Fn(&Cid) + Send + Sync>;

/// Arrivals buffered for the server before it rescans every waiting want instead.
const ARRIVALS_QUEUE: usize = 4096;
/// How often waiting wants are expired (and rescanned after missed arrivals).
const PENDING_TICK: Duration = Duration::from_secs(1);

impl std::fmt::Debug for dyn BlockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockProvider")
    }
}

/// Most answers queued per peer.
const QUEUE_ITEMS: usize = 256;
/// About the most block bytes queued per peer.
const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Most inbound wantlist streams held per peer (more are dropped).
const MAX_INBOUND_PER_PEER: usize = 256;
/// Most inbound streams of one peer read at once (the others wait their turn).
const READERS_PER_PEER: usize = 8;
/// Most inbound wantlist streams held across all peers (more are dropped).
pub const MAX_INBOUND_TOTAL: usize = 2048;
/// Most inbound streams read at once across all peers: each reader buffers at most one
/// [`message::MAX_MESSAGE`] frame and its decoded form, so reading holds at most about
/// `READERS_TOTAL * 2 * MAX_MESSAGE` bytes.
pub const READERS_TOTAL: usize = 32;
/// An inbound stream silent this long is dropped.
const READ_IDLE: Duration = Duration::from_secs(120);
/// Opening the answer stream or writing one message must finish within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);
/// A peer's writer with nothing to send for this long exits (and is restarted on demand).
const WRITER_IDLE: Duration = Duration::from_secs(60);
/// Wants looked up per trip to the blocking pool.
const LOOKUP_BATCH: usize = 4;

struct PeerSlot {
    queue: Mutex<Option<PeerQueue>>,
    /// Turns to read an inbound stream.
    readers: Semaphore,
    /// One lookup batch at a time per peer, so the queue overshoots its bound by one batch at most.
    lookup: tokio::sync::Mutex<()>,
    /// Wakes the writer when answers were queued.
    queued: Notify,
    /// Wakes readers when the queue has room again.
    room: Notify,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    version: Option<Version>,
    inbound: usize,
    writer: bool,
}

impl Default for PeerSlot {
    fn default() -> Self {
        PeerSlot {
            queue: Mutex::new(None),
            readers: Semaphore::new(READERS_PER_PEER),
            lookup: tokio::sync::Mutex::new(()),
            queued: Notify::new(),
            room: Notify::new(),
            state: Mutex::new(SlotState::default()),
        }
    }
}

impl PeerSlot {
    fn with_queue<R>(&self, f: impl FnOnce(&mut PeerQueue) -> R) -> R {
        let mut g = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        f(g.get_or_insert_with(|| PeerQueue::new(QUEUE_ITEMS, QUEUE_BYTES)))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of the server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Blocks sent.
    pub blocks_sent: u64,
    /// Block bytes sent.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Inbound streams dropped for malformed or oversized messages.
    pub bad_messages: u64,
    /// Inbound streams dropped because a per-peer or total limit was reached.
    pub streams_refused: u64,
    /// Inbound streams dropped because the peer is not one the server serves (see [`PeerGate`]).
    pub peers_refused: u64,
    /// Wants waiting for their block now.
    pub wants_waiting: u64,
    /// Waiting wants answered when their block arrived.
    pub answered_on_arrival: u64,
    /// Wants not kept waiting because a per-peer or total limit was reached.
    pub wants_not_kept: u64,
}

/// Which peers a Bitswap server answers; `None` answers every peer.
pub type PeerGate = std::sync::Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;

struct Inner {
    control: Control,
    provider: Arc<dyn BlockProvider>,
    gate: Option<PeerGate>,
    /// Whether the provider reports arrivals (so that missing wants may wait).
    patient: bool,
    pending: Mutex<pending::PendingWants>,
    /// Wants waiting, read by the arrival hook without the lock.
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    peers: Mutex<HashMap<PeerId, Arc<PeerSlot>>>,
    /// The client's fetches and who waits for each.
    fetches: Mutex<Fetches>,
    /// Wakes the client's driver.
    fetch_wake: Arc<Notify>,
    stats: Mutex<Stats>,
    /// Inbound streams held across all peers.
    inbound_total: std::sync::atomic::AtomicUsize,
    /// Turns to read an inbound stream, across all peers.
    readers: Semaphore,
}

/// Where a caller waiting for a block gets it.
type BlockWaiter = tokio::sync::oneshot::Sender<Result<Vec<u8>, fetch::FetchError>>;

/// The client's state: the core and the callers waiting for each block.
#[derive(Default)]
struct Fetches {
    core: fetch::Fetcher,
    waiters: HashMap<Cid, Vec<BlockWaiter>>,
}

/// Handle to a running Bitswap server.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// The behaviour carrying Bitswap streams, and the parts [`Server::spawn`] takes.
    pub fn behaviour() -> (streams::Behaviour, Control, mpsc::Receiver<Inbound>) {
        streams::new(
            [Version::V120, Version::V110, Version::V100]
                .iter()
                .map(|v| StreamProtocol::new(v.protocol()))
                .collect(),
        )
    }

    /// Serves blocks from `provider` on the inbound streams of the peers `gate` accepts (every
    /// peer without one); answers go out through `control`. Must be called inside a tokio runtime.
    pub fn spawn(
        control: Control,
        mut inbound: mpsc::Receiver<Inbound>,
        provider: Arc<dyn BlockProvider>,
        gate: Option<PeerGate>,
    ) -> Server {
        let waiting = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (arrived_tx, arrived_rx) = mpsc::channel::<Cid>(ARRIVALS_QUEUE);
        let missed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hook: ArrivalHook = {
            let (waiting, missed) = (waiting.clone(), missed.clone());
            Arc::new(move |cid: &Cid| {
                use std::sync::atomic::Ordering;
                if waiting.load(Ordering::Relaxed) > 0 && arrived_tx.try_send(*cid).is_err() {
                    missed.store(true, Ordering::Relaxed);
                }
            })
        };
        let patient = provider.on_arrival(hook);
        let inner = Arc::new(Inner {
            control,
            provider,
            gate,
            patient,
            pending: Mutex::new(pending::PendingWants::new()),
            waiting,
            peers: Mutex::new(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
            fetch_wake: Arc::new(Notify::new()),
            stats: Mutex::new(Stats::default()),
            inbound_total: std::sync::atomic::AtomicUsize::new(0),
            readers: Semaphore::new(READERS_TOTAL),
        });
        if patient {
            tokio::spawn(inner.clone().run_arrivals(arrived_rx, missed));
        }
        tokio::spawn(run_fetches(Arc::downgrade(&inner), inner.fetch_wake.clone()));
        let accept = inner.clone();
        tokio::spawn(async move {
            while let Some((peer, stream, protocol)) = inbound.recv().await {
                let version = match protocol.as_ref() {
                    "/ipfs/bitswap/1.0.0" => Version::V100,
                    "/ipfs/bitswap/1.1.0" => Version::V110,
                    _ => Version::V120,
                };
                accept.clone().on_inbound(peer, stream, version);
            }
        });
        Server { inner }
    }

    /// Fetches `cid` from `providers` (mesh peers this node is connected to, in order of
    /// preference) within `timeout`; the bytes are verified against the CID.
    pub async fn fetch(&self, cid: Cid, providers: Vec<PeerId>, timeout: Duration) -> Result<Vec<u8>, fetch::FetchError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut f = self.inner.fetches();
            f.waiters.entry(cid).or_default().push(tx);
            f.core.start(cid, providers, std::time::Instant::now() + timeout);
        }
        self.inner.fetch_wake.notify_one();
        rx.await.unwrap_or(Err(fetch::FetchError::Timeout))
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let mut s = *self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.wants_waiting = self.inner.waiting.load(std::sync::atomic::Ordering::Relaxed) as u64;
        s
    }
}

impl Inner {
    fn slot(&self, peer: PeerId) -> Arc<PeerSlot> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers.entry(peer).or_default().clone()
    }

    fn stat(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn on_inbound(self: Arc<Self>, peer: PeerId, stream: Stream, version: Version) {
        use std::sync::atomic::Ordering;
        if let Some(gate) = &self.gate
            && !gate(&peer)
        {
            self.stat(|s| s.peers_refused += 1);
            tracing::debug!(%peer, "bitswap stream from a peer that is not served; dropping it");
            return;
        }
        let held = self.inbound_total.fetch_add(1, Ordering::Relaxed);
        if held >= MAX_INBOUND_TOTAL {
            self.inbound_total.fetch_sub(1, Ordering::Relaxed);
            self.stat(|s| s.streams_refused += 1);
            tracing::debug!(%peer, "too many bitswap streams in total; dropping one");
            return;
        }
        let slot = self.slot(peer);
        {
            let mut st = slot.state();
            if st.inbound >= MAX_INBOUND_PER_PEER {
                drop(st);
                self.inbound_total.fetch_sub(1, Ordering::Relaxed);
                self.stat(|s| s.streams_refused += 1);
                tracing::debug!(%peer, "too many bitswap streams; dropping one");
                self.maybe_forget(peer, &slot);
                return;
            }
            st.inbound += 1;
            st.version = Some(version);
        }
        tokio::spawn(async move {
            let result = match slot.readers.acquire().await {
                Ok(_turn) => match self.readers.acquire().await {
                    Ok(_global) => self.clone().read_wants(peer, &slot, stream, version).await,
                    Err(_) => Ok(()),
                },
                Err(_) => Ok(()),
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "bitswap inbound stream: {e}");
            }
            slot.state().inbound -= 1;
            self.inbound_total.fetch_sub(1, Ordering::Relaxed);
            self.maybe_forget(peer, &slot);
        });
    }

    /// Reads length-prefixed messages until the stream ends.
    async fn read_wants(
        self: Arc<Self>,
        peer: PeerId,
        slot: &Arc<PeerSlot>,
        mut stream: Stream,
        version: Version,
    ) -> Result<(), String> {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            // Serve every whole message already buffered.
            loop {
                let (msg, used) = match message::split_frame(&buf, message::MAX_MESSAGE) {
                    Ok(Some((body, used))) => (Message::decode(body), used),
                    Ok(None) => break,
                    Err(e) => {
                        self.stat(|s| s.bad_messages += 1);
                        return Err(format!("bad frame: {e}"));
                    }
                };
                buf.drain(..used);
                match msg {
                    Ok(msg) => {
                        self.stat(|s| s.messages_received += 1);
                        self.on_answers(peer, &msg);
                        self.serve(peer, slot, &msg, version).await;
                    }
                    Err(e) => {
                        self.stat(|s| s.bad_messages += 1);
                        return Err(format!("bad message: {e}"));
                    }
                }
            }
            let n = match tokio::time::timeout(READ_IDLE, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("idle".into()),
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Looks up one message's wants and queues the answers.
    async fn serve(
        self: &Arc<Self>,
        peer: PeerId,
        slot: &Arc<PeerSlot>,
        msg: &Message,
        version: Version,
    ) {
        let plan = ledger::plan(msg, version);
        if self.patient && (plan.full || !plan.cancels.is_empty()) {
            let mut p = self.pending();
            if plan.full {
                p.forget_peer(peer);
            }
            for c in &plan.cancels {
                if let Ok(cid) = Cid::try_from(c.as_slice()) {
                    p.cancel(peer, &cid);
                }
            }
            self.waiting.store(p.len(), std::sync::atomic::Ordering::Relaxed);
        }
        if !plan.cancels.is_empty() {
            let dropped: usize =
                slot.with_queue(|q| plan.cancels.iter().map(|c| q.cancel(c)).sum());
            if dropped > 0 {
                slot.room.notify_waiters();
            }
        }
        for batch in plan.wants.chunks(LOOKUP_BATCH) {
            let _turn = slot.lookup.lock().await;
            // Wait for room before reading more blocks from disk.
            loop {
                let room = slot.room.notified();
                if slot.with_queue(|q| q.has_room()) {
                    break;
                }
                room.await;
            }
            let provider = self.provider.clone();
            let wants = batch.to_vec();
            let found = tokio::task::spawn_blocking(move || {
                wants
                    .iter()
                    .map(|w| match w.want_type {
                        WantType::Block => {
                            provider.get(&w.cid).map_or(Found::Missing, Found::Block)
                        }
                        WantType::Have => {
                            if provider.has(&w.cid) {
                                Found::Present
                            } else {
                                Found::Missing
                            }
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            let Ok(found) = found else { return };
            if self.patient {
                self.keep_missing(peer, batch, &found);
            }
            let mut queued = false;
            slot.with_queue(|q| {
                for (w, f) in batch.iter().zip(found) {
                    if let Some(item) = ledger::answer(w, f, version) {
                        if !q.push(item) {
                            tracing::debug!(%peer, cid = %w.cid, "bitswap queue full; answer dropped");
                        } else {
                            queued = true;
                        }
                    }
                }
            });
            if queued {
                self.ensure_writer(peer, slot);
                slot.queued.notify_one();
            }
        }
    }

    fn ensure_writer(self: &Arc<Self>, peer: PeerId, slot: &Arc<PeerSlot>) {
        {
            let mut st = slot.state();
            if st.writer {
                return;
            }
            st.writer = true;
        }
        let inner = self.clone();
        let slot = slot.clone();
        tokio::spawn(async move {
            inner.write_answers(peer, &slot).await;
            slot.state().writer = false;
            // Answers queued while the writer was exiting get a new writer.
            if !slot.with_queue(|q| q.is_empty()) {
                inner.ensure_writer(peer, &slot);
            } else {
                inner.maybe_forget(peer, &slot);
            }
        });
    }

    /// Sends queued answers on one outbound stream; exits after [`WRITER_IDLE`] without work.
    async fn write_answers(&self, peer: PeerId, slot: &PeerSlot) {
        let mut out: Option<(Version, Stream)> = None;
        loop {
            let wake = slot.queued.notified();
            let version = slot.state().version.unwrap_or(Version::V120);
            let next = slot.with_queue(|q| q.next_message(version, ledger::TARGET_MESSAGE));
            slot.room.notify_waiters();
            let Some(msg) = next else {
                if tokio::time::timeout(WRITER_IDLE, wake).await.is_err() {
                    return;
                }
                continue;
            };
            if out.as_ref().is_none_or(|(v, _)| *v != version) {
                let proto = StreamProtocol::new(version.protocol());
                match tokio::time::timeout(WRITE_TIMEOUT, self.control.open_stream(peer, proto))
                    .await
                {
                    Ok(Ok(s)) => out = Some((version, s)),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "bitswap: cannot open a stream: {e}; dropping queued answers");
                        slot.with_queue(|q| while q.next_message(version, usize::MAX).is_some() {});
                        slot.room.notify_waiters();
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "bitswap: opening a stream timed out; dropping queued answers");
                        slot.with_queue(|q| while q.next_message(version, usize::MAX).is_some() {});
                        slot.room.notify_waiters();
                        return;
                    }
                }
            }
            let Some((_, stream)) = out.as_mut() else {
                continue;
            };
            let bytes = message::frame(&msg);
            let blocks = (msg.payload.len() + msg.blocks.len()) as u64;
            let block_bytes: usize = msg
                .payload
                .iter()
                .map(|b| b.data.len())
                .chain(msg.blocks.iter().map(|b| b.len()))
                .sum();
            let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
                stream.write_all(&bytes).await?;
                stream.flush().await
            })
            .await;
            match sent {
                Ok(Ok(())) => self.stat(|s| {
                    s.blocks_sent += blocks;
                    s.bytes_sent += block_bytes as u64;
                }),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "bitswap write failed: {e}");
                    out = None;
                }
                Err(_) => {
                    tracing::debug!(%peer, "bitswap write timed out");
                    out = None;
                }
            }
        }
    }

    fn fetches(&self) -> std::sync::MutexGuard<'_, Fetches> {
        self.fetches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds the blocks and DONT_HAVEs of a message to the client's fetches.
    fn on_answers(&self, peer: PeerId, msg: &Message) {
        if (msg.payload.is_empty() && msg.blocks.is_empty() && msg.block_presences.is_empty()) || self.fetches().core.is_empty() {
            return;
        }
        // Hash outside the lock: a block's CID is its prefix with the digest of its data.
        const V0_PREFIX: [u8; 4] = [0, 0x70, 0x12, 32];
        let blocks: Vec<(Cid, &Vec<u8>)> = msg
            .payload
            .iter()
            .filter_map(|b| fetch::payload_cid(&b.prefix, &b.data).map(|c| (c, &b.data)))
            .chain(msg.blocks.iter().filter_map(|b| fetch::payload_cid(&V0_PREFIX, b).map(|c| (c, b))))
            .collect();
        {
            let mut f = self.fetches();
            for (cid, data) in blocks {
                if f.core.is_fetching(&cid) {
                    f.core.on_block(peer, cid, data.clone());
                }
            }
            for p in &msg.block_presences {
                if p.presence == message::Presence::DontHave
                    && let Ok(cid) = Cid::try_from(p.cid.as_slice())
                {
                    f.core.on_dont_have(peer, cid);
                }
            }
        }
        self.fetch_wake.notify_one();
    }

    /// Sends one peer a wantlist update; a peer that cannot be reached fails its wants.
    async fn send_wants(self: Arc<Self>, peer: PeerId, entries: Vec<message::Entry>) {
        let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
            for chunk in entries.chunks(message::MAX_DECODED_ENTRIES) {
                let msg = Message { wantlist: Some(message::Wantlist { entries: chunk.to_vec(), full: false }), ..Default::default() };
                let mut s = self.control.open_stream(peer, StreamProtocol::new(Version::V120.protocol())).await.map_err(|e| e.to_string())?;
                s.write_all(&message::frame(&msg)).await.map_err(|e| e.to_string())?;
                s.close().await.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        if let Err(e) = sent {
            tracing::debug!(%peer, "bitswap: cannot send wants: {e}");
            self.fetches().core.on_peer_failed(peer);
            self.fetch_wake.notify_one();
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, pending::PendingWants> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the wants of a looked-up batch whose blocks are missing, to answer on arrival.
    fn keep_missing(&self, peer: PeerId, batch: &[ledger::Want], found: &[Found]) {
        let now = std::time::Instant::now();
        let mut refused = 0u64;
        {
            let mut p = self.pending();
            for (w, f) in batch.iter().zip(found) {
                if *f == Found::Missing && p.add(peer, w.cid, w.want_type, now).is_err() {
                    refused += 1;
                }
            }
            self.waiting.store(p.len(), std::sync::atomic::Ordering::Relaxed);
        }
        if refused > 0 {
            self.stat(|s| s.wants_not_kept += refused);
            tracing::debug!(%peer, refused, "bitswap: waiting wants at their limit; not kept");
        }
    }

    /// Answers waiting wants as their blocks arrive; expires them, and rescans all of them when
    /// arrivals were missed (the queue was full).
    async fn run_arrivals(self: Arc<Self>, mut arrived: mpsc::Receiver<Cid>, missed: Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::Ordering;
        let mut tick = tokio::time::interval(PENDING_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cid = arrived.recv() => match cid {
                    Some(cid) => self.on_arrival(cid).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let (expired, rescan) = {
                        let mut p = self.pending();
                        let expired = p.expire(std::time::Instant::now());
                        self.waiting.store(p.len(), Ordering::Relaxed);
                        (expired, if missed.swap(false, Ordering::Relaxed) { p.cids() } else { Vec::new() })
                    };
                    if expired > 0 {
                        tracing::debug!(expired, "bitswap: waiting wants expired");
                    }
                    if !rescan.is_empty() {
                        let provider = self.provider.clone();
                        let present = tokio::task::spawn_blocking(move || {
                            rescan.into_iter().filter(|c| provider.has(c)).collect::<Vec<_>>()
                        })
                        .await
                        .unwrap_or_default();
                        for cid in present {
                            self.on_arrival(cid).await;
                        }
                    }
                }
            }
        }
    }

    /// Sends the block `cid` (or HAVE) to every peer that waited for it.
    async fn on_arrival(self: &Arc<Self>, cid: Cid) {
        let waiters = {
            let mut p = self.pending();
            let w = p.arrived(&cid);
            self.waiting.store(p.len(), std::sync::atomic::Ordering::Relaxed);
            w
        };
        if waiters.is_empty() {
            return;
        }
        let provider = self.provider.clone();
        let data = tokio::task::spawn_blocking(move || provider.get(&cid)).await.ok().flatten();
        let Some(data) = data else { return };
        let mut answered = 0u64;
        for (peer, want_type) in waiters {
            let slot = self.slot(peer);
            let version = slot.state().version.unwrap_or(Version::V120);
            let found = match want_type {
                WantType::Block => Found::Block(data.clone()),
                WantType::Have => Found::Present,
            };
            let want = ledger::Want { cid, want_type, send_dont_have: false };
            if let Some(item) = ledger::answer(&want, found, version)
                && slot.with_queue(|q| q.push(item))
            {
                answered += 1;
                self.ensure_writer(peer, &slot);
                slot.queued.notify_one();
            }
            self.maybe_forget(peer, &slot);
        }
        self.stat(|s| s.answered_on_arrival += answered);
    }

    /// Forgets a peer with no streams, no writer, nothing queued and no waiting want.
    fn maybe_forget(&self, peer: PeerId, slot: &Arc<PeerSlot>) {
        if self.pending().of_peer(&peer) > 0 {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let idle = {
            let st = slot.state();
            st.inbound == 0 && !st.writer
        } && slot.with_queue(|q| q.is_empty());
        if idle && peers.get(&peer).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            peers.remove(&peer);
        }
    }
}

/// The client's driver while the server lives: sends wants and cancels, hands results to
/// waiting callers, ends fetches at their deadline.
async fn run_fetches(inner: std::sync::Weak<Inner>, wake_up: Arc<Notify>) {
    loop {
        let Some(me) = inner.upgrade() else { return };
        let wake = wake_up.notified();
        let (batches, done, next) = {
            let mut f = me.fetches();
            f.core.tick(std::time::Instant::now());
            let mut batches: HashMap<PeerId, Vec<message::Entry>> = HashMap::new();
            let mut done = Vec::new();
            while let Some(a) = f.core.poll_action() {
                match a {
                    fetch::Action::Want { peer, cid } | fetch::Action::Cancel { peer, cid } => {
                        let cancel = matches!(a, fetch::Action::Cancel { .. });
                        batches.entry(peer).or_default().push(message::Entry {
                            cid: cid.to_bytes(),
                            priority: 1,
                            cancel,
                            want_type: WantType::Block,
                            send_dont_have: !cancel,
                        });
                    }
                    fetch::Action::Done { cid, result, .. } => {
                        if let Some(w) = f.waiters.remove(&cid) {
                            done.push((w, result));
                        }
                    }
                }
            }
            (batches, done, f.core.next_deadline())
        };
        for (waiters, result) in done {
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
        for (peer, entries) in batches {
            tokio::spawn(me.clone().send_wants(peer, entries));
        }
        drop(me);
        // Wake for new work, or at the next deadline; check now and then that the server lives.
        let until = next.map_or(tokio::time::Instant::now() + WRITER_IDLE, tokio::time::Instant::from_std);
        let _ = tokio::time::timeout_at(until, wake).await;
    }
}
