//! Batched UDP sends: a worker queues the datagrams of one loop turn and sends them with as few
//! system calls as possible (`sendmmsg` on Linux).

use std::io;
use std::net::SocketAddr;

use socket2::SockAddr;
use str0m::net::DatagramSend;

/// Most datagrams handed to the kernel in one `sendmmsg` call.
pub const BATCH: usize = 64;

/// Outcome of a flush.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Bytes the kernel accepted.
    pub bytes: usize,
    /// Datagrams dropped (socket buffer full or send error).
    pub dropped: usize,
}

/// Datagrams waiting to be sent, owned until the flush.
#[derive(Default)]
pub struct SendBatch {
    queue: Vec<(SockAddr, DatagramSend)>,
}

impl SendBatch {
    /// An empty batch with room for one `sendmmsg` call.
    pub fn new() -> Self {
        SendBatch { queue: Vec::with_capacity(BATCH) }
    }

    /// Queues one datagram.
    pub fn push(&mut self, to: SocketAddr, data: DatagramSend) {
        self.queue.push((SockAddr::from(to), data));
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
    #[cfg(target_os = "linux")]
    pub fn flush(&mut self, fd: std::os::fd::RawFd) -> Flushed {
        let mut out = Flushed::default();
        let mut start = 0;
        while start < self.queue.len() {
            let chunk = &self.queue[start..self.queue.len().min(start + BATCH)];
            let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, (addr, data)) in chunk.iter().enumerate() {
                iovs[i] = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
                let h = &mut msgs[i].msg_hdr;
                h.msg_name = addr.as_ptr() as *mut libc::c_void;
                h.msg_namelen = addr.len();
                h.msg_iov = &mut iovs[i];
                h.msg_iovlen = 1;
            }
            // SAFETY: every pointer refers to memory owned by `self.queue`, `iovs` or `msgs`, all
            // alive for the duration of the call; lengths match the buffers.
            let n = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), chunk.len() as libc::c_uint, libc::MSG_DONTWAIT) };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first datagram of the chunk failed (buffer full or a bad destination):
                // drop it and carry on with the rest.
                out.dropped += 1;
                start += 1;
                continue;
            }
            let n = n as usize;
            out.sent += n;
            out.bytes += chunk[..n].iter().map(|(_, d)| d.len()).sum::<usize>();
            start += n.max(1);
            if n == 0 {
                out.dropped += 1;
            }
        }
        self.queue.clear();
        out
    }

    /// Sends everything queued with `send(data, to)`, one call per datagram, and empties the batch.
    pub fn flush_each(&mut self, mut send: impl FnMut(&[u8], SocketAddr) -> bool) -> Flushed {
        let mut out = Flushed::default();
        for (addr, data) in self.queue.drain(..) {
            match addr.as_socket() {
                Some(to) if send(&data, to) => {
                    out.sent += 1;
                    out.bytes += data.len();
                }
                _ => out.dropped += 1,
            }
        }
        out
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
}
