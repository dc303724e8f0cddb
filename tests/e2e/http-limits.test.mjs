// HTTP limits against a stranger's tricks: thousands of connections that send half a header
// and go silent are closed by the header timeout while /healthz answers at once, with RSS and
// file descriptors bounded; connections over the per-address cap are refused, counted and
// logged once; idle keep-alive connections are closed; a 413 is delivered.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';

import { Harness, waitFor } from './harness.mjs';

const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const openFds = (pid) => fs.readdirSync(`/proc/${pid}/fd`).length;

/** Opens a TCP connection and resolves once connected; records when the server closes it. */
function connect(port, onClose) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => {
      sock.connectedAt = Date.now();
      resolve(sock);
    });
    sock.on('error', (e) => { if (!sock.connecting) return; reject(e); });
    sock.on('close', () => onClose(sock));
    sock.on('data', () => {});
  });
}

async function metric(server, pattern) {
  const text = await (await server.fetch('/metrics')).text();
  const m = pattern.exec(text);
  return m ? Number(m[1]) : NaN;
}

async function timedHealth(server) {
  const t0 = performance.now();
  const resp = await server.fetch('/healthz', { timeout: 5000 });
  const ms = performance.now() - t0;
  assert.equal(resp.status, 200);
  return ms;
}

test('3,000 half-header connections are closed by the header timeout while /healthz answers at once', { timeout: 120000 }, async () => {
  const h = new Harness('slow-loris');
  await h.run(async () => {
    const N = 3000;
    const HEADER_TIMEOUT = 10;
    const server = await h.startServer({
      args: ['--no-archive', '--no-turn', '--http-header-timeout', String(HEADER_TIMEOUT), '--http-max-connections-per-ip', String(N + 100)],
    });
    const pid = server.proc.pid;
    const port = Number(new URL(server.base).port);
    // Warm up: a few requests, so that the baseline includes the runtime's steady state.
    for (let i = 0; i < 20; i++) await timedHealth(server);
    const rss0 = rssKiB(pid);
    const fd0 = openFds(pid);

    const lifetimes = [];
    const onClose = (sock) => lifetimes.push(Date.now() - sock.connectedAt);
    const socks = [];
    const t0 = Date.now();
    try {
      for (let i = 0; i < N; i += 250) {
        const batch = await Promise.all(Array.from({ length: Math.min(250, N - i) }, () => connect(port, onClose)));
        for (const s of batch) {
          // Half a request header, then silence.
          s.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'x'.repeat(32)}`);
          socks.push(s);
        }
      }
      const openMs = Date.now() - t0;
      // (The baseline may include a keep-alive connection of the warm-up that closes meanwhile.)
      await waitFor(() => openFds(pid) >= fd0 + N - lifetimes.length - 5, { timeout: 10000, what: 'the node to hold the connections' });
      const peakFds = openFds(pid);
      const health = [];
      for (let i = 0; i < 5; i++) health.push(await timedHealth(server));
      const rssPeak = rssKiB(pid);
      h.note(`open: ${socks.length} in ${openMs} ms, closed early: ${lifetimes.length}, node fds ${fd0} -> ${peakFds}, rss ${rss0} -> ${rssPeak} KiB, /healthz ms: ${health.map((x) => x.toFixed(1)).join(' ')}`);
      assert.ok(Math.max(...health) < 1000, `/healthz answered within 1 s while ${N} connections hang (${health})`);

      await waitFor(() => lifetimes.length === N, { timeout: 40000, interval: 500, what: `all ${N} connections closed by the server` });
      const longest = Math.max(...lifetimes) / 1000;
      const shortest = Math.min(...lifetimes) / 1000;
      const rssAfter = rssKiB(pid);
      const fdAfter = await waitFor(() => { const n = openFds(pid); return n <= fd0 + 5 ? n : 0; }, { timeout: 10000, what: 'descriptors back to the baseline' });
      const timeouts = await metric(server, /^relaycast_http_connections_closed_total\{reason="header_timeout"\} (\d+)$/m);
      console.log(`slow-loris: ${N} half-header connections (opened in ${openMs} ms) closed after ${shortest.toFixed(1)}-${longest.toFixed(1)} s (header timeout ${HEADER_TIMEOUT} s); /healthz max ${Math.max(...health).toFixed(1)} ms meanwhile; node RSS ${rss0} -> ${rssPeak} -> ${rssAfter} KiB; fds ${fd0} -> ${peakFds} -> ${fdAfter}; header_timeout closes counted: ${timeouts}`);
      assert.ok(shortest >= HEADER_TIMEOUT - 1, `no connection closed before the header timeout (${shortest} s)`);
      assert.ok(longest <= HEADER_TIMEOUT + 5, `every connection closed within the header timeout plus 5 s (${longest} s)`);
      assert.ok(timeouts >= N, `header timeouts counted in /metrics (${timeouts})`);
      assert.ok(rssPeak - rss0 < 96 * 1024, `RSS grew by less than 96 MiB (32 KiB a connection) for ${N} connections (${rssPeak - rss0} KiB)`);
    } finally {
      for (const s of socks) s.destroy();
    }
  });
});

test('connections over the per-address cap are refused, counted and logged once; idle ones close; 413 arrives', { timeout: 60000 }, async () => {
  const h = new Harness('http-caps');
  await h.run(async () => {
    const CAP = 50;
    const server = await h.startServer({ args: ['--no-archive', '--no-turn', '--http-max-connections-per-ip', String(CAP), '--http-idle-timeout', '2'] });
    const port = Number(new URL(server.base).port);
    const closed = new Set();
    const socks = [];
    try {
      for (let i = 0; i < CAP + 30; i++) socks.push(await connect(port, (s) => closed.add(s)));
      // The node closes the 30 over the cap at once; the first 50 stay open (they are within
      // the header timeout).
      await waitFor(() => closed.size >= 30, { timeout: 5000, what: '30 refused connections closed' });
      // The harness's own keep-alive connection (from its health check) may hold one slot.
      const open = socks.filter((s) => !closed.has(s)).length;
      assert.ok(open === CAP || open === CAP - 1, `the node holds the cap's worth of connections (${open})`);
      assert.equal(socks.slice(0, CAP - 1).filter((s) => closed.has(s)).length, 0, 'connections within the cap stay open');
      // A further connection from the same address is closed at once, even with a request.
      const extra = await connect(port, (x) => closed.add(x));
      extra.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      let answered = false;
      extra.on('data', () => { answered = true; });
      await waitFor(() => closed.has(extra), { timeout: 5000, what: 'the extra connection closed' });
      extra.destroy();
      assert.equal(answered, false, 'a connection over the cap gets no answer');
    } finally {
      for (const s of socks) s.destroy();
    }
    await waitFor(async () => (await server.fetch('/healthz')).status === 200, { timeout: 5000, what: '/healthz once the connections are gone' });
    const refused = await metric(server, /^relaycast_http_connections_refused_total\{reason="per_address"\} (\d+)$/m);
    assert.ok(refused >= 31, `refusals counted (${refused})`);
    const lines = server.stderr.tail(400).split('\n').filter((l) => l.includes('refused an HTTP connection'));
    h.note(`refusal log lines: ${lines.length}\n${lines.join('\n')}`);
    assert.equal(lines.length, 1, 'a burst of refusals writes one log line');

    // An idle keep-alive connection is closed after --http-idle-timeout.
    const idle = await connect(port, () => {});
    const t0 = Date.now();
    const gone = new Promise((resolve) => idle.on('close', () => resolve(Date.now() - t0)));
    idle.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const idleMs = await Promise.race([gone, new Promise((resolve) => setTimeout(() => resolve(-1), 8000))]);
    idle.destroy();
    assert.ok(idleMs >= 1500 && idleMs < 5000, `idle keep-alive connection closed after about 2 s (${idleMs} ms)`);

    // A body over the limit gets its 413, every time.
    const huge = Buffer.alloc(1 << 20, 0x61);
    const statuses = [];
    for (let i = 0; i < 20; i++) {
      try {
        const resp = await server.fetch('/whep/big', { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: huge });
        statuses.push(resp.status);
        await resp.text();
      } catch (err) {
        statuses.push(`error ${err.cause?.code || err.message}`);
      }
    }
    assert.deepEqual(statuses, Array(20).fill(413), `20 oversized POSTs each answered 413 (${statuses})`);
  });
});
