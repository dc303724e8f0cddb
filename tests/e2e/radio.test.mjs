// End-to-end: a radio. Chromium publishes through the SDK a MediaStream with one audio track and
// no video (a 440 Hz WebAudio oscillator); the node records it as audio only, Opus in fMP4 (init
// and ~2 s segments, a low-latency live playlist), from about 2 s after the audio began. The
// files fetched through /ipfs are one Opus stream that ffmpeg decodes cleanly and that is not
// silent; the SDK replays the archive while live (`rc.replay`) and, once the publisher stopped and
// the VOD root is built, plays the VOD (`rc.vod`) in an <audio> element.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, waitFor } from './harness.mjs';
import {
  requireTools, archiveOf, assembleRecording, ffprobe, packetSpan, checkDecodes, fetchFile, parsePlaylist, run, tempDir, waitForVod,
} from './archive-util.mjs';

const TOKEN = 'e2e-radio-token';
const STREAM = 'radio';

requireTools();

/** In-page: the state of the <audio> element `selector`. */
const audioState = (page, selector) => page.evaluate((sel) => {
  const a = document.querySelector(sel);
  return { currentTime: a.currentTime, readyState: a.readyState, paused: a.paused, duration: a.duration, error: a.error?.message ?? null };
}, selector);

/** Waits until the element's `currentTime` has advanced by `by` seconds; returns both samples. */
async function assertPlays(page, selector, what, { by = 1.5, timeout = 20000 } = {}) {
  const a = await waitFor(async () => {
    const s = await audioState(page, selector);
    return s.readyState >= 2 && !s.paused && s;
  }, { timeout, what: `${what}: audio element playing` });
  const b = await waitFor(async () => {
    const s = await audioState(page, selector);
    if (s.error) throw new Error(`${what}: the element failed: ${s.error}`);
    return s.currentTime >= a.currentTime + by && s;
  }, { timeout, what: `${what}: currentTime to advance ${by} s past ${a.currentTime}` });
  return { a, b };
}

/** ffmpeg's volumedetect over a file: { mean, max } in dBFS. */
async function loudness(file) {
  const r = await run('ffmpeg', ['-nostdin', '-hide_banner', '-i', file, '-af', 'volumedetect', '-f', 'null', '-'], { timeoutMs: 60000 });
  const mean = Number(/mean_volume: (-?[0-9.]+) dB/.exec(r.stderr)?.[1]);
  const max = Number(/max_volume: (-?[0-9.]+) dB/.exec(r.stderr)?.[1]);
  if (r.code !== 0 || !Number.isFinite(mean)) throw new Error(`ffmpeg volumedetect ${file} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return { mean, max };
}

/**
 * Joins the init and media segments of `archive` into one file and checks it: exactly one stream,
 * Opus audio, a clean decode, a duration within 0.5 s of the segments', not silent. Returns figures.
 */
async function checkRecording(server, archive, file, what) {
  const { inits, bytes } = await assembleRecording(server, archive, file);
  const probe = await ffprobe(file);
  const segDuration = archive.segments.reduce((t, s) => t + s.duration, 0);
  const duration = Number(probe.format.duration) || await packetSpan(file);
  const figures = {
    segments: archive.segments.length, inits: inits.length, bytes: bytes.length, format: probe.format.format_name,
    streams: probe.streams.map((s) => `${s.codec_type}/${s.codec_name}/${s.nb_read_frames}`), segDuration: +segDuration.toFixed(3), duration,
  };
  assert.equal(inits.length, 1, `${what}: one init segment (${JSON.stringify(figures)})`);
  assert.match(probe.format.format_name, /mp4/, `${what}: ffprobe reads fMP4`);
  assert.equal(probe.streams.length, 1, `${what}: exactly one stream (${JSON.stringify(probe.streams)})`);
  const [audio] = probe.streams;
  assert.equal(audio.codec_type, 'audio', `${what}: the stream is audio`);
  assert.equal(audio.codec_name, 'opus', `${what}: the audio is Opus`);
  assert.ok(Number(audio.nb_read_frames) >= segDuration * 40, `${what}: ${audio.nb_read_frames} Opus frames for ${segDuration.toFixed(2)} s (20 ms each)`);
  assert.ok(Math.abs(duration - segDuration) <= 0.5, `${what}: file duration ${duration} s within 0.5 s of the segments' ${segDuration.toFixed(3)} s`);
  const dec = await checkDecodes(file);
  assert.equal(dec.plain.code, 0, `${what}: ffmpeg -v error -i FILE -f null - exits 0: ${dec.plain.stderr}`);
  assert.deepEqual(dec.other, [], `${what}: ffmpeg reports no decoding errors`);
  assert.equal(dec.exact.code, 0, `${what}: ffmpeg -enc_time_base -1 exits 0: ${dec.exact.stderr}`);
  assert.equal(dec.exact.stderr, '', `${what}: ffmpeg with the stream time base kept prints nothing`);
  // The oscillator plays at half scale (about -9 dBFS mean): the recording is the tone, not silence.
  const level = await loudness(file);
  figures.meanVolume = level.mean;
  assert.ok(level.mean > -30, `${what}: the recording is not silent (mean ${level.mean} dB, max ${level.max} dB)`);
  return figures;
}

test('a radio (audio alone, published through the SDK) is recorded as Opus in fMP4, replayed while live and played as a VOD', { timeout: 180000 }, async () => {
  const h = new Harness('radio');
  const tmp = tempDir('radio');
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN });
      h.onFailure('archive', async () => (await server.fetch(`/api/streams/${STREAM}/archive`)).text());
      h.onFailure('live.m3u8', async () => (await server.fetch(`/replay/${STREAM}/live.m3u8`)).text());
      h.onFailure('vod.m3u8', async () => (await server.fetch(`/replay/${STREAM}/vod.m3u8`)).text());
      h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());

      // The publisher: a 440 Hz tone from WebAudio, audio track only, through the SDK.
      const pub = await h.browser('radio-publisher');
      const pubPage = await pub.page();
      await pubPage.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
      h.onFailure('publisher', () => pubPage.evaluate(() => ({
        state: window.radioSession?.state ?? null, audioContext: window.radioCtx?.state ?? null, stats: window.radioSession?.lastStats ?? null, error: window.radioError ?? null,
      })));
      const published = await pubPage.evaluate(async ({ stream, token }) => {
        const { Relaycast } = await import('/sdk/relaycast.js');
        const ctx = new AudioContext();
        window.radioCtx = ctx;
        const osc = new OscillatorNode(ctx, { type: 'sine', frequency: 440 });
        const gain = new GainNode(ctx, { gain: 0.5 });
        const dest = ctx.createMediaStreamDestination();
        osc.connect(gain).connect(dest);
        osc.start();
        await ctx.resume();
        const ms = dest.stream;
        const kinds = ms.getTracks().map((t) => t.kind);
        window.radioRc = new Relaycast(undefined, { token });
        try {
          window.radioSession = await window.radioRc.publish(stream, ms);
        } catch (err) {
          window.radioError = { name: err?.name, message: err?.message, status: err?.status ?? null };
          return { kinds, error: window.radioError };
        }
        return { kinds, audioContext: ctx.state, error: null };
      }, { stream: STREAM, token: TOKEN });
      h.note(`publish: ${JSON.stringify(published)}`);
      assert.deepEqual(published.kinds, ['audio'], 'the MediaStream has one audio track and no video');
      assert.equal(published.error, null, `the SDK publishes a MediaStream without video (it said: ${JSON.stringify(published.error)})`);
      assert.equal(published.audioContext, 'running', 'the AudioContext runs');
      const connectedAt = await (await pubPage.waitForFunction(
        () => window.radioSession?.state === 'connected' && Date.now(), null, { timeout: 30000, polling: 20 })).jsonValue();

      // Recorded as audio only: Opus, at least 2 segments within 30 s.
      const live = await waitFor(async () => {
        const a = await archiveOf(server, STREAM);
        return a.segments?.length >= 2 && a;
      }, { timeout: 30000, interval: 500, what: `2 archived segments of ${STREAM}` });
      h.note(`live archive: ${JSON.stringify(live)}`);
      assert.equal(live.codecs, 'opus', 'the archive records Opus alone');
      assert.equal(live.ended, false, 'not ended while the publisher is live');
      assert.equal(live.vod, null, 'no VOD root while live');
      assert.ok(live.init, 'the init segment CID is announced');
      live.segments.forEach((s, i) => assert.equal(s.seq, live.segments[0].seq + i, 'sequence numbers are consecutive'));
      for (const s of live.segments) assert.ok(s.duration >= 1 && s.duration <= 3, `segment ${s.seq} lasts about 2 s (${s.duration})`);
      const startMs = Date.parse(live.segments[0].start) - connectedAt;
      // The audio of the 2 s the node waits for video is kept: the recording starts with it.
      assert.ok(Math.abs(startMs) <= 1000, `the recording starts when the audio began (${startMs} ms after connecting)`);

      // The live playlist: 200, #EXTINF segments by CID, low-latency parts.
      const liveResp = await server.fetch(`/replay/${STREAM}/live.m3u8`);
      assert.equal(liveResp.status, 200, 'GET live.m3u8');
      assert.match(liveResp.headers.get('content-type') ?? '', /mpegurl/i);
      const liveText = await liveResp.text();
      h.note(`live.m3u8:\n${liveText}`);
      assert.doesNotMatch(liveText, /#EXT-X-STREAM-INF/, 'a media playlist (one rendition)');
      const livePl = parsePlaylist(liveText);
      assert.ok(livePl.segments.length >= 1, `live.m3u8 lists #EXTINF segments:\n${liveText}`);
      assert.equal(livePl.map, `/ipfs/${live.init}`, 'EXT-X-MAP points at the init CID');
      assert.equal(livePl.endList, false, 'no #EXT-X-ENDLIST while live');
      const parts = liveText.split('\n').filter((l) => l.startsWith('#EXT-X-PART:')).length;
      assert.ok(parts > 0, `the live playlist of a radio is low-latency (#EXT-X-PART lines):\n${liveText}`);

      // The init and the segments so far through /ipfs (checked against their CIDs), as one file.
      const liveFigures = await checkRecording(server, live, path.join(tmp, 'radio-live.mp4'), 'live recording');
      h.note(`live figures: ${JSON.stringify(liveFigures)}`);

      // Instant replay while live: the SDK plays the last 4 s in an <audio> element, once the
      // recording is longer than that (3 segments) so that the replay starts inside it, not at
      // 0. (A playlist still growing goes to hls.js: Chromium's own HLS player fails on a live
      // playlist of two segments with DEMUXER_ERROR_COULD_NOT_PARSE.)
      const before = await waitFor(async () => {
        const a = await archiveOf(server, STREAM);
        return a.segments.length >= 3 && a;
      }, { timeout: 20000, interval: 250, what: `3 archived segments of ${STREAM}` });
      const view = await h.browser('radio-listener');
      const page = await view.page();
      await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
      h.onFailure('replay audio', () => audioState(page, '#replay-audio'));
      h.onFailure('vod audio', () => audioState(page, '#vod-audio'));
      const replay = await page.evaluate(async (stream) => {
        const { Relaycast } = await import('/sdk/relaycast.js');
        const audio = document.createElement('audio');
        audio.id = 'replay-audio';
        document.body.append(audio);
        window.listenRc = new Relaycast();
        const p = await window.listenRc.replay(stream, audio, { seconds: 4 });
        window.replayPlayback = p;
        return { engine: p.engine, codecs: p.codecs, startPosition: p.startPosition, duration: p.duration };
      }, STREAM);
      h.note(`replay: ${JSON.stringify(replay)}`);
      assert.ok(['hls.js', 'native'].includes(replay.engine), `fMP4 plays through hls.js or natively (engine ${replay.engine})`);
      assert.equal(replay.codecs, 'opus');
      assert.ok(replay.duration >= before.segments.reduce((t, s) => t + s.duration, 0) - 0.01, `the replay playlist covers the archive so far (${JSON.stringify(replay)})`);
      assert.ok(replay.startPosition > 0 && Math.abs(replay.duration - 4 - replay.startPosition) < 0.01, `replay starts 4 s before the end (${JSON.stringify(replay)})`);
      const played = await assertPlays(page, '#replay-audio', 'live replay');
      assert.ok(played.b.currentTime >= replay.startPosition - 0.5, `the replay plays from near ${replay.startPosition.toFixed(2)} s (at ${played.b.currentTime.toFixed(2)})`);
      await page.evaluate(() => window.replayPlayback.destroy());

      // Stop the radio: the recording ends and gets its VOD root.
      await pubPage.evaluate(async () => {
        await window.radioSession.close();
        window.radioSession.mediaStream.getTracks().forEach((t) => t.stop());
        await window.radioCtx.close();
      });
      const archive = await waitForVod(server, STREAM);
      h.note(`final archive: ${JSON.stringify(archive)}`);
      assert.equal(archive.ended, true, 'the archive is ended');
      assert.equal(archive.codecs, 'opus');
      assert.equal(archive.init, live.init, 'the same init segment');
      assert.ok(archive.segments.length >= live.segments.length, 'no segment lost');
      live.segments.forEach((s, i) => assert.equal(archive.segments[i].cid, s.cid, `segment ${s.seq} unchanged`));

      // The VOD playlist lists every segment and is closed; the VOD directory holds init.mp4.
      const vodResp = await server.fetch(`/replay/${STREAM}/vod.m3u8`);
      assert.equal(vodResp.status, 200, 'GET vod.m3u8');
      const vodText = await vodResp.text();
      assert.ok(vodText.trimEnd().endsWith('#EXT-X-ENDLIST'), `vod.m3u8 ends with #EXT-X-ENDLIST:\n${vodText}`);
      const vodPl = parsePlaylist(vodText);
      assert.deepEqual(vodPl.segments.map((s) => s.cid), archive.segments.map((s) => s.cid), 'vod.m3u8 lists every segment');
      assert.equal(vodPl.map, `/ipfs/${archive.init}`);
      const initBytes = await fetchFile(server, archive.init);
      const dirInit = await server.fetch(`/ipfs/${archive.vod}/init.mp4`);
      assert.equal(dirInit.status, 200, 'the VOD directory holds init.mp4');
      assert.ok(Buffer.from(await dirInit.arrayBuffer()).equals(Buffer.from(initBytes)), 'the VOD directory\'s init.mp4 is the init CID');

      // The whole recording decodes; its length is the time published from its start on.
      const final = await checkRecording(server, archive, path.join(tmp, 'radio-vod.mp4'), 'VOD recording');
      h.note(`final figures: ${JSON.stringify(final)}`);

      // The VOD through the SDK, from its start.
      const vod = await page.evaluate(async (stream) => {
        const audio = document.createElement('audio');
        audio.id = 'vod-audio';
        document.body.append(audio);
        const p = await window.listenRc.vod(stream, audio);
        window.vodPlayback = p;
        return { engine: p.engine, codecs: p.codecs, startPosition: p.startPosition, duration: p.duration };
      }, STREAM);
      h.note(`vod: ${JSON.stringify(vod)}`);
      assert.ok(['hls.js', 'native'].includes(vod.engine), `VOD engine ${vod.engine}`);
      assert.equal(vod.startPosition, 0, 'a VOD plays from its start');
      assert.ok(Math.abs(vod.duration - final.segDuration) < 0.01, `VOD playlist duration ${vod.duration} = archive ${final.segDuration}`);
      // 3 s: across the boundary of the first segment.
      const vodPlayed = await assertPlays(page, '#vod-audio', 'VOD', { by: 3 });
      assert.ok(vodPlayed.a.currentTime < 3, `the VOD starts at the beginning (${vodPlayed.a.currentTime})`);
      await page.evaluate(() => window.vodPlayback.destroy());

      console.log(`# radio: ${archive.segments.length} segments (${liveFigures.segments} while live), codecs ${archive.codecs}, `
        + `duration ${final.duration.toFixed(3)} s (segments ${final.segDuration.toFixed(3)} s), starts ${startMs} ms after connecting, `
        + `${parts} parts in live.m3u8, mean ${final.meanVolume} dB, replay engine ${replay.engine} `
        + `(from ${replay.startPosition.toFixed(2)} of ${replay.duration.toFixed(2)} s: ${played.a.currentTime.toFixed(2)} -> ${played.b.currentTime.toFixed(2)} s), vod engine ${vod.engine} `
        + `(${vodPlayed.a.currentTime.toFixed(2)} -> ${vodPlayed.b.currentTime.toFixed(2)} s)`);
    });
  } finally {
    if (process.env.RELAYCAST_E2E_KEEP === '1') console.log(`# kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
});
