// A stand-in for the relaycast HTTP API, used to test the SDK and the pages without the Rust
// server. WHIP/WHEP offers are answered by RTCPeerConnections in a Chromium page (the "mock SFU"
// page), so the SDK negotiates real media; every request is recorded for assertions and
// failures can be scripted per endpoint.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './harness.mjs';

const STATIC = {
  '/sdk/relaycast.js': ['sdk/relaycast.js', 'text/javascript; charset=utf-8'],
  '/sdk/relaycast.d.ts': ['sdk/relaycast.d.ts', 'text/plain; charset=utf-8'],
  '/streamer.html': ['sdk/pages/streamer.html', 'text/html; charset=utf-8'],
  '/viewer.html': ['sdk/pages/viewer.html', 'text/html; charset=utf-8'],
  '/examples/watch.html': ['examples/watch.html', 'text/html; charset=utf-8'],
};
// The SDK's modules, /sdk/lib/NAME.js, as the node serves them.
for (const name of fs.readdirSync(path.join(REPO_ROOT, 'sdk/lib')).filter((n) => n.endsWith('.js'))) {
  STATIC[`/sdk/lib/${name}`] = [`sdk/lib/${name}`, 'text/javascript; charset=utf-8'];
}

// The mock SFU page: answers offers with its own fake camera (WHEP) or as a receiver (WHIP).
const SFU_PAGE = `<!doctype html><meta charset="utf-8"><title>mock sfu</title><script>
const pcs = new Map();
let media = null;
async function getMedia() {
  if (!media) media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 }, audio: true });
  return media;
}
function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((r) => { pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()); setTimeout(r, 2000); });
}
window.answerWhep = async (id, offer) => {
  const m = await getMedia();
  const pc = new RTCPeerConnection();
  pcs.set(id, pc);
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  for (const tr of pc.getTransceivers()) {
    const track = m.getTracks().find((t) => t.kind === tr.receiver.track.kind);
    if (track) { tr.direction = 'sendonly'; await tr.sender.replaceTrack(track); }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.answerWhip = async (id, offer) => {
  const pc = new RTCPeerConnection();
  pcs.set(id, pc);
  // This page does not receive simulcast: keep only the first layer of the offer.
  const single = offer.split('\\r\\n').filter((l) => !/^a=(simulcast|rid):/.test(l)).join('\\r\\n');
  await pc.setRemoteDescription({ type: 'offer', sdp: single });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
};
window.closePc = (id) => { pcs.get(id)?.close(); pcs.delete(id); };
window.pcState = (id) => pcs.get(id)?.connectionState ?? 'none';
</script>`;

export class MockServer {
  constructor() {
    this.requests = [];
    this.sessions = new Map();
    this.script = { whep: [], whip: [] };
    this.linkHeader = null;
    this.nextId = 1;
    this.sfuPage = null;
    this.server = http.createServer((req, res) => this._handle(req, res).catch((err) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(String(err?.stack || err));
    }));
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this.base;
  }

  /** Attach the Chromium page that answers offers. */
  async attachSfu(page) {
    await page.goto(`${this.base}/mock-sfu.html`);
    this.sfuPage = page;
  }

  /** Queue scripted failures for the next POSTs to an endpoint ('whep' or 'whip'). */
  fail(kind, ...responses) {
    this.script[kind].push(...responses);
  }

  reset() {
    this.requests = [];
    this.script = { whep: [], whip: [] };
    this.linkHeader = null;
  }

  /** Requests matching method and a path regex. */
  find(method, re) {
    return this.requests.filter((r) => r.method === method && re.test(r.path));
  }

  /** Push a server event to every SSE listener of a session. */
  event(id, obj) {
    const s = this.sessions.get(String(id));
    for (const res of s?.sse ?? []) res.write(`data: ${JSON.stringify(obj)}\n\n`);
  }

  /** Sessions of one kind, newest last. */
  list(kind) {
    return [...this.sessions.values()].filter((s) => s.kind === kind);
  }

  async close() {
    for (const s of this.sessions.values()) for (const res of s.sse) res.end();
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(resolve));
  }

  async _handle(req, res) {
    const url = new URL(req.url, this.base);
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    const rec = { method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body, at: Date.now() };
    if (!STATIC[url.pathname] && !['/mock-sfu.html', '/blank.html'].includes(url.pathname)) this.requests.push(rec);

    if (req.method === 'GET' && STATIC[url.pathname]) {
      const [file, type] = STATIC[url.pathname];
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(fs.readFileSync(path.join(REPO_ROOT, file)));
      return;
    }
    if (req.method === 'GET' && url.pathname === '/blank.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><meta charset="utf-8"><title>blank</title><body></body>');
      return;
    }
    if (req.method === 'GET' && url.pathname === '/mock-sfu.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(SFU_PAGE);
      return;
    }
    if (req.method === 'GET' && url.pathname === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (req.method === 'GET' && url.pathname === '/api/streams') {
      const names = new Set(this.list('whip').filter((s) => !s.deleted).map((s) => s.stream));
      const streams = [...names].map((name) => ({
        name, codec: 'VP8', live: true,
        viewers: this.list('whep').filter((s) => !s.deleted && s.stream === name).length,
        layers: [{ rid: '', bitrate: 500000, width: 640, height: 360, packets: 100 }],
        audio: { bitrate: 32000, packets: 50 },
      }));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ streams }));
      return;
    }

    let m = /^\/(whip|whep)\/([^/]+)$/.exec(url.pathname);
    if (m && req.method === 'POST') {
      const [, kind, stream] = m;
      const scripted = this.script[kind].shift();
      if (scripted) {
        const headers = { 'Content-Type': 'text/plain' };
        if (scripted.retryAfter != null) headers['Retry-After'] = String(scripted.retryAfter);
        res.writeHead(scripted.status, headers);
        res.end(scripted.body ?? `scripted ${scripted.status}`);
        return;
      }
      if (kind === 'whip' && req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, { 'Content-Type': 'text/plain' });
        res.end('bad token');
        return;
      }
      if (req.headers['content-type'] !== 'application/sdp') {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        res.end('content type must be application/sdp');
        return;
      }
      const id = String(this.nextId++);
      const answer = await this.sfuPage.evaluate(([fn, i, offer]) => window[fn](i, offer), [kind === 'whep' ? 'answerWhep' : 'answerWhip', id, body]);
      const location = `/${kind}/${stream}/${id}`;
      this.sessions.set(id, { id, kind, stream, location, offer: body, sse: new Set(), deleted: false, query: rec.query });
      const headers = { 'Content-Type': 'application/sdp', Location: location };
      if (this.linkHeader) headers.Link = this.linkHeader;
      res.writeHead(201, headers);
      res.end(answer);
      return;
    }

    m = /^\/(whip|whep)\/([^/]+)\/([^/]+)(\/layer|\/events)?$/.exec(url.pathname);
    if (m) {
      const [, kind, , id, sub] = m;
      const s = this.sessions.get(id);
      if (!s || s.deleted) {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('no such session');
        return;
      }
      if (sub === '/events' && req.method === 'GET') {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
        res.write(': hello\n\n');
        s.sse.add(res);
        req.on('close', () => s.sse.delete(res));
        if (kind === 'whep') res.write(`data: ${JSON.stringify({ type: 'layer', rid: 'h', target: 'h' })}\n\n`);
        res.write(`data: ${JSON.stringify({ type: 'viewers', count: this.list('whep').filter((x) => !x.deleted && x.stream === s.stream).length })}\n\n`);
        return;
      }
      if (sub === '/layer' && req.method === 'POST') {
        let pref = {};
        try { pref = JSON.parse(body || '{}'); } catch { res.writeHead(400); res.end('bad json'); return; }
        res.writeHead(204);
        res.end();
        const rid = pref.rid ?? (pref.maxHeight != null ? (pref.maxHeight >= 720 ? 'f' : pref.maxHeight >= 360 ? 'h' : 'q') : 'h');
        this.event(id, { type: 'layer', rid, target: rid });
        return;
      }
      if (!sub && req.method === 'PATCH') {
        res.writeHead(req.headers['content-type'] === 'application/trickle-ice-sdpfrag' ? 204 : 400);
        res.end();
        return;
      }
      if (!sub && req.method === 'DELETE') {
        s.deleted = true;
        for (const r of s.sse) r.end();
        await this.sfuPage.evaluate((i) => window.closePc(i), id).catch(() => {});
        res.writeHead(200);
        res.end();
        return;
      }
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  }
}
