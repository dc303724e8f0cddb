// End-to-end: a standard open-source DASH player plays the archive. A VP8 stream (the streamer
// page's default, recorded in WebM) is published from Chromium; while it is live dash.js (served
// by the node at /sdk/dash.all.min.js) plays /replay/{stream}/live.mpd, and once the stream ended
// it plays /replay/{stream}/vod.mpd from the start. An H264 recording (fMP4) plays from its
// vod.mpd too. The MPDs are parsed as XML and checked against the archive API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './harness.mjs';
import { archiveOf, waitForVod } from './archive-util.mjs';

const TOKEN = 'e2e-dash-token';

/** In-page: the state of a <video> and of the dash.js player driving it. */
const videoState = (page, selector) => page.evaluate((sel) => {
  const v = document.querySelector(sel);
  if (!v) return null;
  const q = v.getVideoPlaybackQuality?.();
  const p = window.dashPlayers?.[sel];
  let latency = null;
  try {
    latency = p?.isDynamic() ? p.getCurrentLiveLatency() : null;
  } catch { /* not ready */ }
  return {
    currentTime: v.currentTime, duration: v.duration, videoWidth: v.videoWidth, videoHeight: v.videoHeight, readyState: v.readyState,
    paused: v.paused, frames: q?.totalVideoFrames ?? 0, error: v.error?.message ?? null, latency,
    buffered: Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
  };
}, selector);

async function publish(h, server, stream, codec) {
  const pub = await h.browser(`publisher-${codec}`);
  const page = await pub.page();
  await page.goto(server.url(`/streamer.html?stream=${stream}&codec=${codec}&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
  return page;
}

/**
 * GETs an MPD, checks its headers, parses it as XML in `page` and returns its shape: MPD
 * attributes, per Period the Initialization URL, the timeline and the segment URLs.
 */
async function fetchMpd(server, page, path) {
  const resp = await server.fetch(path);
  const text = await resp.text();
  assert.equal(resp.status, 200, `GET ${path}: ${text}`);
  assert.equal(resp.headers.get('content-type'), 'application/dash+xml', `content type of ${path}`);
  assert.equal(resp.headers.get('cache-control'), 'no-cache', `cache control of ${path}`);
  for (const needle of ['<MPD', 'SegmentTimeline', 'codecs="']) assert.ok(text.includes(needle), `${path} has ${needle}:\n${text}`);
  const shape = await page.evaluate((xml) => {
    const doc = new DOMParser().parseFromString(xml, 'application/xml');
    const err = doc.querySelector('parsererror');
    if (err) return { error: err.textContent };
    const mpd = doc.documentElement;
    const attrs = Object.fromEntries(Array.from(mpd.attributes, (a) => [a.name, a.value]));
    const periods = Array.from(mpd.getElementsByTagName('Period'), (p) => {
      const set = p.getElementsByTagName('AdaptationSet')[0];
      const list = p.getElementsByTagName('SegmentList')[0];
      return {
        id: p.getAttribute('id'),
        start: p.getAttribute('start'),
        mimeType: set?.getAttribute('mimeType'),
        codecs: set?.getAttribute('codecs'),
        bandwidth: p.getElementsByTagName('Representation')[0]?.getAttribute('bandwidth'),
        timescale: list?.getAttribute('timescale'),
        pto: Number(list?.getAttribute('presentationTimeOffset')),
        init: list?.getElementsByTagName('Initialization')[0]?.getAttribute('sourceURL'),
        timeline: Array.from(list?.getElementsByTagName('S') ?? [], (s) => [Number(s.getAttribute('t')), Number(s.getAttribute('d'))]),
        urls: Array.from(list?.getElementsByTagName('SegmentURL') ?? [], (s) => s.getAttribute('media')),
      };
    });
    return { root: mpd.localName, ns: mpd.namespaceURI, attrs, periods };
  }, text);
  assert.equal(shape.error, undefined, `${path} is not well-formed XML: ${shape.error}\n${text}`);
  assert.equal(shape.root, 'MPD');
  assert.equal(shape.ns, 'urn:mpeg:dash:schema:mpd:2011');
  return { text, ...shape };
}

/** Checks an MPD's segments against the archive: same CIDs in order, timeline from their wall-clock starts. */
function checkAgainstArchive(mpd, archive, { codecs, mimeType, all }) {
  const origin = archive.segments[0].start_unix_ms;
  const listed = mpd.periods.flatMap((p) => p.urls.map((u, i) => ({ url: u, s: p.timeline[i], p })));
  const expected = all ? archive.segments : archive.segments.slice(-listed.length);
  assert.ok(listed.length >= 1 && listed.length === expected.length, `MPD lists ${listed.length} segments, archive ${archive.segments.length}`);
  listed.forEach(({ url, s, p }, i) => {
    const seg = expected[i];
    assert.equal(url, `/ipfs/${seg.cid}`);
    assert.deepEqual(s, [seg.start_unix_ms - origin, Math.round(seg.duration * 1000)], `timeline entry of segment ${seg.seq}`);
    assert.equal(p.init, `/ipfs/${seg.init ?? archive.init}`);
  });
  for (const p of mpd.periods) {
    assert.equal(p.codecs, codecs);
    assert.equal(p.mimeType, mimeType);
    assert.equal(p.timescale, '1000');
    assert.ok(Number(p.bandwidth) > 0, 'a bandwidth');
    assert.equal(p.urls.length, p.timeline.length, 'one SegmentURL per S');
  }
}

/** Creates a muted <video id=`id`> and plays `url` in it with dash.js (loaded from the node). */
async function playDash(page, id, url) {
  await page.evaluate(({ id, url }) => {
    const video = document.createElement('video');
    video.id = id;
    video.muted = true;
    video.playsInline = true;
    document.body.append(video);
    const player = window.dashjs.MediaPlayer().create();
    player.updateSettings({ debug: { logLevel: window.dashjs.Debug.LOG_LEVEL_WARNING } });
    window.dashErrors ??= [];
    player.on(window.dashjs.MediaPlayer.events.ERROR, (e) => window.dashErrors.push({ id, error: e.error ? { code: e.error.code, message: e.error.message } : String(e) }));
    player.on(window.dashjs.MediaPlayer.events.PLAYBACK_ERROR, (e) => window.dashErrors.push({ id, playback: String(e.error?.message ?? e.error) }));
    player.initialize(video, url, true);
    window.dashPlayers ??= {};
    window.dashPlayers[`#${id}`] = player;
  }, { id, url });
}

/**
 * Waits until the video has a picture, then until `currentTime` has advanced by `by` seconds
 * with more frames decoded; returns the two samples.
 */
async function assertPlays(page, selector, what, { by = 2, timeout = 20000 } = {}) {
  const a = await waitFor(async () => {
    const s = await videoState(page, selector);
    return s && s.videoWidth > 0 && s.readyState >= 2 && !s.paused && s;
  }, { timeout, what: `${what}: a playing video with dimensions` });
  const b = await waitFor(async () => {
    const s = await videoState(page, selector);
    return s.currentTime >= a.currentTime + by && s.frames > a.frames && s;
  }, { timeout, what: `${what}: currentTime to advance ${by} s past ${a.currentTime.toFixed(2)} with frames decoded` });
  assert.equal(b.error, null, `${what}: no media error`);
  assert.deepEqual(await page.evaluate(() => window.dashErrors), [], `${what}: dash.js reported no error`);
  return { a, b };
}

/** The playback span of an archive in ms: first segment's start to the last one's end. */
const spanMs = (archive) => {
  const last = archive.segments.at(-1);
  return last.start_unix_ms + Math.round(last.duration * 1000) - archive.segments[0].start_unix_ms;
};

test('dash.js plays a VP8 (WebM) recording live from live.mpd and after the end from vod.mpd; an H264 (fMP4) one from vod.mpd', { timeout: 150000 }, async () => {
  const h = new Harness('dash.js playback');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    const stream = 'dash-vp8';
    h.onFailure('archive', async () => (await server.fetch(`/api/streams/${stream}/archive`)).text());
    h.onFailure('live.mpd', async () => (await server.fetch(`/replay/${stream}/live.mpd`)).text());
    h.onFailure('vod.mpd', async () => (await server.fetch(`/replay/${stream}/vod.mpd`)).text());
    const pubPage = await publish(h, server, stream, 'vp8');
    await waitFor(async () => (await archiveOf(server, stream)).segments.length >= 3, { timeout: 30000, interval: 250, what: `3 archived segments of ${stream}` });

    const view = await h.browser('dash');
    const page = await view.page();
    for (const id of ['dash-live', 'dash-vod', 'dash-h264']) h.onFailure(`#${id}`, () => videoState(page, `#${id}`));
    h.onFailure('dash.js errors', () => page.evaluate(() => window.dashErrors));
    await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
    await page.addScriptTag({ url: server.url('/sdk/dash.all.min.js') });
    assert.equal(await page.evaluate(() => typeof window.dashjs?.MediaPlayer), 'function', '/sdk/dash.all.min.js defines window.dashjs');

    // The live MPD: dynamic, the newest segments, VP8 + Opus in WebM.
    // (The archive read before and after the MPD: a segment may be stored in between.)
    const { live, archived } = await waitFor(async () => {
      const before = await archiveOf(server, stream);
      const mpd = await fetchMpd(server, page, `/replay/${stream}/live.mpd`);
      const after = await archiveOf(server, stream);
      return before.segments.length === after.segments.length && { live: mpd, archived: after };
    }, { timeout: 10000, interval: 100, what: 'live.mpd and the archive API to agree' });
    h.note(`live.mpd:\n${live.text}`);
    assert.ok(live.text.includes('codecs="vp8,opus"'), live.text);
    assert.equal(live.attrs.type, 'dynamic');
    for (const a of ['availabilityStartTime', 'publishTime', 'minimumUpdatePeriod', 'timeShiftBufferDepth', 'suggestedPresentationDelay', 'minBufferTime']) {
      assert.ok(live.attrs[a], `live.mpd has @${a}`);
    }
    assert.equal(Date.parse(live.attrs.availabilityStartTime), archived.segments[0].start_unix_ms, 'availabilityStartTime is the first segment\'s start');
    checkAgainstArchive(live, archived, { codecs: 'vp8,opus', mimeType: 'video/webm', all: false });

    await playDash(page, 'dash-live', `/replay/${stream}/live.mpd`);
    const { a: la, b: lb } = await assertPlays(page, '#dash-live', 'live.mpd');
    assert.equal(await page.evaluate(() => window.dashPlayers['#dash-live'].isDynamic()), true, 'dash.js plays live.mpd as a live stream');
    assert.ok(Number.isFinite(lb.latency) && lb.latency > 0 && lb.latency < 20, `live latency ${lb.latency} s`);
    console.log(`# live.mpd: ${la.currentTime.toFixed(2)} -> ${lb.currentTime.toFixed(2)} s, ${lb.videoWidth}x${lb.videoHeight}, ${lb.frames} frames, latency ${lb.latency.toFixed(2)} s`);

    // The stream ends: the live player is let go, and the VOD MPD becomes static.
    await pubPage.click('#stop');
    const vp8 = await waitForVod(server, stream);
    await page.evaluate(() => window.dashPlayers['#dash-live'].reset());
    const vod = await fetchMpd(server, page, `/replay/${stream}/vod.mpd`);
    assert.ok(vod.text.includes('codecs="vp8,opus"'), vod.text);
    assert.equal(vod.attrs.type, 'static');
    assert.equal(vod.attrs.mediaPresentationDuration, `PT${(spanMs(vp8) / 1000).toFixed(3)}S`);
    checkAgainstArchive(vod, vp8, { codecs: 'vp8,opus', mimeType: 'video/webm', all: true });
    // The same recording by id: the same static MPD.
    const recs = await (await server.fetch(`/api/streams/${stream}/recordings`)).json();
    assert.equal(recs.recordings.length, 1);
    const byId = await fetchMpd(server, page, `/replay/${stream}/${recs.recordings[0].id}/vod.mpd`);
    assert.equal(byId.text, vod.text, 'the per-recording vod.mpd of the only recording is the stream\'s vod.mpd');

    // The H264 publisher records while the VP8 VOD plays.
    const h264Stream = 'dash-h264';
    h.onFailure('h264 archive', async () => (await server.fetch(`/api/streams/${h264Stream}/archive`)).text());
    const h264Pub = await publish(h, server, h264Stream, 'h264');

    await playDash(page, 'dash-vod', `/replay/${stream}/vod.mpd`);
    const { a: va, b: vb } = await assertPlays(page, '#dash-vod', 'vod.mpd');
    assert.ok(va.currentTime < 3, `the VOD plays from its start (${va.currentTime})`);
    assert.equal(await page.evaluate(() => window.dashPlayers['#dash-vod'].isDynamic()), false);
    assert.ok(Math.abs(vb.duration - spanMs(vp8) / 1000) < 0.5, `the element's duration ${vb.duration} is the recording's ${spanMs(vp8) / 1000}`);
    console.log(`# vod.mpd (VP8): ${va.currentTime.toFixed(2)} -> ${vb.currentTime.toFixed(2)} s of ${vb.duration.toFixed(3)}, ${vb.videoWidth}x${vb.videoHeight}, ${vb.frames} frames`);
    await page.evaluate(() => window.dashPlayers['#dash-vod'].reset());

    // H264 in fMP4.
    await waitFor(async () => (await archiveOf(server, h264Stream)).segments.length >= 3, { timeout: 30000, interval: 250, what: `3 archived segments of ${h264Stream}` });
    await h264Pub.click('#stop');
    const h264 = await waitForVod(server, h264Stream);
    const h264Mpd = await fetchMpd(server, page, `/replay/${h264Stream}/vod.mpd`);
    assert.equal(h264Mpd.attrs.type, 'static');
    checkAgainstArchive(h264Mpd, h264, { codecs: h264.codecs, mimeType: 'video/mp4', all: true });
    assert.match(h264.codecs, /^avc1\.[0-9a-f]{6},opus$/);
    await playDash(page, 'dash-h264', `/replay/${h264Stream}/vod.mpd`);
    const { a: ha, b: hb } = await assertPlays(page, '#dash-h264', 'H264 vod.mpd');
    assert.ok(ha.currentTime < 3, `the H264 VOD plays from its start (${ha.currentTime})`);
    console.log(`# vod.mpd (H264 ${h264.codecs}): ${ha.currentTime.toFixed(2)} -> ${hb.currentTime.toFixed(2)} s, ${hb.videoWidth}x${hb.videoHeight}, ${hb.frames} frames`);
  });
});
