//! The tokio shell of a media worker: it reads the socket, feeds the [`WorkerCore`] datagrams,
//! commands and the time, sends the datagrams the core produced and sleeps until the core's
//! next wake-up. It holds no peer or routing state.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::DatagramSend;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::core::{Transmits, WorkerCore};
use super::{CMD_BATCH, CONTROL_BATCH, Command, RECV_BATCH, RECV_BUF};
use crate::Shared;
use crate::udp::SendBatch;

/// A media worker: one thread, one UDP socket, and the core that owns its peers.
pub(crate) struct Worker {
    pub(super) socket: UdpSocket,
    pub(super) shared: Arc<Shared>,
    pub(super) batch: SendBatch,
    pub(super) core: WorkerCore,
}

/// The core's datagrams go into the send batch, flushed to the socket when it is full.
struct SocketOut<'a> {
    batch: &'a mut SendBatch,
    socket: &'a UdpSocket,
    shared: &'a Shared,
}

impl Transmits for SocketOut<'_> {
    fn transmit(&mut self, destination: SocketAddr, contents: DatagramSend) {
        self.batch.push(destination, contents);
        if self.batch.len() >= crate::udp::MAX_QUEUED {
            flush(self.batch, self.socket, self.shared);
        }
    }
}

impl Worker {
    /// Runs until shutdown. A panic while handling one peer drops that peer and the worker
    /// carries on with the others (counted in `relaycast_worker_panics_total`); for
    /// [`super::PANIC_QUARANTINE`] afterwards it takes no new sessions.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut ctl: mpsc::Receiver<Command>,
    ) {
        use futures_util::FutureExt;
        info!(worker = self.core.index(), addr = %self.core.local(), "media worker started");
        loop {
            let turn = std::panic::AssertUnwindSafe(self.run_loop(&mut rx, &mut ctl))
                .catch_unwind()
                .await;
            match turn {
                Ok(()) => break,
                Err(payload) => self.core.recover(payload.as_ref(), Instant::now()),
            }
        }
        let mut out = SocketOut {
            batch: &mut self.batch,
            socket: &self.socket,
            shared: &self.shared,
        };
        self.core.shutdown(Instant::now(), &mut out);
        flush(&mut self.batch, &self.socket, &self.shared);
        info!(worker = self.core.index(), "media worker stopped");
    }

    /// Feeds the core the time, commands and datagrams, and sends what it produces, until a
    /// command queue closes or [`Command::Shutdown`] arrives.
    async fn run_loop(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        ctl: &mut mpsc::Receiver<Command>,
    ) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let now = Instant::now();
            let mut out = SocketOut {
                batch: &mut self.batch,
                socket: &self.socket,
                shared: &self.shared,
            };
            self.core.handle_timeout(now, &mut out);
            flush(&mut self.batch, &self.socket, &self.shared);
            let next = self.core.poll_timeout(now);
            let sleep_for = next
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(200));
            tokio::select! {
                biased;
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { return };
                    if !self.command(cmd) { return; }
                    for _ in 0..CMD_BATCH {
                        match rx.try_recv() {
                            Ok(cmd) => if !self.command(cmd) { return },
                            Err(_) => break,
                        }
                    }
                }
                r = self.socket.readable() => {
                    if r.is_ok() { self.read_batch(&mut buf); }
                }
                cmd = ctl.recv() => {
                    let Some(cmd) = cmd else { return };
                    if !self.command(cmd) { return; }
                    for _ in 1..CONTROL_BATCH {
                        match ctl.try_recv() {
                            Ok(cmd) => if !self.command(cmd) { return },
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// Hands a command to the core; false means stop.
    fn command(&mut self, cmd: Command) -> bool {
        if matches!(cmd, Command::Shutdown) {
            return false;
        }
        let mut out = SocketOut {
            batch: &mut self.batch,
            socket: &self.socket,
            shared: &self.shared,
        };
        self.core.handle_command(Instant::now(), cmd, &mut out);
        true
    }

    /// Reads up to a batch of datagrams and hands them to the core.
    fn read_batch(&mut self, buf: &mut [u8]) {
        let local = self.core.local();
        for _ in 0..RECV_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => {
                    let mut out = SocketOut {
                        batch: &mut self.batch,
                        socket: &self.socket,
                        shared: &self.shared,
                    };
                    self.core
                        .handle_datagram(Instant::now(), source, local, &buf[..n], &mut out);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    debug!(worker = self.core.index(), error = %e, "udp receive error");
                    break;
                }
            }
        }
    }
}

/// Sends the queued datagrams and accounts for them.
fn flush(batch: &mut SendBatch, socket: &UdpSocket, shared: &Shared) {
    if batch.is_empty() {
        return;
    }
    #[cfg(target_os = "linux")]
    let f = {
        use std::os::fd::AsRawFd;
        batch.flush(socket.as_raw_fd())
    };
    #[cfg(not(target_os = "linux"))]
    let f = {
        let _ = socket;
        batch.flush_each(|data, to| socket.try_send_to(data, to).is_ok())
    };
    let m = &shared.metrics;
    m.egress_packets.fetch_add(f.sent as u64, Ordering::Relaxed);
    m.egress_bytes.fetch_add(f.bytes as u64, Ordering::Relaxed);
    m.egress_messages
        .fetch_add(f.messages as u64, Ordering::Relaxed);
    if f.dropped > 0 {
        m.dropped_send
            .fetch_add(f.dropped as u64, Ordering::Relaxed);
        debug!(dropped = f.dropped, "udp sends dropped");
    }
}
