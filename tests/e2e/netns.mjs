// A node in a network namespace of its own, joined to the test's namespace by a veth pair, for
// clients that gather no loopback ICE candidates (Firefox, GStreamer's libnice). Needs root.

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binaryPath, waitFor, sleep } from './harness.mjs';

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
