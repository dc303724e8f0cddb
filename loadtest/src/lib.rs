//! Relaycast load test: a synthetic VP8 simulcast publisher and many WebRTC viewers, measuring
//! egress, loss, latency, join time, layer distribution and server CPU per delivered Gbit.
//!
//! The core is sans-IO ([`source`], [`stats`]); [`publisher`] and [`viewer`] are thin tokio/UDP
//! drivers around str0m; [`run`] orchestrates a run and [`plot`] draws SVG figures.

pub mod cpu;
pub mod plot;
pub mod publisher;
pub mod run;
pub mod signal;
pub mod source;
pub mod stats;
pub mod viewer;

pub use run::{RunConfig, Target, run};
pub use stats::Report;

/// Errors of a load-test run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Socket or thread I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// HTTP transport.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused or answered unexpectedly.
    #[error("signaling: {0}")]
    Signaling(String),
    /// str0m rejected an SDP or input.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// A bounded wait expired.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Plot drawing failed.
    #[error("plot: {0}")]
    Plot(String),
}
