// What the ingest tests (RTMP, SRT) share: an ffmpeg encoder pushing testsrc and a 440 Hz sine
// as H264 and AAC, and an in-page analyser that finds the loudest frequency a viewer hears.

import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { waitFor, viewerStats } from './harness.mjs';

/**
 * Runs ffmpeg pushing testsrc (and a 440 Hz sine as AAC) to `url` in `format` (flv for RTMP,
 * mpegts for SRT); `size` is the picture, `gop` the keyframe interval in frames (30 per second).
 */
export function ffmpegPush(url, { video = ['-profile:v', 'baseline', '-bf', '0'], seconds = 40, format = 'flv', size = '640x360', gop = 60 } = {}) {
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'info', '-re',
    '-f', 'lavfi', '-i', `testsrc=size=${size}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-t', String(seconds), '-c:v', 'libx264', ...video, '-g', String(gop), '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '96k', '-f', format, url];
  const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c) => { stderr = (stderr + c.toString()).slice(-8000); });
  const exit = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exit, stderr: () => stderr };
}

/** The `  rtmp: ` or `  rtmps: ` URL of a node's ready banner (printed after its `  http: ` line). */
export function bannerUrl(server, scheme = 'rtmp') {
  const re = new RegExp(`^ {2}${scheme}: (${scheme}:\\/\\/127\\.0\\.0\\.1:\\d+\\/live)\\s*$`, 'm');
  return waitFor(() => re.exec(server.stdout.tail(200))?.[1], { timeout: 5000, what: `the banner's ${scheme} line` });
}

/** In-page: the loudest frequency of the viewer's received audio (an analyser over 1 s), or null. */
export async function audioPeak() {
  const stream = document.getElementById('video')?.srcObject;
  const track = stream?.getAudioTracks()[0];
  if (!track) return null;
  window.__ctx ??= new AudioContext();
  const ctx = window.__ctx;
  await ctx.resume();
  if (!window.__analyser) {
    window.__analyser = ctx.createAnalyser();
    window.__analyser.fftSize = 8192;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(window.__analyser);
  }
  await new Promise((r) => setTimeout(r, 1000));
  const a = window.__analyser;
  const bins = new Float32Array(a.frequencyBinCount);
  a.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  return { hz: (best * ctx.sampleRate) / a.fftSize, level: bins[best], sampleRate: ctx.sampleRate };
}

/** Resolves within `ms` with the exit of `p`, or rejects. */
export async function exitWithin(p, ms, what) {
  let t;
  const timer = new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what}: ffmpeg still running after ${ms} ms\n${p.stderr()}`)), ms); });
  try {
    return await Promise.race([p.exit, timer]);
  } finally {
    clearTimeout(t);
  }
}

/**
 * Opens the viewer page of `stream` in a new Chromium of `h` and waits until it decodes 30 more
 * H264 frames at 640x360 and hears a peak within 25 Hz of 440 Hz. Returns the page and the
 * stats after the 30 frames; `label` names the figure printed; `browserArgs` go to Chromium.
 */
export async function watchAndHear(h, server, stream, label, browserArgs = []) {
  const view = await h.browser('viewer', { args: browserArgs });
  const page = await view.page();
  h.onFailure('viewer stats', () => viewerStats(page));
  await page.goto(server.url(`/viewer.html?stream=${stream}`), { waitUntil: 'domcontentloaded' });
  const a = await waitFor(async () => {
    const s = await viewerStats(page);
    return s?.framesDecoded > 0 && s;
  }, { timeout: 30000, what: 'viewer decoding frames' });
  const b = await waitFor(async () => {
    const s = await viewerStats(page);
    return s.framesDecoded >= a.framesDecoded + 30 && s;
  }, { timeout: 10000, what: `framesDecoded to rise by 30 above ${a.framesDecoded}` });
  assert.match(String(b.codec), /video\/H264/i);
  assert.equal(b.frameWidth, 640);
  assert.equal(b.frameHeight, 360);
  // The AAC became Opus: a WebAudio analyser on the received track finds the 440 Hz peak.
  const peak = await waitFor(async () => {
    const r = await page.evaluate(audioPeak);
    return r && r.level > -60 && r;
  }, { timeout: 15000, interval: 500, what: 'an audible peak in the received audio' });
  console.log(`# ${label} audio peak ${JSON.stringify(peak)}`);
  assert.ok(Math.abs(peak.hz - 440) < 25, `the loudest frequency is 440 Hz (${peak.hz.toFixed(1)} Hz at ${peak.level.toFixed(1)} dB)`);
  return { page, stats: b };
}
