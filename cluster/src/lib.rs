//! Relaycast cluster: the node's part in the mesh as pure decisions, without I/O.
//!
//! [`core::Core`] is a state machine (inputs and time in, actions out) for the streams a node
//! receives from and sends to other nodes: attaching a stream to an upstream, serving
//! downstream nodes, failing over when an upstream is lost, stalls or moves, dropping idle
//! relays, and announcing the node's streams and load. [`path`] keeps every stream's relay tree
//! free of loops and under its depth cap; [`placement`] chooses upstream nodes and nodes for
//! viewers from a [`relaycast_mesh::Directory`] snapshot; [`bounds`] keeps the state that
//! requests for unknown streams may grow (negative cache, lookup budget) bounded. A thin driver
//! (the node's `cluster` module) feeds the core from mesh events, the media plane and timers.

pub mod bounds;
pub mod core;
pub mod path;
pub mod placement;

pub use crate::core::{Config, Core, Input, Output, PathPush};
pub use placement::{best_node_for_viewer, pick_upstreams, relay_candidates};
