// Relaycast browser SDK: plays a recording whose segments are WebM (VP8 recordings) through Media
// Source Extensions, from the node's segment list (`vod.m3u8`): init segment, then media segments
// in order, following the list while the stream is live.

import { RelaycastError } from './errors.js';

/** Seconds of media fetched ahead of the playhead before the player waits. */
const AHEAD_SECONDS = 30;
/** Seconds of played media kept behind the playhead (older media is removed from the buffer). */
const BEHIND_SECONDS = 60;
/** Least and most time between two reloads of a live segment list, milliseconds. */
const RELOAD_MIN_MS = 500;
const RELOAD_MAX_MS = 4000;
/** How long a `sourceopen` or a segment fetch may take, milliseconds. */
const STEP_TIMEOUT_MS = 15000;

/** An EBML header starts every WebM init segment. */
const EBML_MAGIC = [0x1a, 0x45, 0xdf, 0xa3];

/**
 * The segments of an HLS media playlist: `{ segments: [{ uri, duration, start, map }], ended }`,
 * URIs resolved against `base`; `start` is the sum of the durations before it (seconds), gaps
 * (`#EXT-X-GAP` entries) included.
 */
export function parseSegmentList(text, base) {
  const segments = [];
  let map = null;
  let duration = null;
  let start = 0;
  let ended = false;
  let gap = false;
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line === '#EXT-X-GAP') {
      gap = true;
    } else if (line.startsWith('#EXT-X-MAP:')) {
      const m = /URI="([^"]*)"/.exec(line);
      if (m) map = new URL(m[1], base).href;
    } else if (line.startsWith('#EXTINF:')) {
      duration = Number.parseFloat(line.slice(8)) || 0;
    } else if (line === '#EXT-X-ENDLIST') {
      ended = true;
    } else if (!line.startsWith('#') && duration != null) {
      // A gap (a segment never stored) takes its time on the timeline and is not fetched.
      if (!gap) segments.push({ uri: new URL(line, base).href, duration, start, map });
      start += duration;
      duration = null;
      gap = false;
    }
  }
  return { segments, ended };
}

/** Whether `bytes` (an ArrayBuffer or view) begin with an EBML header. */
export function isWebm(bytes) {
  const b = new Uint8Array(bytes instanceof ArrayBuffer ? bytes : bytes.buffer, bytes.byteOffset ?? 0, Math.min(4, bytes.byteLength));
  return EBML_MAGIC.every((x, i) => b[i] === x);
}

/** The MSE type of a WebM recording with `codecs` (e.g. `vp8,opus`, or `opus` for a radio). */
export function webmType(codecs) {
  const list = String(codecs || 'vp8,opus').split(',').map((c) => c.trim()).filter(Boolean);
  const kind = list.some((c) => c === 'vp8' || c === 'vp9' || c.startsWith('vp0')) ? 'video' : 'audio';
  return `${kind}/webm; codecs="${list.join(',')}"`;
}

function timeout(ms, what) {
  let timer;
  const p = new Promise((_, reject) => { timer = setTimeout(() => reject(new RelaycastError(`${what} took longer than ${ms / 1000} s`)), ms); });
  return { p, cancel: () => clearTimeout(timer) };
}

async function fetchBytes(url, signal) {
  const t = timeout(STEP_TIMEOUT_MS, `GET ${url}`);
  try {
    const resp = await Promise.race([fetch(url, { signal }), t.p]);
    if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}`, { status: resp.status });
    return await Promise.race([resp.arrayBuffer(), t.p]);
  } finally {
    t.cancel();
  }
}

function append(sb, bytes) {
  return new Promise((resolve, reject) => {
    const done = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); resolve(); };
    const fail = () => { sb.removeEventListener('updateend', done); sb.removeEventListener('error', fail); reject(new RelaycastError('the browser refused a segment (SourceBuffer error)')); };
    sb.addEventListener('updateend', done);
    sb.addEventListener('error', fail);
    sb.appendBuffer(bytes);
  });
}

function remove(sb, from, to) {
  return new Promise((resolve) => {
    const done = () => { sb.removeEventListener('updateend', done); resolve(); };
    sb.addEventListener('updateend', done);
    try { sb.remove(from, to); } catch { done(); }
  });
}

/**
 * Opens a MediaSource on `video` with one SourceBuffer of `type`: `{ mediaSource, objectUrl,
 * sourceBuffer }`.
 */
async function openSource(video, type) {
  const mediaSource = new MediaSource();
  const opened = new Promise((resolve) => mediaSource.addEventListener('sourceopen', resolve, { once: true }));
  const objectUrl = URL.createObjectURL(mediaSource);
  video.src = objectUrl;
  const t = timeout(STEP_TIMEOUT_MS, 'opening the MediaSource');
  try {
    await Promise.race([opened, t.p]);
  } finally {
    t.cancel();
  }
  return { mediaSource, objectUrl, sourceBuffer: mediaSource.addSourceBuffer(type) };
}

/**
 * Feeds a recording's WebM segments to a `<video>` through a MediaSource: from the segment that
 * holds `startPosition` to the end of the list, reloading the list while it has no
 * `#EXT-X-ENDLIST`. `start()` resolves once the first segment is buffered and the element sits at
 * `startPosition`.
 */
export class MseWebmPlayer {
  /**
   * @param {HTMLVideoElement} video
   * @param {string} url absolute URL of the segment list (`vod.m3u8`)
   * @param {string} type MSE type (see `webmType`)
   * @param {(err: Error) => void} onError called once for a failure after `start()` resolved
   */
  constructor(video, url, type, onError) {
    this.video = video;
    this.url = url;
    this.type = type;
    this.onError = onError;
    this.abort = new AbortController();
    this.stopped = false;
    this.objectUrl = null;
    this.mediaSource = null;
    this.sourceBuffer = null;
    /** Index of the next segment to append. */
    this.next = 0;
    /** URI of the init segment appended last. */
    this.appendedMap = null;
    this.list = { segments: [], ended: false };
  }

  /** Open the MediaSource, append the first segments and seek to `startPosition` (seconds). */
  async start(list, startPosition) {
    if (typeof MediaSource === 'undefined' || !MediaSource.isTypeSupported(this.type)) {
      throw new RelaycastError(`this browser cannot play ${this.type} through Media Source Extensions`);
    }
    this.list = list;
    Object.assign(this, await openSource(this.video, this.type));
    const at = list.segments.findIndex((s) => s.start + s.duration > startPosition);
    this.next = at < 0 ? Math.max(0, list.segments.length - 1) : at;
    if (!list.segments.length) throw new RelaycastError('the recording has no segment yet');
    await this._appendNext();
    const buffered = this.sourceBuffer.buffered;
    const first = buffered.length ? buffered.start(0) : 0;
    this.video.currentTime = Math.max(startPosition, first);
    this._run().catch((err) => {
      if (!this.stopped) this.onError(err);
    });
  }

  async _appendNext() {
    const seg = this.list.segments[this.next];
    if (seg.map && seg.map !== this.appendedMap) {
      const init = await fetchBytes(seg.map, this.abort.signal);
      if (!isWebm(init)) throw new RelaycastError(`${seg.map} is not a WebM init segment`);
      await append(this.sourceBuffer, init);
      this.appendedMap = seg.map;
    }
    const bytes = await fetchBytes(seg.uri, this.abort.signal);
    if (this.stopped) return;
    await this._trim();
    await append(this.sourceBuffer, bytes);
    this.next += 1;
  }

  /** Drop media far behind the playhead so that a long replay holds a bounded buffer. */
  async _trim() {
    const behind = this.video.currentTime - BEHIND_SECONDS;
    const b = this.sourceBuffer.buffered;
    if (b.length && behind > b.start(0)) await remove(this.sourceBuffer, b.start(0), behind);
  }

  _bufferedAhead() {
    const b = this.sourceBuffer.buffered;
    return b.length ? b.end(b.length - 1) - this.video.currentTime : 0;
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.abort.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  async _reload() {
    const t = timeout(STEP_TIMEOUT_MS, `GET ${this.url}`);
    try {
      const resp = await Promise.race([fetch(this.url, { cache: 'no-store', signal: this.abort.signal }), t.p]);
      if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${this.url}`, { status: resp.status });
      this.list = parseSegmentList(await resp.text(), this.url);
    } finally {
      t.cancel();
    }
  }

  async _run() {
    let wait = RELOAD_MIN_MS;
    while (!this.stopped) {
      if (this.next < this.list.segments.length) {
        if (this._bufferedAhead() > AHEAD_SECONDS) {
          await this._sleep(1000);
          continue;
        }
        await this._appendNext();
        wait = RELOAD_MIN_MS;
      } else if (this.list.ended) {
        if (this.mediaSource.readyState === 'open' && !this.sourceBuffer.updating) this.mediaSource.endOfStream();
        return;
      } else {
        await this._sleep(wait);
        if (this.stopped) return;
        const before = this.list.segments.length;
        await this._reload();
        wait = this.list.segments.length > before ? RELOAD_MIN_MS : Math.min(RELOAD_MAX_MS, wait * 2);
      }
    }
  }

  /** Stop fetching and release the element. */
  destroy() {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }
}

/**
 * A low-latency HLS media playlist (RFC 8216bis): `{ segments: [{ msn, uri, duration, start,
 * parts }], open: { msn, parts }, map, ended }` where each part is `{ uri, duration,
 * independent }`, `start` is a segment's `EXT-X-PROGRAM-DATE-TIME` in ms (or null) and `open` is
 * the segment being written (its parts after the last complete segment). URIs resolved against
 * `base`.
 */
export function parseLowLatency(text, base) {
  let msn = Number(/^#EXT-X-MEDIA-SEQUENCE:(\d+)/m.exec(text)?.[1] ?? 0);
  const segments = [];
  let parts = [];
  let map = null;
  let duration = null;
  let start = null;
  let gap = false;
  const attr = (line, name) => new RegExp(`(?:[:,])${name}=("[^"]*"|[^,]*)`).exec(line)?.[1]?.replace(/^"|"$/g, '') ?? null;
  for (const raw of String(text).split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    if (line.startsWith('#EXT-X-PART:')) {
      parts.push({ uri: new URL(attr(line, 'URI'), base).href, duration: Number(attr(line, 'DURATION')) || 0, independent: attr(line, 'INDEPENDENT') === 'YES' });
    } else if (line.startsWith('#EXT-X-MAP:')) {
      map = new URL(attr(line, 'URI'), base).href;
    } else if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) {
      start = Date.parse(line.slice('#EXT-X-PROGRAM-DATE-TIME:'.length));
    } else if (line.startsWith('#EXTINF:')) {
      duration = Number.parseFloat(line.slice(8)) || 0;
    } else if (line === '#EXT-X-GAP') {
      gap = true;
    } else if (!line.startsWith('#') && duration != null) {
      segments.push({ msn, uri: gap ? null : new URL(line, base).href, duration, start: Number.isFinite(start) ? start : null, parts });
      msn += 1;
      parts = [];
      duration = null;
      start = null;
      gap = false;
    }
  }
  return { segments, open: { msn, parts }, map, ended: /^#EXT-X-ENDLIST/m.test(text) };
}

/** Seconds a live WebM player stays behind the newest media it has buffered. */
const LIVE_BEHIND_SECONDS = 1.0;
/** Behind by more than this, it jumps forward to `LIVE_BEHIND_SECONDS`. */
const LIVE_CATCH_UP_SECONDS = 1.8;

/**
 * Plays a WebM recording's low-latency live playlist (`live.m3u8` with parts) through Media
 * Source Extensions: from the newest part that starts with a keyframe, appending each part as a
 * blocking playlist reload (`_HLS_msn`, `_HLS_part`) announces it, about a second behind the
 * newest part. `latencyMs()` is how far the picture on screen is behind the publisher's capture
 * (from `EXT-X-PROGRAM-DATE-TIME`).
 */
export class MseWebmLive {
  constructor(video, url, type, onError) {
    this.video = video;
    this.url = url;
    this.type = type;
    this.onError = onError;
    this.abort = new AbortController();
    this.stopped = false;
    this.objectUrl = null;
    this.sourceBuffer = null;
    this.list = null;
    /** Next part to append: segment `msn`, part `part`. */
    this.msn = 0;
    this.part = 0;
    /** Wall-clock ms of media time 0 (publisher's capture clock), once known. */
    this.originWall = null;
    /** The segment the first part appended belongs to. */
    this.startMsn = null;
    this.mediaSource = null;
  }

  async _load(query = '') {
    const sep = this.url.includes('?') ? '&' : '?';
    const url = query ? `${this.url}${sep}${query}` : this.url;
    const t = timeout(STEP_TIMEOUT_MS, `GET ${url}`);
    try {
      const resp = await Promise.race([fetch(url, { cache: 'no-store', signal: this.abort.signal }), t.p]);
      if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}`, { status: resp.status });
      this.list = parseLowLatency(await resp.text(), this.url);
    } finally {
      t.cancel();
    }
  }

  /** The segment `msn` of the playlist: complete, or the one being written; null if not listed. */
  _segment(msn) {
    const s = this.list.segments.find((x) => x.msn === msn);
    if (s) return { ...s, complete: true };
    return this.list.open.msn === msn ? { msn, parts: this.list.open.parts, complete: false, uri: null } : null;
  }

  /** Open the MediaSource, append the init segment and the newest independent part. */
  async start() {
    if (typeof MediaSource === 'undefined' || !MediaSource.isTypeSupported(this.type)) {
      throw new RelaycastError(`this browser cannot play ${this.type} through Media Source Extensions`);
    }
    await this._load();
    if (!this.list.map) throw new RelaycastError('the live playlist names no init segment yet');
    // The newest segment with an independent part listed (its first part: its keyframe).
    const candidates = [...this.list.segments, { ...this.list.open, complete: false }].filter((s) => s.parts?.[0]?.independent);
    const from = candidates.at(-1);
    if (!from) throw new RelaycastError('the live playlist has no part to start from yet');
    this.msn = from.msn;
    this.part = 0;
    Object.assign(this, await openSource(this.video, this.type));
    const init = await fetchBytes(this.list.map, this.abort.signal);
    if (!isWebm(init)) throw new RelaycastError(`${this.list.map} is not a WebM init segment`);
    await append(this.sourceBuffer, init);
    await this._step();
    const b = this.sourceBuffer.buffered;
    if (b.length) this.video.currentTime = Math.max(b.start(0), b.end(b.length - 1) - LIVE_BEHIND_SECONDS);
    this._run().catch((err) => {
      if (!this.stopped) this.onError(err);
    });
  }

  /** Wall-clock time of media time 0, from a segment's program date-time and where it starts. */
  _learnOrigin() {
    if (this.originWall != null) return;
    const b = this.sourceBuffer.buffered;
    // The segment appended first: its program date-time, or its predecessor's plus duration.
    const segs = this.list.segments;
    const i = segs.findIndex((s) => s.msn === this.startMsn);
    let wall = i >= 0 ? segs[i].start : null;
    if (wall == null) {
      const prev = segs.find((s) => s.msn === this.startMsn - 1);
      if (prev?.start != null) wall = prev.start + prev.duration * 1000;
    }
    if (wall != null && b.length) this.originWall = wall - b.start(0) * 1000;
  }

  /** How far (ms) the frame on screen is behind its capture, when known. */
  latencyMs() {
    return this.originWall == null ? null : Date.now() - (this.originWall + this.video.currentTime * 1000);
  }

  /** Appends the next part or segment the playlist lists; false when it must wait for more. */
  async _step() {
    const seg = this._segment(this.msn);
    if (!seg) {
      const first = this.list.segments[0]?.msn ?? this.list.open.msn;
      // Fell out of the window: start again from the newest independent part.
      if (this.msn < first) throw new RelaycastError('the live playlist moved past the player');
      return false;
    }
    if (this.part < seg.parts.length) {
      const bytes = await fetchBytes(seg.parts[this.part].uri, this.abort.signal);
      if (this.stopped) return true;
      await append(this.sourceBuffer, bytes);
      if (this.startMsn == null) this.startMsn = this.msn;
      this.part += 1;
      return true;
    }
    if (seg.complete) {
      if (this.part === 0 && seg.uri) {
        // Its parts are no longer listed: the whole segment.
        const bytes = await fetchBytes(seg.uri, this.abort.signal);
        if (this.stopped) return true;
        await append(this.sourceBuffer, bytes);
        if (this.startMsn == null) this.startMsn = this.msn;
      }
      this.msn += 1;
      this.part = 0;
      return true;
    }
    return false;
  }

  async _run() {
    while (!this.stopped) {
      if (this.list.ended && !this._segment(this.msn)) {
        if (this.mediaSource.readyState === 'open' && !this.sourceBuffer.updating) this.mediaSource.endOfStream();
        return;
      }
      if (await this._step()) {
        this._learnOrigin();
        const b = this.sourceBuffer.buffered;
        const end = b.length ? b.end(b.length - 1) : 0;
        if (end - this.video.currentTime > LIVE_CATCH_UP_SECONDS) this.video.currentTime = end - LIVE_BEHIND_SECONDS;
        continue;
      }
      // Wait for the next part: the node answers once it is listed.
      await this._load(`_HLS_msn=${this.msn}&_HLS_part=${this.part}`);
    }
  }

  /** Stop fetching and release the element. */
  destroy() {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = null;
  }
}
