"""WHIP publisher and WHEP viewer built on GStreamer's webrtcbin (Debian's python3-gst-1.0).

    gst_client.py publish URL [--token TOKEN] [--seconds N] [--no-trickle] [--encoder x264enc|openh264enc]
    gst_client.py watch URL [--frames N] [--timeout S] [--no-trickle]

`publish` sends a moving test pattern as H264 (constrained baseline, one layer) and an Opus
tone to the WHIP endpoint URL, the way OBS does: it POSTs the offer as soon as it is made and
sends each local candidate after it in a PATCH (`application/trickle-ice-sdpfrag`, RFC 8840),
or with --no-trickle waits for ICE gathering to complete and POSTs the offer with every
candidate in it. It runs until N seconds pass or stdin closes, then DELETEs the session.
`watch` receives H264 + Opus from the WHEP endpoint URL, decodes the video with libavcodec and
exits 0 once it decoded N frames (1 on timeout or failure).

Progress goes to stdout as one JSON object per line; `watch` ends with a `result` line
(`frames`, `codec`, `width`, `height`). Run it with Debian's /usr/bin/python3 (the `gi` module
comes from python3-gi, not from PyPI).
"""

import argparse
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402


REPORT_LOCK = threading.Lock()


def report(event, **fields):
    """Prints one progress line, whole: GStreamer calls this from its own threads too, and
    print() writes the text and its newline separately."""
    line = json.dumps({"event": event, **fields}) + "\n"
    with REPORT_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request; returns (status, headers, body text) for any status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


PUBLISH_PIPELINE = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1
 ! videoconvert ! {encoder} ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream
 ! h264parse config-interval=-1 ! rtph264pay pt=102 config-interval=-1 aggregate-mode=zero-latency
 ! application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000 ! webrtc.
audiotestsrc is-live=true wave=sine volume=0.2 ! audioconvert ! audioresample ! opusenc
 ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000 ! webrtc.
"""

ENCODERS = {
    "x264enc": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=800",
    "openh264enc": "openh264enc bitrate=800000 gop-size=30 complexity=low",
}


class Client:
    """One webrtcbin session against a WHIP or WHEP endpoint."""

    def __init__(self, args, pipeline):
        self.args = args
        self.loop = GLib.MainLoop()
        self.pipe = pipeline
        self.webrtc = pipeline.get_by_name("webrtc")
        self.location = None
        self.pending = []  # candidates made before the session URL is known
        self.failed = None
        self.lock = threading.Lock()
        self.webrtc.connect("on-ice-candidate", self.on_candidate)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::connection-state", self.on_connection_state)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        bus = pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)
        self.offer_sdp = None
        self.offer_posted = False

    # --- signaling

    def headers(self, content_type):
        h = {"Content-Type": content_type}
        if getattr(self.args, "token", None):
            h["Authorization"] = f"Bearer {self.args.token}"
        return h

    def negotiate(self):
        """Creates the offer; the answer comes back over HTTP."""
        promise = Gst.Promise.new_with_change_func(self.on_offer_created, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer_created(self, promise, _data):
        reply = promise.get_reply()
        offer = reply.get_value("offer")
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        self.offer_sdp = offer.sdp.as_text()
        if self.args.trickle:
            GLib.idle_add(self.post_offer, self.offer_sdp)

    def on_gathering(self, webrtc, _pspec):
        state = webrtc.get_property("ice-gathering-state")
        report("gathering", state=state.value_nick)
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            if self.args.trickle:
                GLib.idle_add(self.patch_candidates)
            else:
                # The local description now carries every candidate.
                sdp = webrtc.get_property("local-description").sdp.as_text()
                GLib.idle_add(self.post_offer, sdp)

    def post_offer(self, sdp):
        if self.offer_posted:
            return False
        self.offer_posted = True
        report("offer", candidates=sdp.count("a=candidate:"), trickle=self.args.trickle)
        status, headers, body = http("POST", self.args.url, sdp.encode(), self.headers("application/sdp"))
        if status != 201:
            return self.fail(f"POST offer: {status} {body.strip()}")
        self.location = urllib.parse.urljoin(self.args.url, headers.get("Location", ""))
        res, msg = GstSdp.SDPMessage.new_from_text(body)
        if res != GstSdp.SDPResult.OK:
            return self.fail("answer does not parse")
        codecs = sorted({line.split()[1].split("/")[0] for line in body.splitlines() if line.startswith("a=rtpmap:")})
        report("answer", status=status, codecs=codecs, location=self.location)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        self.webrtc.emit("set-remote-description", answer, Gst.Promise.new())
        self.patch_candidates()
        return False

    def on_candidate(self, _webrtc, mline, candidate):
        with self.lock:
            self.pending.append((mline, candidate))
        if self.args.trickle:
            GLib.idle_add(self.patch_candidates)

    def patch_candidates(self):
        """Sends the candidates gathered so far (RFC 8840 fragment, first m-line of the bundle)."""
        if not self.args.trickle or not self.location:
            return False
        with self.lock:
            batch, self.pending = self.pending, []
        done = self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE
        if not batch and not done:
            return False
        if not batch and getattr(self, "ended", False):
            return False
        frag = self.sdpfrag([c for _, c in batch], done)
        status, _, body = http("PATCH", self.location, frag.encode(), self.headers("application/trickle-ice-sdpfrag"))
        report("patch", status=status, candidates=len(batch), end=done)
        if done:
            self.ended = True
        if status not in (200, 204):
            return self.fail(f"PATCH candidates: {status} {body.strip()}")
        return False

    def sdpfrag(self, candidates, end):
        sdp = self.offer_sdp or ""
        ufrag = next((line[len("a=ice-ufrag:"):] for line in sdp.splitlines() if line.startswith("a=ice-ufrag:")), "")
        pwd = next((line[len("a=ice-pwd:"):] for line in sdp.splitlines() if line.startswith("a=ice-pwd:")), "")
        mid = next((line[len("a=mid:"):] for line in sdp.splitlines() if line.startswith("a=mid:")), "0")
        lines = [f"a=ice-ufrag:{ufrag}", f"a=ice-pwd:{pwd}", "m=audio 9 UDP/TLS/RTP/SAVPF 0", f"a=mid:{mid}"]
        lines += [f"a={c}" if not c.startswith("a=") else c for c in candidates]
        if end:
            lines.append("a=end-of-candidates")
        return "\r\n".join(lines) + "\r\n"

    # --- state

    def on_connection_state(self, webrtc, _pspec):
        state = webrtc.get_property("connection-state")
        report("state", state=state.value_nick)
        if state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            GLib.idle_add(self.fail, "peer connection failed")

    def on_ice_state(self, webrtc, _pspec):
        report("ice", state=webrtc.get_property("ice-connection-state").value_nick)

    def on_error(self, _bus, msg):
        err, debug = msg.parse_error()
        self.fail(f"{err.message} ({debug})")

    def fail(self, why):
        if self.failed is None:
            self.failed = why
            report("error", error=why)
            self.loop.quit()
        return False

    def delete(self):
        if self.location:
            status, _, _ = http("DELETE", self.location, headers=self.headers("application/sdp"))
            report("deleted", status=status)

    def run(self, seconds):
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(seconds * 1000), self.on_timeout)
        self.loop.run()
        self.delete()
        self.pipe.set_state(Gst.State.NULL)

    def on_timeout(self):
        self.loop.quit()
        return False


def publish(args):
    pipe = Gst.parse_launch(PUBLISH_PIPELINE.format(encoder=ENCODERS[args.encoder]))
    client = Client(args, pipe)
    client.webrtc.connect("on-negotiation-needed", lambda _w: client.negotiate())
    pipe.set_state(Gst.State.READY)

    def sendonly(_el, _pad=None):
        for i in range(2):
            t = client.webrtc.emit("get-transceiver", i)
            if t is not None:
                t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)

    sendonly(None)

    # stdin closing ends the publisher early.
    def watch_stdin():
        sys.stdin.read()
        GLib.idle_add(client.loop.quit)

    threading.Thread(target=watch_stdin, daemon=True).start()
    client.run(args.seconds)
    return 1 if client.failed else 0


def watch(args):
    pipe = Gst.Pipeline.new("viewer")
    webrtcbin = Gst.ElementFactory.make("webrtcbin", "webrtc")
    webrtcbin.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipe.add(webrtcbin)
    client = Client(args, pipe)
    webrtc = client.webrtc
    state = {"frames": 0, "width": 0, "height": 0, "codec": None}

    def on_frame(pad, info):
        state["frames"] += 1
        caps = pad.get_current_caps()
        if caps:
            s = caps.get_structure(0)
            state["width"], state["height"] = s.get_value("width"), s.get_value("height")
        if state["frames"] % 10 == 0:
            report("frames", frames=state["frames"], width=state["width"], height=state["height"])
        if state["frames"] >= args.frames:
            GLib.idle_add(client.loop.quit)
        return Gst.PadProbeReturn.OK

    def on_pad(_webrtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        s = pad.get_current_caps().get_structure(0)
        media, enc = s.get_value("media"), s.get_value("encoding-name")
        report("track", media=media, codec=enc)
        if media == "video":
            state["codec"] = enc
            desc = "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! fakesink name=vsink sync=false"
        else:
            desc = "rtpopusdepay ! opusdec ! fakesink sync=false"
        bin_ = Gst.parse_bin_from_description(desc, True)
        pipe.add(bin_)
        bin_.sync_state_with_parent()
        pad.link(bin_.get_static_pad("sink"))
        if media == "video":
            sink = bin_.get_by_name("vsink")
            sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_frame)

    webrtc.connect("pad-added", on_pad)
    recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
    # libavcodec decodes any profile: offer constrained baseline (what OBS and GStreamer send)
    # and baseline (aiortc's), each as its own payload type.
    webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(
        "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,"
        "packetization-mode=(string)1,profile-level-id=(string)42e01f;"
        "application/x-rtp,media=video,encoding-name=H264,payload=104,clock-rate=90000,"
        "packetization-mode=(string)1,profile-level-id=(string)42001f"))
    webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(
        "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2"))
    pipe.set_state(Gst.State.PLAYING)
    client.negotiate()
    client.run(args.timeout)
    report("result", frames=state["frames"], codec=state["codec"], width=state["width"], height=state["height"],
           error=client.failed)
    return 0 if state["frames"] >= args.frames and not client.failed else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    pp = sub.add_parser("publish")
    pp.add_argument("url")
    pp.add_argument("--token")
    pp.add_argument("--seconds", type=float, default=60)
    pp.add_argument("--encoder", choices=sorted(ENCODERS), default="x264enc")
    pp.add_argument("--no-trickle", dest="trickle", action="store_false")
    pw = sub.add_parser("watch")
    pw.add_argument("url")
    pw.add_argument("--token")
    pw.add_argument("--frames", type=int, default=30)
    pw.add_argument("--timeout", type=float, default=30)
    pw.add_argument("--no-trickle", dest="trickle", action="store_false")
    args = p.parse_args()
    Gst.init(None)
    sys.exit(publish(args) if args.mode == "publish" else watch(args))


if __name__ == "__main__":
    main()
