// The SDK's WHIP/WHEP helpers (sdk/lib/signaling.js) in plain Node against loopback HTTP servers:
// redirects with ?token=, Location resolution, Link ICE servers, errors with Retry-After.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  buildSdpFragment, parseIceServersFromLink, parseRetryAfter, postOffer, withToken,
} from '../../sdk/lib/signaling.js';

/** An HTTP server on 127.0.0.1 answering with `handler`; resolves with its base URL and the requests it saw. */
async function serve(handler) {
  const seen = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { base, seen, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }) };
}

test('postOffer follows a 307 to another node; the session URL is resolved against the node that answered', async () => {
  const TOKEN = 'aaa.bbb.ccc';
  const b = await serve((req, res) => {
    res.writeHead(201, {
      'Content-Type': 'application/sdp',
      Location: '/whep/room/k123',
      Link: '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="u"; credential="p", <https://x>; rel="next"',
    });
    res.end('v=0\r\nanswer\r\n');
  });
  const a = await serve((req, res) => {
    res.writeHead(307, { Location: `${b.base}/whep/room?token=${TOKEN}` });
    res.end('node full\n');
  });
  try {
    const r = await postOffer(`${a.base}/whep/room`, 'v=0\r\noffer\r\n', { headers: { Authorization: `Bearer ${TOKEN}` } });
    assert.equal(r.answer, 'v=0\r\nanswer\r\n');
    assert.equal(r.location, `${b.base}/whep/room/k123`, 'the session lives on the node the redirect led to');
    assert.deepEqual(r.iceServers, [{ urls: 'turn:127.0.0.1:3478?transport=udp', username: 'u', credential: 'p' }]);
    assert.equal(b.seen.length, 1);
    assert.equal(b.seen[0].method, 'POST', '307 keeps the method');
    assert.equal(b.seen[0].body, 'v=0\r\noffer\r\n', '307 keeps the body');
    assert.equal(new URL(b.seen[0].url, b.base).searchParams.get('token'), TOKEN, 'the token travels in the query');
  } finally {
    await a.close();
    await b.close();
  }
});

test('postOffer errors carry the status, the body and Retry-After; a dead server is status 0', async () => {
  const s = await serve((req, res) => {
    res.writeHead(503, { 'Retry-After': '2' });
    res.end('overloaded\n');
  });
  await assert.rejects(postOffer(`${s.base}/whip/x`, 'v=0\r\n'), (err) => {
    assert.equal(err.name, 'RelaycastError');
    assert.equal(err.status, 503);
    assert.equal(err.retryAfter, 2000);
    assert.match(err.body, /overloaded/);
    return true;
  });
  const dead = s.base;
  await s.close();
  await assert.rejects(postOffer(`${dead}/whip/x`, 'v=0\r\n'), (err) => err.status === 0);
});

test('Link, Retry-After, tokens and trickle fragments', () => {
  assert.deepEqual(parseIceServersFromLink(['<stun:a.example>; rel="ice-server"', '<turns:b.example:5349>; rel=ice-server; username=x; credential="a\\"b"']), [
    { urls: 'stun:a.example' },
    { urls: 'turns:b.example:5349', username: 'x', credential: 'a"b' },
  ]);
  assert.deepEqual(parseIceServersFromLink('<http://a.example>; rel="ice-server"'), [], 'only STUN/TURN URLs');
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter('Thu, 01 Jan 1970 00:00:10 GMT', 4000), 6000);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(withToken('http://n.example/replay/a/vod.m3u8', 'x.y'), 'http://n.example/replay/a/vod.m3u8?token=x.y');
  assert.equal(withToken('http://n.example/a', null), 'http://n.example/a');
  const local = 'v=0\r\na=ice-ufrag:uf\r\na=ice-pwd:pw\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n';
  const frag = buildSdpFragment(local, [{ candidate: 'candidate:1 1 udp 1 10.0.0.1 5000 typ host', sdpMid: '0' }], true);
  assert.equal(frag, 'a=ice-ufrag:uf\r\na=ice-pwd:pw\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n');
});
