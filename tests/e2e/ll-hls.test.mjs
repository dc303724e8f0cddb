// End-to-end: Low-Latency HLS (RFC 8216bis) of an H264 recording at its origin node. ffmpeg
// publishes H264 and AAC over RTMP at real time; the node's live.m3u8 lists the parts of the
// recent segments and of the one being written (EXT-X-PART, ~1/3 s each) with a preload hint for
// the next, complete segments only by their CID, parts are fMP4 fragments, a blocking reload (_HLS_msn/_HLS_part) is held until the
// part asked for is there (and refused with 400 far ahead), and hls.js in low-latency mode plays
// it in Chromium within a few seconds of the wall clock (EXT-X-PROGRAM-DATE-TIME vs now).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './harness.mjs';
import { ffmpegPush, bannerUrl } from './ingest-util.mjs';

const TOKEN = 'e2e-ll-hls-token';
const STREAM = 'll-room';
const LIVE = `/replay/${STREAM}/live.m3u8`;

/** The attributes of an HLS tag's attribute list (`A=1,B="x,y"`), quotes removed. */
function attrs(list) {
  const out = {};
  for (const m of list.matchAll(/([A-Z0-9-]+)=("[^"]*"|[^,]*)/g)) out[m[1]] = m[2].startsWith('"') ? m[2].slice(1, -1) : m[2];
  return out;
}

/**
 * An LL-HLS media playlist, positions counted as a player does: the first segment has the
 * EXT-X-MEDIA-SEQUENCE number, each URI line closes a segment (and its EXT-X-PART lines, indexed
 * from 0); the parts after the last URI line belong to segment `nextMsn`, being written.
 */
function parsePlaylist(text) {
  const lines = String(text).split(/\r?\n/);
  let msn = Number(/^#EXT-X-MEDIA-SEQUENCE:(\d+)/m.exec(text)?.[1] ?? 0);
  const segments = [];
  let parts = [];
  let extinf = null;
  let hint = null;
  for (const line of lines) {
    if (line.startsWith('#EXT-X-PART:')) {
      const a = attrs(line.slice('#EXT-X-PART:'.length));
      parts.push({ msn, index: parts.length, duration: Number(a.DURATION), uri: a.URI, independent: a.INDEPENDENT === 'YES', line });
    } else if (line.startsWith('#EXTINF:')) {
      extinf = parseFloat(line.slice('#EXTINF:'.length));
    } else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) {
      hint = attrs(line.slice('#EXT-X-PRELOAD-HINT:'.length));
    } else if (line && !line.startsWith('#')) {
      segments.push({ msn, uri: line, duration: extinf, parts });
      parts = [];
      extinf = null;
      msn += 1;
    }
  }
  const allParts = [...segments.flatMap((s) => s.parts), ...parts];
  return { text, segments, pending: parts, nextMsn: msn, hint, allParts };
}

/** Whether playlist `p` holds part `index` of segment `msn` or anything later (a later part or segment). */
function reaches(p, msn, index) {
  return p.allParts.some((x) => x.msn > msn || (x.msn === msn && x.index >= index))
    || p.segments.some((s) => s.msn > msn);
}

/** The box types at the top level of an ISO BMFF buffer. */
function topLevelBoxes(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const types = [];
  let off = 0;
  while (off + 8 <= bytes.length && types.length < 64) {
    let size = view.getUint32(off);
    const type = String.fromCharCode(...bytes.subarray(off + 4, off + 8));
    if (size === 1 && off + 16 <= bytes.length) size = Number(view.getBigUint64(off + 8));
    else if (size === 0) size = bytes.length - off;
    types.push(type);
    if (size < 8) break;
    off += size;
  }
  return types;
}

/** Nearest-rank percentile `q` (0..1) of `values`. */
function percentile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** GET a blocking reload of live.m3u8; resolves with { status, text, ms } or throws on 5 s without an answer. */
async function blockingReload(server, query) {
  const t0 = Date.now();
  let resp;
  try {
    resp = await server.fetch(`${LIVE}?${query}`, { timeout: 5000 });
  } catch (err) {
    throw new Error(`GET ${LIVE}?${query} got no answer within 5 s (${err.name}: ${err.message})`);
  }
  const text = await resp.text();
  return { status: resp.status, text, ms: Date.now() - t0 };
}

test('LL-HLS: parts, blocking reload and low-latency hls.js playback of an RTMP H264 stream', { timeout: 120000 }, async () => {
  const h = new Harness('LL-HLS');
  let push;
  try {
    await h.run(async () => {
      // Archive on (no --no-archive): the recording is what live.m3u8 serves.
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0'] });
      const rtmp = await bannerUrl(server, 'rtmp');
      h.onFailure('ffmpeg', () => push?.stderr());
      h.onFailure('live.m3u8 now', async () => {
        const r = await server.fetch(LIVE);
        return `${r.status}\n${await r.text()}`;
      });
      h.onFailure('archive', async () => (await server.fetch(`/api/streams/${STREAM}/archive`)).text());
      // A keyframe every 2 s (60 frames at 30 fps), no encoder delay.
      push = ffmpegPush(`${rtmp}/${STREAM}?token=${TOKEN}`, {
        seconds: 100,
        gop: 60,
        video: ['-profile:v', 'baseline', '-bf', '0', '-tune', 'zerolatency'],
      });
      await waitFor(async () => (await server.streamInfo(STREAM))?.live, { timeout: 20000, interval: 300, what: `${STREAM} to go live` });

      // 1. The playlist: LL-HLS tags, parts of at most PART-TARGET, a preload hint.
      let pl;
      const first = await waitFor(async () => {
        const r = await server.fetch(LIVE);
        const text = await r.text();
        pl = `${r.status}\n${text}`;
        const parsed = r.status === 200 && text.includes('#EXT-X-PART:') && text.includes('#EXT-X-PRELOAD-HINT') && parsePlaylist(text);
        // A complete segment with its parts too, so that parts and segments can be compared.
        return parsed && parsed.segments.some((seg) => seg.parts.length > 0) && parsed;
      }, { timeout: 30000, interval: 250, what: `${LIVE} to list #EXT-X-PART and #EXT-X-PRELOAD-HINT, and a complete segment with its parts` }).catch((err) => {
        throw new Error(`${err.message}\nlast live.m3u8 answer:\n${pl}`);
      });
      const text = first.text;
      h.note(`first LL playlist:\n${text}`);
      assert.match(text, /^#EXT-X-VERSION:9$/m, 'EXT-X-VERSION 9');
      const control = /^#EXT-X-SERVER-CONTROL:(.*)$/m.exec(text);
      assert.ok(control, `an EXT-X-SERVER-CONTROL line\n${text}`);
      const sc = attrs(control[1]);
      assert.equal(sc['CAN-BLOCK-RELOAD'], 'YES', control[0]);
      const partInf = /^#EXT-X-PART-INF:(.*)$/m.exec(text);
      assert.ok(partInf, `an EXT-X-PART-INF line\n${text}`);
      const partTarget = Number(attrs(partInf[1])['PART-TARGET']);
      const holdBack = Number(sc['PART-HOLD-BACK']);
      assert.ok(partTarget >= 0.3 && partTarget <= 0.5, `PART-TARGET within 0.3–0.5 s (${partInf[0]})`);
      assert.ok(Math.abs(holdBack - 3 * partTarget) < 0.01, `PART-HOLD-BACK is three part targets (${control[0]})`);
      assert.ok(holdBack >= 2 * partTarget, 'PART-HOLD-BACK is at least twice PART-TARGET (RFC 8216bis)');
      assert.ok(first.allParts.length > 0 && first.hint, 'parts and a preload hint');
      assert.equal(first.hint.TYPE, 'PART', `the preload hint is for a part (${JSON.stringify(first.hint)})`);
      for (const p of first.allParts) {
        assert.ok(p.duration > 0 && p.duration <= partTarget + 0.1, `part duration within (0, PART-TARGET + 0.1]: ${p.line}`);
        assert.ok(p.uri, `a part has a URI: ${p.line}`);
      }
      // A complete segment's parts make it up.
      for (const seg of first.segments.filter((x) => x.parts.length > 0)) {
        const sum = seg.parts.reduce((t, p) => t + p.duration, 0);
        assert.ok(Math.abs(sum - seg.duration) <= 0.1, `the parts of segment ${seg.msn} add up to its EXTINF (${sum.toFixed(3)} vs ${seg.duration})\n${text}`);
      }
      // A complete segment is named by its CID only (its URI never changes between reloads).
      for (const seg of first.segments) assert.match(seg.uri, /^\/ipfs\/b[a-z2-7]+$/, `segment ${seg.msn} is listed by its CID\n${text}`);
      console.log(`# ll-hls playlist: segments ${first.segments[0]?.msn ?? '-'}..${first.nextMsn - 1}, `
        + `${first.allParts.length} parts (${first.allParts.filter((p) => p.independent).length} INDEPENDENT), `
        + `${first.pending.length} of segment ${first.nextMsn} being written; hint ${first.hint.URI}`);
      console.log(`# ll-hls segment durations: ${first.segments.map((s) => s.duration?.toFixed(3)).join(' ')}; part durations: ${first.allParts.map((p) => p.duration.toFixed(3)).join(' ')}`);

      // 2. A part is an fMP4 fragment.
      const part = first.allParts.at(-1);
      const partResp = await server.fetch(new URL(part.uri, server.url(LIVE)).toString());
      const partBytes = new Uint8Array(await partResp.arrayBuffer());
      assert.equal(partResp.status, 200, `GET ${part.uri}`);
      const boxes = topLevelBoxes(partBytes);
      assert.ok(boxes.includes('moof') && boxes.includes('mdat'), `${part.uri} is an fMP4 fragment (boxes ${boxes.join(',')}, ${partBytes.length} bytes)`);
      console.log(`# ll-hls part ${part.uri}: ${partBytes.length} bytes, boxes ${boxes.join(',')}`);

      // 3. Blocking reload: the part after the last one listed, then the first part of the next
      // segment; each held until it is there, then answered 200 with it listed.
      const now = parsePlaylist((await (await server.fetch(LIVE)).text()));
      const last = now.allParts.at(-1);
      // The next part: the one after the last of the segment being written (part 0 of it when
      // none of its parts is out yet).
      const [msn, index] = [now.nextMsn, now.pending.length];
      h.note(`blocking reload from the last part ${last ? `${last.msn}.${last.index} (${last.uri})` : '(none)'}: asking for ${msn}.${index}`);
      const next = await blockingReload(server, `_HLS_msn=${msn}&_HLS_part=${index}`);
      assert.equal(next.status, 200, `_HLS_msn=${msn}&_HLS_part=${index} -> ${next.status}\n${next.text}`);
      const nextPl = parsePlaylist(next.text);
      assert.ok(reaches(nextPl, msn, index), `the playlist answered to _HLS_msn=${msn}&_HLS_part=${index} lists that part or a later one\n${next.text}`);
      const got = nextPl.allParts.find((p) => p.msn === msn && p.index === index);
      const seg1 = await blockingReload(server, `_HLS_msn=${msn + 1}&_HLS_part=0`);
      assert.equal(seg1.status, 200, `_HLS_msn=${msn + 1}&_HLS_part=0 -> ${seg1.status}\n${seg1.text}`);
      const segPl = parsePlaylist(seg1.text);
      assert.ok(reaches(segPl, msn + 1, 0), `the playlist answered to _HLS_msn=${msn + 1}&_HLS_part=0 lists that part or a later one\n${seg1.text}`);
      assert.ok(segPl.segments.some((s) => s.msn === msn), `segment ${msn} is complete in it\n${seg1.text}`);
      console.log(`# ll-hls blocking reload: part ${msn}.${index} answered in ${next.ms} ms (${got ? `listed: ${got.uri}` : 'segment ended before it; a later part listed'}), `
        + `part ${msn + 1}.0 answered in ${seg1.ms} ms`);
      const far = await blockingReload(server, `_HLS_msn=${msn + 100}&_HLS_part=0`);
      assert.equal(far.status, 400, `_HLS_msn=${msn + 100} (far ahead) -> ${far.status} after ${far.ms} ms\n${far.text}`);
      const farNoPart = await blockingReload(server, `_HLS_msn=${msn + 100}`);
      assert.equal(farNoPart.status, 400, `_HLS_msn=${msn + 100} without _HLS_part -> ${farNoPart.status} after ${farNoPart.ms} ms`);
      const metrics = await (await server.fetch('/metrics')).text();
      const refused = Number(/^relaycast_archive_ll_refused_total (\d+)$/m.exec(metrics)?.[1]);
      assert.ok(refused >= 2, `both refusals are counted (relaycast_archive_ll_refused_total ${refused})`);

      // 4. hls.js in low-latency mode plays it in Chromium, a few seconds behind the wall clock.
      const view = await h.browser('ll-hls');
      const page = await view.page();
      const videoState = () => page.evaluate(() => {
        const v = document.getElementById('ll');
        const hls = window.llHls;
        return v && {
          currentTime: v.currentTime, readyState: v.readyState, paused: v.paused, videoWidth: v.videoWidth,
          frames: v.getVideoPlaybackQuality().totalVideoFrames, error: v.error?.message ?? null,
          buffered: [...Array(v.buffered.length).keys()].map((i) => [v.buffered.start(i), v.buffered.end(i)]),
          latency: hls?.latency, targetLatency: hls?.targetLatency, playingDate: hls?.playingDate?.toISOString() ?? null,
          errors: window.llErrors?.slice(-10),
        };
      });
      h.onFailure('ll video', videoState);
      // The last playlists hls.js loaded (what it parsed when it reports an error).
      const loaded = [];
      page.on('response', async (r) => {
        if (!r.url().includes('live.m3u8')) return;
        const at = new Date().toISOString();
        const body = await r.text().catch((e) => `(no body: ${e.message})`);
        loaded.push(`${at} ${r.status()} ${r.url()}\n${body}`);
        if (loaded.length > 4) loaded.shift();
      });
      h.onFailure('the last live.m3u8 answers to hls.js', () => loaded.join('\n----\n'));
      await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
      await page.addScriptTag({ url: server.url('/sdk/hls.min.js') });
      const hlsVersion = await page.evaluate((src) => {
        const video = document.createElement('video');
        video.id = 'll';
        video.muted = true;
        video.playsInline = true;
        document.body.append(video);
        // Low-latency mode, allowed to play up to 1.5× to reach its target latency: it starts at
        // the newest independent part (a keyframe, every 2 s here), up to a GOP behind the edge.
        const hls = new window.Hls({ lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 });
        window.llHls = hls;
        window.llErrors = [];
        hls.on(window.Hls.Events.ERROR, (_, d) => window.llErrors.push({
          type: d.type, details: d.details, fatal: d.fatal, reason: d.reason ?? null, error: d.error ? String(d.error.message ?? d.error) : null,
          url: d.frag?.url ?? d.part?.url ?? d.context?.url ?? d.url ?? null, status: d.response?.code ?? null, at: Date.now(),
        }));
        hls.on(window.Hls.Events.MANIFEST_PARSED, () => { video.play().catch((e) => window.llErrors.push({ play: String(e) })); });
        hls.loadSource(src);
        hls.attachMedia(video);
        return window.Hls.version;
      }, server.url(LIVE));
      const a = await waitFor(async () => {
        const s = await videoState();
        return s?.readyState >= 2 && s.videoWidth > 0 && s;
      }, { timeout: 20000, what: 'hls.js to show video' });
      await waitFor(async () => {
        const s = await videoState();
        return s.currentTime > a.currentTime + 0.5 && s;
      }, { timeout: 10000, what: `currentTime to advance past ${a.currentTime}` });

      // Every 250 ms for 20 s: wall clock minus the program date-time on screen, and frames. The
      // first 5 s are the join (the player catching up from where it started); the last 15 s the
      // steady latency the assertion is about.
      const all = await page.evaluate(() => new Promise((resolve) => {
        const v = document.getElementById('ll');
        const hls = window.llHls;
        const out = [];
        const take = () => out.push({
          t: Date.now(), playing: hls.playingDate ? hls.playingDate.getTime() : null, hlsLatency: hls.latency,
          frames: v.getVideoPlaybackQuality().totalVideoFrames, currentTime: v.currentTime,
        });
        take();
        const timer = setInterval(() => {
          take();
          if (out.length > 80) {
            clearInterval(timer);
            resolve(out);
          }
        }, 250);
      }));
      const lat = (s) => (s.playing != null ? s.t - s.playing : s.hlsLatency * 1000);
      const join = all.slice(0, 20).map(lat);
      const samples = all.slice(20);
      const fromDate = samples.filter((s) => s.playing != null);
      const latencies = samples.map((s) => (s.playing != null ? s.t - s.playing : s.hlsLatency * 1000));
      const fallback = samples.length - fromDate.length;
      const p50 = percentile(latencies, 0.5);
      const p99 = percentile(latencies, 0.99);
      const frames = samples.at(-1).frames - samples[0].frames;
      const played = samples.at(-1).currentTime - samples[0].currentTime;
      const hlsLat = samples.map((s) => s.hlsLatency * 1000);
      const errors = await page.evaluate(() => window.llErrors);
      h.note(`samples: ${JSON.stringify(all)}`);
      console.log(`# ll-hls join: latency ${Math.round(join[0])} ms when playback began, ${Math.round(join.at(-1))} ms 5 s later`);
      console.log(`# ll-hls latency p50 ${Math.round(p50)} ms p99 ${Math.round(p99)} ms (${samples.length} samples over ${((samples.at(-1).t - samples[0].t) / 1000).toFixed(1)} s, `
        + `${fallback ? `${fallback} from hls.latency: hls.playingDate was null` : 'all from hls.playingDate'}; hls.latency p50 ${Math.round(percentile(hlsLat, 0.5))} ms; `
        + `hls.js ${hlsVersion}, target latency ${(await videoState()).targetLatency?.toFixed(3)} s)`);
      console.log(`# ll-hls playback: ${frames} frames and ${played.toFixed(2)} s played in 15 s; hls.js errors: ${JSON.stringify(errors.slice(0, 10))}`);
      const fatal = errors.filter((e) => e.fatal);
      assert.equal(fatal.length, 0, `hls.js reported no fatal error: ${fatal.map((e) => `${e.type}/${e.details}: ${String(e.reason ?? e.error).slice(0, 200)} (${e.url})`).join('; ')}`);
      assert.ok(latencies.every((l) => Number.isFinite(l)), `every sample has a latency (${JSON.stringify(samples.slice(0, 3))})`);
      assert.ok(p99 < 3000, `LL-HLS latency p99 ${Math.round(p99)} ms < 3000 ms (p50 ${Math.round(p50)} ms)`);
      assert.ok(frames >= 100, `frames advanced by ${frames} (>= 100) over 15 s`);
    });
  } finally {
    push?.proc.kill('SIGKILL');
  }
});
