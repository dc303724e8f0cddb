// End-to-end: backup ingest. Two ffmpeg encoders push the same stream over RTMP, the second with
// `backup=1` (a smaller picture, so the viewer shows which one it gets). The primary encoder is
// killed: a Chromium viewer switches to the backup on its PeerConnection, its longest gap between
// video frames under a second; the primary comes back and the viewer returns to it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import { ffmpegPush, watchAndHear, audioPeak, bannerUrl } from './ingest-util.mjs';

const TOKEN = 'e2e-backup-token';

/** In-page: starts timing the gaps between the video frames the viewer presents. */
function trackFrameGaps() {
  const video = document.getElementById('video');
  const g = { last: null, max: 0, frames: 0 };
  window.__gaps = g;
  const onFrame = (now) => {
    if (g.last !== null) g.max = Math.max(g.max, now - g.last);
    g.last = now;
    g.frames += 1;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

/** In-page: the longest gap (ms) and frame count since the last reset, then resets. */
function takeFrameGaps() {
  const g = window.__gaps;
  const out = { max: g.max, frames: g.frames };
  g.max = 0;
  g.frames = 0;
  return out;
}

async function metric(server, name) {
  const text = await (await server.fetch('/metrics')).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

test('backup ingest: the primary encoder dies, the viewer switches to the backup within a second on its PeerConnection, and back', { timeout: 150000 }, async () => {
  const h = new Harness('backup ingest');
  const pushes = [];
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--rtmp', '127.0.0.1:0', '--no-archive'] });
      const rtmp = await bannerUrl(server, 'rtmp');
      h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));

      // The primary keeps a 2 s keyframe interval (the usual streaming setting); the backup 0.5 s.
      const primary = ffmpegPush(`${rtmp}/room?token=${TOKEN}`, { seconds: 140 });
      pushes.push(primary);
      await waitFor(async () => (await server.streamInfo('room'))?.live, { timeout: 30000, interval: 300, what: 'room to go live' });
      const backup = ffmpegPush(`${rtmp}/room?token=${TOKEN}&backup=1`, { seconds: 140, size: '320x180', gop: 15 });
      pushes.push(backup);
      await waitFor(async () => (await server.streamInfo('room'))?.source === 'primary',
        { timeout: 30000, interval: 300, what: '/api/streams to show room fed by its primary, a backup standing by' });
      await waitFor(async () => /publisher session created; standing by/.test(server.stderr.tail(400)),
        { timeout: 10000, what: 'the node to log the backup standing by' });

      // The viewer gets the primary (640x360) and hears it.
      const { page } = await watchAndHear(h, server, 'room', 'backup ingest, primary');
      await page.evaluate(() => { window.firstPc = window.session.pc; });
      await page.evaluate(trackFrameGaps);
      await waitFor(async () => (await page.evaluate(() => window.__gaps.frames)) > 30, { timeout: 10000, what: 'frame timing to start' });
      const before = await page.evaluate(takeFrameGaps);
      h.note(`longest frame gap before the failover: ${before.max.toFixed(0)} ms over ${before.frames} frames`);
      assert.equal(await metric(server, 'relaycast_source_switches_total'), 0);

      // The primary encoder dies.
      const killed = Date.now();
      primary.proc.kill('SIGKILL');
      const onBackup = await waitFor(async () => {
        const s = await viewerStats(page);
        return s?.frameWidth === 320 && s;
      }, { timeout: 10000, interval: 50, what: 'the viewer to show the backup (320x180)' });
      const switchedMs = Date.now() - killed;
      // Keep watching for 3 s more: the longest gap covers the whole switch.
      const settled = onBackup.framesDecoded;
      await waitFor(async () => (await viewerStats(page)).framesDecoded > settled + 80, { timeout: 10000, what: 'the backup to keep playing' });
      const failover = await page.evaluate(takeFrameGaps);
      console.log(`# backup ingest: primary killed -> backup frames in ${switchedMs} ms; longest frame gap ${failover.max.toFixed(0)} ms (${failover.frames} frames)`);
      assert.ok(failover.max < 1000, `the viewer's longest stall stays under 1 s (${failover.max.toFixed(0)} ms)`);
      assert.equal(await page.evaluate(() => window.session.pc === window.firstPc), true, 'same PeerConnection');
      assert.equal(await page.evaluate(() => window.session.pc.connectionState), 'connected');
      assert.equal((await server.streamInfo('room')).source, 'backup', '/api/streams shows the backup feeding room');
      assert.equal(await metric(server, 'relaycast_source_switches_total'), 1);
      const peak = await page.evaluate(audioPeak);
      assert.ok(peak && Math.abs(peak.hz - 440) < 25, `the backup's audio is heard (${JSON.stringify(peak)})`);
      await waitFor(() => /stream switched to its backup publisher.*reason="?the primary left/.test(server.stderr.tail(400)),
        { timeout: 5000, what: 'the node to log the switch to the backup' });

      // The primary encoder comes back: after a second of steady sending the stream switches to it
      // at its next keyframe, so the viewer sees no stall at all.
      const again = ffmpegPush(`${rtmp}/room?token=${TOKEN}`, { seconds: 60 });
      pushes.push(again);
      await waitFor(async () => {
        const s = await viewerStats(page);
        return s?.frameWidth === 640 && s;
      }, { timeout: 20000, interval: 100, what: 'the viewer to return to the primary (640x360)' });
      const back = await viewerStats(page);
      await waitFor(async () => (await viewerStats(page)).framesDecoded > back.framesDecoded + 60, { timeout: 10000, what: 'the primary to keep playing' });
      const ret = await page.evaluate(takeFrameGaps);
      console.log(`# backup ingest: switch back to the primary, longest frame gap ${ret.max.toFixed(0)} ms (${ret.frames} frames)`);
      assert.ok(ret.max < 1000, `no stall on the way back either (${ret.max.toFixed(0)} ms)`);
      assert.equal(await page.evaluate(() => window.session.pc === window.firstPc), true, 'still the same PeerConnection');
      assert.equal((await server.streamInfo('room')).source, 'primary');
      assert.equal(await metric(server, 'relaycast_source_switches_total'), 2);
      await page.evaluate(takeFrameGaps);

      // The primary stalls (stopped, its connection open): after 2 s of silence the backup feeds.
      const stalled = Date.now();
      again.proc.kill('SIGSTOP');
      await waitFor(async () => (await viewerStats(page))?.frameWidth === 320,
        { timeout: 10000, interval: 100, what: 'the viewer to show the backup after the primary stalled' });
      const stallMs = Date.now() - stalled;
      console.log(`# backup ingest: primary stalled -> backup frames in ${stallMs} ms`);
      assert.ok(stallMs >= 1800 && stallMs < 4000, `the switch follows 2 s of silence (${stallMs} ms)`);
      assert.match(server.stderr.tail(400), /stream switched to its backup publisher.*the primary sent nothing for 2 s/);
      assert.equal(await page.evaluate(() => window.session.pc === window.firstPc), true, 'still the same PeerConnection');
      again.proc.kill('SIGKILL');

      // The sessions list names the backup's role.
      const sessions = await (await server.fetch('/api/admin/sessions', { headers: { authorization: `Bearer ${TOKEN}` } })).json();
      const roles = (sessions.sessions ?? sessions).filter((x) => x.stream === 'room').map((x) => x.role).sort();
      assert.ok(roles.includes('backup') && roles.includes('viewer'), `sessions of room: ${JSON.stringify(roles)}`);
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
  }
});
