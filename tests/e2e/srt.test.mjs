// End-to-end: ffmpeg (libsrt) publishes H264 and AAC in MPEG-TS over SRT with stream id
// publish:STREAM:TOKEN; the node republishes it over its own WHIP endpoint and a Chromium viewer
// decodes it and hears its AAC audio (as Opus). A stream id that does not publish is refused in
// the SRT handshake, a wrong token and B-frames are refused, and the good stream keeps playing; a
// caller that crashes srt-tokio's listener costs a restart of it, not the service.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, waitFor, viewerStats } from './harness.mjs';
import { ffmpegPush, exitWithin, watchAndHear } from './ingest-util.mjs';

const TOKEN = 'e2e-srt-token';

/** The `  srt: srt://127.0.0.1:PORT?streamid=…` line of the ready banner: the address part. */
function bannerSrt(server) {
  const re = /^ {2}srt: (srt:\/\/127\.0\.0\.1:\d+)\?streamid=publish:STREAM:TOKEN\s*$/m;
  return waitFor(() => re.exec(server.stdout.tail(200))?.[1], { timeout: 5000, what: "the banner's srt line" });
}

test('SRT: ffmpeg H264 and AAC in MPEG-TS reach a Chromium viewer; a bad stream id, a wrong token and B-frames are refused', { timeout: 120000 }, async () => {
  const h = new Harness('SRT ingest');
  const pushes = [];
  try {
    await h.run(async () => {
      const server = await h.startServer({ token: TOKEN, args: ['--srt', '127.0.0.1:0', '--no-rtmp', '--no-archive'] });
      const srt = await bannerSrt(server);
      h.note(`srt at ${srt}`);
      h.onFailure('/api/streams', async () => (await server.fetch('/api/streams')).text());
      h.onFailure('ffmpeg', () => pushes.map((p) => p.stderr()).join('\n-----\n'));

      const good = ffmpegPush(`${srt}?streamid=publish:room:${TOKEN}`, { format: 'mpegts' });
      pushes.push(good);
      const info = await waitFor(async () => {
        const s = await server.streamInfo('room');
        return s?.live && s.layers?.some((l) => l.width === 640 && l.height === 360) && s;
      }, { timeout: 30000, interval: 500, what: '/api/streams to list room as H264 640x360' });
      assert.equal(String(info.codec).toUpperCase(), 'H264');

      const { page, stats: b } = await watchAndHear(h, server, 'room', 'srt');
      const metrics = await (await server.fetch('/metrics')).text();
      assert.match(metrics, /^relaycast_srt_publishes_total 1$/m);
      assert.match(metrics, /^relaycast_srt_audio_frames_total [1-9]\d*$/m, 'Opus packets from SRT AAC are counted');

      // A stream id that does not publish: refused in the handshake.
      const reader = ffmpegPush(`${srt}?streamid=read:room`, { format: 'mpegts', seconds: 10 });
      pushes.push(reader);
      const readerExit = await exitWithin(reader, 20000, 'read stream id');
      assert.notEqual(readerExit.code, 0, `ffmpeg with a read stream id exits non-zero\n${reader.stderr()}`);
      await waitFor(() => /SRT caller refused: the stream id must be publish:STREAM:TOKEN/.test(server.stderr.tail(400)),
        { timeout: 5000, what: 'the node to log the refused stream id' });

      // A wrong token: the node refuses the publish and closes the connection.
      const bad = ffmpegPush(`${srt}?streamid=publish:other:wrong`, { format: 'mpegts', seconds: 20 });
      pushes.push(bad);
      await waitFor(() => /ingest publish refused.*stream=other.*status=401/.test(server.stderr.tail(400)),
        { timeout: 20000, what: 'the node to log the refused token' });
      assert.equal(await server.streamInfo('other'), undefined, 'the refused stream is not listed');

      // B-frames: refused with the setting to change.
      const bf = ffmpegPush(`${srt}?streamid=publish:bframes:${TOKEN}`, { format: 'mpegts', video: ['-profile:v', 'main', '-bf', '2'], seconds: 20 });
      pushes.push(bf);
      await waitFor(() => /SRT stream refused.*bframes=0/.test(server.stderr.tail(400)),
        { timeout: 20000, what: 'the node to log the B-frame refusal naming bframes=0' });
      const metrics2 = await (await server.fetch('/metrics')).text();
      assert.match(metrics2, /^relaycast_srt_refused_b_frames_total 1$/m);
      assert.match(metrics2, /^relaycast_srt_refused_auth_total 1$/m);
      assert.match(metrics2, /^relaycast_srt_refused_total 1$/m);
      assert.equal(await server.streamInfo('bframes'), undefined);

      const c = await viewerStats(page);
      assert.ok(c.framesDecoded > b.framesDecoded, `the viewer kept decoding (${b.framesDecoded} -> ${c.framesDecoded})`);

      // A caller that encrypts (the node sets no passphrase) crashes srt-tokio's listener task,
      // and the SRT sessions riding it; the node binds the listener again at once and takes the
      // next publisher.
      const enc = ffmpegPush(`${srt}?streamid=publish:enc:${TOKEN}&passphrase=correct%20horse%20battery`, { format: 'mpegts', seconds: 5 });
      pushes.push(enc);
      await exitWithin(enc, 20000, 'encrypting caller');
      await waitFor(() => /the SRT listener stopped.*binding it again/.test(server.stderr.tail(400)),
        { timeout: 10000, what: 'the node to bind its SRT listener again' });
      const again = ffmpegPush(`${srt}?streamid=publish:again:${TOKEN}`, { format: 'mpegts', seconds: 20 });
      pushes.push(again);
      await waitFor(async () => (await server.streamInfo('again'))?.live, { timeout: 20000, interval: 500, what: 'a publish over SRT after the restart' });
      assert.match(await (await server.fetch('/metrics')).text(), /^relaycast_srt_listener_restarts_total 1$/m);
    });
  } finally {
    for (const p of pushes) p.proc.kill('SIGKILL');
  }
});
