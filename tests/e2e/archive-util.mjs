// Helpers shared by the archive end-to-end tests: external tools (ffmpeg, ffprobe, ipfs-car),
// fetching archived files through the node's /ipfs gateway and checking them against their CIDs.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CID } from 'multiformats/cid';
import { sha256 } from 'multiformats/hashes/sha2';
import { REPO_ROOT, runCommand, waitFor } from './harness.mjs';

export const IPFS_CAR = path.join(REPO_ROOT, 'tests/e2e/node_modules/ipfs-car/bin.js');

/** Throws a clear error when a command-line tool the tests need is missing. */
export function requireTools() {
  for (const [tool, pkg] of [['ffmpeg', 'ffmpeg'], ['ffprobe', 'ffmpeg']]) {
    const r = spawnSync(tool, ['-version'], { stdio: 'ignore', timeout: 10000 });
    if (r.error || r.status !== 0) {
      throw new Error(`${tool} is required by this test but could not be run (${r.error?.code ?? `exit ${r.status}`}): install Debian's ${pkg} package (scripts/test.sh does)`);
    }
  }
  if (!fs.existsSync(IPFS_CAR)) throw new Error(`ipfs-car not found at ${IPFS_CAR}: run npm ci in tests/e2e`);
}

/** Runs a command; resolves with { code, stdout, stderr } (no rejection on a non-zero exit). */
export const run = runCommand;

/** A fresh temporary directory (removed by the caller). */
export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `relaycast-e2e-${prefix}-`));
}

/** GET /api/streams/{stream}/archive (throws on a non-200 answer). */
export async function archiveOf(server, stream) {
  const resp = await server.fetch(`/api/streams/${encodeURIComponent(stream)}/archive`);
  if (!resp.ok) throw new Error(`GET /api/streams/${stream}/archive -> ${resp.status}: ${await resp.text()}`);
  return resp.json();
}

/**
 * GET /ipfs/{cid} (file bytes). A CID of a single raw block must be the sha2-256 of the bytes;
 * other CIDs are checked through their CAR elsewhere.
 */
export async function fetchFile(server, cid, { timeout = 20000 } = {}) {
  const resp = await server.fetch(`/ipfs/${cid}`, { timeout });
  if (resp.status !== 200) throw new Error(`GET /ipfs/${cid} -> ${resp.status}: ${await resp.text()}`);
  const bytes = new Uint8Array(await resp.arrayBuffer());
  const parsed = CID.parse(cid);
  if (parsed.code === 0x55) {
    const digest = await sha256.digest(bytes);
    if (!equalBytes(digest.bytes, parsed.multihash.bytes)) throw new Error(`the bytes of /ipfs/${cid} do not hash to its CID`);
  }
  return bytes;
}

/** GET /ipfs/{cid} as a CAR (`Accept` or `?format=car`); returns the bytes. */
export async function fetchCar(server, cid, { viaQuery = false, timeout = 30000 } = {}) {
  const resp = viaQuery
    ? await server.fetch(`/ipfs/${cid}?format=car`, { timeout })
    : await server.fetch(`/ipfs/${cid}`, { timeout, headers: { Accept: 'application/vnd.ipld.car' } });
  if (resp.status !== 200) throw new Error(`GET /ipfs/${cid} as CAR -> ${resp.status}: ${await resp.text()}`);
  const type = resp.headers.get('content-type') || '';
  if (!type.startsWith('application/vnd.ipld.car')) throw new Error(`GET /ipfs/${cid} as CAR answered content-type ${type}`);
  return new Uint8Array(await resp.arrayBuffer());
}

/** Runs `ipfs-car <args>` (the npm reference implementation). */
export function ipfsCar(args, opts = {}) {
  return run(process.execPath, [IPFS_CAR, ...args], opts);
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The init segment CID that applies to `segment` of `archive`. */
export function initOf(archive, segment) {
  return segment.init ?? archive.init;
}

/**
 * Fetches the init segment(s) and every media segment of `archive` and writes them into one
 * fragmented MP4 file: each init segment comes before the first segment that needs it.
 * Returns { file, bytes, inits } (inits: the distinct init CIDs in order).
 */
export async function assembleRecording(server, archive, file) {
  const parts = [];
  const inits = [];
  let current = null;
  for (const seg of archive.segments) {
    const init = initOf(archive, seg);
    if (init !== current) {
      parts.push(await fetchFile(server, init));
      inits.push(init);
      current = init;
    }
    parts.push(await fetchFile(server, seg.cid));
  }
  const bytes = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  fs.writeFileSync(file, bytes);
  return { file, bytes, inits };
}

/** ffprobe a file: format name and duration, and per stream codec, size and frames read. */
export async function ffprobe(file) {
  const r = await run('ffprobe', ['-v', 'error', '-count_frames', '-show_entries',
    'format=format_name,duration:stream=codec_name,codec_type,width,height,nb_read_frames', '-of', 'json', file], { timeoutMs: 120000 });
  if (r.code !== 0) throw new Error(`ffprobe ${file} exited ${r.code}: ${r.stderr}`);
  return { ...JSON.parse(r.stdout), stderr: r.stderr };
}

/** From the first packet's start to the last packet's end over every stream of a file, seconds. */
export async function packetSpan(file) {
  const r = await run('ffprobe', ['-v', 'error', '-show_entries', 'packet=pts_time,duration_time', '-of', 'json', file], { timeoutMs: 120000 });
  if (r.code !== 0) throw new Error(`ffprobe ${file} exited ${r.code}: ${r.stderr}`);
  const packets = JSON.parse(r.stdout).packets ?? [];
  let start = Infinity;
  let end = 0;
  for (const p of packets) {
    const t = Number(p.pts_time);
    if (!Number.isFinite(t)) continue;
    start = Math.min(start, t);
    end = Math.max(end, t + (Number(p.duration_time) || 0));
  }
  return Number.isFinite(start) ? end - start : 0;
}

/** Decodes a file with `ffmpeg -v error -i FILE [outputArgs] -f null -`; returns { code, stderr }. */
export async function ffmpegDecode(file, outputArgs = []) {
  const r = await run('ffmpeg', ['-nostdin', '-v', 'error', '-i', file, ...outputArgs, '-f', 'null', '-'], { timeoutMs: 120000 });
  return { code: r.code, stderr: r.stderr };
}

// ffmpeg 5.1 gives the null muxer's video stream a time base of 1/frame rate; frames of a
// variable-rate stream that land on the same tick make the *muxer* (not the decoder) complain.
const NULL_MUXER_DTS = /^\[null @ 0x[0-9a-f]+\] Application provided invalid, non monotonically increasing dts to muxer in stream \d+: \d+ >= \d+$/;
/** ffmpeg's fold of a run of identical messages (here: of tick collisions). */
const REPEATED = /^\s*Last message repeated \d+ times$/;

/**
 * The decode check: `ffmpeg -v error -i FILE -f null -` must exit 0 and print nothing but the
 * null muxer's tick collisions; with the demuxer's time base kept (`-enc_time_base -1`) it must
 * print nothing at all. Returns { plain, exact, collisions }.
 */
export async function checkDecodes(file) {
  const plain = await ffmpegDecode(file);
  const exact = await ffmpegDecode(file, ['-enc_time_base', '-1']);
  const lines = plain.stderr.split('\n').filter(Boolean);
  const other = lines.filter((l, i) => !NULL_MUXER_DTS.test(l) && !(REPEATED.test(l) && i > 0 && NULL_MUXER_DTS.test(lines[i - 1])));
  return { plain, exact, other, collisions: lines.length - other.length };
}

/** Waits until the archive of `stream` is closed (`ended` and a `vod` root); returns it. */
export function waitForVod(server, stream, timeout = 30000) {
  return waitFor(async () => {
    const a = await archiveOf(server, stream);
    return a.ended && a.vod && a;
  }, { timeout, interval: 250, what: `the archive of ${stream} to end with a vod CID` });
}

/** Checks the syntax of a live or VOD playlist from the node; returns its parsed segments. */
/**
 * The text of the HLS playlist at `path` (GET with `init`), or of its first variant (the main
 * rendition) when it is a multivariant playlist: a recording of several simulcast layers.
 */
export async function mediaPlaylistText(server, path, init = {}, prefer = null) {
  const text = await (await server.fetch(path, init)).text();
  const uris = [...text.matchAll(/^#EXT-X-STREAM-INF:[^\n]*\n([^#\n][^\n]*)$/gm)].map((m) => m[1].trim());
  if (!uris.length) return text;
  // The first variant, or the one `prefer` names (a URI prefix, e.g. the recording's main layer).
  const uri = (prefer && uris.find((u) => u.startsWith(prefer))) || uris[0];
  return (await server.fetch(new URL(uri, server.url(path)).toString(), init)).text();
}

export function parsePlaylist(text) {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines[0] !== '#EXTM3U') throw new Error(`playlist does not start with #EXTM3U:\n${text}`);
  const target = Number(/^#EXT-X-TARGETDURATION:(\d+)$/m.exec(text)?.[1]);
  const mediaSeq = Number(/^#EXT-X-MEDIA-SEQUENCE:(\d+)$/m.exec(text)?.[1]);
  const map = /^#EXT-X-MAP:URI="([^"]+)"/m.exec(text)?.[1] ?? null;
  if (!Number.isInteger(target) || target < 1) throw new Error(`playlist without a valid #EXT-X-TARGETDURATION:\n${text}`);
  if (!Number.isInteger(mediaSeq)) throw new Error(`playlist without #EXT-X-MEDIA-SEQUENCE:\n${text}`);
  const segments = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^#EXTINF:([0-9.]+),/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].startsWith('#')) j++;
    const uri = lines[j];
    if (!uri || !/^\/ipfs\/[a-z0-9]+$/.test(uri)) throw new Error(`#EXTINF at line ${i + 1} is not followed by an /ipfs/ URI:\n${text}`);
    const duration = Number(m[1]);
    if (duration > target + 0.5) throw new Error(`segment duration ${duration} exceeds the target duration ${target}`);
    segments.push({ duration, uri, cid: uri.slice('/ipfs/'.length) });
    i = j;
  }
  return { target, mediaSeq, map, segments, endList: /^#EXT-X-ENDLIST$/m.test(text), type: /^#EXT-X-PLAYLIST-TYPE:(\w+)$/m.exec(text)?.[1] ?? null };
}
