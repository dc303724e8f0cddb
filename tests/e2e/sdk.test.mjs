// SDK and page behaviour in Chromium against a scripted stand-in for the HTTP API
// (mock-server.mjs): negotiation, retries with backoff, reconnect into the same MediaStream,
// layer requests, server events, Link ice-servers, publish offers and the pages' wiring.
// Needs no relaycast binary.

import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, waitFor, REPO_ROOT } from './harness.mjs';
import { MockServer } from './mock-server.mjs';

describe('SDK against a mock server', { timeout: 300000 }, () => {
  let mock;
  let browser;
  let pages = [];

  async function newPage(p = '/blank.html') {
    const page = await browser.context.newPage();
    pages.push(page);
    await page.goto(mock.base + p, { waitUntil: 'domcontentloaded' });
    return page;
  }

  async function withDiagnostics(fn) {
    try {
      await fn();
    } catch (err) {
      console.error(`--- mock requests ---\n${mock.requests.map((r) => `${r.method} ${r.path}${Object.keys(r.query).length ? '?' + new URLSearchParams(r.query) : ''} ${r.body.length > 200 ? r.body.length + ' bytes' : r.body}`).join('\n')}`);
      console.error(browser.logs(80));
      throw err;
    }
  }

  before(async () => {
    mock = new MockServer();
    await mock.listen();
    browser = await launchBrowser('sdk');
    await mock.attachSfu(await browser.page());
  });

  after(async () => {
    await browser?.close();
    await mock?.close();
  });

  beforeEach(async () => {
    for (const p of pages) await p.close().catch(() => {});
    pages = [];
    mock.reset();
  });

  it('examples/watch.html plays with the two documented lines', async () => withDiagnostics(async () => {
    const src = fs.readFileSync(path.join(REPO_ROOT, 'examples/watch.html'), 'utf8');
    const script = /<script type="module">\n([\s\S]*?)<\/script>/.exec(src)[1].trim().split('\n');
    assert.equal(script.length, 3, 'import + two lines');
    assert.match(script[0], /^import \{ Relaycast \} from '\/sdk\/relaycast\.js';$/);
    const page = await newPage('/examples/watch.html?stream=room');
    await page.waitForFunction(() => {
      const v = document.querySelector('video');
      return v.srcObject instanceof MediaStream && v.videoWidth > 0 && v.currentTime > 0.3;
    }, null, { timeout: 20000 });
    assert.equal(mock.find('POST', /^\/whep\/room$/).length, 1);
  }));

  it('watch(): MediaStream with video and audio, stats, layer events, setLayer, close', async () => withDiagnostics(async () => {
    const page = await newPage();
    const kinds = await page.evaluate(async () => {
      const { Relaycast, default: Default } = await import('/sdk/relaycast.js');
      if (Default !== Relaycast) throw new Error('default export is not Relaycast');
      const rc = new Relaycast(location.origin);
      window.rc = rc;
      window.seen = [];
      for (const type of ['layer', 'viewers', 'state', 'close', 'stats']) rc.addEventListener(type, (e) => window.seen.push({ type, ...e.detail, session: undefined }));
      const ms = await rc.watch('room');
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      document.body.append(v);
      v.srcObject = ms;
      window.ms = ms;
      return ms.getTracks().map((t) => t.kind).sort();
    });
    assert.deepEqual(kinds, ['audio', 'video']);
    const post = mock.find('POST', /^\/whep\/room$/)[0];
    assert.equal(post.headers['content-type'], 'application/sdp');
    assert.match(post.body, /^m=video .*$[\s\S]*a=recvonly/m);
    assert.match(post.body, /^m=audio /m);
    assert.match(post.body, /^a=candidate:/m, 'the offer waits for ICE candidates');

    await page.waitForFunction(() => window.seen.some((e) => e.type === 'stats' && e.framesDecoded > 0 && e.audio.packetsReceived > 0), null, { timeout: 20000 });
    await page.waitForFunction(() => window.seen.some((e) => e.type === 'layer' && e.rid === 'h') && window.seen.some((e) => e.type === 'viewers' && e.count >= 1), null, { timeout: 10000 });
    const stats = await page.evaluate(() => window.rc.session.lastStats);
    for (const k of ['bitrate', 'framesDecoded', 'frameWidth', 'frameHeight', 'packetsLost']) assert.equal(typeof stats[k], 'number', `stats.${k}`);
    assert.equal(stats.rid, 'h', 'stats carry the rid from server events');

    await page.evaluate(async () => {
      await window.rc.session.setLayer({ rid: 'q' });
      await window.rc.session.setLayer({ maxHeight: 360 });
      await window.rc.session.setLayer({});
      await window.rc.setLayer({ rid: null });
      await window.rc.setLayer({ rid: 'f' });
    });
    const layerBodies = mock.find('POST', /^\/whep\/room\/\d+\/layer$/).map((r) => JSON.parse(r.body));
    assert.deepEqual(layerBodies, [{ rid: 'q' }, { maxHeight: 360 }, {}, { rid: null }, { rid: 'f' }]);
    assert.ok(mock.find('POST', /\/layer$/).every((r) => r.headers['content-type'] === 'application/json'));
    await page.waitForFunction(() => window.rc.session.rid === 'f', null, { timeout: 5000 });

    const location = await page.evaluate(() => window.rc.session.location);
    assert.match(location, /\/whep\/room\/\d+$/);
    await page.evaluate(() => window.rc.close());
    assert.equal(mock.find('DELETE', /^\/whep\/room\/\d+$/).length, 1);
    const after = await page.evaluate(() => ({ closed: window.seen.some((e) => e.type === 'close'), pc: window.rc.session.pc, state: window.rc.session.state }));
    assert.deepEqual(after, { closed: true, pc: null, state: 'closed' });
  }));

  it('watch(): query options, 404/503 retried with backoff, retry:false and 4xx reject', async () => withDiagnostics(async () => {
    const page = await newPage();
    await page.evaluate(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      window.Relaycast = Relaycast;
    });
    mock.fail('whep', { status: 404 }, { status: 404 }, { status: 503, retryAfter: 1 });
    const kinds = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      window.rc = rc;
      window.states = [];
      rc.addEventListener('reconnecting', (e) => window.states.push(e.detail.delay));
      const ms = await rc.watch('later', { rid: 'q' });
      return ms.getTracks().length;
    });
    assert.equal(kinds, 2);
    const posts = mock.find('POST', /^\/whep\/later$/);
    assert.equal(posts.length, 4, 'three failures then success');
    assert.ok(posts.every((p) => p.query.rid === 'q'), '?rid=q on every attempt');
    const gaps = posts.slice(1).map((p, i) => p.at - posts[i].at);
    assert.ok(gaps[0] >= 240 && gaps[0] < 2000, `first retry after ~0.25-0.5 s (${gaps})`);
    assert.ok(gaps[1] >= 480, `second retry after >= 0.5 s (${gaps})`);
    assert.ok(gaps[2] >= 980, `503 Retry-After: 1 honoured (${gaps})`);
    await page.evaluate(() => window.rc.close());

    mock.reset();
    mock.fail('whep', { status: 404, body: 'no such stream' });
    const r1 = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      try { await rc.watch('missing', { retry: false, maxHeight: 360 }); return 'resolved'; } catch (e) { return { status: e.status, name: e.name, body: e.body, state: rc.session.state }; }
    });
    assert.deepEqual(r1, { status: 404, name: 'RelaycastError', body: 'no such stream', state: 'failed' });
    assert.equal(mock.find('POST', /^\/whep\/missing$/).length, 1);
    assert.equal(mock.find('POST', /^\/whep\/missing$/)[0].query.maxHeight, '360');

    mock.reset();
    mock.fail('whep', { status: 400, body: 'malformed' });
    const r2 = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      try { await rc.watch('room'); return 'resolved'; } catch (e) { return e.status; }
    });
    assert.equal(r2, 400, '4xx other than 404 is not retried');
    assert.equal(mock.find('POST', /^\/whep\/room$/).length, 1);

    // A server that cannot be reached is retried until close() stops it.
    const r3 = await page.evaluate(async () => {
      const rc = new Relaycast('http://127.0.0.1:9');
      const delays = [];
      rc.addEventListener('reconnecting', (e) => delays.push(e.detail.error.status));
      const p = rc.watch('room').then(() => 'resolved', (e) => e.message);
      await new Promise((r) => setTimeout(r, 1200));
      await rc.close();
      return { result: await p, statuses: delays };
    });
    assert.ok(r3.statuses.length >= 1 && r3.statuses.every((s) => s === 0), `network errors retried: ${JSON.stringify(r3)}`);
    assert.match(r3.result, /closed/);
  }));

  it('reconnect after the server ends the session keeps the same MediaStream playing', async () => withDiagnostics(async () => {
    const page = await newPage();
    await page.evaluate(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const rc = new Relaycast(location.origin);
      window.rc = rc;
      window.reconnected = 0;
      rc.addEventListener('reconnected', () => window.reconnected++);
      const v = document.createElement('video');
      v.muted = true;
      v.autoplay = true;
      document.body.append(v);
      window.v = v;
      v.srcObject = await rc.watch('room');
      window.ms = v.srcObject;
    });
    await page.waitForFunction(() => window.v.videoWidth > 0 && window.v.currentTime > 0.2, null, { timeout: 20000 });
    const before = await page.evaluate(() => ({ ids: window.ms.getTracks().map((t) => t.id).sort(), frames: window.v.getVideoPlaybackQuality().totalVideoFrames }));
    const first = mock.list('whep').at(-1);
    mock.event(first.id, { type: 'closed' });
    await page.waitForFunction(() => window.reconnected === 1 && window.rc.session.state === 'connected', null, { timeout: 15000 });
    assert.equal(mock.find('DELETE', new RegExp(`^/whep/room/${first.id}$`)).length, 1, 'the old session is deleted');
    const afterIds = await page.evaluate(() => window.ms.getTracks().map((t) => t.id).sort());
    assert.equal(afterIds.length, 2);
    assert.notDeepEqual(afterIds, before.ids, 'tracks were replaced');
    assert.equal(await page.evaluate(() => window.v.srcObject === window.ms && window.rc.session.stream === window.ms), true);
    const f1 = await waitFor(async () => {
      const q = await page.evaluate(() => window.v.getVideoPlaybackQuality().totalVideoFrames);
      return q > before.frames + 10 && q;
    }, { timeout: 15000, what: 'the video element to keep rendering after the reconnect' });
    assert.ok(f1 > before.frames);
    const live = await page.evaluate(async () => {
      const r = await window.rc.session.pc.getStats();
      let v = 0;
      r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') v = s.framesDecoded; });
      return v;
    });
    assert.ok(live > 0, 'the new PeerConnection decodes');
    await page.evaluate(() => window.rc.close());
  }));

  it('trickle: the offer goes out at once and candidates follow by PATCH', async () => withDiagnostics(async () => {
    const page = await newPage();
    await page.evaluate(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const rc = new Relaycast(location.origin);
      window.rc = rc;
      await rc.watch('room', { trickle: true });
    });
    await page.waitForFunction(() => window.rc.session.state === 'connected', null, { timeout: 15000 });
    const patches = await waitFor(() => {
      const p = mock.find('PATCH', /^\/whep\/room\/\d+$/);
      return p.length > 0 && p;
    }, { timeout: 5000, what: 'a PATCH with candidates' });
    assert.ok(patches.every((p) => p.headers['content-type'] === 'application/trickle-ice-sdpfrag'));
    const all = patches.map((p) => p.body).join('');
    assert.match(all, /^a=ice-ufrag:\S+\r$/m);
    assert.match(all, /^a=ice-pwd:\S+\r$/m);
    assert.match(all, /^m=\w+ 9 /m);
    assert.match(all, /^a=mid:\S+\r$/m);
    assert.match(all, /^a=candidate:/m);
    await page.evaluate(() => window.rc.close());
  }));

  it('Link rel="ice-server" headers become ICE servers', async () => withDiagnostics(async () => {
    mock.linkHeader = '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="user"; credential="secret"; credential-type="password", </next>; rel="next"';
    const page = await newPage();
    const got = await page.evaluate(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      const rc = new Relaycast(location.origin);
      await rc.watch('room');
      const out = { link: rc.session.linkIceServers, config: rc.session.pc.getConfiguration().iceServers };
      await rc.close();
      return out;
    });
    const expected = [{ urls: 'turn:127.0.0.1:3478?transport=udp', username: 'user', credential: 'secret' }];
    assert.deepEqual(got.link, expected);
    assert.equal(got.config.length, 1);
    assert.deepEqual([got.config[0].urls].flat(), ['turn:127.0.0.1:3478?transport=udp']);
  }));

  it('publish(): simulcast offer, codec preference, bearer token, Retry-After, 401', async () => withDiagnostics(async () => {
    const page = await newPage();
    await page.evaluate(async () => {
      const { Relaycast } = await import('/sdk/relaycast.js');
      window.Relaycast = Relaycast;
      window.media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    });
    mock.fail('whip', { status: 503, retryAfter: 1, body: 'node full' });
    const res = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      window.rc = rc;
      const s = await rc.publish('room', window.media, { token: 'good-token', codec: 'h264' });
      return { state: s.state, location: s.location };
    });
    const posts = mock.find('POST', /^\/whip\/room$/);
    assert.equal(posts.length, 2, '503 then success');
    assert.ok(posts[1].at - posts[0].at >= 980, 'Retry-After honoured');
    const offer = posts[1].body;
    assert.equal(posts[1].headers.authorization, 'Bearer good-token');
    assert.equal(posts[1].headers['content-type'], 'application/sdp');
    assert.match(offer, /^a=simulcast:send q;h;f\r?$/m);
    for (const rid of ['q', 'h', 'f']) assert.match(offer, new RegExp(`^a=rid:${rid} send`, 'm'));
    const videoPt = /^m=video \d+ \S+ (\d+)/m.exec(offer)[1];
    assert.match(offer, new RegExp(`^a=rtpmap:${videoPt} H264/90000`, 'm'), 'H264 first');
    const fmtp = new RegExp(`^a=fmtp:${videoPt} (.*)$`, 'm').exec(offer)[1];
    assert.match(fmtp, /packetization-mode=1/);
    assert.match(fmtp, /profile-level-id=42e01f/);
    assert.doesNotMatch(offer, /^a=rtpmap:\d+ VP8\//m, 'only H264 offered');
    const audioPt = /^m=audio \d+ \S+ (\d+)/m.exec(offer)[1];
    assert.match(offer, new RegExp(`^a=rtpmap:${audioPt} opus/48000`, 'm'), 'Opus first');
    assert.match(res.location, /\/whip\/room\/\d+$/);
    await page.waitForFunction(() => window.rc.publishSession.state === 'connected', null, { timeout: 15000 });

    const single = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      const s = await rc.publish('solo', window.media, { token: 'good-token', codec: 'vp8', simulcast: false });
      const n = s.pc.getSenders().find((x) => x.track?.kind === 'video').getParameters().encodings.length;
      await rc.close();
      return n;
    });
    assert.equal(single, 1);
    const vp8 = mock.find('POST', /^\/whip\/solo$/)[0].body;
    assert.doesNotMatch(vp8, /^a=simulcast:/m);
    assert.match(vp8, new RegExp(`^a=rtpmap:${/^m=video \d+ \S+ (\d+)/m.exec(vp8)[1]} VP8/90000`, 'm'), 'VP8 first');
    assert.equal(mock.find('DELETE', /^\/whip\/solo\/\d+$/).length, 1);

    const denied = await page.evaluate(async () => {
      const rc = new Relaycast(location.origin);
      try { await rc.publish('other', window.media, { token: 'wrong' }); return 'resolved'; } catch (e) { return { status: e.status, body: e.body }; }
    });
    assert.deepEqual(denied, { status: 401, body: 'bad token' });
    assert.equal(mock.find('POST', /^\/whip\/other$/).length, 1, '401 is not retried');
    await page.evaluate(() => window.rc.close());
  }));

  it('streamer and viewer pages: autostart, viewers, stats, layer buttons', async () => withDiagnostics(async () => {
    const streamer = await newPage('/streamer.html?stream=show&autostart=1&codec=h264&simulcast=0#token=good-token');
    await streamer.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 20000 });
    assert.equal(await streamer.inputValue('#codec'), 'h264');
    assert.equal(await streamer.inputValue('#token'), 'good-token');
    assert.equal(await streamer.inputValue('#stream'), 'show');
    assert.equal(await streamer.isChecked('#simulcast'), false);
    assert.match(await streamer.textContent('#status'), /Live/);
    assert.equal(await streamer.isDisabled('#start'), true);
    await streamer.waitForFunction(() => document.querySelector('#layers-body td.bitrate') !== null, null, { timeout: 10000 });

    const viewer = await newPage('/viewer.html?stream=show');
    await viewer.waitForFunction(() => Number(document.getElementById('stat-frames').textContent) > 0, null, { timeout: 20000 });
    assert.match(await viewer.textContent('#stat-resolution'), /^\d+×\d+$/);
    assert.match(await viewer.textContent('#layer'), /h \(mid\)/);
    await viewer.click('#layer-q');
    await viewer.waitForFunction(() => /q \(low\)/.test(document.getElementById('layer').textContent), null, { timeout: 5000 });
    await viewer.click('#layer-auto');
    await waitFor(() => mock.find('POST', /\/layer$/).length === 2, { timeout: 5000, what: 'two layer requests' });
    assert.deepEqual(mock.find('POST', /\/layer$/).map((r) => JSON.parse(r.body)), [{ rid: 'q' }, {}]);
    assert.equal(await viewer.evaluate(() => window.session === window.relaycast.session), true);

    // The streamer learns about the viewer from its events endpoint.
    const whip = mock.list('whip').at(-1);
    mock.event(whip.id, { type: 'viewers', count: 3 });
    await streamer.waitForFunction(() => document.getElementById('viewers').textContent === '3', null, { timeout: 5000 });

    await streamer.click('#stop');
    await streamer.waitForFunction(() => document.getElementById('status').textContent === 'Stopped', null, { timeout: 5000 });
    assert.equal(mock.find('DELETE', new RegExp(`^/whip/show/${whip.id}$`)).length, 1);
    assert.equal(await streamer.isDisabled('#start'), false);

    const bad = await newPage('/streamer.html?stream=show2&autostart=1#token=nope');
    await bad.waitForFunction(() => /Unauthorized/.test(document.getElementById('status').textContent), null, { timeout: 10000 });
    assert.equal(await bad.isDisabled('#start'), false);
  }));
});
