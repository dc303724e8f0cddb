// Serves random bytes from a Helia node over Bitswap (libp2p TCP + noise + yamux), for a Relaycast
// node to fetch. Prints one JSON line {"addr":MULTIADDR,"cid":CID,"bytes":N,"sha256":HEX} once it
// listens, then serves until stdin closes.
// Usage (Node >= 22): node serve.mjs BYTES
import { createHash, randomBytes } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { withBitswap } from '@helia/bitswap';
import { withLibp2pLight } from '@helia/libp2p';
import { unixfs } from '@helia/unixfs';
import { identify } from '@libp2p/identify';
import { tcp } from '@libp2p/tcp';
import { createHeliaLight } from 'helia';

const size = Number(process.argv[2] || 1024 * 1024);
const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() },
}));
await helia.start();
const bytes = randomBytes(size);
// @helia/unixfs defaults: 256 KiB chunks, raw leaves, CIDv1: a dag-pb root over several leaves.
const cid = await unixfs(helia).addBytes(bytes);
const addr = helia.libp2p.getMultiaddrs().map(String).find((a) => a.includes('/tcp/'));
console.log(JSON.stringify({ addr, cid: cid.toString(), bytes: size, sha256: createHash('sha256').update(bytes).digest('hex') }));
process.stdin.on('end', async () => {
  await helia.stop();
  process.exit(0);
});
process.stdin.resume();
