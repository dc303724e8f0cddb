// End-to-end: audio/video sync of a recording follows the publisher's clock, not the network.
// An aiortc publisher (tests/python/aiortc_client.py --sync) flashes its picture white and beeps
// at the same instants every 2 s; a UDP proxy it runs between itself and the node holds every
// packet of the audio SSRC back by 200 ms (with BUNDLE both tracks share one port, so netem
// cannot). The recorder places audio by the publisher's RTCP sender reports, so in the archived
// file each beep starts within 20 ms of its flash (by arrival time it would be ~200 ms late).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, REPO_ROOT, waitFor } from './harness.mjs';
import { PyClient } from './pyclient.mjs';
import { requireTools, archiveOf, assembleRecording, run, tempDir, waitForVod } from './archive-util.mjs';

const TOKEN = 'e2e-avsync-token';
const PYTHON = process.env.RELAYCAST_PYTHON || path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const CLIENT = path.join(REPO_ROOT, 'tests/python/aiortc_client.py');
const DELAY_MS = 200;

requireTools();

/** Media times (s) where the picture turns bright: `ffmpeg -copyts` with signalstats' YAVG. */
async function flashes(file) {
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-copyts', '-i', file, '-map', '0:v', '-vf',
    'signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-', '-f', 'null', '-'], { timeoutMs: 120000 });
  assert.equal(r.code, 0, r.stderr);
  const frames = [];
  let t = null;
  for (const line of r.stdout.split('\n')) {
    const m = /pts_time:([0-9.]+)/.exec(line);
    if (m) t = Number(m[1]);
    const y = /YAVG=([0-9.]+)/.exec(line);
    if (y && t != null) frames.push({ t, y: Number(y[1]) });
  }
  const out = [];
  for (let i = 1; i < frames.length; i++) if (frames[i].y > 128 && frames[i - 1].y < 64) out.push(frames[i].t);
  return { onsets: out, frames: frames.length };
}

/** Media times (s) where a beep starts: decoded to 48 kHz mono PCM from media time 0. */
async function beeps(file, dir) {
  const pcm = path.join(dir, 'audio.s16');
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-copyts', '-i', file, '-map', '0:a',
    '-af', 'aresample=async=1:first_pts=0', '-ac', '1', '-ar', '48000', '-f', 's16le', pcm], { timeoutMs: 120000 });
  assert.equal(r.code, 0, r.stderr);
  const buf = fs.readFileSync(pcm);
  const out = [];
  let quiet = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) {
    const loud = Math.abs(buf.readInt16LE(i)) > 3000;
    if (loud && quiet >= 2400) out.push(i / 2 / 48000);
    quiet = loud ? 0 : quiet + 1;
  }
  return out;
}

test(`audio held back ${DELAY_MS} ms on the network stays in sync with video in the recording`, { timeout: 180000 }, async () => {
  const h = new Harness('av sync');
  const dir = tempDir('avsync');
  let publisher;
  await h.run(async () => {
    if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} missing: run scripts/test.sh (it creates tests/python/.venv)`);
    const stream = 'av-sync';
    const server = await h.startServer({ token: TOKEN });
    publisher = new PyClient(PYTHON, CLIENT, ['publish', server.url(`/whip/${stream}`), '--codec', 'vp8', '--token', TOKEN,
      '--seconds', '60', '--sync', '--delay-audio-ms', String(DELAY_MS)]);
    h.onFailure('aiortc publisher', () => publisher.describe());
    await waitFor(() => publisher.events.some((e) => e.state === 'connected'), { timeout: 30000, what: 'the aiortc publisher to connect through the proxy' });
    const proxy = publisher.find('proxy');
    h.note(`proxy: ${JSON.stringify(proxy)}`);
    assert.equal(proxy.delay_ms, DELAY_MS);
    // Flashes at 2, 4, … 10 s of the publisher's clock.
    await waitFor(async () => (await archiveOf(server, stream)).segments.reduce((t, s) => t + s.duration, 0) >= 11.5,
      { timeout: 40000, interval: 500, what: '11.5 s archived' });
    await publisher.stop();
    const closed = publisher.find('closed');
    assert.ok(closed?.delayed > 100, `the proxy held back audio packets (${JSON.stringify(closed)})`);
    const archive = await waitForVod(server, stream);
    const file = path.join(dir, 'recording.webm');
    await assembleRecording(server, archive, file);

    const video = await flashes(file);
    const audio = await beeps(file, dir);
    h.note(`flashes ${JSON.stringify(video)}, beeps ${JSON.stringify(audio)}`);
    // Each flash after the publisher's first sender reports (sent within ~1.5 s) with the beep
    // nearest to it.
    const pairs = video.onsets.filter((t) => t >= 3.5).map((v) => {
      const a = audio.reduce((best, x) => (Math.abs(x - v) < Math.abs(best - v) ? x : best), Infinity);
      return { video: +v.toFixed(3), audio: +a.toFixed(4), offsetMs: +((a - v) * 1000).toFixed(1) };
    });
    console.log(`# av sync (audio delayed ${DELAY_MS} ms on the network): ${JSON.stringify(pairs)}`);
    assert.ok(pairs.length >= 3, `at least three flashes after 3.5 s (${JSON.stringify(video)})`);
    for (const p of pairs) assert.ok(Math.abs(p.offsetMs) < 20, `beep within 20 ms of its flash: ${JSON.stringify(p)}`);
  });
  await publisher?.stop().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
});
