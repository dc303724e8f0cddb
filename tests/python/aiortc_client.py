"""WHIP publisher and WHEP viewer built on aiortc, a WebRTC stack independent of the node's.

    aiortc_client.py publish URL [--codec vp8|h264] [--token TOKEN] [--seconds N]
                                 [--sync] [--delay-audio-ms MS]
    aiortc_client.py watch URL [--frames N] [--timeout S]
    aiortc_client.py watch-sync URL [--pairs N] [--timeout S]

`publish` sends a moving test pattern (VP8 or H264) and Opus silence to the WHIP endpoint URL
until N seconds pass or stdin closes, then DELETEs the session. With `--sync` it sends instead a
dark picture that flashes white and a 1 kHz beep, both for 100 ms every 2 s from 2 s on, captured
at the same instants on one clock. `--delay-audio-ms` puts a UDP proxy between the publisher and
the node (the answer's candidates are rewritten to it) that holds every packet of the audio SSRC
back by MS milliseconds (with BUNDLE audio and video share one port, so netem cannot). `watch` receives from the WHEP
endpoint URL, decodes video frames, and exits 0 once it decoded N frames (1 on timeout).
`watch-sync` receives a `--sync` publisher's stream from the WHEP endpoint URL and measures its
lip sync as a receiver would: it records every RTCP sender report (NTP time <-> RTP timestamp)
of each track, finds the flashes (mean luma turning white) and the beep onsets in the decoded
frames, maps each to the sender's NTP time through the latest sender report of its own track,
and prints the offsets beep - flash (ms) by sender reports and by arrival (wall clock at
decoding); it exits 0 once N flash/beep pairs were mapped (1 on timeout or when stdin closes
first).
Progress goes to stdout as one JSON object per line. aiortc gathers its candidates before the
offer leaves (no trickle), as it always does.
"""

import argparse
import asyncio
import fractions
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame


def report(event, **fields):
    """Prints one progress line."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Pattern(VideoStreamTrack):
    """640x360 bars that move one step per frame, at aiortc's 30 fps clock."""

    def __init__(self):
        super().__init__()
        self.n = 0
        self.base = numpy.zeros((360, 640, 3), numpy.uint8)
        for i in range(8):
            self.base[:, i * 80:(i + 1) * 80] = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        self.n += 1
        img = numpy.roll(self.base, self.n * 4, axis=1)
        frame = VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


FLASH_EVERY = 2.0
FLASH_LENGTH = 0.1


class SyncClock:
    """The instant both sync tracks count their timestamps from."""

    def __init__(self):
        self.t0 = None

    def start(self):
        if self.t0 is None:
            self.t0 = time.time()
        return self.t0


def flashing(t):
    """Whether media time t (seconds) is inside a flash/beep."""
    return t >= FLASH_EVERY and (t % FLASH_EVERY) < FLASH_LENGTH - 1e-9


class Flash(MediaStreamTrack):
    """30 fps 320x180 video (small, so that encoding adds little delay): dark, white for 100 ms
    every 2 s."""

    kind = "video"

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.n = 0
        self.dark = numpy.full((180, 320, 3), 16, numpy.uint8)
        self.white = numpy.full((180, 320, 3), 235, numpy.uint8)

    async def recv(self):
        t0 = self.clock.start()
        t = self.n / 30
        await asyncio.sleep(max(0, t0 + t - time.time()))
        frame = VideoFrame.from_ndarray(self.white if flashing(t) else self.dark, format="bgr24")
        frame.pts, frame.time_base = self.n * 3000, fractions.Fraction(1, 90000)
        self.n += 1
        return frame


class Beep(MediaStreamTrack):
    """48 kHz mono audio in 20 ms frames: silence, a 1 kHz tone for 100 ms every 2 s."""

    kind = "audio"

    def __init__(self, clock):
        super().__init__()
        self.clock = clock
        self.n = 0

    async def recv(self):
        t0 = self.clock.start()
        start = self.n * 960
        await asyncio.sleep(max(0, t0 + start / 48000 - time.time()))
        idx = numpy.arange(start, start + 960)
        on = numpy.array([flashing(i / 48000) for i in idx])
        tone = (numpy.sin(2 * numpy.pi * 1000 * idx / 48000) * 16000).astype(numpy.int16)
        samples = numpy.where(on, tone, 0).astype(numpy.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts, frame.time_base = start, fractions.Fraction(1, 48000)
        self.n += 1
        return frame


class DelayProxy:
    """A UDP proxy to `target`: one upstream socket per client address (as a NAT would), every
    packet whose RTP/RTCP SSRC is `ssrc` held back by `delay` seconds."""

    def __init__(self, target, ssrc, delay):
        self.target, self.ssrc, self.delay = target, ssrc, delay
        self.upstreams = {}
        self.delayed = 0
        self.listener = None

    async def start(self):
        loop = asyncio.get_running_loop()
        proxy = self

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                proxy.from_client(data, addr)

        self.listener, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
        return self.listener.get_extra_info("sockname")[1]

    def packet_ssrc(self, data):
        if len(data) < 12 or data[0] >> 6 != 2:
            return None  # STUN, DTLS
        pt = data[1] & 0x7F
        at = 4 if 64 <= pt <= 95 else 8  # RTCP: the sender's SSRC; RTP: the source's
        return int.from_bytes(data[at:at + 4], "big")

    def from_client(self, data, addr):
        up = self.upstreams.get(addr)
        if up is None:
            up = self.upstreams[addr] = {"transport": None, "queue": []}
            asyncio.ensure_future(self.open_upstream(addr, up))
        if self.packet_ssrc(data) == self.ssrc:
            self.delayed += 1
            asyncio.get_running_loop().call_later(self.delay, self.send_up, up, data)
        else:
            self.send_up(up, data)

    def send_up(self, up, data):
        if up["transport"] is None:
            up["queue"].append(data)
        else:
            up["transport"].sendto(data)

    async def open_upstream(self, addr, up):
        proxy = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data, _from):
                proxy.listener.sendto(data, addr)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Upstream, remote_addr=self.target)
        up["transport"] = transport
        for data in up["queue"]:
            transport.sendto(data)
        up["queue"].clear()


def through_proxy(answer, port):
    """The answer with its candidates replaced by one host candidate at 127.0.0.1:port, and the
    node's loopback candidate (address, port) it replaced."""
    target, lines = None, []
    for line in answer.split("\r\n"):
        if line.startswith("a=candidate:"):
            parts = line.split()
            if target is None and parts[4] == "127.0.0.1" and parts[2].lower() == "udp":
                target = (parts[4], int(parts[5]))
                parts[5] = str(port)
                lines.append(" ".join(parts))
            continue
        lines.append(line)
    return "\r\n".join(lines), target


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request; returns (status, headers, body text) for any status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def answer_codecs(sdp):
    """Video codec names of the answer's first video m-line, in order (rtx left out)."""
    names, in_video, pts = [], False, []
    for line in sdp.splitlines():
        if line.startswith("m="):
            if in_video:
                break
            in_video = line.startswith("m=video")
            pts = line.split()[3:] if in_video else []
        elif in_video and line.startswith("a=rtpmap:"):
            pt, enc = line[len("a=rtpmap:"):].split(" ", 1)
            name = enc.split("/")[0]
            if pt in pts and name.lower() != "rtx":
                names.append((pts.index(pt), name))
    return [n for _, n in sorted(names)]


async def negotiate(pc, url, token, proxy=None):
    """Posts the offer (candidates included) and applies the answer; returns the answer SDP and
    the session URL. With `proxy`, media goes through it."""
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    loop = asyncio.get_running_loop()
    status, resp_headers, body = await loop.run_in_executor(
        None, lambda: http("POST", url, pc.localDescription.sdp.encode(), headers))
    if status != 201:
        report("refused", status=status, reason=body.strip())
        sys.exit(2)
    location = urllib.parse.urljoin(url, resp_headers.get("Location", ""))
    report("answer", codecs=answer_codecs(body))
    if proxy is not None:
        port = await proxy.start()
        body, target = through_proxy(body, port)
        if target is None:
            report("refused", status=0, reason="the answer has no 127.0.0.1 UDP candidate to proxy")
            sys.exit(2)
        proxy.target = target
        report("proxy", port=port, target=list(target), delay_ms=proxy.delay * 1000)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    return body, location


def prefer(transceiver, codec):
    """Puts `codec` (and its RTX) first in the transceiver's codec preferences."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    first = [c for c in codecs if c.mimeType.lower() == f"video/{codec}"]
    rest = [c for c in codecs if c not in first]
    transceiver.setCodecPreferences(first + rest)


async def publish(args):
    pc = RTCPeerConnection()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        report("state", state=pc.connectionState)
        if pc.connectionState == "connected":
            connected.set()

    if args.sync:
        clock = SyncClock()
        video_track, audio_track = Flash(clock), Beep(clock)
    else:
        video_track, audio_track = Pattern(), AudioStreamTrack()
    video = pc.addTransceiver(video_track, direction="sendonly")
    prefer(video, args.codec)
    audio = pc.addTransceiver(audio_track, direction="sendonly")
    proxy = None
    if args.delay_audio_ms:
        proxy = DelayProxy(None, audio.sender._ssrc, args.delay_audio_ms / 1000)
    _, location = await negotiate(pc, args.url, args.token, proxy)
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    # A daemon thread, so that a stdin still open at exit does not hold the process.
    def wait_stdin():
        sys.stdin.read()
        try:
            loop.call_soon_threadsafe(stdin_closed.set)
        except RuntimeError:
            pass  # the loop already ended

    threading.Thread(target=wait_stdin, daemon=True).start()
    try:
        await asyncio.wait_for(connected.wait(), timeout=20)
        try:
            await asyncio.wait_for(stdin_closed.wait(), timeout=args.seconds)
        except asyncio.TimeoutError:
            pass
    finally:
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        await loop.run_in_executor(None, lambda: http("DELETE", location, headers=headers, timeout=5))
        await pc.close()
        report("closed", delayed=proxy.delayed if proxy else 0)


async def watch(args):
    pc = RTCPeerConnection()
    done = asyncio.get_running_loop().create_future()

    async def count_frames(track):
        frames, last = 0, 0.0
        try:
            while frames < args.frames:
                frame = await track.recv()
                frames += 1
                if time.monotonic() - last > 1 or frames == args.frames:
                    last = time.monotonic()
                    report("frames", count=frames, width=frame.width, height=frame.height)
        except MediaStreamError:
            pass
        if not done.done():
            done.set_result(frames)

    @pc.on("track")
    def on_track(track):
        report("track", kind=track.kind)
        if track.kind == "video":
            asyncio.ensure_future(count_frames(track))

    @pc.on("connectionstatechange")
    def on_state():
        report("state", state=pc.connectionState)

    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    answer, location = await negotiate(pc, args.url, None)
    try:
        frames = await asyncio.wait_for(done, timeout=args.timeout)
    except asyncio.TimeoutError:
        frames = -1
    codec = (answer_codecs(answer) or [None])[0]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: http("DELETE", location, timeout=5))
    await pc.close()
    report("result", frames=frames, codec=codec)
    sys.exit(0 if frames >= args.frames else 1)


NTP_UNIX_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


def ntp_seconds(ntp):
    """A 64-bit NTP timestamp as Unix seconds."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / (1 << 32)


def rtp_diff(a, b):
    """a - b for 32-bit RTP timestamps, across a wrap."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


class SyncProbe:
    """One receiver's view of its track: the sender reports of each SSRC, its RTP packets per
    SSRC, and the flash or beep onsets in its decoded frames."""

    def __init__(self, kind):
        self.kind = kind
        self.rate = 90000 if kind == "video" else 48000
        self.srs = {}  # ssrc -> [(ntp seconds, rtp timestamp, wall clock at arrival)]
        self.packets = {}  # ssrc -> RTP packets
        self.events = []  # {"rtp", "arrival", "ntp" (None before a report)}
        self.unmapped = 0

    def on_sr(self, packet):
        info = packet.sender_info
        ntp, rtp = ntp_seconds(info.ntp_timestamp), info.rtp_timestamp
        reports = self.srs.setdefault(packet.ssrc, [])
        # How far this report's mapping sits from the previous one's (0 for one steady clock).
        jump = None
        if reports:
            pntp, prtp, _ = reports[-1]
            jump = round(((ntp - pntp) - rtp_diff(rtp, prtp) / self.rate) * 1000, 2)
        reports.append((ntp, rtp, time.time()))
        report("sr", kind=self.kind, ssrc=packet.ssrc, ntp=round(ntp, 6), rtp=rtp, jump_ms=jump)

    def media_ssrc(self):
        """The SSRC most of the packets came from (not a retransmission's)."""
        return max(self.packets, key=self.packets.get) if self.packets else None

    def add_event(self, rtp, arrival):
        """An onset at RTP timestamp `rtp`, decoded at wall clock `arrival`: mapped to the
        sender's NTP time through the latest sender report of the track's SSRC."""
        reports = self.srs.get(self.media_ssrc())
        ntp = None
        if reports:
            sr_ntp, sr_rtp, _ = reports[-1]
            ntp = sr_ntp + rtp_diff(rtp, sr_rtp) / self.rate
        else:
            self.unmapped += 1
        self.events.append({"rtp": rtp, "arrival": arrival, "ntp": ntp})
        report("flash" if self.kind == "video" else "beep", rtp=rtp, arrival=round(arrival, 4),
               ntp=None if ntp is None else round(ntp, 4))


def sync_pairs(flashes, beeps):
    """Each flash with the beep that arrived nearest to it (within 1 s; they repeat every 2 s):
    the offsets beep - flash in ms by sender reports (None unless both were mapped) and by
    arrival."""
    pairs = []
    for f in flashes:
        near = [b for b in beeps if abs(b["arrival"] - f["arrival"]) < 1.0]
        if not near:
            continue
        b = min(near, key=lambda b: abs(b["arrival"] - f["arrival"]))
        by_sr = None
        if f["ntp"] is not None and b["ntp"] is not None:
            by_sr = round((b["ntp"] - f["ntp"]) * 1000, 1)
        pairs.append({"flash_rtp": f["rtp"], "beep_rtp": b["rtp"],
                      "flash_ntp": None if f["ntp"] is None else round(f["ntp"], 4), "sr_ms": by_sr,
                      "arrival_ms": round((b["arrival"] - f["arrival"]) * 1000, 1)})
    return pairs


def median(values):
    values = sorted(values)
    if not values:
        return None
    n = len(values)
    return values[n // 2] if n % 2 else round((values[n // 2 - 1] + values[n // 2]) / 2, 2)


async def watch_sync(args):
    from aiortc.rtcrtpreceiver import RTCRtpReceiver
    from aiortc.rtp import RtcpSrPacket

    probes = {}  # receiver -> SyncProbe

    def probe(receiver):
        if receiver not in probes:
            probes[receiver] = SyncProbe(receiver._RTCRtpReceiver__kind)
        return probes[receiver]

    # aiortc parses RTCP in RTCRtpReceiver: see its sender reports and RTP packets on the way in.
    handle_rtcp, handle_rtp = RTCRtpReceiver._handle_rtcp_packet, RTCRtpReceiver._handle_rtp_packet

    async def on_rtcp(self, packet):
        if isinstance(packet, RtcpSrPacket):
            probe(self).on_sr(packet)
        await handle_rtcp(self, packet)

    async def on_rtp(self, packet, arrival_time_ms):
        p = probe(self)
        p.packets[packet.ssrc] = p.packets.get(packet.ssrc, 0) + 1
        await handle_rtp(self, packet, arrival_time_ms)

    RTCRtpReceiver._handle_rtcp_packet, RTCRtpReceiver._handle_rtp_packet = on_rtcp, on_rtp

    def rtp_timestamp(receiver, frame):
        # The receiver hands frames on with pts = RTP timestamp - the first frame's (unwrapped).
        origin = receiver._RTCRtpReceiver__timestamp_mapper._origin
        return (frame.pts + origin) & 0xFFFFFFFF

    pc = RTCPeerConnection()
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    counts = {"video": 0, "audio": 0}

    def mapped_pairs():
        video = [p for p in probes.values() if p.kind == "video"]
        audio = [p for p in probes.values() if p.kind == "audio"]
        if not video or not audio:
            return []
        return sync_pairs(video[0].events, audio[0].events)

    def check_done():
        if not done.done() and sum(1 for p in mapped_pairs() if p["sr_ms"] is not None) >= args.pairs:
            done.set_result(True)

    async def read_video(receiver, track):
        p, dark = probe(receiver), False
        try:
            while True:
                frame = await track.recv()
                arrival = time.time()
                counts["video"] += 1
                y = float(frame.reformat(format="gray").to_ndarray().mean())
                if dark and y > 128:
                    p.add_event(rtp_timestamp(receiver, frame), arrival)
                    check_done()
                if y < 64:
                    dark = True
                elif y > 128:
                    dark = False
        except MediaStreamError:
            pass

    async def read_audio(receiver, track):
        p, quiet = probe(receiver), 0
        try:
            while True:
                frame = await track.recv()
                arrival = time.time()
                counts["audio"] += 1
                samples = frame.to_ndarray()
                channels = len(frame.layout.channels)
                first = samples[0] if frame.format.is_planar else samples[0][::channels]
                loud = numpy.abs(first.astype(numpy.int32)) > 3000
                # A beep starts at a loud sample after 50 ms of quiet.
                for i in numpy.flatnonzero(loud):
                    if quiet + i >= 2400:
                        offset = int(i)
                        p.add_event((rtp_timestamp(receiver, frame) + offset) & 0xFFFFFFFF,
                                    arrival + offset / frame.sample_rate)
                        check_done()
                    break
                loud_at = numpy.flatnonzero(loud)
                quiet = len(first) - 1 - int(loud_at[-1]) if len(loud_at) else quiet + len(first)
        except MediaStreamError:
            pass

    @pc.on("track")
    def on_track(track):
        report("track", kind=track.kind)
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        probe(receiver)
        reader = read_video if track.kind == "video" else read_audio
        asyncio.ensure_future(reader(receiver, track))

    @pc.on("connectionstatechange")
    def on_state():
        report("state", state=pc.connectionState)

    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    _, location = await negotiate(pc, args.url, None)

    def wait_stdin():
        sys.stdin.read()
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(False))
        except RuntimeError:
            pass  # the loop already ended

    threading.Thread(target=wait_stdin, daemon=True).start()
    try:
        await asyncio.wait_for(done, timeout=args.timeout)
    except asyncio.TimeoutError:
        pass
    pairs = mapped_pairs()
    by_sr = [p["sr_ms"] for p in pairs if p["sr_ms"] is not None]
    by_arrival = [p["arrival_ms"] for p in pairs]
    await loop.run_in_executor(None, lambda: http("DELETE", location, timeout=5))
    await pc.close()
    report("sync", pairs=pairs,
           sr_median_ms=median(by_sr), sr_median_abs_ms=median([abs(x) for x in by_sr]),
           arrival_median_ms=median(by_arrival),
           frames=counts, flashes=sum(len(p.events) for p in probes.values() if p.kind == "video"),
           beeps=sum(len(p.events) for p in probes.values() if p.kind == "audio"),
           unmapped={p.kind: p.unmapped for p in probes.values()},
           sender_reports={p.kind: {str(s): len(r) for s, r in p.srs.items()} for p in probes.values()},
           packets={p.kind: {str(s): n for s, n in p.packets.items()} for p in probes.values()})
    sys.exit(0 if len(by_sr) >= args.pairs else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish")
    pub.add_argument("url")
    pub.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    pub.add_argument("--token")
    pub.add_argument("--seconds", type=float, default=60)
    pub.add_argument("--sync", action="store_true")
    pub.add_argument("--delay-audio-ms", type=float, default=0)
    w = sub.add_parser("watch")
    w.add_argument("url")
    w.add_argument("--frames", type=int, default=30)
    w.add_argument("--timeout", type=float, default=30)
    ws = sub.add_parser("watch-sync")
    ws.add_argument("url")
    ws.add_argument("--pairs", type=int, default=4)
    ws.add_argument("--timeout", type=float, default=40)
    args = p.parse_args()
    if args.cmd == "watch-sync":
        asyncio.run(watch_sync(args))
    else:
        asyncio.run(publish(args) if args.cmd == "publish" else watch(args))


if __name__ == "__main__":
    main()
