//! Relaycast media plane.
//!
//! A sans-IO forwarding core (layer selection, RTP rewriting, keyframe policy, bitrate metering,
//! codec inspection, the per-viewer [`forward::Forwarder`]) and the UDP workers that drive str0m
//! peer connections with it. [`Sfu`] is the handle the signaling layer uses.

pub mod bitrate;
pub mod clock;
pub mod codec;
pub mod dtls;
pub mod egress;
pub mod failover;
mod dtls_openssl;
pub mod forward;
pub mod gop;
pub mod interfaces;
pub mod keyframe;
pub mod layer;
pub mod lifecycle;
pub mod metrics;
pub mod negotiate;
pub mod packet;
pub mod peer;
pub mod relay;
pub mod rewrite;
pub mod sfu;
pub mod stream;
pub mod tap;
pub mod udp;
mod worker;

pub use metrics::Metrics;
pub use sfu::{SessionSummary, Sfu, SfuConfig, SfuError, StreamSummary};
pub(crate) use sfu::Shared;
