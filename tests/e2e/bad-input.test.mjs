// End-to-end: with a viewer decoding, hostile HTTP requests get the documented error codes and
// garbage UDP datagrams on the media ports do not disturb the server or the live session.
// Every packet goes to 127.0.0.1 only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import crypto from 'node:crypto';
import { Harness, waitFor, viewerStats, sleep } from './harness.mjs';

const TOKEN = 'e2e-publish-token';
const STREAM = 'room';

function mediaPorts(...sdps) {
  const ports = new Set();
  for (const sdp of sdps) {
    for (const line of String(sdp || '').split(/\r?\n/)) {
      const m = /^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ/i.exec(line.trim());
      if (m) ports.add(Number(m[1]));
    }
  }
  return [...ports];
}

/** Assorted malformed datagrams: random bytes, truncated/forged STUN, RTP, RTCP and DTLS. */
function garbageDatagrams() {
  const out = [];
  const rnd = (n) => crypto.randomBytes(n);
  for (const n of [0, 1, 2, 3, 4, 11, 12, 19, 20, 21, 100, 1200, 1500, 8000]) out.push(rnd(n));
  // STUN binding request header with a wrong length and junk attributes.
  const stun = Buffer.alloc(60);
  stun.writeUInt16BE(0x0001, 0);
  stun.writeUInt16BE(0xfff0, 2);
  stun.writeUInt32BE(0x2112a442, 4);
  rnd(12).copy(stun, 8);
  rnd(40).copy(stun, 20);
  out.push(stun);
  // STUN with a well-formed header and a USERNAME attribute that lies about its length.
  const stun2 = Buffer.alloc(32);
  stun2.writeUInt16BE(0x0001, 0);
  stun2.writeUInt16BE(12, 2);
  stun2.writeUInt32BE(0x2112a442, 4);
  rnd(12).copy(stun2, 8);
  stun2.writeUInt16BE(0x0006, 20);
  stun2.writeUInt16BE(500, 22);
  out.push(stun2);
  // RTP-looking packets (version 2) with random SSRC/payload type, including padding/extension/CSRC bits.
  for (const first of [0x80, 0x90, 0xa0, 0xbf, 0x8f]) {
    const p = rnd(60);
    p[0] = first;
    out.push(p);
    out.push(p.subarray(0, 12));
  }
  // RTCP-looking packets (SR, RR, SDES, BYE, feedback) with bogus lengths.
  for (const pt of [200, 201, 202, 203, 205, 206]) {
    const p = rnd(40);
    p[0] = 0x81;
    p[1] = pt;
    p.writeUInt16BE(0xffff, 2);
    out.push(p);
  }
  // DTLS-looking records: handshake/application data with random content and huge lengths.
  for (const ct of [20, 21, 22, 23]) {
    const p = rnd(80);
    p[0] = ct;
    p[1] = 0xfe;
    p[2] = 0xfd;
    p.writeUInt16BE(0xffff, 11);
    out.push(p);
  }
  return out;
}

async function sendGarbage(ports) {
  const sock = dgram.createSocket('udp4');
  await new Promise((resolve) => sock.bind(0, '127.0.0.1', resolve));
  let sent = 0;
  try {
    const datagrams = garbageDatagrams();
    for (let round = 0; round < 5; round++) {
      for (const port of ports) {
        for (const d of datagrams) {
          await new Promise((resolve) => sock.send(d, port, '127.0.0.1', () => resolve()));
          sent++;
        }
      }
      await sleep(50);
    }
  } finally {
    sock.close();
  }
  return sent;
}

/** Raw bytes to the HTTP port; returns whatever the server answers (or '' when it just closes). */
function rawHttp(port, payload, timeout = 5000) {
  return new Promise((resolve) => {
    const chunks = [];
    const sock = net.connect(port, '127.0.0.1');
    const done = () => { clearTimeout(timer); sock.destroy(); resolve(Buffer.concat(chunks).toString('latin1')); };
    const timer = setTimeout(done, timeout);
    sock.on('connect', () => sock.end(payload));
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', done);
    sock.on('error', done);
  });
}

test('bad input: HTTP errors and garbage UDP leave the server and a live viewer unharmed', { timeout: 180000 }, async () => {
  const h = new Harness('bad input');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    await pubPage.goto(server.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 })
      .catch(async (err) => { throw new Error(`publisher did not connect: ${await pubPage.textContent('#status')}\n${err.message}`); });

    const view = await h.browser('viewer');
    const viewPage = await view.page();
    h.onFailure('viewer stats', () => viewerStats(viewPage));
    await viewPage.goto(server.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(viewPage))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding frames' });

    // Real offers to reuse in requests that must fail for another reason.
    const offers = await pubPage.evaluate(async () => {
      const send = new RTCPeerConnection();
      send.addTransceiver('video', { direction: 'sendonly' });
      send.addTransceiver('audio', { direction: 'sendonly' });
      const whip = (await send.createOffer()).sdp;
      send.close();
      const recv = new RTCPeerConnection();
      recv.addTransceiver('video', { direction: 'recvonly' });
      recv.addTransceiver('audio', { direction: 'recvonly' });
      const whep = (await recv.createOffer()).sdp;
      recv.close();
      return { whip, whep };
    });

    const auth = { Authorization: `Bearer ${TOKEN}` };
    const sdpType = { 'Content-Type': 'application/sdp' };
    const huge = 'v=0\r\n' + 'a=x-padding:' + 'A'.repeat(1024 * 1024) + '\r\n';
    const cases = [
      { what: 'WHIP malformed SDP', path: '/whip/bad-sdp', headers: { ...auth, ...sdpType }, body: 'this is not an SDP offer\r\nm=nothing\r\n', status: 400 },
      { what: 'WHIP truncated SDP', path: '/whip/bad-sdp', headers: { ...auth, ...sdpType }, body: offers.whip.slice(0, 200), status: 400 },
      { what: 'WHIP binary garbage', path: '/whip/bad-sdp', headers: { ...auth, ...sdpType }, body: crypto.randomBytes(2048), status: 400 },
      { what: 'WHIP wrong content type', path: '/whip/bad-ct', headers: { ...auth, 'Content-Type': 'text/plain' }, body: offers.whip, status: 400 },
      { what: 'WHIP 1 MiB body', path: '/whip/big', headers: { ...auth, ...sdpType }, body: huge, status: 413 },
      { what: 'WHIP bad token', path: `/whip/${STREAM}-2`, headers: { Authorization: 'Bearer not-the-token', ...sdpType }, body: offers.whip, status: 401 },
      { what: 'WHIP missing token', path: `/whip/${STREAM}-2`, headers: { ...sdpType }, body: offers.whip, status: 401 },
      // (A second publish of a live stream with a valid token takes it over: see tokens.test.mjs.)
      { what: 'WHIP token only in the query', path: `/whip/${STREAM}-2?token=${TOKEN}`, headers: { ...sdpType }, body: offers.whip, status: 401 },
      { what: 'WHEP malformed SDP', path: `/whep/${STREAM}`, headers: { ...sdpType }, body: 'garbage', status: 400 },
      { what: 'WHEP wrong content type', path: `/whep/${STREAM}`, headers: { 'Content-Type': 'application/json' }, body: '{"sdp":1}', status: 400 },
      { what: 'WHEP 1 MiB body', path: `/whep/${STREAM}`, headers: { ...sdpType }, body: huge, status: 413 },
      { what: 'WHEP unknown stream', path: '/whep/no-such-stream', headers: { ...sdpType }, body: offers.whep, status: 404 },
    ];
    const results = [];
    for (const c of cases) {
      let got;
      let text = '';
      try {
        const resp = await server.fetch(c.path, { method: 'POST', headers: c.headers, body: c.body });
        got = resp.status;
        text = (await resp.text()).slice(0, 200);
      } catch (err) {
        got = `request failed: ${err.cause?.code || err.message}`;
      }
      results.push({ what: c.what, expected: c.status, got, text });
    }
    h.note(`HTTP results:\n${results.map((r) => `  ${r.what}: expected ${r.expected}, got ${r.got} ${JSON.stringify(r.text)}`).join('\n')}`);

    // Garbage on the HTTP port itself.
    const httpPort = Number(new URL(server.base).port);
    await rawHttp(httpPort, 'GARBAGE \x00\x01\x02 / NOT-HTTP\r\n\r\n');
    await rawHttp(httpPort, `POST /whip/${STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999999999999999\r\n\r\nabc`);

    // Garbage UDP on every media port named in the answers' candidates.
    const [viewAnswer, pubAnswer] = await Promise.all([
      viewPage.evaluate(() => window.session.answerSdp),
      pubPage.evaluate(() => window.relaycastSession.answerSdp),
    ]);
    const ports = mediaPorts(viewAnswer, pubAnswer);
    h.note(`media ports from the answers: ${ports.join(', ')}`);
    assert.ok(ports.length > 0, 'the SDP answers name at least one UDP candidate port');
    const before = await viewerStats(viewPage);
    const sent = await sendGarbage(ports);
    h.note(`sent ${sent} garbage datagrams`);

    // The server is healthy and the viewer keeps decoding.
    const health = await server.fetch('/healthz');
    assert.equal(health.status, 200, '/healthz after the garbage');
    assert.equal(server.exit, null, 'relaycast is still running');
    const after = await waitFor(async () => {
      const s = await viewerStats(viewPage);
      return s.framesDecoded > before.framesDecoded && s;
    }, { timeout: 10000, what: `viewer framesDecoded to rise above ${before.framesDecoded} after the garbage` });
    const later = await waitFor(async () => {
      const s = await viewerStats(viewPage);
      return s.framesDecoded > after.framesDecoded && s;
    }, { timeout: 10000, what: `viewer framesDecoded to keep rising above ${after.framesDecoded}` });
    assert.ok(later.framesDecoded > after.framesDecoded);
    assert.equal(later.connectionState, 'connected');
    const info = await server.streamInfo(STREAM);
    assert.equal(info?.live, true, 'the stream is still live');
    assert.equal((await server.fetch('/healthz')).status, 200);

    // The HTTP verdicts, checked last so a wrong code does not hide the robustness result.
    for (const r of results) assert.equal(r.got, r.expected, `${r.what}: expected ${r.expected}, got ${r.got} ${JSON.stringify(r.text)}`);
  });
});
