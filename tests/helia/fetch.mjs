// Fetches one CID from a Relaycast node with Helia and prints one JSON line:
//   {"ok":true,"bytes":N,"sha256":"hex","ms":T}  or  {"ok":false,"error":"..."}
// Usage (Node >= 22):
//   node fetch.mjs gateway HTTP_BASE CID TIMEOUT_MS   (@helia/verified-fetch, trustless gateway)
//   node fetch.mjs bitswap MULTIADDR CID TIMEOUT_MS   (libp2p TCP+noise+yamux, bitswap only)
//   node fetch.mjs dht MULTIADDR CID TIMEOUT_MS       (as bitswap, but MULTIADDR is only a DHT
//     bootstrap peer: the providers of CID are found on the IPFS DHT (/ipfs/kad/1.0.0) and the
//     result also lists them: {"ok":true,...,"providers":["12D3..."]})
import { createHash } from 'node:crypto';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { withBitswap } from '@helia/bitswap';
import { fallbackRouter } from '@helia/fallback-router';
import { withLibp2pLight } from '@helia/libp2p';
import { unixfs } from '@helia/unixfs';
import { trustlessGatewayBlockBroker } from '@helia/trustless-gateway-client';
import { createVerifiedFetch } from '@helia/verified-fetch';
import { identify } from '@libp2p/identify';
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht';
import { ping } from '@libp2p/ping';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createHeliaLight } from 'helia';
import { CID } from 'multiformats/cid';

const [mode, target, cidText, timeoutText] = process.argv.slice(2);
const timeout = Number(timeoutText || 20000);

/**
 * A content router naming the node's gateway as the provider of every CID. (A Helia node whose
 * only router is a fallback router never ends its provider search, so this one is not one.)
 */
function gatewayRouter(url) {
  const inner = fallbackRouter({ gateways: [url] });
  return {
    name: 'relaycast-gateway',
    async * findProviders(cid, options) {
      for await (const p of inner.findProviders(cid, options)) yield { ...p, fallback: false };
    },
  };
}

async function viaGateway() {
  // HTTP only: the node's gateway is the one provider; no libp2p, no public routers.
  const helia = createHeliaLight({
    blockBrokers: [trustlessGatewayBlockBroker({ allowLocal: true, allowInsecure: true })],
    routers: [gatewayRouter(target)],
  });
  await helia.start();
  const vf = await createVerifiedFetch(helia);
  try {
    const resp = await vf(`ipfs://${cidText}`, { signal: AbortSignal.timeout(timeout) });
    if (!resp.ok) throw new Error(`verified-fetch status ${resp.status}`);
    return new Uint8Array(await resp.arrayBuffer());
  } finally {
    await vf.stop();
    await helia.stop();
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

/**
 * Knows only a DHT bootstrap peer and the CID: asks the IPFS DHT (a client, loopback addresses
 * kept) for the CID's providers, dials them, then fetches the content over bitswap.
 */
async function viaDht(result) {
  const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: true, peerInfoMapper: passthroughMapper }),
    },
  }));
  await helia.start();
  try {
    const signal = AbortSignal.timeout(timeout);
    const bootstrap = multiaddr(target);
    await helia.libp2p.dial(bootstrap, { signal });
    // The bootstrap peer joins the routing table once identify shows it speaks the DHT.
    const dht = helia.libp2p.services.dht;
    for (let i = 0; i < 100 && dht.routingTable.size === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const cid = CID.parse(cidText);
    const providers = [];
    for await (const p of helia.libp2p.contentRouting.findProviders(cid, { signal })) {
      const id = p.id.toString();
      if (providers.includes(id)) continue;
      providers.push(id);
      for (const addr of p.multiaddrs) await helia.libp2p.peerStore.merge(p.id, { multiaddrs: [addr] }).catch(() => {});
      await helia.libp2p.dial(p.id, { signal: AbortSignal.timeout(3000) }).catch(() => {});
      if (providers.length >= 4) break;
    }
    result.providers = providers;
    result.connected = helia.libp2p.getPeers().map(String);
    if (providers.length === 0) throw new Error('no provider found on the DHT');
    const fs = unixfs(helia);
    const parts = [];
    for await (const chunk of fs.cat(cid, { signal })) parts.push(chunk);
    return Buffer.concat(parts);
  } finally {
    await helia.stop();
  }
}

// AbortSignal.timeout() does not hold the event loop open; this does, until exit.
const keepAlive = setInterval(() => {}, 1000);
const started = Date.now();
const extra = {};
try {
  const bytes = mode === 'bitswap' ? await viaBitswap() : mode === 'dht' ? await viaDht(extra) : await viaGateway();
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  console.log(JSON.stringify({ ok: true, bytes: bytes.length, sha256, ms: Date.now() - started, ...extra }));
  process.exit(0);
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: String(err?.stack || err), ms: Date.now() - started, ...extra }));
  process.exit(1);
}
