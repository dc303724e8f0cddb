//! The relay side: relay sockets that enforce the peer filter, bandwidth and lifetime.

use super::*;

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
    pub(super) fn allowed(&self, addr: SocketAddr) -> bool {
        self.shared.policy.allows_addr(addr) || self.grants.contains(addr)
    }
}

pub(super) async fn closed_or_never(n: &Option<Arc<Notify>>) {
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
