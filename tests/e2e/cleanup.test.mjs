// End-to-end: a viewer whose browser dies without a DELETE (no DTLS close, no more ICE consent)
// is removed by the node once it has been silent for 10 s, while the publisher and other viewers
// carry on.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Harness, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-publish-token';
const STREAM = 'cleanup';

test('a viewer that vanishes without DELETE is dropped after 10 s of silence; others keep decoding', { timeout: 180000 }, async () => {
  const h = new Harness('cleanup');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&codec=vp8&simulcast=0&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    const stay = await h.browser('viewer-stays');
    const stayPage = await stay.page();
    h.onFailure('staying viewer stats', () => viewerStats(stayPage));
    await stayPage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(stayPage))?.framesDecoded > 0, { timeout: 30000, what: 'staying viewer decoding' });

    const gone = await h.browser('viewer-vanishes');
    const gonePage = await gone.page();
    await gonePage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(gonePage))?.framesDecoded > 0, { timeout: 30000, what: 'second viewer decoding' });
    await waitFor(async () => (await server.streamInfo(STREAM))?.viewers === 2, { timeout: 10000, what: 'two viewers in /api/streams' });

    // Kill the second browser outright: it sends nothing more, not even a DTLS close.
    execFileSync('pkill', ['-KILL', '-f', gone.dir]);
    const killedAt = Date.now();
    await waitFor(async () => (await server.streamInfo(STREAM))?.viewers === 1, { timeout: 30000, what: 'the vanished viewer to be dropped' });
    const took = Date.now() - killedAt;
    h.note(`vanished viewer dropped after ${took} ms`);
    console.log(`vanished viewer dropped after ${took} ms`);
    assert.ok(took >= 5000 && took < 20000, `dropped after the 10 s silence timeout, not before and not much later (${took} ms)`);

    // The remaining viewer never noticed.
    const a = await viewerStats(stayPage);
    await waitFor(async () => (await viewerStats(stayPage)).framesDecoded > a.framesDecoded, { timeout: 10000, what: 'staying viewer keeps decoding' });
    const metrics = await (await server.fetch('/metrics')).text();
    assert.match(metrics, new RegExp(`relaycast_stream_viewers\\{stream="${STREAM}"\\} 1`), '/metrics shows one viewer');
  });
});
