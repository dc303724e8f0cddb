//! Relaycast cluster: the node's part in the mesh as pure decisions, without I/O.
//!
//! [`placement`] chooses upstream nodes for a relay and nodes for a viewer from a
//! [`relaycast_mesh::Directory`] snapshot; [`bounds`] keeps the control state that requests for
//! unknown streams may grow (negative cache, lookup budget) bounded.

pub mod bounds;
pub mod placement;

pub use placement::{best_node_for_viewer, pick_upstreams, relay_candidates};
