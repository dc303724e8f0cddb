// End-to-end: the archive records every simulcast layer of a Chromium H264 publisher (the
// streamer page's default simulcast q/h/f): the highest as the main rendition, every lower one as
// a rendition of its own. While live, /replay/<stream>/vod.m3u8 is a multivariant playlist (one
// EXT-X-STREAM-INF per recorded layer, highest first, each a media playlist of /ipfs/ fMP4
// segments); hls.js plays it in Chromium starting on the top level and, once the page's network is
// throttled through the DevTools protocol, switches down to a lower-bandwidth level and keeps
// playing (the publisher keeps running: this is the live EVENT playlist). After the publisher
// stops, the VOD root holds master.m3u8 and a directory per lower rendition.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, publisherStats } from './harness.mjs';
import path from 'node:path';
import fs from 'node:fs';
import { archiveOf, parsePlaylist, waitForVod, fetchFile, fetchCar, ipfsCar, ffprobe, checkDecodes, tempDir } from './archive-util.mjs';

const TOKEN = 'e2e-renditions-token';
const STREAM = 'renditions';
const VOD = `/replay/${STREAM}/vod.m3u8`;

/** The attributes of an HLS attribute list (`A=1,B="x,y"`). */
function attrs(list) {
  const out = {};
  for (const m of list.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) out[m[1]] = m[2].replace(/^"(.*)"$/, '$1');
  return out;
}

/** The variants of a multivariant playlist, in order: { bandwidth, resolution, codecs, uri, line }. */
function parseMultivariant(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines[0] !== '#EXTM3U') throw new Error(`playlist does not start with #EXTM3U:\n${text}`);
  const variants = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^#EXT-X-STREAM-INF:(.*)$/.exec(lines[i]);
    if (!m) continue;
    const uri = lines[i + 1];
    if (!uri || uri.startsWith('#')) throw new Error(`EXT-X-STREAM-INF at line ${i + 1} is not followed by a URI:\n${text}`);
    const a = attrs(m[1]);
    variants.push({ bandwidth: Number(a.BANDWIDTH), resolution: a.RESOLUTION ?? null, codecs: a.CODECS ?? null, uri, line: lines[i] });
    i++;
  }
  return variants;
}

/** GET `p` on the node; { status, text }. */
async function getText(server, p) {
  const r = await server.fetch(p);
  return { status: r.status, text: await r.text() };
}

/**
 * A consistent snapshot of the recording: the archive API before and after fetching vod.m3u8
 * and every variant's media playlist (so that a rendition added in between is not half seen).
 */
async function snapshot(server) {
  const before = await archiveOf(server, STREAM);
  const master = await getText(server, VOD);
  const variants = master.text.includes('#EXT-X-STREAM-INF') ? parseMultivariant(master.text) : [];
  for (const v of variants) {
    v.url = new URL(v.uri, server.url(VOD)).toString();
    const r = await getText(server, v.url);
    v.status = r.status;
    v.text = r.text;
  }
  const after = await archiveOf(server, STREAM);
  const same = before.layer === after.layer && JSON.stringify(before.renditions) === JSON.stringify(after.renditions);
  return { archive: after, same, master, variants };
}

test('simulcast renditions: multivariant playlists, hls.js ABR down-switch under a throttled network, VOD master.m3u8', { timeout: 240000 }, async () => {
  const h = new Harness('renditions');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('archive', async () => (await server.fetch(`/api/streams/${STREAM}/archive`)).text());
    h.onFailure('vod.m3u8 and its variants now', async () => {
      const s = await snapshot(server);
      return [`GET ${VOD}\n${s.master.text}`, ...s.variants.map((v) => `GET ${v.url} -> ${v.status}\n${v.text}`)].join('\n----\n');
    });

    // 1. The publisher: H264 simulcast from the streamer page (it asks the fake camera for
    // 1280x720, so Chromium sends all three layers: 320x180, 640x360, 1280x720).
    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher stats', () => publisherStats(pubPage));
    await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&codec=h264&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    const t0 = Date.now();

    // 2. A lower rendition and 3 segments of the main one, then every variant with segments.
    const first = await waitFor(async () => {
      const a = await archiveOf(server, STREAM);
      return a.renditions?.length >= 1 && a.segments.length >= 3 && a;
    }, { timeout: 40000, interval: 500, what: `the archive of ${STREAM} to list a rendition and 3 segments of the main one` });
    h.note(`archive after ${Date.now() - t0} ms: layer ${first.layer}, renditions ${JSON.stringify(first.renditions)}, ${first.segments.length} segments`);
    let last = null;
    const snap = await waitFor(async () => {
      const s = await snapshot(server);
      last = { same: s.same, master: s.master.text, variants: s.variants.map((v) => ({ uri: v.uri, status: v.status, segments: (v.text.match(/^#EXTINF:/gm) ?? []).length })) };
      return s.same && s.variants.length > 0 && s.variants.every((v) => v.status === 200 && /^#EXTINF:/m.test(v.text)) && s;
    }, { timeout: 15000, interval: 500, what: 'every variant of vod.m3u8 to list a segment' }).catch((err) => {
      throw new Error(`${err.message}\nlast seen: ${JSON.stringify(last, null, 2)}`);
    });
    const { archive, variants } = snap;
    const layers = await publisherStats(pubPage);
    h.note(`publisher layers: ${JSON.stringify(layers?.layers)}`);
    h.note(`vod.m3u8:\n${snap.master.text}`);
    console.log(`# renditions publisher layers: ${Object.entries(layers?.layers ?? {}).map(([rid, l]) => `${rid} ${l.width}x${l.height}`).join(', ')}; `
      + `archive layer ${archive.layer}, renditions ${JSON.stringify(archive.renditions)} (${Date.now() - t0} ms after connecting)`);

    assert.ok(['f', 'h'].includes(archive.layer), `the main rendition is a layer above the lowest (${archive.layer})`);
    assert.match(snap.master.text, /^#EXTM3U\n/, 'vod.m3u8 starts with #EXTM3U');
    assert.equal(variants.length, 1 + archive.renditions.length, `one EXT-X-STREAM-INF per recorded layer (main ${archive.layer} + ${archive.renditions.join(',')})\n${snap.master.text}`);
    assert.deepEqual(variants.map((v) => v.uri), [archive.layer, ...archive.renditions].map((rid) => `vod/${rid}.m3u8`),
      `variant URIs: the main rendition's first, then the renditions'\n${snap.master.text}`);
    for (const v of variants) {
      assert.ok(Number.isInteger(v.bandwidth) && v.bandwidth > 0, `BANDWIDTH > 0: ${v.line}`);
      assert.match(String(v.codecs), /avc1\./, `CODECS names avc1: ${v.line}`);
      assert.match(String(v.resolution), /^\d+x\d+$/, `RESOLUTION present: ${v.line}`);
    }
    // The order of the variants (highest first) does not change what hls.js plays (it sorts its
    // levels itself): checked at the end, so that a wrong order still lets the rest run.
    const orderErrors = [];
    const checkOrder = (what, list, text) => {
      for (let i = 1; i < list.length; i++) {
        if (!(list[i].bandwidth < list[i - 1].bandwidth)) orderErrors.push(`${what}: bandwidths do not descend (highest first) at ${list[i].uri}\n${text}`);
      }
    };
    checkOrder('vod.m3u8 while live', variants, snap.master.text);
    for (const v of variants) {
      const pl = parsePlaylist(v.text);
      assert.ok(pl.segments.length >= 1, `${v.uri} lists #EXTINF segments\n${v.text}`);
      assert.ok(pl.segments.every((s) => s.uri.startsWith('/ipfs/')), `${v.uri} segments are /ipfs/ URIs`);
      assert.match(String(pl.map), /^\/ipfs\/b[a-z2-7]+$/, `${v.uri} has an EXT-X-MAP of an /ipfs/ init segment\n${v.text}`);
      assert.equal(pl.endList, false, `${v.uri} is not ended while live`);
      v.segments = pl.segments.length;
    }
    const figures = variants.map((v) => `${v.uri.replace(/^vod\/|\.m3u8$/g, '')} ${v.bandwidth} bps ${v.resolution}`);
    console.log(`# renditions: variants ${figures.join(' | ')}; segments ${variants.map((v) => v.segments).join('/')}`);

    // 3. hls.js plays the (live, EVENT) multivariant playlist from its top level; then the
    // page's network is throttled and it must switch down.
    const view = await h.browser('abr');
    const page = await view.page();
    const state = () => page.evaluate(() => {
      const v = document.getElementById('abr');
      const hls = window.abrHls;
      return v && hls && {
        currentTime: v.currentTime, readyState: v.readyState, paused: v.paused, videoWidth: v.videoWidth, videoHeight: v.videoHeight,
        frames: v.getVideoPlaybackQuality().totalVideoFrames, error: v.error?.message ?? null,
        buffered: [...Array(v.buffered.length).keys()].map((i) => [+v.buffered.start(i).toFixed(2), +v.buffered.end(i).toFixed(2)]),
        currentLevel: hls.currentLevel, loadLevel: hls.loadLevel, nextLoadLevel: hls.nextLoadLevel, autoLevelEnabled: hls.autoLevelEnabled,
        bandwidthEstimate: Math.round(hls.bandwidthEstimate), top: window.abr.top,
        levels: hls.levels.map((l) => ({ bitrate: l.bitrate, width: l.width, height: l.height, url: typeof l.url === 'string' ? l.url : (l.url?.[0] ?? l.uri) })),
        switched: window.abr.switched, aborted: window.abr.aborted, errors: window.abr.errors.slice(-10),
      };
    });
    h.onFailure('hls.js state', state);
    const frags = [];
    page.on('requestfinished', async (req) => {
      if (!/\/ipfs\/|\.m3u8/.test(req.url())) return;
      const t = req.timing();
      frags.push(`${new Date().toISOString()} ${req.url().replace(server.base, '')} ${Math.round(t.responseEnd)} ms`);
      if (frags.length > 30) frags.shift();
    });
    h.onFailure('last requests of the hls.js page', () => frags.join('\n'));
    await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
    await page.addScriptTag({ url: server.url('/sdk/hls.min.js') });
    await page.evaluate((src) => {
      const video = document.createElement('video');
      video.id = 'abr';
      video.muted = true;
      video.playsInline = true;
      document.body.append(video);
      const { Hls } = window;
      window.abr = { switched: [], aborted: [], errors: [], top: null };
      // hls.js sorts its levels by ascending resolution and bandwidth, whatever the playlist's
      // order (its level 0 is the lowest): it is started on its highest level (found once the
      // manifest is parsed) and switches automatically by bandwidth from there.
      const hls = new Hls({ autoStartLoad: false, abrEwmaDefaultEstimate: 5e6, capLevelToPlayerSize: false });
      window.abrHls = hls;
      hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => {
        const top = d.levels.reduce((best, l, i) => (l.bitrate > d.levels[best].bitrate ? i : best), 0);
        window.abr.top = top;
        hls.startLevel = top;
        hls.startLoad();
        video.play().catch((e) => window.abr.errors.push({ play: String(e) }));
      });
      hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => window.abr.switched.push({
        level: d.level, bitrate: hls.levels[d.level]?.bitrate, t: performance.now(), frames: video.getVideoPlaybackQuality().totalVideoFrames, currentTime: video.currentTime,
      }));
      hls.on(Hls.Events.FRAG_LOAD_EMERGENCY_ABORTED, (_, d) => window.abr.aborted.push({ sn: d.frag?.sn, level: d.frag?.level, t: performance.now() }));
      hls.on(Hls.Events.ERROR, (_, d) => window.abr.errors.push({
        type: d.type, details: d.details, fatal: d.fatal, error: d.error ? String(d.error.message ?? d.error).slice(0, 200) : null,
        url: d.frag?.url ?? d.context?.url ?? d.url ?? null, t: performance.now(),
      }));
      hls.loadSource(src);
      hls.attachMedia(video);
    }, server.url(VOD));

    const levels = await waitFor(async () => {
      const s = await state();
      return s?.top != null && s.levels.length > 0 && s.levels;
    }, { timeout: 15000, what: 'hls.js to parse the multivariant playlist' });
    const top = (await state()).top;
    assert.equal(levels.length, variants.length, `hls.js sees every variant (${JSON.stringify(levels)})`);
    assert.ok(levels[top].url.endsWith(`/replay/${STREAM}/${variants[0].uri}`), `hls.js's top level is the first variant, ${variants[0].uri} (${levels[top].url})`);
    // Playing the top level, time advancing.
    const onTop = await waitFor(async () => {
      const s = await state();
      return s.currentLevel === top && s.readyState >= 2 && s.videoWidth > 0 && s;
    }, { timeout: 20000, what: `hls.js to play the top level ${top}` });
    const topPlaying = await waitFor(async () => {
      const s = await state();
      return s.currentLevel === top && s.currentTime >= onTop.currentTime + 1 && s;
    }, { timeout: 15000, what: `currentTime to advance 1 s past ${onTop.currentTime} on the top level` });
    h.note(`top level playing: ${JSON.stringify({ currentTime: topPlaying.currentTime, frames: topPlaying.frames, size: `${topPlaying.videoWidth}x${topPlaying.videoHeight}` })}`);

    // Throttle: between what the lowest variant needs and well below the top one (the
    // bandwidths hls.js took from the playlist it loaded).
    const topBps = levels[top].bitrate;
    const lowBps = Math.min(...levels.map((l) => l.bitrate));
    const throughput = Math.round(Math.min(lowBps * 1.5, topBps * 0.6) / 8);
    assert.ok(throughput * 8 >= lowBps * 1.15, `a throttle (${throughput * 8} bps) above the lowest variant's ${lowBps} bps and at most 60 % of the top variant's ${topBps} bps`);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 50, downloadThroughput: throughput, uploadThroughput: -1 });
    const throttledAt = await page.evaluate(() => performance.now());

    // A switch to a lower-bandwidth level, and frames decoded after it.
    const down = await waitFor(async () => {
      const sw = await page.evaluate((t) => window.abr.switched.filter((s) => s.t >= t), throttledAt);
      return sw.find((s) => s.bitrate < levels[top].bitrate);
    }, { timeout: 40000, interval: 250, what: `hls.js to switch below the top level's ${levels[top].bitrate} bps after throttling to ${throughput} B/s` });
    const after = await waitFor(async () => {
      const s = await state();
      return s.frames >= down.frames + 30 && s.currentTime >= down.currentTime + 1 && s;
    }, { timeout: 20000, what: `frames decoded past ${down.frames} and time advancing past ${down.currentTime} after switching to level ${down.level}` });
    const end = await state();
    const fatal = end.errors.filter((e) => e.fatal);
    const stalls = end.errors.filter((e) => e.details === 'bufferStalledError').length;
    const describe = (i) => `${i} (${levels[i].width}x${levels[i].height}, ${levels[i].bitrate} bps, ${levels[i].url.replace(/^.*\/vod\//, 'vod/')})`;
    console.log(`# renditions: switch from level ${describe(top)} -> level ${describe(down.level)} ${((down.t - throttledAt) / 1000).toFixed(2)} s after throttling to ${throughput} B/s; `
      + `${end.aborted.length} emergency abort(s), ${stalls} buffer stall(s); frames ${down.frames} at the switch -> ${after.frames}, video ${after.videoWidth}x${after.videoHeight}`);
    assert.equal(fatal.length, 0, `hls.js reported no fatal error: ${JSON.stringify(fatal)}`);
    assert.ok(after.frames > down.frames, 'frames keep decoding after the down-switch');
    await cdp.detach().catch(() => {});

    // 4. Stop publishing: the VOD root holds master.m3u8 and a directory per lower rendition.
    await pubPage.click('#stop');
    const ended = await waitForVod(server, STREAM);
    const master = await getText(server, `/ipfs/${ended.vod}/master.m3u8`);
    assert.equal(master.status, 200, `GET /ipfs/${ended.vod}/master.m3u8 -> ${master.status}: ${master.text}`);
    const mv = parseMultivariant(master.text);
    assert.deepEqual(mv.map((v) => v.uri), ['vod.m3u8', ...ended.renditions.map((rid) => `${rid}/vod.m3u8`)],
      `master.m3u8 lists vod.m3u8 and each rendition's <rid>/vod.m3u8\n${master.text}`);
    assert.ok(ended.renditions.length >= 1, `renditions at the end: ${JSON.stringify(ended.renditions)}`);
    for (const v of mv) assert.ok(v.bandwidth > 0 && /avc1\./.test(String(v.codecs)) && /^\d+x\d+$/.test(String(v.resolution)), `master.m3u8 variant: ${v.line}`);
    checkOrder(`/ipfs/${ended.vod}/master.m3u8`, mv, master.text);
    const rid = ended.renditions.at(-1);
    const lower = await getText(server, `/ipfs/${ended.vod}/${rid}/vod.m3u8`);
    assert.equal(lower.status, 200, `GET /ipfs/${ended.vod}/${rid}/vod.m3u8 -> ${lower.status}: ${lower.text}`);
    const lowerPl = parsePlaylist(lower.text);
    assert.equal(lowerPl.endList, true, `${rid}/vod.m3u8 is ended\n${lower.text}`);
    assert.equal(lowerPl.type, 'VOD', `${rid}/vod.m3u8 is a VOD playlist`);
    assert.ok(lowerPl.segments.length >= 3, `${rid}/vod.m3u8 lists the rendition's segments (${lowerPl.segments.length})`);
    assert.ok(lowerPl.map, `${rid}/vod.m3u8 has an EXT-X-MAP`);
    console.log(`# renditions vod ${ended.vod}: master.m3u8 ${mv.map((v) => `${v.uri} ${v.bandwidth} bps ${v.resolution}`).join(' | ')}; `
      + `${rid}/vod.m3u8 ${lowerPl.segments.length} segments, main ${ended.segments.length}; ${((Date.now() - t0) / 1000).toFixed(1)} s after connecting`);
    // 5. Every layer's files: its init and segments from the VOD directory, assembled, are H264
    // of its size plus Opus and decode cleanly (ffprobe, ffmpeg); ipfs-car lists them in the CAR.
    const tmp = tempDir('renditions');
    try {
      const carFile = path.join(tmp, 'vod.car');
      fs.writeFileSync(carFile, await fetchCar(server, ended.vod));
      const ls = await ipfsCar(['ls', carFile]);
      assert.equal(ls.code, 0, `ipfs-car ls: ${ls.stderr}`);
      for (const r of ended.renditions) assert.match(ls.stdout, new RegExp(`${r}/segment-000000\\.m4s`), `the CAR holds ${r}'s segments\n${ls.stdout}`);
      const sizes = [];
      for (const v of mv) {
        const pl = parsePlaylist((await getText(server, `/ipfs/${ended.vod}/${v.uri}`)).text);
        const parts = [await fetchFile(server, pl.map.replace('/ipfs/', ''))];
        for (const seg of pl.segments) parts.push(await fetchFile(server, seg.cid));
        const file = path.join(tmp, `${v.uri.replace('/', '-')}.mp4`);
        fs.writeFileSync(file, Buffer.concat(parts.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))));
        const probe = await ffprobe(file);
        const video = probe.streams.find((x) => x.codec_type === 'video');
        const audio = probe.streams.find((x) => x.codec_type === 'audio');
        assert.equal(video?.codec_name, 'h264', `${v.uri}: H264 video (${JSON.stringify(probe.streams)})`);
        assert.equal(audio?.codec_name, 'opus', `${v.uri}: Opus audio`);
        assert.equal(`${video.width}x${video.height}`, v.resolution, `${v.uri}: the frames are the RESOLUTION the playlist gives`);
        assert.ok(Number(video.nb_read_frames) > 30, `${v.uri}: ${video.nb_read_frames} frames`);
        const dec = await checkDecodes(file);
        assert.equal(dec.plain.code, 0, `${v.uri}: ffmpeg decodes it: ${dec.plain.stderr}`);
        assert.deepEqual(dec.other, [], `${v.uri}: ffmpeg reports no decoding errors`);
        sizes.push(`${v.uri} ${video.width}x${video.height} ${video.nb_read_frames} frames`);
      }
      console.log(`# renditions files: ${sizes.join(' | ')} (ffprobe, ffmpeg decode, ipfs-car ls)`);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    assert.deepEqual(orderErrors, [], `multivariant playlists list their variants highest bandwidth first (archive renditions ${JSON.stringify(ended.renditions)})`);
  });
});
