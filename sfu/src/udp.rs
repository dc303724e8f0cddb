//! Batched UDP sends: a worker queues the datagrams of one loop turn and sends them with as few
//! system calls as possible: `sendmmsg` on Linux, and UDP generic segmentation offload (GSO,
//! `UDP_SEGMENT`) for consecutive equal-sized datagrams to one destination, which the kernel then
//! walks through its stack once instead of once per datagram. A worker drives one peer until
//! its pacer holds the rest, so one peer's datagrams of a drive are consecutive: a viewer's frame
//! and a relay edge's packets of every layer form runs.

use std::io;
use std::net::SocketAddr;

use socket2::SockAddr;
use str0m::net::DatagramSend;

/// Most messages handed to the kernel in one `sendmmsg` call.
pub const BATCH: usize = 64;
/// Datagrams a worker queues before it flushes in the middle of a loop turn: one `sendmmsg`
/// call's worth (the batch holds them until then, about 1.3 KB each, so more only costs memory).
pub const MAX_QUEUED: usize = MAX_IOVECS;
/// Most datagrams in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
const MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO message (a UDP datagram's 16-bit length, less headers).
const MAX_GSO_BYTES: usize = 60_000;
/// Most datagrams (iovecs) in one `sendmmsg` call.
const MAX_IOVECS: usize = 256;

/// Outcome of a flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Bytes the kernel accepted.
    pub bytes: usize,
    /// Datagrams dropped (socket buffer full or send error).
    pub dropped: usize,
    /// Messages handed to the kernel (a GSO message carries several datagrams).
    pub messages: usize,
}

/// Datagrams waiting to be sent, owned until the flush.
pub struct SendBatch {
    queue: Vec<(SocketAddr, SockAddr, DatagramSend)>,
    /// Whether `UDP_SEGMENT` is used; cleared for good when the kernel refuses it.
    gso: bool,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty batch that uses GSO where the kernel supports it.
    pub fn new() -> Self {
        SendBatch { queue: Vec::with_capacity(BATCH), gso: cfg!(target_os = "linux") }
    }

    /// An empty batch that sends every datagram as its own message.
    pub fn without_gso() -> Self {
        SendBatch { gso: false, ..Self::new() }
    }

    /// Whether consecutive equal-sized datagrams to one destination are sent as one GSO message.
    pub fn uses_gso(&self) -> bool {
        self.gso
    }

    /// Queues one datagram.
    pub fn push(&mut self, to: SocketAddr, data: DatagramSend) {
        self.queue.push((to, SockAddr::from(to), data));
    }

    /// Number of queued datagrams.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Sends everything queued on the socket `fd` (non-blocking) and empties the batch.
    ///
    /// Datagrams leave in the order queued; with GSO, each run of consecutive datagrams to one
    /// destination with equal sizes (the last may be shorter) becomes one message.
    #[cfg(target_os = "linux")]
    pub fn flush(&mut self, fd: std::os::fd::RawFd) -> Flushed {
        let mut out = Flushed::default();
        let n = self.queue.len();
        let mut next = 0;
        while next < n {
            let mut iovs: [libc::iovec; MAX_IOVECS] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let mut cmsgs = [[0u64; 4]; BATCH];
            // Where each message starts in the queue, how many datagrams it carries, their bytes.
            let mut starts = [0usize; BATCH];
            let mut counts = [0usize; BATCH];
            let mut sizes = [0usize; BATCH];
            let (mut nm, mut ni, mut i) = (0, 0, next);
            while i < n && nm < BATCH && ni < MAX_IOVECS {
                let (to, addr, first) = &self.queue[i];
                let seg = first.len();
                let mut k = 1;
                let mut total = seg;
                if self.gso {
                    while i + k < n && k < MAX_SEGMENTS && ni + k < MAX_IOVECS {
                        let (to2, _, d) = &self.queue[i + k];
                        if to2 != to || d.len() > seg || total + d.len() > MAX_GSO_BYTES {
                            break;
                        }
                        k += 1;
                        total += d.len();
                        if d.len() < seg {
                            break; // a shorter datagram can only end a GSO message
                        }
                    }
                }
                for j in 0..k {
                    let d = &self.queue[i + j].2;
                    iovs[ni + j] = libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() };
                }
                let h = &mut msgs[nm].msg_hdr;
                h.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_namelen = addr.len();
                h.msg_iov = &mut iovs[ni];
                h.msg_iovlen = k;
                if k > 1 {
                    set_segment_size(h, &mut cmsgs[nm], seg as u16);
                }
                starts[nm] = i;
                counts[nm] = k;
                sizes[nm] = total;
                nm += 1;
                ni += k;
                i += k;
            }
            // SAFETY: every pointer refers to memory owned by `self.queue`, `iovs`, `msgs` or
            // `cmsgs`, all alive for the duration of the call; lengths match the buffers.
            let sent = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), nm as libc::c_uint, libc::MSG_DONTWAIT) };
            if sent < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if counts[0] > 1 && matches!(err.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)) {
                    // The kernel or the route cannot segment: send datagram by datagram from now on.
                    tracing::info!(error = %err, "UDP GSO unavailable; sending datagrams one by one");
                    self.gso = false;
                    continue;
                }
                // The first message failed (buffer full or a bad destination): drop it and
                // carry on with the rest.
                out.dropped += counts[0];
                next = starts[0] + counts[0];
                continue;
            }
            let sent = sent as usize;
            for m in 0..sent {
                out.sent += counts[m];
                out.bytes += sizes[m];
            }
            out.messages += sent;
            if sent == 0 {
                out.dropped += counts[0];
                next = starts[0] + counts[0];
            } else if sent < nm {
                next = starts[sent];
            } else {
                next = i;
            }
        }
        self.queue.clear();
        out
    }

    /// Sends everything queued with `send(data, to)`, one call per datagram, and empties the batch.
    pub fn flush_each(&mut self, mut send: impl FnMut(&[u8], SocketAddr) -> bool) -> Flushed {
        let mut out = Flushed::default();
        for (to, _, data) in self.queue.drain(..) {
            if send(&data, to) {
                out.sent += 1;
                out.bytes += data.len();
                out.messages += 1;
            } else {
                out.dropped += 1;
            }
        }
        out
    }
}

/// Adds a `UDP_SEGMENT` control message (the GSO segment size) to `h`, stored in `buf`.
#[cfg(target_os = "linux")]
fn set_segment_size(h: &mut libc::msghdr, buf: &mut [u64; 4], size: u16) {
    // SAFETY: `buf` is 32 bytes, 8-byte aligned, more than CMSG_SPACE(2) (24 bytes on 64-bit
    // Linux); the header written lies inside it and `h` points at it only for the send.
    unsafe {
        h.msg_control = buf.as_mut_ptr() as *mut libc::c_void;
        h.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, size);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn flush_delivers_every_datagram_in_order() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        let to = rx.local_addr().unwrap();
        let mut b = SendBatch::new();
        for i in 0..(BATCH + 10) {
            b.push(to, DatagramSend::from(vec![i as u8; 10 + i]));
        }
        let f = b.flush(tx.as_raw_fd());
        assert_eq!(f.sent, BATCH + 10);
        assert_eq!(f.dropped, 0);
        assert!(b.is_empty());
        let mut buf = [0u8; 256];
        for i in 0..(BATCH + 10) {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(n, 10 + i);
            assert_eq!(buf[0], i as u8);
        }
    }

    fn receiver() -> std::net::UdpSocket {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        rx
    }

    /// Receives `n` datagrams: (first byte, length) of each.
    fn receive(rx: &std::net::UdpSocket, n: usize) -> Vec<(u8, usize)> {
        let mut buf = [0u8; 2048];
        (0..n).map(|_| rx.recv(&mut buf).map(|len| (buf[0], len)).expect("datagram")).collect()
    }

    /// Runs of equal-sized datagrams to one destination, one cut by a shorter datagram, and
    /// datagrams alternating between destinations: every datagram arrives whole and in order,
    /// runs in one message each.
    #[test]
    fn gso_joins_consecutive_runs_and_keeps_datagram_boundaries() {
        let (a, b) = (receiver(), receiver());
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut batch = SendBatch::new();
        assert!(batch.uses_gso());
        let mut sizes_a = Vec::new();
        // a: 12 of 1100 bytes, one of 600 (ends the run), 17 of 1100: two messages.
        for i in 0..30u8 {
            let len = if i == 12 { 600 } else { 1100 };
            batch.push(to_a, DatagramSend::from(vec![i; len]));
            sizes_a.push((i, len));
        }
        // b: 30 of 900 bytes: one message.
        for i in 0..30u8 {
            batch.push(to_b, DatagramSend::from(vec![100 + i; 900]));
        }
        // Alternating: nothing to join, four messages.
        for i in 0..2u8 {
            batch.push(to_a, DatagramSend::from(vec![30 + i; 1100]));
            sizes_a.push((30 + i, 1100));
            batch.push(to_b, DatagramSend::from(vec![130 + i; 900]));
        }
        let f = batch.flush(tx.as_raw_fd());
        assert_eq!((f.sent, f.dropped), (64, 0));
        assert_eq!(f.bytes, 31 * 1100 + 600 + 32 * 900);
        assert_eq!(f.messages, 7, "{f:?}");
        assert_eq!(receive(&a, 32), sizes_a);
        assert_eq!(receive(&b, 32), (0..32u8).map(|i| (100 + i, 900)).collect::<Vec<_>>());
    }

    /// Without GSO each datagram is its own message, in the order queued.
    #[test]
    fn without_gso_every_datagram_is_a_message() {
        let a = receiver();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.set_nonblocking(true).unwrap();
        let mut batch = SendBatch::without_gso();
        for i in 0..10u8 {
            batch.push(a.local_addr().unwrap(), DatagramSend::from(vec![i; 1000]));
        }
        let f = batch.flush(tx.as_raw_fd());
        assert_eq!((f.sent, f.messages), (10, 10));
        assert_eq!(receive(&a, 10), (0..10u8).map(|i| (i, 1000)).collect::<Vec<_>>());
    }
}
