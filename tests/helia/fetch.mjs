// Fetches one CID from a Relaycast node with Helia and prints one JSON line:
//   {"ok":true,"bytes":N,"sha256":"hex","ms":T}  or  {"ok":false,"error":"..."}
// Usage (Node >= 22):
//   node fetch.mjs gateway HTTP_BASE CID TIMEOUT_MS   (@helia/verified-fetch, trustless gateway)
//   node fetch.mjs bitswap MULTIADDR CID TIMEOUT_MS   (libp2p TCP+noise+yamux, bitswap only)
import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { withBitswap } from '@helia/bitswap';
import { withLibp2pLight } from '@helia/libp2p';
import { unixfs } from '@helia/unixfs';
import { createVerifiedFetch } from '@helia/verified-fetch';
import { identify } from '@libp2p/identify';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createHeliaLight } from 'helia';
import { CID } from 'multiformats/cid';

const [mode, target, cidText, timeoutText] = process.argv.slice(2);
const timeout = Number(timeoutText || 20000);

async function viaGateway() {
  const vf = await createVerifiedFetch({
    gateways: [target],
    routers: [],
    allowLocal: true,
    allowInsecure: true,
  });
  try {
    const resp = await vf(`ipfs://${cidText}`, { signal: AbortSignal.timeout(timeout) });
    if (!resp.ok) throw new Error(`verified-fetch status ${resp.status}`);
    return new Uint8Array(await resp.arrayBuffer());
  } finally {
    await vf.stop();
  }
}

async function viaBitswap() {
  const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() },
  }));
  await helia.start();
  try {
    const signal = AbortSignal.timeout(timeout);
    await helia.libp2p.dial(multiaddr(target), { signal });
    const fs = unixfs(helia);
    const parts = [];
    for await (const chunk of fs.cat(CID.parse(cidText), { signal })) parts.push(chunk);
    return Buffer.concat(parts);
  } finally {
    await helia.stop();
  }
}

const started = Date.now();
try {
  const bytes = mode === 'bitswap' ? await viaBitswap() : await viaGateway();
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  console.log(JSON.stringify({ ok: true, bytes: bytes.length, sha256, ms: Date.now() - started }));
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack || err), ms: Date.now() - started }));
  process.exit(1);
}
