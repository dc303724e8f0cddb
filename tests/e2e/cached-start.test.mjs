// End-to-end: a viewer starts from the node's cached keyframe. An RTMP encoder cannot be asked
// for a keyframe, so without the cache a Chromium viewer waits for the encoder's next one; with it
// the node sends the latest keyframe and the frames since (their timestamps squeezed to the
// newest frame's), and Chromium decodes them and plays live from there: no added jitter-buffer
// delay, frames at the encoder's rate.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import { ffmpegPush, bannerUrl } from './ingest-util.mjs';

const TOKEN = 'e2e-cached-start-token';

async function streamMetric(server, name, stream) {
  const text = await (await server.fetch('/metrics')).text();
  const m = new RegExp(`^${name}\\{stream="${stream}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** In-page: the video receiver's jitter-buffer figures and frame counts. */
async function videoTiming() {
  const report = await window.session.pc.getStats();
  let out = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out = {
        framesDecoded: s.framesDecoded ?? 0,
        framesDropped: s.framesDropped ?? 0,
        delay: s.jitterBufferDelay ?? 0,
        emitted: s.jitterBufferEmittedCount ?? 0,
      };
    }
  });
  return out;
}

test('cached keyframe: a Chromium viewer of an RTMP stream starts from it and plays live', { timeout: 90000 }, async () => {
  const h = new Harness('cached start');
  let push;
  try {
    await h.run(async () => {
      // The worker's debug lines say why a viewer did or did not start from the cache.
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0', '--no-archive'],
        env: { RELAYCAST_LOG: 'info,str0m=warn,is=warn,dimpl=warn,relaycast_sfu::worker=debug' } });
      h.onFailure('cache decisions', () => server.stderr.tail(100000).split('\n')
        .filter((l) => /cached keyframe|session=/.test(l)).slice(0, 20).join('\n'));
      const rtmp = await bannerUrl(server, 'rtmp');
      h.onFailure('ffmpeg', () => push?.stderr());
      // A keyframe every 1/3 s at 300 kbit/s: the cache always holds a recent, small one.
      push = ffmpegPush(`${rtmp}/room?token=${TOKEN}`, {
        seconds: 80,
        gop: 10,
        video: ['-profile:v', 'baseline', '-bf', '0', '-b:v', '300k', '-maxrate', '300k', '-bufsize', '150k'],
      });
      await waitFor(async () => (await server.streamInfo('room'))?.live, { timeout: 30000, interval: 300, what: 'room to go live' });
      // Let a few keyframes through, so the cache is filled before the viewer comes.
      await waitFor(async () => (await streamMetric(server, 'relaycast_stream_ingress_packets_total', 'room')) > 300,
        { timeout: 15000, interval: 200, what: 'the stream to carry a few keyframes of media' });

      // A viewer whose connection completes just as the encoder's next keyframe reaches the node
      // starts live from that keyframe instead (the cached one arrives behind it): up to three
      // viewers, one after the other, until one starts from the cache.
      const view = await h.browser('viewer');
      let page;
      for (let attempt = 1; attempt <= 3; attempt++) {
        const before = await streamMetric(server, 'relaycast_stream_cached_starts_total', 'room');
        page = await view.page();
        const viewer = page;
        h.onFailure(`viewer ${attempt} stats`, () => viewerStats(viewer));
        await page.goto(server.url('/viewer.html?stream=room'), { waitUntil: 'domcontentloaded' });
        const connected = await waitFor(() => page.evaluate(() => window.session?.pc?.connectionState === 'connected' && performance.now()).catch(() => false),
          { timeout: 30000, interval: 10, what: 'the viewer to connect' });
        const first = await waitFor(async () => {
          const s = await page.evaluate(videoTiming).catch(() => null);
          return s?.framesDecoded > 0 && { ...s, at: await page.evaluate(() => performance.now()) };
        }, { timeout: 30000, interval: 10, what: 'the viewer decoding frames' });
        const starts = await streamMetric(server, 'relaycast_stream_cached_starts_total', 'room');
        console.log(`# viewer ${attempt}: cached starts ${before} -> ${starts}; first frame decoded ${(first.at - connected).toFixed(0)} ms after connecting (${first.framesDecoded} frames by then)`);
        if (starts > before) break;
        assert.ok(attempt < 3, 'a viewer started from the cached keyframe (relaycast_stream_cached_starts_total) within three tries');
        await page.close();
      }

      // Two seconds later: ~60 frames decoded at the encoder's rate, and the jitter buffer holds
      // frames no longer than a live start would (the squeezed frames were not played as old).
      const a = await page.evaluate(videoTiming);
      await new Promise((r) => setTimeout(r, 2000));
      const b = await page.evaluate(videoTiming);
      const frames = b.framesDecoded - a.framesDecoded;
      const delayMs = ((b.delay - a.delay) / Math.max(1, b.emitted - a.emitted)) * 1000;
      const overallMs = (b.delay / Math.max(1, b.emitted)) * 1000;
      console.log(`# frames in 2 s: ${frames}; mean jitter-buffer delay ${delayMs.toFixed(1)} ms (since the start ${overallMs.toFixed(1)} ms); dropped ${b.framesDropped}`);
      assert.ok(frames >= 45, `the viewer keeps decoding at about 30 fps (${frames} frames in 2 s)`);
      assert.ok(delayMs < 200, `the jitter buffer holds frames briefly (${delayMs.toFixed(1)} ms mean), as for a live start`);
      assert.ok(overallMs < 200, `no frame was held for the cached frames' age (${overallMs.toFixed(1)} ms mean since the start)`);
    });
  } finally {
    push?.proc.kill('SIGKILL');
  }
});
