// HTTPS in the node: Chromium on a non-local host name publishes from the streamer page over
// HTTPS (--tls-cert/--tls-key) and is told in words that it needs HTTPS over plain HTTP; a
// replaced certificate is served without a restart; HTTP/2 is negotiated by ALPN; and
// X-Forwarded-* is believed only from a --trusted-proxy.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';

import { Harness, runCommand, waitFor } from './harness.mjs';

const HOST = 'event.test';
const BROWSER_ARGS = [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`, '--ignore-certificate-errors'];

/** A self-signed ECDSA certificate for event.test (and 127.0.0.1) made by openssl. */
async function makeCert(dir, name, org) {
  const cert = path.join(dir, `${name}-cert.pem`);
  const key = path.join(dir, `${name}-key.pem`);
  const r = await runCommand('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${HOST}/O=${org}`,
    '-addext', `subjectAltName=DNS:${HOST},IP:127.0.0.1`,
  ]);
  assert.equal(r.code, 0, `openssl failed: ${r.stderr}`);
  return { cert, key };
}

/** Replaces a file the way certbot's renewals do: a new file renamed over the path. */
function replaceFile(from, to) {
  const tmp = `${to}.new`;
  fs.copyFileSync(from, tmp);
  fs.renameSync(tmp, to);
}

/** TLS handshake to the node: the served certificate and the ALPN protocol chosen. */
function handshake(port, ca) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: HOST, ca, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const cert = sock.getPeerCertificate();
      const out = { serial: cert.serialNumber, subject: cert.subject, alpn: sock.alpnProtocol, authorized: sock.authorized };
      sock.end();
      resolve(out);
    });
    sock.setTimeout(5000, () => { sock.destroy(); reject(new Error('TLS handshake timed out')); });
    sock.on('error', reject);
  });
}

/** One HTTP/2 GET over TLS, verified against `ca`. */
function h2Get(port, ca, p) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: HOST });
    client.on('error', reject);
    const req = client.request({ ':path': p });
    let status = 0;
    let body = '';
    req.setTimeout(5000, () => { req.close(); client.close(); reject(new Error('HTTP/2 request timed out')); });
    req.on('response', (h) => { status = h[':status']; });
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', () => { client.close(); resolve({ status, body }); });
    req.on('error', reject);
    req.end();
  });
}

/** Opens an HTTP/2 GET and resolves with its status once the response headers arrive. */
function h2Open(port, ca, p) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: HOST });
    client.on('error', reject);
    const req = client.request({ ':path': p });
    req.setTimeout(5000, () => { req.close(); client.close(); reject(new Error('HTTP/2 request timed out')); });
    req.on('response', (h) => { req.setTimeout(0); resolve({ status: h[':status'], close: () => { req.close(); client.close(); } }); });
    req.on('error', reject);
    req.end();
  });
}

test('Chromium publishes over HTTPS on a host name; plain HTTP explains; certificates reload; HTTP/2', { timeout: 180000 }, async () => {
  const h = new Harness('https');
  await h.run(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-tls-'));
    h.onFailure('cert dir', async () => fs.readdirSync(dir).join(' '));
    try {
      const first = await makeCert(dir, 'first', 'First');
      const second = await makeCert(dir, 'second', 'Second');
      const live = { cert: path.join(dir, 'fullchain.pem'), key: path.join(dir, 'privkey.pem') };
      replaceFile(first.cert, live.cert);
      replaceFile(first.key, live.key);
      const ca1 = fs.readFileSync(first.cert);
      const ca2 = fs.readFileSync(second.cert);

      // The plain-HTTP node first (kept running beside the HTTPS one).
      const plain = await h.startServer({ args: ['--no-archive', '--no-turn'] });
      const server = await h.startServer({ args: ['--no-archive', '--no-turn', '--tls-cert', live.cert, '--tls-key', live.key, '--http-max-event-streams-per-ip', '3'] });
      assert.match(server.base, /^https:\/\/127\.0\.0\.1:\d+$/, 'the banner names an https URL');
      assert.match(server.stdout.tail(40), /streamer: https:\/\//, 'the printed streamer URL is https');
      const port = Number(new URL(server.base).port);

      // HTTP/2 by ALPN, and a real HTTP/2 request verified against the certificate.
      const hs1 = await handshake(port, ca1);
      h.note(`first handshake: ${JSON.stringify(hs1)}`);
      assert.equal(hs1.alpn, 'h2');
      assert.equal(hs1.authorized, true);
      const health = await h2Get(port, ca1, '/healthz');
      assert.equal(health.status, 200);

      // Chromium, on a non-local name, over HTTPS: the page may use the camera; press Start.
      const browser = await h.browser('https-streamer', { args: BROWSER_ARGS });
      const page = await browser.page();
      await page.goto(`https://${HOST}:${port}/streamer.html?stream=tls-room#token=${server.token}`);
      assert.equal(await page.evaluate(() => window.isSecureContext), true);
      assert.equal(await page.locator('#help[data-shown]').count(), 0, 'no HTTPS warning over HTTPS');
      await page.click('#start');
      const info = await waitFor(async () => {
        const resp = await h2Get(port, ca1, '/api/streams');
        const s = JSON.parse(resp.body).streams.find((x) => x.name === 'tls-room');
        return s?.live && s.layers.some((l) => l.packets > 0) ? s : null;
      }, { timeout: 30000, what: 'tls-room live with video in /api/streams' });
      h.note(`stream: ${JSON.stringify(info)}`);
      await waitFor(async () => /^Live/.test(await page.textContent('#status')), { timeout: 15000, what: 'streamer page says Live' });

      // Session event streams are capped per address: the page holds one, two more fit, the
      // fourth is refused with 429 and counted.
      const location = new URL(await page.evaluate(() => window.relaycastSession.location));
      assert.equal(location.protocol, 'https:');
      const streams = [];
      try {
        for (let i = 0; i < 2; i++) streams.push(await h2Open(port, ca1, `${location.pathname}/events`));
        assert.deepEqual(streams.map((x) => x.status), [200, 200]);
        const over = await h2Open(port, ca1, `${location.pathname}/events`);
        over.close();
        assert.equal(over.status, 429, 'a fourth event stream from one address is refused');
      } finally {
        for (const x of streams) x.close();
      }
      const metrics = (await h2Get(port, ca1, '/metrics')).body;
      assert.match(metrics, /^relaycast_http_requests_refused_total\{kind="event_stream"\} 1$/m);
      // Closed streams give their slots back.
      await waitFor(async () => {
        const again = await h2Open(port, ca1, `${location.pathname}/events`);
        again.close();
        return again.status === 200;
      }, { timeout: 5000, what: 'an event stream slot freed' });

      // The same page over plain HTTP on that name says, in words, that it needs HTTPS.
      const plainPort = Number(new URL(plain.base).port);
      const page2 = await browser.context.newPage();
      await page2.goto(`http://${HOST}:${plainPort}/streamer.html?stream=plain-room`);
      assert.equal(await page2.evaluate(() => window.isSecureContext), false);
      await page2.waitForSelector('#help[data-problem="https"]', { timeout: 10000 });
      const help = await page2.textContent('#help');
      h.note(`plain-HTTP help: ${help}`);
      assert.match(help, /camera and microphone need HTTPS/);
      assert.match(help, /--tls-cert/);
      assert.match(help, /Caddy/);
      await page2.click('#start');
      assert.match(await page2.textContent('#status'), /needs HTTPS/);
      assert.equal(await plain.streamInfo('plain-room'), undefined, 'nothing was published over plain HTTP');

      // Replace the certificate on disk: the next handshakes get the new one, no restart.
      replaceFile(second.cert, live.cert);
      replaceFile(second.key, live.key);
      const hs2 = await waitFor(async () => {
        const hs = await handshake(port, ca2);
        return hs.serial !== hs1.serial ? hs : null;
      }, { timeout: 15000, interval: 500, what: 'the replaced certificate to be served' });
      h.note(`second handshake: ${JSON.stringify(hs2)}`);
      assert.equal(hs2.subject.O, 'Second');
      assert.equal(hs2.authorized, true);
      assert.equal(hs2.alpn, 'h2');
      assert.equal(server.exit, null, 'the node did not restart');
      // The publisher is still live through the swap.
      const still = JSON.parse((await h2Get(port, ca2, '/api/streams')).body).streams.find((x) => x.name === 'tls-room');
      assert.equal(still?.live, true);

      // A broken new pair (key of another certificate) keeps the current one.
      replaceFile(first.key, live.key);
      const logged = await waitFor(async () => /still serving the previous one/.test(server.stderr.tail(200)), { timeout: 15000, interval: 500, what: 'a log line about the unusable pair' });
      assert.ok(logged);
      assert.equal((await handshake(port, ca2)).serial, hs2.serial);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

test('X-Forwarded-* is believed only from a trusted proxy', { timeout: 60000 }, async () => {
  const h = new Harness('trusted-proxy');
  await h.run(async () => {
    const forwarded = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'live.example.org', 'X-Forwarded-For': '198.51.100.7' };
    const untrusted = await h.startServer({ args: ['--no-archive', '--no-turn', '--trusted-proxy', '10.0.0.0/8'] });
    const a = await (await untrusted.fetch('/api/placement/room', { headers: forwarded })).json();
    h.note(`untrusted: ${JSON.stringify(a)}`);
    assert.equal(a.http_url, untrusted.base, 'headers from a peer outside --trusted-proxy are ignored');
    assert.equal(a.whep_url, `${untrusted.base}/whep/room`);

    const trusted = await h.startServer({ args: ['--no-archive', '--no-turn', '--trusted-proxy', '10.0.0.0/8', '--trusted-proxy', '127.0.0.1'] });
    const b = await (await trusted.fetch('/api/placement/room', { headers: forwarded })).json();
    h.note(`trusted: ${JSON.stringify(b)}`);
    assert.equal(b.http_url, 'https://live.example.org');
    assert.equal(b.whep_url, 'https://live.example.org/whep/room');
    // Without the headers the node is named as the client reached it.
    const c = await (await trusted.fetch('/api/placement/room')).json();
    assert.equal(c.http_url, trusted.base);
  });
});
