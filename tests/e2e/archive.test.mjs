// End-to-end: a stream published from Chromium (VP8, then H264) is archived while it is live.
// The archive API lists segments, the live playlist is valid, viewers get `segment` events;
// once the publisher stops, the recording has a VOD root; the init and media segments fetched
// from /ipfs are checked against their CIDs, joined into one file and checked with ffprobe and
// ffmpeg (codec, size of the highest layer, Opus audio, duration against the time published);
// the VOD directory as a CAR has the VOD CID as its root (ipfs-car).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, sleep, publisherStats } from './harness.mjs';
import {
  requireTools, archiveOf, assembleRecording, ffprobe, packetSpan, checkDecodes, fetchCar, ipfsCar, parsePlaylist, mediaPlaylistText,
  tempDir, waitForVod,
} from './archive-util.mjs';

const TOKEN = 'e2e-archive-token';
const PUBLISH_MS = 30000;
// VP8 is recorded in WebM (MSE plays VP8 only there), H264 in fMP4.
const EXPECTED = {
  vp8: { codec: 'vp8', rfc6381: /^vp8,/, ext: 'webm', format: /webm/, init: 'init.webm', segment: 'segment-000000.webm' },
  h264: { codec: 'h264', rfc6381: /^avc1\./, ext: 'mp4', format: /mp4/, init: 'init.mp4', segment: 'segment-000000.m4s' },
};

requireTools();

for (const codec of ['vp8', 'h264']) {
  const CODEC = codec.toUpperCase();
  test(`${CODEC}: archived while live, VOD after stop, files valid for ffprobe/ffmpeg/ipfs-car`, { timeout: 170000 }, async () => {
    const h = new Harness(`archive ${CODEC}`);
    const tmp = tempDir(`archive-${codec}`);
    try {
      await h.run(async () => {
        const stream = `archive-${codec}`;
        const server = await h.startServer({ token: TOKEN });
        h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
        h.onFailure('archive', async () => (await server.fetch(`/api/streams/${stream}/archive`)).text());

        // Publish; the time published runs from the WHIP connection to the click on #stop.
        const pub = await h.browser('publisher');
        const pubPage = await pub.page();
        h.onFailure('publisher stats', () => publisherStats(pubPage));
        await pubPage.goto(server.url(`/streamer.html?stream=${stream}&codec=${codec}&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
        const connectedAt = await (await pubPage.waitForFunction(
          () => window.relaycastSession?.state === 'connected' && Date.now(), null, { timeout: 30000, polling: 20 })).jsonValue();

        // A viewer collects the session's `segment` events (from the SSE channel).
        const view = await h.browser('viewer');
        const viewPage = await view.page();
        await viewPage.goto(server.url(`/viewer.html?stream=${stream}`), { waitUntil: 'domcontentloaded' });
        await viewPage.waitForFunction(() => window.session, null, { timeout: 10000 });
        await viewPage.evaluate(() => {
          window.segmentEvents = [];
          window.session.addEventListener('segment', (e) => window.segmentEvents.push(e.detail));
        });

        // While live: the highest layer's size as the server sees it, and the archive growing.
        let highest = null;
        const sizes = {};
        const layerSeenMs = {};
        let liveChecked = false;
        while (Date.now() - connectedAt < PUBLISH_MS) {
          const info = await server.streamInfo(stream).catch(() => null);
          const layers = (info?.layers ?? []).filter((l) => l.height > 0);
          for (const l of layers) sizes[l.rid] = { width: l.width, height: l.height };
          for (const l of info?.layers ?? []) {
            if (l.bitrate > 0 && !(l.rid in layerSeenMs)) layerSeenMs[l.rid] = Date.now() - connectedAt;
          }
          if (layers.length) {
            const top = layers.reduce((a, b) => (b.height > a.height ? b : a));
            highest = { rid: top.rid, width: top.width, height: top.height };
          }
          if (!liveChecked && Date.now() - connectedAt > 12000) {
            const live = await archiveOf(server, stream);
            assert.equal(live.stream, stream);
            assert.equal(live.ended, false, 'the archive is not ended while the publisher is live');
            assert.equal(live.vod, null, 'no VOD root while live');
            assert.ok(live.init, 'the init segment CID is announced');
            assert.match(String(live.codecs), EXPECTED[codec].rfc6381, `codecs ${live.codecs}`);
            assert.match(String(live.codecs), /opus/, 'the archive records Opus audio');
            assert.ok(live.segments.length >= 3, `at least 3 segments after 12 s live (got ${live.segments.length})`);
            live.segments.forEach((s, i) => assert.equal(s.seq, live.segments[0].seq + i, 'sequence numbers are consecutive'));

            const resp = await server.fetch(`/replay/${stream}/live.m3u8`);
            assert.equal(resp.status, 200);
            assert.match(resp.headers.get('content-type') ?? '', /mpegurl/i);
            // With renditions the playlist is multivariant, highest bandwidth first: the main
            // recording's variant is the one named after its layer (the highest layer may have
            // started after it, as Chromium's `f` does on a slow start).
            const main = live.layer ? `live/${live.layer}.m3u8` : null;
            const pl = parsePlaylist(await mediaPlaylistText(server, `/replay/${stream}/live.m3u8`, {}, main));
            assert.ok(pl.segments.length >= 1 && pl.segments.length <= 6, `live window of 1..6 segments (got ${pl.segments.length})`);
            // A publisher that changes its parameters (Chromium's H264 as its layers ramp up)
            // starts a new init segment: the playlist may name the one announced just after.
            const inits = new Set([live.init, (await archiveOf(server, stream)).init].map((c) => `/ipfs/${c}`));
            assert.ok(inits.has(pl.map), `EXT-X-MAP points at the init CID (${pl.map}; archive: ${[...inits].join(', ')})`);
            assert.equal(pl.endList, false, 'no #EXT-X-ENDLIST while live');
            const bySeq = new Map(live.segments.map((s) => [s.seq, s]));
            pl.segments.forEach((s, i) => {
              const known = bySeq.get(pl.mediaSeq + i);
              if (known) assert.equal(s.cid, known.cid, `live playlist entry ${pl.mediaSeq + i} matches the archive API`);
            });
            const lastListed = pl.mediaSeq + pl.segments.length - 1;
            assert.ok(lastListed >= live.segments.at(-1).seq - 1, 'the live window ends at the newest segments');
            liveChecked = true;
          }
          await sleep(1000);
        }
        assert.ok(liveChecked, 'archive checked while live');
        assert.ok(highest, '/api/streams reported layer sizes while live');
        h.note(`highest layer while live: ${JSON.stringify(highest)}`);

        const stoppedAt = await pubPage.evaluate(() => {
          const t = Date.now();
          document.getElementById('stop').click();
          return t;
        });
        const published = (stoppedAt - connectedAt) / 1000;

        const archive = await waitForVod(server, stream);
        h.note(`archive: ${archive.segments.length} segments, vod ${archive.vod}`);
        assert.ok(archive.segments.length >= 10, `a 30 s stream gives at least 10 segments (got ${archive.segments.length})`);

        // The viewer received `segment` events that agree with the archive.
        const events = await viewPage.evaluate(() => window.segmentEvents);
        assert.ok(events.length >= 5, `viewer got segment events (${events.length})`);
        const bySeq = new Map(archive.segments.map((s) => [s.seq, s]));
        for (const e of events) {
          const s = bySeq.get(e.seq);
          assert.ok(s, `segment event seq ${e.seq} is in the archive`);
          assert.equal(e.cid, s.cid, `segment event ${e.seq} has the archived CID`);
          assert.ok(Math.abs(e.duration - s.duration) < 0.002, `segment event ${e.seq} duration ${e.duration} ~ ${s.duration}`);
        }

        // The VOD playlist is closed and lists every segment.
        const vodPl = parsePlaylist(await mediaPlaylistText(server, `/replay/${stream}/vod.m3u8`, {}, archive.layer ? `vod/${archive.layer}.m3u8` : null));
        assert.equal(vodPl.endList, true, 'VOD playlist ends with #EXT-X-ENDLIST');
        assert.deepEqual(vodPl.segments.map((s) => s.cid), archive.segments.map((s) => s.cid), 'VOD playlist lists every segment');

        // Fetch every file through /ipfs and check it against its CID, then as one MP4.
        const file = path.join(tmp, `recording-${codec}.${EXPECTED[codec].ext}`);
        const { bytes, inits } = await assembleRecording(server, archive, file);
        const apiDuration = archive.segments.reduce((t, s) => t + s.duration, 0);
        const probe = await ffprobe(file);
        const video = probe.streams.find((s) => s.codec_type === 'video');
        const audio = probe.streams.find((s) => s.codec_type === 'audio');
        // A live WebM has no duration in its header: the span of its packets is its duration.
        const duration = Number(probe.format.duration) || await packetSpan(file);
        const measured = {
          codec: CODEC, published, archiveSegments: archive.segments.length, apiDuration: +apiDuration.toFixed(3),
          ffprobeDuration: duration, video: video && { codec: video.codec_name, width: video.width, height: video.height, frames: Number(video.nb_read_frames) },
          audio: audio && { codec: audio.codec_name, frames: Number(audio.nb_read_frames) }, highest, layerSeenMs, inits: inits.length, bytes: bytes.length,
          firstSegmentStartMs: Date.parse(archive.segments[0].start) - connectedAt,
        };
        console.log(`# measured ${JSON.stringify(measured)}`);
        h.note(`measured ${JSON.stringify(measured)}`);
        assert.match(probe.format.format_name, EXPECTED[codec].format, `ffprobe reads ${EXPECTED[codec].ext}`);
        assert.ok(video, 'a video stream');
        assert.equal(video.codec_name, EXPECTED[codec].codec);
        assert.ok(Number(video.nb_read_frames) >= published * 10, `video frames ${video.nb_read_frames} for ${published.toFixed(1)} s`);
        assert.ok(audio, 'an audio stream');
        assert.equal(audio.codec_name, 'opus');
        assert.ok(Number(audio.nb_read_frames) > 0, 'audio frames');
        assert.ok(Math.abs(apiDuration - duration) <= 0.5, `segment durations (${apiDuration.toFixed(3)} s) match the file (${duration.toFixed(3)} s)`);

        const dec = await checkDecodes(file);
        console.log(`# ffmpeg -f null: exit ${dec.plain.code}, ${dec.collisions} null-muxer tick collisions, other stderr: ${JSON.stringify(dec.other)}`);
        assert.equal(dec.plain.code, 0, `ffmpeg -v error -i FILE -f null - exits 0: ${dec.plain.stderr}`);
        assert.deepEqual(dec.other, [], 'ffmpeg reports no decoding errors');
        assert.equal(dec.exact.code, 0, `ffmpeg -enc_time_base -1 exits 0: ${dec.exact.stderr}`);
        assert.equal(dec.exact.stderr, '', 'ffmpeg with the stream time base kept prints nothing');

        // The VOD directory as a CAR: its root is the VOD CID.
        const car = await fetchCar(server, archive.vod);
        const carFile = path.join(tmp, 'vod.car');
        fs.writeFileSync(carFile, car);
        const roots = await ipfsCar(['roots', carFile]);
        assert.equal(roots.code, 0, `ipfs-car roots: ${roots.stderr}`);
        assert.equal(roots.stdout.trim(), archive.vod, 'the CAR root is the VOD CID');
        const ls = await ipfsCar(['ls', carFile]);
        assert.equal(ls.code, 0, `ipfs-car ls: ${ls.stderr}`);
        for (const name of [EXPECTED[codec].init, 'vod.m3u8', 'manifest.json', EXPECTED[codec].segment]) {
          assert.match(ls.stdout, new RegExp(name.replace('.', '\\.')), `the VOD directory lists ${name}`);
        }

        // Last, the checks that depend on which simulcast layer the archive picked and when its
        // first keyframe came: the size of the layer it says it records (the highest that had sent
        // a keyframe ~1 s after the publisher started), when the recording starts (at once when the
        // top layer is there from the start; when Chromium brings its top layer up late, 1 s after
        // the first layers plus a keyframe request), and that nothing published from then on is
        // missing (±5 %).
        assert.ok(['q', 'h', 'f'].includes(archive.layer), `archive layer ${archive.layer}`);
        const recorded = sizes[archive.layer];
        assert.ok(recorded, `/api/streams reported the size of layer ${archive.layer}`);
        assert.equal(`${video.width}x${video.height}`, `${recorded.width}x${recorded.height}`, `the archive records layer ${archive.layer}`);
        const startMs = Date.parse(archive.segments[0].start) - connectedAt;
        const seenMs = layerSeenMs[archive.layer] ?? 0;
        assert.ok(startMs <= seenMs + 2500,
          `the recording starts ${startMs} ms after connecting, within 2.5 s of layer ${archive.layer} appearing (${seenMs} ms)`);
        const covered = published - Math.max(0, startMs) / 1000;
        assert.ok(Math.abs(duration - covered) <= 0.05 * published,
          `recording duration ${duration.toFixed(3)} s within 5 % of the ${covered.toFixed(3)} s published from its start on`);
      });
    } finally {
      if (process.env.RELAYCAST_E2E_KEEP === '1') console.log(`# kept ${tmp}`);
      else fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
}
