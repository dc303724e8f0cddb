// End-to-end: stream names are unique across the mesh. Three relaycast processes A, B, C; a
// Chromium publisher on A. A WHIP publish of the same name at C is refused with 409 naming A;
// a viewer at B (a relay) decodes A's stream and keeps decoding while a lying mesh node claims
// it (its claim, URL and segments are refused); WHEP offers for unknown names at B are answered
// at once from B's directory, without lookups; once A's publisher stops, its withdrawal frees
// the name, and a Chromium publish of the name at C is accepted and C becomes the stream's origin.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Harness, binaryPath, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-mesh-trust-token';
const STREAM = 'room';
/** WHEP offers for unknown names sent to the relay, after a warm-up of WARMUP (the RSS bound
 *  under 100,000 offers is node/tests/hostile_input.rs's). */
const OFFERS = 300;
const WARMUP = 50;
/** Offers in flight at once. */
const CONCURRENCY = 4;
/** Most RSS the offers may add. */
const MAX_RSS_GROWTH_KIB = 6 * 1024;

/** The lying mesh node: the mesh crate's `claim` example, built next to the relaycast binary
 *  (`cargo build -p relaycast-mesh --example claim`), or $RELAYCAST_CLAIM_BIN. */
function claimPath() {
  return process.env.RELAYCAST_CLAIM_BIN || path.join(path.dirname(binaryPath()), 'examples', 'claim');
}

/** Runs the liar for `seconds`, claiming `stream` through the given bootstrap addresses. */
function startLiar(bootstrap, stream, seconds) {
  const args = bootstrap.flatMap((b) => ['--bootstrap', b]).concat(['--stream', stream, '--seconds', String(seconds)]);
  const proc = spawn(claimPath(), args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let out = '';
  proc.stdout.on('data', (c) => { out += c; });
  proc.stderr.on('data', (c) => { out += c; });
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  return { proc, exited, output: () => out, peerId: () => /^peer: (\S+)/m.exec(out)?.[1] };
}

async function topology(server) {
  const r = await server.fetch('/api/topology');
  if (!r.ok) throw new Error(`GET /api/topology -> ${r.status}`);
  return r.json();
}

function rssKiB(server) {
  const status = fs.readFileSync(`/proc/${server.proc.pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)[1]);
}

/** The value of a labelled counter in the node's /metrics. */
async function metric(server, name, reason) {
  const text = await (await server.fetch('/metrics')).text();
  const label = reason ? `\\{reason="${reason}"\\}` : '';
  const m = new RegExp(`^${name}_total${label} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Sends `n` WHEP offers for distinct unknown names, CONCURRENCY at a time; returns the slowest. */
async function offerUnknown(server, offer, n, tag) {
  let next = 0;
  let slowest = 0;
  const statuses = new Map();
  async function worker() {
    while (next < n) {
      const i = next++;
      const t0 = performance.now();
      const r = await server.fetch(`/whep/nobody-${tag}-${i}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer, timeout: 30000 });
      await r.arrayBuffer();
      slowest = Math.max(slowest, performance.now() - t0);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { slowest, statuses };
}

test('mesh-unique stream names: 409 elsewhere, fast unknown names, name freed when the origin stops', { timeout: 300000 }, async () => {
  const h = new Harness('mesh-trust');
  await h.run(async () => {
    const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0'];
    const a = await h.startServer({ token: TOKEN, args: common });
    const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0]] });
    const c = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--bootstrap', b.p2p[0]] });
    h.onFailure('B /api/topology', async () => JSON.stringify(await topology(b)));
    h.onFailure('C /api/topology', async () => JSON.stringify(await topology(c)));
    h.onFailure('node A log', () => a.logs(60));
    h.onFailure('node B log', () => b.logs(60));
    h.onFailure('node C log', () => c.logs(60));

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher page status', () => pubPage.textContent('#status'));
    await pubPage.goto(a.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    // Real offers from Chromium for the raw requests below.
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

    // C knows A's claim on the name: a publish of it at C is refused with 409 naming A. (The
    // name is checked before the SDP, so an unparsable body probes it without creating a
    // session: 409 while the name is live elsewhere, else 400.)
    const whipAtC = (body) => c.fetch(`/whip/${STREAM}`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/sdp' },
      body,
    });
    await waitFor(async () => (await whipAtC('not an offer')).status === 409, { timeout: 20000, what: 'C to learn A\'s claim' });
    // A real offer too. (On a machine too loaded to answer pings in time, C may drop its
    // connection to A for a moment, and A's claim with it; a session created in such a moment
    // is deleted and the offer sent again.)
    const refused = await waitFor(async () => {
      const r = await whipAtC(offers.whip);
      const body = await r.text();
      if (r.status === 201) {
        await c.fetch(r.headers.get('location'), { method: 'DELETE' });
        h.note('a WHIP at C was accepted while C had lost A');
      }
      return r.status === 409 && body;
    }, { timeout: 20000, what: 'a real WHIP offer for the name at C to get 409' });
    assert.ok(refused.includes(a.peerId), `409 names A's peer id: ${refused}`);
    assert.ok(refused.includes(a.base), `409 names A's http URL: ${refused}`);
    assert.equal((await c.streamInfo(STREAM))?.live ?? false, false, 'no second origin at C');

    // A viewer at B (which relays from A) decodes A's stream.
    const view = await h.browser('viewer');
    const atB = await view.page();
    h.onFailure('viewer at B', () => viewerStats(atB));
    await atB.goto(b.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(atB))?.framesDecoded > 10, { timeout: 60000, what: 'viewer at B decoding' });
    const topoB = await topology(b);
    const tree = topoB.streams.find((s) => s.stream === STREAM);
    assert.deepEqual(tree.nodes.filter((n) => n.depth === 0).map((n) => n.peer_id), [a.peerId], 'one origin: A');

    // A third node lies: it claims the stream (signed with its own key, with an earlier start
    // time), announces a URL it is not seen at, and sends segment events for the stream. The
    // relay keeps A pinned, refuses the URL and the segments, and its viewer keeps decoding.
    const liar = startLiar([a.p2p[0], b.p2p[0]], STREAM, 8);
    h.onFailure('liar output', () => liar.output());
    try {
      await waitFor(async () => (await metric(b, 'relaycast_mesh_refused', 'competing_claim')) > 0
        && (await metric(b, 'relaycast_mesh_refused', 'http_url')) > 0,
        { timeout: 20000, what: 'B to reject the liar\'s claim and URL' });
      const framesBefore = (await viewerStats(atB)).framesDecoded;
      await waitFor(async () => (await viewerStats(atB)).framesDecoded > framesBefore + 30, { timeout: 45000, what: 'viewer at B to keep decoding' });
      const t = await topology(b);
      const origins = t.streams.find((s) => s.stream === STREAM).nodes.filter((n) => n.depth === 0).map((n) => n.peer_id);
      assert.deepEqual(origins, [a.peerId], 'the liar is not an origin of the stream');
      assert.ok(!t.nodes.some((n) => n.peer_id === liar.peerId() && n.http_url), 'the liar\'s URL is not kept');
      const place = await (await b.fetch(`/api/placement/${STREAM}`)).json().catch(() => ({}));
      assert.notEqual(place.peer_id, liar.peerId(), 'viewers are never placed on the liar');
    } finally {
      liar.proc.kill('SIGTERM');
      await Promise.race([liar.exited, new Promise((r) => setTimeout(r, 5000))]);
    }

    // Unknown names at the meshed relay are answered from its directory, without lookups.
    await waitFor(async () => {
      await offerUnknown(b, offers.whep, 1, 'settle');
      return (await metric(b, 'relaycast_mesh_stream_not_found', 'not_in_directory')) > 0;
    }, { timeout: 20000, what: 'B to answer unknown names from its directory' });
    await offerUnknown(b, offers.whep, WARMUP, 'warmup');
    const lookupsBefore = await metric(b, 'relaycast_mesh_lookups');
    const rssBefore = rssKiB(b);
    const t0 = performance.now();
    const { slowest, statuses } = await offerUnknown(b, offers.whep, OFFERS, 'load');
    const elapsed = performance.now() - t0;
    const growth = rssKiB(b) - rssBefore;
    h.note(`${OFFERS} offers: ${Math.round(elapsed)} ms, slowest ${Math.round(slowest)} ms, RSS +${growth} KiB, statuses ${JSON.stringify([...statuses])}`);
    console.log(`# ${OFFERS} WHEP offers for unknown names at a meshed node: ${Math.round(elapsed)} ms total, slowest ${Math.round(slowest)} ms, RSS +${growth} KiB`);
    assert.deepEqual([...statuses.keys()], [404], 'every unknown name is 404');
    assert.ok(growth < MAX_RSS_GROWTH_KIB, `RSS grew ${growth} KiB`);
    // Answered from the directory, not held for a lookup (timing is the host's: a debug build on a
    // loaded two-core machine took up to 8 s per answer, so the counter is what is asserted).
    assert.equal(await metric(b, 'relaycast_mesh_lookups'), lookupsBefore, 'no DHT lookups for unknown names');
    assert.ok((await viewerStats(atB)).framesDecoded > 10, 'the viewer at B still decodes');

    // A's publisher stops: its withdrawal frees the name at once; C's publish is accepted.
    await pubPage.evaluate(() => window.relaycastSession?.close());
    await pubPage.close();
    const pubC = await h.browser('publisher-c');
    const pubCPage = await pubC.page();
    h.onFailure('publisher at C status', () => pubCPage.textContent('#status'));
    const stoppedAt = Date.now();
    await waitFor(async () => (await whipAtC('not an offer')).status === 400, { timeout: 15000, what: 'the name to be free at C' });
    console.log(`# the name was free at C ${Date.now() - stoppedAt} ms after A's publisher stopped`);
    await pubCPage.goto(c.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubCPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(async () => {
      const t = await topology(b);
      const origins = t.streams.find((s) => s.stream === STREAM)?.nodes.filter((n) => n.depth === 0).map((n) => n.peer_id);
      return origins?.length === 1 && origins[0] === c.peerId;
    }, { timeout: 15000, what: 'B to see C as the origin' });
  });
});
