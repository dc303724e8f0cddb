// End-to-end: a viewer at any depth of the relay tree can lip-sync by the RTCP sender reports it
// receives, because every hop's reports carry the publisher's capture clock, not the hop's
// arrival times. An aiortc publisher (tests/python/aiortc_client.py publish --sync) flashes its
// picture white and beeps at the same instants every 2 s into origin A, with every packet of its
// audio SSRC held back 200 ms on the way (a UDP proxy inside the client). Node B bootstraps to A
// and relays the stream from A for its own viewer (depth 1). An aiortc viewer at A (depth 0) and
// one at B (`watch-sync`) map each flash and each beep onset to the sender's NTP time through the
// latest sender report of its own track: the beep is within 30 ms of its flash by sender reports
// (median), while by arrival it is > 120 ms late (the proxy works).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, REPO_ROOT, waitFor } from './harness.mjs';
import { PyClient } from './pyclient.mjs';

const TOKEN = 'e2e-avsync-depth-token';
const STREAM = 'av-sync-depth';
const PYTHON = process.env.RELAYCAST_PYTHON || path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const CLIENT = path.join(REPO_ROOT, 'tests/python/aiortc_client.py');
const DELAY_MS = 200;
/** Flash/beep pairs each viewer maps by sender reports. */
const PAIRS = 4;
/** Largest median |beep - flash| by sender reports. */
const SYNC_MS = 30;
/** Smallest median beep - flash by arrival: the proxy's delay shows. */
const ARRIVAL_MS = 120;

async function topology(server) {
  const r = await server.fetch('/api/topology');
  if (!r.ok) throw new Error(`GET /api/topology -> ${r.status}`);
  return r.json();
}

/** The entry of `peerId` in the stream's tree of a topology, if present. */
function streamNode(topo, peerId) {
  return topo.streams.find((s) => s.stream === STREAM)?.nodes.find((n) => n.peer_id === peerId);
}

/** Starts an aiortc sync viewer of the stream at `server`. */
function syncViewer(server) {
  return new PyClient(PYTHON, CLIENT, ['watch-sync', server.url(`/whep/${STREAM}`), '--pairs', String(PAIRS), '--timeout', '40']);
}

/** The viewer's exit code and `sync` report once it exits, printed. */
async function syncResult(viewer, label) {
  const code = await viewer.exit(60000);
  const sync = viewer.find('sync');
  const srs = viewer.events.filter((e) => e.event === 'sr');
  console.log(`# ${label}: median beep - flash by sender reports ${sync?.sr_median_ms} ms (|.| ${sync?.sr_median_abs_ms} ms), `
    + `by arrival ${sync?.arrival_median_ms} ms; pairs ${JSON.stringify(sync?.pairs)}`);
  console.log(`# ${label}: sender reports ${JSON.stringify(sync?.sender_reports)}, mapping jumps (ms) `
    + `${JSON.stringify(srs.map((e) => `${e.kind[0]}:${e.jump_ms}`))}`);
  return { code, sync };
}

test(`sender reports keep the publisher's A/V sync at depth 0 and 1 (audio held back ${DELAY_MS} ms)`, { timeout: 180000 }, async () => {
  const h = new Harness('av sync depth');
  const clients = [];
  await h.run(async () => {
    if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} missing: run scripts/test.sh (it creates tests/python/.venv)`);
    const common = ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0'];
    const a = await h.startServer({ token: TOKEN, args: [...common, '--max-relay-children', '1'] });
    assert.ok(a.peerId, 'node A prints its p2p address');
    const b = await h.startServer({ token: TOKEN, args: [...common, '--bootstrap', a.p2p[0]] });
    h.onFailure('A /api/topology', async () => JSON.stringify(await topology(a)));
    h.onFailure('B /api/topology', async () => JSON.stringify(await topology(b)));
    h.onFailure('A /api/streams', async () => (await a.fetch('/api/streams')).text());
    h.onFailure('B /api/streams', async () => (await b.fetch('/api/streams')).text());
    h.onFailure('node A log', () => a.logs(80));
    h.onFailure('node B log', () => b.logs(80));

    const publisher = new PyClient(PYTHON, CLIENT, ['publish', a.url(`/whip/${STREAM}`), '--codec', 'vp8', '--token', TOKEN,
      '--seconds', '120', '--sync', '--delay-audio-ms', String(DELAY_MS)]);
    clients.push(publisher);
    h.onFailure('aiortc publisher', () => publisher.describe());
    await waitFor(() => publisher.events.some((e) => e.state === 'connected'), { timeout: 30000, what: 'the aiortc publisher to connect through the proxy' });
    assert.equal(publisher.find('proxy').delay_ms, DELAY_MS);
    // A has the publisher's sender reports of both tracks once audio flows (the publisher sends
    // its first reports within ~1.5 s), and B has heard of the stream.
    await waitFor(async () => (await a.streamInfo(STREAM))?.audio?.packets > 100, { timeout: 20000, what: 'audio at A' });
    await waitFor(async () => (await topology(b)).streams.some((s) => s.stream === STREAM), { timeout: 15000, what: 'B to hear the stream announcement' });

    const atA = syncViewer(a);
    const atB = syncViewer(b);
    clients.push(atA, atB);
    h.onFailure('sync viewer at A', () => atA.describe());
    h.onFailure('sync viewer at B', () => atB.describe());
    await waitFor(() => atB.events.some((e) => e.state === 'connected'), { timeout: 30000, what: 'the viewer at B to connect' });
    const bNode = await waitFor(async () => streamNode(await topology(b), b.peerId), { timeout: 10000, what: 'B in its own topology' });
    assert.equal(bNode.depth, 1, `B relays at depth 1: ${JSON.stringify(bNode)}`);
    assert.equal(bNode.upstream, a.peerId, 'B relays from A');

    const results = await Promise.all([syncResult(atA, 'depth 0 (viewer at A)'), syncResult(atB, 'depth 1 (viewer at B)')]);
    for (const [label, { code, sync: s }] of [['depth 0', results[0]], ['depth 1', results[1]]]) {
      assert.ok(s, `${label}: the viewer reports its measurements (exit ${code})`);
      assert.ok(s.frames.video > 0 && s.frames.audio > 0, `${label}: the viewer decodes video and audio (${JSON.stringify(s.frames)}, RTP packets ${JSON.stringify(s.packets)})`);
      assert.equal(code, 0, `${label}: ${PAIRS} flash/beep pairs mapped by sender reports (${JSON.stringify(s)})`);
      assert.ok(s.arrival_median_ms > ARRIVAL_MS, `${label}: by arrival the beep is late (the proxy holds audio back): median ${s.arrival_median_ms} ms`);
      assert.ok(s.sr_median_abs_ms < SYNC_MS, `${label}: by sender reports the beep is within ${SYNC_MS} ms of its flash: median |offset| ${s.sr_median_abs_ms} ms, pairs ${JSON.stringify(s.pairs)}`);
    }
  }).finally(() => Promise.all(clients.map((c) => c.stop().catch(() => {}))));
});
