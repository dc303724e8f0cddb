// End-to-end: a panic in a media worker harms only the session that caused it. The node runs one
// media worker with the debug-build fault hook on (RELAYCAST_FAULT_INJECTION=1: a session of the
// stream `fault-injection-panic` panics the worker). Chromium publishes `live` and two Chromium
// viewers watch it on that worker; then a second publisher starts the faulty stream. The panic is
// counted in /metrics, both viewers keep decoding, and the node still takes a new viewer.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-publish-token';

async function publish(h, server, stream, { wait = true } = {}) {
  const pub = await h.browser(`publisher-${stream}`);
  const page = await pub.page();
  h.onFailure(`publisher ${stream} status`, () => page.textContent('#status'));
  await page.goto(server.url(`/streamer.html?stream=${stream}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
  if (wait) {
    await page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => (await server.streamInfo(stream))?.live, { timeout: 30000, interval: 500, what: `${stream} live` });
  }
  return page;
}

async function panics(server) {
  const text = await (await server.fetch('/metrics')).text();
  const m = /^relaycast_worker_panics_total (\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

async function decoded(page) {
  return (await viewerStats(page))?.framesDecoded ?? 0;
}

test('a worker panic drops only the session that caused it', { timeout: 180000 }, async () => {
  const h = new Harness('worker-panic');
  process.env.RELAYCAST_FAULT_INJECTION = '1';
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--workers', '1', '--no-turn', '--no-archive'] });
      h.onFailure('node log', () => server.logs(80));
      assert.equal(await panics(server), 0, 'no panics at start');
      await publish(h, server, 'live');

      const view = await h.browser('viewers');
      const viewers = [];
      for (const name of ['a', 'b']) {
        const page = await view.context.newPage();
        h.onFailure(`viewer ${name}`, () => viewerStats(page));
        await page.goto(server.url('/viewer.html?stream=live'), { waitUntil: 'domcontentloaded' });
        viewers.push(page);
      }
      for (const page of viewers) {
        await waitFor(async () => (await decoded(page)) > 0, { timeout: 30000, what: 'viewer decoding before the panic' });
      }

      // The faulty session panics the only worker, which holds the publisher and both viewers.
      await publish(h, server, 'fault-injection-panic', { wait: false });
      await waitFor(async () => (await panics(server)) >= 1, { timeout: 20000, what: 'relaycast_worker_panics_total to count the panic' });
      assert.ok(!server.exit, `the node is still running: ${JSON.stringify(server.exit)}`);
      assert.match(server.logs(200), /media worker panicked/, 'the panic is logged');

      // Both viewers keep decoding after the panic.
      const after = await Promise.all(viewers.map(decoded));
      for (const [i, page] of viewers.entries()) {
        await waitFor(async () => (await decoded(page)) > after[i] + 30, { timeout: 20000, what: `viewer ${i} decoding after the panic` });
      }
      const info = await server.streamInfo('live');
      assert.ok(info?.live, 'the publisher survived the panic');

      // The node takes a new session.
      const late = await view.context.newPage();
      h.onFailure('late viewer', () => viewerStats(late));
      await late.goto(server.url('/viewer.html?stream=live'), { waitUntil: 'domcontentloaded' });
      await waitFor(async () => (await decoded(late)) > 0, { timeout: 30000, what: 'a new viewer decoding after the panic' });
      const metrics = await (await server.fetch('/metrics')).text();
      assert.match(metrics, /^relaycast_workers_healthy \d+/m, 'worker health in /metrics');
    });
  } finally {
    delete process.env.RELAYCAST_FAULT_INJECTION;
  }
});
