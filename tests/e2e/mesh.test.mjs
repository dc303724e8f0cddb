// End-to-end: three relaycast processes form a relay chain A → B → C (A is the origin with a
// fan-out of one), Chromium watches at C, and when B is SIGKILLed, C re-attaches to A and the
// viewer at C never goes 2 s without a decoded frame, on the same PeerConnection. Every node's ancestor path
// in /api/topology names each node once and is as long as its depth.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';

const TOKEN = 'e2e-mesh-token';
const STREAM = 'cascade';
/** Longest allowed time from killing B to frames decoding again at C. */
const FAILOVER_MS = 2000;

async function topology(server) {
  const r = await server.fetch('/api/topology');
  if (!r.ok) throw new Error(`GET /api/topology -> ${r.status}`);
  return r.json();
}

/** The entry of `peerId` in the stream's tree of a topology, if present. */
function streamNode(topo, peerId) {
  return topo.streams.find((s) => s.stream === STREAM)?.nodes.find((n) => n.peer_id === peerId);
}

test('relay chain A -> B -> C, depth 2 at C, and failover to A when B dies', { timeout: 240000 }, async () => {
  const h = new Harness('mesh');
  await h.run(async () => {
    const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0'];
    const a = await h.startServer({ token: TOKEN, args: [...common, '--max-relay-children', '1'] });
    assert.ok(a.peerId, 'node A prints its p2p address');
    const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0]] });
    // C takes two sessions: its relay from upstream and one viewer; more viewers are redirected.
    const c = await h.startServer({ token: TOKEN, args: [...common, '--max-sessions', '2', '--bootstrap', a.p2p[0], '--bootstrap', b.p2p[0]] });
    h.onFailure('A /api/topology', async () => JSON.stringify(await topology(a)));
    h.onFailure('C /api/topology', async () => JSON.stringify(await topology(c)));
    h.onFailure('node A log', () => a.logs(60));
    h.onFailure('node B log', () => b.logs(60));
    h.onFailure('node C log', () => c.logs(80));

    // /api/node: identity and peers.
    const nodeA = await (await a.fetch('/api/node')).json();
    assert.equal(nodeA.peer_id, a.peerId);
    await waitFor(async () => {
      const n = await (await c.fetch('/api/node')).json();
      const ids = n.known_peers.filter((p) => p.connected).map((p) => p.peer_id);
      return ids.includes(a.peerId) && ids.includes(b.peerId);
    }, { timeout: 15000, what: 'C connected to A and B' });

    const pub = await h.browser('publisher');
    const pubPage = await pub.page();
    h.onFailure('publisher page status', () => pubPage.textContent('#status'));
    await pubPage.goto(a.url(`/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`), { waitUntil: 'domcontentloaded' });
    await pubPage.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });

    // B learns of the stream through gossip and relays it from A when a viewer asks B for it.
    await waitFor(async () => (await topology(b)).streams.some((s) => s.stream === STREAM), { timeout: 15000, what: 'B to hear the stream announcement' });
    const view = await h.browser('viewers');
    const atB = await view.page();
    h.onFailure('viewer at B', () => viewerStats(atB));
    await atB.goto(b.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(atB))?.framesDecoded > 0, { timeout: 30000, what: 'viewer at B decoding' });
    await waitFor(async () => streamNode(await topology(c), b.peerId)?.depth === 1, { timeout: 15000, what: 'C to see B at depth 1' });

    // A has no fan-out left, so C must relay from B: depth 2.
    const atC = await view.context.newPage();
    h.onFailure('viewer at C', () => viewerStats(atC));
    await atC.goto(c.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(atC))?.framesDecoded > 10, { timeout: 30000, what: 'viewer at C decoding' });
    const cNode = await waitFor(async () => streamNode(await topology(c), c.peerId), { timeout: 5000, what: 'C in its own topology' });
    assert.equal(cNode.depth, 2, 'C is at depth 2');
    assert.equal(cNode.upstream, b.peerId, 'C relays from B');
    assert.deepEqual(cNode.path, [a.peerId, b.peerId], 'C\'s ancestor path is A, B');
    // B pushes its path down the edge B -> C over the mesh (/relaycast/path/1); C takes it.
    const pushes = async (node, direction) => {
      const text = await (await node.fetch('/metrics')).text();
      const m = text.match(new RegExp(`^relaycast_mesh_path_pushes_total\\{direction="${direction}"\\} (\\d+)$`, 'm'));
      assert.ok(m, `path push metrics at ${node.url('/metrics')}`);
      return Number(m[1]);
    };
    await waitFor(async () => (await pushes(b, 'sent')) > 0 && (await pushes(c, 'received')) > 0,
      { timeout: 5000, what: 'B to push its path to C' });
    assert.equal(await pushes(c, 'dropped'), 0, 'no path push dropped at C');
    const topoA = await waitFor(async () => {
      const t = await topology(a);
      return t.edges.some((e) => e.from === b.peerId && e.to === c.peerId) && t;
    }, { timeout: 10000, what: 'A to see the edge B -> C' });
    assert.ok(topoA.edges.some((e) => e.from === a.peerId && e.to === b.peerId), 'edge A -> B');
    for (const e of topoA.edges) {
      const path = [...e.path, e.to];
      assert.equal(new Set(path).size, path.length, `no node twice on a path: ${JSON.stringify(e)}`);
      assert.equal(e.path.length, e.depth, `depth is the path's length: ${JSON.stringify(e)}`);
    }

    // The origin's archive announces its segments to the relays, which tell their viewers.
    await atC.evaluate(() => {
      window.segmentsAtC = [];
      window.session.addEventListener('segment', (e) => window.segmentsAtC.push(e.detail));
    });
    const segs = await waitFor(() => atC.evaluate(() => window.segmentsAtC.length > 0 && window.segmentsAtC), { timeout: 15000, what: 'segment events at C' });
    assert.match(String(segs[0].cid), /^baf/, `segment event carries a CID: ${JSON.stringify(segs[0])}`);

    // C keeps a copy of the origin's archive (tests/e2e/archive-copies.test.mjs checks it in
    // full) and serves replay from it instead of redirecting to the origin.
    const playlist = await waitFor(async () => {
      const r = await c.fetch(`/replay/${STREAM}/live.m3u8`, { redirect: 'manual' });
      const text = r.status === 200 ? await r.text() : '';
      return text.includes('#EXTINF') && text;
    }, { timeout: 20000, what: 'C to serve the live playlist from its copy' });
    assert.match(playlist, /#EXT-X-MAP:URI="\/ipfs\/b/);

    // The dashboard at C draws the tree: three nodes, two edges.
    const dash = await view.context.newPage();
    await dash.goto(c.url('/dashboard.html'), { waitUntil: 'domcontentloaded' });
    await waitFor(() => dash.evaluate(() => document.querySelectorAll('svg .node').length === 3 && document.querySelectorAll('svg .edge').length === 2),
      { timeout: 10000, what: 'dashboard to draw 3 nodes and 2 edges' });
    await dash.close();

    // Failover: B dies; C re-attaches to A and its viewer resumes on the same PeerConnection.
    await atC.evaluate(() => { window.firstPc = window.session.pc; });
    const samples = [];
    const killedAt = Date.now();
    await b.kill();
    while (Date.now() - killedAt < 8000) {
      const s = await viewerStats(atC);
      samples.push({ t: Date.now() - killedAt, frames: s?.framesDecoded ?? 0 });
      await new Promise((r) => setTimeout(r, 50));
    }
    // The stall is the longest run without a new decoded frame; decoding resumed at its end.
    let stall = { from: 0, to: 0 };
    let lastChange = samples[0];
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].frames !== samples[i - 1].frames) {
        if (samples[i].t - lastChange.t > stall.to - stall.from) stall = { from: lastChange.t, to: samples[i].t };
        lastChange = samples[i];
      }
    }
    h.note(`failover samples: ${JSON.stringify(samples.filter((_, i) => i % 4 === 0))}`);
    const last = samples[samples.length - 1];
    assert.ok(last.frames > samples[0].frames + 60, `viewer at C decodes again after the failover (${samples[0].frames} -> ${last.frames})`);
    // The longest gap, not where it ends: when the re-attach is quicker than the player's jitter
    // buffer no stall shows, and the longest gap is then ordinary jitter anywhere in the 8 s.
    assert.ok(stall.to - stall.from <= FAILOVER_MS, `no frame decoded from ${stall.from} ms to ${stall.to} ms after B was killed (limit ${FAILOVER_MS} ms)`);
    console.log(`# failover: frames stalled from ${stall.from} ms to ${stall.to} ms after SIGKILL of B`);
    assert.equal(await atC.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection');
    const after = await waitFor(async () => {
      const n = streamNode(await topology(c), c.peerId);
      return n?.upstream === a.peerId && n;
    }, { timeout: 5000, what: 'C to relay from A' });
    assert.equal(after.depth, 1);
    assert.deepEqual(after.path, [a.peerId], 'C\'s path after the failover is A alone');

    // C is full: a new viewer there gets a 307 to a node with room, and the SDK follows it.
    const direct = await c.fetch(`/whep/${STREAM}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0\r\n', redirect: 'manual' });
    assert.equal(direct.status, 307, 'full node redirects');
    assert.ok(direct.headers.get('location').startsWith(a.base), `redirect to A: ${direct.headers.get('location')}`);
    const redirected = await view.context.newPage();
    h.onFailure('redirected viewer', () => viewerStats(redirected));
    await redirected.goto(c.url(`/viewer.html?stream=${STREAM}`), { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(redirected))?.framesDecoded > 0, { timeout: 30000, what: 'redirected viewer decoding' });
    const where = await redirected.evaluate(() => window.session.location);
    assert.ok(where.startsWith(a.base), `the SDK followed the redirect to A (session at ${where})`);
  });
});
