// End-to-end with Firefox (Debian firefox-esr, driven by puppeteer-core over WebDriver BiDi):
// the streamer page publishes VP8 simulcast, the viewer page watches through the SDK and replays
// the last seconds of the VP8 archive (WebM through MSE); ffmpeg's H264 over RTMP is replayed
// live (fMP4 through hls.js); both VODs play once the streams end.
// Firefox gathers no loopback ICE candidates, so the node runs in a network namespace the test
// creates, joined to the test's namespace by a veth pair; Firefox reaches it at 10.213.N.1.
// Needs root (ip netns) and firefox-esr; scripts/test.sh installs firefox-esr.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import puppeteer from 'puppeteer-core';
import { waitFor } from './harness.mjs';
import { makeNamespace, startNodeIn } from './netns.mjs';
import { ffmpegPush } from './ingest-util.mjs';

const TOKEN = 'e2e-firefox-token';
const FIREFOX = process.env.FIREFOX_PATH || '/usr/bin/firefox-esr';

/** In-page: inbound video of `window.session.pc` and the video element's painted frames. */
function viewerState(page) {
  return page.evaluate(async () => {
    const video = document.getElementById('video');
    const out = { painted: video?.mozPaintedFrames ?? 0, currentTime: video?.currentTime ?? 0, framesDecoded: 0, codec: null, state: window.session?.pc?.connectionState };
    const pc = window.session?.pc;
    if (pc) {
      const report = await pc.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          out.framesDecoded = s.framesDecoded ?? 0;
          const c = s.codecId && report.get(s.codecId);
          if (c) out.codec = c.mimeType;
        }
      });
    }
    return out;
  });
}

/** Waits until the `<video>` at `selector` has painted frames and its time advanced 1 s. */
async function plays(page, selector, what) {
  let last = null;
  const state = async () => {
    last = await page.evaluate((sel) => {
      const v = document.querySelector(sel);
      const b = v.buffered;
      return {
        t: v.currentTime, painted: v.mozPaintedFrames ?? 0, w: v.videoWidth, paused: v.paused, ready: v.readyState,
        buffered: b.length ? [b.start(0), b.end(b.length - 1)] : [], error: v.error?.message ?? null,
      };
    }, selector);
    return last;
  };
  const a = await waitFor(async () => {
    const s = await state();
    return s.painted > 0 && s.w > 0 && s;
  }, { timeout: 20000, what: `${what}: painted frames` }).catch((e) => { throw new Error(`${e.message}; element: ${JSON.stringify(last)}`); });
  const b = await waitFor(async () => {
    const s = await state();
    return s.t > a.t + 1 && s.painted > a.painted && s;
  }, { timeout: 15000, what: `${what}: currentTime to advance past ${a.t}` }).catch((e) => { throw new Error(`${e.message}; element: ${JSON.stringify(last)}`); });
  assert.ok(b.t > a.t, `${what} plays (${a.t.toFixed(2)} -> ${b.t.toFixed(2)} s, ${b.painted} frames painted)`);
}

test('Firefox publishes VP8 simulcast, watches through the SDK, replays VP8 and H264 archives live and plays both VODs', { timeout: 240000 }, async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for ip netns');
  assert.ok(fs.existsSync(FIREFOX), `${FIREFOX} missing: install Debian's firefox-esr`);
  const net = makeNamespace('rcff', 213);
  let node;
  let browser;
  let push;
  try {
    node = await startNodeIn(net.ns, net.nodeIp, { token: TOKEN });
    assert.ok(node.base.startsWith(`http://${net.nodeIp}:`), node.base);
    browser = await puppeteer.launch({
      browser: 'firefox',
      executablePath: FIREFOX,
      headless: true,
      extraPrefsFirefox: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        // The page is plain HTTP on a non-local address (HTTPS is the real answer).
        'media.devices.insecure.enabled': true,
        'media.getusermedia.insecure.enabled': true,
        'media.autoplay.default': 0,
      },
    });
    const stream = 'firefox';
    const pub = await browser.newPage();
    await pub.goto(`${node.base}/streamer.html?stream=${stream}&codec=vp8&autostart=1#token=${TOKEN}`);
    await pub.waitForFunction(() => window.relaycastSession?.state === 'connected', { timeout: 30000 })
      .catch(async (err) => { throw new Error(`Firefox publisher did not connect: ${await pub.evaluate(() => document.getElementById('status')?.textContent)}\n${err.message}`); });
    const rids = await pub.evaluate(() => window.relaycastSession.pc.getSenders().find((s) => s.track?.kind === 'video').getParameters().encodings.map((e) => e.rid));
    assert.deepEqual(rids, ['q', 'h', 'f'], 'Firefox sends three simulcast encodings');

    // The node receives VP8 on the simulcast layers.
    const info = await waitFor(async () => {
      const s = await node.stream(stream);
      const layers = (s?.layers ?? []).filter((l) => l.packets > 0 && l.width > 0);
      return s?.live && layers.length >= 2 && s;
    }, { timeout: 30000, interval: 500, what: 'Firefox\'s simulcast layers at the node' });
    assert.equal(info.codec, 'VP8');
    const sizes = info.layers.filter((l) => l.width > 0).map((l) => `${l.rid}:${l.width}x${l.height}`);
    assert.ok(info.layers.some((l) => l.rid === 'q') && info.layers.some((l) => l.rid === 'h' || l.rid === 'f'), `layers ${sizes}`);
    t.diagnostic(`layers at the node: ${sizes.join(' ')}`);

    // A second Firefox page watches through the SDK viewer page.
    const view = await browser.newPage();
    const consoleLines = [];
    globalThis.__ffConsole = consoleLines;
    view.on('console', (m) => { consoleLines.push(`[${m.type()}] ${m.text()}`); if (consoleLines.length > 200) consoleLines.shift(); });
    await view.goto(`${node.base}/viewer.html?stream=${stream}`);
    const a = await waitFor(async () => {
      const s = await viewerState(view);
      return s.framesDecoded > 10 && s.painted > 5 && s;
    }, { timeout: 40000, what: 'the Firefox viewer to decode and paint frames' });
    assert.match(String(a.codec), /video\/VP8/i);
    const b = await waitFor(async () => {
      const s = await viewerState(view);
      return s.painted > a.painted && s.currentTime > a.currentTime && s;
    }, { timeout: 10000, what: 'painted frames and currentTime to keep moving' });
    assert.ok(b.painted > a.painted, `mozPaintedFrames rises (${a.painted} -> ${b.painted})`);
    assert.equal((await node.stream(stream)).viewers, 1);
    t.diagnostic(`viewer: ${JSON.stringify(b)}`);

    // Instant replay of the VP8 archive (WebM segments through MSE) in Firefox, then back to live.
    await waitFor(async () => {
      const r = await fetch(`${node.base}/api/streams/${stream}/archive`);
      return r.ok && (await r.json()).segments.length >= 4;
    }, { timeout: 30000, interval: 500, what: '4 archived segments' });
    const replay = await view.evaluate(async () => {
      const video = document.getElementById('video');
      const p = await window.session.replay(video, { seconds: 6 });
      return { engine: p.engine, codecs: p.codecs, startPosition: p.startPosition, duration: p.duration };
    });
    t.diagnostic(`replay: ${JSON.stringify(replay)}`);
    assert.deepEqual([replay.engine, replay.codecs], ['mse', 'vp8,opus'], 'Firefox replays the VP8 archive from WebM through MSE');
    const r0 = await waitFor(async () => {
      const s = await viewerState(view);
      return s.currentTime >= replay.startPosition - 0.5 && s.painted > b.painted && s;
    }, { timeout: 20000, what: 'the replay to paint frames from the archive' });
    const r1 = await waitFor(async () => {
      const s = await viewerState(view);
      return s.currentTime > r0.currentTime + 1 && s.painted > r0.painted && s;
    }, { timeout: 15000, what: 'the replay\'s currentTime to advance' });
    assert.ok(r1.currentTime > r0.currentTime + 1, `replay plays (${r0.currentTime.toFixed(2)} -> ${r1.currentTime.toFixed(2)} s)`);
    const live = await view.evaluate(async () => {
      await window.session.backToLive();
      const v = document.getElementById('video');
      return { srcObject: v.srcObject === window.session.stream, src: v.getAttribute('src') };
    });
    assert.deepEqual(live, { srcObject: true, src: null }, 'back on the live MediaStream');

    // H264 from ffmpeg over RTMP: Firefox replays it while live (fMP4 through hls.js) and, once
    // over, plays its VOD; the VP8 stream's VOD plays from WebM through MSE.
    const rtmp = await waitFor(() => /^ {2}rtmp: (rtmp:\/\/[\d.]+:\d+\/live)/m.exec(node.log)?.[1], { timeout: 5000, what: "the node's rtmp banner line" });
    push = ffmpegPush(`${rtmp}/ff-h264?token=${TOKEN}`, { seconds: 14 });
    await waitFor(async () => {
      const r = await fetch(`${node.base}/api/streams/ff-h264/archive`);
      return r.ok && (await r.json()).segments.length >= 3;
    }, { timeout: 30000, interval: 500, what: '3 archived segments of the H264 stream' });
    const play = (fn, arg) => view.evaluate(fn, arg);
    const h264 = await play(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const v = document.createElement('video');
      v.id = 'h264';
      v.muted = true;
      document.body.append(v);
      window.rcFf = new Relaycast();
      const p = await window.rcFf.replay('ff-h264', v, { seconds: 4 });
      window.h264Playback = p;
      return { engine: p.engine, codecs: p.codecs };
    });
    t.diagnostic(`h264 replay: ${JSON.stringify(h264)}`);
    assert.equal(h264.engine, 'hls.js', 'Firefox (no native HLS) replays fMP4 through hls.js');
    assert.match(String(h264.codecs), /^avc1\./);
    await plays(view, '#h264', 'the H264 replay');
    await view.evaluate(() => window.h264Playback.destroy());

    // The VP8 stream ends: its VOD (WebM, MSE). The live viewer leaves first.
    await view.evaluate(() => window.session.close());
    await pub.evaluate(() => document.getElementById('stop').click());
    await waitFor(async () => {
      const r = await fetch(`${node.base}/api/streams/${stream}/archive`);
      return r.ok && (await r.json()).vod;
    }, { timeout: 30000, interval: 500, what: 'the VP8 recording to close into a VOD' });
    const vp8 = await play(async (name) => {
      const v = document.createElement('video');
      v.id = 'vp8vod';
      v.muted = true;
      document.body.append(v);
      const p = await window.rcFf.vod(name, v);
      window.vp8Playback = p;
      return { engine: p.engine, codecs: p.codecs };
    }, stream);
    assert.deepEqual([vp8.engine, vp8.codecs], ['mse', 'vp8,opus'], 'the VP8 VOD plays from WebM through MSE');
    await plays(view, '#vp8vod', 'the VP8 VOD');
    await view.evaluate(() => { window.vp8Playback?.destroy(); document.getElementById('vp8vod').remove(); });

    // The H264 stream ends: its VOD.
    await push.exit;
    await waitFor(async () => {
      const r = await fetch(`${node.base}/api/streams/ff-h264/archive`);
      return r.ok && (await r.json()).vod;
    }, { timeout: 30000, interval: 500, what: 'the H264 recording to close into a VOD' });
    const h264Vod = await play(async () => {
      const v = document.createElement('video');
      v.id = 'h264vod';
      v.muted = true;
      document.body.append(v);
      const p = await window.rcFf.vod('ff-h264', v);
      return { engine: p.engine };
    });
    assert.equal(h264Vod.engine, 'hls.js');
    await plays(view, '#h264vod', 'the H264 VOD');
  } catch (err) {
    console.error(`--- viewer console ---\n${(globalThis.__ffConsole ?? []).join('\n')}`);
    console.error(`--- node log (tail) ---\n${node?.log.slice(-6000) ?? ''}`);
    throw err;
  } finally {
    push?.proc.kill('SIGKILL');
    await browser?.close().catch(() => {});
    await node?.stop();
    net.remove();
  }
});
