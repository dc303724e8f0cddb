// End-to-end: congestion control on a relay edge. The origin O and a relay R sit in network
// namespaces of their own, joined by one veth link whose O → R direction is limited to
// 400 kbit/s (tc tbf). A Chromium publisher (VP8 simulcast q/h/f, 0.7–2.5 Mbit/s in all) and a
// viewer run in R's namespace: the publisher sends to O over the unlimited direction, the viewer
// watches at R, so the stream crosses the limited link once, on the relay edge O → R. O's edge
// estimates its bandwidth and sheds the layers the link cannot carry; R's viewer keeps decoding
// a lower layer; /api/topology shows the layers the edge carries; and when the limit is lifted
// the shed layers come back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { waitFor, viewerStats } from './harness.mjs';
import { chromiumIn, inNs, startRelaycastIn } from './netns.mjs';

const TOKEN = 'e2e-edge-token';
const STREAM = 'edge';
const id = process.pid % 10000;
const net = 10 + (process.pid % 200);
const NS = { origin: `rceO${id}`, relay: `rceR${id}` };
const O_IP = `10.233.${net}.1`;
const R_IP = `10.233.${net}.2`;
/** The limit on the relay edge's direction. */
const LIMIT = '400kbit';

const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15000 }).toString();

function buildNetwork() {
  for (const ns of Object.values(NS)) {
    try { run('ip', ['netns', 'del', ns]); } catch { /* not left over */ }
    run('ip', ['netns', 'add', ns]);
    inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  run('ip', ['link', 'add', `rceo${id}`, 'netns', NS.origin, 'type', 'veth', 'peer', 'name', `rcer${id}`, 'netns', NS.relay]);
  inNs(NS.origin, 'ip', 'link', 'set', `rceo${id}`, 'name', 'eth0');
  inNs(NS.relay, 'ip', 'link', 'set', `rcer${id}`, 'name', 'eth0');
  inNs(NS.origin, 'ip', 'addr', 'add', `${O_IP}/24`, 'dev', 'eth0');
  inNs(NS.relay, 'ip', 'addr', 'add', `${R_IP}/24`, 'dev', 'eth0');
  for (const ns of Object.values(NS)) inNs(ns, 'ip', 'link', 'set', 'eth0', 'up');
}

/** Limits O's egress (the relay edge's direction) to `rate`, or lifts the limit. */
function limit(rate) {
  try { inNs(NS.origin, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'); } catch { /* none yet */ }
  if (rate) inNs(NS.origin, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'tbf', 'rate', rate, 'burst', '32kbit', 'latency', '200ms');
}

function removeNetwork() {
  for (const ns of Object.values(NS)) {
    try { run('ip', ['netns', 'del', ns]); } catch { /* gone */ }
  }
}

/** The relay edge O → R in R's topology. */
function edgeToRelay(topo, relayPeer) {
  return topo.edges.find((e) => e.stream === STREAM && e.to === relayPeer);
}

function counter(text, name) {
  const m = new RegExp(`^${name}\\{[^}]*stream="${STREAM}"[^}]*\\} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('a congested relay edge sheds its highest layers, the viewer below keeps decoding, and they come back', { timeout: 240000 }, async (t) => {
  buildNetwork();
  const nodes = [];
  let browser;
  try {
    const node = (ns, ip, args) => startRelaycastIn(ns, ip, { token: TOKEN, args: ['--no-turn', '--upnp', 'off', '--p2p', `/ip4/${ip}/tcp/0`, ...args] });
    const o = await node(NS.origin, O_IP, []);
    nodes.push(o);
    const r = await node(NS.relay, R_IP, ['--bootstrap', o.p2p[0]]);
    nodes.push(r);
    const relayPeer = r.p2p[0].split('/p2p/')[1];
    browser = await chromiumIn(NS.relay, [o.base, r.base]);
    const pub = await browser.context.newPage();
    await pub.goto(`${o.base}/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`, { waitUntil: 'domcontentloaded' });
    await pub.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    // The publisher sends all three layers, more than the limit in all, before the edge exists.
    await waitFor(() => {
      const s = o.api('/api/streams').streams.find((x) => x.name === STREAM);
      const layers = s?.layers?.filter((l) => l.bitrate > 50_000) ?? [];
      return layers.length === 3 && layers.reduce((sum, l) => sum + l.bitrate, 0) > 700_000;
    }, { timeout: 60000, interval: 500, what: 'the publisher to send three layers, over 0.7 Mbit/s in all' });

    const viewer = await browser.context.newPage();
    await viewer.goto(`${r.base}/viewer.html?stream=${STREAM}`, { waitUntil: 'domcontentloaded' });
    await waitFor(async () => (await viewerStats(viewer))?.framesDecoded > 10, { timeout: 30000, what: 'the viewer at R decoding' });
    const unlimited = await waitFor(() => {
      const e = edgeToRelay(r.api('/api/topology'), relayPeer);
      return e?.layers?.length === 3 && e;
    }, { timeout: 20000, interval: 500, what: 'the edge O -> R to carry three layers' });
    t.diagnostic(`edge unlimited: layers ${JSON.stringify(unlimited.layers)}, ${unlimited.bitrate_bps} bit/s`);

    // The link O -> R drops to 400 kbit/s: the edge sheds what it cannot carry.
    limit(LIMIT);
    const limitedAt = Date.now();
    // Settled: the edge carries the lowest layer, or the two lowest (a layer's bitrate at R
    // fades over a second or two after it stops, so the report passes through other sets).
    const shed = await waitFor(() => {
      const e = edgeToRelay(r.api('/api/topology'), relayPeer);
      const l = JSON.stringify(e?.layers);
      return (l === '["q"]' || l === '["q","h"]') && e;
    }, { timeout: 40000, interval: 500, what: 'the edge O -> R to carry only its lowest layers' });
    t.diagnostic(`edge limited to ${LIMIT}: layers ${JSON.stringify(shed.layers)} after ${Date.now() - limitedAt} ms`);
    assert.ok(counter(o.metrics(), 'relaycast_stream_relay_layer_sheds_total') >= 1, 'O counts the shed');
    assert.match(o.log, /relay edge congested: layers from \d up are no longer sent/);
    // The viewer below keeps decoding on what the edge carries.
    const before = (await viewerStats(viewer)).framesDecoded;
    await waitFor(async () => (await viewerStats(viewer)).framesDecoded > before + 60, { timeout: 20000, what: 'the viewer at R to decode on' });

    // The limit is lifted: the layers come back, from their keyframes — as many as the
    // publisher sends by then (a loaded machine makes Chromium drop layers of its own).
    limit(null);
    const liftedAt = Date.now();
    const back = await waitFor(() => {
      const sent = o.api('/api/streams').streams.find((x) => x.name === STREAM)?.layers?.filter((l) => l.bitrate > 50_000).length ?? 0;
      const carried = edgeToRelay(r.api('/api/topology'), relayPeer)?.layers?.length ?? 0;
      return carried > shed.layers.length && carried >= sent && carried;
    }, { timeout: 60000, interval: 500, what: 'the edge to carry the shed layers again' });
    t.diagnostic(`limit lifted: ${back} layers again after ${Date.now() - liftedAt} ms`);
    assert.match(o.log, /relay edge has room again: layer \d is sent from its next keyframe/);
    const again = (await viewerStats(viewer)).framesDecoded;
    await waitFor(async () => (await viewerStats(viewer)).framesDecoded > again + 30, { timeout: 20000, what: 'the viewer at R to decode on' });
  } catch (err) {
    for (const [i, n] of nodes.entries()) t.diagnostic(`--- node ${i ? 'R' : 'O'} log ---\n${n.log.split('\n').slice(-60).join('\n')}`);
    throw err;
  } finally {
    if (browser) await browser.close();
    for (const n of nodes) await n.stop();
    removeNetwork();
  }
});
