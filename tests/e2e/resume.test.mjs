// End-to-end: the two-line example plays a live stream, and viewers keep their PeerConnection
// while the publisher goes away and comes back (they get `publisher` events and resume), and when
// a second streamer with a publish grant (a PyJWT token) takes the live stream over.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import { pyjwt, nowSecs } from './pyjwt.mjs';

const TOKEN = 'e2e-publish-token';
const STREAM = 'room';
const SECRET = 'resume-e2e-api-secret-0123456789abcdef';

const renderedFrames = (page) => page.evaluate(() => {
  const v = document.querySelector('video');
  return v && v.videoWidth > 0 ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
});

test('two-line example plays; viewers resume on the same PeerConnection after the publisher returns or is taken over', { timeout: 240000 }, async () => {
  const h = new Harness('resume');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN, args: ['--api-secret', SECRET] });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher page status', () => pubPage.textContent('#status'));
    await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    const view = await h.browser('viewer');
    const example = await view.page();
    await example.goto(server.url(`/examples/watch.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    const f0 = await waitFor(() => renderedFrames(example), { timeout: 30000, what: 'examples/watch.html to render video' });
    await waitFor(async () => (await renderedFrames(example)) > f0, { timeout: 10000, what: 'examples/watch.html to keep rendering' });

    const viewPage = await view.context.newPage();
    h.onFailure('viewer stats', () => viewerStats(viewPage));
    await viewPage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(viewPage))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding frames' });
    await viewPage.evaluate(() => {
      window.firstPc = window.session.pc;
      window.publisherEvents = [];
      window.session.addEventListener('publisher', (e) => window.publisherEvents.push(e.detail.live));
    });

    // The publisher leaves.
    await pubPage.click('#stop');
    await waitFor(() => viewPage.evaluate(() => window.publisherEvents.includes(false)), { timeout: 15000, what: 'viewer event publisher live=false' });
    await waitFor(async () => {
      const s = await server.streamInfo(STREAM);
      return !s || s.live === false;
    }, { timeout: 10000, what: '/api/streams to show the stream not live' });
    const paused = await viewerStats(viewPage);

    // The publisher comes back; viewers resume on their existing PeerConnection.
    await pubPage.click('#start');
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => (await server.streamInfo(STREAM))?.live === true, { timeout: 10000, what: '/api/streams live again' });
    const resumed = await waitFor(async () => {
      const s = await viewerStats(viewPage);
      return s.framesDecoded > paused.framesDecoded + 5 && s;
    }, { timeout: 20000, what: `viewer framesDecoded to resume above ${paused.framesDecoded}` });
    assert.ok(resumed.framesDecoded > paused.framesDecoded);
    assert.equal(await viewPage.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection');
    const f1 = await renderedFrames(example);
    await waitFor(async () => (await renderedFrames(example)) > f1, { timeout: 15000, what: 'examples/watch.html to resume rendering' });

    // Takeover: while the first streamer is live, a second one with a publish grant for the
    // stream gets 201 at once (not 409); the first is told its session ended and does not
    // reconnect; viewers resume on their PeerConnections.
    const [grant] = pyjwt([{ encode: { exp: nowSecs() + 600, sub: 'second-streamer', grants: { publish: [STREAM] } }, secret: SECRET }]);
    const before = await viewerStats(viewPage);
    const pub2 = await pub.context.newPage();
    h.onFailure('second publisher page status', () => pub2.textContent('#status'));
    await pub2.goto(server.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${grant}`), { waitUntil: 'domcontentloaded' });
    await pub2.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(() => pubPage.evaluate(() => window.relaycastSession?.state === 'failed'), { timeout: 10000, what: 'first publisher session ended (no reconnect)' });
    const takenOver = await waitFor(async () => {
      const s = await viewerStats(viewPage);
      return s.framesDecoded > before.framesDecoded + 30 && s;
    }, { timeout: 20000, what: `viewer framesDecoded to continue above ${before.framesDecoded} after the takeover` });
    assert.ok(takenOver.framesDecoded > before.framesDecoded);
    assert.equal(await viewPage.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection after the takeover');
    assert.equal(await pubPage.evaluate(() => window.relaycastSession?.state), 'failed', 'the first publisher stays off');
    const f2 = await renderedFrames(example);
    await waitFor(async () => (await renderedFrames(example)) > f2, { timeout: 15000, what: 'examples/watch.html to render after the takeover' });
  });
});
