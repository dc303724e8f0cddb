// End-to-end: the server crashes and comes back on the same HTTP port. The streamer page
// republishes and the viewer reconnects by itself (backoff, 404 until the stream is back),
// with the new tracks swapped into the same MediaStream the <video> element plays.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-publish-token';
const STREAM = 'room';

test('publisher and viewer reconnect after a server restart; the video element keeps its MediaStream', { timeout: 180000 }, async () => {
  const h = new Harness('reconnect');
  await h.run(async () => {
    const first = await h.startServer({ token: TOKEN });
    const httpAddr = new URL(first.base).host;

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher page status', () => pubPage.textContent('#status'));
    await pubPage.goto(first.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    const view = await h.browser('viewer');
    const viewPage = await view.page();
    h.onFailure('viewer stats', () => viewerStats(viewPage));
    h.onFailure('viewer page status', () => viewPage.textContent('#status'));
    await viewPage.goto(first.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(viewPage))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding frames' });
    await viewPage.evaluate(() => {
      window.firstPc = window.session.pc;
      window.firstStream = document.getElementById('video').srcObject;
      window.firstTrackIds = window.firstStream.getTracks().map((t) => t.id).sort();
    });

    await first.kill();
    const second = await waitFor(() => h.startServer({ token: TOKEN, http: httpAddr }).catch(() => null), {
      timeout: 20000, interval: 500, what: `relaycast to start again on ${httpAddr}`,
    });
    h.onFailure('/api/streams', async () => (await second.fetch('/api/streams')).text());

    await pubPage.waitForFunction((pc) => window.relaycastSession?.state === 'connected' && window.relaycastSession.pc !== null, null, { timeout: 60000 });
    await waitFor(async () => (await second.streamInfo(STREAM))?.live === true, { timeout: 30000, what: 'the stream to be live on the restarted server' });
    await waitFor(async () => {
      const ok = await viewPage.evaluate(() => window.session.pc !== window.firstPc && window.session.state === 'connected');
      if (!ok) return false;
      return (await viewerStats(viewPage))?.framesDecoded > 5;
    }, { timeout: 60000, what: 'the viewer to reconnect and decode on a new PeerConnection' });

    const same = await viewPage.evaluate(() => {
      const v = document.getElementById('video');
      return {
        sameStream: v.srcObject === window.firstStream && window.session.stream === window.firstStream,
        tracks: v.srcObject.getTracks().map((t) => `${t.kind}:${t.readyState}`).sort(),
        replaced: JSON.stringify(v.srcObject.getTracks().map((t) => t.id).sort()) !== JSON.stringify(window.firstTrackIds),
      };
    });
    assert.deepEqual(same, { sameStream: true, tracks: ['audio:live', 'video:live'], replaced: true });
    const q0 = await viewPage.evaluate(() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames);
    await waitFor(async () => (await viewPage.evaluate(() => document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames)) > q0,
      { timeout: 10000, what: 'the <video> element to keep rendering after the reconnect' });
  });
});
