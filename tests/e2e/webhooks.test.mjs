// End-to-end: webhooks. A node started with two `--webhook` URLs publishes from Chromium to a
// Chromium viewer. One receiver (Node's `http`) answers 503 to the first attempt of each event
// and 200 afterwards; the other accepts TCP connections and never answers. The answering one
// receives `stream.started`, `stream.ended` and `recording.finished` (with the VOD CID the
// archive API reports), each signed `Relaycast-Signature: t=UNIX,v1=HEX` as checked here with
// Node's own crypto.createHmac, each retried with the same id and body. While the silent one
// holds the node's requests until they time out, the viewer's decoded frames never stall 1 s.
// A recording interrupted by SIGKILL gets its `recording.finished` when the node starts again.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Harness, measureStall, waitFor } from './harness.mjs';

const TOKEN = 'e2e-webhooks-token';
const SECRET = 'e2e-webhooks-secret-0123456789abcdef0123456789abcdef';
const STREAM = 'webhooks-room';
const WATCH_MS = 16000;
const MAX_STALL_MS = 1000;

/** Resolves once `server` listens on a loopback port; returns that port. */
function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

/** A receiver that answers 503 to the first request of each event id, then 200; keeps every request. */
async function answeringReceiver() {
  const requests = [];
  const seen = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try { body = JSON.parse(raw); } catch { /* kept as null; asserted below */ }
      requests.push({ at: Date.now(), method: req.method, headers: req.headers, raw, body });
      const first = body?.id && !seen.has(body.id);
      if (body?.id) seen.add(body.id);
      res.writeHead(first ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(first ? 'try again\n' : 'ok\n');
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/hooks/relaycast?key=abc`, requests, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }) };
}

/** A receiver that accepts connections and never says a word. */
async function silentReceiver() {
  const sockets = [];
  const server = net.createServer((s) => { s.on('error', () => {}); sockets.push({ at: Date.now(), s }); });
  const port = await listen(server);
  return {
    url: `http://127.0.0.1:${port}/never`,
    sockets,
    close: () => new Promise((r) => { for (const { s } of sockets) s.destroy(); server.close(r); }),
  };
}

/** Checks one request the way a receiver would: Node's HMAC-SHA256 of `${t}.${body}`. */
function verify(req, now) {
  assert.equal(req.method, 'POST');
  assert.match(req.headers['content-type'] ?? '', /^application\/json/);
  const sig = req.headers['relaycast-signature'];
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig ?? '');
  assert.ok(m, `Relaycast-Signature has the form t=UNIX,v1=HEX: ${sig}`);
  const t = Number(m[1]);
  const expected = crypto.createHmac('sha256', Buffer.from(SECRET, 'utf8')).update(`${t}.${req.raw}`).digest('hex');
  assert.ok(crypto.timingSafeEqual(Buffer.from(m[2], 'hex'), Buffer.from(expected, 'hex')), `signature of ${req.raw} is valid`);
  assert.ok(Math.abs(t - req.at / 1000) < 5, `t=${t} is the time of sending (received at ${req.at})`);
  assert.ok(t <= now / 1000 + 1);
  return t;
}

test('webhooks: signed stream and recording events; a silent receiver does not stall viewers', { timeout: 150000 }, async () => {
  const h = new Harness('webhooks');
  const good = await answeringReceiver();
  const silent = await silentReceiver();
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--api-secret', SECRET, '--webhook', good.url, '--webhook', silent.url, '--no-turn'] });
      const started = Date.now();
      h.onFailure('webhook requests', async () => good.requests.map((r) => `${r.headers['relaycast-signature']} ${r.raw}`).join('\n'));
      h.onFailure('/metrics (webhooks)', async () => (await (await server.fetch('/metrics')).text()).split('\n').filter((l) => l.includes('webhook')).join('\n'));
      assert.ok(server.peerId, 'the node printed its peer id');

      const pub = await h.browser('publisher');
      const pubPage = await pub.page();
      await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&simulcast=0&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
      await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

      // stream.started reaches the answering receiver: first 503, then the retry with the same id.
      const byType = (type) => good.requests.filter((r) => r.body?.type === type);
      await waitFor(() => byType('stream.started').length >= 2, { timeout: 15000, what: 'stream.started and its retry' });
      // The silent receiver got its connection too (and keeps it open until the node times out).
      await waitFor(() => silent.sockets.length >= 1, { timeout: 5000, what: 'a connection to the silent receiver' });

      // A viewer watches; its decoded frames are sampled in the page every 50 ms.
      const view = await h.browser('viewer');
      const viewPage = await view.page();
      await viewPage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
      await viewPage.waitForFunction(() => window.session?.pc, null, { timeout: 20000 });
      await viewPage.waitForFunction(async () => {
        const r = await window.session.pc.getStats();
        let f = 0;
        r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') f = s.framesDecoded ?? 0; });
        // Past the start (first keyframe, bitrate ramp-up): about 2 s of decoded video.
        return f > 60;
      }, null, { timeout: 30000, polling: 200 });
      const socketsBefore = silent.sockets.length;
      const { frames, stall, stallAt, start } = await measureStall(viewPage, WATCH_MS);
      // The node retried the silent receiver while the viewer watched (5 s timeout, then 2, 4 s waits).
      assert.ok(silent.sockets.length > socketsBefore, `the node retried the silent receiver during the watch (${socketsBefore} -> ${silent.sockets.length} connections)`);
      const held = silent.sockets.map(({ at }) => `${((at - start) / 1000).toFixed(1)}s`).join(' ');
      console.log(`# viewer: ${frames} frames decoded in ${WATCH_MS} ms, longest stall ${stall.toFixed(0)} ms `
        + `(from ${(stallAt / 1000).toFixed(1)}s); silent receiver connections at ${held} from the watch's start`);
      assert.ok(frames > (WATCH_MS / 1000) * 2, `the viewer kept decoding (${frames} frames)`);
      assert.ok(stall < MAX_STALL_MS, `longest stall ${stall.toFixed(0)} ms < ${MAX_STALL_MS} ms`);

      // The publisher stops: stream.ended, then recording.finished with the archive's VOD root.
      await pubPage.evaluate(() => document.getElementById('stop').click());
      const archive = await waitFor(async () => {
        const resp = await server.fetch(`/api/streams/${STREAM}/archive`);
        const a = resp.ok ? await resp.json() : null;
        return a?.ended && a.vod && a;
      }, { timeout: 30000, what: 'the recording to get its VOD root' });
      await waitFor(() => byType('stream.ended').length >= 2 && byType('recording.finished').length >= 2,
        { timeout: 20000, what: 'stream.ended and recording.finished (each retried once)' });

      const now = Date.now();
      for (const r of good.requests) verify(r, now);
      const ids = new Set();
      for (const type of ['stream.started', 'stream.ended', 'recording.finished']) {
        const reqs = byType(type);
        assert.equal(reqs.length, 2, `${type}: one 503 and one successful retry`);
        const [first, retry] = reqs;
        assert.equal(first.raw, retry.raw, `${type}: the retry carries the same body (same id)`);
        assert.ok(retry.at - first.at >= 1500, `${type}: the retry came after a backoff (${retry.at - first.at} ms)`);
        const e = first.body;
        assert.match(e.id, /^[0-9a-f]{32}$/);
        assert.ok(!ids.has(e.id), 'ids are unique per event');
        ids.add(e.id);
        assert.equal(e.stream, STREAM);
        assert.equal(e.node, server.peerId, 'node is the peer id');
        assert.match(e.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/, `time is RFC 3339 UTC: ${e.time}`);
        const t = Date.parse(e.time);
        assert.ok(t >= started - 1000 && t <= now, `time ${e.time} is within the test`);
        const keys = Object.keys(e).sort();
        if (type === 'recording.finished') {
          assert.deepEqual(keys, ['id', 'node', 'segments', 'stream', 'time', 'type', 'vod_cid']);
          assert.equal(e.vod_cid, archive.vod, 'vod_cid is the VOD root the archive API reports');
          assert.equal(e.segments, archive.segments.length, 'segments counts the recording\'s media segments');
        } else {
          assert.deepEqual(keys, ['id', 'node', 'stream', 'time', 'type']);
        }
      }
      assert.ok(Date.parse(byType('stream.started')[0].body.time) < Date.parse(byType('stream.ended')[0].body.time));

      // The metrics count the deliveries and the silent receiver's timeouts.
      const metrics = await (await server.fetch('/metrics')).text();
      const value = (re) => Number(re.exec(metrics)?.[1] ?? NaN);
      assert.ok(value(/^relaycast_webhook_deliveries_total\{result="delivered"\} (\d+)/m) >= 3, 'three deliveries counted');
      assert.ok(value(/^relaycast_webhook_attempts_total\{result="timeout"\} (\d+)/m) >= 2, 'timeouts of the silent receiver counted');
      assert.ok(value(/^relaycast_webhook_attempts_total\{result="http_status"\} (\d+)/m) >= 3, 'the 503s counted');
    });
  } finally {
    await good.close();
    await silent.close();
  }
});

test('webhooks: a recording a crash left open is announced when the node starts again', { timeout: 120000 }, async () => {
  const h = new Harness('webhooks after a crash');
  const good = await answeringReceiver();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-webhooks-crash-'));
  try {
    await h.run(async () => {
      const stream = 'webhooks-crash';
      const args = ['--data-dir', path.join(tmp, 'data'), '--api-secret', SECRET, '--no-turn'];
      const first = await h.startServer({ token: TOKEN, args });
      const pub = await h.browser('publisher');
      const pubPage = await pub.page();
      await pubPage.goto(first.url(`/streamer.html?stream=${stream}&simulcast=0&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
      await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
      await waitFor(async () => {
        const r = await first.fetch(`/api/streams/${stream}/archive`);
        return r.ok && (await r.json()).segments.length >= 2;
      }, { timeout: 40000, interval: 500, what: 'two archived segments' });
      await first.kill();
      await pub.close();

      const second = await h.startServer({ token: TOKEN, args: [...args, '--webhook', good.url] });
      const archive = await (await second.fetch(`/api/streams/${stream}/archive`)).json();
      assert.ok(archive.ended && archive.vod, 'the interrupted recording was closed at start');
      await waitFor(() => good.requests.filter((r) => r.body?.type === 'recording.finished').length >= 2,
        { timeout: 15000, what: 'recording.finished (and its retry) after the restart' });
      const [req] = good.requests.filter((r) => r.body?.type === 'recording.finished');
      verify(req, Date.now());
      assert.equal(req.body.stream, stream);
      assert.equal(req.body.vod_cid, archive.vod, 'vod_cid is the root the restarted node made');
      assert.equal(req.body.segments, archive.segments.length);
      assert.equal(req.body.node, second.peerId);
      assert.equal(good.requests.filter((r) => r.body?.type !== 'recording.finished').length, 0, 'no stream events for a stream that is not live');
    });
  } finally {
    await good.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
