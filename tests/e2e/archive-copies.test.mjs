// End-to-end: the archive outlives its origin. Three relaycast processes form a relay chain
// A (origin, fan-out of one) → B → C with Chromium viewers at B and C and an H264 publisher at A.
// The relays copy each segment as A announces it (Bitswap, verified by CID), so every segment
// older than 5 s lists A, B and C as providers and each serves the same bytes (a relay that joins
// mid-recording copies the earlier segments from A's signed archive listing). A is SIGKILLed: B
// and C still serve every segment A announced (CARs that ipfs-car unpacks to A's bytes), each
// closes its copy into a VOD root and they agree on it, and rc.vod() at C plays it. The nodes run
// the public IPFS DHT (--ipfs-dht): Helia, told only C's address as its DHT bootstrap peer and a
// segment's CID, finds the CID's providers on the DHT and fetches it over Bitswap from B or C.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import {
  requireTools, archiveOf, fetchFile, fetchCar, ipfsCar, equalBytes, tempDir,
} from './archive-util.mjs';
import { heliaFetch } from './helia-util.mjs';

const TOKEN = 'e2e-copies-token';
const STREAM = 'copies';

requireTools();

/** The numeric value of a counter in a node's /metrics. */
async function counter(server, name) {
  const text = await (await server.fetch('/metrics')).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

test('copies: A, B and C provide every segment; after SIGKILL of A, B and C serve them and agree on the VOD root, which plays at C', { timeout: 240000 }, async () => {
  const h = new Harness('archive copies');
  const tmp = tempDir('copies');
  try {
    await h.run(async () => {
      const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0', '--ipfs-dht'];
      const a = await h.startServer({ token: TOKEN, args: [...common, '--max-relay-children', '1'] });
      const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0]] });
      const c = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--bootstrap', b.p2p[0]] });
      const nodes = [[a, 'A'], [b, 'B'], [c, 'C']];
      for (const [n, name] of nodes) {
        h.onFailure(`${name} archive`, async () => (await n.fetch(`/api/streams/${STREAM}/archive`, { redirect: 'manual' })).text());
        h.onFailure(`${name} log`, () => { fs.writeFileSync(`/tmp/copies-${name}.log`, n.stderr.tail(5000)); return n.stderr.tail(400).split('\n').filter((l) => /recorder|copy|copies|lost/.test(l)).slice(-40).join('\n'); });
      }
      await waitFor(async () => {
        const n = await (await c.fetch('/api/node')).json();
        const ids = n.known_peers.filter((p) => p.connected).map((p) => p.peer_id);
        return ids.includes(a.peerId) && ids.includes(b.peerId);
      }, { timeout: 15000, what: 'C connected to A and B' });

      const pub = await h.browser('publisher');
      const pubPage = await pub.page();
      await pubPage.goto(a.url(`/streamer.html?stream=${STREAM}&codec=h264&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
      await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
      await waitFor(async () => (await (await b.fetch('/api/topology')).json()).streams.some((s) => s.stream === STREAM),
        { timeout: 15000, what: 'B to hear the stream announcement' });

      // Viewers at B, then at C (A has no fan-out left, so C relays from B).
      const view = await h.browser('viewers');
      for (const n of [b, c]) {
        const page = await view.context.newPage();
        await page.goto(n.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
        await waitFor(async () => (await viewerStats(page))?.framesDecoded > 0, { timeout: 30000, what: `viewer at ${n === b ? 'B' : 'C'} decoding` });
      }

      // Every segment older than 5 s has A, B and C as providers (a relay that joins mid-recording
      // copies the earlier segments from A's archive listing, each checked against A's
      // signature). The time from a segment's listing at A to three providers is measured for
      // BENCHMARKS.md.
      const listedAt = new Map();
      const threeAt = new Map();
      let seenFirst = null;
      const { old } = await waitFor(async () => {
        const arch = await archiveOf(a, STREAM);
        seenFirst ??= new Set(arch.segments.map((s) => s.seq));
        for (const s of arch.segments) {
          if (!listedAt.has(s.seq)) listedAt.set(s.seq, Date.now());
          if (!threeAt.has(s.seq) && s.providers.length >= 3) threeAt.set(s.seq, Date.now());
        }
        const since = arch.segments.filter((s) => Date.parse(s.start) + s.duration * 1000 < Date.now() - 5000);
        const held = since.length >= 5 && since.every((s) => nodes.every(([n]) => s.providers.includes(n.peerId)));
        return held && { old: since };
      }, { timeout: 60000, interval: 250, what: 'providers A, B and C for every segment older than 5 s' });
      const lags = [...threeAt].filter(([seq]) => !seenFirst.has(seq)).map(([seq, t]) => t - listedAt.get(seq)).sort((x, y) => x - y);
      const stored = await counter(a, 'relaycast_archive_bytes_total');
      console.log(`# copies: listed at A -> three providers over ${lags.length} segments: p50 ${lags[lags.length >> 1]} ms, max ${lags[lags.length - 1]} ms (250 ms polling); `
        + `bytes fetched for copies: B ${await counter(b, 'relaycast_archive_copy_bytes_total')}, C ${await counter(c, 'relaycast_archive_copy_bytes_total')}; archived at A ${stored}`);

      // Each provider serves the same bytes.
      const served = new Map();
      for (const s of old) {
        const bytes = [];
        for (const [n] of nodes) bytes.push(await fetchFile(n, s.cid));
        assert.ok(bytes.every((x) => equalBytes(x, bytes[0])), `segment ${s.seq}: the same bytes at A, B and C`);
        served.set(s.cid, bytes[0]);
      }
      // The relays serve replay from their copy instead of redirecting to the origin.
      const live = await c.fetch(`/replay/${STREAM}/live.m3u8`, { redirect: 'manual' });
      assert.equal(live.status, 200, 'C serves the live playlist itself');
      assert.match(await live.text(), /#EXT-X-MAP:URI="\/ipfs\/b/);

      // The origin dies right after its latest segment reached B and C (the next one is about
      // 2 s away). B and C serve every segment it had announced, complete.
      const announced = await waitFor(async () => {
        const x = await archiveOf(a, STREAM);
        const last = x.segments[x.segments.length - 1];
        return last.providers.length >= 3 && x;
      }, { timeout: 10000, interval: 50, what: 'the latest segment at three providers' });
      const killedAt = Date.now();
      await a.kill();
      await pub.close();
      for (const s of announced.segments) if (!served.has(s.cid)) served.set(s.cid, await fetchFile(b, s.cid));
      for (const [n, name] of [[b, 'B'], [c, 'C']]) {
        const copy = await archiveOf(n, STREAM);
        assert.deepEqual(copy.segments.map((x) => [x.seq, x.cid]), announced.segments.map((x) => [x.seq, x.cid]), `${name}'s copy lists every segment A announced, with A's CIDs`);
        for (const s of announced.segments) {
          const carFile = path.join(tmp, `${name}-${s.cid}.car`);
          fs.writeFileSync(carFile, await fetchCar(n, s.cid, { viaQuery: true }));
          const outFile = path.join(tmp, `${name}-${s.cid}.bin`);
          const unpack = await ipfsCar(['unpack', carFile, '--output', outFile]);
          assert.equal(unpack.code, 0, `ipfs-car unpack ${s.cid} from ${name}: ${unpack.stderr}`);
          assert.ok(equalBytes(new Uint8Array(fs.readFileSync(outFile)), served.get(s.cid)), `segment ${s.seq} from ${name} after A died: A's bytes`);
        }
      }

      // An IPFS node that knows nothing but a segment's CID (and C as its DHT bootstrap peer)
      // finds providers on the IPFS DHT and fetches the segment over Bitswap, A being dead.
      const probe = announced.segments[Math.min(2, announced.segments.length - 1)];
      const cTcp = c.p2p.find((x) => x.includes('/tcp/'));
      const found = await heliaFetch('dht', cTcp, probe.cid, 30_000);
      h.note(`helia over the DHT: ${JSON.stringify(found).slice(0, 600)}`);
      assert.equal(found.ok, true, `Helia finds and fetches ${probe.cid} by its CID: ${found.error}`);
      assert.equal(found.sha256, crypto.createHash('sha256').update(served.get(probe.cid)).digest('hex'), "Helia's bytes are A's segment");
      assert.ok(found.providers.some((p) => p === b.peerId || p === c.peerId), `the DHT names B or C as a provider (${found.providers})`);
      console.log(`# copies: Helia found ${found.providers.length} provider(s) of segment ${probe.seq} on the IPFS DHT and fetched it in ${found.ms} ms after SIGKILL of A`);

      // With no live origin left, each copy is closed into a VOD root: the origin's function over
      // the same files, so B and C agree.
      const closed = [];
      for (const n of [b, c]) {
        closed.push(await waitFor(async () => {
          const x = await archiveOf(n, STREAM);
          return x.vod && x;
        }, { timeout: 90000, interval: 500, what: 'the copy to be closed into a VOD root' }));
      }
      console.log(`# copies: both copies closed into VOD roots ${Date.now() - killedAt} ms after SIGKILL of A`);
      h.note(`A announced ${announced.segments.length} segments; B holds ${closed[0].segments.length}, C ${closed[1].segments.length}`);
      assert.equal(closed[0].ended, true);
      assert.equal(closed[0].vod, closed[1].vod, 'B and C agree on the VOD root');
      const carFile = path.join(tmp, 'vod.car');
      fs.writeFileSync(carFile, await fetchCar(c, closed[1].vod));
      const ls = await ipfsCar(['ls', carFile]);
      assert.equal(ls.code, 0, `ipfs-car ls of C's VOD root: ${ls.stderr}`);
      for (const name of ['init.mp4', 'vod.m3u8', 'manifest.json']) assert.ok(ls.stdout.includes(name), `C's VOD lists ${name}`);

      // rc.vod() at C plays the copy (A is dead).
      const page = await view.context.newPage();
      await page.goto(c.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
      const started = await page.evaluate(async (stream) => {
        const { Relaycast } = await import('/sdk/relaycast.js');
        const video = document.createElement('video');
        video.id = 'vod';
        video.muted = true;
        document.body.append(video);
        const p = await new Relaycast().vod(stream, video);
        return { engine: p.engine, duration: p.duration, codecs: p.codecs };
      }, STREAM);
      h.note(`vod at C: ${JSON.stringify(started)}`);
      const sample = () => page.evaluate(() => {
        const v = document.getElementById('vod');
        return { t: v.currentTime, w: v.videoWidth };
      });
      const first = await waitFor(async () => { const s = await sample(); return s.w > 0 && s; }, { timeout: 20000, what: 'the VOD at C to show video' });
      await waitFor(async () => (await sample()).t >= first.t + 1.5, { timeout: 20000, what: 'the VOD at C to play 1.5 s' });
      console.log(`# copies: after SIGKILL of A, B and C served all ${announced.segments.length} segments; both closed the copy into VOD root ${closed[1].vod}, played at C by ${started.engine}`);
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
