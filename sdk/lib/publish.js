// Relaycast browser SDK: a publisher session (WHIP): simulcast encodings, codec preferences,
// track replacement, send stats.

import { RelaycastError } from './errors.js';
import { joinUrl } from './signaling.js';
import { Session, rate } from './session.js';

/** Simulcast encodings sent by `publish()` when simulcast is on (low, mid, high). */
export const SIMULCAST_ENCODINGS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', maxBitrate: 1_500_000 }),
]);

function pickCodecs(kind, codec) {
  const caps = (typeof RTCRtpReceiver !== 'undefined' && RTCRtpReceiver.getCapabilities?.(kind)) || null;
  if (!caps) return null;
  const all = caps.codecs;
  const mime = (c) => c.mimeType.toLowerCase();
  const fmtp = (c) => (c.sdpFmtpLine || '').toLowerCase();
  let chosen;
  if (kind === 'audio') {
    chosen = all.filter((c) => mime(c) === 'audio/opus');
  } else if (codec === 'h264') {
    const h264 = all.filter((c) => mime(c) === 'video/h264' && /packetization-mode=1/.test(fmtp(c)));
    const score = (c) => (/profile-level-id=42e01f/.test(fmtp(c)) ? 0 : /profile-level-id=42001f/.test(fmtp(c)) ? 1 : 2);
    chosen = h264.sort((a, b) => score(a) - score(b));
  } else {
    chosen = all.filter((c) => mime(c) === `video/${codec}`);
  }
  if (!chosen.length) return null;
  if (kind === 'video') chosen = chosen.concat(all.filter((c) => mime(c) === 'video/rtx'));
  return chosen;
}

/** A publisher session (WHIP). Emits `stats`, `viewers`, `state`, `close`. */
export class PublishSession extends Session {
  constructor(client, streamName, mediaStream, options = {}) {
    super(client, 'publish', streamName, options);
    this.mediaStream = mediaStream;
    this.codec = String(options.codec || 'vp8').toLowerCase();
    this.simulcast = options.simulcast !== false;
    this.viewers = 0;
  }

  _endpoint() {
    return joinUrl(this.client.baseUrl, `whip/${encodeURIComponent(this.streamName)}`);
  }

  _createPeerConnection() {
    const pc = new RTCPeerConnection(this._rtcConfig());
    const ms = this.mediaStream;
    const video = ms.getVideoTracks()[0];
    const audio = ms.getAudioTracks()[0];
    if (!video && !audio) throw new RelaycastError('the MediaStream has no tracks to publish');
    if (video) {
      const sendEncodings = this.simulcast ? SIMULCAST_ENCODINGS.map((e) => ({ ...e })) : [{ maxBitrate: SIMULCAST_ENCODINGS[2].maxBitrate }];
      const tr = pc.addTransceiver(video, { direction: 'sendonly', streams: [ms], sendEncodings });
      const codecs = pickCodecs('video', this.codec);
      if (!codecs) throw new RelaycastError(`this browser cannot send ${this.codec.toUpperCase()}`);
      if (tr.setCodecPreferences) tr.setCodecPreferences(codecs);
      this.videoTransceiver = tr;
    }
    if (audio) {
      const tr = pc.addTransceiver(audio, { direction: 'sendonly', streams: [ms] });
      const codecs = pickCodecs('audio');
      if (codecs && tr.setCodecPreferences) tr.setCodecPreferences(codecs);
      this.audioTransceiver = tr;
    }
    return pc;
  }

  /** Swap the published track of the same kind (e.g. another camera) without renegotiation. */
  async replaceTrack(track) {
    const old = this.mediaStream.getTracks().find((t) => t.kind === track.kind);
    if (old && old !== track) this.mediaStream.removeTrack(old);
    if (!this.mediaStream.getTracks().includes(track)) this.mediaStream.addTrack(track);
    const tr = track.kind === 'video' ? this.videoTransceiver : this.audioTransceiver;
    if (tr && this.pc && tr.sender) await tr.sender.replaceTrack(track);
    return old;
  }

  _summarize(report, prev, now) {
    const dt = prev ? now - prev.at : 0;
    const layers = [];
    const out = {
      timestamp: Date.now(),
      bitrate: 0,
      layers,
      audio: { bitrate: 0, packetsSent: 0 },
      roundTripTime: null,
      availableOutgoingBitrate: null,
      codec: null,
      viewers: this.viewers,
      connectionState: this.pc?.connectionState ?? 'closed',
    };
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        const p = prev?.report.get(s.id);
        const layer = {
          rid: s.rid ?? '',
          bitrate: rate(s, p, dt),
          frameWidth: s.frameWidth ?? 0,
          frameHeight: s.frameHeight ?? 0,
          framesPerSecond: s.framesPerSecond ?? 0,
          framesEncoded: s.framesEncoded ?? 0,
          packetsSent: s.packetsSent ?? 0,
          active: s.active !== false,
          qualityLimitationReason: s.qualityLimitationReason ?? 'none',
          encoderImplementation: s.encoderImplementation ?? null,
        };
        layers.push(layer);
        out.bitrate += layer.bitrate;
        const codec = s.codecId && report.get(s.codecId);
        if (codec) out.codec = codec.mimeType?.replace(/^video\//i, '') ?? null;
      } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        const p = prev?.report.get(s.id);
        out.audio = { bitrate: rate(s, p, dt), packetsSent: s.packetsSent ?? 0 };
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        out.roundTripTime = s.currentRoundTripTime ?? null;
        out.availableOutgoingBitrate = s.availableOutgoingBitrate ?? null;
      }
    });
    const order = { q: 0, h: 1, f: 2 };
    layers.sort((a, b) => (order[a.rid] ?? 9) - (order[b.rid] ?? 9));
    return out;
  }
}
