//! Kernel cost of sending media datagrams on loopback through [`SendBatch`]: CPU time of the
//! sending thread per datagram, for one datagram per destination per flush (what viewers get)
//! and for runs of datagrams per destination joined by UDP GSO (what a relay edge gets).
//!
//! ```sh
//! cargo run --release -p relaycast-sfu --example udp_send_cost
//! ```
//!
//! 100 receiving sockets are drained by a thread on CPU 1; the sender runs on CPU 0. On
//! loopback the sender's system calls also carry the receivers' network stack, as they do in
//! the load test, so the figures bound what the node can send per core of its own CPU.

#[cfg(target_os = "linux")]
fn main() {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use relaycast_sfu::udp::SendBatch;
    use str0m::net::DatagramSend;

    const DESTINATIONS: usize = 100;
    const SIZE: usize = 1140;
    const DATAGRAMS: usize = 400_000;

    fn pin(cpu: usize) {
        // SAFETY: a zeroed cpu_set_t is valid; the call only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
    fn thread_cpu_seconds() -> f64 {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
            ru
        };
        let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        s(ru.ru_utime) + s(ru.ru_stime)
    }

    let receivers: Vec<UdpSocket> = (0..DESTINATIONS)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
            s.set_nonblocking(true).expect("nonblocking");
            let _ = socket2::SockRef::from(&s).set_recv_buffer_size(4 << 20);
            s
        })
        .collect();
    let targets: Vec<_> = receivers.iter().map(|s| s.local_addr().expect("address")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let drain = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            pin(1);
            let mut buf = [0u8; 2048];
            loop {
                let done = stop.load(Ordering::Relaxed);
                for s in &receivers {
                    while s.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if done {
                    break;
                }
            }
        })
    };
    pin(0);
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sender.set_nonblocking(true).expect("nonblocking");
    let _ = socket2::SockRef::from(&sender).set_send_buffer_size(4 << 20);
    println!("{DATAGRAMS} datagrams of {SIZE} bytes to {DESTINATIONS} loopback sockets, sender on CPU 0");
    for (label, per_destination, gso) in [
        ("one per destination, sendmmsg", 1, false),
        ("runs of 2 per destination, GSO", 2, true),
        ("runs of 4 per destination, GSO", 4, true),
        ("runs of 8 per destination, GSO", 8, true),
    ] {
        let mut batch = if gso { SendBatch::new() } else { SendBatch::without_gso() };
        let (mut sent, mut messages, mut turn) = (0usize, 0usize, 0usize);
        let before = received.load(Ordering::Relaxed);
        let cpu = thread_cpu_seconds();
        while sent < DATAGRAMS {
            // One loop turn: 64 destinations, `per_destination` datagrams each, queued together.
            for d in 0..64 {
                let to = targets[(turn * 64 + d) % DESTINATIONS];
                for _ in 0..per_destination {
                    batch.push(to, DatagramSend::from(vec![0u8; SIZE]));
                }
            }
            turn += 1;
            let f = batch.flush(sender.as_raw_fd());
            sent += f.sent + f.dropped;
            messages += f.messages;
            if f.dropped > 0 {
                std::thread::yield_now();
            }
        }
        let cpu = thread_cpu_seconds() - cpu;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let got = received.load(Ordering::Relaxed) - before;
        println!(
            "{label:34} {:5.2} µs CPU per datagram ({:4.1} Gbit/s per core), {:.2} datagrams per message, {got}/{sent} received",
            cpu / sent as f64 * 1e6,
            sent as f64 * SIZE as f64 * 8.0 / cpu / 1e9,
            sent as f64 / messages.max(1) as f64,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = drain.join();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("udp_send_cost measures Linux's sendmmsg and UDP GSO");
}
