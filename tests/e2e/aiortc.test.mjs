// End-to-end with aiortc (PyPI), a WebRTC stack independent of the node's and of Chromium's:
// an aiortc WHIP publisher (VP8 + Opus) is decoded by a Chromium viewer and by an aiortc WHEP
// viewer; a Chromium publisher (H264 simulcast from the streamer page) is decoded by an aiortc
// viewer. tests/python/.venv is made by scripts/test.sh from tests/python/requirements.txt.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, REPO_ROOT, waitFor, viewerStats } from './harness.mjs';
import { PyClient } from './pyclient.mjs';

const TOKEN = 'e2e-aiortc-token';
const PYTHON = process.env.RELAYCAST_PYTHON || path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const CLIENT = path.join(REPO_ROOT, 'tests/python/aiortc_client.py');

/** A running aiortc_client.py. */
class Aiortc extends PyClient {
  constructor(args) {
    if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} missing: run scripts/test.sh (it creates tests/python/.venv)`);
    super(PYTHON, CLIENT, args);
  }
}

test('aiortc publishes VP8 over WHIP; Chromium and aiortc viewers decode it', { timeout: 180000 }, async () => {
  const h = new Harness('aiortc publisher');
  let publisher;
  let viewer;
  await h.run(async () => {
    const stream = 'aiortc-vp8';
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
    publisher = new Aiortc(['publish', server.url(`/whip/${stream}`), '--codec', 'vp8', '--token', TOKEN, '--seconds', '120']);
    h.onFailure('aiortc publisher', () => publisher.describe());
    await waitFor(() => publisher.events.some((e) => e.state === 'connected'), { timeout: 30000, what: 'the aiortc publisher to connect' });
    assert.deepEqual(publisher.find('answer').codecs, ['VP8']);
    const info = await waitFor(async () => {
      const s = await server.streamInfo(stream);
      return s?.live && s.layers?.[0]?.width > 0 && s.audio?.packets > 0 && s;
    }, { timeout: 20000, what: 'video with a frame size and audio from aiortc' });
    assert.equal(info.codec, 'VP8');
    assert.deepEqual([info.layers[0].width, info.layers[0].height], [640, 360], 'the server parsed aiortc\'s VP8 keyframe');

    // Chromium watches through the SDK viewer page.
    const view = await h.browser('viewer');
    const page = await view.page();
    h.onFailure('viewer stats', () => viewerStats(page));
    await page.goto(server.url(`/viewer.html?stream=${stream}`), { waitUntil: 'domcontentloaded' });
    const a = await waitFor(async () => {
      const s = await viewerStats(page);
      return s?.framesDecoded > 10 && s;
    }, { timeout: 30000, what: 'Chromium to decode aiortc\'s frames' });
    assert.match(String(a.codec), /video\/VP8/i);
    assert.deepEqual([a.frameWidth, a.frameHeight], [640, 360]);
    await waitFor(async () => (await viewerStats(page)).audioPackets > 0, { timeout: 10000, what: 'Chromium to receive aiortc\'s Opus' });

    // aiortc watches too.
    viewer = new Aiortc(['watch', server.url(`/whep/${stream}`), '--frames', '30', '--timeout', '40']);
    h.onFailure('aiortc viewer', () => viewer.describe());
    const code = await viewer.exit(60000);
    const result = viewer.find('result');
    assert.equal(code, 0, `aiortc viewer decoded 30 frames: ${viewer.describe()}`);
    assert.equal(result.codec, 'VP8');
    const last = viewer.events.filter((e) => e.event === 'frames').pop();
    assert.deepEqual([last.width, last.height], [640, 360]);
  }).finally(async () => {
    await viewer?.stop();
    await publisher?.stop();
  });
});

test('Chromium publishes H264 simulcast; an aiortc WHEP viewer decodes it', { timeout: 180000 }, async () => {
  const h = new Harness('aiortc viewer');
  let viewer;
  await h.run(async () => {
    const stream = 'chromium-h264';
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
    const pub = await h.browser('publisher');
    const page = await pub.page();
    await page.goto(server.url(`/streamer.html?stream=${stream}&codec=h264&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => (await server.streamInfo(stream))?.layers?.some((l) => l.packets > 0), { timeout: 30000, what: 'H264 video on the server' });
    assert.equal((await server.streamInfo(stream)).codec, 'H264');

    viewer = new Aiortc(['watch', server.url(`/whep/${stream}`), '--frames', '30', '--timeout', '40']);
    h.onFailure('aiortc viewer', () => viewer.describe());
    const code = await viewer.exit(60000);
    assert.equal(code, 0, `aiortc viewer decoded 30 frames: ${viewer.describe()}`);
    assert.equal(viewer.find('result').codec, 'H264');
    const last = viewer.events.filter((e) => e.event === 'frames').pop();
    assert.ok(last.width >= 320 && last.height >= 180, `decoded frames have a size: ${JSON.stringify(last)}`);
  }).finally(async () => {
    await viewer?.stop();
  });
});
