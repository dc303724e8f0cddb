// Relaycast browser SDK: watch (WHEP) and publish (WHIP) live streams from a
// Relaycast SFU. Zero dependencies, plain ES modules (this entry and ./lib/*.js, served as they are).
//
//   import { Relaycast } from '/sdk/relaycast.js';
//   const rc = new Relaycast('http://127.0.0.1:8080');
//   video.srcObject = await rc.watch('room');

import { RelaycastError } from './lib/errors.js';
import { joinUrl, withToken } from './lib/signaling.js';
import { WatchSession } from './lib/watch.js';
import { PublishSession } from './lib/publish.js';
import { playHls, playLive } from './lib/replay.js';

export { RelaycastError } from './lib/errors.js';
export { backoffDelay } from './lib/connection.js';
export { buildSdpFragment, parseCandidates, parseIceServersFromLink, withToken } from './lib/signaling.js';
export { WatchSession } from './lib/watch.js';
export { PublishSession, SIMULCAST_ENCODINGS } from './lib/publish.js';
export { HlsPlayback, loadHlsJs, parseVariants, playlistDuration } from './lib/replay.js';

/**
 * Client for one Relaycast server. An EventTarget that re-emits the events of its sessions
 * (`stats`, `layer`, `viewers`, `publisher`, `state`, `close`, ...); `event.detail.session` names the source.
 */
export class Relaycast extends EventTarget {
  /** @param {string} [baseUrl] server origin, e.g. `http://127.0.0.1:8080` (defaults to the page's origin) */
  constructor(baseUrl, options = {}) {
    super();
    const fallback = typeof location !== 'undefined' ? location.origin : undefined;
    const base = String(baseUrl ?? fallback ?? '').replace(/\/+$/, '');
    if (!base) throw new TypeError('Relaycast: a base URL is required outside a browser page');
    this.baseUrl = base;
    this.iceServers = options.iceServers ?? null;
    this.iceTransportPolicy = options.iceTransportPolicy ?? null;
    this.token = options.token ?? null;
    /** Every open session. */
    this.sessions = new Set();
    /** The most recent watch session (target of `rc.setLayer`). */
    this.session = null;
    /** The most recent publish session. */
    this.publishSession = null;
  }

  _track(session) {
    this.sessions.add(session);
    const forward = (type) => session.addEventListener(type, (e) => {
      this.dispatchEvent(new CustomEvent(type, { detail: { ...(e.detail ?? {}), session } }));
    });
    for (const type of ['stats', 'layer', 'viewers', 'publisher', 'state', 'reconnecting', 'reconnected', 'error', 'track', 'event', 'iceservers', 'segment', 'replay']) forward(type);
    session.addEventListener('close', (e) => {
      this.sessions.delete(session);
      this.dispatchEvent(new CustomEvent('close', { detail: { ...(e.detail ?? {}), session } }));
    });
  }

  /**
   * Watch `stream`; resolves with a MediaStream (video + audio) once the server's answer is set.
   * The same MediaStream object stays valid across reconnects.
   */
  async watch(stream, options = {}) {
    const session = new WatchSession(this, stream, options);
    this.session = session;
    this._track(session);
    await session._start();
    return session.stream;
  }

  /** Publish `mediaStream` as `stream`; resolves with the PublishSession once the server's answer is set. */
  async publish(stream, mediaStream, options = {}) {
    const session = new PublishSession(this, stream, mediaStream, options);
    this.publishSession = session;
    this._track(session);
    await session._start();
    return session;
  }

  /** Layer preference for the most recent watch session (see WatchSession.setLayer). */
  setLayer(pref = {}) {
    if (!this.session) return Promise.reject(new RelaycastError('no watch session'));
    return this.session.setLayer(pref);
  }

  /** List the streams on the server (`GET /api/streams`). */
  async streams() {
    const resp = await fetch(joinUrl(this.baseUrl, 'api/streams'));
    if (!resp.ok) throw new RelaycastError(`${resp.status} from GET /api/streams`, { status: resp.status });
    const json = await resp.json();
    return json.streams ?? [];
  }

  /** The archive of `stream` (`GET /api/streams/{stream}/archive`): init, segments, ended, vod CID. */
  async archive(stream, options = {}) {
    const url = joinUrl(this.baseUrl, `api/streams/${encodeURIComponent(stream)}/archive`);
    const token = options.token ?? this.token;
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const resp = await fetch(url, { cache: 'no-store', headers });
    if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}`, { status: resp.status, body: await resp.text().catch(() => '') });
    return resp.json();
  }

  /**
   * Every recording of `stream` this node holds (`GET /api/streams/{stream}/recordings`), oldest
   * first: `[{ id, started, ended, duration, vod_cid, segments, codecs }]`.
   */
  async recordings(stream, options = {}) {
    const url = joinUrl(this.baseUrl, `api/streams/${encodeURIComponent(stream)}/recordings`);
    const token = options.token ?? this.token;
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const resp = await fetch(url, { cache: 'no-store', headers });
    if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}`, { status: resp.status, body: await resp.text().catch(() => '') });
    return (await resp.json()).recordings ?? [];
  }

  /**
   * URL of the HLS playlist of every archived segment of `stream` (`/replay/{stream}/vod.m3u8`,
   * or `/replay/{stream}/{recording}/vod.m3u8` for `options.recording`, an id from
   * `recordings()`), with `?token=` when a token is given (option or client default): players
   * cannot set headers.
   */
  replayUrl(stream, options = {}) {
    const rec = options.recording != null ? `${encodeURIComponent(String(options.recording))}/` : '';
    return withToken(joinUrl(this.baseUrl, `replay/${encodeURIComponent(stream)}/${rec}vod.m3u8`), options.token ?? this.token);
  }

  /** Play the archive of `stream` in `video` from `seconds` (default 30) before its end; resolves with the HlsPlayback. */
  replay(stream, video, options = {}) {
    const opts = typeof options === 'number' ? { seconds: options } : options;
    return playHls(this, video, stream, { ...opts, seconds: opts.seconds ?? 30 });
  }

  /**
   * Play the recording of `stream` in `video` from its start (a finished VOD, or a live one so
   * far): the latest, or `options.recording` (an id from `recordings()`).
   */
  vod(stream, video, options = {}) {
    return playHls(this, video, stream, { ...options, seconds: null });
  }

  /**
   * Play the live archive of `stream` (its low-latency `live.m3u8`) in `video`, a second or two
   * behind the publisher, without WebRTC (for networks it cannot cross): hls.js for fMP4, Media
   * Source Extensions part by part for VP8 (WebM). Resolves with the HlsPlayback.
   */
  live(stream, video, options = {}) {
    return playLive(this, video, stream, options);
  }

  /** Close every session (DELETE, PeerConnection close) and emit `close`. */
  async close() {
    const all = [...this.sessions];
    await Promise.all(all.map((s) => s.close()));
    this.dispatchEvent(new CustomEvent('close', { detail: { reason: 'closed', session: null } }));
  }
}

export default Relaycast;
