// Writes the seed corpora in fuzz/corpus/<target>/ from independent producers: SDP offers and
// ICE candidates from Chromium (playwright-core), UnixFS blocks and a CAR from the JS IPFS
// libraries (ipfs-unixfs-importer, @ipld/car, @ipld/dag-pb), CBOR from cborg, and RTP, RTCP,
// STUN, TURN and Bitswap messages built byte by byte from their RFCs and specs.
//
// Run from the repository root after `npm install` in tests/e2e:
//   ln -sfn ../tests/e2e/node_modules fuzz/node_modules && node fuzz/make-seeds.mjs
import { createHash, createHmac } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { chromium } from 'playwright-core';
import { CarWriter } from '@ipld/car';
import * as dagPb from '@ipld/dag-pb';
import { importer } from 'ipfs-unixfs-importer';
import { encode as cbor } from 'cborg';

const corpus = new URL('./corpus/', import.meta.url);
const seeds = {};
const add = (target, name, bytes) => {
  (seeds[target] ??= []).push([name, typeof bytes === 'string' ? Buffer.from(bytes) : Buffer.from(bytes)]);
};
const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const u16 = (v) => Buffer.from([(v >> 8) & 0xff, v & 0xff]);
const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32BE(v >>> 0); return b; };
const chunk = (b) => Buffer.concat([u16(b.length), b]);
const varint = (v) => { const out = []; v = BigInt(v); do { let b = Number(v & 0x7fn); v >>= 7n; if (v) b |= 0x80; out.push(b); } while (v); return Buffer.from(out); };

// ---------- SDP from Chromium ----------
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage();
const sdps = await page.evaluate(async () => {
  const gather = async (pc) => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 3000);
    });
    const sdp = pc.localDescription.sdp;
    pc.close();
    return sdp;
  };
  const whip = new RTCPeerConnection();
  whip.addTransceiver('video', { direction: 'sendonly', sendEncodings: [{ rid: 'q', scaleResolutionDownBy: 4 }, { rid: 'h', scaleResolutionDownBy: 2 }, { rid: 'f' }] });
  whip.addTransceiver('audio', { direction: 'sendonly' });
  const whep = new RTCPeerConnection();
  whep.addTransceiver('video', { direction: 'recvonly' });
  whep.addTransceiver('audio', { direction: 'recvonly' });
  const h264 = new RTCPeerConnection();
  const t = h264.addTransceiver('video', { direction: 'sendonly' });
  t.setCodecPreferences(RTCRtpSender.getCapabilities('video').codecs.filter((c) => /h264/i.test(c.mimeType)));
  h264.addTransceiver('audio', { direction: 'sendonly' });
  return { whip: await gather(whip), whep: await gather(whep), h264: await gather(h264) };
});
await browser.close();
for (const [k, v] of Object.entries(sdps)) add('sdp', `chromium-${k}.sdp`, v);
const cands = sdps.whip.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
add('sdp', 'trickle.sdpfrag', `a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n${cands.join('\r\n') || 'a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host'}\r\n`);

// ---------- RTP / codecs ----------
const VP8_KEY = hex('9d 01 2a'), VP8_KEYFRAME = hex('90 77 01 9d 01 2a 00 05 d0 02 00 07 08');
const VP8_INTER = hex('b1 0e 00 13 11 fc 00 18');
const SPS = hex('67 42 c0 1e d9 00 a0 2f f9 70 11 00 00 03 00 01 00 00 03 00 3c 0f 16 2e 48');
const SPS_HIGH = hex('67 64 00 28 ac d9 40 78 02 27 e5 c0 44 00 00 03 00 04 00 00 03 00 f0 3c 60 c6 58');
const PPS = hex('68 cb 83 cb 20'), IDR = hex('65 88 84 09 f2 62 80 00'), NON_IDR = hex('41 9a 21 6c 41 0f');
const stapA = (...nals) => Buffer.concat([Buffer.from([0x78]), ...nals.map(chunk)]);
const fuA = (nal, start, end) => Buffer.concat([Buffer.from([(nal[0] & 0xe0) | 28, (start ? 0x80 : 0) | (end ? 0x40 : 0) | (nal[0] & 0x1f)]), nal.subarray(1)]);
const rtp = ({ pt = 96, seq = 1, ts = 0, ssrc = 0x1234, marker = false, csrc = [], ext = null, pad = 0 }, payload) => {
  const b0 = 0x80 | (pad ? 0x20 : 0) | (ext ? 0x10 : 0) | csrc.length;
  const parts = [Buffer.from([b0, (marker ? 0x80 : 0) | pt]), u16(seq), u32(ts), u32(ssrc), ...csrc.map(u32)];
  if (ext) parts.push(u16(0xbede), u16(ext.length / 4), ext);
  parts.push(payload);
  if (pad) parts.push(Buffer.concat([Buffer.alloc(pad - 1), Buffer.from([pad])]));
  return Buffer.concat(parts);
};
const vp8Desc = hex('90 e0 92 34 56 40');
add('rtp', 'vp8-key', chunk(rtp({ marker: true }, Buffer.concat([hex('10'), VP8_KEYFRAME]))));
add('rtp', 'csrc-ext-pad', chunk(rtp({ seq: 65535, ts: 0xfffffff0, csrc: [1, 2], ext: hex('32 00 01 02 10 ff 00 00'), pad: 4 }, Buffer.concat([vp8Desc, VP8_INTER]))));
add('rtp', 'wrapping-run', Buffer.concat([65534, 65535, 0, 1, 3, 2].map((s, i) => chunk(rtp({ seq: s, ts: 3000 * i }, VP8_INTER)))));
add('rtp', 'opus', chunk(rtp({ pt: 111, seq: 7, ts: 960 }, hex('fc ff fe'))));

add('vp8', 'key-15bit-tl0', Buffer.concat([u16(0x1234), Buffer.from([0x56]), vp8Desc, VP8_KEYFRAME]));
add('vp8', 'inter-7bit', Buffer.concat([u16(5), Buffer.from([1]), hex('80 80 05'), VP8_INTER]));
add('vp8', 'minimal', Buffer.concat([u16(0), Buffer.from([0]), hex('10'), VP8_KEYFRAME]));
add('vp8', 'continuation', Buffer.concat([u16(0x7fff), Buffer.from([0xff]), hex('80 c0 ff ff 07'), hex('01 02 03')]));

add('h264', 'stap-sps-pps-idr', stapA(SPS, PPS, IDR));
add('h264', 'sps-high', SPS_HIGH);
add('h264', 'fu-a-idr-start', fuA(IDR, true, false));
add('h264', 'non-idr', NON_IDR);
add('h264', 'length-prefixed-frame', Buffer.concat([u32(SPS.length), SPS, u32(PPS.length), PPS, u32(IDR.length), IDR]));

for (const [name, toc] of [['silk-10ms', '00'], ['celt-20ms', 'fc'], ['hybrid-2frames', '69'], ['code3-cbr', '7b 03'], ['code3-vbr-pad', 'fb c4 05 01 02']]) add('opus', name, hex(toc + ' 11 22 33 44'));

const pkt = (flags, bytes) => Buffer.concat([Buffer.from([flags]), chunk(bytes)]);
{
  const frames = [];
  let seq = 100, aseq = 500;
  for (let f = 0; f < 3; f++) {
    const key = f === 0;
    const body = key ? Buffer.concat([VP8_KEYFRAME, Buffer.alloc(40, 7)]) : Buffer.concat([VP8_INTER, Buffer.alloc(20, 3)]);
    frames.push(pkt(66, rtp({ seq: seq++, ts: 3000 * f, marker: false }, Buffer.concat([hex('90 80 ' + (f + 1).toString(16).padStart(2, '0')), body.subarray(0, 30)]))));
    frames.push(pkt(0, rtp({ seq: seq++, ts: 3000 * f, marker: true }, Buffer.concat([hex('80 80 ' + (f + 1).toString(16).padStart(2, '0')), body.subarray(30)]))));
    frames.push(pkt(41, rtp({ pt: 111, seq: aseq++, ts: 960 * f, ssrc: 9 }, hex('fc ff fe 01'))));
  }
  add('recorder', 'vp8-opus', Buffer.concat([Buffer.from([0]), ...frames]));
  const h = [Buffer.from([1])];
  h.push(pkt(66, rtp({ seq: 1, ts: 0 }, stapA(SPS, PPS))));
  h.push(pkt(0, rtp({ seq: 2, ts: 0 }, fuA(IDR, true, false))));
  h.push(pkt(0, rtp({ seq: 3, ts: 0, marker: true }, fuA(IDR, false, true))));
  h.push(pkt(66, rtp({ seq: 4, ts: 3000, marker: true }, NON_IDR)));
  h.push(pkt(255, rtp({ seq: 5, ts: 6000, marker: true }, NON_IDR)));
  add('recorder', 'h264-stap-fua', Buffer.concat(h));
}

const rtcpHdr = (count, pt, body) => Buffer.concat([Buffer.from([0x80 | count, pt]), u16(body.length / 4), body]);
const sr = rtcpHdr(1, 200, Buffer.concat([u32(0x1234), u32(0xe0000000), u32(0), u32(90000), u32(10), u32(1000), u32(0x5678), u32(0x01000002), u32(70000), u32(3), u32(0), u32(0)]));
const sdesItem = Buffer.concat([hex('01 08'), Buffer.from('abcdefgh'), hex('00 00')]);
const sdes = rtcpHdr(1, 202, Buffer.concat([u32(0x1234), sdesItem]));
add('rtcp', 'sr-sdes', Buffer.concat([sr, sdes]));
add('rtcp', 'rr', rtcpHdr(1, 201, Buffer.concat([u32(1), u32(0x5678), u32(0x01000002), u32(70000), u32(3), u32(0), u32(0)])));
add('rtcp', 'pli', rtcpHdr(1, 206, Buffer.concat([u32(1), u32(0x5678)])));
add('rtcp', 'fir', rtcpHdr(4, 206, Buffer.concat([u32(1), u32(0), u32(0x5678), hex('07 00 00 00')])));
add('rtcp', 'nack', rtcpHdr(1, 205, Buffer.concat([u32(1), u32(0x5678), u16(100), u16(0x0005)])));
add('rtcp', 'twcc', rtcpHdr(15, 205, Buffer.concat([u32(1), u32(0x5678), u16(10), u16(3), hex('00 00 10 01'), hex('20 03'), hex('04 08 0c 00')])));
add('rtcp', 'remb-bye', Buffer.concat([rtcpHdr(15, 206, Buffer.concat([u32(1), u32(0), Buffer.from('REMB'), hex('01 0b d0 9c'), u32(0x5678)])), rtcpHdr(1, 203, u32(0x1234))]));

// ---------- STUN / TURN (RFC 8489, RFC 8656) ----------
const COOKIE = hex('2112a442');
const attr = (type, value) => Buffer.concat([u16(type), u16(value.length), value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
const xorAddr = (ip, port, tid) => {
  const p = u16(port ^ 0x2112);
  if (ip.includes(':')) {
    const raw = Buffer.from(ip.split(':').flatMap((g) => [parseInt(g || '0', 16) >> 8, parseInt(g || '0', 16) & 0xff]));
    const key = Buffer.concat([COOKIE, tid]);
    return Buffer.concat([hex('00 02'), p, Buffer.from(raw.map((b, i) => b ^ key[i]))]);
  }
  return Buffer.concat([hex('00 01'), p, Buffer.from(ip.split('.').map((b, i) => Number(b) ^ COOKIE[i]))]);
};
const stunMsg = (type, attrs, { integrity = null, fingerprint = false, tid = Buffer.from('fuzzseedtxid') } = {}) => {
  let body = Buffer.concat(attrs);
  const header = (len) => Buffer.concat([u16(type), u16(len), COOKIE, tid]);
  if (integrity) {
    const mac = createHmac('sha1', integrity).update(Buffer.concat([header(body.length + 24), body])).digest();
    body = Buffer.concat([body, attr(0x0008, mac)]);
  }
  if (fingerprint) {
    const crc = (crc32(Buffer.concat([header(body.length + 8), body])) ^ 0x5354554e) >>> 0;
    body = Buffer.concat([body, attr(0x8028, u32(crc))]);
  }
  return Buffer.concat([header(body.length), body]);
};
const tid = Buffer.from('fuzzseedtxid');
// REST credentials (coturn style): username "<expiry>:<user>", password base64(HMAC-SHA1(secret, username)).
const user = '4102444800:viewer';
const pass = createHmac('sha1', 'fuzz').update(user).digest('base64');
const realm = 'relaycast';
const longTermKey = createHash('md5').update(`${user}:${realm}:${pass}`).digest();
const allocUnauth = stunMsg(0x0003, [attr(0x0019, hex('11 00 00 00'))], { fingerprint: true });
const allocSigned = stunMsg(0x0003, [attr(0x0019, hex('11 00 00 00')), attr(0x0006, Buffer.from(user)), attr(0x0014, Buffer.from(realm)), attr(0x0015, Buffer.from('6e6f6e6365')), attr(0x000d, u32(600))], { integrity: longTermKey, fingerprint: true });
const perm4 = stunMsg(0x0008, [attr(0x0012, xorAddr('192.0.2.10', 5000, tid)), attr(0x0006, Buffer.from(user)), attr(0x0014, Buffer.from(realm)), attr(0x0015, Buffer.from('6e6f6e6365'))], { integrity: longTermKey });
const perm6 = stunMsg(0x0008, [attr(0x0012, xorAddr('2001:db8:0:0:0:0:0:5', 9, tid)), attr(0x0012, xorAddr('64:ff9b:0:0:0:0:a00:1', 9, tid))]);
const chanBind = stunMsg(0x0009, [attr(0x000c, hex('40 00 00 00')), attr(0x0012, xorAddr('127.0.0.1', 3478, tid))]);
const binding = stunMsg(0x0001, [attr(0x8022, Buffer.from('relaycast-fuzz'))], { fingerprint: true });
const bindingResp = stunMsg(0x0101, [attr(0x0020, xorAddr('203.0.113.7', 40000, tid)), attr(0x0001, hex('00 01 9c 40 cb 00 71 07'))]);
const errResp = stunMsg(0x0113, [attr(0x0009, Buffer.concat([hex('00 00 04 01'), Buffer.from('Unauthorized')])), attr(0x0014, Buffer.from(realm)), attr(0x0015, Buffer.from('abc')), attr(0x000a, hex('00 19 00 20'))]);
const refresh = stunMsg(0x0004, [attr(0x000d, u32(0))]);
const sendInd = stunMsg(0x0016, [attr(0x0012, xorAddr('192.0.2.10', 5000, tid)), attr(0x0013, Buffer.from('payload')), attr(0x001a, Buffer.alloc(0))]);
const chanData = Buffer.concat([hex('40 00'), u16(5), Buffer.from('hello')]);
for (const [name, m] of Object.entries({ allocUnauth, allocSigned, perm4, perm6, chanBind, binding, bindingResp, errResp, refresh, sendInd, chanData })) {
  add('stun', name, m);
  add('turn_guard', name, m);
}
add('turn_guard', 'chanData-odd', Buffer.concat([hex('40 01'), u16(3), Buffer.from('abc')]));
const padded = Buffer.concat([chanData, Buffer.alloc(3)]);
add('turn_framing', 'stun-then-chandata', Buffer.concat([u16(2048), Buffer.from([255]), allocUnauth, padded, Buffer.from([0]), binding]));
add('turn_framing', 'split-reads', Buffer.concat([u16(600), Buffer.from([2]), allocSigned.subarray(0, 3), Buffer.from([16]), allocSigned.subarray(3, 20), Buffer.from([255]), allocSigned.subarray(20)]));
add('turn_framing', 'oversize', Buffer.concat([u16(64), Buffer.from([200]), allocSigned]));

// ---------- IPFS: UnixFS, dag-pb, CAR ----------
const blocks = [];
const sink = { put: async (cid, bytes) => { blocks.push([cid, bytes]); return cid; }, get: async () => { throw new Error('unused'); } };
const content = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
const entries = [];
for await (const e of importer([{ path: 'site/index.html', content: Buffer.from('<h1>hello</h1>') }, { path: 'site/video.bin', content }], sink, { chunker: undefined, rawLeaves: false, maxChunkSize: 1024, cidVersion: 1, wrapWithDirectory: false })) entries.push(e);
const root = entries.find((e) => e.path === 'site').cid;
for (const [cid, bytes] of blocks) if (cid.code === dagPb.code) add('dagpb', `${cid.toString().slice(-12)}`, bytes);
{
  const { writer, out } = CarWriter.create([root]);
  const parts = [];
  const done = (async () => { for await (const p of out) parts.push(p); })();
  for (const [cid, bytes] of blocks) await writer.put({ cid, bytes });
  await writer.close();
  await done;
  const car = Buffer.concat(parts);
  add('car', 'unixfs-site.car', car);
  add('car', 'header-only.car', car.subarray(0, car.length - blocks.reduce((n, [c, b]) => n + b.length + c.bytes.length + varint(b.length + c.bytes.length).length, 0)));
}
for (const v of [0, 1, 127, 128, 300, 16384, 2 ** 32, 2n ** 63n, 2n ** 64n - 1n]) add('varint', `v${v}`, varint(v));
add('varint', 'overlong', hex('ff ff ff ff ff ff ff ff ff 02'));

// ---------- Bitswap (bitswap.proto) ----------
const pbKey = (f, w) => varint((f << 3) | w);
const pbBytes = (f, b) => Buffer.concat([pbKey(f, 2), varint(b.length), b]);
const pbUint = (f, v) => Buffer.concat([pbKey(f, 0), varint(v)]);
const rawCid = (bytes) => Buffer.concat([hex('01 55 12 20'), createHash('sha256').update(bytes).digest()]);
const cidV0 = Buffer.concat([hex('12 20'), createHash('sha256').update('v0').digest()]);
const entry = (cid, prio, cancel, wantType, dontHave) => pbBytes(1, Buffer.concat([pbBytes(1, cid), pbUint(2, prio), pbUint(3, cancel), pbUint(4, wantType), pbUint(5, dontHave)]));
const frameOf = (m) => Buffer.concat([varint(m.length), m]);
const wantlist = pbBytes(1, Buffer.concat([entry(rawCid(Buffer.from('a')), 10, 0, 0, 1), entry(root.bytes, 5, 0, 1, 1), entry(cidV0, 1, 1, 0, 0), pbUint(2, 1)]));
add('bitswap', 'wantlist', frameOf(wantlist));
add('bitswap', 'payload-presences', frameOf(Buffer.concat([pbBytes(3, Buffer.concat([pbBytes(1, hex('01 55 12 20')), pbBytes(2, Buffer.from('a'))])), pbBytes(4, Buffer.concat([pbBytes(1, root.bytes), pbUint(2, 1)])), pbUint(5, 42)])));
add('bitswap', 'v100-blocks-two-frames', Buffer.concat([frameOf(pbBytes(2, Buffer.from('block'))), frameOf(wantlist)]));

// ---------- gossip (JSON on gossipsub) and the relay protocol (CBOR) ----------
const peer = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';
const topicByte = (t) => Buffer.from([t]);
add('gossip', 'stream', Buffer.concat([topicByte(0), Buffer.from(JSON.stringify({ origin: peer, stream: 'room', codec: 'VP8', layers: ['q', 'h', 'f'], http_url: 'http://127.0.0.1:8080' }))]));
add('gossip', 'load', Buffer.concat([topicByte(1), Buffer.from(JSON.stringify({ http_url: 'http://[::1]:8080', region: 'eu', viewers: 3, egress_bps: 1e6, capacity: 500, relay_children: 1, max_relay_children: 4, streams: [{ stream: 'room', depth: 1, upstream: peer, viewers: 3, relay_children: 0, ingress_bps: 2e6 }] }))]));
add('gossip', 'segment', Buffer.concat([topicByte(2), Buffer.from(JSON.stringify({ stream: 'room', seq: 7, cid: root.toString(), init: root.toString(), codecs: 'vp8,opus', duration: 2.002 }))]));
add('gossip', 'unknown-topic', Buffer.concat([topicByte(3), Buffer.from('relaycast/other/1{}')]));
add('relay_protocol', 'request', cbor({ stream: 'room', offer_sdp: sdps.whep }));
add('relay_protocol', 'response-ok', cbor({ Ok: { answer_sdp: 'v=0\r\n', depth: 1 } }));
add('relay_protocol', 'response-notfound', cbor({ Err: 'NotFound' }));
add('relay_protocol', 'response-bad', cbor({ Err: { Bad: 'stream name' } }));

// ---------- the gateway ----------
const size = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
for (const [n, r] of [[100, 'bytes=0-9'], [100, 'bytes=-10'], [100, 'bytes=90-'], [0, 'bytes=0-'], [2 ** 40, 'bytes=1099511627775-18446744073709551615'], [100, 'bytes=0-1,5-9']]) add('gateway_range', r.replace(/[^0-9a-z-]/g, '_'), Buffer.concat([size(n), Buffer.from(r)]));
for (const [name, req] of Object.entries({
  'file-range': 'GET /ipfs/$D/video.mp4\nRange: bytes=262000-262299',
  'file-suffix': 'GET /ipfs/$F\nRange: bytes=-10',
  'car': 'GET /ipfs/$D?format=car',
  'car-accept-v2': 'GET /ipfs/$D\nAccept: application/vnd.ipld.car; version=2',
  'raw-head': 'HEAD /ipfs/$F\nAccept: application/vnd.ipld.raw',
  'raw-subpath': 'GET /ipfs/$D/video.mp4?format=raw',
  'etag': 'GET /ipfs/$D/empty.txt\nIf-None-Match: *',
  'dir-listing': 'GET /ipfs/$D/',
  'missing': 'GET /ipfs/$D/nope/../video.mp4',
  'bad-cid': 'GET /ipfs/bafy-not-a-cid/x',
})) add('gateway', name, req);

rmSync(corpus, { recursive: true, force: true });
for (const [target, files] of Object.entries(seeds)) {
  mkdirSync(new URL(`${target}/`, corpus), { recursive: true });
  for (const [name, bytes] of files) writeFileSync(new URL(`${target}/${name}`, corpus), bytes);
}
console.log(Object.entries(seeds).map(([t, f]) => `${t}: ${f.length}`).join('\n'));
