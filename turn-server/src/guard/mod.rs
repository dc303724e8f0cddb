//! Policy in front of the `turn` server: a listener wrapper that inspects each request before the
//! server sees it (refusing forbidden peers with 403 and allocations over quota with 486, and
//! dropping garbage), and a relay-socket wrapper that enforces the peer filter, the bandwidth
//! limit and the maximum lifetime of each allocation.
//!
//! The `turn` server stores every nonce it issues and never forgets one it has not seen used, so
//! unauthenticated requests do not reach it: the guard answers them itself with a 401 carrying a
//! nonce the server issued recently (learned from one of its 401 answers; at most one request per
//! second is let through to learn a new one, every 10 minutes). Strangers thus add no state, and
//! clients sign their next request with a nonce the server accepts (Chromium does not retry an
//! Allocate answered 438). ChannelData and indications pass only from clients that hold an
//! allocation. Refusals are logged at most [`LOG_BURST`] times per
//! [`LOG_WINDOW`], with a count of the lines left out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::Notify;
use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS};
use stun::textattrs::TextAttribute;
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message, MessageType, Setter,
};
use webrtc_util::Conn;

use crate::filter::PeerPolicy;
use crate::quota::{QuotaGuard, QuotaTracker, TokenBucket};

/// STUN error code 403 (Forbidden).
pub const CODE_FORBIDDEN: u16 = 403;
/// STUN error code 486 (Allocation Quota Reached).
pub const CODE_QUOTA: u16 = 486;
/// STUN error code 401 (Unauthorized).
pub const CODE_UNAUTHORIZED: u16 = 401;
/// STUN error code 438 (Stale Nonce).
pub const CODE_STALE_NONCE: u16 = 438;
/// A learned nonce is handed out for this long (the server accepts it for an hour).
pub const NONCE_FRESH: std::time::Duration = std::time::Duration::from_secs(600);
/// While a new nonce is being learned, the previous one is still handed out up to this age.
pub const NONCE_USABLE: std::time::Duration = std::time::Duration::from_secs(3000);
/// At most one unauthenticated request per this interval reaches the server (to learn a nonce).
pub const HARVEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// Refusal log lines written per [`LOG_WINDOW`] at most.
pub const LOG_BURST: u32 = 10;
/// The window of [`LOG_BURST`].
pub const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Counters of refused traffic.
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams or frames that were neither STUN nor ChannelData.
    pub garbage: std::sync::atomic::AtomicU64,
    /// Requests answered 403 for a forbidden peer.
    pub forbidden: std::sync::atomic::AtomicU64,
    /// Allocate requests answered 486.
    pub over_quota: std::sync::atomic::AtomicU64,
    /// Signed requests answered 401 for expired, malformed or forged credentials.
    pub unauthorized: std::sync::atomic::AtomicU64,
    /// Relayed packets dropped by the filter, the bandwidth limit or the lifetime.
    pub dropped: std::sync::atomic::AtomicU64,
    /// Unauthenticated requests answered by the guard itself (401 with a shared nonce).
    pub challenged: std::sync::atomic::AtomicU64,
    /// ChannelData, indications or responses from clients without an allocation, dropped.
    pub unallocated: std::sync::atomic::AtomicU64,
}

mod grants;
mod inspect;
mod log;
mod nonce;
mod relay;
#[cfg(test)]
mod tests;

pub(crate) use grants::*;
pub(crate) use inspect::*;
pub(crate) use log::*;
pub(crate) use nonce::*;
pub(crate) use relay::*;

/// State shared by the wrappers of one server.
pub(crate) struct Shared {
    pub secret: String,
    pub realm: String,
    pub policy: PeerPolicy,
    pub quotas: Arc<QuotaTracker>,
    pub stats: Arc<Stats>,
    pub nonces: NoncePool,
    pub allocated: Allocated,
    pub granted: Granted,
    pub log: LogLimiter,
}

impl Shared {
    /// Shared state with an empty nonce pool.
    pub fn new(secret: String, realm: String, policy: PeerPolicy, quotas: Arc<QuotaTracker>, stats: Arc<Stats>) -> Self {
        Shared {
            secret,
            realm,
            policy,
            quotas,
            stats,
            nonces: NoncePool::default(),
            allocated: Arc::default(),
            granted: Arc::default(),
            log: LogLimiter::default(),
        }
    }
}

/// Who asked for the allocation being created: set by the listener wrapper when it passes an
/// authenticated Allocate request on, read by the relay generator the server then calls.
/// The `turn` server handles one listener's requests one at a time, so one slot per listener
/// suffices.
#[derive(Debug, Clone)]
pub(crate) struct AllocCtx {
    pub username: String,
    pub client: SocketAddr,
}

pub(crate) type CtxSlot = Arc<Mutex<Option<AllocCtx>>>;

/// Per client stream address, the signal that its stream closed (TCP/TLS listeners only): the
/// allocation made over a stream ends with the stream (RFC 8656 §3.1).
pub(crate) type StreamClosers = Arc<Mutex<HashMap<SocketAddr, Arc<Notify>>>>;

/// Signals the allocation of the stream from `client` that the stream closed.
pub(crate) fn stream_closed(closers: &StreamClosers, client: SocketAddr) {
    if let Some(n) = lock(closers).remove(&client) {
        n.notify_one();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}
