//! The archive service's tokio driver: feeds the tap to the [`Core`] and performs its actions
//! (blocks into the blockstore, `index.json` files, viewer events, mesh announcements, VOD
//! roots, pinning, webhooks).
//!
//! Storage runs on blocking tasks; the core allows one storage step per recording at a time,
//! so a recording's files are stored in order while packets keep flowing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use relaycast_archive::owners::Owners;
use relaycast_ipfs::{Blockstore, Profile};
use relaycast_sfu::stream::SessionEvent;
use relaycast_sfu::Sfu;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::core::{Action, Core, DropReason, RecordingId, StoredEntry, TapInput};
use crate::index::{RecordingIndex, finish_index, write_index};
use crate::pin;
use crate::retention;
use crate::stats::ArchiveStats;

/// Segments in the live playlist's window.
pub const LIVE_WINDOW: usize = 6;

/// Announces a durable segment (to the mesh).
pub type Announce = Arc<dyn Fn(relaycast_mesh::SegmentAnnouncement) + Send + Sync>;

/// Told about each recording closed into a VOD root: stream, VOD root CID, media segments.
pub type OnFinished = Arc<dyn Fn(&str, &str, u64) + Send + Sync>;

/// What the archive asks of the media plane.
pub trait MediaPlane: Send + Sync {
    /// Asks the publisher of `stream_id` for a keyframe on simulcast `layer`.
    fn request_keyframe(&self, stream_id: u64, layer: u8);
    /// Sends `event` to every viewer of `stream`.
    fn broadcast(&self, stream: &str, event: &SessionEvent);
}

impl MediaPlane for Sfu {
    fn request_keyframe(&self, stream_id: u64, layer: u8) {
        Sfu::request_keyframe(self, stream_id, layer);
    }

    fn broadcast(&self, stream: &str, event: &SessionEvent) {
        Sfu::broadcast(self, stream, event);
    }
}

/// The archive service of a node.
pub struct Archiver {
    sfu: Arc<dyn MediaPlane>,
    store: Arc<Blockstore>,
    root: PathBuf,
    profile: Profile,
    layer: Option<u8>,
    /// Latest recording per stream name.
    recordings: Mutex<HashMap<String, Arc<Mutex<RecordingIndex>>>>,
    /// Called once a segment is durable: the mesh's segment topic.
    announce: Option<Announce>,
    /// Pins every segment, init segment and VOD root to a kubo node (`--pin-to`).
    pinner: Option<Arc<pin::Pinner>>,
    /// Called when a recording's VOD root is written (webhooks).
    on_finished: Option<OnFinished>,
    /// Recordings a crash left open and [`Archiver::open`] closed: stream, VOD root, segments;
    /// handed to `on_finished` once it is set.
    closed_at_open: Mutex<Vec<(String, String, u64)>>,
    /// Counts for `/metrics`.
    stats: Arc<ArchiveStats>,
    /// Which stream each stored file belongs to (the gateway's check under `--watch-auth`).
    owners: Arc<Owners>,
    /// Copies of other nodes' recordings, served when this node has no recording of its own.
    copies: Option<Arc<crate::copies::Copies>>,
    /// Signs a segment announcement with this node's mesh key.
    signer: Option<Signer>,
    /// Signatures made for the archive API, by stream, sequence number and CID.
    signed: Mutex<HashMap<(String, u64, String), String>>,
    /// The live edge (low-latency HLS parts) of each stream recorded here now.
    edges: Mutex<HashMap<String, Arc<Edge>>>,
}

/// A live recording's edge in memory, and a signal for the playlist and part requests waiting
/// for it to grow (blocking reloads, preload hints).
pub struct Edge {
    state: Mutex<relaycast_archive::LiveEdge>,
    changed: tokio::sync::watch::Sender<()>,
}

impl Edge {
    fn new() -> Self {
        Self {
            state: Mutex::new(relaycast_archive::LiveEdge::new(
                relaycast_archive::lowlatency::PART_TARGET,
                relaycast_archive::segmenter::SegmenterConfig::default().target,
            )),
            changed: tokio::sync::watch::Sender::new(()),
        }
    }

    /// The edge now.
    pub fn lock(&self) -> MutexGuard<'_, relaycast_archive::LiveEdge> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver told of every change after this call.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }

    fn apply(&self, update: relaycast_archive::EdgeUpdate) {
        self.lock().apply(update);
        self.changed.send_replace(());
    }
}

/// Signs a segment announcement with the node's mesh key (sets its `sig`).
pub type Signer = Arc<dyn Fn(&mut relaycast_mesh::SegmentAnnouncement) + Send + Sync>;

/// Blocks younger than this are never collected, and recordings that ended less than this ago
/// are never deleted: what a recording is writing right now is safe.
pub const GC_GRACE: Duration = Duration::from_secs(60);

/// What one retention pass deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Recordings deleted: stream, id, own or copy.
    pub recordings: Vec<(String, u64, retention::Holding)>,
    /// Blocks deleted.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Every block of a recording: its files' DAGs and its VOD directory's.
fn recording_blocks(store: &Blockstore, ix: &RecordingIndex) -> Vec<relaycast_ipfs::Cid> {
    let mut out = Vec::new();
    for cid in ix.files.iter().map(|f| f.cid.as_str()).chain(ix.vod.as_deref()) {
        let Ok(c) = cid.parse::<relaycast_ipfs::Cid>() else { continue };
        match relaycast_ipfs::car::dag_cids(store, &c) {
            Ok(set) => out.extend(set),
            Err(e) => warn!(%cid, error = %e, "cannot list a recording's blocks"),
        }
    }
    out
}

/// Most recordings of one stream `GET /api/streams/{stream}/recordings` lists (the newest).
pub const MAX_LISTED_RECORDINGS: usize = 1000;

/// Signatures kept for the archive API before the cache starts over.
const MAX_SIGNED: usize = 100_000;

/// The outcome of one storage step, reported back to the core.
enum Done {
    Stored(RecordingId, Option<StoredEntry>),
    Persisted(RecordingId, bool),
    Vod(RecordingId, Option<String>),
}

/// Storage steps in flight. A step whose task fails (panics) still reports an outcome: its
/// failure, so that its recording goes on.
#[derive(Default)]
struct Steps {
    tasks: JoinSet<Done>,
    on_failure: HashMap<tokio::task::Id, Done>,
}

impl Steps {
    fn spawn(&mut self, on_failure: Done, step: impl std::future::Future<Output = Done> + Send + 'static) {
        let handle = self.tasks.spawn(step);
        self.on_failure.insert(handle.id(), on_failure);
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The next outcome; `None` once no step is in flight.
    async fn next(&mut self, stats: &ArchiveStats) -> Option<Option<Done>> {
        Some(match self.tasks.join_next_with_id().await? {
            Ok((id, done)) => {
                self.on_failure.remove(&id);
                Some(done)
            }
            Err(e) => {
                ArchiveStats::count(&stats.errors);
                warn!(error = %e, "archive storage task failed");
                self.on_failure.remove(&e.id())
            }
        })
    }
}

/// A recording the driver performs actions for.
struct Open {
    /// What the routes show.
    index: Arc<Mutex<RecordingIndex>>,
    /// Its live edge.
    edge: Arc<Edge>,
    /// Where its `index.json` lives.
    dir: PathBuf,
}

/// The archiver behind `arc` for a `with_*` builder, which needs the only reference to it: a
/// builder called on a shared archiver would otherwise be lost without a word, so it is logged
/// (and is a bug: debug builds panic).
fn sole(arc: &mut Arc<Archiver>) -> Option<&mut Archiver> {
    let me = Arc::get_mut(arc);
    if me.is_none() {
        tracing::error!("an archiver builder was called on a shared archiver; its setting is ignored");
        debug_assert!(false, "an archiver builder was called on a shared archiver");
    }
    me
}

impl Archiver {
    /// Opens the archive under `data_dir` (blocks in `blocks/`, indexes in `archive/`) and loads
    /// the recordings found there; recordings a crash left open are closed into VOD roots.
    pub fn open(
        sfu: Arc<dyn MediaPlane>,
        store: Arc<Blockstore>,
        data_dir: &Path,
        profile: Profile,
        layer: Option<u8>,
    ) -> std::io::Result<Arc<Self>> {
        let root = data_dir.join("archive");
        std::fs::create_dir_all(&root)?;
        let me = Archiver {
            sfu,
            store,
            root,
            profile,
            layer,
            recordings: Mutex::default(),
            announce: None,
            pinner: None,
            on_finished: None,
            closed_at_open: Mutex::default(),
            stats: Arc::default(),
            owners: Arc::default(),
            copies: None,
            signer: None,
            signed: Mutex::default(),
            edges: Mutex::default(),
        };
        me.load_existing();
        Ok(Arc::new(me))
    }

    /// The same archiver, announcing durable segments through `announce(stream, json)`.
    pub fn with_announcer(mut self: Arc<Self>, announce: Announce) -> Arc<Self> {
        if let Some(me) = sole(&mut self) {
            me.announce = Some(announce);
        }
        self
    }

    /// The same archiver, pinning each segment as it is announced, each init segment and each
    /// VOD root (also of recordings a crash left open) to the kubo node at `url`, queued durably
    /// under `DATA_DIR/pins/` and retried until kubo takes them. Starts the pinning task (call it
    /// on a runtime).
    pub fn with_pin_to(mut self: Arc<Self>, url: Option<String>) -> std::io::Result<Arc<Self>> {
        let Some(url) = url else { return Ok(self) };
        let dir = self.root.with_file_name("pins");
        let pinner = pin::Pinner::open(&dir, url, self.store.clone(), self.stats.clone())?;
        for (_, vod, _) in self.closed_at_open.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            pinner.add(vod);
        }
        tokio::spawn(pinner.clone().run());
        if let Some(me) = sole(&mut self) {
            me.pinner = Some(pinner);
        }
        Ok(self)
    }

    /// CIDs waiting to be pinned to the `--pin-to` kubo node.
    pub fn pins_waiting(&self) -> usize {
        self.pinner.as_ref().map_or(0, |p| p.waiting())
    }

    /// The same archiver, serving `copies` of other nodes' recordings.
    pub fn with_copies(mut self: Arc<Self>, copies: Arc<crate::copies::Copies>) -> Arc<Self> {
        if let Some(me) = sole(&mut self) {
            me.copies = Some(copies);
        }
        self
    }

    /// The same archiver, signing the segments its archive API lists with `signer`.
    pub fn with_signer(mut self: Arc<Self>, signer: Signer) -> Arc<Self> {
        if let Some(me) = sole(&mut self) {
            me.signer = Some(signer);
        }
        self
    }

    /// Per segment of `manifest` (a recording of `stream`), the origin's signature of its
    /// announcement: made with this node's key for its own recordings (cached), the one a copy
    /// received for copies; empty when unknown.
    pub fn signatures(&self, stream: &str, manifest: &relaycast_archive::Manifest) -> Vec<String> {
        if !self.recordings().contains_key(stream) {
            return match &self.copies {
                Some(c) => manifest.segments.iter().map(|s| c.sig(stream, s.seq).unwrap_or_default()).collect(),
                None => vec![String::new(); manifest.segments.len()],
            };
        }
        let Some(signer) = &self.signer else { return vec![String::new(); manifest.segments.len()] };
        let mut cache = self.signed.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > MAX_SIGNED {
            cache.clear();
        }
        manifest
            .segments
            .iter()
            .map(|s| {
                let key = (stream.to_owned(), s.seq, s.cid.clone());
                if let Some(sig) = cache.get(&key) {
                    return sig.clone();
                }
                let mut seg = relaycast_mesh::SegmentAnnouncement {
                    stream: stream.to_owned(),
                    seq: s.seq,
                    cid: s.cid.clone(),
                    init: manifest.init_of(s).to_owned(),
                    codecs: manifest.codecs.clone(),
                    duration: s.duration,
                    start_unix_ms: s.start_unix_ms,
                    sig: String::new(),
                };
                signer(&mut seg);
                cache.insert(key, seg.sig.clone());
                seg.sig
            })
            .collect()
    }

    /// The copies of other nodes' recordings, when kept.
    pub fn copies(&self) -> Option<&Arc<crate::copies::Copies>> {
        self.copies.as_ref()
    }

    /// Which stream each stored file belongs to.
    pub fn owners(&self) -> Arc<Owners> {
        self.owners.clone()
    }

    /// What the archive stored, finished and failed to do, for `/metrics`.
    pub fn stats(&self) -> Arc<ArchiveStats> {
        self.stats.clone()
    }

    /// The same archiver, calling `on_finished` whenever a recording's VOD root is written.
    pub fn with_on_finished(mut self: Arc<Self>, on_finished: OnFinished) -> Arc<Self> {
        if let Some(me) = sole(&mut self) {
            let closed = std::mem::take(&mut *me.closed_at_open.lock().unwrap_or_else(|e| e.into_inner()));
            for (stream, vod, segments) in closed {
                on_finished(&stream, &vod, segments);
            }
            me.on_finished = Some(on_finished);
        }
        self
    }

    /// The live edge of the recording of `stream` made here now, if any.
    pub fn edge(&self, stream: &str) -> Option<Arc<Edge>> {
        self.edges.lock().unwrap_or_else(|e| e.into_inner()).get(stream).cloned()
    }

    fn recordings(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<RecordingIndex>>>> {
        self.recordings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest recording of `stream` made here.
    pub fn own_recording(&self, stream: &str) -> Option<RecordingIndex> {
        let r = self.recordings().get(stream).cloned()?;
        let g = r.lock().unwrap_or_else(|e| e.into_inner());
        Some(g.clone())
    }

    /// The latest recording of `stream`: made here, or else this node's copy of another's.
    pub fn recording(&self, stream: &str) -> Option<RecordingIndex> {
        self.own_recording(stream).or_else(|| self.copies.as_ref()?.index(stream))
    }

    /// The block store recordings are kept in.
    pub fn store(&self) -> &Arc<Blockstore> {
        &self.store
    }

    /// Every recording of `stream` this node holds, oldest first: each one made here (read from
    /// its `index.json`; the live one from memory) and this node's copy of another node's
    /// recording when it made none with the same start. At most [`MAX_LISTED_RECORDINGS`], the
    /// newest. Reads the disk: call it off the async runtime.
    pub fn recordings_of(&self, stream: &str) -> Vec<RecordingIndex> {
        let mut found: Vec<RecordingIndex> = Vec::new();
        if relaycast_signaling::sessions::valid_stream_name(stream)
            && let Ok(dirs) = std::fs::read_dir(self.root.join(stream))
        {
            let mut ids: Vec<u64> = dirs.flatten().filter_map(|d| d.file_name().to_str()?.parse().ok()).collect();
            ids.sort_unstable();
            let skip = ids.len().saturating_sub(MAX_LISTED_RECORDINGS);
            for id in &ids[skip..] {
                let path = self.root.join(stream).join(id.to_string()).join("index.json");
                match std::fs::read(&path).map(|b| serde_json::from_slice::<RecordingIndex>(&b)) {
                    Ok(Ok(ix)) => found.push(ix),
                    Ok(Err(e)) => warn!(path = %path.display(), error = %e, "unreadable recording index; not listed"),
                    Err(_) => {}
                }
            }
        }
        // The live recording's index in memory is newer than its last write.
        if let Some(latest) = self.own_recording(stream) {
            match found.iter_mut().find(|r| r.started_unix_ms == latest.started_unix_ms) {
                Some(r) => *r = latest,
                None => found.push(latest),
            }
        }
        if let Some(copy) = self.copies.as_ref().and_then(|c| c.index(stream))
            && !found.iter().any(|r| r.started_unix_ms == copy.started_unix_ms)
        {
            found.push(copy);
        }
        found.sort_by_key(|r| r.started_unix_ms);
        let skip = found.len().saturating_sub(MAX_LISTED_RECORDINGS);
        found.drain(..skip);
        found
    }

    /// Every recording made here: each `index.json` on disk, the live ones from memory.
    fn own_indexes(&self) -> Vec<RecordingIndex> {
        let mut found: Vec<RecordingIndex> = Vec::new();
        for s in std::fs::read_dir(&self.root).into_iter().flatten().flatten() {
            for r in std::fs::read_dir(s.path()).into_iter().flatten().flatten() {
                let path = r.path().join("index.json");
                if let Ok(Ok(ix)) = std::fs::read(&path).map(|b| serde_json::from_slice::<RecordingIndex>(&b)) {
                    found.push(ix);
                }
            }
        }
        let latest: Vec<RecordingIndex> = {
            let recs = self.recordings();
            recs.values().map(|r| r.lock().unwrap_or_else(|e| e.into_inner()).clone()).collect()
        };
        for l in latest {
            match found.iter_mut().find(|r| r.stream == l.stream && r.started_unix_ms == l.started_unix_ms) {
                Some(r) => *r = l,
                None => found.push(l),
            }
        }
        found
    }

    /// Bytes the archive holds: every recording of this node's and every copy (whole DAGs). Reads
    /// the recordings' indexes from disk: for occasional checks, not for a hot path.
    pub fn archive_bytes(&self) -> u64 {
        let copies = self.copies.as_ref().map(|c| c.indexes()).unwrap_or_default();
        self.own_indexes()
            .iter()
            .chain(copies.iter())
            .flat_map(|ix| ix.files.iter())
            .fold(0u64, |t, f| t.saturating_add(f.dag_size))
    }

    /// Applies `policy` at `now`: deletes the recordings it picks (own ones' index directories,
    /// copies' indexes), then every block of theirs that no remaining recording references and
    /// that was not written in the last [`GC_GRACE`]. Recordings that ended less than
    /// [`GC_GRACE`] ago count as live. Reads and deletes on disk: call it off the async runtime.
    pub fn apply_retention(&self, policy: &retention::Policy, now: SystemTime) -> RetentionReport {
        let mut report = RetentionReport::default();
        if policy.is_off() {
            return report;
        }
        let now_ms = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let grace_ms = GC_GRACE.as_millis() as u64;
        let own = self.own_indexes();
        let copies = self.copies.as_ref().map(|c| c.indexes()).unwrap_or_default();
        let mut indexes: Vec<(retention::Holding, RecordingIndex)> = Vec::new();
        indexes.extend(own.into_iter().map(|i| (retention::Holding::Own, i)));
        indexes.extend(copies.into_iter().map(|i| (retention::Holding::Copy, i)));
        let held: Vec<retention::Held> = indexes
            .iter()
            .map(|(holding, ix)| {
                let ended = ix.vod.as_ref().map(|_| crate::recordings::ended_unix_ms(ix)).filter(|e| e.saturating_add(grace_ms) <= now_ms);
                retention::Held {
                    stream: ix.stream.clone(),
                    id: ix.started_unix_ms,
                    holding: *holding,
                    ended_unix_ms: ended,
                    bytes: ix.files.iter().fold(0u64, |t, f| t.saturating_add(f.dag_size)),
                    pinned: ix.pinned,
                }
            })
            .collect();
        let doomed = retention::plan(policy, &held, now_ms);
        if doomed.is_empty() {
            return report;
        }
        // Blocks of the recordings to delete, named while their indexes are still there.
        let mut candidates: std::collections::HashSet<relaycast_ipfs::Cid> = std::collections::HashSet::new();
        for &i in &doomed {
            candidates.extend(recording_blocks(&self.store, &indexes[i].1));
        }
        let began = now.checked_sub(GC_GRACE).unwrap_or(now);
        for &i in &doomed {
            let (holding, ix) = &indexes[i];
            let deleted = match holding {
                retention::Holding::Own => {
                    let dir = self.root.join(&ix.stream).join(ix.started_unix_ms.to_string());
                    let ok = std::fs::remove_dir_all(&dir).is_ok();
                    let mut recs = self.recordings();
                    let latest = recs.get(&ix.stream).is_some_and(|r| r.lock().unwrap_or_else(|e| e.into_inner()).started_unix_ms == ix.started_unix_ms);
                    if latest {
                        recs.remove(&ix.stream);
                    }
                    ok
                }
                retention::Holding::Copy => self.copies.as_ref().and_then(|c| c.remove_closed(&ix.stream)).is_some(),
            };
            if deleted {
                info!(stream = %ix.stream, id = ix.started_unix_ms, ?holding, bytes = held[i].bytes, "retention: recording deleted");
                ArchiveStats::count(&self.stats.retention_deleted);
                report.recordings.push((ix.stream.clone(), ix.started_unix_ms, *holding));
            }
        }
        // What every remaining recording (live ones included) references stays.
        let mut kept = std::collections::HashSet::new();
        for ix in self.own_indexes().iter().chain(self.copies.as_ref().map(|c| c.indexes()).unwrap_or_default().iter()) {
            kept.extend(recording_blocks(&self.store, ix));
        }
        for cid in candidates.difference(&kept) {
            let size = self.store.size(cid).ok().flatten().unwrap_or(0);
            match self.store.remove_if_older(cid, began) {
                Ok(true) => {
                    report.blocks += 1;
                    report.bytes += size;
                }
                Ok(false) => {}
                Err(e) => warn!(%cid, error = %e, "retention: cannot delete a block"),
            }
        }
        self.stats.gc_blocks.fetch_add(report.blocks, Relaxed);
        self.stats.gc_bytes.fetch_add(report.bytes, Relaxed);
        if report.blocks > 0 {
            info!(recordings = report.recordings.len(), blocks = report.blocks, bytes = report.bytes, "retention: blocks collected");
        }
        report
    }

    /// Runs [`Archiver::apply_retention`] now and every `every` until the process ends.
    pub async fn run_retention(self: Arc<Self>, policy: retention::Policy, every: Duration) {
        loop {
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.apply_retention(&policy, SystemTime::now())).await {
                warn!(error = %e, "retention pass failed");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Pins (or unpins) the recording of `stream` that started at `id`: retention keeps it.
    /// False when there is no such recording made here. Writes its index: call it off the runtime.
    pub fn set_pinned(&self, stream: &str, id: u64, pinned: bool) -> std::io::Result<bool> {
        if !relaycast_signaling::sessions::valid_stream_name(stream) {
            return Ok(false);
        }
        let dir = self.root.join(stream).join(id.to_string());
        let latest = self.recordings().get(stream).cloned().filter(|r| r.lock().unwrap_or_else(|e| e.into_inner()).started_unix_ms == id);
        if let Some(r) = latest {
            let mut g = r.lock().unwrap_or_else(|e| e.into_inner());
            g.pinned = pinned;
            write_index(&dir, &g)?;
            return Ok(true);
        }
        let Ok(bytes) = std::fs::read(dir.join("index.json")) else { return Ok(false) };
        let mut ix: RecordingIndex = serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
        ix.pinned = pinned;
        write_index(&dir, &ix)?;
        Ok(true)
    }

    /// The recording of `stream` that started at `id` (milliseconds since the Unix epoch), made
    /// here or copied. Reads the disk: call it off the async runtime.
    pub fn recording_by_id(&self, stream: &str, id: u64) -> Option<RecordingIndex> {
        if let Some(r) = self.recording(stream).filter(|r| r.started_unix_ms == id) {
            return Some(r);
        }
        if !relaycast_signaling::sessions::valid_stream_name(stream) {
            return None;
        }
        let bytes = std::fs::read(self.root.join(stream).join(id.to_string()).join("index.json")).ok()?;
        serde_json::from_slice::<RecordingIndex>(&bytes).ok().filter(|r| r.stream == stream)
    }

    /// Per segment of `seqs`, the peers known to hold it: the stream's origin (this node for
    /// its own recordings) and every node that announced a copy.
    pub fn providers(&self, stream: &str, seqs: impl Iterator<Item = u64>) -> Vec<Vec<String>> {
        let Some(copies) = &self.copies else { return seqs.map(|_| Vec::new()).collect() };
        let origin = match self.recordings().contains_key(stream) {
            true => Some(copies.me()),
            false => copies.origin(stream),
        };
        seqs.map(|seq| {
            let mut out: Vec<String> = origin.iter().cloned().collect();
            for h in copies.holders(stream, seq) {
                if !out.contains(&h) {
                    out.push(h);
                }
            }
            out
        })
        .collect()
    }

    fn load_existing(&self) {
        let Ok(streams) = std::fs::read_dir(&self.root) else { return };
        for s in streams.flatten() {
            let Ok(recs) = std::fs::read_dir(s.path()) else { continue };
            for r in recs.flatten() {
                let path = r.path().join("index.json");
                let Ok(bytes) = std::fs::read(&path) else { continue };
                let mut index: RecordingIndex = match serde_json::from_slice(&bytes) {
                    Ok(i) => i,
                    Err(e) => {
                        warn!(path = %path.display(), error = %e, "unreadable recording index; skipped");
                        continue;
                    }
                };
                if index.vod.is_none() && index.manifest.is_some() {
                    info!(stream = %index.stream, "recording was interrupted; closing it into a VOD root");
                    match finish_index(&self.store, &mut index) {
                        Ok(()) => {
                            if let Some(vod) = &index.vod {
                                let segments = index.manifest.as_ref().map_or(0, |m| m.segments.len() as u64);
                                let mut closed = self.closed_at_open.lock().unwrap_or_else(|e| e.into_inner());
                                closed.push((index.stream.clone(), vod.clone(), segments));
                            }
                        }
                        Err(e) => warn!(stream = %index.stream, error = %e, "cannot close the interrupted recording"),
                    }
                    let _ = write_index(&r.path(), &index);
                }
                own(&self.owners, &index, index.files.len());
                let mut recs = self.recordings();
                let newer = recs
                    .get(&index.stream)
                    .is_none_or(|cur| cur.lock().unwrap_or_else(|e| e.into_inner()).started_unix_ms < index.started_unix_ms);
                if newer {
                    recs.insert(index.stream.clone(), Arc::new(Mutex::new(index)));
                }
            }
        }
    }

    /// Runs the recorder task until the tap closes or `stop` fires; then drains what the tap
    /// still holds, finishes every recording (VOD roots) and waits for their storage. The tap
    /// carries the SFU's [`relaycast_sfu::tap::TapEvent`]s (or the core's own inputs).
    pub async fn run<E: Into<TapInput>>(self: Arc<Self>, mut tap: mpsc::Receiver<E>, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let mut core = Core::new(self.layer);
        let mut open: HashMap<RecordingId, Open> = HashMap::new();
        let mut io = Steps::default();
        loop {
            let deadline = core.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_millis(500));
            let actions = tokio::select! {
                _ = &mut stop => {
                    let mut actions = Vec::new();
                    while let Ok(ev) = tap.try_recv() {
                        actions.extend(core.handle(ev.into(), Instant::now(), SystemTime::now()));
                    }
                    self.perform(actions, &mut open, &mut io);
                    break;
                }
                ev = tap.recv() => {
                    let Some(ev) = ev else { break };
                    core.handle(ev.into(), Instant::now(), SystemTime::now())
                }
                Some(done) = io.next(&self.stats), if !io.is_empty() => done.map(|d| report(&mut core, d)).unwrap_or_default(),
                _ = tokio::time::sleep_until(deadline.into()) => core.handle_timeout(Instant::now()),
            };
            self.perform(actions, &mut open, &mut io);
        }
        let actions = core.end_all(Instant::now());
        self.perform(actions, &mut open, &mut io);
        while let Some(done) = io.next(&self.stats).await {
            let actions = done.map(|d| report(&mut core, d)).unwrap_or_default();
            self.perform(actions, &mut open, &mut io);
        }
    }

    /// Performs the core's actions; storage steps go to `io`.
    fn perform(&self, actions: Vec<Action>, open: &mut HashMap<RecordingId, Open>, io: &mut Steps) {
        for action in actions {
            match action {
                Action::Started { rec, index } => {
                    info!(stream = %index.stream, "archiving the stream");
                    let dir = self.root.join(&index.stream).join(index.started_unix_ms.to_string());
                    if let Err(e) = std::fs::create_dir_all(&dir) {
                        warn!(dir = %dir.display(), error = %e, "cannot create the recording directory");
                    }
                    let shared = Arc::new(Mutex::new(index.clone()));
                    let edge = Arc::new(Edge::new());
                    self.edges.lock().unwrap_or_else(|e| e.into_inner()).insert(index.stream.clone(), edge.clone());
                    self.recordings().insert(index.stream, shared.clone());
                    open.insert(rec, Open { index: shared, edge, dir });
                }
                Action::RequestKeyframe { stream_id, layer } => self.sfu.request_keyframe(stream_id, layer),
                Action::Publish { rec, index } => {
                    if let Some(o) = open.get(&rec) {
                        *o.index.lock().unwrap_or_else(|e| e.into_inner()) = index;
                        // Blocking playlist reloads wait on durable segments too.
                        o.edge.changed.send_replace(());
                    }
                }
                Action::Edge { rec, update } => {
                    if let Some(o) = open.get(&rec) {
                        o.edge.apply(update);
                    }
                }
                Action::Write { rec, kind, bytes } => {
                    let (store, profile, stats) = (self.store.clone(), self.profile, self.stats.clone());
                    io.spawn(Done::Stored(rec, None), async move {
                        let size = bytes.len() as u64;
                        let entry = match tokio::task::spawn_blocking(move || store.import_reader(&bytes[..], profile)).await {
                            Ok(Ok(e)) => {
                                stats.bytes.fetch_add(size, Relaxed);
                                Some(StoredEntry { cid: e.cid.to_string(), size: e.file_size, dag_size: e.dag_size })
                            }
                            Ok(Err(e)) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(?kind, error = %e, "cannot store an archive file");
                                None
                            }
                            Err(e) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(?kind, error = %e, "archive import task failed");
                                None
                            }
                        };
                        Done::Stored(rec, entry)
                    });
                }
                Action::Persist { rec, index } => {
                    own(&self.owners, &index, 1);
                    let Some(o) = open.get(&rec) else {
                        // Not started here: nowhere to write; the core still hears back.
                        io.spawn(Done::Persisted(rec, false), async move { Done::Persisted(rec, false) });
                        continue;
                    };
                    let (dir, stats) = (o.dir.clone(), self.stats.clone());
                    io.spawn(Done::Persisted(rec, false), async move {
                        let d = dir.clone();
                        let ok = match tokio::task::spawn_blocking(move || write_index(&d, &index)).await {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(dir = %dir.display(), error = %e, "cannot write the recording index");
                                false
                            }
                            Err(e) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(dir = %dir.display(), error = %e, "index write task failed");
                                false
                            }
                        };
                        Done::Persisted(rec, ok)
                    });
                }
                Action::Announce { rec: _, announce_ms, duration_ms, segment } => {
                    ArchiveStats::count(&self.stats.segments);
                    debug!(stream = %segment.stream, seq = segment.seq, cid = %segment.cid, announce_ms, "segment archived");
                    let ev = SessionEvent::Segment {
                        seq: segment.seq,
                        cid: segment.cid.clone(),
                        duration_ms,
                    };
                    self.sfu.broadcast(&segment.stream, &ev);
                    if let Some(pinner) = &self.pinner {
                        pinner.add(&segment.init);
                        pinner.add(&segment.cid);
                    }
                    if let Some(announce) = &self.announce {
                        announce(segment);
                    }
                }
                Action::BuildVod { rec, mut index } => {
                    let (store, stats) = (self.store.clone(), self.stats.clone());
                    io.spawn(Done::Vod(rec, None), async move {
                        let root = match tokio::task::spawn_blocking(move || finish_index(&store, &mut index).map(|()| index.vod)).await {
                            Ok(Ok(root)) => root,
                            Ok(Err(e)) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(error = %e, "cannot build the VOD directory");
                                None
                            }
                            Err(e) => {
                                ArchiveStats::count(&stats.errors);
                                warn!(error = %e, "VOD directory task failed");
                                None
                            }
                        };
                        Done::Vod(rec, root)
                    });
                }
                Action::Finished { rec: _, stream, vod, segments } => {
                    info!(stream = %stream, vod = %vod, segments, "recording finished");
                    ArchiveStats::count(&self.stats.recordings);
                    if let Some(pinner) = &self.pinner {
                        pinner.add(&vod);
                    }
                    self.owners.insert(&stream, [vod.as_str()]);
                    if let Some(hook) = &self.on_finished {
                        hook(&stream, &vod, segments);
                    }
                }
                Action::Dropped { rec, seq, reason } => {
                    ArchiveStats::count(&self.stats.dropped);
                    let stream = open.get(&rec).map(|o| o.index.lock().unwrap_or_else(|e| e.into_inner()).stream.clone());
                    match reason {
                        DropReason::NoInit => warn!(stream = ?stream, seq, "media segment before any init segment; dropped"),
                        DropReason::Backlog => warn!(stream = ?stream, seq, queued = crate::core::WRITE_QUEUE, "storage is behind for this recording; media segment dropped (a gap)"),
                    }
                }
                Action::Closed { rec } => {
                    if let Some(o) = open.remove(&rec) {
                        let stream = o.index.lock().unwrap_or_else(|e| e.into_inner()).stream.clone();
                        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
                        if edges.get(&stream).is_some_and(|e| Arc::ptr_eq(e, &o.edge)) {
                            edges.remove(&stream);
                        }
                        o.edge.changed.send_replace(());
                    }
                }
            }
        }
    }
}

/// Indexes the last `last_files` files of a recording, and its VOD root, as the stream's.
fn own(owners: &Owners, ix: &RecordingIndex, last_files: usize) {
    let files = &ix.files[ix.files.len().saturating_sub(last_files)..];
    owners.insert(&ix.stream, files.iter().map(|f| f.cid.as_str()).chain(ix.vod.as_deref()));
}

/// Hands a storage step's outcome to the core.
fn report(core: &mut Core, done: Done) -> Vec<Action> {
    match done {
        Done::Stored(rec, entry) => core.stored(rec, entry),
        Done::Persisted(rec, ok) => core.persisted(rec, ok, Instant::now()),
        Done::Vod(rec, root) => core.vod_built(rec, root),
    }
}
