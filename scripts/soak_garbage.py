#!/usr/bin/env python3
"""Garbage on every port of a node, at a steady rate, for the soak run (scripts/soak.sh).

Each second, for DURATION seconds: random and truncated datagrams and fake STUN binding requests
to every media port, unauthenticated TURN Allocates and random datagrams to the TURN port,
connections to the HTTP port that send half a header and stay silent, malformed WHEP/WHIP
requests, and random bytes to the libp2p TCP port. Prints one line of totals at the end.
Standard library only.
"""
import os
import random
import socket
import struct
import sys
import time
import urllib.error
import urllib.request

def stun(method: int, attrs: bytes = b"") -> bytes:
    return struct.pack("!HHI", method, len(attrs), 0x2112A442) + os.urandom(12) + attrs

def allocate() -> bytes:
    # REQUESTED-TRANSPORT (0x0019) = UDP (17)
    return stun(0x0003, struct.pack("!HHB3x", 0x0019, 4, 17))

def main() -> None:
    http, media, turn, p2p, duration, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    host, port = http.rsplit(":", 1)
    media_ports = [int(p) for p in media.split(",") if p]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent = []
    sent = {"udp": 0, "turn": 0, "half_headers": 0, "http_bad": 0, "p2p": 0}
    end = time.monotonic() + duration
    while time.monotonic() < end:
        tick = time.monotonic()
        for _ in range(rate):
            for mp in media_ports:
                kind = random.random()
                if kind < 0.3:
                    pkt = stun(0x0001)
                elif kind < 0.6:
                    pkt = bytes([0x80, random.randrange(96, 128)]) + os.urandom(random.randrange(10, 1200))
                else:
                    pkt = os.urandom(random.randrange(1, 1500))
                udp.sendto(pkt, ("127.0.0.1", mp))
                sent["udp"] += 1
            if turn:
                th, tp = turn.rsplit(":", 1)
                udp.sendto(allocate() if random.random() < 0.7 else os.urandom(random.randrange(1, 600)), (th, int(tp)))
                sent["turn"] += 1
        # Half a header, then silence: the node's header timeout must close these.
        for _ in range(max(1, rate // 20)):
            try:
                s = socket.create_connection((host, int(port)), timeout=2)
                s.sendall(b"GET /api/streams HTTP/1.1\r\nHost: soak\r\nX-Partial: ")
                silent.append(s)
                sent["half_headers"] += 1
            except OSError:
                pass
        silent = silent[-200:]
        # Malformed signaling: bad SDP, wrong content type, unknown streams, an oversized body.
        for body, ctype, path in [
            (os.urandom(300), "application/sdp", "/whep/soak-unknown-%d" % random.randrange(1 << 30)),
            (b"v=0\r\n" + os.urandom(200), "application/sdp", "/whep/churn"),
            (b"{}", "application/json", "/whip/churn"),
            (os.urandom(64 * 1024), "application/sdp", "/whip/churn"),
        ]:
            req = urllib.request.Request("http://%s%s" % (http, path), data=body, method="POST", headers={"Content-Type": ctype})
            try:
                urllib.request.urlopen(req, timeout=5).read()
            except (urllib.error.URLError, OSError):
                pass
            sent["http_bad"] += 1
        if p2p:
            try:
                s = socket.create_connection(("127.0.0.1", int(p2p)), timeout=2)
                s.sendall(os.urandom(random.randrange(1, 4096)))
                s.close()
                sent["p2p"] += 1
            except OSError:
                pass
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    print("garbage sent:", " ".join("%s=%d" % kv for kv in sent.items()), flush=True)

if __name__ == "__main__":
    main()
