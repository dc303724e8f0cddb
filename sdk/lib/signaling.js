// Relaycast browser SDK: WHIP/WHEP over HTTP (RFC 9725): offers, trickle ICE by PATCH
// (RFC 8840 fragments), DELETE, ICE servers from `Link` headers, access tokens, URLs.
// Only `fetch` and `URL`: no WebRTC here.

import { RelaycastError } from './errors.js';

/** Longest wait for the `OPTIONS` request that learns the ICE servers, ms. */
export const ICE_SERVERS_TIMEOUT_MS = 3000;

function splitLinkHeader(value) {
  // Split on commas that are outside <...> and outside quoted strings.
  const parts = [];
  let cur = '';
  let inAngle = false;
  let inQuote = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inQuote) {
      if (c === '\\' && i + 1 < value.length) { cur += c + value[++i]; continue; }
      if (c === '"') inQuote = false;
    } else if (c === '"') {
      inQuote = true;
    } else if (c === '<') {
      inAngle = true;
    } else if (c === '>') {
      inAngle = false;
    } else if (c === ',' && !inAngle) {
      if (cur.trim()) parts.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

/**
 * Parse `Link: <turn:...>; rel="ice-server"; username="..."; credential="..."` header values
 * into RTCIceServer objects. Accepts a single header value (possibly several comma-separated links)
 * or an array of values.
 */
export function parseIceServersFromLink(header) {
  if (!header) return [];
  const values = Array.isArray(header) ? header : [header];
  const servers = [];
  for (const value of values) {
    for (const link of splitLinkHeader(String(value))) {
      const m = /^<([^>]*)>(.*)$/s.exec(link);
      if (!m) continue;
      const url = m[1].trim();
      const params = {};
      const re = /;\s*([A-Za-z0-9_.*-]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*)))?/g;
      let p;
      while ((p = re.exec(m[2])) !== null) {
        const key = p[1].toLowerCase();
        const val = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '').trim();
        params[key] = val;
      }
      const rels = (params.rel || '').toLowerCase().split(/\s+/);
      if (!rels.includes('ice-server')) continue;
      if (!/^(stuns?|turns?):/i.test(url)) continue;
      const server = { urls: url };
      if (params.username !== undefined) server.username = params.username;
      if (params.credential !== undefined) server.credential = params.credential;
      servers.push(server);
    }
  }
  return servers;
}

/** Extract the media ports and addresses of the `a=candidate` lines of an SDP. */
export function parseCandidates(sdp) {
  const out = [];
  for (const line of String(sdp).split(/\r?\n/)) {
    const m = /^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)/i.exec(line.trim());
    if (m) out.push({ foundation: m[1], component: +m[2], protocol: m[3].toLowerCase(), priority: +m[4], address: m[5], port: +m[6], type: m[7] });
  }
  return out;
}

function sdpIceCredentials(sdp) {
  const ufrag = /^a=ice-ufrag:(.+)$/m.exec(sdp);
  const pwd = /^a=ice-pwd:(.+)$/m.exec(sdp);
  return { ufrag: ufrag ? ufrag[1].trim() : '', pwd: pwd ? pwd[1].trim() : '' };
}

/** Build an `application/trickle-ice-sdpfrag` body (RFC 8840) for the given candidates. */
export function buildSdpFragment(localSdp, candidates, endOfCandidates = false) {
  const { ufrag, pwd } = sdpIceCredentials(localSdp);
  const lines = [];
  if (ufrag) lines.push(`a=ice-ufrag:${ufrag}`);
  if (pwd) lines.push(`a=ice-pwd:${pwd}`);
  // Candidates are grouped per media section (mid); with BUNDLE all of them go to the first one.
  const mids = [];
  const sections = /^m=(\S+) .*$/gm;
  const mediaKinds = [];
  let sm;
  while ((sm = sections.exec(localSdp)) !== null) mediaKinds.push(sm[1]);
  const midRe = /^a=mid:(.+)$/gm;
  let mm;
  while ((mm = midRe.exec(localSdp)) !== null) mids.push(mm[1].trim());
  const byMid = new Map();
  for (const c of candidates) {
    const mid = c.sdpMid ?? mids[c.sdpMLineIndex ?? 0] ?? mids[0] ?? '0';
    if (!byMid.has(mid)) byMid.set(mid, []);
    byMid.get(mid).push(c.candidate);
  }
  if (endOfCandidates && byMid.size === 0 && mids.length) byMid.set(mids[0], []);
  for (const [mid, cands] of byMid) {
    const idx = Math.max(0, mids.indexOf(mid));
    lines.push(`m=${mediaKinds[idx] || 'audio'} 9 UDP/TLS/RTP/SAVPF 0`);
    lines.push(`a=mid:${mid}`);
    for (const cand of cands) lines.push(cand.startsWith('a=') ? cand : `a=${cand}`);
    if (endOfCandidates) lines.push('a=end-of-candidates');
  }
  return lines.join('\r\n') + '\r\n';
}

/** A `Retry-After` header value (seconds or an HTTP date) in ms, or null. */
export function parseRetryAfter(value, now = Date.now()) {
  if (!value) return null;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const date = Date.parse(value);
  return Number.isFinite(date) ? Math.max(0, date - now) : null;
}

/** `path` resolved against the origin (or base path) `base`. */
export function joinUrl(base, path) {
  return new URL(path, base.endsWith('/') ? base : base + '/').toString();
}

/** `url` with `?token=` added (for requests that cannot carry an Authorization header). */
export function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/** `Authorization: Bearer TOKEN` headers, or none without a token. */
export function authHeaders(token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/**
 * Learn an endpoint's ICE servers with `OPTIONS` (RFC 9725 section 4.6). Bounded by `timeoutMs`;
 * any failure (no OPTIONS support, unreachable) gives an empty list.
 */
export async function fetchIceServers(url, { headers = {}, timeoutMs = ICE_SERVERS_TIMEOUT_MS } = {}) {
  try {
    const resp = await fetch(url, { method: 'OPTIONS', headers, signal: AbortSignal.timeout(timeoutMs) });
    return resp.ok ? parseIceServersFromLink(resp.headers.get('Link')) : [];
  } catch {
    return [];
  }
}

/**
 * POST an SDP offer to a WHIP/WHEP endpoint (redirects are followed by `fetch`). Resolves with the
 * answer, the session URL (absolute, resolved against the URL that answered) and the ICE servers
 * of its `Link` headers; rejects with a RelaycastError (`status` 0 for network errors, the HTTP
 * status otherwise, with `retryAfter` in ms from `Retry-After`).
 */
export async function postOffer(url, sdp, { headers = {} } = {}) {
  let resp;
  try {
    resp = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...headers }, body: sdp });
  } catch (err) {
    throw new RelaycastError(`network error contacting ${url}: ${err?.message ?? err}`, { status: 0, cause: err });
  }
  const body = await resp.text().catch(() => '');
  if (resp.status !== 201 && resp.status !== 200) {
    throw new RelaycastError(`${resp.status} ${resp.statusText || ''} from POST ${url}${body ? ': ' + body.trim() : ''}`.trim(), {
      status: resp.status, body, retryAfter: parseRetryAfter(resp.headers.get('Retry-After')),
    });
  }
  const loc = resp.headers.get('Location');
  return {
    answer: body,
    location: loc ? new URL(loc, resp.url || url).toString() : null,
    iceServers: parseIceServersFromLink(resp.headers.get('Link')),
  };
}

/** PATCH trickle ICE candidates (an RFC 8840 fragment) to a session URL. */
export async function patchCandidates(location, fragment, { headers = {} } = {}) {
  await fetch(location, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', ...headers },
    body: fragment,
  });
}

/** DELETE a session URL; never rejects (the session ends on the server anyway when it times out). */
export function deleteSession(location, { headers = {} } = {}) {
  return fetch(location, { method: 'DELETE', headers }).then(() => {}, () => {});
}

/** `POST {session}/layer` with a layer preference body; rejects with a RelaycastError on failure. */
export async function postLayer(location, body) {
  let resp;
  try {
    resp = await fetch(`${location}/layer`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (err) {
    throw new RelaycastError(`network error setting layer: ${err?.message ?? err}`, { status: 0, cause: err });
  }
  if (!resp.ok) {
    const text = await resp.text().catch(() => '');
    throw new RelaycastError(`${resp.status} from POST ${location}/layer${text ? ': ' + text.trim() : ''}`, { status: resp.status, body: text });
  }
}
