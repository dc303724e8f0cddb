//! The sans-IO recording core: tap events and time in, actions out.
//!
//! [`Core`] keeps every recording's state: which publisher generation and simulcast layers are
//! recorded (every layer the publisher sends, the highest first, unless one is configured), a
//! [`Recorder`] per layer cutting segments, the recording's index, and the queue of files waiting
//! to be stored. The highest layer is the recording's main rendition (its `manifest`, announced
//! to the mesh, with low-latency parts); every other layer is a rendition of its own
//! ([`crate::index::Rendition`]) whose files live under `{rid}/`. A keyframe request from any
//! layer's segmenter goes to every recorded layer, so that their segments start together. It never touches a disk, a socket or a clock: the driver
//! ([`crate::Archiver`]) feeds it [`TapInput`]s with the current time and performs the
//! [`Action`]s it returns, reporting each storage action's outcome back
//! ([`Core::stored`], [`Core::persisted`], [`Core::vod_built`]).
//!
//! Each recording has one storage lane: at most one of its [`Action::Write`],
//! [`Action::Persist`] or [`Action::BuildVod`] is outstanding at a time, so files are stored in
//! order. A segment is shown ([`Action::Publish`]) and announced ([`Action::Announce`]) only
//! after its blocks were stored and then the index naming it was made durable; a failed write
//! or index write is never shown nor announced.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use relaycast_archive::lowlatency::PART_TARGET;
use relaycast_archive::segmenter::SegmenterConfig;
use relaycast_archive::{Container, EdgeUpdate, InitSegment, Manifest, MediaKind, Recorder, RecorderConfig, RecorderOutput, RtpPacket, Segment, VideoCodec};
use relaycast_mesh::SegmentAnnouncement;
use relaycast_sfu::layer::MAX_LAYERS;
use relaycast_sfu::stream::RIDS;

use crate::index::{RecordingIndex, Rendition, StoredFile};

/// How long after the first video packet the archive waits for higher simulcast layers before
/// it records the highest one that has sent a keyframe.
pub const LAYER_SETTLE: Duration = Duration::from_millis(1000);

/// How long a publisher may send audio without any video before its stream is recorded as
/// audio only (a radio); the audio of that time is kept and recorded.
pub const AUDIO_ONLY_SETTLE: Duration = Duration::from_millis(2000);

/// Most audio packets kept while a stream may still turn out to be audio only (Opus frames of
/// 20 ms: 2.5× the settle time).
pub const EARLY_AUDIO: usize = 250;

/// Files a recording queues for storage; a media segment cut while its recording's queue is this
/// long is dropped ([`DropReason::Backlog`], a gap in its playlists), so that one slow or full
/// disk costs only its own recording and the tap is always read.
pub const WRITE_QUEUE: usize = 64;

/// Why a media segment was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No init segment was stored before it.
    NoInit,
    /// Its recording had [`WRITE_QUEUE`] files waiting for storage.
    Backlog,
}

/// One packet of a publisher, as the core sees it.
#[derive(Debug, Clone)]
pub struct TapPacket {
    /// Registry id of the stream.
    pub stream_id: u64,
    /// Publisher generation.
    pub generation: u32,
    /// Simulcast layer index (0 = q, 1 = h, 2 = f); 0 for audio and non-simulcast video.
    pub layer: u8,
    /// True on the first packet of a keyframe.
    pub keyframe_start: bool,
    /// The video codec of the payload (ignored for audio).
    pub codec: VideoCodec,
    /// The packet (its `kind` tells audio from video).
    pub rtp: RtpPacket,
}

/// What the tap reports, in the core's terms.
#[derive(Debug, Clone)]
pub enum TapInput {
    /// A publisher started feeding a stream.
    Started {
        /// Registry id of the stream.
        stream_id: u64,
        /// Stream name.
        stream: String,
        /// Publisher generation.
        generation: u32,
    },
    /// One packet of that publisher.
    Packet(TapPacket),
    /// The publisher left.
    Ended {
        /// Registry id of the stream.
        stream_id: u64,
        /// Publisher generation.
        generation: u32,
    },
}

/// Names one recording for the life of a [`Core`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(pub u64);

/// Which file a [`Action::Write`] stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An init segment.
    Init,
    /// Media segment `seq`.
    Segment {
        /// Its media sequence number.
        seq: u64,
    },
}

/// The main rendition's track (the highest layer recorded).
pub const MAIN: usize = 0;

/// Where a stored file ended up: what [`Core::stored`] is told on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The file's CID.
    pub cid: String,
    /// File size in bytes.
    pub size: u64,
    /// Size of its whole DAG.
    pub dag_size: u64,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A recording began: its index (empty) is the stream's latest recording from now on.
    Started {
        /// The recording.
        rec: RecordingId,
        /// Its index.
        index: RecordingIndex,
    },
    /// Ask the publisher of `stream_id` for a keyframe on `layer` (every recorded layer at once).
    RequestKeyframe {
        /// Registry id of the stream.
        stream_id: u64,
        /// Simulcast layer.
        layer: u8,
    },
    /// Show the recording's index as it is now (layer chosen, or files whose index is durable);
    /// nothing to store. What is shown never runs ahead of what a restart finds.
    Publish {
        /// The recording.
        rec: RecordingId,
        /// The index now.
        index: RecordingIndex,
    },
    /// Store `bytes` as a file (blocks durable before reporting); report with [`Core::stored`].
    Write {
        /// The recording.
        rec: RecordingId,
        /// Which file.
        kind: FileKind,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Durably write the recording's index; report with [`Core::persisted`]. It is shown (an
    /// [`Action::Publish`]) only once written.
    Persist {
        /// The recording.
        rec: RecordingId,
        /// The index to write.
        index: RecordingIndex,
    },
    /// A durable segment: tell viewers and the mesh.
    Announce {
        /// The recording.
        rec: RecordingId,
        /// Segment close to announcement, in milliseconds.
        announce_ms: f64,
        /// The segment's duration in whole milliseconds (viewers' `segment` event).
        duration_ms: u64,
        /// The announcement.
        segment: SegmentAnnouncement,
    },
    /// Build the VOD directory of `index` (playlist, manifest, every file) and report its root
    /// CID with [`Core::vod_built`].
    BuildVod {
        /// The recording.
        rec: RecordingId,
        /// Its index, files all stored.
        index: RecordingIndex,
    },
    /// A recording was closed into a VOD root (webhooks, pinning).
    Finished {
        /// The recording.
        rec: RecordingId,
        /// Stream name.
        stream: String,
        /// VOD root CID.
        vod: String,
        /// Media segments in it.
        segments: u64,
    },
    /// The recording's live edge changed (low-latency HLS; served from memory, not stored).
    Edge {
        /// The recording.
        rec: RecordingId,
        /// What changed.
        update: EdgeUpdate,
    },
    /// A media segment was dropped before storage (a gap in the recording).
    Dropped {
        /// The recording.
        rec: RecordingId,
        /// Its sequence number.
        seq: u64,
        /// Why.
        reason: DropReason,
    },
    /// The recording is complete and its index durable (or given up on): forget it.
    Closed {
        /// The recording.
        rec: RecordingId,
    },
}

/// A file or step waiting in a recording's storage lane (files tagged with their track).
#[derive(Debug)]
enum Job {
    Init(usize, InitSegment),
    /// A segment and when the recorder closed it.
    Segment(usize, Segment, Instant),
    Finish,
}

/// The storage step a recording waits on.
#[derive(Debug)]
enum Inflight {
    Init { track: usize, codecs: String, resolution: Option<[u32; 2]> },
    Segment { track: usize, seq: u64, duration: Duration, start: SystemTime, closed: Instant },
    /// The index write after a stored file, and the segment it then announces.
    Persist { announce: Option<(SegmentAnnouncement, u64, Instant)> },
    Vod,
    /// The last index write; the recording closes after it.
    FinalPersist,
}

/// One simulcast layer a recording records.
#[derive(Debug)]
struct Track {
    layer: u8,
    recorder: Option<Recorder>,
    init_cid: Option<String>,
    codecs: String,
}

impl Track {
    /// Where its files go in the VOD directory: the top level for the main rendition, else
    /// `{rid}/`.
    fn dir(&self, track: usize) -> String {
        if track == MAIN { String::new() } else { format!("{}/", rid(self.layer)) }
    }
}

/// The layer index of rid `rid` (`q` 0, `h` 1, `f` 2; anything else below them).
pub fn rid_rank(rid: &str) -> i32 {
    RIDS.iter().position(|r| *r == rid).map_or(-1, |i| i as i32)
}

/// The rid of simulcast layer `layer` (`q`, `h`, `f`).
fn rid(layer: u8) -> &'static str {
    RIDS.get(usize::from(layer)).copied().unwrap_or("")
}

/// One recording.
#[derive(Debug)]
struct Rec {
    stream_id: u64,
    generation: u32,
    first_video: Option<Instant>,
    first_audio: Option<Instant>,
    /// Audio before any video (at most [`EARLY_AUDIO`] packets): the start of an audio-only
    /// recording, once it is one.
    early_audio: Vec<RtpPacket>,
    /// Bit per simulcast layer that has sent a keyframe.
    keyframed_layers: u8,
    /// The layers recorded, [`MAIN`] first; empty until chosen.
    tracks: Vec<Track>,
    index: RecordingIndex,
    queue: VecDeque<Job>,
    inflight: Option<Inflight>,
}

impl Rec {
    fn recorders(&self) -> impl Iterator<Item = &Recorder> {
        self.tracks.iter().filter_map(|t| t.recorder.as_ref())
    }
}

/// The recordings of a node; see the module documentation.
#[derive(Debug)]
pub struct Core {
    /// The configured layer (`--archive-layer`, recorded alone), else every layer the publisher
    /// sends.
    layer: Option<u8>,
    next_id: u64,
    /// The recording of each live stream.
    live: HashMap<u64, RecordingId>,
    /// Live recordings and ended ones still storing.
    recs: BTreeMap<RecordingId, Rec>,
}

impl Core {
    /// A core recording `layer` alone when the publisher sends it (else every layer it sends).
    pub fn new(layer: Option<u8>) -> Self {
        Self { layer, next_id: 0, live: HashMap::new(), recs: BTreeMap::new() }
    }

    /// Handles one tap event at `now` (`wall` is the same instant on the wall clock).
    pub fn handle(&mut self, input: TapInput, now: Instant, wall: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            TapInput::Started { stream_id, stream, generation } => {
                if let Some(old) = self.live.remove(&stream_id) {
                    self.end(old, now, &mut out);
                }
                let rec = RecordingId(self.next_id);
                self.next_id += 1;
                let started = wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                let index = RecordingIndex {
                    stream,
                    started_unix_ms: started,
                    manifest: None,
                    files: Vec::new(),
                    vod: None,
                    layer: None,
                    renditions: Vec::new(),
                    resolution: None,
                    pinned: false,
                    announce_ms: Vec::new(),
                };
                out.push(Action::Started { rec, index: index.clone() });
                self.live.insert(stream_id, rec);
                self.recs.insert(
                    rec,
                    Rec {
                        stream_id,
                        generation,
                        first_video: None,
                        first_audio: None,
                        early_audio: Vec::new(),
                        keyframed_layers: 0,
                        tracks: Vec::new(),
                        index,
                        queue: VecDeque::new(),
                        inflight: None,
                    },
                );
            }
            TapInput::Ended { stream_id, generation } => {
                if let Some(&rec) = self.live.get(&stream_id)
                    && self.recs.get(&rec).is_some_and(|r| r.generation == generation)
                {
                    self.live.remove(&stream_id);
                    self.end(rec, now, &mut out);
                }
            }
            TapInput::Packet(pkt) => {
                let Some(&rec) = self.live.get(&pkt.stream_id) else { return out };
                let layer = self.layer;
                let Some(r) = self.recs.get_mut(&rec) else { return out };
                if pkt.generation != r.generation {
                    return out;
                }
                let early = select(r, layer, rec, &pkt, now, wall, &mut out);
                let mut recorded = Vec::new();
                for (track, t) in r.tracks.iter_mut().enumerate() {
                    let Some(recorder) = t.recorder.as_mut() else { continue };
                    for p in &early {
                        recorded.push((track, recorder.push(p.clone(), now)));
                    }
                    if pkt.rtp.kind == MediaKind::Audio || t.layer == pkt.layer {
                        recorded.push((track, recorder.push(pkt.rtp.clone(), now)));
                    }
                }
                for (track, outputs) in recorded {
                    self.on_recorder(rec, track, outputs, now, &mut out);
                }
            }
        }
        out
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called if no packet arrives.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.recs.values().flat_map(Rec::recorders).filter_map(Recorder::next_deadline).min()
    }

    /// Lets every live recording release what it held waiting for late packets by `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let recs: Vec<RecordingId> = self.live.values().copied().collect();
        for rec in recs {
            let Some(r) = self.recs.get_mut(&rec) else { continue };
            let recorded: Vec<(usize, Vec<RecorderOutput>)> =
                r.tracks.iter_mut().enumerate().filter_map(|(i, t)| Some((i, t.recorder.as_mut()?.poll(now)))).collect();
            for (track, outputs) in recorded {
                self.on_recorder(rec, track, outputs, now, &mut out);
            }
        }
        out
    }

    /// Ends every live recording at `now` (the node is stopping): last segments, then VOD roots.
    pub fn end_all(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let live: Vec<RecordingId> = self.live.drain().map(|(_, rec)| rec).collect();
        for rec in live {
            self.end(rec, now, &mut out);
        }
        out
    }

    /// True when no recording is live or storing.
    pub fn is_idle(&self) -> bool {
        self.recs.is_empty()
    }

    /// The outcome of the [`Action::Write`] of `rec`: where the file is stored, or `None` when
    /// storing it failed (the file is lost, nothing is announced).
    pub fn stored(&mut self, rec: RecordingId, entry: Option<StoredEntry>) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(r) = self.recs.get_mut(&rec) else { return out };
        let step = r.inflight.take();
        if let Some(entry) = entry {
            match step {
                Some(Inflight::Init { track, codecs, resolution }) => {
                    let Some(t) = r.tracks.get_mut(track) else { return out };
                    let dir = t.dir(track);
                    let n = r.index.files.iter().filter(|f| f.name.strip_prefix(dir.as_str()).is_some_and(|n| n.starts_with("init"))).count();
                    let name = format!("{dir}{}", Container::of_codecs(&codecs).init_name(n));
                    r.index.files.push(stored_file(name, &entry));
                    let (manifest, size) = if track == MAIN {
                        (&mut r.index.manifest, &mut r.index.resolution)
                    } else {
                        let layer = rid(t.layer);
                        // Highest layer first, whichever started first.
                        let i = match r.index.renditions.iter().position(|x| x.rid == layer) {
                            Some(i) => i,
                            None => {
                                let at = r.index.renditions.iter().position(|x| rid_rank(&x.rid) < rid_rank(layer)).unwrap_or(r.index.renditions.len());
                                r.index.renditions.insert(at, Rendition { rid: layer.to_string(), manifest: None, resolution: None });
                                at
                            }
                        };
                        let x = &mut r.index.renditions[i];
                        (&mut x.manifest, &mut x.resolution)
                    };
                    manifest.get_or_insert_with(|| Manifest::new(entry.cid.clone(), codecs.clone()));
                    if resolution.is_some() {
                        *size = resolution;
                    }
                    t.codecs = codecs;
                    if track == MAIN {
                        out.push(Action::Edge { rec, update: EdgeUpdate::InitStored(entry.cid.clone()) });
                    }
                    t.init_cid = Some(entry.cid);
                    r.inflight = Some(Inflight::Persist { announce: None });
                    out.push(Action::Persist { rec, index: r.index.clone() });
                }
                Some(Inflight::Segment { track, seq, duration, start, closed }) => {
                    let Some(t) = r.tracks.get(track) else { return out };
                    let init = t.init_cid.clone().unwrap_or_default();
                    let name = format!("{}{}", t.dir(track), Container::of_codecs(&t.codecs).segment_name(seq));
                    r.index.files.push(stored_file(name, &entry));
                    let layer = rid(t.layer);
                    let manifest = match track {
                        MAIN => r.index.manifest.as_mut(),
                        _ => r.index.renditions.iter_mut().find(|x| x.rid == layer).and_then(|x| x.manifest.as_mut()),
                    };
                    if let Some(m) = manifest {
                        m.push_segment(seq, entry.cid.clone(), duration, start, &init);
                    }
                    // The main rendition's segments are announced to the mesh (copies hold it).
                    let announce = (track == MAIN).then(|| {
                        let segment = SegmentAnnouncement {
                            stream: r.index.stream.clone(),
                            seq,
                            cid: entry.cid,
                            init,
                            codecs: t.codecs.clone(),
                            duration: duration.as_secs_f64(),
                            start_unix_ms: start.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
                            sig: String::new(),
                        };
                        (segment, duration.as_millis() as u64, closed)
                    });
                    r.inflight = Some(Inflight::Persist { announce });
                    out.push(Action::Persist { rec, index: r.index.clone() });
                }
                other => r.inflight = other,
            }
        } else if let Some(Inflight::Segment { track: MAIN, seq, .. }) = step {
            out.push(Action::Edge { rec, update: EdgeUpdate::Lost(seq) });
        }
        self.pump(rec, &mut out);
        out
    }

    /// The outcome of the [`Action::Persist`] of `rec` at `now`: `ok` when the index is durable.
    /// The segment whose file preceded it is announced only then.
    pub fn persisted(&mut self, rec: RecordingId, ok: bool, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(r) = self.recs.get_mut(&rec) else { return out };
        match r.inflight.take() {
            Some(Inflight::Persist { announce: Some((segment, duration_ms, closed)) }) if ok => {
                let announce_ms = now.saturating_duration_since(closed).as_secs_f64() * 1000.0;
                r.index.announce_ms.push(announce_ms);
                out.push(Action::Publish { rec, index: r.index.clone() });
                out.push(Action::Announce { rec, announce_ms, duration_ms, segment });
            }
            Some(Inflight::Persist { announce: None }) if ok => out.push(Action::Publish { rec, index: r.index.clone() }),
            Some(Inflight::FinalPersist) => {
                // The recording is over: what it holds is shown even if its index could not be
                // written (a restart closes it again from the last durable index).
                out.push(Action::Publish { rec, index: r.index.clone() });
                self.recs.remove(&rec);
                out.push(Action::Closed { rec });
                return out;
            }
            _ => {}
        }
        self.pump(rec, &mut out);
        out
    }

    /// The outcome of the [`Action::BuildVod`] of `rec`: the VOD root CID, or `None` when it could
    /// not be built. The final index is written next.
    pub fn vod_built(&mut self, rec: RecordingId, root: Option<String>) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(r) = self.recs.get_mut(&rec) else { return out };
        if !matches!(r.inflight, Some(Inflight::Vod)) {
            return out;
        }
        if let Some(root) = root {
            for m in r.index.manifest.iter_mut().chain(r.index.renditions.iter_mut().filter_map(|x| x.manifest.as_mut())) {
                m.end();
            }
            r.index.vod = Some(root.clone());
            let segments = r.index.manifest.as_ref().map_or(0, |m| m.segments.len() as u64);
            out.push(Action::Finished { rec, stream: r.index.stream.clone(), vod: root, segments });
        }
        r.inflight = Some(Inflight::FinalPersist);
        out.push(Action::Persist { rec, index: r.index.clone() });
        out
    }

    /// Ends `rec`: the recorder's last segments, then its VOD root once every file is stored.
    fn end(&mut self, rec: RecordingId, now: Instant, out: &mut Vec<Action>) {
        let recorded: Vec<(usize, Vec<RecorderOutput>)> = match self.recs.get_mut(&rec) {
            Some(r) => r.tracks.iter_mut().enumerate().filter_map(|(i, t)| Some((i, t.recorder.take()?.finish()))).collect(),
            None => Vec::new(),
        };
        for (track, outputs) in recorded {
            self.on_recorder(rec, track, outputs, now, out);
        }
        if let Some(r) = self.recs.get_mut(&rec) {
            r.queue.push_back(Job::Finish);
        }
        self.pump(rec, out);
    }

    /// Queues the files of `track`'s recorder for storage, tells the live edge about the main
    /// rendition's, and passes keyframe requests on to every recorded layer.
    fn on_recorder(&mut self, rec: RecordingId, track: usize, recorded: Vec<RecorderOutput>, now: Instant, out: &mut Vec<Action>) {
        let Some(r) = self.recs.get_mut(&rec) else { return };
        let main = track == MAIN;
        for o in recorded {
            match o {
                RecorderOutput::InitSegment(i) => {
                    if main {
                        out.push(Action::Edge { rec, update: EdgeUpdate::Init });
                    }
                    r.queue.push_back(Job::Init(track, i));
                }
                RecorderOutput::Part(p) => {
                    if main {
                        out.push(Action::Edge { rec, update: EdgeUpdate::Part(p) });
                    }
                }
                RecorderOutput::Segment(s) if r.queue.len() >= WRITE_QUEUE => {
                    if main {
                        out.push(Action::Edge { rec, update: EdgeUpdate::Lost(s.seq) });
                    }
                    out.push(Action::Dropped { rec, seq: s.seq, reason: DropReason::Backlog });
                }
                RecorderOutput::Segment(s) => {
                    if main {
                        out.push(Action::Edge { rec, update: EdgeUpdate::Complete { seq: s.seq, duration: s.duration } });
                    }
                    r.queue.push_back(Job::Segment(track, s, now));
                }
                RecorderOutput::RequestKeyframe => {
                    for t in &r.tracks {
                        let a = Action::RequestKeyframe { stream_id: r.stream_id, layer: t.layer };
                        if !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
            }
        }
        self.pump(rec, out);
    }

    /// Starts the next storage step of `rec` when none is outstanding.
    fn pump(&mut self, rec: RecordingId, out: &mut Vec<Action>) {
        let Some(r) = self.recs.get_mut(&rec) else { return };
        while r.inflight.is_none() {
            let Some(job) = r.queue.pop_front() else { return };
            match job {
                Job::Init(track, init) => {
                    let resolution = init.params.video.as_ref().and_then(|v| v.resolution()).map(|(w, h)| [w, h]);
                    r.inflight = Some(Inflight::Init { track, codecs: init.codecs(), resolution });
                    out.push(Action::Write { rec, kind: FileKind::Init, bytes: init.bytes });
                }
                Job::Segment(track, seg, closed) => {
                    if r.tracks.get(track).is_none_or(|t| t.init_cid.is_none()) {
                        if track == MAIN {
                            out.push(Action::Edge { rec, update: EdgeUpdate::Lost(seg.seq) });
                        }
                        out.push(Action::Dropped { rec, seq: seg.seq, reason: DropReason::NoInit });
                        continue;
                    }
                    r.inflight = Some(Inflight::Segment {
                        track,
                        seq: seg.seq,
                        duration: seg.duration,
                        start: seg.start_wallclock,
                        closed,
                    });
                    out.push(Action::Write { rec, kind: FileKind::Segment { seq: seg.seq }, bytes: seg.bytes });
                }
                Job::Finish => {
                    // Renditions whose init segment was never stored hold nothing.
                    r.index.renditions.retain(|x| x.manifest.is_some());
                    if r.index.manifest.is_some() {
                        r.inflight = Some(Inflight::Vod);
                        out.push(Action::BuildVod { rec, index: r.index.clone() });
                    } else {
                        r.inflight = Some(Inflight::FinalPersist);
                        out.push(Action::Persist { rec, index: r.index.clone() });
                    }
                }
            }
        }
    }
}

fn stored_file(name: String, e: &StoredEntry) -> StoredFile {
    StoredFile { name, cid: e.cid.clone(), size: e.size, dag_size: e.dag_size }
}

/// Chooses the archived layers and creates their recorders: the main one as before — the
/// configured layer once it has sent a keyframe, else the highest layer that has sent one (at
/// once when that is the top layer, else after the settle time: simulcast layers start one after
/// the other) — and, without a configured layer, every lower layer as soon as it sends a
/// keyframe, as a rendition of its own.
///
/// Returns the audio kept from before an audio-only recording began, for its recorder (empty
/// otherwise).
fn select(r: &mut Rec, configured: Option<u8>, rec: RecordingId, pkt: &TapPacket, now: Instant, wall: SystemTime, out: &mut Vec<Action>) -> Vec<RtpPacket> {
    if pkt.rtp.kind != MediaKind::Video {
        if !r.tracks.is_empty() || r.first_video.is_some() {
            return Vec::new();
        }
        // Audio and no video at all for a while: an audio-only recording (Opus in fMP4), from
        // the audio kept meanwhile on.
        let first = *r.first_audio.get_or_insert(now);
        if now.saturating_duration_since(first) < AUDIO_ONLY_SETTLE {
            if r.early_audio.len() < EARLY_AUDIO {
                r.early_audio.push(pkt.rtp.clone());
            }
            return Vec::new();
        }
        tracing::debug!(stream = %r.index.stream, "audio-only recording");
        let segment = SegmenterConfig { part_target: Some(PART_TARGET), ..SegmenterConfig::default() };
        let cfg = RecorderConfig { video: None, segment, ..RecorderConfig::default() };
        let clock = r.early_audio.first().map_or(now, |p| p.arrival);
        let wall_then = wall.checked_sub(now.saturating_duration_since(clock)).unwrap_or(wall);
        r.tracks.push(Track { layer: 0, recorder: Some(Recorder::with_clock(cfg, clock, wall_then)), init_cid: None, codecs: String::new() });
        out.push(Action::Publish { rec, index: r.index.clone() });
        return std::mem::take(&mut r.early_audio);
    }
    r.early_audio = Vec::new();
    let bit = 1u8 << pkt.layer.min(7);
    if pkt.keyframe_start {
        r.keyframed_layers |= bit;
    }
    let first = *r.first_video.get_or_insert(now);
    let layer = match r.tracks.first() {
        None if r.keyframed_layers != 0 => {
            let configured_sent = configured.filter(|l| r.keyframed_layers & (1 << l) != 0);
            let highest = 7 - r.keyframed_layers.leading_zeros() as u8;
            let top = usize::from(highest) + 1 >= MAX_LAYERS;
            // A configured layer that never sends is given up on after a while.
            let waited = now.saturating_duration_since(first);
            let may_pick = configured.is_none() || waited >= 3 * LAYER_SETTLE;
            if configured_sent.is_none() && !(may_pick && (top || waited >= LAYER_SETTLE)) {
                return Vec::new();
            }
            let layer = configured_sent.unwrap_or(highest);
            r.index.layer = Some(rid(layer).to_string());
            layer
        }
        // Another layer's first keyframe once the main rendition has started: a rendition on the
        // main one's timeline (unless one layer is configured). A higher layer too: a browser
        // whose bandwidth estimate starts low adds its top layers only after a few seconds.
        Some(main)
            if configured.is_none()
                && pkt.keyframe_start
                && pkt.layer != main.layer
                && usize::from(pkt.layer) < MAX_LAYERS
                && main.recorder.as_ref().and_then(Recorder::zero).is_some()
                && r.tracks.iter().all(|t| t.layer != pkt.layer) =>
        {
            pkt.layer
        }
        _ => return Vec::new(),
    };
    let main = r.tracks.is_empty();
    tracing::debug!(stream = %r.index.stream, layer, main, codec = ?pkt.codec, "archive layer chosen");
    // Low-latency parts for the main rendition only; the others share its timeline.
    let segment = SegmenterConfig { part_target: main.then_some(PART_TARGET), ..SegmenterConfig::default() };
    let zero = r.tracks.first().and_then(|t| t.recorder.as_ref()).and_then(Recorder::zero);
    let cfg = RecorderConfig { video: Some(pkt.codec), segment, zero, ..RecorderConfig::default() };
    r.tracks.push(Track { layer, recorder: Some(Recorder::with_clock(cfg, now, wall)), init_cid: None, codecs: String::new() });
    if main {
        out.push(Action::Publish { rec, index: r.index.clone() });
        out.push(Action::RequestKeyframe { stream_id: r.stream_id, layer });
    } else {
        // Segments of every layer start together from the next keyframes.
        for t in &r.tracks {
            out.push(Action::RequestKeyframe { stream_id: r.stream_id, layer: t.layer });
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;

    /// A VP8 RTP payload: descriptor (start of partition), then a keyframe header of 640×360 or
    /// an interframe tag.
    fn vp8(key: bool) -> Vec<u8> {
        let mut p = vec![0x10];
        if key {
            let tag: u32 = (4 << 5) | 0x10; // key frame, version 0, show_frame, 4-byte partition
            p.extend_from_slice(&[tag as u8, (tag >> 8) as u8, (tag >> 16) as u8, 0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&640u16.to_le_bytes());
            p.extend_from_slice(&360u16.to_le_bytes());
            p.extend_from_slice(&[0xaa; 4]);
        } else {
            p.extend_from_slice(&[0x01, 0, 0, 7, 7]);
        }
        p
    }

    /// The core with a storage stand-in that completes each step at once, as told.
    struct Sim {
        core: Core,
        t0: Instant,
        wall0: SystemTime,
        /// Every action, in order.
        log: Vec<Action>,
        /// Media segments whose write fails.
        fail_writes: HashSet<u64>,
        /// Whether init segment writes fail.
        fail_init: bool,
        /// Whether index writes fail.
        fail_persist: bool,
        /// Leave storage steps outstanding (collected here) instead of completing them.
        hold: bool,
        /// Leave only this recording's storage steps outstanding.
        hold_rec: Option<RecordingId>,
        held: Vec<Action>,
        next_cid: u64,
    }

    impl Sim {
        fn new(layer: Option<u8>) -> Self {
            Self {
                core: Core::new(layer),
                t0: Instant::now(),
                wall0: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                log: Vec::new(),
                fail_writes: HashSet::new(),
                fail_init: false,
                fail_persist: false,
                hold: false,
                hold_rec: None,
                held: Vec::new(),
                next_cid: 0,
            }
        }

        fn at(&self, ms: u64) -> (Instant, SystemTime) {
            (self.t0 + Duration::from_millis(ms), self.wall0 + Duration::from_millis(ms))
        }

        fn input(&mut self, input: TapInput, ms: u64) {
            let (now, wall) = self.at(ms);
            let actions = self.core.handle(input, now, wall);
            self.run(actions, now);
        }

        fn start(&mut self, stream_id: u64, generation: u32, ms: u64) {
            self.input(TapInput::Started { stream_id, stream: format!("s{stream_id}"), generation }, ms);
        }

        fn end(&mut self, stream_id: u64, generation: u32, ms: u64) {
            self.input(TapInput::Ended { stream_id, generation }, ms);
        }

        /// Video frames `from..to` at 30 fps of one layer, one packet each, a keyframe every
        /// `key_every` frames; frame `i` arrives at `i × 33 ms`.
        fn video(&mut self, stream_id: u64, generation: u32, layer: u8, frames: std::ops::Range<u64>, key_every: u64) {
            for i in frames {
                let ms = i * 100 / 3;
                let key = i % key_every == 0;
                let (arrival, _) = self.at(ms);
                let pkt = TapPacket {
                    stream_id,
                    generation,
                    layer,
                    keyframe_start: key,
                    codec: VideoCodec::Vp8,
                    rtp: RtpPacket {
                        kind: MediaKind::Video,
                        seq: 1000 + i,
                        timestamp: (i * 3000) as u32,
                        marker: true,
                        payload: Arc::from(vp8(key)),
                        arrival,
                        capture: None,
                    },
                };
                self.input(TapInput::Packet(pkt), ms);
            }
        }

        /// Performs `actions` the way the driver does, completing storage steps at once.
        fn run(&mut self, actions: Vec<Action>, now: Instant) {
            let mut queue: VecDeque<Action> = actions.into();
            while let Some(a) = queue.pop_front() {
                self.log.push(a.clone());
                let held_rec = match &a {
                    Action::Write { rec, .. } | Action::Persist { rec, .. } | Action::BuildVod { rec, .. } => Some(*rec),
                    _ => None,
                };
                if held_rec.is_some() && (self.hold || held_rec == self.hold_rec) {
                    self.held.push(a);
                    continue;
                }
                queue.extend(self.complete(&a, now));
            }
        }

        fn complete(&mut self, a: &Action, now: Instant) -> Vec<Action> {
            match a {
                Action::Write { rec, kind, bytes } => {
                    let fail = match kind {
                        FileKind::Init => self.fail_init,
                        FileKind::Segment { seq } => self.fail_writes.contains(seq),
                    };
                    self.next_cid += 1;
                    let entry = StoredEntry { cid: format!("cid{}", self.next_cid), size: bytes.len() as u64, dag_size: bytes.len() as u64 + 10 };
                    self.core.stored(*rec, (!fail).then_some(entry))
                }
                Action::Persist { rec, .. } => self.core.persisted(*rec, !self.fail_persist, now),
                Action::BuildVod { rec, .. } => self.core.vod_built(*rec, Some(format!("vod{}", rec.0))),
                _ => Vec::new(),
            }
        }

        /// Completes the storage steps held so far.
        fn release(&mut self, ms: u64) {
            let (now, _) = self.at(ms);
            for a in std::mem::take(&mut self.held) {
                let more = self.complete(&a, now);
                self.run(more, now);
            }
        }

        fn announced(&self) -> Vec<(RecordingId, u64, u64)> {
            self.log
                .iter()
                .filter_map(|a| match a {
                    Action::Announce { rec, segment, duration_ms, .. } => Some((*rec, segment.seq, *duration_ms)),
                    _ => None,
                })
                .collect()
        }

        fn position(&self, f: impl Fn(&Action) -> bool) -> Option<usize> {
            self.log.iter().position(f)
        }

        fn last_index(&self, rec: RecordingId) -> Option<&RecordingIndex> {
            self.log.iter().rev().find_map(|a| match a {
                Action::Persist { rec: r, index } if *r == rec => Some(index),
                _ => None,
            })
        }
    }

    const R0: RecordingId = RecordingId(0);
    const R1: RecordingId = RecordingId(1);

    #[test]
    fn segments_are_cut_on_keyframes_and_announced_after_their_index_is_durable() {
        let mut sim = Sim::new(None);
        sim.start(7, 1, 0);
        // 7 s of the top layer with a keyframe every 2 s.
        sim.video(7, 1, 2, 0..210, 60);
        // The top layer is chosen at once, and a keyframe asked for.
        assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 7, layer: 2 }));
        let announced = sim.announced();
        assert_eq!(
            announced.iter().map(|a| (a.1, a.2)).collect::<Vec<_>>(),
            vec![(0, 2000), (1, 2000), (2, 2000)],
            "one segment per keyframe interval"
        );
        // Init first; each segment's write, then its index write, then its announcement.
        assert!(matches!(sim.log.iter().find(|a| matches!(a, Action::Write { .. })), Some(Action::Write { kind: FileKind::Init, .. })));
        for seq in 0..3 {
            let write = sim.position(|a| matches!(a, Action::Write { kind: FileKind::Segment { seq: s }, .. } if *s == seq)).unwrap();
            let announce = sim.position(|a| matches!(a, Action::Announce { segment, .. } if segment.seq == seq)).unwrap();
            let persist = sim
                .position(|a| matches!(a, Action::Persist { index, .. } if index.manifest.as_ref().is_some_and(|m| m.segments.len() == seq as usize + 1)))
                .unwrap();
            let shown = sim
                .position(|a| matches!(a, Action::Publish { index, .. } if index.manifest.as_ref().is_some_and(|m| m.segments.len() == seq as usize + 1)))
                .unwrap();
            assert!(write < persist && persist < shown && shown < announce, "segment {seq}: write {write}, persist {persist}, shown {shown}, announce {announce}");
        }
        let ix = sim.last_index(R0).unwrap();
        assert_eq!(ix.layer.as_deref(), Some("f"));
        assert_eq!(ix.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["init.webm", "segment-000000.webm", "segment-000001.webm", "segment-000002.webm"]);
        let Some(Action::Announce { segment, .. }) = sim.log.iter().find(|a| matches!(a, Action::Announce { .. })) else { panic!() };
        assert_eq!((segment.stream.as_str(), segment.init.as_str(), segment.codecs.as_str()), ("s7", "cid1", "vp8,opus"));
    }

    #[test]
    fn a_lower_layer_is_chosen_after_the_settle_time_and_a_configured_one_at_once() {
        let mut sim = Sim::new(None);
        sim.start(1, 1, 0);
        sim.video(1, 1, 0, 0..20, 60);
        assert!(!sim.log.iter().any(|a| matches!(a, Action::RequestKeyframe { .. })), "waits for higher layers");
        sim.video(1, 1, 0, 20..40, 60);
        assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 0 }), "the highest layer seen after 1 s");

        let mut sim = Sim::new(Some(1));
        sim.start(1, 1, 0);
        sim.video(1, 1, 2, 0..3, 60);
        sim.video(1, 1, 1, 0..3, 60);
        assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 1 }), "the configured layer once it sent a keyframe");
        assert!(!sim.log.contains(&Action::RequestKeyframe { stream_id: 1, layer: 2 }));
    }

    #[test]
    fn every_layer_is_recorded_the_highest_as_the_main_rendition_with_keyframes_asked_together() {
        let mut sim = Sim::new(None);
        sim.start(3, 1, 0);
        // Three layers, frames interleaved, a keyframe every 2 s on each.
        for i in 0..210u64 {
            for layer in [2u8, 1, 0] {
                sim.video(3, 1, layer, i..i + 1, 60);
            }
        }
        let ix = sim.last_index(R0).unwrap().clone();
        assert_eq!(ix.layer.as_deref(), Some("f"));
        assert_eq!(ix.renditions.iter().map(|r| r.rid.as_str()).collect::<Vec<_>>(), ["h", "q"]);
        let main = ix.manifest.as_ref().unwrap();
        assert_eq!(main.segments.len(), 3);
        assert_eq!(ix.resolution, Some([640, 360]));
        for r in &ix.renditions {
            let m = r.manifest.as_ref().unwrap();
            assert_eq!(m.segments.len(), 3, "{} records the same segments", r.rid);
            // Aligned with the main rendition's: same starts and durations.
            for (a, b) in m.segments.iter().zip(&main.segments) {
                assert_eq!((a.start_unix_ms, a.duration), (b.start_unix_ms, b.duration));
            }
            assert!(ix.files.iter().any(|f| f.name == format!("{}/init.webm", r.rid)));
            assert!(ix.files.iter().any(|f| f.name == format!("{}/segment-000002.webm", r.rid)));
        }
        assert!(ix.files.iter().any(|f| f.name == "segment-000002.webm"), "the main rendition's files at the top level");
        // Only the main rendition is announced; every layer is asked for a keyframe.
        assert_eq!(sim.announced().len(), 3);
        for layer in 0..3 {
            assert!(sim.log.contains(&Action::RequestKeyframe { stream_id: 3, layer }), "layer {layer}");
        }
        // The stream ends: every rendition's manifest ends with the VOD root.
        sim.end(3, 1, 7000);
        let ix = sim.last_index(R0).unwrap();
        assert!(ix.vod.is_some());
        assert!(ix.renditions.iter().all(|r| r.manifest.as_ref().is_some_and(|m| m.ended)));
    }

    #[test]
    fn a_layer_that_starts_later_is_recorded_on_the_main_renditions_timeline() {
        let mut sim = Sim::new(None);
        sim.start(3, 1, 0);
        // The top layer from the start; layer q only from 2 s on (frame 60, a keyframe).
        for i in 0..240u64 {
            sim.video(3, 1, 2, i..i + 1, 60);
            if i >= 60 {
                sim.video(3, 1, 0, i..i + 1, 60);
            }
        }
        let ix = sim.last_index(R0).unwrap().clone();
        let main = ix.manifest.as_ref().unwrap();
        let q = ix.renditions[0].manifest.as_ref().unwrap();
        assert_eq!(ix.renditions[0].rid, "q");
        assert!(q.segments.len() >= 2, "{q:?}");
        // Its segments start where the main rendition's do, 2 s in: one timeline.
        for (a, b) in q.segments.iter().zip(&main.segments[1..]) {
            assert_eq!((a.start_unix_ms, a.duration), (b.start_unix_ms, b.duration), "q {a:?} / f {b:?}");
        }
    }

    #[test]
    fn layers_a_browser_adds_later_are_recorded_too_and_listed_highest_first() {
        let mut sim = Sim::new(None);
        sim.start(3, 1, 0);
        // Only q for the first 2 s (the main rendition is chosen after the settle time), then f
        // from 2 s and h from 4 s, as a browser ramping up its bandwidth does.
        for i in 0..300u64 {
            sim.video(3, 1, 0, i..i + 1, 60);
            if i >= 60 {
                sim.video(3, 1, 2, i..i + 1, 60);
            }
            if i >= 120 {
                sim.video(3, 1, 1, i..i + 1, 60);
            }
        }
        let ix = sim.last_index(R0).unwrap().clone();
        assert_eq!(ix.layer.as_deref(), Some("q"));
        assert_eq!(ix.renditions.iter().map(|r| r.rid.as_str()).collect::<Vec<_>>(), ["f", "h"]);
        let uris: Vec<String> = ix.variants(|rid| rid.unwrap_or("q").to_string()).into_iter().map(|v| v.uri).collect();
        assert_eq!(uris, ["f", "h", "q"], "variants highest first");
    }

    #[test]
    fn a_publisher_of_audio_alone_is_recorded_as_audio_only() {
        let mut sim = Sim::new(None);
        sim.start(4, 1, 0);
        // 7 s of 20 ms Opus frames, no video.
        for i in 0..350u64 {
            let ms = i * 20;
            let (arrival, _) = sim.at(ms);
            let pkt = TapPacket {
                stream_id: 4,
                generation: 1,
                layer: 0,
                keyframe_start: false,
                codec: VideoCodec::Vp8,
                rtp: RtpPacket {
                    kind: MediaKind::Audio,
                    seq: 100 + i,
                    timestamp: (i * 960) as u32,
                    marker: false,
                    payload: Arc::from(&[0xfc, 0xff, 0xfe][..]),
                    arrival,
                    capture: None,
                },
            };
            sim.input(TapInput::Packet(pkt), ms);
        }
        sim.end(4, 1, 7100);
        let ix = sim.last_index(R0).unwrap();
        let m = ix.manifest.as_ref().expect("recorded");
        assert_eq!(m.codecs, "opus");
        assert!(m.segments.len() >= 3, "{m:?}");
        // From the first packet on: the audio of the settle time is kept.
        assert!((m.duration() - 7.0).abs() < 0.1, "{} s recorded of 7 s", m.duration());
        assert_eq!(m.segments[0].start_unix_ms, 1_700_000_000_000, "it starts with the first packet");
        assert!(ix.files.iter().any(|f| f.name == "init.mp4"), "Opus alone is recorded in fMP4");
        assert!(ix.vod.is_some());
        assert!(sim.log.iter().any(|a| matches!(a, Action::Edge { update: EdgeUpdate::Part(_), .. })), "with low-latency parts");
    }

    #[test]
    fn a_configured_layer_is_recorded_alone() {
        let mut sim = Sim::new(Some(1));
        sim.start(3, 1, 0);
        for i in 0..90u64 {
            for layer in [2u8, 1, 0] {
                sim.video(3, 1, layer, i..i + 1, 60);
            }
        }
        let ix = sim.last_index(R0).unwrap();
        assert_eq!(ix.layer.as_deref(), Some("h"));
        assert!(ix.renditions.is_empty());
    }

    #[test]
    fn stream_end_flushes_the_last_segment_then_builds_the_vod_root() {
        let mut sim = Sim::new(None);
        sim.start(3, 4, 0);
        sim.video(3, 4, 2, 0..100, 60);
        assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
        // Another generation's end is not this one's.
        sim.end(3, 3, 3400);
        assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
        sim.end(3, 4, 3400);
        assert_eq!(sim.announced().iter().map(|a| a.1).collect::<Vec<_>>(), [0, 1], "the partial last segment is stored");
        let last_write = sim.log.iter().rposition(|a| matches!(a, Action::Write { .. })).unwrap();
        let vod = sim.position(|a| matches!(a, Action::BuildVod { .. })).unwrap();
        assert!(last_write < vod, "the VOD root is built after every file is stored");
        let Some(Action::BuildVod { index, .. }) = sim.log.get(vod) else { panic!() };
        assert_eq!(index.files.len(), 3);
        assert!(sim.log.contains(&Action::Finished { rec: R0, stream: "s3".into(), vod: "vod0".into(), segments: 2 }));
        let ix = sim.last_index(R0).unwrap();
        assert_eq!(ix.vod.as_deref(), Some("vod0"));
        assert!(ix.manifest.as_ref().is_some_and(|m| m.ended));
        assert_eq!(sim.log.last(), Some(&Action::Closed { rec: R0 }));
        assert!(sim.core.is_idle());
        // Packets after the end belong to no recording.
        let n = sim.log.len();
        sim.video(3, 4, 2, 100..110, 60);
        assert_eq!(sim.log.len(), n);
    }

    #[test]
    fn a_new_publisher_generation_closes_the_old_recording_and_starts_a_new_one() {
        let mut sim = Sim::new(None);
        sim.start(5, 1, 0);
        sim.video(5, 1, 2, 0..70, 60);
        sim.start(5, 2, 2400);
        assert!(matches!(sim.log.iter().filter(|a| matches!(a, Action::Started { .. })).nth(1), Some(Action::Started { rec: R1, .. })));
        assert!(sim.log.contains(&Action::Finished { rec: R0, stream: "s5".into(), vod: "vod0".into(), segments: 2 }));
        // The old publisher's late packets and its end are ignored; the new one is recorded.
        let n = sim.announced().len();
        sim.video(5, 1, 2, 70..200, 60);
        sim.end(5, 1, 7000);
        assert_eq!(sim.announced().len(), n);
        assert!(!sim.log.iter().any(|a| matches!(a, Action::Write { rec: R1, .. })));
        sim.video(5, 2, 2, 0..130, 60);
        assert!(sim.announced().iter().any(|a| a.0 == R1 && a.1 == 0), "the new generation's first segment");
        sim.end(5, 2, 5000);
        assert!(sim.log.contains(&Action::Finished { rec: R1, stream: "s5".into(), vod: "vod1".into(), segments: 3 }));
        assert!(sim.core.is_idle());
    }

    #[test]
    fn a_failed_write_is_never_announced_nor_indexed() {
        let mut sim = Sim::new(None);
        sim.fail_writes.insert(1);
        sim.start(2, 1, 0);
        sim.video(2, 1, 2, 0..190, 60);
        sim.end(2, 1, 6400);
        assert_eq!(sim.announced().iter().map(|a| a.1).collect::<Vec<_>>(), [0, 2, 3]);
        let ix = sim.last_index(R0).unwrap();
        assert!(ix.files.iter().any(|f| f.name == "segment-000000.webm"));
        assert!(!ix.files.iter().any(|f| f.name.starts_with("segment-000001")));
        let seqs: Vec<u64> = ix.manifest.as_ref().unwrap().segments.iter().map(|s| s.seq).collect();
        assert_eq!(seqs, [0, 2, 3]);
        assert!(sim.log.iter().any(|a| matches!(a, Action::Finished { segments: 3, .. })));
    }

    #[test]
    fn a_failed_index_write_is_not_announced() {
        let mut sim = Sim::new(None);
        sim.fail_persist = true;
        sim.start(2, 1, 0);
        sim.video(2, 1, 2, 0..140, 60);
        assert!(sim.log.iter().any(|a| matches!(a, Action::Write { kind: FileKind::Segment { seq: 1 }, .. })));
        assert!(sim.announced().is_empty());
        assert!(
            !sim.log.iter().any(|a| matches!(a, Action::Publish { index, .. } if !index.files.is_empty())),
            "files whose index is not durable are not shown"
        );
    }

    #[test]
    fn segments_after_a_failed_init_write_are_dropped() {
        let mut sim = Sim::new(None);
        sim.fail_init = true;
        sim.start(2, 1, 0);
        sim.video(2, 1, 2, 0..130, 60);
        assert!(sim.log.contains(&Action::Dropped { rec: R0, seq: 0, reason: DropReason::NoInit }));
        assert!(!sim.log.iter().any(|a| matches!(a, Action::Write { kind: FileKind::Segment { .. }, .. })));
        sim.end(2, 1, 4400);
        // Nothing stored: no VOD root, the (empty) index is written and the recording closed.
        assert!(!sim.log.iter().any(|a| matches!(a, Action::BuildVod { .. })));
        assert_eq!(sim.log.last(), Some(&Action::Closed { rec: R0 }));
    }

    /// One recording's storage stalls (a slow or full disk): its newest segments are dropped
    /// once WRITE_QUEUE files wait, while the other recording stores and announces every one.
    #[test]
    fn a_stalled_recording_drops_its_own_segments_and_no_other_recording_waits() {
        let mut sim = Sim::new(None);
        sim.hold_rec = Some(R0);
        sim.start(2, 1, 0);
        sim.start(3, 1, 0);
        let frames = (WRITE_QUEUE as u64 + 10) * 60;
        for chunk in (0..frames).step_by(60) {
            sim.video(2, 1, 2, chunk..chunk + 60, 60);
            sim.video(3, 1, 2, chunk..chunk + 60, 60);
        }
        let dropped: Vec<u64> = sim
            .log
            .iter()
            .filter_map(|a| match a {
                Action::Dropped { rec: R0, seq, reason: DropReason::Backlog } => Some(*seq),
                Action::Dropped { rec, .. } => panic!("{rec:?} dropped a segment"),
                _ => None,
            })
            .collect();
        assert!(dropped.len() >= 8, "the stalled recording drops its newest segments ({dropped:?})");
        let other: Vec<u64> = sim.announced().iter().filter(|a| a.0 == R1).map(|a| a.1).collect();
        assert_eq!(other, (0..other.len() as u64).collect::<Vec<_>>(), "the other recording announces every segment");
        assert!(other.len() as u64 >= WRITE_QUEUE as u64 + 8);
        assert!(sim.announced().iter().all(|a| a.0 == R1));
        // The disk comes back: what was queued is stored and announced, the dropped ones never.
        sim.hold_rec = None;
        for _ in 0..400 {
            if sim.held.is_empty() {
                break;
            }
            sim.release(frames * 34);
        }
        let mine: Vec<u64> = sim.announced().iter().filter(|a| a.0 == R0).map(|a| a.1).collect();
        assert!(mine.len() >= WRITE_QUEUE - 2, "{}", mine.len());
        assert!(mine.iter().all(|s| !dropped.contains(s)));
    }

    #[test]
    fn one_storage_step_is_outstanding_per_recording() {
        let mut sim = Sim::new(None);
        sim.hold = true;
        sim.start(2, 1, 0);
        sim.video(2, 1, 2, 0..210, 60);
        // Init and three segments are due, but only the init write was issued.
        assert_eq!(sim.held.len(), 1);
        assert!(matches!(sim.held[0], Action::Write { kind: FileKind::Init, .. }));
        // Completing each step issues the next, in order.
        for _ in 0..20 {
            if sim.held.is_empty() {
                break;
            }
            sim.release(8000);
        }
        let writes: Vec<FileKind> = sim
            .log
            .iter()
            .filter_map(|a| match a {
                Action::Write { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(writes, [FileKind::Init, FileKind::Segment { seq: 0 }, FileKind::Segment { seq: 1 }, FileKind::Segment { seq: 2 }]);
        assert_eq!(sim.announced().len(), 3);
        let announce_ms: Vec<f64> = sim
            .log
            .iter()
            .filter_map(|a| match a {
                Action::Announce { announce_ms, .. } => Some(*announce_ms),
                _ => None,
            })
            .collect();
        assert!(announce_ms.iter().all(|ms| *ms > 0.0), "time from close to announcement is measured: {announce_ms:?}");
    }
}
