// Helia (the JavaScript IPFS implementation) fetches content archived by a Relaycast node:
// (a) through the node's trustless gateway (`GET /ipfs/{cid}`, @helia/verified-fetch with a
// trustless-gateway block broker), and (b) over libp2p (TCP + noise + yamux) with only the
// bitswap block broker, dialling the node's p2p address. An unknown CID over bitswap is not
// delivered and leaves the node serving. Helia needs Node >= 22, so it runs from tests/helia
// with the node binary installed there (`npm install` in tests/helia; scripts/test.sh does it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binaryPath, runCommand, startServer } from './harness.mjs';
import { HELIA_DIR, NODE22, heliaFetch } from './helia-util.mjs';

const run = runCommand;

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

/** The CIDv1 (raw codec, sha2-256, base32) of `bytes`. */
function rawCid(bytes) {
  const digest = crypto.createHash('sha256').update(bytes).digest();
  const cid = Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]);
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  let out = 'b';
  let acc = 0;
  let bits = 0;
  for (const byte of cid) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(acc << (5 - bits)) & 31];
  return out;
}

test('Helia fetches archived content from a node over its gateway and over bitswap', { timeout: 240_000 }, async (t) => {
  assert.ok(fs.existsSync(NODE22), `Node 22 for Helia missing at ${NODE22}: run \`npm install\` in tests/helia`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-helia-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const dataDir = path.join(dir, 'data');

  // 3 MiB + a bit: several 1 MiB leaves under a dag-pb root; and a kubo-profile copy
  // (256 KiB leaves) of another file, stored before the node starts.
  const bytes = crypto.randomBytes(3 * 1024 * 1024 + 12345);
  const kuboBytes = crypto.randomBytes(700 * 1024);
  fs.writeFileSync(path.join(dir, 'a.bin'), bytes);
  fs.writeFileSync(path.join(dir, 'b.bin'), kuboBytes);
  const add = async (file, profile) => {
    const r = await run(binaryPath(), ['ipfs', 'add', path.join(dir, file), '--profile', profile, '--data-dir', dataDir]);
    assert.equal(r.code, 0, `relaycast ipfs add failed: ${r.stderr}`);
    return r.stdout.trim();
  };
  const cid = await add('a.bin', 'unixfs-v1-2025');
  const kuboCid = await add('b.bin', 'kubo');
  assert.match(cid, /^baf/);
  // The helper computes CIDs as the node does (checked on a single-block file).
  fs.writeFileSync(path.join(dir, 'small.bin'), 'hello bitswap');
  assert.equal(await add('small.bin', 'kubo'), rawCid(Buffer.from('hello bitswap')));

  const server = await startServer({ args: ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0', '--data-dir', dataDir] });
  t.after(() => server.stop());
  const p2p = server.p2p.find((a) => a.includes('/tcp/'));
  assert.ok(p2p, `no TCP p2p address printed: ${server.p2p}`);

  await t.test('gateway (verified-fetch)', async () => {
    const r = await heliaFetch('gateway', server.base, cid, 30_000);
    assert.ok(r.ok, `gateway fetch failed: ${r.error}\n${server.logs(40)}`);
    assert.equal(r.bytes, bytes.length);
    assert.equal(r.sha256, sha256(bytes));
    t.diagnostic(`gateway: ${r.bytes} bytes in ${r.ms} ms (including Helia start)`);
  });

  await t.test('bitswap over libp2p (TCP + noise + yamux)', async () => {
    for (const [c, b] of [[cid, bytes], [kuboCid, kuboBytes]]) {
      const r = await heliaFetch('bitswap', p2p, c, 30_000);
      assert.ok(r.ok, `bitswap fetch of ${c} failed: ${r.error}\n${server.logs(40)}`);
      assert.equal(r.bytes, b.length);
      assert.equal(r.sha256, sha256(b));
      t.diagnostic(`bitswap: ${r.bytes} bytes in ${r.ms} ms (including Helia start and dial)`);
    }
  });

  await t.test('an unknown CID is not delivered over bitswap and the node keeps serving', async () => {
    const missing = rawCid(crypto.randomBytes(64));
    const r = await heliaFetch('bitswap', p2p, missing, 4_000);
    assert.equal(r.ok, false, 'a block the node does not have was delivered');
    assert.match(r.error, /LoadBlockFailed|failed to load block|abort|timeout/i, `unexpected failure: ${r.error}`);
    t.diagnostic(`unknown CID: gave up after ${r.ms} ms`);
    assert.equal(server.exit, null, `node exited: ${JSON.stringify(server.exit)}`);
    const health = await server.fetch('/healthz');
    assert.equal(health.status, 200);
    const again = await heliaFetch('bitswap', p2p, kuboCid, 30_000);
    assert.ok(again.ok, `bitswap after a miss failed: ${again.error}`);
    assert.equal(again.sha256, sha256(kuboBytes));
  });

  await t.test('under --watch-auth a node serves Bitswap to mesh nodes only, not to Helia', async () => {
    // A second node over a copy of the same blocks, with --watch-auth.
    const copy = path.join(dir, 'data-watch-auth');
    fs.cpSync(dataDir, copy, { recursive: true });
    for (const f of ['p2p-identity.key', 'api-secret']) fs.rmSync(path.join(copy, f), { force: true });
    const locked = await startServer({ args: ['--no-mdns', '--p2p', '/ip4/127.0.0.1/tcp/0', '--data-dir', copy, '--watch-auth'] });
    t.after(() => locked.stop());
    const addr = locked.p2p.find((a) => a.includes('/tcp/'));
    const r = await heliaFetch('bitswap', addr, kuboCid, 4_000);
    assert.equal(r.ok, false, 'Helia got a block from a --watch-auth node over Bitswap');
    const metrics = await (await locked.fetch('/metrics')).text();
    const refused = /relaycast_mesh_bitswap_refused_total\{reason="not_mesh_peer"\} (\d+)/.exec(metrics);
    assert.ok(refused && Number(refused[1]) > 0, `refusal counted: ${refused?.[0]}`);
    assert.match(metrics, /relaycast_mesh_bitswap_blocks_sent_total 0\n/);
    // The gateway asks for an admin token for content that is no recording's.
    assert.equal((await locked.fetch(`/ipfs/${kuboCid}`)).status, 401);
    t.diagnostic(`watch-auth: Helia refused after ${r.ms} ms (${refused[0]})`);
  });
});

test('a node fetches a DAG from Helia over Bitswap (relaycast ipfs get), every block verified', { timeout: 120_000 }, async (t) => {
  assert.ok(fs.existsSync(NODE22), `Node 22 for Helia missing at ${NODE22}: run \`npm install\` in tests/helia`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-helia-get-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Helia serves 3.5 MB of random bytes: a dag-pb root over several 1 MiB raw leaves.
  const helia = spawn(NODE22, [path.join(HELIA_DIR, 'serve.mjs'), String(3_500_000)], { cwd: HELIA_DIR, stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => { helia.stdin.end(); helia.kill(); });
  const served = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('Helia did not start within 60 s')), 60_000);
    readline.createInterface({ input: helia.stdout }).once('line', (line) => { clearTimeout(timer); resolve(JSON.parse(line)); });
    helia.once('exit', (code) => reject(new Error(`Helia exited (${code})`)));
  });
  assert.match(served.cid, /^bafy/, 'a dag-pb root');
  const dataDir = path.join(dir, 'data');
  const got = await run(binaryPath(), ['ipfs', 'get', served.cid, '--from', served.addr, '--timeout', '60', '--data-dir', dataDir], { timeoutMs: 90_000 });
  assert.equal(got.code, 0, `relaycast ipfs get failed: ${got.stderr}`);
  const [, blocks, , bytes] = got.stdout.trim().split(' ');
  assert.ok(Number(blocks) >= 4, `blocks fetched: ${got.stdout}`);
  t.diagnostic(`fetched from Helia: ${got.stdout.trim()}`);
  // The node serves what it fetched; the file's bytes are Helia's.
  const server = await startServer({ args: ['--no-mdns', '--data-dir', dataDir] });
  t.after(() => server.stop());
  const file = Buffer.from(await (await server.fetch(`/ipfs/${served.cid}`)).arrayBuffer());
  assert.equal(file.length, served.bytes);
  assert.equal(sha256(file), served.sha256);
  assert.ok(Number(bytes) > served.bytes, 'leaves and the root were fetched');
  // Fetching again finds every block already stored.
  const again = await run(binaryPath(), ['ipfs', 'get', served.cid, '--from', served.addr, '--timeout', '30', '--data-dir', dataDir], { timeoutMs: 60_000 });
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, / 0 blocks 0 bytes/);
});
