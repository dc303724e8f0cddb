// `relaycast ipfs add` against reference UnixFS implementations: the CID printed for a file
// must equal what `ipfs-car pack --no-wrap` computes (profile unixfs-v1-2025: 1 MiB chunks,
// 1024 links) and what ipfs-unixfs-importer computes with Kubo's parameters (256 KiB chunks,
// 174 links, raw leaves, CIDv1). `relaycast ipfs export` must give a CAR that ipfs-car reads
// back to the same root and bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { importer } from 'ipfs-unixfs-importer';
import { fixedSize } from 'ipfs-unixfs-importer/chunker';
import { balanced } from 'ipfs-unixfs-importer/layout';
import { REPO_ROOT, binaryPath, runCommand } from './harness.mjs';

const IPFS_CAR = path.join(REPO_ROOT, 'tests/e2e/node_modules/ipfs-car/bin.js');
const KIB = 1024;
const MIB = 1024 * KIB;

const PROFILES = {
  'unixfs-v1-2025': { chunk: MIB, links: 1024 },
  kubo: { chunk: 256 * KIB, links: 174 },
};

/** Runs a command (`stdin`: an iterable of Buffers to pipe in); resolves with its stdout/stderr, rejects on a non-zero exit or timeout. */
async function run(cmd, args, { timeoutMs = 300_000, stdout = 'pipe', stdin } = {}) {
  const res = await runCommand(cmd, args, { timeoutMs, stdout, stdin });
  if (res.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${res.code}: ${res.stderr}`);
  return res;
}

/** Yields `size` deterministic, non-repeating bytes (every 4 KiB block is stamped with its index). */
function* content(size) {
  const piece = 4 * MIB;
  const base = Buffer.alloc(piece);
  let x = 0x9e3779b9;
  for (let i = 0; i < piece; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    base.writeUInt32LE(x >>> 0, i);
  }
  let written = 0;
  let block = 0;
  while (written < size) {
    const n = Math.min(piece, size - written);
    const buf = Buffer.alloc(n);
    base.copy(buf, 0, 0, n);
    for (let off = 0; off + 8 <= n; off += 4096) buf.writeDoubleLE(block++, off);
    yield buf;
    written += n;
  }
}

/** Writes `content(size)` to `file`. */
async function writeContent(file, size) {
  const fd = await fs.promises.open(file, 'w');
  try {
    for (const buf of content(size)) await fd.write(buf);
  } finally {
    await fd.close();
  }
}

/** CID printed by `relaycast ipfs add`. */
async function relaycastAdd(file, profile, dataDir) {
  const { stdout } = await run(binaryPath(), ['ipfs', 'add', file, '--profile', profile, '--data-dir', dataDir]);
  return stdout.trim();
}

/** CID `relaycast ipfs add - --only-hash` prints for `content(size)` on its stdin. */
async function relaycastHash(size, profile) {
  const { stdout } = await run(binaryPath(), ['ipfs', 'add', '-', '--only-hash', '--profile', profile], { stdin: content(size) });
  return stdout.trim();
}

/** Root CID `ipfs-car pack --no-wrap` computes for the bytes of `source` on its stdin (the CAR is discarded). */
async function ipfsCarPack(source) {
  const { stderr } = await run(process.execPath, [IPFS_CAR, 'pack', '--no-wrap'], { stdout: 'ignore', stdin: source });
  const lines = stderr.trim().split('\n');
  return lines[lines.length - 1].trim();
}

/** Root CID from ipfs-unixfs-importer with fixed-size chunks and a balanced layout. */
async function unixfsImporter(size, { chunk, links }) {
  const nullStore = { put: async (cid) => cid, has: async () => false };
  let root;
  const source = [{ content: (async function* () { yield* content(size); })() }];
  for await (const entry of importer(source, nullStore, {
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: chunk }),
    layout: balanced({ maxChildrenPerNode: links }),
  })) {
    root = entry.cid.toString();
  }
  return root;
}

function sizesFor({ chunk, links }) {
  return [
    ['empty', 0],
    ['one byte', 1],
    ['chunk-1', chunk - 1],
    ['chunk', chunk],
    ['chunk+1', chunk + 1],
    ['beyond one full level', links * chunk + 2 * chunk + 12345],
  ];
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-ipfs-'));
}

for (const [profile, params] of Object.entries(PROFILES)) {
  for (const [label, size] of sizesFor(params)) {
    test(`ipfs add --profile ${profile}: ${label} (${size} bytes) matches the reference CIDs`, { timeout: 600_000 }, async () => {
      // The content is streamed to every implementation: nothing of it is written to disk.
      const ours = await relaycastHash(size, profile);
      assert.match(ours, /^baf[a-z2-7]+$/);
      // ipfs-unixfs-importer with the same parameters, for both profiles.
      assert.equal(ours, await unixfsImporter(size, params), 'ipfs-unixfs-importer');
      // ipfs-car defaults are the unixfs-v1-2025 profile.
      if (profile === 'unixfs-v1-2025') {
        assert.equal(ours, await ipfsCarPack(content(size)), 'ipfs-car pack --no-wrap');
      }
      if (size === 0) {
        assert.equal(ours, 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku');
      }
      if (size <= params.chunk) {
        assert.ok(ours.startsWith('bafkrei'), `a file of at most one chunk is one raw block: ${ours}`);
      } else {
        assert.ok(ours.startsWith('bafybei'), `a multi-chunk file has a dag-pb root: ${ours}`);
      }
    });
  }
}

test('hello world fixture', async () => {
  const dir = tempDir();
  try {
    const file = path.join(dir, 'hello.txt');
    fs.writeFileSync(file, 'hello world');
    const cid = await relaycastAdd(file, 'unixfs-v1-2025', path.join(dir, 'data'));
    assert.equal(cid, 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e');
    assert.equal(cid, await ipfsCarPack([Buffer.from('hello world')]));
    // --only-hash prints the same CID and writes no block.
    const hashOnly = path.join(dir, 'hash-only');
    const { stdout } = await run(binaryPath(), ['ipfs', 'add', file, '--only-hash', '--data-dir', hashOnly]);
    assert.equal(stdout.trim(), cid);
    assert.ok(!fs.existsSync(hashOnly), '--only-hash created no data directory');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const EXPORT_CASES = [
  ['unixfs-v1-2025', 11],
  ['unixfs-v1-2025', 3 * MIB + 5],
  ['kubo', 0],
  ['kubo', 174 * 256 * KIB + 3 * 256 * KIB + 1],
];

for (const [profile, size] of EXPORT_CASES) {
  test(`ipfs export (${profile}, ${size} bytes): ipfs-car reads back the root and the bytes`, { timeout: 300_000 }, async () => {
    const dir = tempDir();
    try {
      const file = path.join(dir, 'content.bin');
      await writeContent(file, size);
      const dataDir = path.join(dir, 'data');
      const cid = await relaycastAdd(file, profile, dataDir);
      const car = path.join(dir, 'out.car');
      const fd = fs.openSync(car, 'w');
      try {
        await run(binaryPath(), ['ipfs', 'export', cid, '--data-dir', dataDir], { stdout: fd });
      } finally {
        fs.closeSync(fd);
      }
      const { stdout: roots } = await run(process.execPath, [IPFS_CAR, 'roots', car]);
      assert.equal(roots.trim(), cid);
      // `ls --verbose` prints "<cid>\t<bytes>\t<path>" for the file at the root.
      const { stdout: ls } = await run(process.execPath, [IPFS_CAR, 'ls', car, '--verbose']);
      assert.deepEqual(ls.trim().split('\t'), [cid, String(size), '.']);
      const unpacked = path.join(dir, 'unpacked.bin');
      await run(process.execPath, [IPFS_CAR, 'unpack', car, '--output', unpacked]);
      assert.ok(fs.readFileSync(unpacked).equals(fs.readFileSync(file)), 'unpacked bytes equal the original');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('ipfs export of an unknown CID fails with a message', async () => {
  const dir = tempDir();
  try {
    await assert.rejects(
      run(binaryPath(), ['ipfs', 'export', 'bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e', '--data-dir', dir]),
      /is not in/,
    );
    await assert.rejects(run(binaryPath(), ['ipfs', 'export', 'not-a-cid', '--data-dir', dir]), /invalid CID/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
