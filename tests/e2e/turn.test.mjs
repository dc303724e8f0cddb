// End-to-end: a viewer with iceTransportPolicy 'relay' can only use TURN candidates, so the
// frames it decodes came through the node's built-in TURN server — over UDP with the
// credentials the WHEP answer's Link headers carry, and over TCP when the page is given only a
// `turn:…?transport=tcp` server (Chromium then never sends UDP to the TURN port).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Harness, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-publish-token';
const SECRET = 'e2e-turn-secret';

/** The TURN address the node printed (`  turn: 127.0.0.1:PORT`). */
async function turnAddress(server) {
  return waitFor(() => {
    const m = /^ {2}turn: (127\.0\.0\.1):(\d+)\s*$/m.exec(server.stdout.tail(400));
    return m && { host: m[1], port: Number(m[2]) };
  }, { timeout: 10000, what: 'the "  turn: ADDR" line on stdout' });
}

/** coturn REST credentials computed independently of the server. */
function credentials(label, ttlSeconds = 600) {
  const username = `${Math.floor(Date.now() / 1000) + ttlSeconds}:${label}`;
  const credential = crypto.createHmac('sha1', SECRET).update(username).digest('base64');
  return { username, credential };
}

/** In-page: the local candidate of the selected pair of `window.session.pc`. */
async function selectedLocal(page) {
  return page.evaluate(async () => {
    const pc = window.session?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    const local = pair && report.get(pair.localCandidateId);
    const kinds = [];
    report.forEach((s) => { if (s.type === 'local-candidate') kinds.push(`${s.candidateType}/${s.relayProtocol ?? s.protocol}`); });
    return local ? { type: local.candidateType, relayProtocol: local.relayProtocol ?? null, address: local.address, kinds } : { kinds };
  });
}

async function publish(h, server, stream) {
  const pub = await h.browser('publisher');
  const page = await pub.page();
  h.onFailure('publisher page status', () => page.textContent('#status'));
  await page.goto(server.url(`/streamer.html?stream=${stream}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 })
    .catch(async (err) => { throw new Error(`publisher did not connect: ${await page.textContent('#status')}\n${err.message}`); });
  await waitFor(async () => (await server.streamInfo(stream))?.live, { timeout: 30000, interval: 500, what: `${stream} live on the server` });
  return page;
}

/** Opens a same-origin page and watches `stream` through the SDK with relay-only ICE. */
async function watchRelayOnly(h, server, stream, iceServers) {
  const view = await h.browser('viewer');
  const page = await view.page();
  h.onFailure('viewer stats', () => viewerStats(page));
  h.onFailure('viewer selected candidate', () => selectedLocal(page));
  await page.goto(server.url('/healthz'), { waitUntil: 'domcontentloaded' });
  await page.evaluate(async ({ stream, iceServers }) => {
    const { Relaycast } = await import('/sdk/relaycast.js');
    const rc = new Relaycast(location.origin, { iceTransportPolicy: 'relay', ...(iceServers ? { iceServers } : {}) });
    window.rc = rc;
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.appendChild(video);
    video.srcObject = await rc.watch(stream);
    window.session = rc.session;
    window.reconnects = 0;
    rc.session.addEventListener('reconnecting', () => { window.reconnects += 1; });
  }, { stream, iceServers });
  return page;
}

async function assertDecodesThroughRelay(page, protocol) {
  await waitFor(async () => (await viewerStats(page))?.framesDecoded > 0, { timeout: 45000, what: 'relay-only viewer decoding frames' });
  const a = await viewerStats(page);
  const b = await waitFor(async () => {
    const s = await viewerStats(page);
    return s.framesDecoded > a.framesDecoded && s;
  }, { timeout: 10000, what: `framesDecoded to rise above ${a.framesDecoded}` });
  assert.ok(b.framesDecoded > a.framesDecoded, `framesDecoded rises (${a.framesDecoded} -> ${b.framesDecoded})`);
  const local = await waitFor(() => selectedLocal(page).then((l) => l?.type && l), { timeout: 10000, what: 'a selected candidate pair' });
  assert.equal(local.type, 'relay', `the selected local candidate is a TURN relay candidate (${JSON.stringify(local)})`);
  assert.equal(local.relayProtocol, protocol, `the viewer reaches the TURN server over ${protocol} (${JSON.stringify(local)})`);
  assert.ok(local.kinds.every((k) => k.startsWith('relay/')), `only relay candidates were gathered: ${local.kinds}`);
}

test('relay-only viewer over TURN/UDP with credentials from the WHEP Link headers', { timeout: 180000 }, async () => {
  const h = new Harness('TURN over UDP');
  await h.run(async () => {
    const stream = 'turn-udp';
    const server = await h.startServer({ token: TOKEN, args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET] });
    const turn = await turnAddress(server);
    h.note(`server at ${server.base}, TURN at ${turn.host}:${turn.port}`);
    await publish(h, server, stream);

    const page = await watchRelayOnly(h, server, stream, null);
    const links = await page.evaluate(() => window.session.linkIceServers);
    const urls = links.flatMap((s) => [].concat(s.urls));
    assert.ok(urls.includes(`turn:127.0.0.1:${turn.port}?transport=udp`), `Link advertises TURN/UDP: ${urls}`);
    assert.ok(urls.includes(`turn:127.0.0.1:${turn.port}?transport=tcp`), `Link advertises TURN/TCP: ${urls}`);
    for (const s of links) {
      assert.match(s.username, /^\d+:[0-9a-f]+$/, 'username is <expiry>:<label>');
      const expiry = Number(s.username.split(':')[0]);
      assert.ok(expiry > Date.now() / 1000, 'credentials are not expired');
      assert.equal(s.credential, crypto.createHmac('sha1', SECRET).update(s.username).digest('base64'), 'credential is HMAC-SHA1(secret, username)');
    }
    await assertDecodesThroughRelay(page, 'udp');
    // The SDK asked for the ICE servers with OPTIONS before its first offer, so the first
    // attempt already had relay candidates.
    assert.equal(await page.evaluate(() => window.reconnects), 0, 'the relay-only viewer connected on its first attempt');

    // OPTIONS on both endpoints answers the ICE servers (RFC 9725 section 4.6), fresh each time.
    for (const endpoint of [`/whep/${stream}`, '/whip/not-yet-live']) {
      const resp = await server.fetch(endpoint, { method: 'OPTIONS' });
      assert.equal(resp.status, 204, `OPTIONS ${endpoint}`);
      assert.match(resp.headers.get('accept-post') ?? '', /application\/sdp/);
      const link = resp.headers.get('link') ?? '';
      assert.match(link, new RegExp(`<turn:127\\.0\\.0\\.1:${turn.port}\\?transport=udp>; rel="ice-server"`), link);
      const username = /username="([^"]+)"/.exec(link)?.[1];
      const credential = /credential="([^"]+)"/.exec(link)?.[1];
      assert.equal(credential, crypto.createHmac('sha1', SECRET).update(username).digest('base64'), 'OPTIONS credentials are valid');
    }
    assert.equal((await server.fetch('/whep/.hidden', { method: 'OPTIONS' })).status, 400, 'OPTIONS checks the stream name');
  });
});

test('relay-only viewer over TURN/TCP when only a TCP TURN server is offered', { timeout: 180000 }, async () => {
  const h = new Harness('TURN over TCP');
  await h.run(async () => {
    const stream = 'turn-tcp';
    const server = await h.startServer({ token: TOKEN, args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET] });
    const turn = await turnAddress(server);
    h.note(`server at ${server.base}, TURN at ${turn.host}:${turn.port}`);
    await publish(h, server, stream);

    const iceServers = [{ urls: `turn:127.0.0.1:${turn.port}?transport=tcp`, ...credentials('tcp-viewer') }];
    const page = await watchRelayOnly(h, server, stream, iceServers);
    await assertDecodesThroughRelay(page, 'tcp');
  });
});

test('relay-only viewer gets nothing with forged TURN credentials', { timeout: 120000 }, async () => {
  const h = new Harness('TURN forged credentials');
  await h.run(async () => {
    const stream = 'turn-forged';
    const server = await h.startServer({ token: TOKEN, args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET] });
    const turn = await turnAddress(server);
    await publish(h, server, stream);
    const forged = { username: credentials('x').username, credential: 'Zm9yZ2VkLWNyZWRlbnRpYWw=' };
    const page = await watchRelayOnly(h, server, stream, [{ urls: `turn:127.0.0.1:${turn.port}?transport=udp`, ...forged }]);
    // Gathering ends without a relay candidate, so nothing can be decoded.
    await page.waitForFunction(() => window.session?.pc?.iceGatheringState === 'complete', null, { timeout: 30000 });
    const local = await selectedLocal(page);
    assert.deepEqual(local.kinds, [], `no candidate with forged credentials: ${local.kinds}`);
    assert.equal((await viewerStats(page))?.framesDecoded ?? 0, 0);
  });
});
