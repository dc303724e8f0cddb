// End-to-end with GStreamer's webrtcbin (Debian 12's 1.22, scripted in tests/python/gst_client.py
// with Debian's python3-gst-1.0): it publishes H264 (constrained baseline, one layer) + Opus over
// WHIP the way OBS does (offer POSTed at once, candidates trickled by PATCH) and a second
// webrtcbin decodes it over WHEP; then an aiortc publisher is decoded by a GStreamer WHEP viewer
// that gathers before it offers. GStreamer's DTLS presents an RSA certificate, which the node's
// OpenSSL DTLS backend takes. libnice gathers no loopback candidates, so the node runs in a
// network namespace of its own (tests/e2e/netns.mjs). Needs root (ip netns); scripts/test.sh
// installs the GStreamer packages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT, waitFor } from './harness.mjs';
import { makeNamespace, startNodeIn } from './netns.mjs';
import { PyClient } from './pyclient.mjs';

const TOKEN = 'e2e-gstreamer-token';
/** Debian's interpreter: the `gi` bindings come from python3-gi / python3-gst-1.0. */
const GST_PYTHON = process.env.RELAYCAST_GST_PYTHON || '/usr/bin/python3';
const GST_CLIENT = path.join(REPO_ROOT, 'tests/python/gst_client.py');
const VENV_PYTHON = process.env.RELAYCAST_PYTHON || path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const AIORTC_CLIENT = path.join(REPO_ROOT, 'tests/python/aiortc_client.py');

/** Skips unless the test can make namespaces and GStreamer's bindings import. */
function preconditions(t) {
  if (process.getuid?.() !== 0) return t.skip('needs root for ip netns'), false;
  assert.ok(fs.existsSync(GST_PYTHON), `${GST_PYTHON} missing`);
  return true;
}

test('GStreamer publishes H264 + Opus over WHIP with trickle ICE; a GStreamer WHEP viewer decodes it', { timeout: 90000 }, async (t) => {
  if (!preconditions(t)) return;
  const net = makeNamespace('rcgs', 214);
  let node;
  let publisher;
  let viewer;
  try {
    node = await startNodeIn(net.ns, net.nodeIp, { token: TOKEN, args: ['--dtls-backend', 'openssl'] });
    const stream = 'gst-h264';
    publisher = new PyClient(GST_PYTHON, GST_CLIENT, ['publish', `${node.base}/whip/${stream}`, '--token', TOKEN, '--seconds', '80']);
    const first = await waitFor(() => publisher.find('error') || publisher.events.find((e) => e.event === 'state' && e.state === 'connected'),
      { timeout: 20000, what: 'the GStreamer publisher to connect (ICE + DTLS)' });
    assert.equal(first.event, 'state', `the publisher connected: ${publisher.describe()}`);
    assert.deepEqual(publisher.find('answer').codecs, ['H264', 'opus']);
    assert.equal(publisher.find('offer').trickle, true);
    assert.ok(publisher.events.some((e) => e.event === 'patch' && e.status === 204 && e.candidates > 0), `candidates trickled by PATCH: ${publisher.describe()}`);

    const info = await waitFor(async () => {
      const s = await node.stream(stream);
      return s?.live && s.layers?.[0]?.width > 0 && s.audio?.packets > 0 && s;
    }, { timeout: 20000, what: 'H264 with a frame size and Opus from GStreamer in /api/streams' });
    assert.equal(info.codec, 'H264');
    assert.equal(info.layers.length, 1, 'one layer');
    assert.deepEqual([info.layers[0].width, info.layers[0].height], [640, 360], 'the node parsed GStreamer\'s SPS');

    viewer = new PyClient(GST_PYTHON, GST_CLIENT, ['watch', `${node.base}/whep/${stream}`, '--frames', '60', '--timeout', '30']);
    const code = await viewer.exit(40000);
    const result = viewer.find('result');
    assert.equal(code, 0, `GStreamer viewer decoded 60 frames: ${viewer.describe()}`);
    assert.ok(result.frames >= 60, `frames ${result.frames}`);
    assert.equal(result.codec, 'H264');
    assert.deepEqual([result.width, result.height], [640, 360]);
    t.diagnostic(`GStreamer → node → GStreamer: ${JSON.stringify(result)}`);
  } catch (err) {
    console.error(`--- publisher ---\n${publisher?.describe()}\n--- viewer ---\n${viewer?.describe()}\n--- node log (tail) ---\n${node?.log.slice(-6000) ?? ''}`);
    throw err;
  } finally {
    await viewer?.stop();
    await publisher?.stop();
    await node?.stop();
    net.remove();
  }
});

test('aiortc publishes H264 over WHIP; a GStreamer WHEP viewer that gathers first decodes it', { timeout: 90000 }, async (t) => {
  if (!preconditions(t)) return;
  assert.ok(fs.existsSync(VENV_PYTHON), `${VENV_PYTHON} missing: run scripts/test.sh (it creates tests/python/.venv)`);
  const net = makeNamespace('rcgw', 215);
  let node;
  let publisher;
  let viewer;
  try {
    node = await startNodeIn(net.ns, net.nodeIp, { token: TOKEN, args: ['--dtls-backend', 'openssl'] });
    const stream = 'aiortc-to-gst';
    publisher = new PyClient(VENV_PYTHON, AIORTC_CLIENT, ['publish', `${node.base}/whip/${stream}`, '--codec', 'h264', '--token', TOKEN, '--seconds', '80']);
    await waitFor(async () => (await node.stream(stream))?.layers?.[0]?.width > 0, { timeout: 30000, what: 'aiortc\'s H264 at the node' });

    viewer = new PyClient(GST_PYTHON, GST_CLIENT, ['watch', `${node.base}/whep/${stream}`, '--frames', '60', '--timeout', '30', '--no-trickle']);
    const code = await viewer.exit(40000);
    const result = viewer.find('result');
    assert.equal(code, 0, `GStreamer viewer decoded 60 frames: ${viewer.describe()}`);
    assert.equal(viewer.find('offer').trickle, false);
    assert.ok(viewer.find('offer').candidates > 0, 'the offer carries the gathered candidates');
    assert.equal(result.codec, 'H264');
    assert.deepEqual([result.width, result.height], [640, 360]);
    const info = await node.stream(stream);
    assert.equal(info.codec, 'H264');
    t.diagnostic(`aiortc → node → GStreamer: ${JSON.stringify(result)}`);
  } catch (err) {
    console.error(`--- publisher ---\n${publisher?.describe()}\n--- viewer ---\n${viewer?.describe()}\n--- node log (tail) ---\n${node?.log.slice(-6000) ?? ''}`);
    throw err;
  } finally {
    await viewer?.stop();
    await publisher?.stop();
    await node?.stop();
    net.remove();
  }
});
