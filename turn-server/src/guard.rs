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

/// What the guard does with a request that carries no credentials.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Answer 401 with this nonce (one the server issued and still accepts).
    Reply(String),
    /// Let the server answer, so that the guard learns a fresh nonce from its 401.
    Pass,
    /// Drop it (the client retransmits).
    Drop,
}

/// The nonce the guard hands to unauthenticated clients: one the `turn` server issued (learned
/// from one of its 401 answers) and still accepts. The server keeps every nonce it issues, so
/// it is asked for a new one at most once per [`HARVEST_INTERVAL`], and only once the current
/// one is older than [`NONCE_FRESH`]: strangers never grow its table.
#[derive(Debug, Default)]
pub(crate) struct NoncePool {
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    current: Option<(String, Instant)>,
    last_pass: Option<Instant>,
}

impl NoncePool {
    /// What to do with an unauthenticated request at `now`.
    pub fn challenge(&self, now: Instant) -> Challenge {
        let mut st = lock(&self.state);
        let age = |t: Instant| now.saturating_duration_since(t);
        if let Some((n, t)) = &st.current
            && age(*t) < NONCE_FRESH
        {
            return Challenge::Reply(n.clone());
        }
        if st.last_pass.is_none_or(|t| age(t) >= HARVEST_INTERVAL) {
            st.last_pass = Some(now);
            return Challenge::Pass;
        }
        match &st.current {
            Some((n, t)) if age(*t) < NONCE_USABLE => Challenge::Reply(n.clone()),
            _ => Challenge::Drop,
        }
    }

    /// Records a nonce the server just issued.
    pub fn learn(&self, nonce: String, now: Instant) {
        lock(&self.state).current = Some((nonce, now));
    }
}

/// The NONCE of a 401 error response the server sends, if `buf` is one (checked cheaply first:
/// relayed data passes through the same path).
fn issued_nonce(buf: &[u8]) -> Option<String> {
    // STUN, error-response class (both class bits of the message type set).
    if buf.len() < 20 || buf[0] >> 6 != 0 || u16::from_be_bytes([buf[0], buf[1]]) & 0x0110 != 0x0110 {
        return None;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    m.decode().ok()?;
    let mut code = ErrorCodeAttribute::default();
    use stun::message::Getter;
    code.get_from(&m).ok()?;
    if code.code.0 != CODE_UNAUTHORIZED && code.code.0 != CODE_STALE_NONCE {
        return None;
    }
    let nonce = m.get(ATTR_NONCE).ok()?;
    (nonce.len() <= 256).then(|| String::from_utf8(nonce).ok()).flatten()
}

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; the rest are counted and reported once.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter { state: Mutex::new((Instant::now(), 0, 0)) }
    }
}

impl LogLimiter {
    /// Whether a line may be written at `now`.
    pub fn allow(&self, now: Instant) -> bool {
        let mut st = lock(&self.state);
        if now.saturating_duration_since(st.0) >= LOG_WINDOW {
            if st.2 > 0 {
                tracing::info!(suppressed = st.2, "TURN: refusal log lines left out in the last window");
            }
            *st = (now, 0, 0);
        }
        if st.1 < LOG_BURST {
            st.1 += 1;
            true
        } else {
            st.2 += 1;
            false
        }
    }
}

/// Counts live allocations per client transport address (the server's 5-tuple key).
pub(crate) type Allocated = Arc<Mutex<HashMap<SocketAddr, usize>>>;

/// One counted allocation of a client; dropping it releases the count.
pub(crate) struct AllocMark {
    map: Allocated,
    client: SocketAddr,
}

impl AllocMark {
    fn new(map: &Allocated, client: SocketAddr) -> Self {
        *lock(map).entry(client).or_insert(0) += 1;
        AllocMark { map: map.clone(), client }
    }
}

impl Drop for AllocMark {
    fn drop(&mut self) {
        let mut m = lock(&self.map);
        if let Some(n) = m.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.client);
            }
        }
    }
}

/// Most mesh peer addresses one allocation is granted.
pub const MAX_GRANTS: usize = 64;

/// Mesh peer media addresses an allocation was granted when its client created a permission or
/// bound a channel for them (the mesh set is read then, not per packet).
#[derive(Debug, Default)]
pub(crate) struct Grants(std::sync::RwLock<std::collections::HashSet<SocketAddr>>);

impl Grants {
    fn add(&self, addrs: &[SocketAddr]) {
        let mut g = self.0.write().unwrap_or_else(|e| e.into_inner());
        for a in addrs {
            if g.len() >= MAX_GRANTS {
                break;
            }
            g.insert(*a);
        }
    }

    fn contains(&self, addr: SocketAddr) -> bool {
        let addr = SocketAddr::new(crate::filter::canonical(addr.ip()), addr.port());
        self.0.read().unwrap_or_else(|e| e.into_inner()).contains(&addr)
    }
}

/// The grants of each live allocation, by client transport address.
pub(crate) type Granted = Arc<Mutex<HashMap<SocketAddr, Arc<Grants>>>>;

/// Removes an allocation's grants when its relay socket goes.
pub(crate) struct GrantMark {
    map: Granted,
    client: SocketAddr,
    grants: Arc<Grants>,
}

impl Drop for GrantMark {
    fn drop(&mut self) {
        let mut m = lock(&self.map);
        if m.get(&self.client).is_some_and(|g| Arc::ptr_eq(g, &self.grants)) {
            m.remove(&self.client);
        }
    }
}

/// Admits `peer` for `client`'s allocation when it is a signed mesh peer's media address (the
/// exact address for a channel, the peer's addresses on that IP for a permission), recording the
/// grant for the allocation's relay socket. False when not a mesh peer or no allocation.
fn grant_mesh_peer(shared: &Shared, client: SocketAddr, peer: SocketAddr, exact: bool) -> bool {
    let addrs = if exact {
        if shared.policy.mesh.contains(peer) { vec![peer] } else { vec![] }
    } else {
        shared.policy.mesh.addrs_of(peer.ip())
    };
    if addrs.is_empty() {
        return false;
    }
    let Some(grants) = lock(&shared.granted).get(&client).cloned() else { return false };
    let addrs: Vec<SocketAddr> =
        addrs.into_iter().map(|a| SocketAddr::new(crate::filter::canonical(a.ip()), a.port())).collect();
    grants.add(&addrs);
    true
}

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

/// What to do with one inbound message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it to the server (with the allocation context for an authenticated Allocate).
    Pass(Option<AllocCtx2>),
    /// Answer with these bytes and do not hand it on.
    Reply(Vec<u8>),
    /// Ignore it.
    Drop,
}

/// Username and client of an authenticated Allocate (comparable form for tests).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AllocCtx2 {
    pub username: String,
}

/// Decodes every XOR-PEER-ADDRESS attribute of `m`.
pub(crate) fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    let mut out = vec![];
    for a in &m.attributes.0 {
        if a.typ != ATTR_XOR_PEER_ADDRESS {
            continue;
        }
        let v = &a.value;
        if v.len() < 8 {
            return None;
        }
        let port = u16::from_be_bytes([v[2], v[3]]) ^ 0x2112;
        let cookie = 0x2112_a442u32.to_be_bytes();
        let ip = match v[1] {
            0x01 => {
                let mut b = [0u8; 4];
                for i in 0..4 {
                    b[i] = v[4 + i] ^ cookie[i];
                }
                IpAddr::from(b)
            }
            0x02 if v.len() >= 20 => {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&cookie);
                key[4..].copy_from_slice(&m.transaction_id.0);
                let mut b = [0u8; 16];
                for i in 0..16 {
                    b[i] = v[4 + i] ^ key[i];
                }
                IpAddr::from(b)
            }
            _ => return None,
        };
        out.push(SocketAddr::new(ip, port));
    }
    Some(out)
}

fn error_response(m: &Message, code: u16, reason: &str) -> Option<Vec<u8>> {
    let mut r = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(m.transaction_id),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute { code: ErrorCode(code), reason: reason.as_bytes().to_vec() }),
    ];
    r.build(&setters).ok()?;
    Some(r.raw)
}

/// A 401 with the realm and `nonce`.
fn challenge(shared: &Shared, m: &Message, nonce: String) -> Option<Vec<u8>> {
    let mut r = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(m.transaction_id),
        Box::new(MessageType::new(m.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute { code: ErrorCode(CODE_UNAUTHORIZED), reason: b"Unauthorized".to_vec() }),
        Box::new(TextAttribute::new(ATTR_REALM, shared.realm.clone())),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce)),
    ];
    r.build(&setters).ok()?;
    Some(r.raw)
}

/// Whether `src` holds an allocation.
fn has_allocation(shared: &Shared, src: SocketAddr) -> bool {
    lock(&shared.allocated).contains_key(&src)
}

/// Checks the USERNAME (REST form, not expired) and MESSAGE-INTEGRITY of a signed request.
fn check_signature(shared: &Shared, m: &mut Message) -> Result<(), String> {
    let user = m.get(ATTR_USERNAME).map_err(|_| "no USERNAME".to_owned())?;
    let user = String::from_utf8(user).map_err(|_| "USERNAME is not UTF-8".to_owned())?;
    crate::creds::check_username(&user, crate::creds::unix_now()).map_err(|e| e.to_string())?;
    let realm = m.get(ATTR_REALM).map_err(|_| "no REALM".to_owned())?;
    let realm = String::from_utf8(realm).map_err(|_| "REALM is not UTF-8".to_owned())?;
    let key = turn::auth::generate_auth_key(&user, &realm, &crate::creds::password_for(&shared.secret, &user));
    stun::integrity::MessageIntegrity(key).check(m).map_err(|_| format!("bad MESSAGE-INTEGRITY for {user:?}"))
}

/// Decides what to do with one inbound message from `src`.
pub(crate) fn inspect(shared: &Shared, buf: &[u8], src: SocketAddr) -> Verdict {
    if buf.len() >= 4 && buf[0] >> 6 == 1 && usize::from(u16::from_be_bytes([buf[2], buf[3]])) <= buf.len() - 4 {
        // ChannelData: the server checks the binding; only clients with an allocation have one.
        if !has_allocation(shared, src) {
            bump(&shared.stats.unallocated);
            return Verdict::Drop;
        }
        return Verdict::Pass(None);
    }
    if !stun::message::is_message(buf) {
        bump(&shared.stats.garbage);
        return Verdict::Drop;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    if m.decode().is_err() {
        bump(&shared.stats.garbage);
        return Verdict::Drop;
    }
    if m.typ.class != CLASS_REQUEST {
        // Send indications need an allocation; responses are never expected from clients.
        if m.typ.class == CLASS_INDICATION && has_allocation(shared, src) {
            return Verdict::Pass(None);
        }
        bump(&shared.stats.unallocated);
        return Verdict::Drop;
    }
    let method = m.typ.method;
    if method == METHOD_BINDING {
        return Verdict::Pass(None);
    }
    if method != METHOD_ALLOCATE
        && method != METHOD_REFRESH
        && method != METHOD_CREATE_PERMISSION
        && method != METHOD_CHANNEL_BIND
    {
        bump(&shared.stats.garbage);
        return Verdict::Drop;
    }
    if method == METHOD_CREATE_PERMISSION || method == METHOD_CHANNEL_BIND {
        let Some(peers) = peer_addresses(&m) else {
            bump(&shared.stats.garbage);
            return Verdict::Drop;
        };
        let refused = peers.iter().find(|p| {
            let exact = method == METHOD_CHANNEL_BIND;
            let by_policy = if exact { shared.policy.allows_addr(**p) } else { shared.policy.allows_ip(p.ip()) };
            !by_policy && !grant_mesh_peer(shared, src, **p, exact)
        });
        if let Some(p) = refused {
            if shared.log.allow(Instant::now()) {
                tracing::debug!(client = %src, peer = %p, "TURN peer refused by policy");
            }
            bump(&shared.stats.forbidden);
            return error_response(&m, CODE_FORBIDDEN, "Forbidden peer address").map_or(Verdict::Drop, Verdict::Reply);
        }
    }
    // Unauthenticated: the guard answers with a nonce the server already holds, so nothing is
    // stored for a stranger.
    if !m.contains(ATTR_MESSAGE_INTEGRITY) {
        return match shared.nonces.challenge(Instant::now()) {
            Challenge::Reply(nonce) => {
                bump(&shared.stats.challenged);
                challenge(shared, &m, nonce).map_or(Verdict::Drop, Verdict::Reply)
            }
            Challenge::Pass => Verdict::Pass(None),
            Challenge::Drop => {
                bump(&shared.stats.challenged);
                Verdict::Drop
            }
        };
    }
    // Signed requests are checked here, so forged or expired credentials never reach (and never
    // add state to) the server; they get a final 401 without a nonce to retry with.
    if let Err(why) = check_signature(shared, &mut m) {
        if shared.log.allow(Instant::now()) {
            tracing::debug!(client = %src, reason = %why, "TURN request refused");
        }
        bump(&shared.stats.unauthorized);
        return error_response(&m, CODE_UNAUTHORIZED, "Unauthorized").map_or(Verdict::Drop, Verdict::Reply);
    }
    if method == METHOD_ALLOCATE
        && let Ok(user) = m.get(ATTR_USERNAME)
    {
        let username = String::from_utf8_lossy(&user).into_owned();
        if let Err(e) = shared.quotas.check(&username, src.ip()) {
            if shared.log.allow(Instant::now()) {
                tracing::debug!(client = %src, error = %e, "TURN allocation refused");
            }
            bump(&shared.stats.over_quota);
            return error_response(&m, CODE_QUOTA, "Allocation Quota Reached").map_or(Verdict::Drop, Verdict::Reply);
        }
        return Verdict::Pass(Some(AllocCtx2 { username }));
    }
    Verdict::Pass(None)
}

/// A listener connection with the policy checks in front of the server.
pub(crate) struct GuardedConn {
    pub inner: Arc<dyn Conn + Send + Sync>,
    pub shared: Arc<Shared>,
    pub ctx: CtxSlot,
}

#[async_trait]
impl Conn for GuardedConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc_util::Result<()> {
        self.inner.connect(addr).await
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc_util::Result<usize> {
        self.inner.recv(buf).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut errors = 0u32;
        loop {
            let (n, src) = match self.inner.recv_from(buf).await {
                Ok(v) => v,
                // A UDP socket reports ICMP errors of earlier sends here; they are not fatal.
                Err(webrtc_util::Error::Io(e)) if errors < 1000 => {
                    errors += 1;
                    if self.shared.log.allow(Instant::now()) {
                        tracing::debug!(error = %e, "TURN listener receive error");
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            errors = 0;
            match inspect(&self.shared, &buf[..n], src) {
                Verdict::Pass(ctx) => {
                    // The server handles this message before it asks for the next one, so the
                    // slot describes exactly the request being handled.
                    *lock(&self.ctx) = ctx.map(|c| AllocCtx { username: c.username, client: src });
                    return Ok((n, src));
                }
                Verdict::Reply(bytes) => {
                    let _ = self.inner.send_to(&bytes, src).await;
                }
                Verdict::Drop => {}
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc_util::Result<usize> {
        self.inner.send(buf).await
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if let Some(nonce) = issued_nonce(buf) {
            self.shared.nonces.learn(nonce, Instant::now());
        }
        self.inner.send_to(buf, target).await
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.inner.close().await
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Creates relay sockets for allocations, each wrapped in a [`RelayConn`].
pub(crate) struct RelayGen {
    pub bind_ip: IpAddr,
    pub relay_ip: IpAddr,
    pub shared: Arc<Shared>,
    pub ctx: CtxSlot,
    /// Set on stream listeners.
    pub closers: Option<StreamClosers>,
}

#[async_trait]
impl turn::relay::RelayAddressGenerator for RelayGen {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        _use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        // Called once per allocation, and also to probe for a free even port (EVEN-PORT).
        let ctx = lock(&self.ctx).clone().ok_or_else(|| turn::Error::Other("allocation without context".into()))?;
        let guard = self
            .shared
            .quotas
            .acquire(&ctx.username, ctx.client.ip())
            .map_err(|e| turn::Error::Other(e.to_string()))?;
        let mark = AllocMark::new(&self.shared.allocated, ctx.client);
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(self.bind_ip, requested_port))
            .await
            .map_err(|e| turn::Error::Other(format!("binding a relay socket: {e}")))?;
        let mut relay_addr = sock.local_addr().map_err(|e| turn::Error::Other(e.to_string()))?;
        relay_addr.set_ip(self.relay_ip);
        let limits = self.shared.quotas.limits();
        let now = Instant::now();
        let closed = self.closers.as_ref().map(|c| {
            let n = Arc::new(Notify::new());
            lock(c).insert(ctx.client, n.clone());
            n
        });
        let grants = Arc::new(Grants::default());
        lock(&self.shared.granted).insert(ctx.client, grants.clone());
        let grant_mark = GrantMark { map: self.shared.granted.clone(), client: ctx.client, grants: grants.clone() };
        tracing::debug!(client = %ctx.client, user = %ctx.username, relay = %relay_addr, "TURN allocation");
        let conn = RelayConn {
            sock,
            shared: self.shared.clone(),
            deadline: tokio::time::Instant::from_std(now + limits.max_lifetime),
            up: Mutex::new(TokenBucket::new(limits.bitrate, now)),
            down: Mutex::new(TokenBucket::new(limits.bitrate, now)),
            closed,
            grants,
            _guard: guard,
            _mark: mark,
            _grants: grant_mark,
        };
        Ok((Arc::new(conn), relay_addr))
    }
}

/// An allocation's relay socket: relays only to allowed peers, within the bandwidth limit, until
/// the maximum lifetime, after which the server drops the allocation.
pub(crate) struct RelayConn {
    sock: tokio::net::UdpSocket,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    up: Mutex<TokenBucket>,
    down: Mutex<TokenBucket>,
    closed: Option<Arc<Notify>>,
    grants: Arc<Grants>,
    _guard: QuotaGuard,
    _mark: AllocMark,
    _grants: GrantMark,
}

impl RelayConn {
    /// The policy's peers, plus the mesh peers granted to this allocation.
    fn allowed(&self, addr: SocketAddr) -> bool {
        self.shared.policy.allows_addr(addr) || self.grants.contains(addr)
    }
}

async fn closed_or_never(n: &Option<Arc<Notify>>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl Conn for RelayConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("connect on a relay socket".into()))
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("recv without address on a relay socket".into()))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        loop {
            let (n, src) = tokio::select! {
                r = self.sock.recv_from(buf) => match r {
                    Ok(v) => v,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e.into()),
                },
                _ = tokio::time::sleep_until(self.deadline) => {
                    tracing::debug!("TURN allocation reached its maximum lifetime");
                    return Err(webrtc_util::Error::Other("allocation lifetime exceeded".into()));
                }
                _ = closed_or_never(&self.closed) => {
                    tracing::debug!("TURN client stream closed, ending its allocation");
                    return Err(webrtc_util::Error::Other("client stream closed".into()));
                }
            };
            if !self.allowed(src) || !lock(&self.down).take(n, Instant::now()) {
                bump(&self.shared.stats.dropped);
                continue;
            }
            return Ok((n, src));
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("send without address on a relay socket".into()))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if tokio::time::Instant::now() >= self.deadline
            || !self.allowed(target)
            || !lock(&self.up).take(buf.len(), Instant::now())
        {
            bump(&self.shared.stats.dropped);
            return Ok(buf.len());
        }
        Ok(self.sock.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::Limits;
    use stun::agent::TransactionId;
    use stun::message::BINDING_REQUEST;
    use stun::textattrs::TextAttribute;

    fn shared(per_ip: usize) -> Shared {
        Shared::new(
            "s".into(),
            "relaycast".into(),
            PeerPolicy::new(vec![], vec!["127.0.0.1:5000".parse().unwrap()]),
            QuotaTracker::new(Limits { per_ip, ..Limits::default() }),
            Arc::default(),
        )
    }

    fn attr(bytes: &[u8], a: stun::attributes::AttrType) -> Option<String> {
        let mut m = Message::new();
        m.raw = bytes.to_vec();
        m.decode().unwrap();
        m.get(a).ok().map(|v| String::from_utf8(v).unwrap())
    }

    fn peer_attr(m: &mut Message, addr: SocketAddr) {
        let xa = stun::xoraddr::XorMappedAddress { ip: addr.ip(), port: addr.port() };
        xa.add_to_as(m, ATTR_XOR_PEER_ADDRESS).unwrap();
    }

    fn request(method: stun::message::Method, peers: &[SocketAddr], user: Option<&str>) -> Vec<u8> {
        let mut m = Message::new();
        m.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(method, CLASS_REQUEST))]).unwrap();
        for p in peers {
            peer_attr(&mut m, *p);
        }
        if let Some(u) = user {
            TextAttribute::new(ATTR_USERNAME, u.to_owned()).add_to(&mut m).unwrap();
        }
        m.raw.clone()
    }

    fn error_code(bytes: &[u8]) -> u16 {
        let mut m = Message::new();
        m.raw = bytes.to_vec();
        m.decode().unwrap();
        assert_eq!(m.typ.class, CLASS_ERROR_RESPONSE);
        let mut e = ErrorCodeAttribute::default();
        use stun::message::Getter;
        e.get_from(&m).unwrap();
        e.code.0
    }

    const SRC: &str = "198.51.100.7:4000";

    fn signed(user: &str, pass: &str) -> Vec<u8> {
        let nonce = "0123456789abcdef";
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
            Box::new(TextAttribute::new(ATTR_USERNAME, user.into())),
            Box::new(TextAttribute::new(ATTR_REALM, "relaycast".into())),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())),
            Box::new(stun::integrity::MessageIntegrity::new_long_term_integrity(user.into(), "relaycast".into(), pass.into())),
            Box::new(stun::fingerprint::FINGERPRINT),
        ];
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn signed_requests_are_verified() {
        let s = shared(4);
        let src = SRC.parse().unwrap();
        let good = crate::creds::mint("s", "v", std::time::Duration::from_secs(60));
        assert_eq!(
            inspect(&s, &signed(&good.username, &good.password), src),
            Verdict::Pass(Some(AllocCtx2 { username: good.username.clone() }))
        );
        let forged = crate::creds::mint("other", "v", std::time::Duration::from_secs(60));
        let expired = crate::creds::mint_until("s", "v", 1000);
        for (u, p) in [(&good.username, "wrong"), (&forged.username, forged.password.as_str()), (&expired.username, expired.password.as_str())] {
            match inspect(&s, &signed(u, p), src) {
                Verdict::Reply(b) => assert_eq!(error_code(&b), 401, "{u}"),
                v => panic!("{u}: {v:?}"),
            }
        }
        assert_eq!(s.stats.unauthorized.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn xor_peer_addresses_decode() {
        for a in ["127.0.0.1:5000", "[fe80::1]:9", "[2001:db8::5]:65535"] {
            let raw = request(METHOD_CREATE_PERMISSION, &[a.parse().unwrap()], None);
            let mut m = Message::new();
            m.raw = raw;
            m.decode().unwrap();
            assert_eq!(peer_addresses(&m).unwrap(), vec![a.parse::<SocketAddr>().unwrap()]);
        }
    }

    #[test]
    fn forbidden_peers_get_403() {
        let s = shared(4);
        s.nonces.learn("n".into(), Instant::now());
        let src = SRC.parse().unwrap();
        let bad = request(METHOD_CREATE_PERMISSION, &["8.8.8.8:1".parse().unwrap(), "10.0.0.1:1".parse().unwrap()], None);
        match inspect(&s, &bad, src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 403),
            v => panic!("{v:?}"),
        }
        // Allowed peers get past the filter to the authentication challenge.
        let own = request(METHOD_CREATE_PERMISSION, &["127.0.0.1:9".parse().unwrap()], None);
        match inspect(&s, &own, src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 401, "permissions are per IP"),
            v => panic!("{v:?}"),
        }
        let bind_other_port = request(METHOD_CHANNEL_BIND, &["127.0.0.1:9".parse().unwrap()], None);
        match inspect(&s, &bind_other_port, src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 403, "channels are per address"),
            v => panic!("{v:?}"),
        }
        let bind_own = request(METHOD_CHANNEL_BIND, &["127.0.0.1:5000".parse().unwrap()], None);
        match inspect(&s, &bind_own, src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 401),
            v => panic!("{v:?}"),
        }
        let v6 = request(METHOD_CREATE_PERMISSION, &["[::1]:1".parse().unwrap()], None);
        assert!(matches!(inspect(&s, &v6, src), Verdict::Reply(_)));
        assert_eq!(s.stats.forbidden.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn signed_mesh_peers_media_addresses_are_relayable_by_default() {
        let s = shared(4);
        s.nonces.learn("n".into(), Instant::now());
        let src: SocketAddr = SRC.parse().unwrap();
        let mesh_peer: SocketAddr = "203.0.113.9:41000".parse().unwrap();
        let code = |method, peer: SocketAddr| match inspect(&s, &request(method, &[peer], None), src) {
            Verdict::Reply(b) => error_code(&b),
            v => panic!("{v:?}"),
        };
        // A public address is refused by default, mesh peer or not, until the node lists it.
        assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
        s.policy.mesh.set([mesh_peer]);
        // Listed, but the client holds no allocation: nothing to grant it to.
        assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
        // With an allocation (its relay socket registers its grants), the permission passes the
        // filter to authentication, and the allocation may relay to exactly that address.
        let grants = Arc::new(Grants::default());
        lock(&s.granted).insert(src, grants.clone());
        assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 401, "permission for a mesh peer's IP");
        assert!(grants.contains(mesh_peer));
        assert!(!grants.contains("203.0.113.9:41001".parse().unwrap()), "only the peer's media port");
        assert_eq!(code(METHOD_CHANNEL_BIND, "203.0.113.9:41001".parse().unwrap()), 403, "channels are exact");
        assert_eq!(code(METHOD_CHANNEL_BIND, mesh_peer), 401);
        // Other public peers stay refused; the node's own addresses still pass.
        assert_eq!(code(METHOD_CREATE_PERMISSION, "203.0.113.10:41000".parse().unwrap()), 403);
        assert_eq!(code(METHOD_CHANNEL_BIND, "127.0.0.1:5000".parse().unwrap()), 401);
        // The node drops the peer: new permissions for it are refused (the set is read when a
        // permission is created; the allocation keeps what it was granted).
        s.policy.mesh.set([]);
        assert_eq!(code(METHOD_CREATE_PERMISSION, mesh_peer), 403);
        assert!(grants.contains(mesh_peer));
        // Grants per allocation are bounded.
        let many: Vec<SocketAddr> = (0..200u16).map(|p| SocketAddr::new(mesh_peer.ip(), 1000 + p)).collect();
        grants.add(&many);
        assert_eq!(grants.0.read().unwrap().len(), MAX_GRANTS);
    }

    #[test]
    fn allocations_over_quota_get_486() {
        let s = shared(1);
        let src: SocketAddr = SRC.parse().unwrap();
        let c = crate::creds::mint("s", "u", std::time::Duration::from_secs(60));
        let alloc = signed(&c.username, &c.password);
        assert_eq!(inspect(&s, &alloc, src), Verdict::Pass(Some(AllocCtx2 { username: c.username.clone() })));
        let g = s.quotas.acquire(&c.username, src.ip()).unwrap();
        match inspect(&s, &alloc, src) {
            Verdict::Reply(b) => assert_eq!(error_code(&b), 486),
            v => panic!("{v:?}"),
        }
        drop(g);
        assert!(matches!(inspect(&s, &alloc, src), Verdict::Pass(Some(_))));
    }

    /// The 401 the `turn` server would send, with `nonce`.
    fn server_401(nonce: &str) -> Vec<u8> {
        let mut m = Message::new();
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE)),
            Box::new(ErrorCodeAttribute { code: ErrorCode(401), reason: b"Unauthorized".to_vec() }),
            Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())),
            Box::new(TextAttribute::new(ATTR_REALM, "relaycast".into())),
        ];
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn unauthenticated_requests_get_a_nonce_the_server_holds() {
        let s = shared(4);
        let src: SocketAddr = SRC.parse().unwrap();
        let alloc = request(METHOD_ALLOCATE, &[], Some("99:u"));
        // No nonce learned yet: one request goes to the server, the others in that second are dropped.
        assert_eq!(inspect(&s, &alloc, src), Verdict::Pass(None));
        assert_eq!(inspect(&s, &alloc, src), Verdict::Drop);
        // The server's 401 teaches the guard its nonce; from then on the guard answers.
        assert_eq!(issued_nonce(&server_401("0123abcd")).as_deref(), Some("0123abcd"));
        s.nonces.learn("0123abcd".into(), Instant::now());
        for method in [METHOD_ALLOCATE, METHOD_REFRESH] {
            for _ in 0..1000 {
                let Verdict::Reply(b) = inspect(&s, &request(method, &[], Some("99:u")), src) else { panic!("challenged") };
                assert_eq!(error_code(&b), 401);
                assert_eq!(attr(&b, ATTR_REALM).as_deref(), Some("relaycast"));
                assert_eq!(attr(&b, ATTR_NONCE).as_deref(), Some("0123abcd"));
            }
        }
        assert_eq!(s.stats.challenged.load(std::sync::atomic::Ordering::Relaxed), 2001);
        // Relayed data and other answers are not mistaken for nonces.
        assert_eq!(issued_nonce(&[0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4]), None);
        let mut ok = Message::new();
        ok.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(METHOD_ALLOCATE, stun::message::CLASS_SUCCESS_RESPONSE))])
            .unwrap();
        assert_eq!(issued_nonce(&ok.raw), None);
        assert_eq!(issued_nonce(&error_response(&ok, 403, "Forbidden").unwrap()), None);
    }

    #[test]
    fn the_nonce_pool_refreshes_rarely() {
        let p = NoncePool::default();
        let t0 = Instant::now();
        assert_eq!(p.challenge(t0), Challenge::Pass);
        assert_eq!(p.challenge(t0), Challenge::Drop);
        p.learn("a".into(), t0);
        assert_eq!(p.challenge(t0 + NONCE_FRESH / 2), Challenge::Reply("a".into()));
        // Old: one request per interval goes to the server; the others still get the old nonce.
        let later = t0 + NONCE_FRESH + std::time::Duration::from_secs(1);
        assert_eq!(p.challenge(later), Challenge::Pass);
        assert_eq!(p.challenge(later), Challenge::Reply("a".into()));
        assert_eq!(p.challenge(later + HARVEST_INTERVAL), Challenge::Pass);
        p.learn("b".into(), later + HARVEST_INTERVAL);
        assert_eq!(p.challenge(later + HARVEST_INTERVAL), Challenge::Reply("b".into()));
        // Too old to hand out: dropped until a new one is learned.
        let p = NoncePool::default();
        p.learn("c".into(), t0);
        let ancient = t0 + NONCE_USABLE + std::time::Duration::from_secs(1);
        assert_eq!(p.challenge(ancient), Challenge::Pass);
        assert_eq!(p.challenge(ancient), Challenge::Drop);
    }

    #[test]
    fn relayed_traffic_needs_an_allocation() {
        let s = shared(4);
        let src: SocketAddr = SRC.parse().unwrap();
        let channel_data = [0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4];
        let mut ind = Message::new();
        ind.build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(stun::message::METHOD_SEND, CLASS_INDICATION))])
            .unwrap();
        let mut unknown = Message::new();
        unknown
            .build(&[Box::new(TransactionId::new()), Box::new(MessageType::new(stun::message::METHOD_CONNECT, CLASS_REQUEST))])
            .unwrap();
        assert_eq!(inspect(&s, &channel_data, src), Verdict::Drop);
        assert_eq!(inspect(&s, &ind.raw, src), Verdict::Drop);
        assert_eq!(inspect(&s, &unknown.raw, src), Verdict::Drop);
        let mark = AllocMark::new(&s.allocated, src);
        assert_eq!(inspect(&s, &channel_data, src), Verdict::Pass(None));
        assert_eq!(inspect(&s, &ind.raw, src), Verdict::Pass(None));
        assert_eq!(inspect(&s, &channel_data, "198.51.100.7:4001".parse().unwrap()), Verdict::Drop, "per transport address");
        drop(mark);
        assert_eq!(inspect(&s, &channel_data, src), Verdict::Drop);
        assert!(lock(&s.allocated).is_empty());
        assert_eq!(s.stats.unallocated.load(std::sync::atomic::Ordering::Relaxed), 4);
    }

    #[test]
    fn refusal_logs_are_rate_limited() {
        let l = LogLimiter::default();
        let t0 = Instant::now();
        let allowed = (0..1000).filter(|_| l.allow(t0)).count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert!(l.allow(t0 + LOG_WINDOW), "a new window");
    }

    #[test]
    fn garbage_is_dropped() {
        let s = shared(1);
        let src = SRC.parse().unwrap();
        assert_eq!(inspect(&s, b"hello world, not stun", src), Verdict::Drop);
        assert_eq!(inspect(&s, &[], src), Verdict::Drop);
        let mut truncated = request(METHOD_ALLOCATE, &[], Some("1:u"));
        truncated.truncate(24);
        assert_eq!(inspect(&s, &truncated, src), Verdict::Drop);
        let mut m = Message::new();
        m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)]).unwrap();
        assert_eq!(inspect(&s, &m.raw, src), Verdict::Pass(None));
        assert_eq!(s.stats.garbage.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}
