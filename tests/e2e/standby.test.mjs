// End-to-end: a relay keeps a standby upstream and switches to it at once when its upstream
// dies. Origin A (fan-out two) feeds B and D; C relays from B (depth 2) and attaches D beside it
// as its standby (D sits nearer the origin and off B's branch). When B is SIGKILLed, C's viewer
// decodes again from D on the same PeerConnection, without a new relay request, and no node is
// ever twice on a path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, measureStall, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-standby-token';
const STREAM = 'standby';
/** Longest allowed time from killing B to frames decoding again at C (loopback). */
const SWITCH_MS = 1000;

async function topology(server) {
  const r = await server.fetch('/api/topology');
  if (!r.ok) throw new Error(`GET /api/topology -> ${r.status}`);
  return r.json();
}

function streamNode(topo, peerId) {
  return topo.streams.find((s) => s.stream === STREAM)?.nodes.find((n) => n.peer_id === peerId);
}

async function metric(server, name) {
  const text = await (await server.fetch('/metrics')).text();
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

test('a relay switches to its standby upstream at once when its upstream dies', { timeout: 240000 }, async () => {
  const h = new Harness('standby');
  await h.run(async () => {
    const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0'];
    const a = await h.startServer({ token: TOKEN, args: [...common, '--max-relay-children', '2'] });
    const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0]] });
    const c = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--bootstrap', b.p2p[0]] });
    // D deals with A and C only: it pulls from A (it would ask B beside A), and serves C.
    const d = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0], '--bootstrap', c.p2p[0], '--trusted-peer', `${a.peerId},${c.peerId}`] });
    for (const [name, n] of [['A', a], ['B', b], ['C', c], ['D', d]]) h.onFailure(`node ${name} log`, () => n.logs(150));
    h.onFailure('C /api/topology', async () => JSON.stringify(await topology(c)));

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    await pubPage.goto(a.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    // B and D relay from A (a viewer at each); A's fan-out is then used up.
    const view = await h.browser('viewers');
    for (const n of [b, d]) {
      await waitFor(async () => (await topology(n)).streams.some((s) => s.stream === STREAM), { timeout: 15000, what: 'the stream announcement' });
      const page = await view.context.newPage();
      await page.goto(n.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
      await waitFor(async () => (await viewerStats(page))?.framesDecoded > 0, { timeout: 30000, what: 'viewer decoding at a depth-1 relay' });
    }
    await waitFor(async () => {
      const t = await topology(c);
      return streamNode(t, b.peerId)?.depth === 1 && streamNode(t, d.peerId)?.depth === 1;
    }, { timeout: 15000, what: 'C to see B and D at depth 1' });

    // C relays from B or D (A is full) and attaches the other one as its standby.
    const atC = await view.context.newPage();
    h.onFailure('viewer at C', () => viewerStats(atC));
    await atC.goto(c.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(atC))?.framesDecoded > 10, { timeout: 30000, what: 'viewer at C decoding' });
    const cNode = await waitFor(async () => streamNode(await topology(c), c.peerId), { timeout: 5000, what: 'C in its own topology' });
    assert.equal(cNode.depth, 2, 'C is at depth 2');
    const [upstream, other] = cNode.upstream === b.peerId ? [b, d] : [d, b];
    assert.equal(cNode.upstream, upstream.peerId);
    await waitFor(async () => (await metric(c, 'relaycast_mesh_relay_standbys_total')) >= 1, { timeout: 15000, what: 'C to connect a standby upstream' });
    assert.match(c.logs(200), new RegExp(`standby upstream connected.*upstream=${other.peerId}`), 'the standby is the other depth-1 relay');

    // The upstream dies: C's viewer decodes again from the standby, same PeerConnection.
    await atC.evaluate(() => { window.firstPc = window.session.pc; });
    const m = await measureStall(atC, 6000, () => upstream.kill());
    console.log(`# standby switch: longest frame gap ${Math.round(m.stall)} ms (from ${Math.round(m.stallAt)} ms after SIGKILL of the upstream)`);
    assert.ok(m.frames > 60, `viewer at C decodes on (${m.frames} frames in 6 s)`);
    assert.ok(m.stall <= SWITCH_MS, `no frame decoded for ${Math.round(m.stall)} ms (limit ${SWITCH_MS} ms)`);
    assert.equal(await atC.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection');
    assert.equal(await metric(c, 'relaycast_mesh_relay_standby_switches_total'), 1, 'switched to the standby');
    const after = await waitFor(async () => {
      const n = streamNode(await topology(c), c.peerId);
      return n?.upstream === other.peerId && n;
    }, { timeout: 5000, what: 'C to relay from its former standby' });
    assert.deepEqual(after.path, [a.peerId, other.peerId]);
    for (const e of (await topology(a)).edges) {
      const path = [...e.path, e.to];
      assert.equal(new Set(path).size, path.length, `no node twice on a path: ${JSON.stringify(e)}`);
    }
  });
});
