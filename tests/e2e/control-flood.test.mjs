// End-to-end: a flood of session control requests (trickle PATCHes and layer requests, which
// share a media worker with the media it forwards) does not drop anyone's media. A node with one
// media worker; Chromium publishes from the streamer page and a Chromium viewer watches. While
// 32 concurrent clients send control requests to the viewer's own session for 10 s, the viewer's
// decoded frames never stall 1 s, /healthz answers, and a second publisher still gets 201.
// Requests past the worker's control queue get 503 and are counted, never queued with media.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, measureStall, viewerStats, waitFor } from './harness.mjs';

const TOKEN = 'e2e-control-flood-token';
const STREAM = 'control-flood';
const REQUESTS = 20000;
const CONCURRENCY = 32;
const FLOOD_MS = 10000;
const MAX_STALL_MS = 1000;

/** Sends up to `total` requests made by `make(i)` with `concurrency` in flight, for at most
 * `ms`; counts statuses. */
async function flood(total, concurrency, ms, make) {
  const statuses = {};
  let next = 0;
  const end = Date.now() + ms;
  const worker = async () => {
    while (next < total && Date.now() < end) {
      const i = next++;
      let status;
      try {
        status = (await make(i)).status;
      } catch {
        status = 'error';
      }
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

test('control flood: trickle and layer requests do not stall a viewer', { timeout: 180000 }, async () => {
  const h = new Harness('control-flood');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN, args: ['--workers', '1', '--no-turn', '--no-archive'] });
    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&simulcast=0&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    const view = await h.browser('viewer');
    const viewPage = await view.page();
    await viewPage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await viewPage.waitForFunction(() => window.session?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => (await viewerStats(viewPage))?.framesDecoded > 60, { timeout: 30000, what: 'the viewer decodes' });
    const location = await viewPage.evaluate(() => window.session.location);
    assert.ok(location?.includes(`/whep/${STREAM}/`), `the viewer's session URL: ${location}`);

    const patch = (i) => fetch(location, {
      method: 'PATCH',
      headers: { 'content-type': 'application/trickle-ice-sdpfrag' },
      body: `a=ice-ufrag:flood\r\na=ice-pwd:floodfloodfloodfloodflood\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:${i} 1 udp 2122260223 127.0.0.1 ${9000 + (i % 1000)} typ host\r\n`,
      signal: AbortSignal.timeout(20000),
    });
    const layer = () => fetch(`${location}/layer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(20000),
    });
    let statuses;
    let sent = 0;
    let healthMs = 0;
    const { frames, stall, stallAt } = await measureStall(viewPage, FLOOD_MS + 2000, async () => {
      const started = Date.now();
      statuses = await flood(REQUESTS, CONCURRENCY, FLOOD_MS, (i) => (i % 2 ? patch(i) : layer()));
      const t = Date.now();
      const health = await server.fetch('/healthz');
      healthMs = Date.now() - t;
      assert.equal(health.status, 200, '/healthz during the flood');
      sent = Object.values(statuses).reduce((n, c) => n + c, 0);
      console.log(`# ${sent} control requests in ${Date.now() - started} ms: ${JSON.stringify(statuses)}`);
    });
    console.log(`# viewer: ${frames} frames decoded, longest stall ${stall.toFixed(0)} ms (at ${(stallAt / 1000).toFixed(1)} s); /healthz in ${healthMs} ms`);
    const answered = Object.entries(statuses).filter(([s]) => s !== 'error').reduce((n, [, c]) => n + c, 0);
    assert.ok(sent >= 500 && answered >= sent * 0.9, `the node answered the flood: ${JSON.stringify(statuses)}`);
    for (const s of Object.keys(statuses)) {
      assert.ok(['204', '400', '429', '503', 'error'].includes(s), `only 204, 400, 429 or 503 answers: ${JSON.stringify(statuses)}`);
    }
    assert.ok(frames > 24, `the viewer kept decoding (${frames} frames in 12 s)`);
    assert.ok(stall < MAX_STALL_MS, `longest stall ${stall.toFixed(0)} ms < ${MAX_STALL_MS} ms`);

    // A second publisher still gets in, on the same worker.
    const pub2 = await h.browser('publisher-2');
    const pub2Page = await pub2.page();
    await pub2Page.goto(server.url(`/streamer.html?stream=${STREAM}-2&simulcast=0&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pub2Page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => (await server.streamInfo(`${STREAM}-2`))?.live, { timeout: 15000, what: 'the second stream is live' });
    const metrics = await (await server.fetch('/metrics')).text();
    assert.match(metrics, /relaycast_workers_healthy 1/, 'the worker stayed healthy');
  });
});
