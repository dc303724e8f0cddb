// End-to-end: access tokens minted by PyJWT (not by the node's code) against a node started with
// --api-secret and --watch-auth, with Chromium's SDP offers: publish grants (201/403), refused
// tokens (401 with the reason), watch grants by header and ?token=, events, replay and archive
// routes, the admin API, takeover of a publish, `relaycast token` (checked by PyJWT), and no token
// in any log line at RELAYCAST_LOG=trace.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Harness, binaryPath } from './harness.mjs';
import { pyjwt, nowSecs } from './pyjwt.mjs';

const MASTER = 'e2e-master-publish-token';
const SECRET = 'tokens-e2e-api-secret-0123456789abcdef';
const OTHER_SECRET = 'another-api-secret-0123456789abcdef-xyz';

/** Reads a server-sent event stream until an event of `type` arrives; resolves with the events. */
async function readEvents(url, type, timeoutMs = 10000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  const seen = [];
  try {
    const resp = await fetch(url, { signal: ctrl.signal });
    assert.equal(resp.status, 200, `GET ${url}`);
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of resp.body) {
      buf += decoder.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) seen.push(JSON.parse(line.slice(5)));
        }
        if (seen.some((e) => e.type === type)) return seen;
      }
    }
    return seen;
  } catch (err) {
    throw new Error(`no ${type} event from ${url} (got ${JSON.stringify(seen)}): ${err.message}`);
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
}

test('PyJWT tokens: publish and watch grants, refusals, admin API, takeover; no token in trace logs', { timeout: 120000 }, async () => {
  const h = new Harness('tokens');
  await h.run(async () => {
    const prevLog = process.env.RELAYCAST_LOG;
    process.env.RELAYCAST_LOG = 'trace';
    let server;
    try {
      server = await h.startServer({ token: MASTER, args: ['--api-secret', SECRET, '--watch-auth', '--no-turn'] });
    } finally {
      if (prevLog === undefined) delete process.env.RELAYCAST_LOG; else process.env.RELAYCAST_LOG = prevLog;
    }
    const logs = [];
    server.proc.stdout.on('data', (c) => logs.push(c));
    server.proc.stderr.on('data', (c) => logs.push(c));

    const b = await h.browser('offers');
    const page = await b.page();
    await page.goto(server.url('/healthz'));
    const offer = (dir) => page.evaluate(async (direction) => {
      const pc = new RTCPeerConnection();
      pc.addTransceiver('video', { direction });
      pc.addTransceiver('audio', { direction });
      const sdp = (await pc.createOffer()).sdp;
      pc.close();
      return sdp;
    }, dir);

    const now = nowSecs();
    const grants = { publish: ['granted', 'team-*'], watch: [] };
    const [good, expired, forged, early, none, hs384, watcher, admin, team] = pyjwt([
      { encode: { exp: now + 600, sub: 'alice', grants }, secret: SECRET },
      { encode: { exp: now - 3600, grants }, secret: SECRET },
      { encode: { exp: now + 600, grants }, secret: OTHER_SECRET },
      { encode: { exp: now + 7200, nbf: now + 3600, grants }, secret: SECRET },
      { encode: { exp: now + 600, grants: { ...grants, admin: true } }, alg: 'none' },
      { encode: { exp: now + 600, grants }, secret: SECRET, alg: 'HS384' },
      { encode: { exp: now + 600, sub: 'viewer', grants: { watch: ['granted'] } }, secret: SECRET },
      { encode: { exp: now + 600, sub: 'ops', grants: { admin: true } }, secret: SECRET },
      { encode: { exp: now + 600, sub: 'bob', grants: { publish: ['team-*'] } }, secret: SECRET },
    ]);
    const tokens = { good, expired, forged, early, none, hs384, watcher, admin, team };

    const post = async (path, sdp, token) => {
      const headers = { 'Content-Type': 'application/sdp' };
      if (token) headers.Authorization = `Bearer ${token}`;
      const resp = await server.fetch(path, { method: 'POST', headers, body: sdp });
      return { status: resp.status, body: await resp.text(), location: resp.headers.get('location') };
    };
    const get = async (path, token) => {
      const resp = await server.fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
      return { status: resp.status, body: await resp.text() };
    };

    const whip = await offer('sendonly');
    const whep = await offer('recvonly');

    // Publishing.
    const first = await post('/whip/granted', whip, good);
    assert.equal(first.status, 201, `publish with a grant: ${first.body}`);
    const refusals = [
      ['no publish grant for the stream', await post('/whip/other', whip, good), 403, 'no publish grant'],
      ['expired', await post('/whip/granted', whip, expired), 401, 'expired'],
      ['forged (other secret)', await post('/whip/granted', whip, forged), 401, 'signature'],
      ['not yet valid', await post('/whip/granted', whip, early), 401, 'not valid yet'],
      ['alg none', await post('/whip/granted', whip, none), 401, 'alg none'],
      ['HS384', await post('/whip/granted', whip, hs384), 401, 'HS384'],
      ['malformed', await post('/whip/granted', whip, 'abc.def'), 401, 'malformed'],
      ['missing', await post('/whip/granted', whip, null), 401, 'missing'],
      ['watch-only token', await post('/whip/granted', whip, watcher), 403, 'no publish grant'],
    ];
    for (const [what, got, status, reason] of refusals) {
      h.note(`WHIP ${what}: ${got.status} ${got.body.trim()}`);
      assert.equal(got.status, status, `WHIP ${what}: ${got.body}`);
      assert.ok(got.body.includes(reason), `WHIP ${what}: reason ${JSON.stringify(got.body)} should name ${reason}`);
    }
    const teamPub = await post('/whip/team-7', whip, team);
    assert.equal(teamPub.status, 201, `prefix grant team-*: ${teamPub.body}`);

    // Watching with --watch-auth.
    assert.equal((await post('/whep/granted', whep, null)).status, 401, 'WHEP without a token');
    assert.equal((await post('/whep/granted', whep, good)).status, 403, 'WHEP with a publish-only token');
    assert.equal((await post('/whep/granted', whep, expired)).status, 401, 'WHEP with an expired token');
    const viewByHeader = await post('/whep/granted', whep, watcher);
    assert.equal(viewByHeader.status, 201, `WHEP with a watch token in the header: ${viewByHeader.body}`);
    const viewByQuery = await post(`/whep/granted?token=${watcher}`, whep, null);
    assert.equal(viewByQuery.status, 201, `WHEP with ?token=: ${viewByQuery.body}`);
    assert.equal((await post(`/whep/team-7?token=${watcher}`, whep, null)).status, 403, 'WHEP ?token= for another stream');

    // Viewer events (EventSource style: ?token=), replay playlists and the archive API.
    const events = server.url(`${viewByQuery.location}/events`);
    assert.equal((await fetch(events)).status, 401, 'viewer events without a token');
    const greeting = await readEvents(`${events}?token=${watcher}`, 'viewers');
    assert.ok(greeting.some((e) => e.type === 'publisher'), `events greeting: ${JSON.stringify(greeting)}`);
    for (const path of ['/replay/granted/vod.m3u8', '/replay/granted/live.m3u8', '/api/streams/granted/archive']) {
      assert.equal((await get(path)).status, 401, `${path} without a token`);
      assert.equal((await get(path, good)).status, 403, `${path} with a publish-only token`);
      const ok = await get(`${path}?token=${watcher}`);
      assert.ok(ok.status !== 401 && ok.status !== 403, `${path}?token= got ${ok.status} ${ok.body}`);
    }

    // Admin API.
    assert.equal((await get('/api/admin/sessions')).status, 401, 'admin without a token');
    assert.equal((await get('/api/admin/sessions', watcher)).status, 403, 'admin with a watch token');
    const listed = JSON.parse((await get('/api/admin/sessions', admin)).body).sessions;
    h.note(`admin sessions: ${JSON.stringify(listed)}`);
    const ofGranted = listed.filter((s) => s.stream === 'granted');
    assert.deepEqual(ofGranted.map((s) => s.role).sort(), ['publisher', 'viewer', 'viewer']);
    for (const s of listed) {
      assert.equal(typeof s.id, 'number');
      assert.equal(typeof s.bitrate_bps, 'number');
      assert.ok('remote_addr' in s);
      assert.ok(Math.abs(Date.parse(s.since) / 1000 - now) < 120, `since ${s.since} is RFC 3339 and recent`);
    }
    const viewer = ofGranted.find((s) => s.role === 'viewer');
    const kick = await server.fetch(`/api/admin/sessions/${viewer.id}`, { method: 'DELETE', headers: { Authorization: `Bearer ${admin}` } });
    assert.equal(kick.status, 204, 'kick a viewer');
    const afterKick = JSON.parse((await get('/api/admin/sessions', admin)).body).sessions;
    assert.ok(!afterKick.some((s) => s.id === viewer.id), 'the kicked viewer is gone');

    // Takeover: a second publish of the live stream with a grant gets 201; the first session is
    // told it ended (so its client does not reconnect) and closes.
    const oldPublisher = ofGranted.find((s) => s.role === 'publisher');
    const oldEvents = readEvents(server.url(`${first.location}/events`), 'closed');
    await new Promise((r) => setTimeout(r, 300));
    const second = await post('/whip/granted', whip, good);
    assert.equal(second.status, 201, `takeover publish: ${second.body}`);
    const told = await oldEvents;
    assert.ok(told.some((e) => e.type === 'ended' && /took over/.test(e.reason)), `old publisher events: ${JSON.stringify(told)}`);
    const afterTakeover = JSON.parse((await get('/api/admin/sessions', admin)).body).sessions.filter((s) => s.stream === 'granted');
    const publishers = afterTakeover.filter((s) => s.role === 'publisher');
    assert.equal(publishers.length, 1, JSON.stringify(afterTakeover));
    assert.notEqual(publishers[0].id, oldPublisher.id, 'a new publisher session');
    assert.ok(afterTakeover.some((s) => s.role === 'viewer'), 'the viewer stays through the takeover');

    // End a publish through the admin API.
    const end = await server.fetch('/api/admin/streams/team-7', { method: 'DELETE', headers: { Authorization: `Bearer ${admin}` } });
    assert.equal(end.status, 204, 'end the team-7 publish');
    assert.ok(!(await server.streamInfo('team-7'))?.live, 'team-7 no longer live');
    assert.equal((await server.fetch('/api/admin/streams/team-7', { method: 'DELETE', headers: { Authorization: `Bearer ${admin}` } })).status, 404);

    // `relaycast token` signs with the same secret: PyJWT verifies it and the node accepts it.
    const cli = spawnSync(binaryPath(), ['--api-secret', SECRET, 'token', '--publish', 'cli-*', '--watch', 'cli-1', '--ttl', '10m', '--sub', 'cli'], { encoding: 'utf8', timeout: 30000 });
    assert.equal(cli.status, 0, cli.stderr);
    const cliToken = cli.stdout.trim();
    tokens.cli = cliToken;
    const [claims] = pyjwt([{ decode: cliToken, secret: SECRET }]);
    assert.deepEqual(claims.grants, { publish: ['cli-*'], watch: ['cli-1'] });
    assert.equal(claims.sub, 'cli');
    assert.equal(claims.exp - claims.iat, 600);
    assert.equal((await post('/whip/cli-1', whip, cliToken)).status, 201, 'publish with a relaycast token');

    // The refusal counters.
    const metrics = await (await server.fetch('/metrics')).text();
    for (const reason of ['expired', 'bad_signature', 'not_yet_valid', 'alg_none', 'algorithm', 'no_grant', 'missing']) {
      const m = new RegExp(`relaycast_access_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(metrics);
      assert.ok(m && Number(m[1]) > 0, `metric for ${reason}`);
    }

    // No token in any log line (trace level), neither from headers nor from ?token= URIs.
    await new Promise((r) => setTimeout(r, 500));
    const text = Buffer.concat(logs).toString('utf8');
    h.note(`trace log: ${text.length} bytes, ${text.split('\n').length} lines`);
    assert.ok(text.length > 10000 && /TRACE/.test(text), 'the node logged at trace level');
    for (const [name, t] of Object.entries(tokens)) {
      const sig = t.split('.')[2];
      assert.ok(!text.includes(t), `token ${name} appears in the logs`);
      if (sig) assert.ok(!text.includes(sig), `signature of token ${name} appears in the logs`);
    }
    assert.ok(!text.includes(MASTER), 'the master token is not logged after startup');
  });
});
