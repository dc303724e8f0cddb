//! The listener side: each inbound message inspected before the `turn` server sees it.

use super::*;

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

pub(super) fn error_response(m: &Message, code: u16, reason: &str) -> Option<Vec<u8>> {
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
pub(super) fn challenge(shared: &Shared, m: &Message, nonce: String) -> Option<Vec<u8>> {
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
pub(super) fn has_allocation(shared: &Shared, src: SocketAddr) -> bool {
    lock(&shared.allocated).contains_key(&src)
}

/// Checks the USERNAME (REST form, not expired) and MESSAGE-INTEGRITY of a signed request.
pub(super) fn check_signature(shared: &Shared, m: &mut Message) -> Result<(), String> {
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
