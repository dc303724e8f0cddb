//! Relaycast's send path to viewers, outside str0m's per-viewer session: each forwarded packet
//! costs one header write, one seal and one place in a send batch.
//!
//! Every module is a sans-IO core (inputs and time in, outputs out), tested without sockets.
//! str0m still runs each viewer's ICE, DTLS and incoming RTCP; this crate owns what leaves.

pub mod bwe;
pub mod header;
pub mod history;
pub mod pacer;
pub mod report;
pub mod session;
pub mod srtp;
pub mod twcc;
