//! The archive service: records every origin stream into CMAF segments stored as UnixFS in the
//! node's blockstore, while it is live.
//!
//! The media plane copies origin publishers' packets into a bounded tap channel (it never waits on
//! it); one task here runs a [`Recorder`] per live stream and hands its init and media segments,
//! in order, to a writer task per recording. The writer imports each file (blocks fsynced before
//! it returns), then appends it to the recording's index on disk, and only then announces the
//! CID: to viewers through their event channel and to the mesh on the stream's segment topic.
//! When the stream ends, a UnixFS directory (init, segments, VOD playlist, manifest) becomes the
//! VOD root.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relaycast_archive::owners::Owners;
use relaycast_archive::{InitSegment, Manifest, MediaKind, Recorder, RecorderConfig, RecorderOutput, RtpPacket, Segment, VideoCodec};
use relaycast_ipfs::unixfs::DirectoryBuilder;
use relaycast_ipfs::{Blockstore, Entry, Profile};
use relaycast_sfu::packet::{MediaPacket, TrackKind};
use relaycast_sfu::stream::SessionEvent;
use relaycast_sfu::tap::TapEvent;
use relaycast_sfu::Sfu;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::pin;
use crate::stats::ArchiveStats;
use crate::RecorderError;

/// How long after the first video packet the archive waits for higher simulcast layers before
/// it records the highest one that has sent a keyframe.
const LAYER_SETTLE: Duration = Duration::from_millis(1000);
/// Segments in the live playlist's window.
pub const LIVE_WINDOW: usize = 6;
/// Jobs a recording's writer queues before the recorder task waits.
const WRITER_QUEUE: usize = 64;

/// One file of a recording, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredFile {
    /// Name inside the VOD directory.
    pub name: String,
    /// Its CID.
    pub cid: String,
    /// File size in bytes.
    pub size: u64,
    /// Size of its whole DAG (a directory link's Tsize).
    pub dag_size: u64,
}

/// Everything known about one recording; persisted as `index.json` after every change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingIndex {
    /// Stream name.
    pub stream: String,
    /// Wall-clock start, milliseconds since the Unix epoch (names the recording).
    pub started_unix_ms: u64,
    /// Segments, playlists' source; `None` until the first init segment is stored.
    pub manifest: Option<Manifest>,
    /// Init and media segment files in order.
    pub files: Vec<StoredFile>,
    /// Root CID of the VOD directory, once the stream ended.
    pub vod: Option<String>,
    /// The simulcast layer recorded (`q`, `h`, `f`).
    #[serde(default)]
    pub layer: Option<String>,
    /// Per segment, milliseconds from the recorder closing it to its CID being announced
    /// (blocks and index durable); not persisted.
    #[serde(skip)]
    pub announce_ms: Vec<f64>,
}

/// The archive service of a node.
pub struct Archiver {
    sfu: Arc<Sfu>,
    store: Arc<Blockstore>,
    root: PathBuf,
    profile: Profile,
    layer: Option<u8>,
    /// Latest recording per stream name.
    recordings: Mutex<HashMap<String, Arc<Mutex<RecordingIndex>>>>,
    /// Called once a segment is durable: the mesh's segment topic.
    announce: Option<Announce>,
    /// A kubo RPC base URL each finished recording's CAR is imported into.
    pin_to: Option<String>,
    /// Writer tasks, awaited at shutdown.
    writers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Called when a recording's VOD root is written (webhooks).
    on_finished: Option<OnFinished>,
    /// Recordings a crash left open and [`Archiver::open`] closed: stream, VOD root, segments;
    /// handed to `on_finished` once it is set.
    closed_at_open: Mutex<Vec<(String, String, u64)>>,
    /// Counts for `/metrics`.
    stats: Arc<ArchiveStats>,
    /// Which stream each stored file belongs to (the gateway's check under `--watch-auth`).
    owners: Arc<Owners>,
}

/// Announces a durable segment (to the mesh).
pub type Announce = Arc<dyn Fn(relaycast_mesh::SegmentAnnouncement) + Send + Sync>;

/// Told about each recording closed into a VOD root: stream, VOD root CID, media segments.
pub type OnFinished = Arc<dyn Fn(&str, &str, u64) + Send + Sync>;

/// A stream being recorded.
struct Active {
    name: String,
    generation: u32,
    layer: Option<u8>,
    first_video: Option<Instant>,
    /// Bit per simulcast layer that has sent a keyframe.
    keyframed_layers: u8,
    recorder: Option<Recorder>,
    writer: mpsc::Sender<WriterJob>,
    index: Arc<Mutex<RecordingIndex>>,
}

enum WriterJob {
    Init(InitSegment),
    /// A segment and when the recorder closed it.
    Segment(Segment, Instant),
    Finish,
}

impl Archiver {
    /// Opens the archive under `data_dir` (blocks in `blocks/`, indexes in `archive/`) and loads
    /// the recordings found there; recordings a crash left open are closed into VOD roots.
    pub fn open(
        sfu: Arc<Sfu>,
        store: Arc<Blockstore>,
        data_dir: &Path,
        profile: Profile,
        layer: Option<u8>,
    ) -> std::io::Result<Arc<Self>> {
        let root = data_dir.join("archive");
        std::fs::create_dir_all(&root)?;
        let me = Archiver { sfu, store, root, profile, layer, recordings: Mutex::default(), announce: None, pin_to: None, writers: Mutex::default(), on_finished: None, closed_at_open: Mutex::default(), stats: Arc::default(), owners: Arc::default() };
        me.load_existing();
        Ok(Arc::new(me))
    }

    /// The same archiver, announcing durable segments through `announce(stream, json)`.
    pub fn with_announcer(mut self: Arc<Self>, announce: Announce) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.announce = Some(announce);
        }
        self
    }

    /// The same archiver, importing each finished recording's CAR into the kubo node at `url`.
    pub fn with_pin_to(mut self: Arc<Self>, url: Option<String>) -> Arc<Self> {
        if let Some(me) = Arc::get_mut(&mut self) {
            me.pin_to = url;
        }
        self
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
        if let Some(me) = Arc::get_mut(&mut self) {
            let closed = std::mem::take(&mut *me.closed_at_open.lock().unwrap_or_else(|e| e.into_inner()));
            for (stream, vod, segments) in closed {
                on_finished(&stream, &vod, segments);
            }
            me.on_finished = Some(on_finished);
        }
        self
    }

    fn recordings(&self) -> MutexGuard<'_, HashMap<String, Arc<Mutex<RecordingIndex>>>> {
        self.recordings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest recording of `stream`.
    pub fn recording(&self, stream: &str) -> Option<RecordingIndex> {
        let r = self.recordings().get(stream).cloned()?;
        let g = r.lock().unwrap_or_else(|e| e.into_inner());
        Some(g.clone())
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

    /// Runs the recorder task until the tap closes.
    /// Runs the recorder task until the tap closes or `stop` fires; then drains what the tap
    /// still holds, finishes every recording (VOD roots) and waits for the writers.
    pub async fn run(self: Arc<Self>, mut tap: mpsc::Receiver<TapEvent>, mut stop: tokio::sync::oneshot::Receiver<()>) {
        let mut active: HashMap<u64, Active> = HashMap::new();
        loop {
            let deadline = active
                .values()
                .filter_map(|a| a.recorder.as_ref().and_then(Recorder::next_deadline))
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(500));
            tokio::select! {
                _ = &mut stop => {
                    while let Ok(ev) = tap.try_recv() {
                        self.on_tap(&mut active, ev).await;
                    }
                    break;
                }
                ev = tap.recv() => {
                    let Some(ev) = ev else { break };
                    self.on_tap(&mut active, ev).await;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    for (id, a) in active.iter_mut() {
                        let out = match a.recorder.as_mut() {
                            Some(r) => r.poll(now),
                            None => continue,
                        };
                        self.handle_outputs(*id, a, out).await;
                    }
                }
            }
        }
        let ids: Vec<u64> = active.keys().copied().collect();
        for id in ids {
            if let Some(a) = active.remove(&id) {
                self.finish(id, a).await;
            }
        }
        let writers = std::mem::take(&mut *self.writers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in writers {
            let _ = w.await;
        }
    }

    async fn on_tap(&self, active: &mut HashMap<u64, Active>, ev: TapEvent) {
        match ev {
            TapEvent::Started { stream_id, stream, generation } => {
                if let Some(old) = active.remove(&stream_id) {
                    self.finish(stream_id, old).await;
                }
                let (writer, index) = self.start_recording(&stream);
                info!(stream = %stream, "archiving the stream");
                active.insert(
                    stream_id,
                    Active { name: stream, generation, layer: None, first_video: None, keyframed_layers: 0, recorder: None, writer, index },
                );
            }
            TapEvent::Ended { stream_id, generation } => {
                if active.get(&stream_id).is_some_and(|a| a.generation == generation)
                    && let Some(old) = active.remove(&stream_id)
                {
                    self.finish(stream_id, old).await;
                }
            }
            TapEvent::Packet(pkt) => {
                let now = Instant::now();
                let Some(a) = active.get_mut(&pkt.stream_id) else { return };
                if pkt.generation != a.generation {
                    return;
                }
                let Some(rtp) = self.select(a, &pkt, now) else { return };
                let out = match a.recorder.as_mut() {
                    Some(r) => r.push(rtp, now),
                    None => return,
                };
                self.handle_outputs(pkt.stream_id, a, out).await;
            }
        }
    }

    /// Chooses the archived layer (the configured one, else the highest the publisher sends),
    /// creates the recorder on the first packet of it, and converts the packets it wants.
    fn select(&self, a: &mut Active, pkt: &MediaPacket, now: Instant) -> Option<RtpPacket> {
        let kind = match pkt.kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => {
                let bit = 1u8 << pkt.layer.min(7);
                if pkt.keyframe_start {
                    a.keyframed_layers |= bit;
                }
                let first = *a.first_video.get_or_insert(now);
                if a.layer.is_none() && a.keyframed_layers != 0 {
                    // The configured layer once it has sent a keyframe; else, after the settle
                    // time (simulcast layers start one after the other), the highest layer that
                    // has sent a keyframe — at once when that is the top layer.
                    let configured = self.layer.filter(|l| a.keyframed_layers & (1 << l) != 0);
                    let highest = 7 - a.keyframed_layers.leading_zeros() as u8;
                    let top = usize::from(highest) + 1 >= relaycast_sfu::layer::MAX_LAYERS;
                    // A configured layer that never sends is given up on after a while.
                    let waited = now.duration_since(first);
                    let may_pick = self.layer.is_none() || waited >= 3 * LAYER_SETTLE;
                    if configured.is_some() || (may_pick && (top || waited >= LAYER_SETTLE)) {
                        let layer = configured.unwrap_or(highest);
                        a.layer = Some(layer);
                        let rid = relaycast_sfu::stream::RIDS.get(usize::from(layer)).copied().unwrap_or("");
                        a.index.lock().unwrap_or_else(|e| e.into_inner()).layer = Some(rid.to_string());
                        let codec = pkt.codec.video().unwrap_or(VideoCodec::Vp8);
                        debug!(stream = %a.name, layer, ?codec, "archive layer chosen");
                        a.recorder = Some(Recorder::new(RecorderConfig { video: Some(codec), ..RecorderConfig::default() }));
                        self.sfu.request_keyframe(pkt.stream_id, layer);
                    }
                }
                if a.layer != Some(pkt.layer) {
                    return None;
                }
                MediaKind::Video
            }
        };
        a.recorder.as_ref()?;
        Some(RtpPacket {
            kind,
            seq: pkt.seq,
            timestamp: pkt.ts,
            marker: pkt.marker,
            payload: pkt.payload.clone(),
            arrival: pkt.arrival,
        })
    }

    /// Hands a recorder's outputs on: files to the recording's writer, keyframe requests to the
    /// publisher.
    async fn handle_outputs(&self, stream_id: u64, a: &Active, out: Vec<RecorderOutput>) {
        for o in out {
            let job = match o {
                RecorderOutput::InitSegment(i) => WriterJob::Init(i),
                RecorderOutput::Segment(s) => WriterJob::Segment(s, Instant::now()),
                RecorderOutput::RequestKeyframe => {
                    if let Some(layer) = a.layer {
                        self.sfu.request_keyframe(stream_id, layer);
                    }
                    continue;
                }
            };
            if a.writer.send(job).await.is_err() {
                ArchiveStats::count(&self.stats.errors);
                warn!(stream = %a.name, "archive writer stopped; segment lost");
            }
        }
    }

    async fn finish(&self, stream_id: u64, mut a: Active) {
        let out = a.recorder.as_mut().map(Recorder::finish).unwrap_or_default();
        self.handle_outputs(stream_id, &a, out).await;
        let _ = a.writer.send(WriterJob::Finish).await;
    }

    /// Registers a new recording of `stream` and starts its writer.
    fn start_recording(&self, stream: &str) -> (mpsc::Sender<WriterJob>, Arc<Mutex<RecordingIndex>>) {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let index = Arc::new(Mutex::new(RecordingIndex {
            stream: stream.to_string(),
            started_unix_ms: started,
            manifest: None,
            files: Vec::new(),
            vod: None,
            layer: None,
            announce_ms: Vec::new(),
        }));
        self.recordings().insert(stream.to_string(), index.clone());
        let dir = self.root.join(stream).join(started.to_string());
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            store: self.store.clone(),
            profile: self.profile,
            dir,
            index: index.clone(),
            sfu: self.sfu.clone(),
            announce: self.announce.clone(),
            pin_to: self.pin_to.clone(),
            on_finished: self.on_finished.clone(),
            stats: self.stats.clone(),
            owners: self.owners.clone(),
        };
        let handle = tokio::spawn(writer.run(rx));
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers.retain(|h| !h.is_finished());
        writers.push(handle);
        (tx, index)
    }
}

/// Stores a recording's files in order and keeps its index on disk.
struct Writer {
    store: Arc<Blockstore>,
    profile: Profile,
    dir: PathBuf,
    index: Arc<Mutex<RecordingIndex>>,
    sfu: Arc<Sfu>,
    announce: Option<Announce>,
    pin_to: Option<String>,
    on_finished: Option<OnFinished>,
    stats: Arc<ArchiveStats>,
    owners: Arc<Owners>,
}

impl Writer {
    fn index(&self) -> MutexGuard<'_, RecordingIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run(self, mut rx: mpsc::Receiver<WriterJob>) {
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            warn!(dir = %self.dir.display(), error = %e, "cannot create the recording directory");
        }
        let mut init_cid: Option<String> = None;
        let mut codecs = String::new();
        while let Some(job) = rx.recv().await {
            match job {
                WriterJob::Init(init) => {
                    let n = self.index().files.iter().filter(|f| f.name.starts_with("init")).count();
                    let name = if n == 0 { "init.mp4".to_string() } else { format!("init-{n}.mp4") };
                    codecs = init.codecs();
                    let size = init.bytes.len() as u64;
                    let Some(entry) = self.import(init.bytes).await else { continue };
                    self.stats.bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                    let cid = entry.cid.to_string();
                    {
                        let mut ix = self.index();
                        ix.files.push(stored(&name, &entry));
                        if ix.manifest.is_none() {
                            ix.manifest = Some(Manifest::new(cid.clone(), codecs.clone()));
                        }
                    }
                    init_cid = Some(cid);
                    self.persist();
                }
                WriterJob::Segment(seg, closed) => {
                    let Some(init) = init_cid.clone() else {
                        warn!("media segment before any init segment; dropped");
                        continue;
                    };
                    let (seq, duration, start) = (seg.seq, seg.duration, seg.start_wallclock);
                    let size = seg.bytes.len() as u64;
                    let Some(entry) = self.import(seg.bytes).await else { continue };
                    let cid = entry.cid.to_string();
                    let stream = {
                        let mut ix = self.index();
                        ix.files.push(stored(&format!("segment-{seq:06}.m4s"), &entry));
                        if let Some(m) = ix.manifest.as_mut() {
                            m.push_segment(seq, cid.clone(), duration, start, &init);
                        }
                        ix.stream.clone()
                    };
                    // Durable blocks, then a durable index, then the announcement.
                    self.persist();
                    ArchiveStats::count(&self.stats.segments);
                    self.stats.bytes.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
                    let announce_ms = closed.elapsed().as_secs_f64() * 1000.0;
                    self.index().announce_ms.push(announce_ms);
                    debug!(stream = %stream, seq, %cid, announce_ms, "segment archived");
                    let ev = SessionEvent::Segment { seq, cid: cid.clone(), duration_ms: duration.as_millis() as u64 };
                    self.sfu.broadcast(&stream, &ev);
                    if let Some(announce) = &self.announce {
                        announce(relaycast_mesh::SegmentAnnouncement {
                            stream: stream.clone(),
                            seq,
                            cid: cid.clone(),
                            init: init.clone(),
                            codecs: codecs.clone(),
                            duration: duration.as_secs_f64(),
                        });
                    }
                }
                WriterJob::Finish => {
                    let mut ix = self.index().clone();
                    if ix.manifest.is_some() {
                        let store = self.store.clone();
                        let done = tokio::task::spawn_blocking(move || finish_index(&store, &mut ix).map(|()| ix)).await;
                        match done {
                            Ok(Ok(ix)) => {
                                info!(stream = %ix.stream, vod = ?ix.vod, segments = ix.files.len(), "recording finished");
                                ArchiveStats::count(&self.stats.recordings);
                                if let (Some(url), Some(root)) = (&self.pin_to, &ix.vod) {
                                    let (store, url, root, stats) = (self.store.clone(), url.clone(), root.clone(), self.stats.clone());
                                    tokio::spawn(async move {
                                        let pinned = pin::pin_car(store, url, root).await;
                                        ArchiveStats::count(if pinned { &stats.pins } else { &stats.pin_failures });
                                    });
                                }
                                own(&self.owners, &ix, 0);
                                if let (Some(hook), Some(root)) = (&self.on_finished, &ix.vod) {
                                    let segments = ix.manifest.as_ref().map_or(0, |m| m.segments.len() as u64);
                                    hook(&ix.stream, root, segments);
                                }
                                *self.index() = ix;
                            }
                            Ok(Err(e)) => {
                                ArchiveStats::count(&self.stats.errors);
                                warn!(error = %e, "cannot build the VOD directory");
                            }
                            Err(e) => {
                                ArchiveStats::count(&self.stats.errors);
                                warn!(error = %e, "VOD directory task failed");
                            }
                        }
                    }
                    self.persist();
                    break;
                }
            }
        }
    }

    /// Imports one file; its blocks are durable when this returns.
    async fn import(&self, bytes: Vec<u8>) -> Option<Entry> {
        let store = self.store.clone();
        let profile = self.profile;
        match tokio::task::spawn_blocking(move || store.import_reader(&bytes[..], profile)).await {
            Ok(Ok(e)) => Some(e),
            Ok(Err(e)) => {
                ArchiveStats::count(&self.stats.errors);
                warn!(error = %e, "cannot store an archive file");
                None
            }
            Err(e) => {
                ArchiveStats::count(&self.stats.errors);
                warn!(error = %e, "archive import task failed");
                None
            }
        }
    }

    fn persist(&self) {
        let ix = self.index().clone();
        own(&self.owners, &ix, 1);
        if let Err(e) = write_index(&self.dir, &ix) {
            ArchiveStats::count(&self.stats.errors);
            warn!(dir = %self.dir.display(), error = %e, "cannot write the recording index");
        }
    }
}

/// Indexes the last `last_files` files of a recording, and its VOD root, as the stream's.
fn own(owners: &Owners, ix: &RecordingIndex, last_files: usize) {
    let files = &ix.files[ix.files.len().saturating_sub(last_files)..];
    owners.insert(&ix.stream, files.iter().map(|f| f.cid.as_str()).chain(ix.vod.as_deref()));
}

fn stored(name: &str, e: &Entry) -> StoredFile {
    StoredFile { name: name.to_string(), cid: e.cid.to_string(), size: e.file_size, dag_size: e.dag_size }
}

/// Writes `index.json` atomically and durably.
fn write_index(dir: &Path, index: &RecordingIndex) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("index.json.tmp");
    let bytes = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("index.json"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Ends a recording: the VOD playlist and manifest are stored, and a UnixFS directory of every
/// file becomes the VOD root.
fn finish_index(store: &Blockstore, ix: &mut RecordingIndex) -> Result<(), RecorderError> {
    let Some(manifest) = ix.manifest.as_mut() else { return Ok(()) };
    manifest.end();
    let playlist = relaycast_archive::playlist::vod(manifest);
    let manifest_json = manifest.to_json();
    let mut dir = DirectoryBuilder::new();
    let mut add = |name: &str, e: Entry| dir.add(name, e);
    for f in &ix.files {
        let cid: relaycast_ipfs::Cid = f.cid.parse().map_err(|_| RecorderError::BadCid { cid: f.cid.clone() })?;
        add(&f.name, Entry { cid, file_size: f.size, dag_size: f.dag_size })?;
    }
    add("vod.m3u8", store.import_reader(playlist.as_bytes(), Profile::default())?)?;
    add("manifest.json", store.import_reader(&manifest_json[..], Profile::default())?)?;
    let root = store.put_directory(dir)?;
    ix.vod = Some(root.cid.to_string());
    Ok(())
}
