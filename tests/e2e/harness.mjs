// Shared helpers for the Chromium end-to-end tests: start the relaycast binary, launch
// Chromium through playwright-core, bounded polling and failure diagnostics.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
  '--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/',
  // Keep timers and media running at full rate in pages that are not focused.
  '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows',
  '--autoplay-policy=no-user-gesture-required',
];

const LOG_LINES = 400;

/** Path of the relaycast binary: $RELAYCAST_BIN or target/debug/relaycast, relative to the repo root. */
export function binaryPath() {
  return path.resolve(REPO_ROOT, process.env.RELAYCAST_BIN || 'target/debug/relaycast');
}

/** Path of the Chromium executable: $CHROMIUM_PATH, /usr/bin/chromium or /usr/lib/chromium/chromium. */
export function chromiumPath() {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/lib/chromium/chromium'].filter(Boolean);
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch { /* try the next one */ }
  }
  throw new Error(`no Chromium executable found (tried ${candidates.join(', ')}); install Debian's chromium package or set CHROMIUM_PATH`);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs a command to completion; resolves with `{ code, stdout, stderr }` whatever its exit code,
 * rejects (after SIGKILL) when it runs past `timeoutMs`. `stdout` may be 'pipe' or a file
 * descriptor / stream to write to (then `stdout` in the result is empty). `stdin`, an iterable
 * of Buffers, is piped to the command's standard input.
 */
export function runCommand(cmd, args, { timeoutMs = 60000, cwd, stdout = 'pipe', stdin } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [stdin ? 'pipe' : 'ignore', stdout, 'pipe'], cwd });
    if (stdin) {
      // A child that exits early closes its stdin: its exit code tells, not EPIPE.
      child.stdin.on('error', () => {});
      Readable.from(stdin).on('error', () => {}).pipe(child.stdin);
    }
    const out = [];
    const err = [];
    if (stdout === 'pipe') child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      const tail = Buffer.concat(err).toString().slice(-4000);
      reject(new Error(`${path.basename(cmd)} ${args.join(' ')} timed out after ${timeoutMs} ms\n${tail}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
  });
}

/**
 * Poll `fn` until it returns a truthy value (which is returned) or `timeout` ms pass.
 * Errors thrown by `fn` count as "not yet"; the last value or error is reported on timeout.
 */
export async function waitFor(fn, { timeout = 20000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() >= deadline) {
      const detail = lastErr ? `last error: ${lastErr.stack || lastErr}` : `last value: ${safeJson(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; ${detail}`);
    }
    await sleep(interval);
  }
}

export function safeJson(v) {
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

class Ring {
  constructor(max) { this.max = max; this.lines = []; this.partial = ''; }
  push(line) { this.lines.push(line); if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max); }
  write(chunk) {
    const text = this.partial + chunk.toString('utf8');
    const parts = text.split('\n');
    this.partial = parts.pop();
    for (const p of parts) this.push(p);
  }
  tail(n = 80) { return this.lines.slice(-n).concat(this.partial ? [this.partial] : []).join('\n'); }
}

/** A running relaycast server. */
export class Server {
  constructor(proc, token) {
    this.proc = proc;
    this.token = token;
    this.stdout = new Ring(LOG_LINES);
    this.stderr = new Ring(LOG_LINES);
    this.base = null;
    this.exit = null;
    /** The node's libp2p addresses (`  p2p: ` lines), each ending in /p2p/<peer id>. */
    this.p2p = [];
  }

  /** The node's libp2p peer id (from its `  p2p: ` lines). */
  get peerId() {
    return this.p2p[0]?.split('/p2p/')[1];
  }

  /** Absolute URL on the server. */
  url(p) {
    return new URL(p, this.base + '/').toString();
  }

  /** fetch() against the server with a bounded timeout. */
  async fetch(p, init = {}) {
    return fetch(this.url(p), { signal: AbortSignal.timeout(init.timeout ?? 10000), ...init });
  }

  /** GET /api/streams and return the entry named `name` (or undefined). */
  async streamInfo(name) {
    const resp = await this.fetch('/api/streams');
    if (!resp.ok) throw new Error(`GET /api/streams -> ${resp.status}`);
    const json = await resp.json();
    return (json.streams || []).find((s) => s.name === name);
  }

  /** The last lines of stdout and stderr. */
  logs(n = 80) {
    return `--- relaycast stdout (tail) ---\n${this.stdout.tail(n)}\n--- relaycast stderr (tail) ---\n${this.stderr.tail(n)}`;
  }

  /** SIGKILL at once (a crash). */
  async kill() {
    if (this.exit) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGKILL');
    await Promise.race([exited, sleep(5000)]);
  }

  /** SIGTERM, then SIGKILL after 5 s. */
  async stop() {
    if (this.exit) {
      if (this.cwd) fs.rmSync(this.cwd, { recursive: true, force: true });
      return;
    }
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGTERM');
    const done = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
    if (!done) {
      this.proc.kill('SIGKILL');
      await Promise.race([exited, sleep(2000)]);
    }
    if (this.cwd) fs.rmSync(this.cwd, { recursive: true, force: true });
  }
}

/** Start the relaycast binary on ephemeral ports and wait for its `  http: http://127.0.0.1:PORT` line. */
export async function startServer({ token = 'e2e-token', args = [], http = '127.0.0.1:0', timeout = 30000, bin = binaryPath(), env = {} } = {}) {
  if (!fs.existsSync(bin)) {
    throw new Error(`relaycast binary not found at ${bin}: build it first (cargo build) or set RELAYCAST_BIN`);
  }
  // Run in a scratch directory so node state files never land in the work tree.
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-server-'));
  const proc = spawn(bin, ['--http', http, '--media-port', '0', '--publish-token', token, ...args], {
    cwd,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', RUST_BACKTRACE: '1', NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const server = new Server(proc, token);
  server.cwd = cwd;
  proc.stderr.on('data', (c) => server.stderr.write(c));
  proc.on('exit', (code, signal) => { server.exit = { code, signal }; });
  const ready = new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`relaycast did not print its "  http: " line within ${timeout} ms\n${server.logs()}`)), timeout);
    proc.stdout.on('data', (chunk) => {
      server.stdout.write(chunk);
      if (server.base) return;
      seen += chunk.toString('utf8');
      server.p2p = [...seen.matchAll(/^ {2}p2p: (\S+)\s*$/gm)].map((x) => x[1]);
      const m = /^ {2}http: (https?:\/\/127\.0\.0\.1:\d+)\/?\s*$/m.exec(seen);
      if (m) {
        clearTimeout(timer);
        server.base = m[1];
        resolve(server);
      }
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`relaycast exited early (code ${code}, signal ${signal})\n${server.logs()}`));
    });
    proc.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${bin}: ${err.message}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await server.stop().catch(() => {});
    throw err;
  }
  // An HTTPS node's certificate is the test's own: its test checks health with that CA.
  if (server.base.startsWith('http:')) {
    await waitFor(async () => (await server.fetch('/healthz')).status === 200, { timeout: 10000, what: 'GET /healthz == 200' });
  }
  return server;
}

/** A Chromium instance with its own profile directory (one browser context). */
export class Browser {
  constructor(name, context, dir) {
    this.name = name;
    this.context = context;
    this.dir = dir;
    this.console = new Ring(LOG_LINES);
    for (const p of context.pages()) this._hook(p);
    context.on('page', (p) => this._hook(p));
  }

  _hook(page) {
    page.on('console', (msg) => this.console.push(`[${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => this.console.push(`[pageerror] ${err.stack || err.message}`));
    page.on('requestfailed', (req) => this.console.push(`[requestfailed] ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));
    page.on('response', (resp) => {
      if (resp.status() >= 400) this.console.push(`[http ${resp.status()}] ${resp.request().method()} ${resp.url()}`);
    });
  }

  /** The context's first page (created if needed). */
  async page() {
    return this.context.pages()[0] ?? (await this.context.newPage());
  }

  logs(n = 60) {
    return `--- ${this.name} console (tail) ---\n${this.console.tail(n)}`;
  }

  async close() {
    await this.context.close().catch(() => {});
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

const LOCAL_ASSETS = {
  '/sdk/relaycast.js': ['sdk/relaycast.js', 'text/javascript; charset=utf-8'],
  '/sdk/hls.min.js': ['sdk/vendor/hls.min.js', 'text/javascript; charset=utf-8'],
  '/sdk/dash.all.min.js': ['sdk/vendor/dash.all.min.js', 'text/javascript; charset=utf-8'],
  '/streamer.html': ['sdk/pages/streamer.html', 'text/html; charset=utf-8'],
  '/viewer.html': ['sdk/pages/viewer.html', 'text/html; charset=utf-8'],
  '/dashboard.html': ['sdk/pages/dashboard.html', 'text/html; charset=utf-8'],
  '/examples/watch.html': ['examples/watch.html', 'text/html; charset=utf-8'],
};
for (const name of fs.readdirSync(path.join(REPO_ROOT, 'sdk/lib')).filter((n) => n.endsWith('.js'))) {
  LOCAL_ASSETS[`/sdk/lib/${name}`] = [`sdk/lib/${name}`, 'text/javascript; charset=utf-8'];
}

/**
 * With RELAYCAST_E2E_LOCAL_ASSETS=1 the SDK and pages come from the work tree instead of the
 * copies compiled into the binary (handy while editing them without rebuilding).
 */
async function serveLocalAssets(context) {
  await context.route((url) => url.hostname === '127.0.0.1' && Object.hasOwn(LOCAL_ASSETS, url.pathname), async (route) => {
    const [file, contentType] = LOCAL_ASSETS[new URL(route.request().url()).pathname];
    await route.fulfill({ status: 200, contentType, body: fs.readFileSync(path.join(REPO_ROOT, file)) });
  });
}

/** Launch headless Chromium with fake media devices in a fresh profile. */
export async function launchBrowser(name, { args = [] } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `relaycast-e2e-${name}-`));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath(),
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    viewport: { width: 1280, height: 800 },
    timeout: 60000,
  });
  context.setDefaultTimeout(30000);
  if (process.env.RELAYCAST_E2E_LOCAL_ASSETS === '1') await serveLocalAssets(context);
  return new Browser(name, context, dir);
}

/**
 * Per-test resources and diagnostics. `h.run(fn)` runs the body; on failure it prints the
 * server's log tail, the browsers' console tails and extra state, then cleans everything up.
 */
export class Harness {
  constructor(title) {
    this.title = title;
    this.server = null;
    this.previousServers = [];
    this.browsers = [];
    this.notes = [];
    this.diagnostics = [];
  }

  async startServer(opts) {
    const server = await startServer(opts);
    if (this.server) this.previousServers.push(this.server);
    this.server = server;
    return server;
  }

  async browser(name, opts) {
    const b = await launchBrowser(name, opts);
    this.browsers.push(b);
    return b;
  }

  /** Register an async function whose result is printed on failure (e.g. page stats). */
  onFailure(label, fn) {
    this.diagnostics.push({ label, fn });
  }

  note(text) {
    this.notes.push(text);
  }

  async run(fn) {
    try {
      return await fn(this);
    } catch (err) {
      await this.report(err);
      throw err;
    } finally {
      await this.cleanup();
    }
  }

  async report(err) {
    const out = [`\n======== diagnostics for "${this.title}" ========`, `error: ${err?.stack || err}`];
    if (this.notes.length) out.push('--- notes ---', ...this.notes);
    for (const { label, fn } of this.diagnostics) {
      try {
        const v = await Promise.race([fn(), sleep(5000).then(() => '(timed out)')]);
        out.push(`--- ${label} ---`, typeof v === 'string' ? v : JSON.stringify(v, null, 2));
      } catch (e) {
        out.push(`--- ${label} --- (failed: ${e.message})`);
      }
    }
    for (const old of this.previousServers) out.push('(earlier relaycast process)', old.logs(40));
    if (this.server) {
      out.push(this.server.exit ? `relaycast exited: ${JSON.stringify(this.server.exit)}` : 'relaycast still running');
      out.push(this.server.logs(120));
    }
    for (const b of this.browsers) out.push(b.logs(80));
    out.push('======== end of diagnostics ========\n');
    console.error(out.join('\n'));
  }

  async cleanup() {
    await Promise.all(this.browsers.map((b) => b.close()));
    this.browsers = [];
    for (const old of this.previousServers) await old.stop().catch(() => {});
    if (this.server) await this.server.stop().catch(() => {});
  }
}

/** In-page: summary of the inbound video/audio stats of `window.session.pc` (viewer page). */
export async function viewerStats(page) {
  return page.evaluate(async () => {
    const pc = window.session?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const out = { framesDecoded: 0, frameWidth: 0, frameHeight: 0, packetsLost: 0, videoPackets: 0, audioPackets: 0, codec: null, connectionState: pc.connectionState, rid: window.session.rid ?? null };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded = s.framesDecoded ?? 0;
        out.frameWidth = s.frameWidth ?? 0;
        out.frameHeight = s.frameHeight ?? 0;
        out.packetsLost = s.packetsLost ?? 0;
        out.videoPackets = s.packetsReceived ?? 0;
        const c = s.codecId && report.get(s.codecId);
        if (c) out.codec = c.mimeType;
      } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioPackets = s.packetsReceived ?? 0;
      }
    });
    return out;
  });
}

/** In-page: per-rid outbound video stats and audio of `window.relaycastSession.pc` (streamer page). */
export async function publisherStats(page) {
  return page.evaluate(async () => {
    const s = window.relaycastSession;
    const pc = s?.pc;
    if (!pc) return null;
    const report = await pc.getStats();
    const layers = {};
    let codec = null;
    let audioPackets = 0;
    report.forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'video') {
        layers[r.rid ?? ''] = { width: r.frameWidth ?? 0, height: r.frameHeight ?? 0, bytesSent: r.bytesSent ?? 0, framesEncoded: r.framesEncoded ?? 0, limitation: r.qualityLimitationReason, encoder: r.encoderImplementation };
        const c = r.codecId && report.get(r.codecId);
        if (c) codec = c.mimeType;
      } else if (r.type === 'outbound-rtp' && r.kind === 'audio') {
        audioPackets = r.packetsSent ?? 0;
      }
    });
    return { state: pc.connectionState, sessionState: s.state, layers, codec, audioPackets };
  });
}

/**
 * In the viewer page: samples `window.session.pc`'s decoded video frames every 50 ms for `ms`
 * (after leaving out the sampler's own first second, whose getStats calls come late) and
 * returns `{ frames, stall, stallAt, start }`: frames decoded, and the longest time without a new
 * one (ms) with when it began (ms from `start`, the window's first sample as a page timestamp in
 * ms since the epoch). `during` runs while sampling.
 */
export async function measureStall(page, ms, during = async () => {}) {
  await page.evaluate(() => {
    window.frameSamples = [];
    window.sampler = setInterval(async () => {
      const r = await window.session.pc.getStats();
      let f = 0;
      r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') f = s.framesDecoded ?? 0; });
      window.frameSamples.push({ t: performance.timeOrigin + performance.now(), f });
    }, 50);
  });
  await sleep(1000);
  await page.evaluate(() => { window.frameSamples.length = 0; });
  const [, extra] = await Promise.all([sleep(ms), during()]);
  const samples = await page.evaluate(() => { clearInterval(window.sampler); return window.frameSamples; });
  let stall = 0;
  let stallAt = samples[0].t;
  let lastChange = samples[0];
  for (const s of [...samples.slice(1), { ...samples.at(-1), f: -1 }]) {
    if (s.f !== lastChange.f) {
      if (s.t - lastChange.t > stall) [stall, stallAt] = [s.t - lastChange.t, lastChange.t];
      lastChange = s;
    }
  }
  return { frames: samples.at(-1).f - samples[0].f, stall, stallAt: stallAt - samples[0].t, start: samples[0].t, extra };
}
