// Relaycast browser SDK: the connection state machine of a watch or publish session, without I/O.
//
// Inputs are events (an attempt answered or failed, the PeerConnection's state, a server event,
// a timer that fired, close); each input returns the actions the caller performs, in order:
//
//   { type: 'state', state, detail }        set the session state and emit `state`
//   { type: 'emit', event, detail }         emit an event (`reconnecting`, `reconnected`, `error`, `close`)
//   { type: 'connect', generation }         make a connection attempt (offer, POST, answer) tagged `generation`
//   { type: 'timer', name, ms }             (re)arm the timer `name`; when it fires call timeout(name)
//   { type: 'cancel', name }                disarm the timer `name`
//   { type: 'teardown' }                    drop the current connection (PeerConnection, events, DELETE the session)
//   { type: 'shutdown', sendDelete }        the session is over: release everything (DELETE if sendDelete)
//   { type: 'ready' } / { type: 'reject', error }   settle the promise of the first connection
//
// Time comes in only as timers firing; randomness (backoff jitter) is injected. No DOM, no
// RTCPeerConnection, no fetch: unit-tested in plain Node (tests/sdk/connection.test.mjs).

import { RelaycastError } from './errors.js';

/** First backoff step, ms. */
export const BACKOFF_BASE_MS = 500;
/** Largest backoff step, ms. */
export const BACKOFF_CAP_MS = 10000;
/** How long `disconnected` may last before the session reconnects, ms. */
export const DISCONNECT_GRACE_MS = 5000;
/** How long after the answer the PeerConnection may take to connect, ms. */
export const CONNECT_TIMEOUT_MS = 15000;
/** Largest `Retry-After` honoured, ms. */
export const MAX_RETRY_AFTER_MS = 60000;

/** Exponential backoff: 0.5 s doubling per attempt, capped at 10 s, with jitter (50–100 % of the step). */
export function backoffDelay(attempt, { base = BACKOFF_BASE_MS, cap = BACKOFF_CAP_MS, random = Math.random } = {}) {
  const step = Math.min(cap, base * 2 ** Math.max(0, attempt));
  return Math.round(step / 2 + random() * (step / 2));
}

/**
 * Whether a failed attempt of a `kind` ('watch' or 'publish') session is worth another try:
 * network errors and 5xx always; 404 for a viewer (the stream may start later); 409 for a
 * publisher after a drop (`initial` false: the server may still hold the previous publish).
 */
export function isRetryable(kind, error, { retry = true, initial = false } = {}) {
  if (!retry) return false;
  const status = error?.status;
  if (kind === 'watch' && status === 404) return true;
  if (kind === 'publish' && status === 409 && !initial) return true;
  return status === 0 || (typeof status === 'number' && status >= 500);
}

/** The reconnect state machine of one session (see the action list at the top of this module). */
export class ConnectionMachine {
  /**
   * @param {object} [options]
   * @param {'watch'|'publish'} [options.kind] which retry rules apply (default 'watch')
   * @param {boolean} [options.retry] reconnect with backoff (default true); false: fail on the first error
   * @param {() => number} [options.random] jitter source in [0, 1) (default Math.random)
   * @param {number} [options.backoffBase] first backoff step, ms
   * @param {number} [options.backoffCap] largest backoff step, ms
   * @param {number} [options.disconnectGraceMs] longest `disconnected` before reconnecting, ms
   * @param {number} [options.connectTimeoutMs] longest wait from answer to `connected`, ms
   */
  constructor({
    kind = 'watch', retry = true, random = Math.random, backoffBase = BACKOFF_BASE_MS, backoffCap = BACKOFF_CAP_MS,
    disconnectGraceMs = DISCONNECT_GRACE_MS, connectTimeoutMs = CONNECT_TIMEOUT_MS,
  } = {}) {
    /** 'watch' or 'publish'. */
    this.kind = kind;
    /** Whether failures are retried. */
    this.retry = retry;
    this.random = random;
    this.backoffBase = backoffBase;
    this.backoffCap = backoffCap;
    this.disconnectGraceMs = disconnectGraceMs;
    this.connectTimeoutMs = connectTimeoutMs;
    /** Public session state: new, connecting, connected, disconnected, reconnecting, failed, closed. */
    this.state = 'new';
    /** Internal phase: idle, attempt (offer in flight), answered, backoff, closed. */
    this.phase = 'idle';
    /** Tag of the current attempt; inputs with another tag are stale and ignored. */
    this.generation = 0;
    /** Backoff attempts since the last `connected`. */
    this.attempt = 0;
    /** Whether an answer was ever set (the first-connection promise has resolved). */
    this.answered = false;
    /** Last connectionState of the current PeerConnection. */
    this.peerState = 'new';
  }

  /** True while `generation` is the live attempt of an open session. */
  isCurrent(generation) {
    return generation === this.generation && this.phase !== 'closed';
  }

  /** True once the session is over. */
  get closed() {
    return this.phase === 'closed';
  }

  /** Begin the first connection attempt. */
  start() {
    if (this.phase !== 'idle') return [];
    return [...this._state('connecting'), ...this._attempt()];
  }

  /** The attempt `generation` got an answer and set it on its PeerConnection. */
  answer(generation) {
    if (!this.isCurrent(generation) || this.phase !== 'attempt') return [];
    this.phase = 'answered';
    const out = [];
    if (this.peerState !== 'connected') out.push({ type: 'timer', name: 'connect', ms: this.connectTimeoutMs });
    if (!this.answered) {
      this.answered = true;
      out.push({ type: 'ready' });
    } else {
      out.push({ type: 'emit', event: 'reconnected', detail: { attempt: this.attempt } });
    }
    return out;
  }

  /** The attempt `generation` failed with `error` (a RelaycastError: `status`, `retryAfter`). */
  attemptFailed(generation, error) {
    if (!this.isCurrent(generation) || this.phase !== 'attempt') return [];
    if (!isRetryable(this.kind, error, { retry: this.retry, initial: !this.answered })) return this._fail(error);
    return [{ type: 'teardown' }, ...this._backoff(error)];
  }

  /** The PeerConnection of attempt `generation` reports `connectionState`. */
  peer(generation, connectionState) {
    if (!this.isCurrent(generation) || (this.phase !== 'attempt' && this.phase !== 'answered')) return [];
    this.peerState = connectionState;
    switch (connectionState) {
      case 'connected':
        this.attempt = 0;
        return [{ type: 'cancel', name: 'disconnect' }, { type: 'cancel', name: 'connect' }, ...this._state('connected')];
      case 'failed':
        return this._reconnect(new RelaycastError('PeerConnection failed'));
      case 'disconnected':
        return [...this._state('disconnected'), { type: 'timer', name: 'disconnect', ms: this.disconnectGraceMs }];
      default:
        return [];
    }
  }

  /** A server event of attempt `generation`'s session: `ended` (on purpose: fail) or `closed` (reconnect). */
  serverEvent(generation, type, msg = {}) {
    if (!this.isCurrent(generation) || (this.phase !== 'attempt' && this.phase !== 'answered')) return [];
    if (type === 'ended') {
      // Ended on purpose (another publisher took the stream over, or an admin ended it): no reconnect.
      return this._fail(new RelaycastError(`session ended by the server: ${msg.reason ?? 'ended'}`, { status: 409 }));
    }
    if (type === 'closed') return this._reconnect(new RelaycastError('session closed by server'));
    return [];
  }

  /** The timer `name` fired. */
  timeout(name) {
    switch (name) {
      case 'retry':
        if (this.phase !== 'backoff') return [];
        return [...this._state('connecting'), ...this._attempt()];
      case 'connect':
        if (this.phase !== 'answered' || this.peerState === 'connected') return [];
        return this._reconnect(new RelaycastError(`no connection within ${this.connectTimeoutMs / 1000} s (state ${this.peerState})`));
      case 'disconnect':
        if ((this.phase !== 'answered' && this.phase !== 'attempt') || this.peerState === 'connected') return [];
        return this._reconnect(new RelaycastError(`PeerConnection disconnected for more than ${this.disconnectGraceMs / 1000} s`));
      default:
        return [];
    }
  }

  /** The application closes the session (DELETE, no reconnect). */
  close() {
    if (this.phase === 'closed') return [];
    const pending = !this.answered && this.phase !== 'idle';
    const out = this._shutdown('closed', true);
    if (pending) out.push({ type: 'reject', error: new RelaycastError('session closed') });
    return out;
  }

  _state(state, detail = {}) {
    if (this.state === state && !detail.error) return [];
    this.state = state;
    return [{ type: 'state', state, detail }];
  }

  _attempt() {
    this.generation++;
    this.phase = 'attempt';
    this.peerState = 'new';
    return [{ type: 'connect', generation: this.generation }];
  }

  _backoff(error) {
    let delay = backoffDelay(this.attempt++, { base: this.backoffBase, cap: this.backoffCap, random: this.random });
    if (error?.retryAfter != null) delay = Math.max(delay, Math.min(error.retryAfter, MAX_RETRY_AFTER_MS));
    this.phase = 'backoff';
    const detail = { error, delay, attempt: this.attempt };
    return [...this._state('reconnecting', detail), { type: 'emit', event: 'reconnecting', detail }, { type: 'timer', name: 'retry', ms: delay }];
  }

  _reconnect(reason) {
    if (this.phase === 'closed' || this.phase === 'backoff') return [];
    if (!this.retry) return this._fail(reason);
    // Results of the current attempt and events of its PeerConnection are stale from here on.
    this.generation++;
    return [{ type: 'cancel', name: 'connect' }, { type: 'cancel', name: 'disconnect' }, { type: 'teardown' }, ...this._backoff(reason)];
  }

  _fail(error) {
    const pending = !this.answered;
    const out = [{ type: 'emit', event: 'error', detail: { error } }, ...this._state('failed', { error }), ...this._shutdown(error?.message ?? 'failed', false)];
    if (pending) out.push({ type: 'reject', error });
    return out;
  }

  _shutdown(reason, sendDelete) {
    this.phase = 'closed';
    this.generation++;
    const out = [
      { type: 'cancel', name: 'retry' }, { type: 'cancel', name: 'connect' }, { type: 'cancel', name: 'disconnect' },
      { type: 'shutdown', sendDelete },
    ];
    if (this.state !== 'failed') out.push(...this._state('closed'));
    out.push({ type: 'emit', event: 'close', detail: { reason } });
    return out;
  }
}
