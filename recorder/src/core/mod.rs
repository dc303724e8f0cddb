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

use relaycast_archive::{Container, EdgeUpdate, InitSegment, Manifest, MediaKind, Recorder, RecorderOutput, RtpPacket, Segment, VideoCodec};
use relaycast_mesh::SegmentAnnouncement;

use crate::index::{RecordingIndex, Rendition, StoredFile};

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

mod layers;

pub use layers::{AUDIO_ONLY_SETTLE, EARLY_AUDIO, LAYER_SETTLE, rid_rank};
use layers::{Track, rid, select};

#[cfg(test)]
mod tests;
