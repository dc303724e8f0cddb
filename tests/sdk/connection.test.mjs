// The SDK's reconnect state machine (sdk/lib/connection.js) in plain Node: no browser, no
// sockets. A fake clock performs the machine's timer actions; every other action is recorded.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionMachine, backoffDelay, isRetryable, MAX_RETRY_AFTER_MS } from '../../sdk/lib/connection.js';
import { RelaycastError } from '../../sdk/lib/errors.js';

/** Drives a ConnectionMachine: timers on a fake clock, the other actions kept in `log`. */
class Driver {
  constructor(options = {}) {
    this.m = new ConnectionMachine({ random: () => 0.5, ...options });
    this.now = 0;
    this.timers = new Map(); // name -> deadline
    this.log = [];
    this.settled = null;
  }

  /** Feed one input's actions. */
  run(actions) {
    for (const a of actions) {
      if (a.type === 'timer') this.timers.set(a.name, this.now + a.ms);
      else if (a.type === 'cancel') this.timers.delete(a.name);
      else if (a.type === 'ready') this.settled = { ok: true };
      else if (a.type === 'reject') this.settled = { ok: false, error: a.error };
      this.log.push(a);
    }
    return actions;
  }

  /** Advance the clock by `ms`, firing due timers in deadline order. */
  advance(ms) {
    const until = this.now + ms;
    for (let guard = 0; guard < 1000; guard++) {
      const due = [...this.timers].filter(([, at]) => at <= until).sort((a, b) => a[1] - b[1])[0];
      if (!due) break;
      const [name, at] = due;
      this.timers.delete(name);
      this.now = at;
      this.run(this.m.timeout(name));
    }
    this.now = until;
  }

  /** Actions of `type` logged since index `from`. */
  since(from, type) {
    return this.log.slice(from).filter((a) => a.type === type);
  }

  states(from = 0) {
    return this.since(from, 'state').map((a) => a.state);
  }

  events(from = 0) {
    return this.since(from, 'emit').map((a) => a.event);
  }

  /** The generation of the last `connect` action. */
  lastConnect() {
    const c = this.since(0, 'connect');
    return c.length ? c[c.length - 1].generation : null;
  }

  /** Start and complete the first connection: answer, then `connected`. */
  connect() {
    this.run(this.m.start());
    const gen = this.lastConnect();
    this.run(this.m.answer(gen));
    this.run(this.m.peer(gen, 'connecting'));
    this.run(this.m.peer(gen, 'connected'));
    return gen;
  }
}

const httpError = (status, extra = {}) => new RelaycastError(`${status}`, { status, ...extra });

test('backoff: 0.5 s doubling, capped at 10 s, jitter between half and all of the step', () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 250);
  assert.equal(backoffDelay(0, { random: () => 1 }), 500);
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => backoffDelay(n, { random: () => 1 })), [500, 1000, 2000, 4000, 8000]);
  assert.equal(backoffDelay(5, { random: () => 1 }), 10000, 'capped');
  assert.equal(backoffDelay(5000, { random: () => 0 }), 5000, 'a huge attempt count stays at the cap');
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3);
    assert.ok(d >= 2000 && d <= 4000, `jittered delay ${d} within [2000, 4000]`);
  }
});

test('retry rules by kind and status', () => {
  assert.equal(isRetryable('watch', httpError(404)), true, 'a stream that is not live yet');
  assert.equal(isRetryable('publish', httpError(404)), false);
  assert.equal(isRetryable('publish', httpError(409), { initial: true }), false, 'a stream taken by someone else');
  assert.equal(isRetryable('publish', httpError(409), { initial: false }), true, 'our own publish not yet released');
  for (const s of [0, 500, 502, 503]) assert.equal(isRetryable('watch', httpError(s)), true, `status ${s}`);
  for (const s of [400, 401, 403, 413, null]) assert.equal(isRetryable('watch', httpError(s)), false, `status ${s}`);
  assert.equal(isRetryable('watch', httpError(503), { retry: false }), false);
});

test('a stream that is not live yet: retries with growing delays, then resolves on the answer', () => {
  const d = new Driver({ kind: 'watch' });
  d.run(d.m.start());
  assert.deepEqual(d.states(), ['connecting']);
  const delays = [];
  for (let i = 0; i < 4; i++) {
    const gen = d.lastConnect();
    const before = d.log.length;
    d.run(d.m.attemptFailed(gen, httpError(404)));
    const rec = d.since(before, 'emit').find((a) => a.event === 'reconnecting');
    assert.ok(rec, 'reconnecting emitted');
    assert.equal(rec.detail.attempt, i + 1);
    delays.push(rec.detail.delay);
    assert.equal(d.m.state, 'reconnecting');
    // Nothing happens before the delay is over.
    d.advance(rec.detail.delay - 1);
    assert.equal(d.lastConnect(), gen, 'no new attempt before the backoff ends');
    d.advance(1);
    assert.equal(d.lastConnect(), gen + 1, 'a new attempt when the backoff ends');
    assert.equal(d.m.state, 'connecting');
  }
  assert.deepEqual(delays, [375, 750, 1500, 3000]);
  assert.equal(d.settled, null, 'the first-connection promise is still pending');
  const gen = d.lastConnect();
  d.run(d.m.answer(gen));
  assert.deepEqual(d.settled, { ok: true });
  assert.ok(d.timers.has('connect'), 'a connect timeout runs until the PeerConnection connects');
  d.run(d.m.peer(gen, 'connected'));
  assert.equal(d.m.state, 'connected');
  assert.equal(d.m.attempt, 0, 'connected resets the backoff');
  assert.equal(d.timers.size, 0, 'no timer left once connected');
  assert.ok(!d.events().includes('reconnected'), 'the first connection is not a reconnect');
});

test('Retry-After stretches the delay, up to a minute', () => {
  const d = new Driver({ kind: 'publish' });
  d.run(d.m.start());
  d.run(d.m.attemptFailed(d.lastConnect(), httpError(503, { retryAfter: 4000 })));
  assert.equal(d.timers.get('retry'), 4000);
  d.advance(4000);
  d.run(d.m.attemptFailed(d.lastConnect(), httpError(503, { retryAfter: 10 * MAX_RETRY_AFTER_MS })));
  assert.equal(d.timers.get('retry') - d.now, MAX_RETRY_AFTER_MS);
});

test('giving up: a refused token fails the session at once, rejects the start and stops everything', () => {
  const d = new Driver({ kind: 'watch' });
  d.run(d.m.start());
  const gen = d.lastConnect();
  const err = httpError(401);
  d.run(d.m.attemptFailed(gen, err));
  assert.deepEqual(d.events(), ['error', 'close']);
  assert.deepEqual(d.states(), ['connecting', 'failed']);
  assert.equal(d.m.state, 'failed', 'a failed session stays failed, not closed');
  assert.equal(d.settled.ok, false);
  assert.equal(d.settled.error, err);
  assert.deepEqual(d.since(0, 'shutdown'), [{ type: 'shutdown', sendDelete: false }]);
  assert.equal(d.timers.size, 0);
  // The session is over: nothing revives it.
  const n = d.log.length;
  d.run(d.m.peer(gen, 'connected'));
  d.run(d.m.timeout('retry'));
  d.run(d.m.serverEvent(gen, 'closed'));
  assert.equal(d.log.length, n);
  assert.deepEqual(d.m.close(), []);
});

test('publish: 409 on the first attempt fails, 409 after a drop is retried', () => {
  const first = new Driver({ kind: 'publish' });
  first.run(first.m.start());
  first.run(first.m.attemptFailed(first.lastConnect(), httpError(409)));
  assert.equal(first.m.state, 'failed');

  const d = new Driver({ kind: 'publish' });
  const gen = d.connect();
  d.run(d.m.peer(gen, 'failed'));
  d.advance(d.timers.get('retry') - d.now);
  d.run(d.m.attemptFailed(d.lastConnect(), httpError(409)));
  assert.equal(d.m.state, 'reconnecting', 'the previous publish may still be held by the server');
  assert.ok(d.timers.has('retry'));
});

test('ICE failure after connecting: tear down, back off, reconnect; the old attempt is stale', () => {
  const d = new Driver({ kind: 'watch' });
  const gen = d.connect();
  const mark = d.log.length;
  d.run(d.m.peer(gen, 'failed'));
  assert.equal(d.since(mark, 'teardown').length, 1, 'the failed PeerConnection and its session are dropped');
  assert.deepEqual(d.events(mark), ['reconnecting']);
  assert.equal(d.since(mark, 'emit')[0].detail.error.message, 'PeerConnection failed');
  // A second failure report during the backoff does not schedule a second retry.
  assert.deepEqual(d.m.peer(gen, 'failed'), []);
  d.advance(375);
  const next = d.lastConnect();
  assert.ok(next > gen);
  // Late events of the old PeerConnection change nothing.
  assert.deepEqual(d.m.peer(gen, 'connected'), []);
  assert.deepEqual(d.m.answer(gen), []);
  d.run(d.m.answer(next));
  assert.ok(d.events(mark).includes('reconnected'));
  assert.equal(d.since(mark, 'ready').length, 0, 'the first-connection promise settles once only');
  d.run(d.m.peer(next, 'connected'));
  assert.equal(d.m.state, 'connected');
  // The backoff starts over after a success.
  d.run(d.m.peer(next, 'failed'));
  assert.equal(d.timers.get('retry') - d.now, 375);
});

test('disconnected: a short blip is waited out, a long one reconnects after the grace period', () => {
  const d = new Driver({ kind: 'watch', disconnectGraceMs: 5000 });
  const gen = d.connect();
  d.run(d.m.peer(gen, 'disconnected'));
  assert.equal(d.m.state, 'disconnected');
  d.advance(4000);
  d.run(d.m.peer(gen, 'connected'));
  d.advance(10000);
  assert.equal(d.m.state, 'connected', 'a blip shorter than the grace period is not a reconnect');
  assert.equal(d.lastConnect(), gen);

  d.run(d.m.peer(gen, 'disconnected'));
  d.advance(4999);
  assert.equal(d.m.state, 'disconnected');
  d.advance(1);
  assert.equal(d.m.state, 'reconnecting');
  assert.match(d.log.filter((a) => a.event === 'reconnecting').pop().detail.error.message, /disconnected for more than 5 s/);
});

test('an answer without a connection within the timeout reconnects', () => {
  const d = new Driver({ kind: 'watch', connectTimeoutMs: 15000 });
  d.run(d.m.start());
  const gen = d.lastConnect();
  d.run(d.m.answer(gen));
  d.run(d.m.peer(gen, 'connecting'));
  d.advance(14999);
  assert.equal(d.m.state, 'connecting');
  d.advance(1);
  assert.equal(d.m.state, 'reconnecting');
  assert.match(d.log.filter((a) => a.event === 'reconnecting').pop().detail.error.message, /no connection within 15 s \(state connecting\)/);
});

test('server events: closed reconnects, ended (takeover, admin) fails without retry', () => {
  const d = new Driver({ kind: 'watch' });
  const gen = d.connect();
  d.run(d.m.serverEvent(gen, 'closed'));
  assert.equal(d.m.state, 'reconnecting');
  d.advance(d.timers.get('retry'));
  const next = d.lastConnect();
  d.run(d.m.answer(next));
  d.run(d.m.peer(next, 'connected'));
  const mark = d.log.length;
  d.run(d.m.serverEvent(next, 'ended', { reason: 'taken over' }));
  assert.equal(d.m.state, 'failed');
  const err = d.since(mark, 'emit').find((a) => a.event === 'error').detail.error;
  assert.equal(err.status, 409);
  assert.match(err.message, /taken over/);
  assert.equal(d.timers.size, 0);
  assert.equal(d.settled.ok, true, 'the start promise had resolved and is not rejected later');
});

test('retry: false fails on the first error, at start or after a drop', () => {
  const a = new Driver({ kind: 'watch', retry: false });
  a.run(a.m.start());
  a.run(a.m.attemptFailed(a.lastConnect(), httpError(503)));
  assert.equal(a.m.state, 'failed');
  assert.equal(a.settled.ok, false);

  const b = new Driver({ kind: 'watch', retry: false });
  const gen = b.connect();
  b.run(b.m.peer(gen, 'failed'));
  assert.equal(b.m.state, 'failed');
  assert.equal(b.since(0, 'connect').length, 1, 'no second attempt');
});

test('close during a backoff: DELETE, no more attempts, the pending start rejects', () => {
  const d = new Driver({ kind: 'watch' });
  d.run(d.m.start());
  d.run(d.m.attemptFailed(d.lastConnect(), httpError(0)));
  assert.ok(d.timers.has('retry'));
  d.run(d.m.close());
  assert.equal(d.m.state, 'closed');
  assert.deepEqual(d.since(0, 'shutdown'), [{ type: 'shutdown', sendDelete: true }]);
  assert.equal(d.timers.size, 0, 'the retry timer is cancelled');
  assert.equal(d.settled.ok, false);
  assert.match(d.settled.error.message, /session closed/);
  assert.equal(d.events().at(-1), 'close');
  const attempts = d.since(0, 'connect').length;
  d.run(d.m.timeout('retry'));
  assert.equal(d.since(0, 'connect').length, attempts, 'a late timer starts nothing');
});

test('close after connecting: closed (not failed), the start promise stays resolved', () => {
  const d = new Driver({ kind: 'publish' });
  d.connect();
  d.run(d.m.close());
  assert.equal(d.m.state, 'closed');
  assert.deepEqual(d.settled, { ok: true });
  assert.deepEqual(d.m.close(), [], 'closing twice does nothing');
});
