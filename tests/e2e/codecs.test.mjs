// End-to-end: the node answers in the codec the offerer prefers (RFC 3264) and keeps a viewer's
// H264 profile. Chromium pages speak plain WHIP/WHEP with RTCRtpTransceiver.setCodecPreferences:
// a publisher listing H264 before VP8 gets H264; a viewer that lacks the stream's codec or H264
// profile gets a 422 naming it; a Safari-style viewer that offers only constrained baseline
// (42e01f) decodes a constrained baseline stream.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor } from './harness.mjs';

const TOKEN = 'e2e-codecs-token';

/**
 * In-page: WHIP-publishes the fake camera and microphone with the video codecs ordered by
 * `order` ('h264-first': every H264 before the rest, in the browser's order; '42e01f-first':
 * H264 constrained baseline first). Resolves with the HTTP status and the answer.
 */
async function publish(page, stream, order) {
  return page.evaluate(async ({ stream, order, token }) => {
    const ms = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
    const pc = new RTCPeerConnection();
    const tr = pc.addTransceiver(ms.getVideoTracks()[0], { direction: 'sendonly', streams: [ms] });
    pc.addTransceiver(ms.getAudioTracks()[0], { direction: 'sendonly', streams: [ms] });
    const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
    const rank = (c) => {
      const h264 = c.mimeType.toLowerCase() === 'video/h264';
      if (order === '42e01f-first') return h264 && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '') ? 0 : 1;
      return h264 ? 0 : 1;
    };
    tr.setCodecPreferences(codecs.map((c, i) => [rank(c), i, c]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]));
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    const resp = await fetch(`/whip/${stream}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
      body: pc.localDescription.sdp,
    });
    const body = await resp.text();
    if (resp.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
    window.publisher = pc;
    return { status: resp.status, body, offer: pc.localDescription.sdp };
  }, { stream, order, token: TOKEN });
}

/**
 * In-page: WHEP-watches `stream` offering only the video codecs `accept` names ('all', 'vp8',
 * or '42e01f': H264 constrained baseline in packetization mode 1, as Safari offers). Resolves
 * with the HTTP status and the answer (or the error body); the PeerConnection is `window.viewers[name]`.
 */
async function watch(page, stream, name, accept) {
  return page.evaluate(async ({ stream, name, accept }) => {
    const pc = new RTCPeerConnection();
    const tr = pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
    const keep = (c) => {
      const mime = c.mimeType.toLowerCase();
      if (mime === 'video/rtx' || accept === 'all') return true;
      if (accept === 'vp8') return mime === 'video/vp8';
      return mime === 'video/h264' && /profile-level-id=42e01f/i.test(c.sdpFmtpLine || '') && /packetization-mode=1/.test(c.sdpFmtpLine || '');
    };
    tr.setCodecPreferences(codecs.filter(keep));
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') resolve();
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
      setTimeout(resolve, 3000);
    });
    const resp = await fetch(`/whep/${stream}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const body = await resp.text();
    if (resp.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
    window.viewers = { ...(window.viewers || {}), [name]: pc };
    return { status: resp.status, body, offer: pc.localDescription.sdp };
  }, { stream, name, accept });
}

/** In-page: decoded frames and codec of viewer `name`. */
async function decoded(page, name) {
  return page.evaluate(async (name) => {
    const pc = window.viewers?.[name];
    if (!pc) return null;
    const report = await pc.getStats();
    const out = { framesDecoded: 0, mimeType: null, fmtp: null, state: pc.connectionState };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded = s.framesDecoded ?? 0;
        const c = s.codecId && report.get(s.codecId);
        if (c) [out.mimeType, out.fmtp] = [c.mimeType, c.sdpFmtpLine ?? null];
      }
    });
    return out;
  }, name);
}

/** The codec names of the first video m-line of an SDP, in its order. */
function videoCodecs(sdp) {
  const section = sdp.split(/\r?\nm=/).find((s) => s.startsWith('video'));
  assert.ok(section, `SDP has a video m-line:\n${sdp}`);
  const pts = section.split(/\r?\n/)[0].split(' ').slice(3);
  return pts.map((pt) => new RegExp(`^a=rtpmap:${pt} ([^/]+)/`, 'm').exec(section)?.[1]).filter((n) => n && n.toLowerCase() !== 'rtx');
}

/** The fmtp of the first payload type of the first video m-line. */
function firstVideoFmtp(sdp) {
  const section = sdp.split(/\r?\nm=/).find((s) => s.startsWith('video'));
  const pt = section.split(/\r?\n/)[0].split(' ')[3];
  return new RegExp(`^a=fmtp:${pt} (.*)$`, 'm').exec(section)?.[1]?.trim() ?? '';
}

test('codec order and H264 profiles: H264-first publisher, Safari-style viewer', { timeout: 180000 }, async () => {
  const h = new Harness('codec order');
  await h.run(async () => {
    const server = await h.startServer({ token: TOKEN });
    h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
    const browser = await h.browser('codecs');
    const pubPage = await browser.page();
    await pubPage.goto(server.url('/healthz'));
    const viewPage = await browser.context.newPage();
    await viewPage.goto(server.url('/healthz'));

    // 1. A publisher listing H264 before VP8 gets H264 (Chromium's first H264 is 42001f).
    const pub = await publish(pubPage, 'h264-first', 'h264-first');
    assert.equal(pub.status, 201, `WHIP accepted: ${pub.body}`);
    assert.equal(videoCodecs(pub.offer)[0], 'H264', 'the offer lists H264 first');
    assert.ok(videoCodecs(pub.offer).includes('VP8'), 'the offer lists VP8 after H264');
    assert.deepEqual(videoCodecs(pub.body), ['H264'], 'the answer picks the offer\'s first codec, H264');
    const info = await waitFor(async () => {
      const s = await server.streamInfo('h264-first');
      return s?.live && s.layers?.some((l) => l.packets > 0) && s;
    }, { timeout: 30000, what: 'the H264-first stream to carry video' });
    assert.equal(info.codec, 'H264', '/api/streams reports H264');

    // 2. A Chromium viewer offering everything decodes it as H264 in the stream's profile.
    const all = await watch(viewPage, 'h264-first', 'all', 'all');
    assert.equal(all.status, 201, all.body);
    assert.deepEqual(videoCodecs(all.body), ['H264']);
    const got = await waitFor(async () => {
      const d = await decoded(viewPage, 'all');
      return d?.framesDecoded > 5 && d;
    }, { timeout: 30000, what: 'the Chromium viewer to decode H264 frames' });
    assert.match(got.mimeType, /video\/H264/i);
    assert.match(got.fmtp, /profile-level-id=42001f/, 'the viewer is answered in the stream\'s profile');

    // 3. A viewer without H264, and a Safari-style viewer without Baseline, are told why.
    const vp8 = await watch(viewPage, 'h264-first', 'vp8', 'vp8');
    assert.equal(vp8.status, 422, vp8.body);
    assert.match(vp8.body, /the stream is H264 .* and the offer has no H264/);
    const safari = await watch(viewPage, 'h264-first', 'safari-refused', '42e01f');
    assert.equal(safari.status, 422, safari.body);
    assert.match(safari.body, /H264 Baseline \(profile-level-id 42001f.*no H264 payload type of the offer can decode it/);
    assert.equal((await server.streamInfo('h264-first')).viewers, 1, 'refused viewers leave no session behind');
    const metrics = await (await server.fetch('/metrics')).text();
    assert.match(metrics, /^relaycast_codec_refusals_total 2$/m, 'the refusals are counted');

    // 4. A publisher preferring constrained baseline: the Safari-style viewer decodes it and
    // its answer keeps the profile it offered.
    const pub2 = await publish(pubPage, 'cb', '42e01f-first');
    assert.equal(pub2.status, 201, pub2.body);
    assert.match(firstVideoFmtp(pub2.body), /profile-level-id=42e01f/);
    await waitFor(async () => (await server.streamInfo('cb'))?.layers?.some((l) => l.packets > 0), { timeout: 30000, what: 'the cb stream to carry video' });
    const cb = await watch(viewPage, 'cb', 'safari', '42e01f');
    assert.equal(cb.status, 201, cb.body);
    assert.deepEqual(videoCodecs(cb.body), ['H264']);
    assert.match(firstVideoFmtp(cb.body), /profile-level-id=42e01f/);
    assert.match(firstVideoFmtp(cb.body), /packetization-mode=1/);
    const sd = await waitFor(async () => {
      const d = await decoded(viewPage, 'safari');
      return d?.framesDecoded > 5 && d;
    }, { timeout: 30000, what: 'the Safari-style viewer to decode frames' });
    assert.match(sd.fmtp, /profile-level-id=42e01f/);
  });
});
