//! What the core is told ([`Input`], with the media plane's [`LocalStream`]s), what it asks the
//! driver to do ([`Output`], [`PathPush`]), and what it counts ([`Counters`]).

use relaycast_mesh::{Directory, NodeLoad, PeerId, RelayError, StreamAnnouncement};

use super::{AttemptId, RequestId, SessionId};

/// One video layer of a local stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLayer {
    /// Its rid.
    pub rid: String,
    /// Its recent bitrate, bits per second.
    pub bitrate_bps: u64,
}

/// A stream on this node as the media plane reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalStream {
    /// Stream name.
    pub name: String,
    /// True while a publisher is connected here (this node is the origin).
    pub live: bool,
    /// Video codec, when known.
    pub codec: Option<String>,
    /// Viewers on this node.
    pub viewers: u32,
    /// Downstream nodes relaying the stream from this node.
    pub relay_children: u32,
    /// Downstream nodes standing by on a paused edge from this node (fed once they switch to it).
    pub standby_children: u32,
    /// Incoming video layers.
    pub layers: Vec<LocalLayer>,
    /// Incoming audio bitrate, bits per second.
    pub audio_bps: u64,
    /// Media packets received for it so far (every layer and audio): the stall watchdog's clock.
    pub packets: u64,
    /// The session whose media feeds it (its publisher or a relay in), if any: a standby relay
    /// in named here has taken the stream over.
    pub fed_by: Option<SessionId>,
    /// The sessions of the paused edges (`standby_children` of them; a media plane that does
    /// not list them leaves this empty).
    pub paused_relays: Vec<SessionId>,
}

impl LocalStream {
    pub(super) fn used(&self) -> bool {
        // A standby child counts: its edge must be fed the moment it switches.
        self.viewers > 0 || self.relay_children > 0 || self.standby_children > 0
    }
}

/// What the core is told.
#[derive(Debug)]
pub enum Input {
    /// A fresh snapshot of the mesh's directory: nodes' loads and stream presences.
    Directory(Directory),
    /// A mesh peer was discovered.
    PeerSeen(PeerId),
    /// A mesh peer disconnected.
    PeerLost(PeerId),
    /// Something here (a viewer) wants `stream`; answered with [`Output::Ready`].
    Want {
        /// Stream name.
        stream: String,
        /// Whether the media plane already has a source for it.
        has_source: bool,
    },
    /// The result of an [`Output::Lookup`].
    Found {
        /// Stream name.
        stream: String,
        /// Its origin's announcement, when found.
        announcement: Option<StreamAnnouncement>,
    },
    /// An upstream answered the relay request of an [`Output::Attach`].
    Answered {
        /// The attempt.
        attempt: AttemptId,
        /// The depth the upstream states for itself.
        depth: u32,
        /// The upstream's ancestor path, origin first, the upstream last.
        path: Vec<PeerId>,
    },
    /// An attempt failed: no offer (`fatal`: no other upstream can help), refused, timed out,
    /// or its answer was rejected by the media plane.
    AttachFailed {
        /// The attempt.
        attempt: AttemptId,
        /// True when trying other upstreams is pointless.
        fatal: bool,
    },
    /// The answer of an [`Output::Connect`] was applied: the relay in runs.
    Connected {
        /// The attempt.
        attempt: AttemptId,
        /// The relay-in session.
        session: SessionId,
    },
    /// A downstream node asks for a relay of `stream`.
    RelayRequest {
        /// The driver's id for the request.
        id: RequestId,
        /// The requesting peer.
        from: PeerId,
        /// Stream name.
        stream: String,
        /// Whether the media plane has a source for it.
        has_source: bool,
        /// The requester wants a standby upstream: a paused edge, fed once it switches to it.
        standby: bool,
    },
    /// The result of an [`Output::Serve`]: the relay-out session, or `None` when the media plane
    /// failed it (the driver already answered the error).
    Served {
        /// The request.
        id: RequestId,
        /// The relay-out session.
        session: Option<SessionId>,
    },
    /// No media arrived on a relayed stream for too long although its upstream looks alive.
    MediaStall {
        /// Stream name.
        stream: String,
    },
    /// Periodic refresh: the media plane's streams and the sessions of [`Core::sessions`](super::Core::sessions) that
    /// ended.
    Tick {
        /// Streams on this node.
        streams: Vec<LocalStream>,
        /// Relay sessions that no longer exist.
        ended: Vec<SessionId>,
    },
    /// The [`PathPush`] of another node: the path this node has below `from` now, or that
    /// `from` is re-attaching (`frozen`). Taken from this node's upstream, standby upstream, or an
    /// upstream whose answer is being connected; ignored from anyone else.
    PathUpdate {
        /// The node that sent it.
        from: PeerId,
        /// Stream name.
        stream: String,
        /// The depth `from` states for itself.
        depth: u32,
        /// `from`'s ancestor path with `from` appended (empty when `frozen`).
        path: Vec<PeerId>,
        /// `from` has no path: it lost its upstream and is re-attaching.
        frozen: bool,
        /// `from` relays to more nodes than its cap and asks this one to move to its standby
        /// upstream (make-before-break; see [`Output::Handover`]).
        shed: bool,
        /// `from` is a relay child that closed its edge from this node: its relay out closes.
        left: bool,
        /// `from` is the standby upstream and keeps a fed slot for this node.
        room: bool,
        /// With `shed`: a relay child of `from` with room, below which this node may move.
        move_to: Option<PeerId>,
    },
    /// Another node holds the name of a stream published here.
    StreamTaken {
        /// Stream name.
        stream: String,
        /// The holder.
        holder: PeerId,
    },
}

/// Why a relay in is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetachReason {
    /// Nobody here used it for [`IDLE_RELAY`](super::IDLE_RELAY).
    Idle,
    /// Its upstream was lost.
    UpstreamLost,
    /// Media stopped arriving.
    Stalled,
    /// An ancestor moved: the path now holds this node or is over the depth cap.
    PathInvalid,
    /// The stream moved to the standby upstream, which feeds it now (a planned move).
    Moved,
    /// A standby upstream without a spare fed slot, replaced by one with a slot so that this
    /// node can move (its upstream asks it to).
    Replaced,
}

/// What the core asks the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Look `stream` up in the mesh (DHT); answer with [`Input::Found`].
    Lookup {
        /// Stream name.
        stream: String,
    },
    /// Create a relay offer and send it to `peer` as a relay request; answer with
    /// [`Input::Answered`] or [`Input::AttachFailed`].
    Attach {
        /// The attempt.
        attempt: AttemptId,
        /// Stream name.
        stream: String,
        /// The upstream candidate.
        peer: PeerId,
        /// Whether the stream has several layers.
        simulcast: bool,
        /// True for a standby upstream beside the relay in that feeds the stream (the SFU's
        /// `relay_offer(.., standby)`).
        standby: bool,
        /// With `standby`: ask the upstream for a fed edge, not a paused one (the relay
        /// request's `standby` false). A planned move below a sibling: the media plane holds
        /// the edge as a standby until it takes the stream over.
        fed: bool,
    },
    /// Apply the attempt's answer; report [`Input::Connected`] or [`Input::AttachFailed`].
    Connect {
        /// The attempt.
        attempt: AttemptId,
    },
    /// Drop the attempt's offer session (its answer was refused or came too late).
    Abandon {
        /// The attempt.
        attempt: AttemptId,
    },
    /// Close a relay in.
    Detach {
        /// Stream name.
        stream: String,
        /// Its session.
        session: SessionId,
        /// Why.
        reason: DetachReason,
    },
    /// Move `stream` to its standby relay in `session` while the relay in that feeds it still
    /// does: the media plane resumes the standby's edge and lets it take over at its first
    /// keyframe (the SFU's `relay_handover`); once [`LocalStream::fed_by`] names it, the core
    /// closes the old relay in ([`DetachReason::Moved`]). Repeated while the move runs (the
    /// media plane ignores a repeat).
    Handover {
        /// Stream name.
        stream: String,
        /// The standby relay in.
        session: SessionId,
    },
    /// Close a session (a relay out to a lost downstream, or a relay in nobody waits for).
    Close {
        /// The session.
        session: SessionId,
    },
    /// Follow (or stop following) the archived segments of a relayed stream.
    Follow {
        /// Stream name.
        stream: String,
        /// Follow or stop.
        on: bool,
    },
    /// Answer everyone waiting for `stream` ([`Input::Want`]).
    Ready {
        /// Stream name.
        stream: String,
        /// Whether it is available here now.
        ok: bool,
    },
    /// Serve the relay request: open a relay-out session and answer with this depth and path;
    /// report [`Input::Served`].
    Serve {
        /// The request.
        id: RequestId,
        /// This node's depth for the stream.
        depth: u32,
        /// This node's path with itself appended.
        path: Vec<PeerId>,
        /// A standby edge: the media plane serves it paused.
        standby: bool,
    },
    /// Refuse the relay request.
    Refuse {
        /// The request.
        id: RequestId,
        /// Why.
        error: RelayError,
    },
    /// Announce these origin streams and this load to the mesh.
    Announce {
        /// Streams this node originates.
        streams: Vec<StreamAnnouncement>,
        /// This node's load.
        load: NodeLoad,
    },
}

/// A path for a downstream node, drained with [`Core::poll_push`](super::Core::poll_push): the driver sends it to `peer`
/// over the relay protocol (a lost one is corrected by the next, every [`PATH_REPUSH`](super::PATH_REPUSH)), and
/// `peer`'s driver gives it to its core as [`Input::PathUpdate`] with `from` set to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPush {
    /// The downstream node (a relay out of the stream, connected or being connected).
    pub peer: PeerId,
    /// Stream name.
    pub stream: String,
    /// This node's depth for the stream (0 when `frozen`).
    pub depth: u32,
    /// This node's path with itself appended, as in [`Output::Serve`] (empty when `frozen`).
    pub path: Vec<PeerId>,
    /// This node has no path: it lost its upstream and is re-attaching; the downstream node
    /// keeps its edge and serves no relay request for the stream until a path comes.
    pub frozen: bool,
    /// This node relays to more nodes than its cap: the downstream node should move to its
    /// standby upstream ([`Input::PathUpdate`]'s `shed`).
    pub shed: bool,
    /// Sent the other way, to an upstream: this node closed its relay in (or standby) from
    /// `peer`, which closes the relay out at once instead of at its silence timeout (no path
    /// then: depth 0, empty path).
    pub left: bool,
    /// On a standby edge: this node keeps one of its spare fed slots for `peer`, which may move
    /// onto it. Each spare slot goes to one standby child at a time (the oldest edges first),
    /// so that two children never move onto the same slot.
    pub room: bool,
    /// With `shed`: another relay child of this node, with room, below which `peer` may move
    /// when its standby has no slot for it (the tree grows a level; the child is never below
    /// its sibling, so no loop can form).
    pub move_to: Option<PeerId>,
}

/// Counters of requests answered without a lookup, lookups, and refused relay paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Stream requests answered absent: the node knows no other node.
    pub alone: u64,
    /// ... the settled directory does not name the stream.
    pub not_in_directory: u64,
    /// ... the name was found absent moments ago.
    pub negative_cache: u64,
    /// ... too many lookups in flight.
    pub too_many_lookups: u64,
    /// ... too many streams being attached.
    pub attaches_full: u64,
    /// DHT lookups started.
    pub lookups: u64,
    /// Local publishes whose name another node holds.
    pub taken: u64,
    /// Relay requests refused, or answers abandoned, because they would close a cycle.
    pub cycles: u64,
    /// Relay requests refused, or answers abandoned, over the depth cap.
    pub too_deep: u64,
    /// Relay answers abandoned for a malformed path.
    pub bad_paths: u64,
    /// Relay answers abandoned because their path names a node lost moments ago.
    pub stale_paths: u64,
    /// Relays in re-attached because their upstream sent no media for [`MEDIA_STALL`](super::MEDIA_STALL).
    pub stalls: u64,
    /// Relays in re-attached because the upstream was lost, stalled or moved.
    pub reattaches: u64,
    /// Standby upstreams connected.
    pub standbys: u64,
    /// Relays in replaced at once by their standby upstream.
    pub standby_switches: u64,
    /// Paths pushed to relay children ([`PathPush`]).
    pub path_pushes: u64,
    /// Relays in re-attached because a path pushed by their upstream holds this node or is too
    /// deep.
    pub pushed_invalid: u64,
    /// Relay requests parked because an ancestor is re-attaching (the stream is frozen here).
    pub frozen_requests: u64,
    /// Relay children asked to move to their standby upstream (this node over its fan-out).
    pub sheds: u64,
    /// Planned moves to the standby upstream completed (make-before-break).
    pub handovers: u64,
    /// Planned moves given up: the standby did not take the stream over in time.
    pub handovers_failed: u64,
    /// Relay requests refused for a full fan-out, fed edges.
    pub full_refusals: u64,
    /// ... standby (paused) edges.
    pub standby_full_refusals: u64,
}
