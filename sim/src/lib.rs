//! Relaycast mesh simulator: thousands of nodes, each running the real cluster core
//! ([`relaycast_cluster::Core`]), over a seeded network model.
//!
//! A virtual clock and an event queue replace the node's tokio driver: relay requests, answers
//! and session set-ups are delivered after per-link latencies (lost with a probability, then
//! timing out), directory snapshots come from a pluggable view policy ([`Policy::Global`]:
//! every node's load; [`Policy::Bounded`]: the stream's announcement, tree neighbours and a
//! bounded random sample; [`Policy::OneHop`]: the mesh's design, its connections' loads and the
//! stream's carriers from their presences), viewers join at random nodes, a fraction of the nodes is killed at
//! once, and nodes churn. Every event is followed by a walk up the upstream links of the node
//! it touched (a loop ends the run with [`SimError::Loop`]); the [`Report`] gives depths,
//! fan-out, control bytes, connections, heal times and unplaced viewers. The same seed gives
//! the same report.

pub mod params;
pub mod report;
pub mod sim;
pub mod view;

pub use params::{GLOBAL_LIMIT, Params, Policy, SimError};
pub use report::Report;
pub use sim::Sim;

/// Runs one simulation of `params` to its end.
pub fn run(params: Params) -> Result<Report, SimError> {
    Sim::new(params)?.run()
}
