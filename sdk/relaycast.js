// Relaycast browser SDK: watch (WHEP) and publish (WHIP) live streams from a
// Relaycast SFU. Zero dependencies, plain ES module.
//
//   import { Relaycast } from '/sdk/relaycast.js';
//   const rc = new Relaycast('http://127.0.0.1:8080');
//   video.srcObject = await rc.watch('room');

/** Simulcast encodings sent by `publish()` when simulcast is on (low, mid, high). */
export const SIMULCAST_ENCODINGS = Object.freeze([
  Object.freeze({ rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 }),
  Object.freeze({ rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 }),
  Object.freeze({ rid: 'f', maxBitrate: 1_500_000 }),
]);

const GATHER_TIMEOUT_MS = 2000;
const ICE_SERVERS_TIMEOUT_MS = 3000;
const DISCONNECT_GRACE_MS = 5000;
const CONNECT_TIMEOUT_MS = 15000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const STATS_INTERVAL_MS = 1000;

/** Error raised by a session; `status` is the HTTP status, 0 for a network error, null otherwise. */
export class RelaycastError extends Error {
  constructor(message, { status = null, body = '', retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'RelaycastError';
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Exponential backoff: 0.5 s doubling per attempt, capped at 10 s, with jitter (50–100 % of the step). */
export function backoffDelay(attempt, { base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS, random = Math.random } = {}) {
  const step = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return Math.round(step / 2 + random() * (step / 2));
}

function splitLinkHeader(value) {
  // Split on commas that are outside <...> and outside quoted strings.
  const parts = [];
  let cur = '';
  let inAngle = false;
  let inQuote = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inQuote) {
      if (c === '\\' && i + 1 < value.length) { cur += c + value[++i]; continue; }
      if (c === '"') inQuote = false;
    } else if (c === '"') {
      inQuote = true;
    } else if (c === '<') {
      inAngle = true;
    } else if (c === '>') {
      inAngle = false;
    } else if (c === ',' && !inAngle) {
      if (cur.trim()) parts.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

/**
 * Parse `Link: <turn:...>; rel="ice-server"; username="..."; credential="..."` header values
 * into RTCIceServer objects. Accepts a single header value (possibly several comma-separated links)
 * or an array of values.
 */
export function parseIceServersFromLink(header) {
  if (!header) return [];
  const values = Array.isArray(header) ? header : [header];
  const servers = [];
  for (const value of values) {
    for (const link of splitLinkHeader(String(value))) {
      const m = /^<([^>]*)>(.*)$/s.exec(link);
      if (!m) continue;
      const url = m[1].trim();
      const params = {};
      const re = /;\s*([A-Za-z0-9_.*-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*)))?/g;
      let p;
      while ((p = re.exec(m[2])) !== null) {
        const key = p[1].toLowerCase();
        const val = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '').trim();
        params[key] = val;
      }
      const rels = (params.rel || '').toLowerCase().split(/\s+/);
      if (!rels.includes('ice-server')) continue;
      if (!/^(stuns?|turns?):/i.test(url)) continue;
      const server = { urls: url };
      if (params.username !== undefined) server.username = params.username;
      if (params.credential !== undefined) server.credential = params.credential;
      servers.push(server);
    }
  }
  return servers;
}

/** Extract the media ports and addresses of the `a=candidate` lines of an SDP. */
export function parseCandidates(sdp) {
  const out = [];
  for (const line of String(sdp).split(/\r?\n/)) {
    const m = /^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)/i.exec(line.trim());
    if (m) out.push({ foundation: m[1], component: +m[2], protocol: m[3].toLowerCase(), priority: +m[4], address: m[5], port: +m[6], type: m[7] });
  }
  return out;
}

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    let timer = null;
    const done = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', onChange);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve(complete);
    };
    const onChange = () => { if (pc.iceGatheringState === 'complete') done(true); };
    const onCandidate = (e) => { if (!e.candidate) done(true); };
    pc.addEventListener('icegatheringstatechange', onChange);
    pc.addEventListener('icecandidate', onCandidate);
    timer = setTimeout(() => done(false), timeoutMs);
  });
}

function sdpIceCredentials(sdp) {
  const ufrag = /^a=ice-ufrag:(.+)$/m.exec(sdp);
  const pwd = /^a=ice-pwd:(.+)$/m.exec(sdp);
  return { ufrag: ufrag ? ufrag[1].trim() : '', pwd: pwd ? pwd[1].trim() : '' };
}

/** Build an `application/trickle-ice-sdpfrag` body (RFC 8840) for the given candidates. */
export function buildSdpFragment(localSdp, candidates, endOfCandidates = false) {
  const { ufrag, pwd } = sdpIceCredentials(localSdp);
  const lines = [];
  if (ufrag) lines.push(`a=ice-ufrag:${ufrag}`);
  if (pwd) lines.push(`a=ice-pwd:${pwd}`);
  // Candidates are grouped per media section (mid); with BUNDLE all of them go to the first one.
  const mids = [];
  const sections = /^m=(\S+) .*$/gm;
  const mediaKinds = [];
  let sm;
  while ((sm = sections.exec(localSdp)) !== null) mediaKinds.push(sm[1]);
  const midRe = /^a=mid:(.+)$/gm;
  let mm;
  while ((mm = midRe.exec(localSdp)) !== null) mids.push(mm[1].trim());
  const byMid = new Map();
  for (const c of candidates) {
    const mid = c.sdpMid ?? mids[c.sdpMLineIndex ?? 0] ?? mids[0] ?? '0';
    if (!byMid.has(mid)) byMid.set(mid, []);
    byMid.get(mid).push(c.candidate);
  }
  if (endOfCandidates && byMid.size === 0 && mids.length) byMid.set(mids[0], []);
  for (const [mid, cands] of byMid) {
    const idx = Math.max(0, mids.indexOf(mid));
    lines.push(`m=${mediaKinds[idx] || 'audio'} 9 UDP/TLS/RTP/SAVPF 0`);
    lines.push(`a=mid:${mid}`);
    for (const cand of cands) lines.push(cand.startsWith('a=') ? cand : `a=${cand}`);
    if (endOfCandidates) lines.push('a=end-of-candidates');
  }
  return lines.join('\r\n') + '\r\n';
}

function parseRetryAfter(value) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : null;
}

function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

function joinUrl(base, path) {
  return new URL(path, base.endsWith('/') ? base : base + '/').toString();
}

/** `url` with `?token=` added (for requests that cannot carry an Authorization header). */
export function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/** Common machinery of watch (WHEP) and publish (WHIP) sessions. */
class Session extends EventTarget {
  constructor(client, kind, streamName, options) {
    super();
    /** @type {Relaycast} */
    this.client = client;
    this.kind = kind;
    this.streamName = streamName;
    this.options = { ...options };
    this.retry = options.retry !== false;
    this.pc = null;
    this.location = null;
    this.state = 'new';
    this.closed = false;
    this.attempt = 0;
    this.iceServers = options.iceServers ?? client.iceServers ?? null;
    /** Access token: sent as `Authorization: Bearer` (and `?token=` where headers cannot be set). */
    this.token = options.token ?? client.token ?? null;
    this.linkIceServers = [];
    this.lastStats = null;
    this._events = null;
    this._statsTimer = null;
    this._disconnectTimer = null;
    this._connectTimer = null;
    this._retryTimer = null;
    this._retryWake = null;
    this._generation = 0;
    this._prevStats = null;
    this._reconnecting = false;
    this._shut = false;
  }

  _setState(state, extra = {}) {
    if (this.state === state && !extra.error) return;
    this.state = state;
    emit(this, 'state', { state, ...extra });
  }

  _rtcConfig() {
    const config = { bundlePolicy: 'max-bundle' };
    const servers = this.iceServers ?? (this.linkIceServers.length ? this.linkIceServers : null);
    if (servers) config.iceServers = servers;
    const policy = this.options.iceTransportPolicy ?? this.client.iceTransportPolicy;
    if (policy) config.iceTransportPolicy = policy;
    return config;
  }

  // Build the PeerConnection for one attempt; implemented by subclasses.
  _createPeerConnection() { throw new Error('not implemented'); }
  _endpoint() { throw new Error('not implemented'); }
  _requestHeaders() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }
  _isRetryable(err, initial) {
    if (!this.retry) return false;
    if (err.status === 0 || err.status >= 500) return true;
    return false;
  }

  /**
   * Learn the endpoint's ICE servers with `OPTIONS` (RFC 9725 section 4.6) before the first
   * offer, so that a client that needs TURN gathers relay candidates on its first attempt.
   * Bounded; any failure leaves the servers to the answer's `Link` headers.
   */
  async _fetchIceServers() {
    if (this.iceServers || this.linkIceServers.length) return;
    try {
      const resp = await fetch(this._endpoint(), {
        method: 'OPTIONS',
        headers: this._requestHeaders(),
        signal: AbortSignal.timeout(ICE_SERVERS_TIMEOUT_MS),
      });
      const servers = resp.ok ? parseIceServersFromLink(resp.headers.get('Link')) : [];
      if (servers.length && !this.linkIceServers.length) {
        this.linkIceServers = servers;
        emit(this, 'iceservers', { iceServers: servers });
      }
    } catch { /* no OPTIONS support or unreachable: the POST reports what matters */ }
  }

  /** Start the first connection attempt, retrying retryable failures; resolves once an answer is set. */
  async _start() {
    this._setState('connecting');
    await this._fetchIceServers();
    for (;;) {
      if (this.closed) throw new RelaycastError('session closed');
      try {
        await this._connectOnce();
        return;
      } catch (err) {
        if (this.closed) throw new RelaycastError('session closed', { cause: err });
        const e = err instanceof RelaycastError ? err : new RelaycastError(String(err?.message ?? err), { cause: err });
        if (!this._isRetryable(e, true)) {
          this._fail(e);
          throw e;
        }
        await this._waitBackoff(e);
      }
    }
  }

  async _waitBackoff(err) {
    let delay = backoffDelay(this.attempt++);
    if (err && err.retryAfter != null) delay = Math.max(delay, Math.min(err.retryAfter, 60000));
    this._setState('reconnecting', { error: err, delay, attempt: this.attempt });
    emit(this, 'reconnecting', { error: err, delay, attempt: this.attempt });
    await new Promise((resolve) => {
      this._retryWake = resolve;
      this._retryTimer = setTimeout(resolve, delay);
    });
    this._retryWake = null;
    this._retryTimer = null;
  }

  async _connectOnce() {
    const gen = ++this._generation;
    this._teardownPeer();
    const pc = this._createPeerConnection();
    this.pc = pc;
    let posted = false;
    let patchChain = Promise.resolve();
    const trickle = (cands, end) => {
      patchChain = patchChain.then(() => this._patchCandidates(pc, cands, end)).catch(() => {});
    };
    pc.addEventListener('icecandidate', (e) => {
      if (gen !== this._generation) return;
      if (!posted) return; // Candidates gathered before the POST are part of the offer.
      if (e.candidate && e.candidate.candidate) trickle([e.candidate], false);
      else if (!e.candidate) trickle([], true);
    });
    pc.addEventListener('connectionstatechange', () => this._onConnectionState(pc, gen));

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (!this.options.trickle) await waitForIceGathering(pc, this.options.gatherTimeout ?? GATHER_TIMEOUT_MS);
    if (gen !== this._generation || this.closed) throw new RelaycastError('superseded');
    const sdp = pc.localDescription.sdp;

    let resp;
    const url = this._endpoint();
    try {
      resp = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', ...this._requestHeaders() },
        body: sdp,
      });
    } catch (err) {
      throw new RelaycastError(`network error contacting ${url}: ${err?.message ?? err}`, { status: 0, cause: err });
    }
    const body = await resp.text().catch(() => '');
    if (resp.status !== 201 && resp.status !== 200) {
      throw new RelaycastError(`${resp.status} ${resp.statusText || ''} from POST ${url}${body ? ': ' + body.trim() : ''}`.trim(), {
        status: resp.status, body, retryAfter: parseRetryAfter(resp.headers.get('Retry-After')),
      });
    }
    if (gen !== this._generation || this.closed) {
      // Superseded while the request was in flight: release the server-side session.
      const loc = resp.headers.get('Location');
      if (loc) fetch(new URL(loc, resp.url || url).toString(), { method: 'DELETE' }).catch(() => {});
      throw new RelaycastError('superseded');
    }
    const loc = resp.headers.get('Location');
    this.location = loc ? new URL(loc, resp.url || url).toString() : null;
    const linkServers = parseIceServersFromLink(resp.headers.get('Link'));
    if (linkServers.length) {
      this.linkIceServers = linkServers;
      emit(this, 'iceservers', { iceServers: linkServers });
      if (!this.iceServers) {
        try { pc.setConfiguration({ ...pc.getConfiguration(), iceServers: linkServers }); } catch { /* applied on the next attempt */ }
      }
    }
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (err) {
      if (this.location) fetch(this.location, { method: 'DELETE', headers: this._requestHeaders() }).catch(() => {});
      this.location = null;
      throw new RelaycastError(`the server's answer was rejected: ${err?.message ?? err}`, { cause: err });
    }
    if (gen !== this._generation || this.closed) throw new RelaycastError('superseded');
    this.answerSdp = body;
    // Candidates gathered after the offer left go out as trickle ICE (PATCH).
    const sentCount = (sdp.match(/^a=candidate:/gm) || []).length;
    const late = ((pc.localDescription?.sdp ?? sdp).match(/^a=candidate:.*$/gm) || []).slice(sentCount);
    posted = true;
    if (late.length && this.location) trickle(late.map((l) => ({ candidate: l.slice(2), sdpMLineIndex: 0 })), false);
    this._openEvents();
    this._startStats();
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (gen === this._generation && !this.closed && pc.connectionState !== 'connected') {
        this._scheduleReconnect(new RelaycastError(`no connection within ${CONNECT_TIMEOUT_MS / 1000} s (state ${pc.connectionState})`));
      }
    }, CONNECT_TIMEOUT_MS);
    this._onAnswered?.(pc);
  }

  async _patchCandidates(pc, candidates, end) {
    if (!this.location || pc !== this.pc || this.closed) return;
    const body = buildSdpFragment(pc.localDescription.sdp, candidates, end);
    await fetch(this.location, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', ...this._requestHeaders() },
      body,
    });
  }

  _onConnectionState(pc, gen) {
    if (gen !== this._generation || this.closed) return;
    const st = pc.connectionState;
    if (st === 'connected') {
      clearTimeout(this._disconnectTimer);
      clearTimeout(this._connectTimer);
      this._disconnectTimer = null;
      this.attempt = 0;
      this._setState('connected');
    } else if (st === 'failed') {
      this._scheduleReconnect(new RelaycastError('PeerConnection failed'));
    } else if (st === 'disconnected') {
      this._setState('disconnected');
      clearTimeout(this._disconnectTimer);
      this._disconnectTimer = setTimeout(() => {
        if (gen === this._generation && !this.closed && pc.connectionState !== 'connected') {
          this._scheduleReconnect(new RelaycastError(`PeerConnection disconnected for more than ${DISCONNECT_GRACE_MS / 1000} s`));
        }
      }, DISCONNECT_GRACE_MS);
    }
  }

  /** Tear the current connection down and reconnect with backoff (no-op when retry is off or closed). */
  _scheduleReconnect(reason) {
    if (this.closed || this._reconnecting) return;
    if (!this.retry) {
      this._fail(reason);
      return;
    }
    this._reconnecting = true;
    this._generation++;
    const oldLocation = this.location;
    this.location = null;
    this._closeEvents();
    this._stopTimers();
    this._teardownPeer();
    if (oldLocation) fetch(oldLocation, { method: 'DELETE', headers: this._requestHeaders() }).catch(() => {});
    (async () => {
      try {
        for (;;) {
          if (this.closed) return;
          await this._waitBackoff(reason);
          if (this.closed) return;
          try {
            this._setState('connecting');
            await this._connectOnce();
            emit(this, 'reconnected', { attempt: this.attempt });
            return;
          } catch (err) {
            if (this.closed) return;
            const e = err instanceof RelaycastError ? err : new RelaycastError(String(err?.message ?? err), { cause: err });
            if (e.message === 'superseded') return;
            if (!this._isRetryable(e, false)) {
              this._fail(e);
              return;
            }
            reason = e;
          }
        }
      } finally {
        this._reconnecting = false;
      }
    })();
  }

  _fail(error) {
    if (this.closed) return;
    emit(this, 'error', { error });
    this._setState('failed', { error });
    this._shutdown(error?.message ?? 'failed', false);
  }

  _openEvents() {
    this._closeEvents();
    if (!this.location || typeof EventSource === 'undefined') return;
    // EventSource cannot set headers: the token goes in the query.
    const es = new EventSource(withToken(`${this.location}/events`, this.token));
    this._events = es;
    es.onmessage = (ev) => {
      if (es !== this._events) return;
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg && typeof msg.type === 'string') this._onServerEvent(msg);
    };
    es.onerror = () => {
      // EventSource reconnects by itself on network errors; an HTTP error closes it for good.
    };
  }

  _closeEvents() {
    if (this._events) {
      this._events.close();
      this._events = null;
    }
  }

  _onServerEvent(msg) {
    emit(this, 'event', msg);
    switch (msg.type) {
      case 'viewers':
        this.viewers = msg.count;
        emit(this, 'viewers', { count: msg.count });
        break;
      case 'publisher':
        this.publisherLive = !!msg.live;
        emit(this, 'publisher', { live: !!msg.live });
        break;
      case 'segment':
        // A segment of the stream was archived (durable in the node's IPFS store).
        emit(this, 'segment', { seq: msg.seq, cid: msg.cid, duration: (msg.duration_ms ?? 0) / 1000, durationMs: msg.duration_ms ?? 0 });
        break;
      case 'ended':
        // Ended on purpose (another publisher took the stream over, or an admin ended it): no reconnect.
        this._fail(new RelaycastError(`session ended by the server: ${msg.reason ?? 'ended'}`, { status: 409 }));
        break;
      case 'closed':
        // The server ended this session; reconnect unless the session was closed locally.
        if (!this.closed) this._scheduleReconnect(new RelaycastError('session closed by server'));
        break;
      default:
        break;
    }
  }

  _startStats() {
    clearInterval(this._statsTimer);
    this._prevStats = null;
    this._statsTimer = setInterval(() => { this._collectStats().catch(() => {}); }, this.options.statsInterval ?? STATS_INTERVAL_MS);
  }

  async _collectStats() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    const report = await pc.getStats();
    if (pc !== this.pc || this.closed) return;
    const now = performance.now();
    const summary = this._summarize(report, this._prevStats, now);
    this._prevStats = { report, at: now };
    this.lastStats = summary;
    emit(this, 'stats', summary);
  }

  _stopTimers() {
    clearInterval(this._statsTimer);
    clearTimeout(this._disconnectTimer);
    clearTimeout(this._connectTimer);
    this._statsTimer = this._disconnectTimer = this._connectTimer = null;
  }

  _teardownPeer() {
    if (this.pc) {
      try { this.pc.close(); } catch { /* already closed */ }
      this.pc = null;
    }
  }

  _shutdown(reason, sendDelete) {
    if (this._shut) return Promise.resolve();
    this._shut = true;
    this.closed = true;
    this._generation++;
    if (this._retryWake) this._retryWake();
    clearTimeout(this._retryTimer);
    this._stopTimers();
    this._closeEvents();
    const loc = this.location;
    this.location = null;
    const del = sendDelete && loc
      ? fetch(loc, { method: 'DELETE', headers: this._requestHeaders() }).catch(() => {})
      : Promise.resolve();
    this._teardownPeer();
    // A failed session keeps the state 'failed'.
    if (this.state !== 'failed') this._setState('closed');
    emit(this, 'close', { reason });
    return del;
  }

  /** Sends DELETE to the session URL, closes the PeerConnection and emits `close`. */
  async close() {
    await this._shutdown('closed', true);
  }
}

function bytesDelta(cur, prev, field) {
  if (!prev || cur[field] == null || prev[field] == null) return null;
  return cur[field] - prev[field];
}

function rate(cur, prev, dtMs) {
  const d = bytesDelta(cur, prev, 'bytesReceived') ?? bytesDelta(cur, prev, 'bytesSent');
  if (d == null || dtMs <= 0) return 0;
  return Math.max(0, Math.round((d * 8 * 1000) / dtMs));
}

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
 * HLS playback of an archived stream in a `<video>` element, by the browser's own HLS player
 * (`engine: 'native'`) or hls.js (`engine: 'hls.js'`). Emits `error` for fatal playback errors.
 */
export class HlsPlayback extends EventTarget {
  constructor(video, url) {
    super();
    /** The `<video>` element played into. */
    this.video = video;
    /** Absolute URL of the playlist. */
    this.url = url;
    /** 'native' or 'hls.js'. */
    this.engine = null;
    /** The hls.js instance (engine 'hls.js'). */
    this.hls = null;
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

  /** Stop playback and release the `<video>` element (it keeps no source). */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this._release();
    emit(this, 'close', {});
  }

  _release() {
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

class NotSeekable extends RelaycastError {}

/** Whether the browser can play fMP4 with `codecs` natively or through Media Source Extensions. */
function canPlayCodecs(video, codecs) {
  const type = `video/mp4; codecs="${codecs}"`;
  const native = !!video.canPlayType?.(type);
  const mse = typeof MediaSource !== 'undefined' && typeof MediaSource.isTypeSupported === 'function' && MediaSource.isTypeSupported(type);
  return native || mse;
}

/**
 * Play the archive of `stream` (its HLS playlist `/replay/{stream}/vod.m3u8`) in `video`: from
 * `seconds` before the end of the playlist when given, else from its start. Native HLS when the
 * element can play it (and can seek there), else hls.js (see the `hls` option).
 */
async function playHls(client, video, stream, { seconds = null, hls = 'auto', hlsConfig = {}, token } = {}) {
  if (!video || typeof video.play !== 'function') throw new TypeError('a <video> element is required');
  const url = client.replayUrl(stream, { token });
  const archive = client.archive(stream, { token }).catch(() => null);
  let resp;
  try {
    resp = await fetch(url, { cache: 'no-store' });
  } catch (err) {
    throw new RelaycastError(`network error fetching ${url}: ${err?.message ?? err}`, { status: 0, cause: err });
  }
  const text = await resp.text().catch(() => '');
  if (!resp.ok) throw new RelaycastError(`${resp.status} from GET ${url}${text ? ': ' + text.trim() : ''}`, { status: resp.status, body: text });
  const codecs = (await archive)?.codecs;
  if (codecs && !canPlayCodecs(video, codecs)) {
    throw new RelaycastError(`this browser cannot play the archive's codecs (${codecs}) in fragmented MP4`);
  }
  const playback = new HlsPlayback(video, url);
  playback.codecs = codecs ?? null;
  playback.duration = playlistDuration(text);
  playback.startPosition = seconds == null ? 0 : Math.max(0, playback.duration - Number(seconds));
  const native = hls !== true && typeof hls !== 'function' && !!video.canPlayType?.(HLS_MIME);
  const mse = typeof MediaSource !== 'undefined' || typeof globalThis.ManagedMediaSource !== 'undefined';
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

  _isRetryable(err, initial) {
    if (!this.retry) return false;
    if (err.status === 404) return true; // The stream may start later.
    return super._isRetryable(err, initial);
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
    let resp;
    try {
      resp = await fetch(`${this.location}/layer`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
    } catch (err) {
      throw new RelaycastError(`network error setting layer: ${err?.message ?? err}`, { status: 0, cause: err });
    }
    if (!resp.ok) {
      const text = await resp.text().catch(() => '');
      throw new RelaycastError(`${resp.status} from POST ${this.location}/layer${text ? ': ' + text.trim() : ''}`, { status: resp.status, body: text });
    }
  }
}

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
    this._hasConnected = false;
  }

  _isRetryable(err, initial) {
    if (!this.retry) return false;
    // After a drop the server may not have released the previous publication yet.
    if (err.status === 409 && !initial) return true;
    return super._isRetryable(err, initial);
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
   * URL of the HLS playlist of every archived segment of `stream` (`/replay/{stream}/vod.m3u8`),
   * with `?token=` when a token is given (option or client default): players cannot set headers.
   */
  replayUrl(stream, options = {}) {
    return withToken(joinUrl(this.baseUrl, `replay/${encodeURIComponent(stream)}/vod.m3u8`), options.token ?? this.token);
  }

  /** Play the archive of `stream` in `video` from `seconds` (default 30) before its end; resolves with the HlsPlayback. */
  replay(stream, video, options = {}) {
    const opts = typeof options === 'number' ? { seconds: options } : options;
    return playHls(this, video, stream, { ...opts, seconds: opts.seconds ?? 30 });
  }

  /** Play the recording of `stream` in `video` from its start (a finished VOD, or a live one so far). */
  vod(stream, video, options = {}) {
    return playHls(this, video, stream, { ...options, seconds: null });
  }

  /** Close every session (DELETE, PeerConnection close) and emit `close`. */
  async close() {
    const all = [...this.sessions];
    await Promise.all(all.map((s) => s.close()));
    this.dispatchEvent(new CustomEvent('close', { detail: { reason: 'closed', session: null } }));
  }
}

export default Relaycast;
