// End-to-end: playback of the archive in Chromium through the SDK. While a VP8 (the streamer
// page's default) or H264 stream is live, the viewer page's instant replay plays the last seconds
// from the archive (VP8: WebM segments through MSE; H264: fMP4 through HLS) and "Back to live"
// returns to the WebRTC stream on the same PeerConnection; after the stream ended, `rc.vod()`
// plays the VOD of each.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import { requireTools, archiveOf, mediaPlaylistText, waitForVod } from './archive-util.mjs';
import { pyjwt, nowSecs } from './pyjwt.mjs';

const TOKEN = 'e2e-replay-token';

requireTools();

/** In-page: the state of the viewer page's <video id="video">. */
const videoState = (page, selector = '#video') => page.evaluate((sel) => {
  const v = document.querySelector(sel);
  const q = v.getVideoPlaybackQuality?.();
  return {
    currentTime: v.currentTime, videoWidth: v.videoWidth, videoHeight: v.videoHeight, readyState: v.readyState, paused: v.paused,
    src: v.currentSrc || v.getAttribute('src') || '', hasSrcObject: !!v.srcObject, frames: q?.totalVideoFrames ?? 0, error: v.error?.message ?? null,
  };
}, selector);

async function publish(h, server, stream, codec) {
  const pub = await h.browser(`publisher-${codec}`);
  const page = await pub.page();
  await page.goto(server.url(`/streamer.html?stream=${stream}&codec=${codec}&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
  return page;
}

/** Waits until `currentTime` has advanced by `by` seconds with frames on screen; returns both samples. */
async function assertPlays(page, what, { by = 1.5, timeout = 15000, selector } = {}) {
  const a = await waitFor(async () => {
    const s = await videoState(page, selector);
    return s.videoWidth > 0 && s.readyState >= 2 && s;
  }, { timeout, what: `${what}: video with dimensions` });
  const b = await waitFor(async () => {
    const s = await videoState(page, selector);
    return s.currentTime >= a.currentTime + by && s;
  }, { timeout, what: `${what}: currentTime to advance ${by} s past ${a.currentTime}` });
  assert.ok(b.currentTime > a.currentTime && b.videoWidth > 0, `${what} plays (${a.currentTime.toFixed(2)} -> ${b.currentTime.toFixed(2)} s, ${b.videoWidth}x${b.videoHeight})`);
  return { a, b };
}

for (const codec of ['vp8', 'h264']) test(`${codec.toUpperCase()} instant replay while live, back to live on the same PeerConnection`, { timeout: 150000 }, async () => {
  const h = new Harness(`instant replay ${codec}`);
  await h.run(async () => {
    const stream = `replay-live-${codec}`;
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('archive', async () => (await server.fetch(`/api/streams/${stream}/archive`)).text());
    await publish(h, server, stream, codec);

    const view = await h.browser('viewer');
    const page = await view.page();
    h.onFailure('viewer stats', () => viewerStats(page));
    h.onFailure('video', () => videoState(page));
    h.onFailure('mode', () => page.textContent('#mode'));
    await page.goto(server.url(`/viewer.html?stream=${stream}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(page))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding WebRTC frames' });
    await page.evaluate(() => {
      window.firstPc = window.session.pc;
      window.replayEvents = [];
      window.session.addEventListener('replay', (e) => window.replayEvents.push({ active: e.detail.active, engine: e.detail.engine, startPosition: e.detail.startPosition }));
    });
    assert.equal(await page.getAttribute('#mode', 'data-mode'), 'live');
    assert.equal(await page.isDisabled('#live'), true, '"Back to live" is disabled while live');

    // Enough archive for a 10 s replay that does not start at 0.
    await waitFor(async () => (await archiveOf(server, stream)).segments.length >= 8, { timeout: 40000, interval: 500, what: '8 archived segments' });
    await page.fill('#replay-seconds', '10');
    assert.match(await page.textContent('#replay'), /Replay last 10 s/);
    // How long from the click until the archive plays (time advancing off the MediaStream).
    await page.evaluate(() => {
      const v = document.getElementById('video');
      window.replayClickAt = performance.now();
      window.replayPlayingAt = null;
      const t0 = { time: null };
      v.addEventListener('timeupdate', () => {
        if (v.srcObject || v.paused) return;
        if (t0.time == null) t0.time = v.currentTime;
        else if (v.currentTime > t0.time) window.replayPlayingAt ??= performance.now();
      });
    });
    await page.click('#replay');
    await page.waitForSelector('#mode[data-mode=replay]', { timeout: 20000 });
    const replay = await page.evaluate(() => ({ ...window.replayEvents.at(-1), duration: window.session.replayPlayback.duration }));
    h.note(`replay: ${JSON.stringify(replay)}`);
    assert.equal(replay.active, true);
    assert.equal(replay.engine, codec === 'vp8' ? 'mse' : 'hls.js', 'VP8 (WebM) plays through MSE, H264 (fMP4) through hls.js');
    assert.ok(replay.startPosition > 0 && Math.abs(replay.duration - 10 - replay.startPosition) < 0.01, `replay starts 10 s before the live edge (${JSON.stringify(replay)})`);
    assert.match(await page.textContent('#mode'), /REPLAY/);
    assert.equal(await page.isDisabled('#live'), false, '"Back to live" is enabled during a replay');
    const { b: played } = await assertPlays(page, 'instant replay');
    assert.equal(played.hasSrcObject, false, 'the replay plays from the archive, not from the MediaStream');
    assert.ok(played.currentTime >= replay.startPosition - 0.5, `playback started near ${replay.startPosition.toFixed(2)} s (at ${played.currentTime.toFixed(2)})`);
    const startMs = await page.evaluate(() => window.replayPlayingAt && window.replayPlayingAt - window.replayClickAt);
    assert.ok(startMs > 0, 'the replay played after the click');
    console.log(`# replay ${codec}: playing ${Math.round(startMs)} ms after the click`);
    console.log(`# replay ${codec}: engine ${replay.engine}, start ${replay.startPosition.toFixed(2)} s of ${replay.duration.toFixed(2)} s, video ${played.videoWidth}x${played.videoHeight}`);

    // The WebRTC connection stays up during the replay.
    assert.equal(await page.evaluate(() => window.session.pc === window.firstPc && window.session.pc.connectionState), 'connected');

    await page.click('#live');
    await page.waitForSelector('#mode[data-mode=live]', { timeout: 10000 });
    const back = await page.evaluate(() => {
      const v = document.getElementById('video');
      return { samePc: window.session.pc === window.firstPc, state: window.session.pc.connectionState, srcObject: v.srcObject === window.session.stream, src: v.getAttribute('src'), lastActive: window.replayEvents.at(-1)?.active };
    });
    assert.deepEqual(back, { samePc: true, state: 'connected', srcObject: true, src: null, lastActive: false }, 'back on the live MediaStream, same PeerConnection');
    const s0 = await viewerStats(page);
    const f0 = (await videoState(page)).frames;
    const s1 = await waitFor(async () => {
      const s = await viewerStats(page);
      return s.framesDecoded > s0.framesDecoded + 10 && s;
    }, { timeout: 10000, what: 'WebRTC frames decoded again after "Back to live"' });
    const v1 = await waitFor(async () => {
      const v = await videoState(page);
      return v.frames > f0 && v.videoWidth > 0 && v;
    }, { timeout: 10000, what: 'the video element rendering the live stream again' });
    assert.ok(s1.framesDecoded > s0.framesDecoded && v1.videoWidth > 0);
  });
});

test('after the stream ended, rc.vod() plays the VOD of a VP8 (WebM) and of an H264 (fMP4) recording', { timeout: 150000 }, async () => {
  const h = new Harness('vod playback');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    const archives = {};
    for (const codec of ['h264', 'vp8']) {
      const stream = `vod-${codec}`;
      const pubPage = await publish(h, server, stream, codec);
      await waitFor(async () => (await archiveOf(server, stream)).segments.length >= 4, { timeout: 30000, interval: 500, what: `4 archived segments of ${stream}` });
      await pubPage.click('#stop');
      archives[codec] = await waitForVod(server, stream);
    }

    const view = await h.browser('vod');
    const page = await view.page();
    await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
    for (const codec of ['h264', 'vp8']) {
      const total = archives[codec].segments.reduce((t, s) => t + s.duration, 0);
      const started = await page.evaluate(async (codec) => {
        const { Relaycast } = await import('/sdk/relaycast.js');
        const video = document.createElement('video');
        video.id = `vod-${codec}`;
        video.muted = true;
        video.playsInline = true;
        document.body.append(video);
        window.rcVod = new Relaycast();
        const p = await window.rcVod.vod(`vod-${codec}`, video);
        window.vodPlayback = p;
        return { engine: p.engine, startPosition: p.startPosition, duration: p.duration, codecs: p.codecs };
      }, codec);
      h.note(`vod ${codec}: ${JSON.stringify(started)}`);
      assert.equal(started.startPosition, 0, 'a VOD plays from its start');
      assert.ok(Math.abs(started.duration - total) < 0.01, `VOD playlist duration ${started.duration} = archive ${total}`);
      if (codec === 'h264') assert.match(started.codecs, /^avc1\./);
      else assert.deepEqual([started.codecs, started.engine], ['vp8,opus', 'mse'], 'VP8 is recorded in WebM and played through MSE');
      const { a, b } = await assertPlays(page, `${codec} VOD`, { selector: `#vod-${codec}` });
      assert.ok(a.currentTime < 3, `VOD starts at the beginning (${a.currentTime})`);
      // MSE knows the whole duration once the last segment is appended (end of stream).
      const dur = await waitFor(async () => {
        const d = await page.evaluate((sel) => document.querySelector(sel).duration, `#vod-${codec}`);
        return Number.isFinite(d) && Math.abs(d - total) < 0.5 && d;
      }, { timeout: 15000, what: `the ${codec} element's duration to match the recording (${total.toFixed(3)} s)` });
      assert.ok(Math.abs(dur - total) < 0.5);
      const decoded = await page.evaluate((sel) => document.querySelector(sel).getVideoPlaybackQuality().totalVideoFrames, `#vod-${codec}`);
      assert.ok(decoded > 10, `${codec} VOD frames decoded (${decoded})`);
      console.log(`# vod ${codec}: engine ${started.engine}, duration ${dur.toFixed(3)} s, video ${b.videoWidth}x${b.videoHeight}, ${decoded} frames`);
      await page.evaluate(() => window.vodPlayback.destroy());
    }

    // A recording by id: listed by rc.recordings(), played by rc.vod(…, { recording }) (the
    // container found from its init segment).
    const byId = await page.evaluate(async () => {
      const recs = await window.rcVod.recordings('vod-vp8');
      const video = document.createElement('video');
      video.id = 'vod-by-id';
      video.muted = true;
      document.body.append(video);
      const p = await window.rcVod.vod('vod-vp8', video, { recording: recs[0].id });
      window.vodPlayback = p;
      return { recs, engine: p.engine, url: p.url };
    });
    h.note(`by id: ${JSON.stringify(byId)}`);
    assert.equal(byId.recs.length, 1);
    assert.equal(byId.recs[0].vod_cid, archives.vp8.vod, 'the listed recording has the VOD root');
    assert.ok(byId.url.includes(`/replay/vod-vp8/${byId.recs[0].id}/vod.m3u8`), byId.url);
    assert.equal(byId.engine, 'mse');
    await assertPlays(page, 'VP8 VOD by recording id', { selector: '#vod-by-id' });
  });
});

test('--watch-auth: a PyJWT watch token plays the VOD through rc.vod() (segment URIs carry it); the gateway serves a recording only to a watch grant for its stream', { timeout: 150000 }, async () => {
  const h = new Harness('watch-auth vod');
  await h.run(async () => {
    const SECRET = 'e2e-watch-auth-secret-0123456789abcdef';
    const server = await h.startServer({ token: TOKEN, args: ['--watch-auth', '--api-secret', SECRET] });
    // The archive API needs a watch grant too; the master token has every grant.
    const asMaster = { fetch: (p, o) => server.fetch(`${p}${p.includes('?') ? '&' : '?'}token=${TOKEN}`, o) };
    const stream = 'private-talk';
    const pubPage = await publish(h, server, stream, 'h264');
    await waitFor(async () => (await archiveOf(asMaster, stream)).segments.length >= 3, { timeout: 30000, interval: 500, what: `3 archived segments of ${stream}` });
    await pubPage.click('#stop');
    const archive = await waitForVod(asMaster, stream);
    const now = nowSecs();
    const [watcher, other] = pyjwt([
      { encode: { exp: now + 600, sub: 'viewer', grants: { watch: [stream] } }, secret: SECRET },
      { encode: { exp: now + 600, sub: 'other', grants: { watch: ['other-*'] } }, secret: SECRET },
    ]);

    // The gateway: the recording's files and VOD root only with a watch grant for its stream.
    const seg = archive.segments[0].cid;
    const status = async (p, headers = {}) => (await server.fetch(p, { headers })).status;
    assert.equal(await status(`/ipfs/${seg}`), 401, 'a segment without a token');
    assert.equal(await status(`/ipfs/${seg}?token=${other}`), 403, 'a segment with a watch grant for another stream');
    assert.equal(await status(`/ipfs/${archive.vod}/vod.m3u8?token=${other}`), 403, 'a path below the VOD root with another grant');
    const ok = await server.fetch(`/ipfs/${seg}?token=${watcher}`);
    assert.equal(ok.status, 200, 'a segment with ?token=');
    assert.match(ok.headers.get('cache-control'), /^private,/, 'not cacheable by shared caches');
    assert.equal(await status(`/ipfs/${seg}`, { Authorization: `Bearer ${watcher}` }), 200, 'a segment with a Bearer header');
    assert.equal(await status(`/ipfs/${archive.vod}?format=car&token=${watcher}`), 200, 'the VOD as a CAR');

    // The playlist hands the token on: every segment URI carries it.
    const master = await (await server.fetch(`/replay/${stream}/vod.m3u8`, { headers: { Authorization: `Bearer ${watcher}` } })).text();
    const variantUris = master.split('\n').filter((l) => l && !l.startsWith('#') && !l.startsWith('/ipfs/'));
    assert.ok(variantUris.every((u) => u.endsWith(`?token=${watcher}`)), `every variant URI carries the token\n${master}`);
    const playlist = await mediaPlaylistText(server, `/replay/${stream}/vod.m3u8`, { headers: { Authorization: `Bearer ${watcher}` } });
    const uris = playlist.split('\n').filter((l) => l.startsWith('/ipfs/'));
    assert.ok(uris.length >= 3 && uris.every((u) => u.endsWith(`?token=${watcher}`)), playlist);

    // The SDK with the watch token plays the VOD (hls.js fetches the segments through the gateway);
    // without a token it is refused with the status.
    const view = await h.browser('watch-auth-vod');
    const page = await view.page();
    await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
    const results = await page.evaluate(async ({ name, token }) => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const video = document.createElement('video');
      video.id = 'vod';
      video.muted = true;
      document.body.append(video);
      let refused = null;
      try {
        await new Relaycast().vod(name, document.createElement('video'));
      } catch (err) {
        refused = { name: err.name, status: err.status };
      }
      const p = await new Relaycast(undefined, { token }).vod(name, video);
      return { engine: p.engine, refused };
    }, { name: stream, token: watcher });
    h.note(`watch-auth vod: ${JSON.stringify(results)}`);
    assert.deepEqual(results.refused, { name: 'RelaycastError', status: 401 });
    await assertPlays(page, 'VOD with a watch token', { selector: '#vod' });
  });
});
