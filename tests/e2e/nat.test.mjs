// End-to-end: a relay at home behind a NAT. Three network namespaces: "internet" (the origin
// node, and Chromium publishing to it and watching), "router" (forwarding, iptables MASQUERADE
// out of its WAN side, later Debian's miniupnpd as UPnP-IGD on its LAN side) and "home" (the
// relay node, default route via the router). The relay is never told its public address: it
// learns the router's WAN address by STUN against the origin's TURN port, and with miniupnpd
// running it maps its own ports there, so a viewer in "internet" watches the stream through the
// relay; a graceful stop removes the mappings; with miniupnpd answering NAT-PMP only, the relay
// maps its ports that way. Only 10.x addresses chosen here are used.
//
// Needs root (ip netns, iptables) and miniupnpd-iptables; scripts/test.sh installs them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, viewerStats } from './harness.mjs';
import { chromiumIn, inNs, spawnIn, startRelaycastIn } from './netns.mjs';

const TOKEN = 'e2e-nat-token';
const STREAM = 'home';
const MINIUPNPD = '/usr/sbin/miniupnpd';

const id = process.pid % 10000;
const net = 10 + (process.pid % 200);
const NS = { inet: `rcnI${id}`, router: `rcnR${id}`, home: `rcnH${id}` };
/** WAN link: the internet side and the router's public face. */
const INET_IP = `10.231.${net}.1`;
const WAN_IP = `10.231.${net}.2`;
/** LAN link: the router's home side and the relay. */
const LAN_GW = `10.232.${net}.1`;
const HOME_IP = `10.232.${net}.2`;

const run = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15000 }).toString();

/** The three namespaces, two veth links, forwarding and MASQUERADE on the router. */
function buildNetwork() {
  for (const ns of Object.values(NS)) {
    try { run('ip', ['netns', 'del', ns]); } catch { /* not left over */ }
    run('ip', ['netns', 'add', ns]);
    inNs(ns, 'ip', 'link', 'set', 'lo', 'up');
  }
  run('ip', ['link', 'add', `rcnw${id}`, 'netns', NS.router, 'type', 'veth', 'peer', 'name', `rcni${id}`, 'netns', NS.inet]);
  run('ip', ['link', 'add', `rcnl${id}`, 'netns', NS.router, 'type', 'veth', 'peer', 'name', `rcnh${id}`, 'netns', NS.home]);
  inNs(NS.router, 'ip', 'link', 'set', `rcnw${id}`, 'name', 'wan');
  inNs(NS.router, 'ip', 'link', 'set', `rcnl${id}`, 'name', 'lan');
  inNs(NS.inet, 'ip', 'link', 'set', `rcni${id}`, 'name', 'eth0');
  inNs(NS.home, 'ip', 'link', 'set', `rcnh${id}`, 'name', 'eth0');
  inNs(NS.inet, 'ip', 'addr', 'add', `${INET_IP}/24`, 'dev', 'eth0');
  inNs(NS.router, 'ip', 'addr', 'add', `${WAN_IP}/24`, 'dev', 'wan');
  inNs(NS.router, 'ip', 'addr', 'add', `${LAN_GW}/24`, 'dev', 'lan');
  inNs(NS.home, 'ip', 'addr', 'add', `${HOME_IP}/24`, 'dev', 'eth0');
  for (const [ns, dev] of [[NS.inet, 'eth0'], [NS.router, 'wan'], [NS.router, 'lan'], [NS.home, 'eth0']]) inNs(ns, 'ip', 'link', 'set', dev, 'up');
  // "internet" has no route to the home network: it reaches the relay only through the router.
  inNs(NS.home, 'ip', 'route', 'add', 'default', 'via', LAN_GW);
  inNs(NS.router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  // miniupnpd-iptables drives the legacy iptables interface (libiptc): the router's rules and
  // miniupnpd's chains live there (Debian's /etc/miniupnpd/iptables_init.sh makes the same chains).
  const ipt = (...a) => inNs(NS.router, 'iptables-legacy', '-w', ...a);
  ipt('-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan', '-j', 'MASQUERADE');
  ipt('-t', 'nat', '-N', 'MINIUPNPD');
  ipt('-t', 'nat', '-I', 'PREROUTING', '-i', 'wan', '-j', 'MINIUPNPD');
  ipt('-t', 'nat', '-N', 'MINIUPNPD-POSTROUTING');
  ipt('-t', 'nat', '-I', 'POSTROUTING', '-o', 'wan', '-j', 'MINIUPNPD-POSTROUTING');
  ipt('-t', 'mangle', '-N', 'MINIUPNPD');
  ipt('-t', 'mangle', '-I', 'PREROUTING', '-i', 'wan', '-j', 'MINIUPNPD');
  ipt('-t', 'filter', '-N', 'MINIUPNPD');
  ipt('-t', 'filter', '-I', 'FORWARD', '-i', 'wan', '!', '-o', 'wan', '-j', 'MINIUPNPD');
  // A home router: what comes from the internet is forwarded only when it answers a connection
  // from home or a UPnP mapping lets it in.
  ipt('-t', 'filter', '-A', 'FORWARD', '-i', 'wan', '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT');
  ipt('-t', 'filter', '-A', 'FORWARD', '-i', 'wan', '-j', 'DROP');
}

function removeNetwork() {
  for (const ns of Object.values(NS)) {
    try { run('ip', ['netns', 'del', ns]); } catch { /* gone */ }
  }
}

/** Starts relaycast in `ns` on `ip`. */
const startNode = (ns, ip, args) => startRelaycastIn(ns, ip, { token: TOKEN, args });

/** Chromium inside `ns`. */
const browserIn = chromiumIn;

/** miniupnpd's port forwards in the router (its MINIUPNPD nat chain). */
const forwards = () => inNs(NS.router, 'iptables-legacy', '-w', '-t', 'nat', '-S', 'MINIUPNPD').split('\n').filter((l) => l.startsWith('-A'));

/** Debian's miniupnpd in the router namespace, as UPnP-IGD (`upnp`) or NAT-PMP only, in the foreground. */
async function startMiniupnpd({ upnp, stunPort }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relaycast-e2e-miniupnpd-'));
  const conf = path.join(dir, 'miniupnpd.conf');
  fs.writeFileSync(conf, [
    'ext_ifname=wan',
    'listening_ip=lan',
    'http_port=0',
    `enable_upnp=${upnp ? 'yes' : 'no'}`,
    `enable_natpmp=${upnp ? 'no' : 'yes'}`,
    'secure_mode=yes',
    'system_uptime=yes',
    'ext_perform_stun=yes',
    `ext_stun_host=${INET_IP}`,
    `ext_stun_port=${stunPort}`,
    `lease_file=${path.join(dir, 'leases')}`,
    'uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b',
    `allow 1024-65535 ${HOME_IP.replace(/\.\d+$/, '.0')}/24 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n'));
  const upnpd = spawnIn(NS.router, MINIUPNPD, ['-d', '-f', conf, '-P', path.join(dir, 'miniupnpd.pid')]);
  upnpd.name = upnp ? 'miniupnpd (UPnP-IGD)' : 'miniupnpd (NAT-PMP)';
  upnpd.stop = ((stop) => async () => { await stop(); fs.rmSync(dir, { recursive: true, force: true }); })(upnpd.stop);
  await waitFor(() => {
    if (upnpd.exited) throw new Error(`miniupnpd exited:\n${upnpd.log}`);
    return (upnp ? /HTTP listening on port/ : /Listening for NAT-PMP/).test(upnpd.log);
  }, { timeout: 15000, what: 'miniupnpd to listen' });
  assert.doesNotMatch(upnpd.log, /Port forwarding is now disabled|port forwarding is impossible/i, upnpd.log);
  return upnpd;
}

test('a relay behind a home NAT learns its public address by STUN, maps its ports with UPnP and serves a viewer on the internet', { timeout: 120000 }, async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for ip netns and iptables');
  assert.ok(fs.existsSync(MINIUPNPD), `${MINIUPNPD} missing: install Debian's miniupnpd-iptables`);
  const procs = [];
  let browser;
  const dump = () => procs.map((p) => `--- ${p.name} ---\n${p.log.slice(-6000)}`).join('\n');
  try {
    buildNetwork();
    const origin = await startNode(NS.inet, INET_IP, ['--upnp', 'off', '--p2p', `/ip4/${INET_IP}/tcp/0`]);
    origin.name = 'origin';
    procs.push(origin);
    const turn = /^ {2}turn: (\S+)/m.exec(origin.log)?.[1];
    assert.ok(turn, `origin prints its TURN address:\n${origin.log}`);
    const stun = `stun:${INET_IP}:${turn.split(':').pop()}`;
    assert.ok(origin.p2p.length > 0, 'origin prints its p2p address');

    // 1. Neither UPnP nor STUN: the relay says it serves through TURN only.
    const blind = await startNode(NS.home, HOME_IP, ['--upnp', 'off']);
    blind.name = 'relay without STUN or UPnP';
    procs.push(blind);
    const blindInfo = blind.api('/api/node');
    assert.equal(blindInfo.public_addr, null);
    assert.equal(blindInfo.nat.turn_only, true, JSON.stringify(blindInfo.nat));
    assert.match(blind.log, /through TURN only/);
    await blind.stop();

    // 2. STUN alone behind the MASQUERADE: the public address is the router's WAN address.
    const stunOnly = await startNode(NS.home, HOME_IP, ['--upnp', 'off', '--stun', stun]);
    stunOnly.name = 'relay with STUN';
    procs.push(stunOnly);
    const stunInfo = stunOnly.api('/api/node');
    assert.equal(stunInfo.public_addr, WAN_IP, JSON.stringify(stunInfo.nat));
    assert.equal(stunInfo.nat.source, 'stun');
    assert.equal(stunInfo.nat.behind_nat, true);
    assert.equal(stunInfo.nat.stun.mapped.split(':')[0], WAN_IP);
    assert.match(stunOnly.log, /public address learned from STUN/);
    assert.match(stunOnly.log, new RegExp(`^ {2}public: ${WAN_IP.replaceAll('.', '\\.')} \\(stun\\)`, 'm'));
    await stunOnly.stop();

    // 3. miniupnpd on the router as UPnP-IGD. Its WAN address is private (10.x), so it learns the
    // public one by STUN against the origin too, as a router behind another NAT does.
    const stunPort = turn.split(':').pop();
    let upnpd = await startMiniupnpd({ upnp: true, stunPort });
    procs.push(upnpd);

    const relay = await startNode(NS.home, HOME_IP, ['--stun', stun, '--bootstrap', origin.p2p[0]]);
    relay.name = 'relay with STUN and UPnP';
    procs.push(relay);
    const info = relay.api('/api/node');
    t.diagnostic(`relay nat: ${JSON.stringify(info.nat)}`);
    assert.equal(info.public_addr, WAN_IP);
    assert.equal(info.nat.source, 'stun');
    assert.equal(info.nat.upnp.external_ip, WAN_IP);
    assert.ok(info.nat.upnp.gateway?.startsWith(`${LAN_GW}:`), `gateway ${info.nat.upnp.gateway}`);
    const mapped = info.nat.upnp.mappings.map((m) => `${m.what}/${m.protocol}/${m.port}`);
    for (const what of ['media/udp', 'http/tcp', 'p2p/tcp', 'turn/udp']) {
      assert.ok(mapped.some((m) => m.startsWith(what)), `${what} mapped: ${mapped}`);
    }
    assert.ok(mapped.includes(`http/tcp/${relay.port}`), `HTTP port ${relay.port} mapped: ${mapped}`);
    // The router forwards them: one DNAT rule per mapping, each to the relay.
    const rules = forwards();
    const rulePorts = rules.map((r) => `${/-p (\w+)/.exec(r)?.[1]}/${/--dport (\d+)/.exec(r)?.[1]}`).sort();
    assert.deepEqual(rulePorts, info.nat.upnp.mappings.map((m) => `${m.protocol}/${m.port}`).sort(), rules.join('\n'));
    for (const m of info.nat.upnp.mappings) {
      assert.match(upnpd.log, new RegExp(`redirecting port ${m.port} to ${HOME_IP.replaceAll('.', '\\.')}:${m.port} protocol ${m.protocol.toUpperCase()} for: relaycast`));
    }
    // The relay announces itself at its public address.
    assert.equal(relay.base, `http://${HOME_IP}:${relay.port}`);
    assert.match(relay.log, new RegExp(`http://${WAN_IP.replaceAll('.', '\\.')}:${relay.port}/viewer`));
    const publicBase = `http://${WAN_IP}:${relay.port}`;

    // Chromium in "internet" publishes to the origin and watches at the relay's public address.
    browser = await browserIn(NS.inet, [origin.base, publicBase]);
    const pub = await browser.context.newPage();
    await pub.goto(`${origin.base}/streamer.html?stream=${STREAM}&codec=vp8&autostart=1#token=${TOKEN}`, { waitUntil: 'domcontentloaded' });
    await pub.waitForFunction(() => window.relaycastSession?.state === 'connected', null, { timeout: 30000 });
    await waitFor(() => relay.api('/api/topology').streams.some((s) => s.stream === STREAM), { timeout: 15000, what: 'the relay to hear of the stream' });
    const view = await browser.context.newPage();
    await view.goto(`${publicBase}/viewer.html?stream=${STREAM}`, { waitUntil: 'domcontentloaded' });
    const stats = await waitFor(async () => {
      const s = await viewerStats(view);
      return s?.framesDecoded > 10 && s;
    }, { timeout: 30000, what: 'the viewer at the relay to decode frames' }).catch(async (e) => {
      throw new Error(`${e.message}; viewer: ${JSON.stringify(await viewerStats(view).catch(() => null))}`);
    });
    t.diagnostic(`viewer at the relay: ${JSON.stringify(stats)}`);
    const here = relay.api('/api/topology').streams.find((s) => s.stream === STREAM);
    assert.ok(here?.nodes.some((n) => n.depth === 1 && n.viewers >= 1), `the relay serves the viewer: ${JSON.stringify(here)}`);

    // A graceful stop removes the mappings from the router.
    await view.close();
    await relay.stop();
    assert.equal(relay.exited, true);
    assert.deepEqual(forwards(), [], 'no forwards left after the relay stopped');
    assert.match(relay.log, /port mapping removed from the router/);

    // 4. A router with NAT-PMP only: the relay falls back to it and maps its ports there.
    await upnpd.stop();
    upnpd = await startMiniupnpd({ upnp: false, stunPort });
    procs.push(upnpd);
    const pmpRelay = await startNode(NS.home, HOME_IP, ['--stun', stun]);
    pmpRelay.name = 'relay with NAT-PMP';
    procs.push(pmpRelay);
    const pmp = pmpRelay.api('/api/node').nat;
    t.diagnostic(`relay nat with NAT-PMP: ${JSON.stringify(pmp)}`);
    assert.equal(pmp.upnp.protocol, 'nat-pmp');
    assert.equal(pmp.upnp.external_ip, WAN_IP);
    assert.equal(pmp.upnp.gateway, `${LAN_GW}:5351`);
    const pmpMapped = pmp.upnp.mappings.map((m) => `${m.what}/${m.protocol}/${m.port}`);
    assert.ok(pmpMapped.includes(`http/tcp/${pmpRelay.port}`) && pmpMapped.some((m) => m.startsWith('media/udp/')), `mapped: ${pmpMapped}`);
    assert.equal(forwards().length, pmp.upnp.mappings.length, forwards().join('\n'));
    await pmpRelay.stop();
    assert.deepEqual(forwards(), [], 'no forwards left after the NAT-PMP relay stopped');
  } catch (e) {
    t.diagnostic(dump());
    throw e;
  } finally {
    if (browser) await browser.close();
    for (const p of procs.reverse()) await p.stop().catch(() => {});
    removeNetwork();
  }
});
