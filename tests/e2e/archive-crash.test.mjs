// End-to-end: the node is SIGKILLed while a stream is being archived and restarted on the same
// data directory. Every CID the archive API announced before the kill must be served complete
// afterwards (as a CAR that ipfs-car unpacks to the same bytes as before), and the interrupted
// recording must have been closed into a VOD directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, waitFor, publisherStats } from './harness.mjs';
import {
  requireTools, archiveOf, fetchFile, fetchCar, ipfsCar, equalBytes, initOf, parsePlaylist, mediaPlaylistText, tempDir, waitForVod,
} from './archive-util.mjs';

const TOKEN = 'e2e-crash-token';
const STREAM = 'crash';

requireTools();

test('SIGKILL mid-stream: announced CIDs survive a restart complete, the recording gets a VOD root', { timeout: 150000 }, async () => {
  const h = new Harness('archive crash');
  const tmp = tempDir('archive-crash');
  const dataDir = path.join(tmp, 'data');
  try {
    await h.run(async () => {
      const args = ['--data-dir', dataDir];
      const first = await h.startServer({ token: TOKEN, args });
      h.onFailure('archive', async () => (await h.server.fetch(`/api/streams/${STREAM}/archive`)).text());

      const pub = await h.browser('publisher');
      const pubPage = await pub.page();
      h.onFailure('publisher stats', () => publisherStats(pubPage));
      await pubPage.goto(first.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
      await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

      // About 12 s of stream: wait for 5 segments, keeping the bytes of what is announced.
      const before = await waitFor(async () => {
        const a = await archiveOf(first, STREAM);
        return a.segments.length >= 5 && a;
      }, { timeout: 40000, interval: 500, what: 'five archived segments' });
      assert.equal(before.ended, false);
      const bytesBefore = new Map();
      const wanted = (a) => [...new Set([a.init, ...a.segments.map((s) => initOf(a, s)), ...a.segments.map((s) => s.cid)])];
      for (const cid of wanted(before)) bytesBefore.set(cid, await fetchFile(first, cid));

      // The last announcement before the kill; the publisher is still sending.
      const announced = await archiveOf(first, STREAM);
      assert.equal(announced.ended, false, 'the stream is still live when the node is killed');
      assert.equal((await publisherStats(pubPage))?.state, 'connected', 'the publisher is still connected');
      await first.kill();
      assert.equal(first.exit?.signal, 'SIGKILL', 'the node died from SIGKILL');
      h.note(`announced before the kill: init ${announced.init}, ${announced.segments.length} segments`);
      await pub.close();

      // Restart on the same data directory.
      const second = await h.startServer({ token: TOKEN, args });
      const after = await waitForVod(second, STREAM);
      h.note(`after restart: ${after.segments.length} segments, vod ${after.vod}`);
      assert.equal(after.ended, true);
      assert.ok(after.vod, 'the interrupted recording has a VOD root');
      assert.equal(after.init, announced.init, 'same init segment');
      const afterBySeq = new Map(after.segments.map((s) => [s.seq, s]));
      for (const s of announced.segments) {
        assert.equal(afterBySeq.get(s.seq)?.cid, s.cid, `segment ${s.seq} is still in the recording with the same CID`);
      }

      // Every announced CID is served complete: its CAR holds every block (ipfs-car unpacks it)
      // and the bytes equal what was served before the kill.
      const cids = wanted(announced);
      for (const cid of cids) {
        const carFile = path.join(tmp, `${cid}.car`);
        fs.writeFileSync(carFile, await fetchCar(second, cid, { viaQuery: true }));
        const roots = await ipfsCar(['roots', carFile]);
        assert.equal(roots.stdout.trim(), cid, `the CAR of ${cid} has it as root`);
        const outFile = path.join(tmp, `${cid}.bin`);
        const unpack = await ipfsCar(['unpack', carFile, '--output', outFile]);
        assert.equal(unpack.code, 0, `ipfs-car unpack ${cid}: ${unpack.stderr}`);
        const unpacked = new Uint8Array(fs.readFileSync(outFile));
        const served = await fetchFile(second, cid);
        assert.ok(equalBytes(unpacked, served), `the CAR of ${cid} unpacks to the bytes served for it`);
        if (bytesBefore.has(cid)) assert.ok(equalBytes(served, bytesBefore.get(cid)), `${cid} serves the same bytes as before the kill`);
        assert.ok(served.length > 0);
      }
      console.log(`# crash: ${cids.length} CIDs announced before SIGKILL, all complete after restart; recording closed with ${after.segments.length} segments`);

      // The VOD directory and its playlist.
      const carFile = path.join(tmp, 'vod.car');
      fs.writeFileSync(carFile, await fetchCar(second, after.vod));
      assert.equal((await ipfsCar(['roots', carFile])).stdout.trim(), after.vod, 'the VOD CAR has the VOD root');
      const ls = await ipfsCar(['ls', carFile]);
      assert.equal(ls.code, 0, `ipfs-car ls: ${ls.stderr}`);
      for (const name of ['init.webm', 'vod.m3u8', 'manifest.json', 'segment-000000.webm']) assert.ok(ls.stdout.includes(name), `VOD lists ${name}`);
      // The main rendition's segments at the top; each lower simulcast layer's in its directory.
      const segFiles = ls.stdout.split('\n').filter((l) => /segment-\d{6}\.webm/.test(l));
      const inRendition = (l) => /(^|[\s/])[qh]\/segment-\d{6}\.webm/.test(l);
      assert.equal(segFiles.filter((l) => !inRendition(l)).length, after.segments.length, `one segment file per archived segment\n${ls.stdout}`);
      for (const rid of after.renditions ?? []) {
        assert.ok(segFiles.some((l) => new RegExp(`(^|[\\s/])${rid}/segment-`).test(l)), `rendition ${rid}'s segments are in the VOD\n${ls.stdout}`);
      }
      const pl = parsePlaylist(await mediaPlaylistText(second, `/replay/${STREAM}/vod.m3u8`));
      assert.equal(pl.endList, true, 'the VOD playlist is closed');
      assert.deepEqual(pl.segments.map((s) => s.cid), after.segments.map((s) => s.cid));
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
