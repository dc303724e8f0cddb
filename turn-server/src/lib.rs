//! Relaycast TURN server: RFC 8656 relaying over UDP and TCP (optionally TLS) built on the
//! `turn` crate, with coturn-style time-limited credentials, a peer filter that refuses internal
//! addresses by default, and per-user, per-IP, bandwidth and lifetime quotas.

pub mod cli;
pub mod creds;
pub mod filter;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
pub mod links;
pub mod quota;
pub mod server;
pub mod stream;

pub use cli::TurnArgs;
pub use creds::{Credentials, mint, mint_until, password_for};
pub use filter::{Cidr, MeshPeers, PeerPolicy};
pub use links::TurnLinks;
pub use guard::{CODE_FORBIDDEN, CODE_QUOTA, Stats};
pub use quota::Limits;
pub use server::{TlsFiles, TurnConfig, TurnError, TurnServer};
