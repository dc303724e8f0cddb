#!/usr/bin/env python3
"""A userspace Ethernet switch whose ports are TAP devices, with a netem-like shaping of what
each port sends: a fixed delay and a random loss, per port. For kernels without sch_netem
(tc qdisc ... netem): every frame a port's host sends is dropped with the port's loss
probability, else delivered to its destination port(s) after the port's delay. A port's delay
thus applies to its host's egress only; a frame between two shaped hosts is delayed once (by the
sender's port), so a round trip between them takes the sum of their delays.

    shaped-switch.py '[{"name": "tap0", "delay_ms": 20, "loss": 0.01}, {"name": "tap1"}]'

Creates the TAP devices (gone when it exits), prints "ready" once they exist, and switches
frames (learning source MACs; broadcast, multicast and unknown destinations flood) until
SIGTERM or SIGINT. The caller moves the devices into their namespaces and sets addresses.
On exit it prints per port: frames in, dropped, delivered.
"""

import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def main():
    ports = json.loads(sys.argv[1])
    rng = random.Random(int(os.environ.get("SHAPED_SWITCH_SEED", "0")) or None)
    fds = []
    for p in ports:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", p["name"].encode(), IFF_TAP | IFF_NO_PI))
        fds.append(fd)
    delay = [p.get("delay_ms", 0) / 1000.0 for p in ports]
    loss = [p.get("loss", 0.0) for p in ports]
    stats = [[0, 0, 0] for _ in ports]  # in, dropped, delivered
    by_fd = {fd: i for i, fd in enumerate(fds)}
    macs = {}
    pending = []  # (due, seq, src port, frame)
    seq = 0
    running = True

    def stop(*_):
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ep = select.epoll()
    for fd in fds:
        ep.register(fd, select.EPOLLIN)
    print("ready", flush=True)

    def deliver(src, frame):
        dst = frame[0:6]
        out = macs.get(dst) if not frame[0] & 1 else None
        targets = [out] if out is not None else [i for i in range(len(fds)) if i != src]
        for i in targets:
            if i == src:
                continue
            try:
                os.write(fds[i], frame)
            except OSError:
                pass  # the device is down or its queue full: the frame is lost
        stats[src][2] += 1

    while running:
        now = time.monotonic()
        timeout = max(0.0, pending[0][0] - now) if pending else 1.0
        try:
            events = ep.poll(timeout)
        except InterruptedError:
            continue
        for fd, _ in events:
            src = by_fd[fd]
            for _ in range(256):
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if len(frame) < 14:
                    continue
                stats[src][0] += 1
                macs[frame[6:12]] = src
                if loss[src] and rng.random() < loss[src]:
                    stats[src][1] += 1
                    continue
                if delay[src]:
                    seq += 1
                    heapq.heappush(pending, (time.monotonic() + delay[src], seq, src, frame))
                else:
                    deliver(src, frame)
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, src, frame = heapq.heappop(pending)
            deliver(src, frame)
    for p, (n, d, s) in zip(ports, stats):
        print(f"{p['name']}: {n} frames in, {d} dropped, {s} delivered", flush=True)


if __name__ == "__main__":
    main()
