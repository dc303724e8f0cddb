// End-to-end: the SDK's `rc.live(stream, video)` plays a stream's low-latency live archive
// (`live.m3u8` with parts) without WebRTC, a second or two behind the publisher, in Chromium: a
// VP8 stream (the streamer page's default; WebM parts appended through Media Source Extensions
// as blocking playlist reloads announce them) and an H264 one (hls.js in low-latency mode). The
// picture's delay behind the publisher's capture (`playback.latencyMs()`, from the playlist's
// EXT-X-PROGRAM-DATE-TIME; node and browser share the machine's clock) is sampled after a 5 s
// join; p99 must stay under 3 s.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './harness.mjs';
import { requireTools, archiveOf } from './archive-util.mjs';

const TOKEN = 'e2e-live-hls-token';

requireTools();

/** Nearest-rank percentile `q` (0..1) of `values`. */
function percentile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

for (const codec of ['vp8', 'h264']) test(`${codec.toUpperCase()}: rc.live() plays the low-latency live archive under 3 s behind the publisher`, { timeout: 150000 }, async () => {
  const h = new Harness(`live hls ${codec}`);
  await h.run(async () => {
    const stream = `live-hls-${codec}`;
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('archive', async () => (await server.fetch(`/api/streams/${stream}/archive`)).text());
    h.onFailure('live.m3u8', async () => (await server.fetch(`/replay/${stream}/live.m3u8`)).text());
    const pub = await h.browser(`publisher-${codec}`);
    const pubPage = await pub.page();
    await pubPage.goto(server.url(`/streamer.html?stream=${stream}&codec=${codec}&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    // Parts of the main rendition once its first segment is archived (its init is durable).
    await waitFor(async () => (await archiveOf(server, stream)).segments?.length >= 1, { timeout: 30000, interval: 300, what: 'a first archived segment' });

    const view = await h.browser(`live-${codec}`);
    const page = await view.page();
    h.onFailure('player', () => page.evaluate(() => ({ engine: window.pb?.engine, latency: window.pb?.latencyMs?.(), err: window.pbErr, t: document.querySelector('#lv')?.currentTime })));
    await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
    const engine = await page.evaluate(async (name) => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const video = document.createElement('video');
      video.id = 'lv';
      video.muted = true;
      video.playsInline = true;
      document.body.append(video);
      const rc = new Relaycast(location.origin);
      window.pb = await rc.live(name, video);
      window.pb.addEventListener('error', (e) => { window.pbErr = String(e.detail?.error?.message ?? e.detail?.error); });
      return window.pb.engine;
    }, stream);
    assert.equal(engine, codec === 'vp8' ? 'mse' : 'hls.js', `${codec} plays live through ${engine}`);

    // 5 s to join, then 60 samples over 15 s.
    const all = await page.evaluate(() => new Promise((resolve) => {
      const v = document.getElementById('lv');
      const out = [];
      const timer = setInterval(() => {
        out.push({ latency: window.pb.latencyMs(), t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames });
        if (out.length >= 80) {
          clearInterval(timer);
          resolve(out);
        }
      }, 250);
    }));
    h.note(`samples: ${JSON.stringify(all)}`);
    const samples = all.slice(20);
    const latencies = samples.map((s) => s.latency).filter((l) => Number.isFinite(l));
    assert.ok(latencies.length >= samples.length - 2, `the player knows its latency (${latencies.length} of ${samples.length} samples)`);
    const p50 = percentile(latencies, 0.5);
    const p99 = percentile(latencies, 0.99);
    const frames = samples.at(-1).frames - samples[0].frames;
    const played = samples.at(-1).t - samples[0].t;
    console.log(`# live-hls ${codec}: ${engine}, behind the publisher p50 ${Math.round(p50)} ms p99 ${Math.round(p99)} ms `
      + `(joined ${Math.round(all[0].latency ?? NaN)} ms behind); ${frames} frames, ${played.toFixed(2)} s played in 15 s`);
    assert.equal(await page.evaluate(() => window.pbErr ?? null), null, 'no playback error');
    assert.ok(played > 12, `playback advances (${played.toFixed(2)} s in 15 s)`);
    assert.ok(frames >= 150, `frames decoded (${frames} in 15 s)`);
    assert.ok(p99 < 3000, `p99 ${Math.round(p99)} ms behind the publisher (< 3000 ms; p50 ${Math.round(p50)} ms)`);
    await page.evaluate(() => window.pb.destroy());
  });
});
