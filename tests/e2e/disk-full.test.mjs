// End-to-end: a recording never lies when the disk fills. The node runs in a mount namespace the
// test makes, on a small tmpfs as its data directory; two aiortc publishers are recorded; the
// test fills the tmpfs from inside the namespace (nsenter), then frees it. While full, writes
// fail: no segment that is not on disk is announced or listed, the failures are counted; when
// space returns both recordings go on, and each VOD playlist marks what was lost as EXT-X-GAP
// entries (sequence numbers do not shift). Needs root (unshare, mount, nsenter).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Harness, REPO_ROOT, binaryPath, runCommand, waitFor } from './harness.mjs';
import { PyClient } from './pyclient.mjs';
import { archiveOf, fetchFile, mediaPlaylistText, waitForVod } from './archive-util.mjs';

const TOKEN = 'e2e-diskfull-token';
const PYTHON = process.env.RELAYCAST_PYTHON || path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const CLIENT = path.join(REPO_ROOT, 'tests/python/aiortc_client.py');
const STREAMS = ['disk-a', 'disk-b'];

async function counter(server, name) {
  const text = await (await server.fetch('/metrics')).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Runs `sh -c script` in the mount namespace of process `pid`. */
async function inNamespace(pid, script) {
  return runCommand('nsenter', ['-t', String(pid), '-m', '--', 'sh', '-c', script], { timeoutMs: 30000 });
}

/** Every segment the archive lists is on the node's disk, whole (the gateway serves it). */
async function everyListedSegmentIsServed(server, stream) {
  const a = await archiveOf(server, stream);
  for (const s of a.segments) await fetchFile(server, s.cid, { timeout: 5000 });
  return a;
}

test('a full disk: nothing unstored is announced, the gap is marked, both recordings recover', { timeout: 180000 }, async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for unshare and mount');
  if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} missing: run scripts/test.sh (it creates tests/python/.venv)`);
  const h = new Harness('disk full');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-diskfull-'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  // The node's own mount namespace: a 32 MiB tmpfs on its data directory, seen by no one else.
  const wrapper = path.join(dir, 'relaycast-on-tmpfs.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec unshare -m --propagation private /bin/sh -c 'mount -t tmpfs -o size=32m relaycast-e2e "$RELAYCAST_E2E_DATA" && exec "$0" "$@"' "${binaryPath()}" "$@"\n`);
  fs.chmodSync(wrapper, 0o755);
  const publishers = [];
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN, bin: wrapper, env: { RELAYCAST_E2E_DATA: data }, args: ['--data-dir', data] });
    const pid = server.proc.pid;
    const mounted = await inNamespace(pid, `df -k ${data} | tail -1`);
    assert.match(mounted.stdout, /relaycast-e2e/, `the node's data directory is its tmpfs: ${mounted.stdout}`);
    assert.equal(fs.readdirSync(data).length, 0, 'the tmpfs is invisible outside the namespace');
    for (const stream of STREAMS) {
      const p = new PyClient(PYTHON, CLIENT, ['publish', server.url(`/whip/${stream}`), '--token', TOKEN, '--seconds', '120']);
      publishers.push(p);
      h.onFailure(`publisher ${stream}`, () => p.describe());
    }
    for (const stream of STREAMS) {
      await waitFor(async () => (await archiveOf(server, stream)).segments.length >= 2, { timeout: 40000, interval: 500, what: `2 segments of ${stream}` });
    }
    const errorsBefore = await counter(server, 'relaycast_archive_errors_total');

    // Fill the disk.
    await inNamespace(pid, `dd if=/dev/zero of=${data}/filler bs=64k 2>/dev/null; df -k ${data} | tail -1`);
    const full = {};
    for (const stream of STREAMS) full[stream] = (await archiveOf(server, stream)).segments.length;
    await waitFor(async () => (await counter(server, 'relaycast_archive_errors_total')) >= errorsBefore + 2,
      { timeout: 20000, interval: 500, what: 'writes to fail on the full disk' });
    // Writes fail for a while; whatever is listed meanwhile is on disk.
    await new Promise((r) => setTimeout(r, 4000));
    const during = {};
    for (const stream of STREAMS) during[stream] = (await everyListedSegmentIsServed(server, stream)).segments.length;
    h.note(`segments when the disk filled ${JSON.stringify(full)}, 4 s later ${JSON.stringify(during)}`);
    for (const stream of STREAMS) assert.ok(during[stream] <= full[stream] + 1, `no new segment of ${stream} while the disk is full`);

    // Space returns: both recordings go on.
    await inNamespace(pid, `rm -f ${data}/filler`);
    for (const stream of STREAMS) {
      await waitFor(async () => (await archiveOf(server, stream)).segments.length >= during[stream] + 2,
        { timeout: 30000, interval: 500, what: `${stream} recording again once space returns` });
    }
    for (const p of publishers) await p.stop();
    const errors = await counter(server, 'relaycast_archive_errors_total');
    h.note(`archive errors: ${errorsBefore} -> ${errors}`);
    for (const stream of STREAMS) {
      const archive = await waitForVod(server, stream);
      await everyListedSegmentIsServed(server, stream);
      const seqs = archive.segments.map((s) => s.seq);
      const holes = seqs.at(-1) + 1 - seqs.length;
      assert.ok(holes >= 1, `${stream}: segments lost while the disk was full (${seqs})`);
      const vod = await mediaPlaylistText(server, `/replay/${stream}/vod.m3u8`);
      const gaps = vod.match(/#EXT-X-GAP/g)?.length ?? 0;
      assert.equal(gaps, holes, `${stream}: each lost segment is an EXT-X-GAP entry`);
      const entries = vod.match(/^#EXTINF/gm).length;
      assert.equal(entries, seqs.at(-1) + 1 - seqs[0], `${stream}: playlist position = sequence number`);
      console.log(`# ${stream}: ${seqs.length} segments stored, ${holes} lost to the full disk and marked as gaps`);
    }
  });
  for (const p of publishers) await p.stop().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});
