// Relaycast browser SDK: replay and VOD, HLS playlists of a node's archive played in a <video>
// element by the browser's own HLS player or hls.js (loaded on first use from the node); VP8
// recordings (WebM segments) through Media Source Extensions (./mse.js).

import { RelaycastError } from './errors.js';
import { joinUrl, withToken } from './signaling.js';
import { emit } from './session.js';
import { MseWebmLive, MseWebmPlayer, isWebm, parseSegmentList, webmType } from './mse.js';

const HLS_MIME = 'application/vnd.apple.mpegurl';
const HLS_LOAD_TIMEOUT_MS = 15000;
const hlsScripts = new Map();

/**
 * Load hls.js from `<baseUrl>/sdk/hls.min.js` (a UMD script that sets `window.Hls`) with a
 * `<script>` tag, once per URL. A `window.Hls` that is already there is used as is.
 */
export function loadHlsJs(baseUrl) {
  if (typeof globalThis.Hls === 'function') return Promise.resolve(globalThis.Hls);
  const src = joinUrl(baseUrl, 'sdk/hls.min.js');
  let pending = hlsScripts.get(src);
  if (!pending) {
    pending = new Promise((resolve, reject) => {
      if (typeof document === 'undefined') {
        reject(new RelaycastError('hls.js can only be loaded in a browser page'));
        return;
      }
      const script = document.createElement('script');
      script.src = src;
      script.async = true;
      script.onload = () => {
        if (typeof globalThis.Hls === 'function') resolve(globalThis.Hls);
        else reject(new RelaycastError(`${src} did not define window.Hls`));
      };
      script.onerror = () => reject(new RelaycastError(`could not load ${src}`, { status: 0 }));
      (document.head || document.documentElement).appendChild(script);
    });
    hlsScripts.set(src, pending);
    pending.catch(() => hlsScripts.delete(src));
  }
  return pending;
}

/**
 * The variants of a multivariant HLS playlist (`#EXT-X-STREAM-INF`), in order: `[{ uri,
 * bandwidth, resolution, codecs }]` with URIs resolved against `base`; empty for a media playlist.
 */
export function parseVariants(text, base) {
  const out = [];
  let inf = null;
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#EXT-X-STREAM-INF:')) {
      inf = line.slice('#EXT-X-STREAM-INF:'.length);
    } else if (inf != null && line && !line.startsWith('#')) {
      const attr = (name) => new RegExp(`(?:^|,)${name}=("[^"]*"|[^,]*)`).exec(inf)?.[1]?.replace(/^"|"$/g, '') ?? null;
      out.push({ uri: new URL(line, base).href, bandwidth: Number(attr('BANDWIDTH')) || 0, resolution: attr('RESOLUTION'), codecs: attr('CODECS') });
      inf = null;
    }
  }
  return out;
}

/** Sum of the `#EXTINF` durations of an HLS media playlist, in seconds. */
export function playlistDuration(text) {
  let total = 0;
  for (const m of String(text).matchAll(/^#EXTINF:\s*([0-9.]+)/gm)) total += Number(m[1]) || 0;
  return total;
}

function mediaEvent(video, type, timeoutMs) {
  return new Promise((resolve, reject) => {
    const done = (fn, v) => {
      clearTimeout(timer);
      video.removeEventListener(type, onOk);
      video.removeEventListener('error', onErr);
      fn(v);
    };
    const onOk = () => done(resolve);
    const onErr = () => done(reject, new RelaycastError(`the video element failed: ${video.error?.message || `code ${video.error?.code}`}`));
    const timer = setTimeout(() => done(reject, new RelaycastError(`no ${type} within ${timeoutMs / 1000} s`)), timeoutMs);
    video.addEventListener(type, onOk);
    video.addEventListener('error', onErr);
  });
}

/**
 * Playback of an archived stream in a `<video>` element from its HLS playlist: fMP4 recordings
 * (H264, Opus) by the browser's own HLS player (`engine: 'native'`) or hls.js (`engine:
 * 'hls.js'`), WebM recordings (VP8) through Media Source Extensions (`engine: 'mse'`). Emits
 * `error` for fatal playback errors.
 */
export class HlsPlayback extends EventTarget {
  constructor(video, url) {
    super();
    /** The `<video>` element played into. */
    this.video = video;
    /** Absolute URL of the playlist. */
    this.url = url;
    /** 'native', 'hls.js' or 'mse'. */
    this.engine = null;
    /** The hls.js instance (engine 'hls.js'). */
    this.hls = null;
    /** The WebM feeder (engine 'mse'). */
    this.mse = null;
    /** Absolute URL of the media playlist played (the first variant of a multivariant one). */
    this.mediaUrl = url;
    /** The variants of a multivariant playlist (see `parseVariants`); empty for a media playlist. */
    this.variants = [];
    /** Removes the native player's error listener. */
    this._unlisten = null;
    /** How far behind the publisher the picture is, for live playback. */
    this._latency = null;
    /** Playlist duration when playback started, seconds. */
    this.duration = 0;
    /** Position playback started from, seconds. */
    this.startPosition = 0;
    /** RFC 6381 codecs of the archive (from `/api/streams/{stream}/archive`), if known. */
    this.codecs = null;
    this.destroyed = false;
  }

  async _native() {
    const v = this.video;
    const loaded = mediaEvent(v, 'loadedmetadata', HLS_LOAD_TIMEOUT_MS);
    v.src = this.url;
    await loaded;
    // A failure after the start (a segment the player cannot parse) is an `error` event.
    const onError = () => {
      if (this.destroyed || this.engine !== 'native') return;
      emit(this, 'error', { error: new RelaycastError(`the browser's HLS player failed: ${v.error?.message || `code ${v.error?.code}`}`) });
    };
    v.addEventListener('error', onError);
    this._unlisten = () => v.removeEventListener('error', onError);
    if (this.startPosition > 0) {
      const r = v.seekable;
      const end = r.length ? r.end(r.length - 1) : 0;
      if (!(end >= this.startPosition)) throw new NotSeekable(`the native HLS player cannot seek to ${this.startPosition.toFixed(1)} s`);
      v.currentTime = this.startPosition;
    }
  }

  async _hlsjs(Hls, config) {
    if (typeof Hls.isSupported === 'function' && !Hls.isSupported()) {
      throw new RelaycastError('hls.js is not supported in this browser (no Media Source Extensions)');
    }
    const hls = new Hls({ startPosition: this.startPosition, ...config });
    this.hls = hls;
    const ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new RelaycastError(`hls.js could not start ${this.url} within ${HLS_LOAD_TIMEOUT_MS / 1000} s`)), HLS_LOAD_TIMEOUT_MS);
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (!data?.fatal) return;
        const err = new RelaycastError(`hls.js: ${data.type}/${data.details}`, { status: data.response?.code ?? null });
        clearTimeout(timer);
        reject(err);
        if (!this.destroyed) emit(this, 'error', { error: err });
      });
      hls.once(Hls.Events.FRAG_BUFFERED, () => { clearTimeout(timer); resolve(); });
    });
    ready.catch(() => {});
    hls.attachMedia(this.video);
    hls.loadSource(this.url);
    await ready;
  }

  async _mse(list, type) {
    this.mse = new MseWebmPlayer(this.video, this.mediaUrl, type, (err) => {
      if (!this.destroyed) emit(this, 'error', { error: err });
    });
    await this.mse.start(list, this.startPosition);
  }

  /** Milliseconds the picture on screen is behind the publisher's capture (live playback), or null. */
  latencyMs() {
    return this._latency?.() ?? null;
  }

  /** Stop playback and release the `<video>` element (it keeps no source). */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this._release();
    emit(this, 'close', {});
  }

  _release() {
    if (this._unlisten) {
      this._unlisten();
      this._unlisten = null;
    }
    if (this.mse) {
      this.mse.destroy();
      this.mse = null;
    }
    if (this.hls) {
      try { this.hls.destroy(); } catch { /* already detached */ }
      this.hls = null;
    }
    const v = this.video;
    if (v.hasAttribute('src')) {
      v.removeAttribute('src');
      try { v.load(); } catch { /* ignore */ }
    }
  }
}

/** The native player cannot seek to the start position (hls.js may). */
class NotSeekable extends RelaycastError {}

/** Whether the browser can play fMP4 with `codecs` natively or through Media Source Extensions. */
function canPlayCodecs(video, codecs) {
  const type = `video/mp4; codecs="${codecs}"`;
  const native = !!video.canPlayType?.(type);
  const mse = typeof MediaSource !== 'undefined' && typeof MediaSource.isTypeSupported === 'function' && MediaSource.isTypeSupported(type);
  return native || mse;
}

/**
 * Whether a recording's segments are WebM: from its codecs (`vp8` is recorded in WebM), else
 * from the first bytes of its init segment.
 */
async function isWebmRecording(codecs, list) {
  if (codecs) return codecs.split(',').some((c) => c.trim() === 'vp8');
  const map = list.segments[0]?.map;
  if (!map) return false;
  try {
    const resp = await fetch(map, { headers: { Range: 'bytes=0-3' } });
    return resp.ok && isWebm(await resp.arrayBuffer());
  } catch {
    return false;
  }
}

/** GET a playlist (not cached); its text, or a RelaycastError with the status and body. */
async function fetchPlaylist(url) {
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store' });
  } catch (err) {
    throw new RelaycastError(`network error fetching ${url}: ${err?.message ?? err}`, { status: 0, cause: err });
  }
  const text = await resp.text().catch(() => '');
  if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}${text ? ': ' + text.trim() : ''}`, { status: resp.status, body: text });
  return text;
}

/**
 * Play the archive of `stream` (its HLS playlist `/replay/{stream}/vod.m3u8`) in `video`: from
 * `seconds` before the end of the playlist when given, else from its start. Native HLS when the
 * element can play it (and can seek there), else hls.js (see the `hls` option).
 */
export async function playHls(client, video, stream, { seconds = null, hls = 'auto', hlsConfig = {}, token, recording = null } = {}) {
  if (!video || typeof video.play !== 'function') throw new TypeError('a <video> element is required');
  const url = client.replayUrl(stream, { token, recording });
  // The archive API describes the latest recording; an older one is recognised by its files.
  const archive = recording == null ? client.archive(stream, { token }).catch(() => null) : Promise.resolve(null);
  const text = await fetchPlaylist(url);
  const codecs = (await archive)?.codecs;
  // A recording of several simulcast layers answers with a multivariant playlist: hls.js and
  // native players switch between its variants; the segment list (duration, and the WebM
  // player's segments) is the first variant's, the highest layer.
  let media = { url, text };
  const variants = parseVariants(text, url);
  if (variants.length) media = { url: variants[0].uri, text: await fetchPlaylist(variants[0].uri) };
  const list = parseSegmentList(media.text, media.url);
  const webm = await isWebmRecording(codecs, list);
  if (!webm && codecs && !canPlayCodecs(video, codecs)) {
    throw new RelaycastError(`this browser cannot play the archive's codecs (${codecs}) in fragmented MP4`);
  }
  const playback = new HlsPlayback(video, url);
  playback.mediaUrl = media.url;
  playback.variants = variants;
  playback.codecs = codecs ?? null;
  playback.duration = playlistDuration(media.text);
  playback.startPosition = seconds == null ? 0 : Math.max(0, playback.duration - Number(seconds));
  if (webm) {
    video.srcObject = null;
    playback.engine = 'mse';
    try {
      await playback._mse(list, webmType(codecs));
    } catch (err) {
      playback.destroy();
      throw err;
    }
    video.play().catch(() => {});
    return playback;
  }
  const mse = typeof MediaSource !== 'undefined' || typeof globalThis.ManagedMediaSource !== 'undefined';
  // A playlist still growing (no #EXT-X-ENDLIST) goes to hls.js where the browser has Media
  // Source Extensions: Chromium's own HLS player fails on a live playlist of two segments
  // (DEMUXER_ERROR_COULD_NOT_PARSE) without an error event the SDK could act on.
  const growing = !/^#EXT-X-ENDLIST/m.test(media.text);
  const native = hls !== true && typeof hls !== 'function' && !!video.canPlayType?.(HLS_MIME) && !(growing && mse && hls !== false);
  if (!native && hls === false) throw new RelaycastError('this browser has no native HLS player and hls.js is disabled');
  video.srcObject = null;
  let done = false;
  if (native) {
    try {
      playback.engine = 'native';
      await playback._native();
      done = true;
    } catch (err) {
      playback._release();
      // Some native players cannot seek in a playlist that is still growing: use hls.js then.
      if (!(err instanceof NotSeekable) || hls === false || !mse) {
        playback.destroy();
        throw err;
      }
    }
  }
  if (!done) {
    try {
      const Hls = typeof hls === 'function' ? hls : await loadHlsJs(client.baseUrl);
      playback.engine = 'hls.js';
      await playback._hlsjs(Hls, hlsConfig);
    } catch (err) {
      playback.destroy();
      throw err;
    }
  }
  video.play().catch(() => {});
  return playback;
}

/**
 * Play the live archive of `stream` (its low-latency playlist `/replay/{stream}/live.m3u8`) in
 * `video`, a second or two behind the publisher: fMP4 recordings through hls.js in its
 * low-latency mode (or the browser's own player without Media Source Extensions), WebM (VP8)
 * ones through Media Source Extensions part by part. For networks where WebRTC cannot pass.
 * The HlsPlayback's `latencyMs()` tells how far behind the publisher the picture is.
 */
export async function playLive(client, video, stream, { hls = 'auto', hlsConfig = {}, token } = {}) {
  if (!video || typeof video.play !== 'function') throw new TypeError('a <video> element is required');
  const url = withToken(joinUrl(client.baseUrl, `replay/${encodeURIComponent(stream)}/live.m3u8`), token ?? client.token);
  const archive = client.archive(stream, { token }).catch(() => null);
  const variants = parseVariants(await fetchPlaylist(url), url);
  const mediaUrl = variants[0]?.uri ?? url;
  const codecs = (await archive)?.codecs ?? null;
  const playback = new HlsPlayback(video, url);
  playback.mediaUrl = mediaUrl;
  playback.variants = variants;
  playback.codecs = codecs;
  video.srcObject = null;
  const webm = codecs ? codecs.split(',').some((c) => c.trim() === 'vp8') : false;
  try {
    if (webm) {
      playback.engine = 'mse';
      playback.mse = new MseWebmLive(video, mediaUrl, webmType(codecs), (err) => {
        if (!playback.destroyed) emit(playback, 'error', { error: err });
      });
      await playback.mse.start();
      playback._latency = () => playback.mse?.latencyMs() ?? null;
    } else {
      const mse = typeof MediaSource !== 'undefined' || typeof globalThis.ManagedMediaSource !== 'undefined';
      if (hls === false || (!mse && video.canPlayType?.(HLS_MIME))) {
        playback.engine = 'native';
        await playback._native();
      } else {
        const Hls = typeof hls === 'function' ? hls : await loadHlsJs(client.baseUrl);
        playback.engine = 'hls.js';
        await playback._hlsjs(Hls, { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5, startPosition: -1, ...hlsConfig });
        playback._latency = () => {
          const d = playback.hls?.playingDate;
          return d ? Date.now() - d.getTime() : null;
        };
      }
    }
  } catch (err) {
    playback.destroy();
    throw err;
  }
  video.play().catch(() => {});
  return playback;
}

