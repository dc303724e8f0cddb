//! TURN over TCP (optionally TLS): a stream listener presented to the `turn` server as one
//! packet connection. Each accepted stream is split into STUN/ChannelData frames
//! ([`crate::framing`]); a frame received on a stream appears as a datagram from the stream's
//! remote address, and a datagram sent to that address is written to that stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::framing::StreamDecoder;

/// Limits for stream connections.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Largest frame accepted (header included); a larger one closes the stream.
    pub max_frame: usize,
    /// Open streams per client IP.
    pub per_ip: usize,
    /// Open streams in all.
    pub total: usize,
    /// A stream that sends nothing for this long is closed.
    pub idle: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { max_frame: 1500, per_ip: 64, total: 4096, idle: Duration::from_secs(300) }
    }
}

type Writers = Arc<Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>>;

/// Called with a stream's remote address when the stream closes.
pub type OnClose = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// A TCP (or TLS) listener seen as a packet connection.
pub struct StreamConn {
    local: SocketAddr,
    inbound: tokio::sync::Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    writers: Writers,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamConn {
    /// Starts accepting on `listener`, wrapping each stream in TLS when `tls` is given;
    /// `on_close` learns of each stream that ends.
    pub fn start(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: StreamLimits,
        on_close: Option<OnClose>,
    ) -> std::io::Result<Arc<Self>> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(1024);
        let writers: Writers = Arc::default();
        let task = tokio::spawn(accept_loop(listener, tls, limits, tx, writers.clone(), on_close));
        Ok(Arc::new(StreamConn {
            local,
            inbound: tokio::sync::Mutex::new(rx),
            writers,
            accept_task: Mutex::new(Some(task)),
        }))
    }

    /// Open streams.
    pub fn connections(&self) -> usize {
        lock(&self.writers).len()
    }
}

impl Drop for StreamConn {
    fn drop(&mut self) {
        if let Some(t) = lock(&self.accept_task).take() {
            t.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: StreamLimits,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    writers: Writers,
    on_close: Option<OnClose>,
) {
    let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "TURN TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        {
            let mut ips = lock(&per_ip);
            let n = ips.entry(peer.ip()).or_insert(0);
            if *n >= limits.per_ip || lock(&writers).len() >= limits.total {
                tracing::debug!(%peer, "TURN TCP connection refused: too many streams");
                continue;
            }
            *n += 1;
        }
        let _ = sock.set_nodelay(true);
        let inbound = inbound.clone();
        let writers = writers.clone();
        let per_ip = per_ip.clone();
        let tls = tls.clone();
        let on_close = on_close.clone();
        tokio::spawn(async move {
            match tls {
                Some(acc) => match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock)).await {
                    Ok(Ok(s)) => serve_stream(s, peer, limits, inbound, writers.clone()).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TURN TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TURN TLS handshake timed out"),
                },
                None => serve_stream(sock, peer, limits, inbound, writers.clone()).await,
            }
            if let Some(f) = &on_close {
                f(peer);
            }
            let mut ips = lock(&per_ip);
            if let Some(n) = ips.get_mut(&peer.ip()) {
                *n -= 1;
                if *n == 0 {
                    ips.remove(&peer.ip());
                }
            }
        });
    }
}

async fn serve_stream<S>(
    stream: S,
    peer: SocketAddr,
    limits: StreamLimits,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    writers: Writers,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
    lock(&writers).insert(peer, out_tx);
    let writer = tokio::spawn(async move {
        while let Some(buf) = out_rx.recv().await {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut decoder = StreamDecoder::new(limits.max_frame);
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(limits.idle, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
            Err(_) => {
                tracing::debug!(%peer, "TURN stream idle, closing");
                break;
            }
        };
        decoder.push(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    if inbound.send((frame.to_vec(), peer)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TURN stream closed on bad input");
                    break 'read;
                }
            }
        }
    }
    lock(&writers).remove(&peer);
    writer.abort();
}

#[async_trait]
impl webrtc_util::Conn for StreamConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(webrtc_util::Error::Other("connect on a listener".into()))
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("recv without address on a listener".into()))
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut rx = self.inbound.lock().await;
        match rx.recv().await {
            Some((frame, addr)) => {
                let n = frame.len().min(buf.len());
                buf[..n].copy_from_slice(&frame[..n]);
                Ok((n, addr))
            }
            None => Err(webrtc_util::Error::Other("stream listener closed".into())),
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(webrtc_util::Error::Other("send without address on a listener".into()))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let tx = lock(&self.writers).get(&target).cloned();
        match tx {
            // A full queue drops the message, as a congested UDP path would.
            Some(tx) => {
                let _ = tx.try_send(buf.to_vec());
                Ok(buf.len())
            }
            None => Err(webrtc_util::Error::Other(format!("no stream from {target}"))),
        }
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        if let Some(t) = lock(&self.accept_task).take() {
            t.abort();
        }
        lock(&self.writers).clear();
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
