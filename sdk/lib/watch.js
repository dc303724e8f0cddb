// Relaycast browser SDK: a viewer session (WHEP): receive-only PeerConnection, one MediaStream
// that survives reconnects, layer control, receive stats, instant replay.

import { RelaycastError } from './errors.js';
import { joinUrl, postLayer } from './signaling.js';
import { Session, emit, rate } from './session.js';
import { playHls } from './replay.js';

/** A viewer session (WHEP). Emits `stats`, `layer`, `viewers`, `publisher`, `segment`, `replay`, `state`, `close`. */
export class WatchSession extends Session {
  constructor(client, streamName, options = {}) {
    super(client, 'watch', streamName, options);
    /** The MediaStream handed to the page; its tracks are replaced in place on reconnect. */
    this.stream = new MediaStream();
    this.rid = null;
    this.targetRid = null;
    this.layerPreference = {};
    /** The HlsPlayback of a running replay (null while live). */
    this.replayPlayback = null;
    this._replayGen = 0;
    if (options.rid !== undefined && options.rid !== null) this.layerPreference = { rid: options.rid };
    else if (options.maxHeight != null) this.layerPreference = { maxHeight: options.maxHeight };
  }

  _endpoint() {
    const url = new URL(joinUrl(this.client.baseUrl, `whep/${encodeURIComponent(this.streamName)}`));
    if (this.layerPreference.rid) url.searchParams.set('rid', this.layerPreference.rid);
    else if (this.layerPreference.maxHeight != null) url.searchParams.set('maxHeight', String(this.layerPreference.maxHeight));
    return url.toString();
  }

  _createPeerConnection() {
    const pc = new RTCPeerConnection(this._rtcConfig());
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addEventListener('track', (e) => {
      if (pc !== this.pc) return;
      this._adoptTrack(e.track);
    });
    return pc;
  }

  _adoptTrack(track) {
    const ms = this.stream;
    if (ms.getTracks().includes(track)) return;
    const old = ms.getTracks().filter((t) => t.kind === track.kind);
    ms.addTrack(track);
    for (const t of old) {
      ms.removeTrack(t);
      try { t.stop(); } catch { /* ignore */ }
    }
    emit(this, 'track', { track });
  }

  _onAnswered(pc) {
    // Make sure both receivers' tracks are in the stream even if `track` fired before they could be adopted.
    for (const tr of pc.getTransceivers()) {
      if (tr.receiver && tr.receiver.track && (tr.currentDirection === 'recvonly' || tr.currentDirection === 'sendrecv')) {
        this._adoptTrack(tr.receiver.track);
      }
    }
  }

  _onServerEvent(msg) {
    if (msg.type === 'layer') {
      this.rid = msg.rid ?? null;
      this.targetRid = msg.target ?? null;
      emit(this, 'layer', { rid: this.rid, target: this.targetRid });
    }
    super._onServerEvent(msg);
  }

  _summarize(report, prev, now) {
    const dt = prev ? now - prev.at : 0;
    const out = {
      timestamp: Date.now(),
      rid: this.rid,
      targetRid: this.targetRid,
      bitrate: 0,
      framesDecoded: 0,
      framesDropped: 0,
      framesPerSecond: 0,
      frameWidth: 0,
      frameHeight: 0,
      packetsReceived: 0,
      packetsLost: 0,
      jitter: 0,
      codec: null,
      audio: { bitrate: 0, packetsReceived: 0, packetsLost: 0 },
      roundTripTime: null,
      availableIncomingBitrate: null,
      connectionState: this.pc?.connectionState ?? 'closed',
    };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        const p = prev?.report.get(s.id);
        out.bitrate = rate(s, p, dt);
        out.framesDecoded = s.framesDecoded ?? 0;
        out.framesDropped = s.framesDropped ?? 0;
        out.framesPerSecond = s.framesPerSecond ?? 0;
        out.frameWidth = s.frameWidth ?? 0;
        out.frameHeight = s.frameHeight ?? 0;
        out.packetsReceived = s.packetsReceived ?? 0;
        out.packetsLost = s.packetsLost ?? 0;
        out.jitter = s.jitter ?? 0;
        const codec = s.codecId && report.get(s.codecId);
        if (codec) out.codec = codec.mimeType?.replace(/^video\//i, '') ?? null;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        const p = prev?.report.get(s.id);
        out.audio = { bitrate: rate(s, p, dt), packetsReceived: s.packetsReceived ?? 0, packetsLost: s.packetsLost ?? 0 };
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        out.roundTripTime = s.currentRoundTripTime ?? null;
        out.availableIncomingBitrate = s.availableIncomingBitrate ?? null;
      }
    });
    return out;
  }

  /**
   * Instant replay: play the stream's archive in `video` from `seconds` (default 30) before its
   * live edge, through `/replay/{stream}/vod.m3u8` of the node. The WebRTC connection stays up;
   * `backToLive()` returns to it. Resolves with the HlsPlayback once media is buffered.
   */
  async replay(video, options = {}) {
    const opts = typeof options === 'number' ? { seconds: options } : { ...options };
    const seconds = opts.seconds ?? 30;
    const gen = ++this._replayGen;
    this._stopReplay();
    let playback;
    try {
      playback = await playHls(this.client, video, this.streamName, { token: this.token, ...opts, seconds });
    } catch (err) {
      if (gen === this._replayGen) this._showLive(video);
      throw err;
    }
    if (gen !== this._replayGen) {
      playback.destroy();
      throw new RelaycastError('superseded');
    }
    this.replayPlayback = playback;
    playback.addEventListener('error', (e) => emit(this, 'replay', { active: true, error: e.detail.error, playback }));
    emit(this, 'replay', { active: true, seconds, engine: playback.engine, startPosition: playback.startPosition, playback });
    return playback;
  }

  /** Leave a replay: put the live MediaStream back into the `<video>` (no renegotiation). */
  async backToLive() {
    const playback = this.replayPlayback;
    this._replayGen++;
    if (!playback) return;
    this._stopReplay();
    await this._showLive(playback.video);
    emit(this, 'replay', { active: false });
  }

  _stopReplay() {
    if (this.replayPlayback) {
      this.replayPlayback.destroy();
      this.replayPlayback = null;
    }
  }

  async _showLive(video) {
    if (video.srcObject !== this.stream) video.srcObject = this.stream;
    await video.play().catch(() => {});
  }

  /**
   * Layer preference: `{rid:'q'|'h'|'f'}` fixes a layer, `{maxHeight:N}` caps the height,
   * `{}` or `{rid:null}` returns to automatic selection from the bandwidth estimate.
   */
  async setLayer(pref = {}) {
    let body;
    if (pref && pref.rid) body = { rid: pref.rid };
    else if (pref && pref.maxHeight != null) body = { maxHeight: Number(pref.maxHeight) };
    else if (pref && 'rid' in pref) body = { rid: null };
    else body = {};
    this.layerPreference = body.rid ? { rid: body.rid } : body.maxHeight != null ? { maxHeight: body.maxHeight } : {};
    if (!this.location) return; // Applied through the query string on the next connection.
    await postLayer(this.location, body);
  }
}
