// End-to-end: a full node redirects a viewer to another node of the mesh, with --watch-auth.
// Node A is the origin (Chromium publishes there); node B (--max-sessions 2) relays the stream
// from A for its first viewer and is then full. A second viewer at B, using the SDK with a watch
// token minted by PyJWT, gets a 307 whose Location (at A) carries the token in ?token= (browsers
// drop Authorization on cross-origin redirects); the SDK follows it and decodes frames from A.
// Also: every module of the SDK is served by the node as text/javascript.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, REPO_ROOT, waitFor, viewerStats } from './harness.mjs';
import { pyjwt, nowSecs } from './pyjwt.mjs';

const MASTER = 'e2e-redirect-master-token';
const SECRET = 'redirect-e2e-api-secret-0123456789abcdef';
const STREAM = 'redir-room';

/** In a page of `server`'s origin: watch `stream` through the SDK with `token`; window.session is the session. */
async function watchWithToken(page, server, stream, token) {
  await page.goto(server.url('/healthz'), { waitUntil: 'domcontentloaded' });
  await page.evaluate(async ({ stream, token }) => {
    const { Relaycast } = await import('/sdk/relaycast.js');
    const rc = new Relaycast(location.origin, { token });
    window.rc = rc;
    window.events = [];
    const video = document.createElement('video');
    video.muted = true;
    video.autoplay = true;
    document.body.appendChild(video);
    rc.addEventListener('viewers', (e) => window.events.push({ type: 'viewers', count: e.detail.count }));
    video.srcObject = await rc.watch(stream);
    window.session = rc.session;
  }, { stream, token });
}

test('every SDK module is served as text/javascript, and the entry imports only served modules', { timeout: 60000 }, async () => {
  const h = new Harness('sdk modules');
  await h.run(async () => {
    const server = await h.startServer({ token: MASTER, args: ['--no-turn'] });
    const files = ['relaycast.js', ...fs.readdirSync(path.join(REPO_ROOT, 'sdk/lib')).filter((n) => n.endsWith('.js')).map((n) => `lib/${n}`)];
    const seen = new Set();
    const queue = ['relaycast.js'];
    while (queue.length) {
      const f = queue.shift();
      if (seen.has(f)) continue;
      seen.add(f);
      const r = await server.fetch(`/sdk/${f}`);
      assert.equal(r.status, 200, `GET /sdk/${f}`);
      assert.match(r.headers.get('content-type') ?? '', /^text\/javascript\b/, `Content-Type of /sdk/${f}`);
      const body = await r.text();
      assert.equal(body, fs.readFileSync(path.join(REPO_ROOT, 'sdk', f), 'utf8'), `/sdk/${f} is the file of the work tree`);
      for (const m of body.matchAll(/^(?:import|export)\s[^'"]*?from\s+'(\.\/[^']+)'/gm)) {
        queue.push(path.posix.normalize(path.posix.join(path.posix.dirname(f), m[1])));
      }
    }
    assert.deepEqual([...seen].sort(), files.sort(), 'the entry reaches every module of sdk/lib, and nothing else');
  });
});

test('--watch-auth: a full node redirects a token holder with ?token=, and the SDK watches from the other node', { timeout: 180000 }, async () => {
  const h = new Harness('redirect with token');
  await h.run(async () => {
    const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0', '--api-secret', SECRET, '--watch-auth', '--no-turn'];
    const a = await h.startServer({ token: MASTER, args: common });
    // B takes two sessions: its relay from A and one viewer; more viewers are redirected.
    const b = await h.startServer({ token: MASTER, args: [...common, '--max-sessions', '2', '--bootstrap', a.p2p[0]] });
    h.onFailure('node A log', () => a.logs(60));
    h.onFailure('node B log', () => b.logs(80));
    await waitFor(async () => {
      const n = await (await b.fetch('/api/node')).json();
      return n.known_peers?.some((p) => p.peer_id === a.peerId && p.connected);
    }, { timeout: 15000, what: 'B connected to A' });

    const now = nowSecs();
    const [watchToken, otherToken] = pyjwt([
      { encode: { exp: now + 600, sub: 'viewer', grants: { publish: [], watch: ['redir-*'] } }, secret: SECRET },
      { encode: { exp: now + 600, sub: 'other', grants: { publish: [], watch: ['elsewhere'] } }, secret: SECRET },
    ]);

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher page status', () => pubPage.textContent('#status'));
    await pubPage.goto(a.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${MASTER}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    // The first viewer at B: B relays the stream from A and is then full.
    const view = await h.browser('viewers');
    const first = await view.page();
    h.onFailure('first viewer at B', () => viewerStats(first));
    await waitFor(async () => {
      try {
        await watchWithToken(first, b, STREAM, watchToken);
        return true;
      } catch (err) {
        h.note(`first viewer: ${err.message}`);
        return false;
      }
    }, { timeout: 30000, what: 'the first viewer at B to be answered' });
    await waitFor(async () => (await viewerStats(first))?.framesDecoded > 0, { timeout: 30000, what: 'the first viewer at B decoding' });
    assert.ok((await first.evaluate(() => window.session.location)).startsWith(b.base), 'the first viewer is served by B');

    // B is full now. Without a token: 401, no redirect (nothing to learn about the mesh).
    const post = (headers) => b.fetch(`/whep/${STREAM}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...headers }, body: 'v=0\r\n', redirect: 'manual' });
    const anonymous = await post({});
    assert.equal(anonymous.status, 401, `no token: ${anonymous.status} ${await anonymous.text()}`);
    const wrong = await post({ Authorization: `Bearer ${otherToken}` });
    assert.equal(wrong.status, 403, 'a token without a grant for the stream');
    // With the token in the Authorization header: 307 to A, the token moved into ?token=.
    const redirect = await waitFor(async () => {
      const r = await post({ Authorization: `Bearer ${watchToken}` });
      return r.status === 307 && r;
    }, { timeout: 15000, what: 'B (full) to answer 307' });
    const location = new URL(redirect.headers.get('location'));
    assert.equal(location.origin, a.base, `the redirect goes to A: ${location}`);
    assert.equal(location.pathname, `/whep/${STREAM}`);
    assert.equal(location.searchParams.get('token'), watchToken, 'the Location carries the token in ?token=');
    // The Location works on its own at A, without an Authorization header.
    const direct = await a.fetch(`${location.pathname}${location.search}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0\r\n' });
    assert.equal(direct.status, 400, `A accepts ?token= and only then looks at the (bad) offer: ${direct.status} ${await direct.text()}`);

    // The second viewer at B, through the SDK with the token: follows the redirect and decodes from A.
    const second = await view.context.newPage();
    h.onFailure('second viewer', () => viewerStats(second));
    h.onFailure('second viewer session', () => second.evaluate(() => JSON.stringify({ location: window.session?.location, state: window.session?.state, events: window.events })));
    await watchWithToken(second, b, STREAM, watchToken);
    const where = await second.evaluate(() => window.session.location);
    assert.ok(where.startsWith(`${a.base}/whep/${STREAM}/`), `the SDK followed the redirect to A (session at ${where})`);
    await waitFor(async () => (await viewerStats(second))?.framesDecoded > 10, { timeout: 30000, what: 'the redirected viewer decoding' });
    const stats = await viewerStats(second);
    assert.ok(stats.frameWidth > 0 && stats.frameHeight > 0, `decoded frames have a size (${stats.frameWidth}x${stats.frameHeight})`);
    // The session's events at A take the token in ?token= as well: the viewer count arrives.
    await waitFor(() => second.evaluate(() => window.events.some((e) => e.type === 'viewers')), { timeout: 15000, what: 'a viewers event from A' });
  });
});
