//! The simulation's settings and the errors that end a run.

use serde::Serialize;

/// Most nodes the `global` view policy is run with: every core holds every node's load, so its
/// memory grows with the square of the node count.
pub const GLOBAL_LIMIT: usize = 2000;

/// What each node knows of the mesh (the `Input::Directory` snapshots its core is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Every node's load report, from one global gossip topic (the mesh's design until load
    /// reports went one hop).
    Global,
    /// The stream's announcement with its origin's load, the node's tree neighbours, and a
    /// bounded random sample of nodes that carry the stream and have room.
    Bounded,
    /// The mesh's design today: the load reports of the node's connected peers (its tree
    /// neighbours and a random sample of `sample` other nodes, drawn again every
    /// `sample_every_ms`), sent one hop every 5 s, and, at a node that carries or wants the
    /// stream, every carrier from its presences on the stream's topic (gossiped among the
    /// stream's followers). Every core may hold every carrier: limited like `global`.
    OneHop,
}

impl std::str::FromStr for Policy {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "global" => Ok(Policy::Global),
            "bounded" => Ok(Policy::Bounded),
            "onehop" => Ok(Policy::OneHop),
            other => Err(SimError::BadParams(format!("unknown policy {other:?} (global, bounded or onehop)"))),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Global => "global",
            Policy::Bounded => "bounded",
            Policy::OneHop => "onehop",
        })
    }
}

/// Every setting of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Params {
    /// Nodes at the start (node 0 is the origin).
    pub nodes: usize,
    /// Viewers joining over the join window.
    pub viewers: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// Each node's `max_relay_children`.
    pub max_relay_children: u32,
    /// Each node's viewer capacity.
    pub capacity: u32,
    /// Each node's `max_depth`.
    pub max_depth: u32,
    /// Fraction of nodes killed at once after the joins.
    pub kill: f64,
    /// The view policy.
    pub policy: Policy,
    /// Size of the bounded policy's random sample.
    pub sample: usize,
    /// How often the bounded policy draws a new sample, milliseconds.
    pub sample_every_ms: u64,
    /// How often a node's view reaches its core (the gossip interval), milliseconds.
    pub refresh_ms: u64,
    /// Probability that a relay request, its answer or a path push is lost (the request times out).
    pub loss: f64,
    /// Shortest one-way link latency, milliseconds.
    pub latency_min_ms: u64,
    /// Longest one-way link latency, milliseconds.
    pub latency_max_ms: u64,
    /// When set, a changed edge's first keyframe comes from the publisher, which takes this
    /// many milliseconds to answer a request (a publisher that sends keyframes only when asked,
    /// as Chromium does, so no upstream's cache holds a recent one): the request travels to the
    /// origin and the keyframe back down. Unset: the new upstream answers from its cache.
    pub publisher_keyframe_ms: Option<u64>,
    /// Seconds over which the viewers join (from second 1).
    pub join_secs: f64,
    /// Seconds between the end of the joins and the kill.
    pub settle_secs: f64,
    /// Seconds observed after the kill.
    pub heal_secs: f64,
    /// Churn: nodes leaving (and as many new nodes joining) per second after the heal window.
    pub churn: f64,
    /// Seconds of churn.
    pub churn_secs: f64,
    /// Count loops instead of failing on the first one (to measure how often they form).
    pub count_loops: bool,
    /// Times a viewer whose node could not get the stream asks again (a second apart).
    pub viewer_retries: u32,
    /// Redirects a viewer follows from full nodes before it counts as unplaced.
    pub max_redirects: u32,
    /// Whether the viewers of killed nodes join again at other nodes.
    pub rejoin: bool,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            nodes: 100,
            viewers: 10_000,
            seed: 1,
            max_relay_children: 8,
            capacity: 200,
            max_depth: relaycast_cluster::path::DEFAULT_MAX_DEPTH,
            kill: 0.1,
            policy: Policy::Bounded,
            sample: 32,
            sample_every_ms: 5000,
            refresh_ms: 1000,
            loss: 0.0,
            latency_min_ms: 5,
            latency_max_ms: 50,
            publisher_keyframe_ms: None,
            join_secs: 20.0,
            settle_secs: 10.0,
            heal_secs: 25.0,
            churn: 0.0,
            churn_secs: 30.0,
            count_loops: false,
            viewer_retries: 5,
            max_redirects: 3,
            rejoin: true,
        }
    }
}

impl Params {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.nodes < 2 {
            return Err(SimError::BadParams("at least 2 nodes".into()));
        }
        if self.policy == Policy::Global && self.nodes > GLOBAL_LIMIT {
            return Err(SimError::GlobalTooLarge { nodes: self.nodes, limit: GLOBAL_LIMIT });
        }
        if !(0.0..=1.0).contains(&self.kill) || !(0.0..=1.0).contains(&self.loss) {
            return Err(SimError::BadParams("--kill and --loss are fractions between 0 and 1".into()));
        }
        if self.latency_min_ms == 0 || self.latency_max_ms < self.latency_min_ms {
            return Err(SimError::BadParams("latencies: 0 < min <= max".into()));
        }
        if self.refresh_ms == 0 || self.sample_every_ms == 0 {
            return Err(SimError::BadParams("refresh and sample intervals must be positive".into()));
        }
        for (name, v) in [
            ("join", self.join_secs),
            ("settle", self.settle_secs),
            ("heal", self.heal_secs),
            ("churn", self.churn),
            ("churn-secs", self.churn_secs),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(SimError::BadParams(format!("--{name} must be a non-negative number")));
            }
        }
        Ok(())
    }
}

/// Why a run ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A relay tree holds a cycle: following upstream links from `node` revisits a node.
    #[error("loop at {at_ms} ms: following upstreams from node {node} revisits node {repeated} (chain {chain:?})")]
    Loop {
        /// Simulated time, milliseconds.
        at_ms: u64,
        /// Where the walk started.
        node: usize,
        /// The node met twice.
        repeated: usize,
        /// The nodes walked.
        chain: Vec<usize>,
    },
    /// A core's own ancestor path holds a node twice or the node itself.
    #[error("bad path at {at_ms} ms: node {node}'s ancestor path {path:?} repeats a node or holds the node itself")]
    BadPath {
        /// Simulated time, milliseconds.
        at_ms: u64,
        /// The node.
        node: usize,
        /// Its path, as node indices.
        path: Vec<usize>,
    },
    /// The global policy was asked for more nodes than it can hold.
    #[error("the global policy keeps every node's load in every core; limited to {limit} nodes (asked {nodes})")]
    GlobalTooLarge {
        /// Nodes asked.
        nodes: usize,
        /// The limit.
        limit: usize,
    },
    /// Settings that do not fit together.
    #[error("bad settings: {0}")]
    BadParams(String),
}
