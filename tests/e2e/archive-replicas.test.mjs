// End-to-end: replication without relays. A publishes (ffmpeg over RTMP); no other node has a
// viewer, so no relay copies the stream. C runs --archive-node and copies it at once; with A and
// C holding every segment, B (--replicas 2) sees enough copies and stays out. D joins with
// --replicas 3: the stream is short of one copy, so D volunteers, copies the earlier segments
// from the archive listing, and every segment then has A, C and D as providers, each serving the
// origin's bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './harness.mjs';
import { requireTools, archiveOf, fetchFile, equalBytes } from './archive-util.mjs';
import { ffmpegPush, bannerUrl } from './ingest-util.mjs';

const TOKEN = 'e2e-replicas-token';
const STREAM = 'replicas';

requireTools();

/** Segments of A's recording that ended more than `ms` ago. */
function olderThan(arch, ms) {
  return arch.segments.filter((s) => Date.parse(s.start) + s.duration * 1000 < Date.now() - ms);
}

test('replicas: an archive node and a volunteer copy a stream no relay carries; a node with enough copies stays out', { timeout: 180000 }, async () => {
  const h = new Harness('archive replicas');
  const pushes = [];
  try {
    await h.run(async () => {
      const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0'];
      const a = await h.startServer({ token: TOKEN, args: [...common, '--rtmp', '127.0.0.1:0'] });
      const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--replicas', '2'] });
      const c = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--archive-node'] });
      const nodes = { A: a, B: b, C: c };
      for (const [name, n] of Object.entries(nodes)) {
        h.onFailure(`${name} log`, () => n.stderr.tail(300).split('\n').filter((l) => /volunteer|copy|copies|Backfill|backfill/.test(l)).slice(-30).join('\n'));
      }
      h.onFailure('A archive', async () => JSON.stringify(await archiveOf(a, STREAM)).slice(0, 3000));
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));

      const rtmp = await bannerUrl(a, 'rtmp');
      const push = ffmpegPush(`${rtmp}/${STREAM}?token=${TOKEN}`, { seconds: 150, gop: 30 });
      pushes.push(push);

      // C (archive node) copies the stream it does not relay; A and C hold every segment.
      const started = Date.now();
      const two = await waitFor(async () => {
        const arch = await archiveOf(a, STREAM).catch(() => null);
        const old = arch ? olderThan(arch, 3000) : [];
        return old.length >= 4 && old.every((s) => s.providers.includes(c.peerId)) && arch;
      }, { timeout: 60000, interval: 500, what: 'C (--archive-node) among the providers of every segment older than 3 s' });
      console.log(`# replicas: the archive node holds every segment ${Date.now() - started} ms after the push started`);
      await waitFor(() => /volunteering to keep a copy/.test(c.stderr.tail(400)), { timeout: 5000, what: 'C to log its copy' });

      // B (--replicas 2) sees two holders and copies nothing.
      await new Promise((r) => setTimeout(r, 8000));
      const arch = await archiveOf(a, STREAM);
      assert.ok(arch.segments.every((s) => !s.providers.includes(b.peerId)), 'B holds no segment');
      assert.doesNotMatch(b.stderr.tail(1000), /volunteering to keep a copy/, 'B does not volunteer');
      assert.ok(two.segments.length > 0);

      // D wants three copies: it volunteers and copies every segment, earlier ones included.
      const d = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--replicas', '3'] });
      h.onFailure('D log', () => d.stderr.tail(300).split('\n').filter((l) => /volunteer|copy|copies|backfill/i.test(l)).slice(-30).join('\n'));
      const joined = Date.now();
      const three = await waitFor(async () => {
        const x = await archiveOf(a, STREAM);
        const old = olderThan(x, 2000);
        return old.length >= 8 && old.every((s) => [a, c, d].every((n) => s.providers.includes(n.peerId))) && old;
      }, { timeout: 60000, interval: 500, what: 'A, C and D among the providers of every segment (D volunteered)' });
      console.log(`# replicas: the volunteer D holds all ${three.length} segments ${Date.now() - joined} ms after it started`);
      assert.match(d.stderr.tail(2000), /volunteering to keep a copy of the stream's recording.*stream=replicas/);
      assert.ok(three.every((s) => !s.providers.includes(b.peerId)), 'B still holds nothing');

      // Each copy is the origin's bytes.
      for (const s of three.slice(0, 3)) {
        const want = await fetchFile(a, s.cid);
        for (const [name, n] of [['C', c], ['D', d]]) {
          assert.ok(equalBytes(await fetchFile(n, s.cid), want), `segment ${s.seq} at ${name}: A's bytes`);
        }
      }
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
  }
});
