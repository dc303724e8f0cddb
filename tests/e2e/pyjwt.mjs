// Access tokens minted and verified by PyJWT (tests/python/jwt_tool.py in tests/python/.venv),
// an implementation independent of the node's.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './harness.mjs';

const PYTHON = path.join(REPO_ROOT, 'tests/python/.venv/bin/python');
const TOOL = path.join(REPO_ROOT, 'tests/python/jwt_tool.py');

/**
 * Runs jwt_tool.py on `requests` (`{encode: claims, secret, alg}` or `{decode: token, secret}`)
 * and returns its results in order.
 */
export function pyjwt(requests) {
  if (!fs.existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run scripts/test.sh (it creates tests/python/.venv with PyJWT)`);
  const r = spawnSync(PYTHON, [TOOL], { input: JSON.stringify(requests), encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`jwt_tool.py failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Seconds since the Unix epoch. */
export const nowSecs = () => Math.floor(Date.now() / 1000);
