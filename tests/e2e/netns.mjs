// A node in a network namespace of its own, joined to the test's namespace by a veth pair, for
// clients that gather no loopback ICE candidates (Firefox, GStreamer's libnice); and helpers for
// tests that build their own namespaces: processes, nodes and Chromium inside one. Needs root.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { binaryPath, chromiumPath, CHROMIUM_ARGS, waitFor, sleep } from './harness.mjs';

/**
 * Creates namespace `<prefix><id>` holding one end of a veth pair; the other end stays here.
 * The node's side is 10.`octet`.N.1, ours 10.`octet`.N.2 (N from the process id).
 */
export function makeNamespace(prefix, octet) {
  const id = process.pid % 10000;
  const ns = `${prefix}${id}`;
  const net = 100 + (process.pid % 100);
  const [here, there] = [`${prefix}h${id}`, `${prefix}n${id}`];
  const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  try { ip('netns', 'del', ns); } catch { /* not left over */ }
  ip('netns', 'add', ns);
  ip('link', 'add', here, 'type', 'veth', 'peer', 'name', there);
  ip('link', 'set', there, 'netns', ns);
  ip('addr', 'add', `10.${octet}.${net}.2/24`, 'dev', here);
  ip('link', 'set', here, 'up');
  ip('-n', ns, 'addr', 'add', `10.${octet}.${net}.1/24`, 'dev', there);
  ip('-n', ns, 'link', 'set', there, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  return { ns, nodeIp: `10.${octet}.${net}.1`, remove: () => { try { ip('netns', 'del', ns); } catch { /* gone */ } } };
}

/** Starts relaycast inside `ns` on `ip`; resolves with its base URL, process and log. */
export async function startNodeIn(ns, ip, { token, args = [] }) {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-netns-'));
  const proc = spawn('ip', ['netns', 'exec', ns, binaryPath(), '--http', `${ip}:0`, '--media-port', '0', '--publish-token', token, '--no-turn', ...args], {
    cwd, env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const node = { proc, cwd, log: '', base: null };
  proc.stdout.on('data', (d) => { node.log = (node.log + d).slice(-20000); });
  proc.stderr.on('data', (d) => { node.log = (node.log + d).slice(-20000); });
  node.base = await waitFor(() => /^ {2}http: (http:\/\/[\d.]+:\d+)/m.exec(node.log)?.[1], { timeout: 30000, what: 'the node\'s "  http: " line' });
  node.stop = async () => {
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    if (!(await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]))) proc.kill('SIGKILL');
    fs.rmSync(cwd, { recursive: true, force: true });
  };
  node.stream = async (name) => {
    const resp = await fetch(`${node.base}/api/streams`, { signal: AbortSignal.timeout(5000) });
    return (await resp.json()).streams.find((s) => s.name === name);
  };
  return node;
}

/** Runs a command in namespace `ns` synchronously; its stdout. */
export function inNs(ns, cmd, ...args) {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15000 }).toString();
}

/** A process inside a namespace whose output is kept (last 40 kB); `stop()` ends it (SIGTERM, then SIGKILL). */
export function spawnIn(ns, cmd, args, { cwd } = {}) {
  const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], {
    cwd, env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = { proc, log: '', exited: false };
  const keep = (d) => { p.log = (p.log + d).slice(-40000); };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  p.exit = new Promise((resolve) => proc.once('exit', (code, sig) => { p.exited = true; resolve(code ?? sig); }));
  p.stop = async (ms = 10000) => {
    if (p.exited) return;
    proc.kill('SIGTERM');
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve(false), ms); });
    const stopped = await Promise.race([p.exit.then(() => true), late]);
    clearTimeout(timer);
    if (stopped) return;
    proc.kill('SIGKILL');
    await p.exit;
  };
  return p;
}

/**
 * Starts relaycast in `ns` on `ip` (`--no-mdns --no-archive` and `args`); resolves once it prints
 * its HTTP line, with `base`, `port`, `p2p` (its printed multiaddrs), `api(path)` and `metrics()`
 * (read from inside the namespace with curl), `log` and `stop()`.
 */
export async function startRelaycastIn(ns, ip, { token, args = [] }) {
  const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-ns-'));
  const node = spawnIn(ns, binaryPath(), ['--http', `${ip}:0`, '--media-port', '0', '--publish-token', token, '--no-mdns', '--no-archive', ...args], { cwd });
  node.base = await waitFor(() => {
    if (node.exited) throw new Error(`node exited:\n${node.log}`);
    return /^ {2}http: (http:\/\/[\d.]+:\d+)/m.exec(node.log)?.[1];
  }, { timeout: 30000, what: 'the node\'s "  http: " line' });
  node.port = Number(new URL(node.base).port);
  node.p2p = [...node.log.matchAll(/^ {2}p2p: (\S+)/gm)].map((m) => m[1]);
  node.api = (p) => JSON.parse(inNs(ns, 'curl', '-sf', '--max-time', '5', `${node.base}${p}`));
  node.metrics = () => inNs(ns, 'curl', '-sf', '--max-time', '5', `${node.base}/metrics`);
  const stop = node.stop;
  node.stop = async () => { await stop(); fs.rmSync(cwd, { recursive: true, force: true }); };
  return node;
}

/** Chromium inside `ns`: playwright drives it over a pipe, which `ip netns exec` passes on. */
export async function chromiumIn(ns, insecureOrigins) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-ns-chromium-'));
  const wrapper = path.join(dir, 'chromium-in-ns.sh');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${chromiumPath()} "$@"\n`, { mode: 0o755 });
  const context = await chromium.launchPersistentContext(path.join(dir, 'profile'), {
    executablePath: wrapper,
    headless: true,
    // getUserMedia on plain HTTP at a non-local address (HTTPS is the real answer).
    args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${insecureOrigins.join(',')}`],
    timeout: 60000,
  });
  context.setDefaultTimeout(30000);
  return { context, close: async () => { await context.close().catch(() => {}); fs.rmSync(dir, { recursive: true, force: true }); } };
}
