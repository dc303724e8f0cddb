"""WHIP publisher and WHEP viewer built on aiortc, a WebRTC stack independent of the node's.

    aiortc_client.py publish URL [--codec vp8|h264] [--token TOKEN] [--seconds N]
    aiortc_client.py watch URL [--frames N] [--timeout S]

`publish` sends a moving test pattern (VP8 or H264) and Opus silence to the WHIP endpoint URL
until N seconds pass or stdin closes, then DELETEs the session. `watch` receives from the WHEP
endpoint URL, decodes video frames, and exits 0 once it decoded N frames (1 on timeout).
Progress goes to stdout as one JSON object per line. aiortc gathers its candidates before the
offer leaves (no trickle), as it always does.
"""

import argparse
import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import VideoFrame


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


async def negotiate(pc, url, token):
    """Posts the offer (candidates included) and applies the answer; returns the answer SDP and
    the session URL."""
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

    video = pc.addTransceiver(Pattern(), direction="sendonly")
    prefer(video, args.codec)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    _, location = await negotiate(pc, args.url, args.token)
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
        report("closed")


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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pub = sub.add_parser("publish")
    pub.add_argument("url")
    pub.add_argument("--codec", choices=["vp8", "h264"], default="vp8")
    pub.add_argument("--token")
    pub.add_argument("--seconds", type=float, default=60)
    w = sub.add_parser("watch")
    w.add_argument("url")
    w.add_argument("--frames", type=int, default=30)
    w.add_argument("--timeout", type=float, default=30)
    args = p.parse_args()
    asyncio.run(publish(args) if args.cmd == "publish" else watch(args))


if __name__ == "__main__":
    main()
