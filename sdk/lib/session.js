// Relaycast browser SDK: what watch and publish sessions share. A thin driver around the
// ConnectionMachine (connection.js): it performs the machine's actions with RTCPeerConnection,
// fetch (signaling.js), EventSource and timers, and feeds their outcomes back in.

import { RelaycastError, asRelaycastError } from './errors.js';
import { ConnectionMachine } from './connection.js';
import {
  authHeaders, buildSdpFragment, deleteSession, fetchIceServers, patchCandidates, postOffer, withToken,
} from './signaling.js';

/** Longest wait for ICE gathering before the offer is sent, ms (option `gatherTimeout`). */
export const GATHER_TIMEOUT_MS = 2000;
/** Interval of `stats` events, ms (option `statsInterval`). */
export const STATS_INTERVAL_MS = 1000;

/** Dispatch a CustomEvent `type` with `detail` on `target`. */
export function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
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

function bytesDelta(cur, prev, field) {
  if (!prev || cur[field] == null || prev[field] == null) return null;
  return cur[field] - prev[field];
}

/** Bits per second between two RTP stats samples `dtMs` apart (received, else sent bytes). */
export function rate(cur, prev, dtMs) {
  const d = bytesDelta(cur, prev, 'bytesReceived') ?? bytesDelta(cur, prev, 'bytesSent');
  if (d == null || dtMs <= 0) return 0;
  return Math.max(0, Math.round((d * 8 * 1000) / dtMs));
}

/** Common machinery of watch (WHEP) and publish (WHIP) sessions. */
export class Session extends EventTarget {
  constructor(client, kind, streamName, options) {
    super();
    /** @type {import('../relaycast.js').Relaycast} */
    this.client = client;
    this.kind = kind;
    this.streamName = streamName;
    this.options = { ...options };
    this.retry = options.retry !== false;
    this.pc = null;
    this.location = null;
    this.state = 'new';
    this.iceServers = options.iceServers ?? client.iceServers ?? null;
    /** Access token: sent as `Authorization: Bearer` (and `?token=` where headers cannot be set). */
    this.token = options.token ?? client.token ?? null;
    this.linkIceServers = [];
    this.lastStats = null;
    /** The reconnect state machine; this class performs its actions. */
    this.machine = new ConnectionMachine({ kind, retry: this.retry });
    this._events = null;
    this._eventsGeneration = 0;
    this._statsTimer = null;
    this._timers = new Map();
    this._prevStats = null;
    this._iceServersFetched = false;
    this._queue = [];
    this._running = false;
    this._ready = null;
  }

  /** True once closed. */
  get closed() {
    return this.machine.closed;
  }

  /** Backoff attempts since the last `connected`. */
  get attempt() {
    return this.machine.attempt;
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
    return authHeaders(this.token);
  }

  /** Start the first connection attempt (retrying retryable failures); resolves once an answer is set. */
  _start() {
    if (!this._ready) {
      this._ready = new Promise((resolve, reject) => { this._settle = { resolve, reject }; });
      this._run(this.machine.start());
    }
    return this._ready;
  }

  /** Perform the machine's actions in order (actions produced while running are queued behind). */
  _run(actions) {
    this._queue.push(...actions);
    if (this._running) return;
    this._running = true;
    try {
      while (this._queue.length) this._perform(this._queue.shift());
    } finally {
      this._running = false;
    }
  }

  _perform(a) {
    switch (a.type) {
      case 'state':
        this.state = a.state;
        emit(this, 'state', { state: a.state, ...a.detail });
        break;
      case 'emit':
        emit(this, a.event, a.detail);
        break;
      case 'connect':
        this._connectOnce(a.generation).then(
          () => this._run(this.machine.answer(a.generation)),
          (err) => this._run(this.machine.attemptFailed(a.generation, asRelaycastError(err))),
        );
        break;
      case 'timer':
        clearTimeout(this._timers.get(a.name));
        this._timers.set(a.name, setTimeout(() => {
          this._timers.delete(a.name);
          this._run(this.machine.timeout(a.name));
        }, a.ms));
        break;
      case 'cancel':
        clearTimeout(this._timers.get(a.name));
        this._timers.delete(a.name);
        break;
      case 'teardown':
        this._teardown(true);
        break;
      case 'shutdown':
        this._shutdownIo(a.sendDelete);
        break;
      case 'ready':
        this._settle?.resolve();
        break;
      case 'reject':
        this._settle?.reject(a.error);
        break;
      default:
        break;
    }
  }

  async _connectOnce(gen) {
    const m = this.machine;
    if (!this._iceServersFetched) {
      // Learn the ICE servers before the first offer, so that a client that needs TURN gathers
      // relay candidates on its first attempt; any failure leaves them to the answer's `Link`.
      this._iceServersFetched = true;
      if (!this.iceServers && !this.linkIceServers.length) {
        const servers = await fetchIceServers(this._endpoint(), { headers: this._requestHeaders() });
        if (servers.length && !this.linkIceServers.length) {
          this.linkIceServers = servers;
          emit(this, 'iceservers', { iceServers: servers });
        }
      }
    }
    if (!m.isCurrent(gen)) throw new RelaycastError('superseded');
    this._teardownPeer();
    const pc = this._createPeerConnection();
    this.pc = pc;
    let posted = false;
    let patchChain = Promise.resolve();
    const trickle = (cands, end) => {
      patchChain = patchChain.then(() => this._patchCandidates(pc, cands, end)).catch(() => {});
    };
    pc.addEventListener('icecandidate', (e) => {
      if (!m.isCurrent(gen)) return;
      if (!posted) return; // Candidates gathered before the POST are part of the offer.
      if (e.candidate && e.candidate.candidate) trickle([e.candidate], false);
      else if (!e.candidate) trickle([], true);
    });
    pc.addEventListener('connectionstatechange', () => this._run(m.peer(gen, pc.connectionState)));

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (!this.options.trickle) await waitForIceGathering(pc, this.options.gatherTimeout ?? GATHER_TIMEOUT_MS);
    if (!m.isCurrent(gen)) throw new RelaycastError('superseded');
    const sdp = pc.localDescription.sdp;

    const { answer, location, iceServers } = await postOffer(this._endpoint(), sdp, { headers: this._requestHeaders() });
    if (!m.isCurrent(gen)) {
      // Superseded while the request was in flight: release the server-side session.
      if (location) deleteSession(location, { headers: this._requestHeaders() });
      throw new RelaycastError('superseded');
    }
    this.location = location;
    if (iceServers.length) {
      this.linkIceServers = iceServers;
      emit(this, 'iceservers', { iceServers });
      if (!this.iceServers) {
        try { pc.setConfiguration({ ...pc.getConfiguration(), iceServers }); } catch { /* applied on the next attempt */ }
      }
    }
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (err) {
      if (this.location) deleteSession(this.location, { headers: this._requestHeaders() });
      this.location = null;
      throw new RelaycastError(`the server's answer was rejected: ${err?.message ?? err}`, { cause: err });
    }
    if (!m.isCurrent(gen)) throw new RelaycastError('superseded');
    this.answerSdp = answer;
    // Candidates gathered after the offer left go out as trickle ICE (PATCH).
    const sentCount = (sdp.match(/^a=candidate:/gm) || []).length;
    const late = ((pc.localDescription?.sdp ?? sdp).match(/^a=candidate:.*$/gm) || []).slice(sentCount);
    posted = true;
    if (late.length && this.location) trickle(late.map((l) => ({ candidate: l.slice(2), sdpMLineIndex: 0 })), false);
    this._openEvents(gen);
    this._startStats();
    this._onAnswered?.(pc);
  }

  async _patchCandidates(pc, candidates, end) {
    if (!this.location || pc !== this.pc || this.closed) return;
    const body = buildSdpFragment(pc.localDescription.sdp, candidates, end);
    await patchCandidates(this.location, body, { headers: this._requestHeaders() });
  }

  _openEvents(gen) {
    this._closeEvents();
    if (!this.location || typeof EventSource === 'undefined') return;
    // EventSource cannot set headers: the token goes in the query.
    const es = new EventSource(withToken(`${this.location}/events`, this.token));
    this._events = es;
    this._eventsGeneration = gen;
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
      case 'closed':
        this._run(this.machine.serverEvent(this._eventsGeneration, msg.type, msg));
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

  _teardownPeer() {
    if (this.pc) {
      try { this.pc.close(); } catch { /* already closed */ }
      this.pc = null;
    }
  }

  /** Drop the current connection: events, stats, PeerConnection, and the server session (DELETE). */
  _teardown(sendDelete) {
    clearInterval(this._statsTimer);
    this._statsTimer = null;
    this._closeEvents();
    const loc = this.location;
    this.location = null;
    const del = sendDelete && loc ? deleteSession(loc, { headers: this._requestHeaders() }) : Promise.resolve();
    this._teardownPeer();
    return del;
  }

  _shutdownIo(sendDelete) {
    for (const t of this._timers.values()) clearTimeout(t);
    this._timers.clear();
    this._deleted = this._teardown(sendDelete);
  }

  /** Sends DELETE to the session URL, closes the PeerConnection and emits `close`. */
  async close() {
    this._run(this.machine.close());
    await this._deleted;
  }
}
