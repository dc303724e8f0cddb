//! The tokio driver of [`Replicas`]: fetches the blocks of announced segments over Bitswap into
//! the blockstore (each verified against its CID), writes each copy's index durably under
//! `DATA_DIR/copies/`, and tells the stream's followers which segments this node holds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use relaycast_archive::owners::Owners;
use relaycast_ipfs::{Blockstore, Cid};
use relaycast_mesh::{PeerId, SegmentAnnouncement, SegmentHeld};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::index::RecordingIndex;
use crate::replica::{FetchedFile, Limits, ReplicaAction, Replicas};
use crate::stats::ArchiveStats;

/// How long one segment's fetch (every block of its files) may take before it is retried.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Blocks of one segment fetched at once.
const PARALLEL_BLOCKS: usize = 8;
/// Blocks in one copied file at most (a 256 KiB-chunked file of 1 GiB).
pub const MAX_FILE_BLOCKS: u64 = 4096;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Where blocks come from: the mesh's Bitswap client.
pub trait BlockSource: Send + Sync {
    /// The block `cid`, from one of `from` (in order of preference), verified against its CID.
    fn fetch(&self, cid: Cid, from: Vec<PeerId>, timeout: Duration) -> BoxFuture<Result<Vec<u8>, String>>;
}

impl BlockSource for relaycast_mesh::Mesh {
    fn fetch(&self, cid: Cid, from: Vec<PeerId>, timeout: Duration) -> BoxFuture<Result<Vec<u8>, String>> {
        let mesh = self.clone();
        Box::pin(async move { mesh.fetch_block(cid, from, timeout).await.map_err(|e| e.to_string()) })
    }
}

/// Tells the stream's followers that this node holds a segment (the mesh's segment topic).
pub type AnnounceHeld = Arc<dyn Fn(SegmentHeld) + Send + Sync>;

/// Whether a stream has a live origin in the mesh.
pub type IsLive = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How often copies of streams gone from the mesh are looked for.
const TICK: Duration = Duration::from_secs(1);

/// A copy as written to `copies/{stream}/copy.json`.
#[derive(Serialize, Deserialize)]
struct Stored {
    origin: String,
    index: RecordingIndex,
    /// The origin's signature of each segment's announcement.
    #[serde(default)]
    sigs: std::collections::BTreeMap<u64, String>,
}

/// The HTTP base URL of a node whose archive API lists a stream's recording (its origin's).
pub type ArchiveUrl = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The HTTP base URL of a mesh node, by peer id (its announced `http_url`).
pub type NodeUrl = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A bearer token that grants watching a stream (for archive APIs under `--watch-auth`).
pub type WatchToken = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// What the copies ask of the rest of the node.
pub struct Hooks {
    /// Where blocks come from.
    pub source: Arc<dyn BlockSource>,
    /// Tells the stream's followers which segments this node holds.
    pub announce: AnnounceHeld,
    /// Whether a stream has a live origin.
    pub live: IsLive,
    /// Where to list a recording's earlier segments when a copy starts mid-recording.
    pub archive_url: ArchiveUrl,
    /// Where other holders of a recording serve its listing (when the origin is gone).
    pub node_url: NodeUrl,
    /// A token for that archive API, when watching needs one.
    pub token: Option<WatchToken>,
}

/// Largest archive listing read when backfilling.
const MAX_LISTING: usize = 16 << 20;
/// Tries to list a recording's earlier segments.
const BACKFILL_TRIES: u32 = 3;

/// A segment as an archive API lists it.
#[derive(Deserialize)]
struct ListedSegment {
    seq: u64,
    cid: String,
    duration: f64,
    #[serde(default)]
    start_unix_ms: u64,
    #[serde(default)]
    init: Option<String>,
    #[serde(default)]
    sig: String,
}

/// The parts of `GET /api/streams/{stream}/archive` a backfill reads.
#[derive(Deserialize)]
struct Listing {
    init: Option<String>,
    codecs: Option<String>,
    #[serde(default)]
    segments: Vec<ListedSegment>,
}

/// A node's copies of other nodes' recordings.
pub struct Copies {
    core: Mutex<Replicas>,
    store: Arc<Blockstore>,
    root: PathBuf,
    source: Arc<dyn BlockSource>,
    announce: AnnounceHeld,
    live: IsLive,
    archive_url: ArchiveUrl,
    node_url: NodeUrl,
    token: Option<WatchToken>,
    http: reqwest::Client,
    owners: Arc<Owners>,
    stats: Arc<ArchiveStats>,
    /// Serializes index writes, so that the latest index is the one on disk.
    write: Mutex<()>,
    wake: Notify,
}

impl Copies {
    /// Opens the copies of node `me` under `data_dir/copies` (loading those a previous run
    /// kept): fetching from `hooks.source`, announcing through `hooks.announce`, and closing a
    /// copy into a VOD root once `hooks.live` says its stream is gone.
    pub fn open(
        me: PeerId,
        store: Arc<Blockstore>,
        data_dir: &Path,
        hooks: Hooks,
        owners: Arc<Owners>,
        stats: Arc<ArchiveStats>,
    ) -> std::io::Result<Arc<Self>> {
        let root = data_dir.join("copies");
        std::fs::create_dir_all(&root)?;
        let mut core = Replicas::new(me.to_string(), Limits::default());
        for dir in std::fs::read_dir(&root)?.flatten() {
            let path = dir.path().join("copy.json");
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) => {
                    owners.insert(
                        &s.index.stream,
                        s.index.files.iter().map(|f| f.cid.as_str()).chain(s.index.vod.as_deref()),
                    );
                    debug!(stream = %s.index.stream, files = s.index.files.len(), "copy loaded");
                    core.restore(s.origin, s.index, s.sigs);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unreadable copy index; skipped")
                }
            }
        }
        Ok(Arc::new(Self {
            core: Mutex::new(core),
            store,
            root,
            source: hooks.source,
            announce: hooks.announce,
            live: hooks.live,
            archive_url: hooks.archive_url,
            node_url: hooks.node_url,
            token: hooks.token,
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(std::io::Error::other)?,
            owners,
            stats,
            write: Mutex::new(()),
            wake: Notify::new(),
        }))
    }

    fn core(&self) -> MutexGuard<'_, Replicas> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `origin` announced `seg` of a stream this node copies.
    pub fn announced(self: &Arc<Self>, origin: PeerId, seg: SegmentAnnouncement) {
        let actions = self.core().announced(&origin.to_string(), seg, Instant::now());
        self.wake.notify_one();
        self.execute(actions);
    }

    /// `holder` holds a segment.
    pub fn held_by(&self, holder: PeerId, held: &SegmentHeld) {
        self.core().held_by(&held.stream, held.seq, &holder.to_string());
    }

    /// This node's copy of `stream`'s recording.
    pub fn index(&self, stream: &str) -> Option<RecordingIndex> {
        self.core().index(stream).cloned()
    }

    /// The index of every copy held.
    pub fn indexes(&self) -> Vec<RecordingIndex> {
        self.core().indexes().into_iter().cloned().collect()
    }

    /// Deletes the copy of `stream` (its index; its blocks are the caller's to collect) if it is
    /// closed; returns its index.
    pub fn remove_closed(&self, stream: &str) -> Option<RecordingIndex> {
        let _serial = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let index = self.core().remove_closed(stream)?;
        if let Err(e) = std::fs::remove_dir_all(self.root.join(stream)) {
            warn!(%stream, error = %e, "cannot delete a copy's index");
        }
        Some(index)
    }

    /// The origin of the copy of `stream`.
    pub fn origin(&self, stream: &str) -> Option<String> {
        self.core().origin(stream).map(str::to_owned)
    }

    /// Peers other than the origin known to hold segment `seq` of `stream` (this node too).
    pub fn holders(&self, stream: &str, seq: u64) -> Vec<String> {
        self.core().holders(stream, seq)
    }

    /// This node's peer id.
    pub fn me(&self) -> String {
        self.core().me().to_owned()
    }

    /// Starts retries when they are due and closes copies of streams gone from the mesh; runs
    /// until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let next = self.core().poll_timeout().map_or(next_tick, |t| t.min(next_tick));
            let _ = tokio::time::timeout_at(next.into(), self.wake.notified()).await;
            let now = Instant::now();
            let mut actions = self.core().handle_timeout(now);
            if now >= next_tick {
                next_tick = now + TICK;
                let live = self.live.clone();
                actions.extend(self.core().tick(now, &|s| live(s)));
            }
            self.execute(actions);
        }
    }

    fn execute(self: &Arc<Self>, actions: Vec<ReplicaAction>) {
        let counts = self.core().counts();
        self.stats.copy_given_up.store(counts.dropped + counts.given_up, Relaxed);
        for a in actions {
            match a {
                ReplicaAction::Fetch { stream, seq, roots, from } => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let result = this.fetch(&stream, seq, &roots, &from).await;
                        let result = result.map_err(|e| {
                            ArchiveStats::count(&this.stats.copy_failures);
                            debug!(%stream, seq, error = %e, "segment copy failed; retried later");
                        });
                        if let Ok(files) = &result {
                            this.owners.insert(&stream, files.iter().map(|f| f.cid.as_str()));
                        }
                        let actions = this.core().fetched(&stream, seq, result, Instant::now());
                        this.wake.notify_one();
                        this.execute(actions);
                    });
                }
                ReplicaAction::Persist { stream, .. } => {
                    let this = self.clone();
                    tokio::task::spawn_blocking(move || this.persist(&stream));
                }
                ReplicaAction::BuildVod { stream, mut index } => {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let store = this.store.clone();
                        let built = tokio::task::spawn_blocking(move || {
                            crate::index::finish_index(&store, &mut index).map(|()| index)
                        })
                        .await;
                        let closed = match built {
                            Ok(Ok(ix)) => {
                                info!(%stream, vod = ?ix.vod, segments = ix.manifest.as_ref().map_or(0, |m| m.segments.len()), "copy closed into a VOD root (the stream is gone from the mesh)");
                                this.owners.insert(&stream, ix.vod.as_deref());
                                Some(ix)
                            }
                            Ok(Err(e)) => {
                                ArchiveStats::count(&this.stats.errors);
                                warn!(%stream, error = %e, "cannot close a copy into a VOD root");
                                None
                            }
                            Err(e) => {
                                warn!(%stream, error = %e, "VOD task of a copy failed");
                                None
                            }
                        };
                        let actions = this.core().vod_built(&stream, closed);
                        this.execute(actions);
                    });
                }
                ReplicaAction::Backfill { stream, origin, before } => {
                    tokio::spawn(self.clone().backfill(stream, origin, before));
                }
                ReplicaAction::AnnounceHeld { stream, seq, cid } => {
                    ArchiveStats::count(&self.stats.copied_segments);
                    debug!(%stream, seq, %cid, "segment copied");
                    (self.announce)(SegmentHeld { stream, seq, cid });
                }
            }
        }
    }

    /// The origin's signature of segment `seq` of the copy of `stream`.
    pub fn sig(&self, stream: &str, seq: u64) -> Option<String> {
        self.core().sigs(stream)?.get(&seq).cloned()
    }

    /// Where the recording of `stream` can be listed: its origin's archive API while the origin
    /// is live, then every other node known to hold its segments (copies serve the same API).
    fn listing_urls(&self, stream: &str) -> Vec<String> {
        let holders = self.core().stream_holders(stream);
        let mut out: Vec<String> = (self.archive_url)(stream).into_iter().collect();
        for url in holders.iter().filter_map(|h| (self.node_url)(h)) {
            if !out.contains(&url) {
                out.push(url);
            }
        }
        out
    }

    /// Lists the segments of `stream` before `before` at its origin's archive API (or, when the
    /// origin is gone or fails, at another holder's) and copies those whose announcement carries
    /// `origin`'s valid signature: whoever serves the listing, only the origin's word counts.
    async fn backfill(self: Arc<Self>, stream: String, origin: String, before: u64) {
        let Ok(origin_id) = origin.parse::<PeerId>() else { return };
        let mut last_error = String::from("no archive URL for the stream");
        for attempt in 0..BACKFILL_TRIES * 2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let urls = self.listing_urls(&stream);
            let Some(base) = urls.get(attempt as usize % urls.len().max(1)).cloned() else { continue };
            match self.list(&base, &stream).await {
                Ok(listing) => {
                    let (mut good, mut bad) = (0u64, 0u64);
                    let init = listing.init.unwrap_or_default();
                    let codecs = listing.codecs.unwrap_or_default();
                    for s in listing.segments.into_iter().filter(|s| s.seq < before) {
                        let seg = SegmentAnnouncement {
                            stream: stream.clone(),
                            seq: s.seq,
                            cid: s.cid,
                            init: s.init.unwrap_or_else(|| init.clone()),
                            codecs: codecs.clone(),
                            duration: s.duration,
                            start_unix_ms: s.start_unix_ms,
                            sig: s.sig,
                        };
                        if relaycast_mesh::gossip::verify_segment(&seg, &origin_id) {
                            good += 1;
                            self.announced(origin_id, seg);
                        } else {
                            bad += 1;
                            debug!(%stream, seq = seg.seq, cid = %seg.cid, init = %seg.init, codecs = %seg.codecs, duration = seg.duration, start = seg.start_unix_ms, sig = %seg.sig, "listed segment not signed by the origin");
                        }
                    }
                    if bad > 0 {
                        warn!(%stream, %base, bad, "archive listing with segments not signed by the origin; those skipped");
                    }
                    info!(%stream, segments = good, before, "copy backfilled from the archive listing");
                    return;
                }
                Err(e) => last_error = e,
            }
        }
        warn!(%stream, error = %last_error, "cannot list the recording's earlier segments; the copy starts mid-recording");
    }

    /// `GET {base}/api/streams/{stream}/archive`, at most [`MAX_LISTING`] bytes.
    async fn list(&self, base: &str, stream: &str) -> Result<Listing, String> {
        let url = format!("{}/api/streams/{stream}/archive", base.trim_end_matches('/'));
        let mut req = self.http.get(&url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token(stream));
        }
        let mut resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_LISTING {
                return Err(format!("{url}: listing over {MAX_LISTING} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }

    /// Writes the copy's current index (the latest state, whichever write comes last).
    fn persist(&self, stream: &str) {
        let _serial = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let stored = {
            let core = self.core();
            let (Some(index), Some(origin)) = (core.index(stream), core.origin(stream)) else { return };
            Stored { origin: origin.to_owned(), index: index.clone(), sigs: core.sigs(stream).cloned().unwrap_or_default() }
        };
        let dir = self.root.join(stream);
        let result = (|| -> std::io::Result<()> {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let tmp = dir.join("copy.json.tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&stored).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join("copy.json"))
        })();
        if let Err(e) = result {
            ArchiveStats::count(&self.stats.errors);
            warn!(%stream, error = %e, "cannot write a copy's index");
        }
    }

    async fn fetch(
        &self,
        stream: &str,
        seq: u64,
        roots: &[String],
        from: &[String],
    ) -> Result<Vec<FetchedFile>, String> {
        let peers: Vec<PeerId> = from.iter().filter_map(|p| p.parse().ok()).collect();
        let deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
        let mut out = Vec::with_capacity(roots.len());
        for root in roots {
            let cid: Cid = root.parse().map_err(|_| format!("invalid CID {root:?}"))?;
            let (file, fetched) = fetch_file(&self.store, self.source.as_ref(), cid, &peers, deadline).await?;
            self.stats.copy_bytes.fetch_add(fetched, Relaxed);
            out.push(file);
        }
        if out.len() == roots.len() {
            debug!(%stream, seq, "segment blocks here");
        }
        Ok(out)
    }
}

/// Fetches every block of the UnixFS file `root` that the store lacks, from `from`, before
/// `deadline`; returns the file's sizes and the bytes fetched.
pub async fn fetch_file(
    store: &Arc<Blockstore>,
    source: &dyn BlockSource,
    root: Cid,
    from: &[PeerId],
    deadline: tokio::time::Instant,
) -> Result<(FetchedFile, u64), String> {
    let dag = fetch_dag(store, source, root, from, deadline, MAX_FILE_BLOCKS).await?;
    let size = match relaycast_ipfs::exporter::stat(store, &root) {
        Ok(Some(relaycast_ipfs::exporter::Kind::File { size })) => size,
        Ok(_) => return Err(format!("{root} is not a file")),
        Err(e) => return Err(format!("{root}: {e}")),
    };
    if dag.blocks > 1 {
        debug!(%root, blocks = dag.blocks, "file fetched");
    }
    Ok((FetchedFile { cid: root.to_string(), size, dag_size: dag.dag_size }, dag.fetched_bytes))
}

/// What [`fetch_dag`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DagFetch {
    /// Sum of the DAG's block sizes.
    pub dag_size: u64,
    /// Blocks in the DAG.
    pub blocks: u64,
    /// Blocks fetched (the others were in the store already).
    pub fetched_blocks: u64,
    /// Bytes fetched.
    pub fetched_bytes: u64,
}

/// Fetches every block of the DAG under `root` (dag-pb links followed, raw leaves) that `store`
/// lacks from `from` before `deadline`, each verified against its CID by the source; refuses a
/// DAG of more than `max_blocks` blocks.
pub async fn fetch_dag(
    store: &Arc<Blockstore>,
    source: &dyn BlockSource,
    root: Cid,
    from: &[PeerId],
    deadline: tokio::time::Instant,
    max_blocks: u64,
) -> Result<DagFetch, String> {
    let mut out = DagFetch::default();
    let mut todo = vec![root];
    while !todo.is_empty() {
        let batch: Vec<Cid> = todo.drain(..todo.len().min(PARALLEL_BLOCKS)).collect();
        let mut tasks = Vec::with_capacity(batch.len());
        for cid in batch {
            let store = store.clone();
            let fut = if store.has(&cid) {
                None
            } else {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                Some(source.fetch(cid, from.to_vec(), left))
            };
            tasks.push(async move {
                match fut {
                    None => {
                        let data =
                            store.get(&cid).map_err(|e| e.to_string())?.ok_or_else(|| format!("{cid} vanished"))?;
                        Ok::<_, String>((cid, data, false))
                    }
                    Some(f) => {
                        // The source has its own timeout; this one bounds the wait whatever it does.
                        let data = tokio::time::timeout_at(deadline + Duration::from_secs(1), f)
                            .await
                            .map_err(|_| format!("{cid}: no answer in time"))?
                            .map_err(|e| format!("{cid}: {e}"))?;
                        let s = store.clone();
                        let d = data.clone();
                        tokio::task::spawn_blocking(move || s.put(&cid, &d))
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                        Ok((cid, data, true))
                    }
                }
            });
        }
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for h in handles {
            let (cid, data, was_fetched) = h.await.map_err(|e| format!("block task: {e}"))??;
            out.blocks += 1;
            if out.blocks > max_blocks {
                return Err(format!("{root} has more than {max_blocks} blocks"));
            }
            out.dag_size += data.len() as u64;
            if was_fetched {
                out.fetched_blocks += 1;
                out.fetched_bytes += data.len() as u64;
            }
            if cid.codec() == relaycast_ipfs::block::DAG_PB {
                let node = relaycast_ipfs::dagpb::PbNode::decode(&data)
                    .map_err(|e| format!("{cid} is not valid dag-pb: {e}"))?;
                todo.extend(node.links.iter().map(|l| l.hash));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    struct NoBlocks;

    impl BlockSource for NoBlocks {
        fn fetch(&self, _: Cid, _: Vec<PeerId>, _: Duration) -> BoxFuture<Result<Vec<u8>, String>> {
            Box::pin(async { Err("no blocks here".to_string()) })
        }
    }

    /// Where a copy lists the recording's earlier segments: the origin while it is live, then
    /// the other nodes that hold segments of it, the one holding most first.
    #[tokio::test]
    async fn the_listing_comes_from_the_origin_then_from_other_holders() {
        let dir = std::env::temp_dir().join(format!("relaycast-copies-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(Blockstore::open(dir.join("blocks")).unwrap());
        let origin_live = Arc::new(AtomicBool::new(true));
        let live = origin_live.clone();
        let hooks = Hooks {
            source: Arc::new(NoBlocks),
            announce: Arc::new(|_| {}),
            live: Arc::new(|_: &str| true),
            archive_url: Arc::new(move |_: &str| live.load(Ordering::Relaxed).then(|| "http://origin".to_string())),
            node_url: Arc::new(|peer: &str| Some(format!("http://{peer}"))),
            token: None,
        };
        let (me, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let copies = Copies::open(me, store, &dir, hooks, Arc::default(), Arc::default()).unwrap();
        let held = |seq| SegmentHeld { stream: "room".into(), seq, cid: format!("s{seq}") };
        copies.held_by(c, &held(1));
        copies.held_by(b, &held(1));
        copies.held_by(b, &held(2));
        copies.held_by(me, &held(2));
        assert_eq!(copies.listing_urls("room"), vec!["http://origin".to_string(), format!("http://{b}"), format!("http://{c}")]);
        origin_live.store(false, Ordering::Relaxed);
        assert_eq!(copies.listing_urls("room"), vec![format!("http://{b}"), format!("http://{c}")], "the origin is gone");
        assert!(copies.listing_urls("other").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
