// End-to-end: ffmpeg publishes H264 and AAC over RTMP (and RTMPS); the node republishes it over its own WHIP endpoint,
// /api/streams lists it and a Chromium viewer decodes it and hears its AAC audio (as Opus). A wrong token and B-frames are refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Harness, waitFor, viewerStats, runCommand } from './harness.mjs';
import { waitForVod } from './archive-util.mjs';
import { ffmpegPush, exitWithin, watchAndHear, bannerUrl } from './ingest-util.mjs';

const TOKEN = 'e2e-rtmp-token';

test('RTMP: ffmpeg H264 and AAC reach a Chromium viewer; a wrong token and B-frames are refused; a reconnect resumes', { timeout: 120000 }, async () => {
  const h = new Harness('RTMP ingest');
  const pushes = [];
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0', '--no-archive'] });
      const rtmp = await bannerUrl(server, 'rtmp');
      h.note(`rtmp at ${rtmp}`);
      h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));

      // 1. A good push: baseline, no B-frames.
      const good = ffmpegPush(`${rtmp}/room?token=${TOKEN}`);
      pushes.push(good);
      const info = await waitFor(async () => {
        const s = await server.streamInfo('room');
        return s?.live && s.layers?.some((l) => l.width === 640 && l.height === 360) && s;
      }, { timeout: 30000, interval: 500, what: '/api/streams to list room as H264 640x360' });
      assert.equal(String(info.codec).toUpperCase(), 'H264', '/api/streams reports H264');

      const { page, stats: b } = await watchAndHear(h, server, 'room', 'rtmp');

      const metrics = await (await server.fetch('/metrics')).text();
      assert.match(metrics, /^relaycast_rtmp_publishes_total 1$/m, 'one RTMP publish counted');
      assert.match(metrics, /^relaycast_rtmp_video_frames_total [1-9]\d*$/m, 'frames forwarded are counted');
      assert.match(metrics, /^relaycast_rtmp_audio_frames_total [1-9]\d*$/m, 'Opus packets are counted');

      // 2. A wrong token: refused, ffmpeg fails, the node says why.
      const bad = ffmpegPush(`${rtmp}/other?token=wrong`, { seconds: 20 });
      pushes.push(bad);
      const badExit = await exitWithin(bad, 20000, 'wrong token');
      assert.notEqual(badExit.code, 0, `ffmpeg with a wrong token exits non-zero\n${bad.stderr()}`);
      assert.match(bad.stderr(), /401/, 'ffmpeg shows the refusal');
      console.log(`# wrong token: ffmpeg exit ${JSON.stringify(badExit)}: ${bad.stderr().split('\n').filter((l) => /Server error/.test(l)).join(' | ')}`);
      await waitFor(() => /ingest publish refused.*proto=RTMP.*stream=other.*status=401/.test(server.stderr.tail(400)),
        { timeout: 5000, what: 'the node to log the refused token' });
      assert.equal(await server.streamInfo('other'), undefined, 'the refused stream is not listed');

      // 3. B-frames (main profile, -bf 2): refused with the setting to change.
      const bf = ffmpegPush(`${rtmp}/bframes?token=${TOKEN}`, { video: ['-profile:v', 'main', '-bf', '2'], seconds: 20 });
      pushes.push(bf);
      const bfExit = await exitWithin(bf, 20000, 'B-frames');
      assert.notEqual(bfExit.code, 0, `ffmpeg with B-frames exits non-zero\n${bf.stderr()}`);
      await waitFor(() => /RTMP stream refused.*bframes=0/.test(server.stderr.tail(400)),
        { timeout: 5000, what: 'the node to log the B-frame refusal naming bframes=0' });
      const metrics2 = await (await server.fetch('/metrics')).text();
      assert.match(metrics2, /^relaycast_rtmp_refused_b_frames_total 1$/m);
      assert.match(metrics2, /^relaycast_rtmp_refused_auth_total 1$/m);
      assert.match(metrics2, /^relaycast_rtmp_publishes_total 1$/m, 'the B-frame stream was refused before it was published');
      assert.equal(await server.streamInfo('bframes'), undefined, 'the B-frame stream is not listed');
      assert.match(bf.stderr(), /bframes=0/, 'ffmpeg shows the setting to change');
      console.log(`# B-frames: ffmpeg exit ${JSON.stringify(bfExit)}: ${bf.stderr().split('\n').filter((l) => /Server error/.test(l)).join(' | ')}`);

      // The good stream kept playing meanwhile.
      const c = await viewerStats(page);
      assert.ok(c.framesDecoded > b.framesDecoded, `the viewer kept decoding (${b.framesDecoded} -> ${c.framesDecoded})`);

      // 4. The encoder drops and reconnects: the viewer resumes on the same PeerConnection.
      await page.evaluate(() => { window.firstPc = window.session.pc; });
      good.proc.kill('SIGKILL');
      await good.exit;
      await waitFor(async () => {
        const s = await server.streamInfo('room');
        return !s || s.live === false;
      }, { timeout: 10000, what: '/api/streams to show room not live after the encoder dropped' });
      const paused = await viewerStats(page);
      const again = ffmpegPush(`${rtmp}/room?token=${TOKEN}`, { seconds: 30 });
      pushes.push(again);
      const resumed = await waitFor(async () => {
        const st = await viewerStats(page);
        return st.framesDecoded > paused.framesDecoded + 30 && st;
      }, { timeout: 20000, what: `viewer framesDecoded to resume above ${paused.framesDecoded}` });
      assert.ok(resumed.framesDecoded > paused.framesDecoded);
      assert.equal(await page.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection');
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
  }
});

test('RTMP: the stream is archived and its VOD plays in Chromium', { timeout: 90000 }, async () => {
  const h = new Harness('RTMP archive');
  const pushes = [];
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0'] });
      const rtmp = await bannerUrl(server, 'rtmp');
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));
      const push = ffmpegPush(`${rtmp}/rtmp-vod?token=${TOKEN}`, { seconds: 10 });
      pushes.push(push);
      const exit = await exitWithin(push, 40000, 'archive push');
      assert.equal(exit.code, 0, `ffmpeg ends its push cleanly\n${push.stderr()}`);
      const archive = await waitForVod(server, 'rtmp-vod');
      const total = archive.segments.reduce((t, s) => t + s.duration, 0);
      assert.ok(total > 6, `the recording holds most of the 10 s push (${total.toFixed(2)} s)`);
      assert.match(archive.codecs, /^avc1\./, `the recording is H264 (${archive.codecs})`);

      const view = await h.browser('vod');
      const page = await view.page();
      await page.goto(server.url('/viewer.html'), { waitUntil: 'domcontentloaded' });
      await page.evaluate(async () => {
        const { Relaycast } = await import('/sdk/relaycast.js');
        const video = document.createElement('video');
        video.id = 'vod';
        video.muted = true;
        document.body.append(video);
        window.rcVod = new Relaycast();
        await window.rcVod.vod('rtmp-vod', video);
      });
      const played = await waitFor(() => page.evaluate(() => {
        const v = document.getElementById('vod');
        return v.currentTime > 2 && v.videoWidth === 640 && v.videoHeight === 360 && { t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames };
      }), { timeout: 20000, what: 'the VOD to play past 2 s at 640x360' });
      console.log(`# rtmp vod: ${total.toFixed(2)} s recorded, played to ${played.t.toFixed(2)} s (${played.frames} frames)`);
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
  }
});

test('RTMPS: ffmpeg over TLS reaches a Chromium viewer', { timeout: 90000 }, async () => {
  const h = new Harness('RTMPS ingest');
  const pushes = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-rtmps-'));
  try {
    await h.run(async () => {
      const cert = path.join(dir, 'cert.pem');
      const key = path.join(dir, 'key.pem');
      const r = await runCommand('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
      assert.equal(r.code, 0, `openssl failed: ${r.stderr}`);
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0', '--rtmps', '127.0.0.1:0', '--no-archive', '--tls-cert', cert, '--tls-key', key] });
      const rtmps = await bannerUrl(server, 'rtmps');
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));
      const push = ffmpegPush(`${rtmps}/tls-room?token=${TOKEN}`, { seconds: 40 });
      pushes.push(push);
      await waitFor(() => /ingest stream published over WHIP.*stream=tls-room/.test(server.stderr.tail(400)),
        { timeout: 20000, what: 'the RTMPS stream to be published' });

      await watchAndHear(h, server, 'tls-room', 'rtmps', ['--ignore-certificate-errors']);
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
