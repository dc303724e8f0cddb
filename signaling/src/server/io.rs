//! The connection's socket as hyper sees it: records activity for the idle and header
//! watchdogs, holds the connection's admission until the socket is really closed, and after an
//! orderly close from our side keeps reading (and discarding) what the client still sends for a
//! bounded time, so that a response such as `413` is not lost to a TCP reset caused by unread
//! request bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::limits::AdmissionGuard;
use super::metrics::OpenConnection;

/// Longest time a closed connection keeps draining what its client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(3);
/// Most bytes drained from a closed connection.
pub const LINGER_BYTES: usize = 4 * 1024 * 1024;

/// What the watchdog knows about one connection.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    requests: AtomicU64,
    in_flight: AtomicUsize,
    /// hyper finished the connection itself (not a watchdog): its close lingers even when hyper
    /// ended on an error before shutting the socket down (a client still sending a refused body).
    orderly: std::sync::atomic::AtomicBool,
}

impl Activity {
    /// Activity of a connection accepted now.
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            orderly: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request's headers arrived; the returned guard marks it finished when dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// hyper ended the connection (with or without an error): its close lingers.
    pub fn ended_by_hyper(&self) {
        self.orderly.store(true, Ordering::Relaxed);
    }

    /// A snapshot for the sans-IO watchdog.
    pub fn snapshot(&self, now: Instant) -> super::watchdog::ConnState {
        let since_start = now.saturating_duration_since(self.start);
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        super::watchdog::ConnState {
            age: since_start,
            since_activity: since_start.saturating_sub(last),
            requests: self.requests.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// A request being handled; finished when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A socket with activity tracking, its admission, and lingering close.
#[derive(Debug)]
pub struct TrackedIo<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<T>,
    activity: Arc<Activity>,
    held: Option<(AdmissionGuard, OpenConnection)>,
    shut_down: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> TrackedIo<T> {
    /// Wraps an accepted socket holding its admission.
    pub fn new(inner: T, activity: Arc<Activity>, admission: AdmissionGuard, open: OpenConnection) -> Self {
        TrackedIo { inner: Some(inner), activity, held: Some((admission, open)), shut_down: false }
    }

    fn inner(&mut self) -> io::Result<&mut T> {
        self.inner.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for TrackedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let inner = match self.inner() {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let r = Pin::new(inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for TrackedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let inner = match self.inner() {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let r = Pin::new(inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let inner = match self.inner() {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let r = Pin::new(inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner() {
            Ok(i) => Pin::new(i).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match self.inner() {
            Ok(i) => Pin::new(i).poll_shutdown(cx),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if matches!(r, Poll::Ready(Ok(()))) {
            self.shut_down = true;
        }
        r
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for TrackedIo<T> {
    fn drop(&mut self) {
        // A connection hyper finished lingers (our FIN sent first if hyper did not send it); one
        // dropped by a watchdog's timeout closes at once.
        let fin_sent = self.shut_down;
        if !fin_sent && !self.activity.orderly.load(Ordering::Relaxed) {
            return;
        }
        let (Some(mut inner), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current()) else { return };
        let held = self.held.take();
        rt.spawn(async move {
            let _held = held;
            if !fin_sent {
                let _ = tokio::time::timeout(LINGER_TIME, tokio::io::AsyncWriteExt::shutdown(&mut inner)).await;
            }
            let mut buf = [0u8; 8192];
            let mut total = 0usize;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while total < LINGER_BYTES {
                    match inner.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total = total.saturating_add(n),
                    }
                }
            })
            .await;
        });
    }
}
