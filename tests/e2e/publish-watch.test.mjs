// End-to-end: the streamer page publishes the fake camera with simulcast (VP8, then H264),
// a second Chromium watches through the viewer page, and we check decoding, simulcast
// layers on the server, manual layer switching and audio.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats, publisherStats } from './harness.mjs';

const TOKEN = 'e2e-publish-token';

for (const codec of ['vp8', 'h264']) {
  const CODEC = codec.toUpperCase();
  test(`${CODEC} simulcast: publish, watch, layer switch, audio`, { timeout: 240000 }, async () => {
    const h = new Harness(`${CODEC} simulcast`);
    await h.run(async () => {
      const stream = `room-${codec}`;
      const server = await h.startServer({ token: TOKEN });
      h.note(`server at ${server.base}`);
      h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());

      // 1. The streamer page publishes with simulcast.
      const pub = await h.browser('publisher');
      const pubPage = await pub.page();
      h.onFailure('publisher stats', () => publisherStats(pubPage));
      h.onFailure('publisher page status', () => pubPage.textContent('#status'));
      await pubPage.goto(server.url(`/streamer.html?stream=${stream}&codec=${codec}&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
      await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 })
        .catch(async (err) => { throw new Error(`publisher did not connect: ${await pubPage.textContent('#status')}\n${err.message}`); });

      const pubInfo = await pubPage.evaluate(() => {
        const s = window.relaycastSession;
        const sender = s.pc.getSenders().find((x) => x.track?.kind === 'video');
        return { simulcast: s.simulcast, codec: s.codec, rids: sender.getParameters().encodings.map((e) => e.rid), answer: s.answerSdp };
      });
      assert.equal(pubInfo.simulcast, true, 'streamer page publishes with simulcast');
      assert.equal(pubInfo.codec, codec);
      assert.deepEqual(pubInfo.rids, ['q', 'h', 'f'], 'three send encodings q/h/f');
      assert.match(pubInfo.answer, /^a=simulcast:recv q;h;f\r?$/m, 'WHIP answer accepts the three simulcast layers');

      // The browser sends all three layers (320x180, 640x360, 1280x720 from the 1280x720 fake camera).
      await waitFor(async () => {
        const st = await publisherStats(pubPage);
        return st && ['q', 'h', 'f'].every((rid) => st.layers[rid]?.framesEncoded > 0) && st;
      }, { timeout: 30000, what: 'publisher encoding all three layers' });

      // 4. The server receives all three rids with bitrate > 0 (and the codec asked for).
      const info = await waitFor(async () => {
        const s = await server.streamInfo(stream);
        if (!s?.live) return false;
        const ok = ['q', 'h', 'f'].every((rid) => s.layers?.some((l) => l.rid === rid && l.bitrate > 0));
        return ok && s;
      }, { timeout: 40000, interval: 500, what: `/api/streams to list ${stream} with rids q, h, f at bitrate > 0` });
      assert.equal(String(info.codec).toUpperCase(), CODEC, '/api/streams reports the published codec');

      // 2. A second browser context watches through the SDK (viewer page).
      const view = await h.browser('viewer');
      const viewPage = await view.page();
      h.onFailure('viewer stats', () => viewerStats(viewPage));
      h.onFailure('viewer page status', () => viewPage.textContent('#status'));
      await viewPage.goto(server.url(`/viewer.html?stream=${stream}`), { waitUntil: 'domcontentloaded' });
      await waitFor(async () => (await viewerStats(viewPage))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding frames' });

      // 3. framesDecoded keeps rising.
      const a = await viewerStats(viewPage);
      const b = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.framesDecoded > a.framesDecoded && s;
      }, { timeout: 10000, what: `framesDecoded to rise above ${a.framesDecoded}` });
      assert.ok(b.framesDecoded > a.framesDecoded, `framesDecoded rises (${a.framesDecoded} -> ${b.framesDecoded})`);
      assert.match(String(b.codec), new RegExp(`video/${CODEC}`, 'i'), 'viewer decodes the published codec');
      assert.equal(await viewPage.evaluate(() => document.getElementById('video').srcObject?.getTracks().length), 2,
        'the MediaStream of the watch session holds video and audio');

      // 5. Forcing the low layer and then the high one changes the decoded height. The expected
      // heights are the ones the server currently receives (180 and 720 unless the browser adapts).
      const layerHeight = async (rid, fallback) => {
        const s = await server.streamInfo(stream).catch(() => null);
        return s?.layers?.find((l) => l.rid === rid)?.height || fallback;
      };
      await viewPage.click('#layer-q');
      const low = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.frameHeight > 0 && s.frameHeight <= (await layerHeight('q', 180)) && s;
      }, { timeout: 20000, what: 'decoded frameHeight to drop to the q layer height after forcing rid q' });
      await waitFor(() => viewPage.evaluate(() => window.session.rid === 'q'), { timeout: 10000, what: 'server layer event rid=q' });

      await viewPage.click('#layer-f');
      const high = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.frameHeight > low.frameHeight && s.frameHeight >= (await layerHeight('f', 720)) && s;
      }, { timeout: 25000, what: 'decoded frameHeight to reach the f layer height after forcing rid f' });
      assert.ok(low.frameHeight < high.frameHeight, `low layer height ${low.frameHeight} < high layer height ${high.frameHeight}`);
      await waitFor(() => viewPage.evaluate(() => window.session.rid === 'f'), { timeout: 10000, what: 'server layer event rid=f' });
      assert.match(await viewPage.textContent('#layer'), /f \(high\)/, 'viewer page shows the current layer');

      // Decoding continues on the high layer.
      const c = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.framesDecoded > high.framesDecoded && s;
      }, { timeout: 10000, what: 'framesDecoded to keep rising on rid f' });
      assert.ok(c.framesDecoded > high.framesDecoded);

      // 6. Audio packets arrive and keep arriving.
      const a1 = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.audioPackets > 0 && s;
      }, { timeout: 15000, what: 'inbound audio packetsReceived > 0' });
      const a2 = await waitFor(async () => {
        const s = await viewerStats(viewPage);
        return s.audioPackets > a1.audioPackets && s;
      }, { timeout: 10000, what: `audio packetsReceived to rise above ${a1.audioPackets}` });
      assert.ok(a2.audioPackets > a1.audioPackets, `audio packets rise (${a1.audioPackets} -> ${a2.audioPackets})`);

      // The server counts the viewer; the streamer page shows it.
      await waitFor(async () => (await server.streamInfo(stream))?.viewers >= 1, { timeout: 10000, what: '/api/streams viewers >= 1' });
      await pubPage.waitForFunction(() => Number(document.getElementById('viewers').textContent) >= 1, null, { timeout: 10000 });

      // Closing the viewer ends its session (DELETE) without disturbing the publisher.
      await viewPage.evaluate(() => window.relaycast.close());
      await waitFor(async () => (await server.streamInfo(stream))?.viewers === 0, { timeout: 10000, what: '/api/streams viewers back to 0 after close()' });
      assert.equal(await pubPage.evaluate(() => window.relaycastSession.pc.connectionState), 'connected');
    });
  });
}
