// Type declarations for the Relaycast browser SDK (relaycast.js).

/** Simulcast layer id: q = quarter (low), h = half (mid), f = full (high). */
export type Rid = 'q' | 'h' | 'f';

/** Layer preference: a fixed rid, a maximum height, or automatic (`{}` / `{rid: null}`). */
export type LayerPreference = { rid: Rid } | { maxHeight: number } | { rid?: null };

/** Connection state of a session. */
export type SessionState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'reconnecting' | 'failed' | 'closed';

/** Options shared by watch and publish. */
export interface SessionOptions {
  /** ICE servers for the PeerConnection (overrides any sent by the server in `Link` headers). */
  iceServers?: RTCIceServer[];
  /** ICE transport policy, e.g. 'relay' to force TURN. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Reconnect with exponential backoff after failures (default true). */
  retry?: boolean;
  /** POST the offer at once and send candidates by PATCH instead of waiting for ICE gathering (default false). */
  trickle?: boolean;
  /** Longest wait for ICE gathering before the offer is sent, in ms (default 2000). */
  gatherTimeout?: number;
  /** Interval of `stats` events, in ms (default 1000). */
  statsInterval?: number;
  /**
   * Access token (JWT with a `publish` or `watch` grant, or the node's publish token): sent as
   * `Authorization: Bearer` to WHIP/WHEP and as `?token=` on event streams. Default: the client's.
   */
  token?: string;
}

/** Options of `Relaycast.watch`. */
export interface WatchOptions extends SessionOptions {
  /** Start on a fixed layer (sent as `?rid=`). */
  rid?: Rid | null;
  /** Start with a height cap (sent as `?maxHeight=`). */
  maxHeight?: number;
}

/** Options of `Relaycast.publish`. */
export interface PublishOptions extends SessionOptions {
  /** Video codec to send (default 'vp8'). */
  codec?: 'vp8' | 'h264';
  /** Send three simulcast layers q/h/f (default true). */
  simulcast?: boolean;
}

/** Options of the `Relaycast` constructor. */
export interface RelaycastOptions {
  /** Default ICE servers for every session. */
  iceServers?: RTCIceServer[];
  /** Default ICE transport policy for every session. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Default access token for every session, archive and replay request. */
  token?: string;
}

/** Summary of a watch session's getStats, emitted every second. */
export interface WatchStats {
  /** Wall-clock time of the sample (ms since epoch). */
  timestamp: number;
  /** Layer the server currently forwards (from server events). */
  rid: string | null;
  /** Layer the server is switching to. */
  targetRid: string | null;
  /** Received video bitrate, bits per second. */
  bitrate: number;
  /** Video frames decoded so far. */
  framesDecoded: number;
  /** Video frames dropped so far. */
  framesDropped: number;
  /** Decoded frames per second. */
  framesPerSecond: number;
  /** Width of the last decoded frame. */
  frameWidth: number;
  /** Height of the last decoded frame. */
  frameHeight: number;
  /** Video RTP packets received. */
  packetsReceived: number;
  /** Video RTP packets lost. */
  packetsLost: number;
  /** Video jitter, seconds. */
  jitter: number;
  /** Video codec name, e.g. 'VP8'. */
  codec: string | null;
  /** Audio bitrate and packet counters. */
  audio: { bitrate: number; packetsReceived: number; packetsLost: number };
  /** Round-trip time of the selected candidate pair, seconds. */
  roundTripTime: number | null;
  /** Receive bandwidth estimate, bits per second (when the browser reports it). */
  availableIncomingBitrate: number | null;
  /** RTCPeerConnection.connectionState at sampling time. */
  connectionState: RTCPeerConnectionState | 'closed';
}

/** One simulcast layer as sent by the publisher. */
export interface LayerStats {
  /** Layer rid ('' without simulcast). */
  rid: string;
  /** Send bitrate, bits per second. */
  bitrate: number;
  /** Encoded width. */
  frameWidth: number;
  /** Encoded height. */
  frameHeight: number;
  /** Encoded frames per second. */
  framesPerSecond: number;
  /** Frames encoded so far. */
  framesEncoded: number;
  /** RTP packets sent. */
  packetsSent: number;
  /** Whether the encoding is active. */
  active: boolean;
  /** Why the browser limits quality ('none', 'cpu', 'bandwidth', 'other'). */
  qualityLimitationReason: string;
  /** Encoder in use, when reported. */
  encoderImplementation: string | null;
}

/** Summary of a publish session's getStats, emitted every second. */
export interface PublishStats {
  /** Wall-clock time of the sample (ms since epoch). */
  timestamp: number;
  /** Total video send bitrate, bits per second. */
  bitrate: number;
  /** Per-layer send stats ordered q, h, f. */
  layers: LayerStats[];
  /** Audio send bitrate and packets. */
  audio: { bitrate: number; packetsSent: number };
  /** Round-trip time of the selected candidate pair, seconds. */
  roundTripTime: number | null;
  /** Send bandwidth estimate, bits per second. */
  availableOutgoingBitrate: number | null;
  /** Video codec name, e.g. 'H264'. */
  codec: string | null;
  /** Viewer count last reported by the server. */
  viewers: number;
  /** RTCPeerConnection.connectionState at sampling time. */
  connectionState: RTCPeerConnectionState | 'closed';
}

/** Event payloads by event name (delivered as CustomEvent.detail). */
export interface SessionEventMap {
  /** Periodic getStats summary. */
  stats: WatchStats | PublishStats;
  /** Server switched (or is switching) the forwarded layer. */
  layer: { rid: string | null; target: string | null };
  /** Number of viewers of the stream. */
  viewers: { count: number };
  /** Publisher went away (`live: false`) or came back. */
  publisher: { live: boolean };
  /** Connection state change. */
  state: { state: SessionState; error?: RelaycastError; delay?: number; attempt?: number };
  /** A reconnect attempt is scheduled after `delay` ms. */
  reconnecting: { error?: RelaycastError; delay: number; attempt: number };
  /** A reconnect succeeded. */
  reconnected: { attempt: number };
  /** A non-retryable failure; the session closes after it. */
  error: { error: RelaycastError };
  /** A remote track was added to the watch MediaStream. */
  track: { track: MediaStreamTrack };
  /** Raw server event from the SSE endpoint. */
  event: { type: string; [key: string]: unknown };
  /** ICE servers received from the server in `Link` headers. */
  iceservers: { iceServers: RTCIceServer[] };
  /** A segment of the stream was archived on the node (durable in its IPFS store). */
  segment: { seq: number; cid: string; duration: number; durationMs: number };
  /** A replay started (`active: true`) or the session went back to live (`active: false`); `error` for a fatal playback error. */
  replay: { active: boolean; seconds?: number; engine?: 'native' | 'hls.js' | 'mse'; startPosition?: number; error?: RelaycastError; playback?: HlsPlayback };
  /** The session ended. */
  close: { reason: string };
}

/** Error raised by a session; `status` is the HTTP status, 0 for a network error, null otherwise. */
export class RelaycastError extends Error {
  /** HTTP status, 0 for a network error, null otherwise. */
  status: number | null;
  /** Response body (the server's plain-text reason). */
  body: string;
  /** Retry-After of the response in ms, if any. */
  retryAfter: number | null;
}

/** Base class of watch and publish sessions (an EventTarget of SessionEventMap events). */
declare class BaseSession extends EventTarget {
  /** The Relaycast client that created the session. */
  readonly client: Relaycast;
  /** Stream name. */
  readonly streamName: string;
  /** Current PeerConnection (replaced on reconnect). */
  readonly pc: RTCPeerConnection | null;
  /** Absolute session URL from the `Location` header. */
  readonly location: string | null;
  /** Connection state. */
  readonly state: SessionState;
  /** True once closed. */
  readonly closed: boolean;
  /** Last stats summary. */
  readonly lastStats: WatchStats | PublishStats | null;
  /** SDP answer of the current connection. */
  readonly answerSdp?: string;
  /** ICE servers last received in `Link` headers. */
  readonly linkIceServers: RTCIceServer[];
  /** Listen to a session event. */
  addEventListener<K extends keyof SessionEventMap>(type: K, listener: (ev: CustomEvent<SessionEventMap[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  /** DELETE the session, close the PeerConnection and emit `close`. */
  close(): Promise<void>;
}

/** A viewer (WHEP) session. */
export class WatchSession extends BaseSession {
  /** MediaStream with the video and audio tracks; stays the same object across reconnects. */
  readonly stream: MediaStream;
  /** Layer the server currently forwards. */
  readonly rid: string | null;
  /** Layer the server is switching to. */
  readonly targetRid: string | null;
  /** Last layer preference set (used again on reconnect). */
  readonly layerPreference: LayerPreference;
  /** Whether the publisher is live (from server events). */
  readonly publisherLive?: boolean;
  /** Last stats summary. */
  readonly lastStats: WatchStats | null;
  /** Set the layer preference (`POST {Location}/layer`). */
  setLayer(pref?: LayerPreference): Promise<void>;
  /** The playback of a running replay, null while live. */
  readonly replayPlayback: HlsPlayback | null;
  /**
   * Instant replay: play the archive in `video` from `seconds` (default 30; a number is taken as
   * `seconds`) before the live edge; the WebRTC connection stays up.
   */
  replay(video: HTMLVideoElement, options?: ReplayOptions | number): Promise<HlsPlayback>;
  /** Leave a replay: `video.srcObject = stream` again, without renegotiation. */
  backToLive(): Promise<void>;
}

/** Options of HLS playback (`replay`, `vod`). */
export interface HlsOptions {
  /** `'auto'` (default): native HLS when the element can play it, else hls.js; `true`: always hls.js; `false`: native only; or an hls.js class to use. */
  hls?: 'auto' | boolean | (new (config?: object) => unknown);
  /** Extra hls.js configuration. */
  hlsConfig?: Record<string, unknown>;
  /** Access token with a `watch` grant, sent as `?token=` on the playlist (default: the client's). */
  token?: string;
  /** A recording id from `recordings()` (default: the latest recording). */
  recording?: string;
}

/** One recording in `GET /api/streams/{stream}/recordings`. */
export interface RecordingInfo {
  /** Its start, milliseconds since the Unix epoch (decimal string). */
  id: string;
  /** Wall-clock start (RFC 3339). */
  started: string;
  /** Wall-clock end (RFC 3339), null while live. */
  ended: string | null;
  /** Seconds archived. */
  duration: number;
  /** Root CID of the VOD directory once over. */
  vod_cid: string | null;
  /** Segments archived. */
  segments: number;
  /** Codecs (`vp8,opus`, `avc1.…,opus`, `opus`). */
  codecs: string | null;
}

/** Options of `replay`. */
export interface ReplayOptions extends HlsOptions {
  /** How far before the live edge to start, in seconds (default 30). */
  seconds?: number;
}

/** One variant of a multivariant HLS playlist. */
export interface HlsVariant {
  /** Absolute URL of its media playlist. */
  uri: string;
  /** Peak bit rate, bits per second. */
  bandwidth: number;
  /** `WIDTHxHEIGHT`, when given. */
  resolution: string | null;
  /** RFC 6381 codecs, when given. */
  codecs: string | null;
}

/** HLS playback of an archive in a `<video>` element; emits `error` and `close`. */
export class HlsPlayback extends EventTarget {
  /** The `<video>` element. */
  readonly video: HTMLVideoElement;
  /** Absolute playlist URL. */
  readonly url: string;
  /** Absolute URL of the media playlist played (the first variant of a multivariant one). */
  readonly mediaUrl: string;
  /** The variants of a multivariant playlist (one per recorded simulcast layer); empty otherwise. */
  readonly variants: HlsVariant[];
  /** The player in use. */
  readonly engine: 'native' | 'hls.js' | 'mse' | null;
  /** The hls.js instance when `engine` is 'hls.js'. */
  readonly hls: unknown;
  /** Playlist duration when playback started, seconds. */
  readonly duration: number;
  /** Position playback started from, seconds. */
  readonly startPosition: number;
  /** True once destroyed. */
  readonly destroyed: boolean;
  /** Milliseconds the picture on screen is behind the publisher's capture (live playback), or null. */
  latencyMs(): number | null;
  /** Stop playback and clear the element's source. */
  destroy(): void;
}

/** Body of `GET /api/streams/{stream}/archive`. */
export interface ArchiveInfo {
  /** Stream name. */
  stream: string;
  /** CID of the init segment (null until stored). */
  init: string | null;
  /** RFC 6381 codecs of the recording. */
  codecs: string | null;
  /** Archived segments in order (`start` is RFC 3339). */
  segments: { seq: number; cid: string; duration: number; start: string; init?: string }[];
  /** True once the stream ended. */
  ended: boolean;
  /** Root CID of the VOD directory once ended. */
  vod: string | null;
  /** Start of the recording, ms since the Unix epoch. */
  started_unix_ms: number;
}

/** A publisher (WHIP) session. */
export class PublishSession extends BaseSession {
  /** The published MediaStream. */
  readonly mediaStream: MediaStream;
  /** Video codec in use. */
  readonly codec: 'vp8' | 'h264';
  /** Whether simulcast is on. */
  readonly simulcast: boolean;
  /** Viewer count from server events. */
  readonly viewers: number;
  /** Last stats summary. */
  readonly lastStats: PublishStats | null;
  /** Swap the published track of the same kind without renegotiation; returns the old track. */
  replaceTrack(track: MediaStreamTrack): Promise<MediaStreamTrack | undefined>;
}

/** One stream as listed by `GET /api/streams`. */
export interface StreamInfo {
  /** Stream name. */
  name: string;
  /** Video codec, e.g. 'VP8'. */
  codec: string;
  /** Whether a publisher is connected. */
  live: boolean;
  /** Number of viewers. */
  viewers: number;
  /** Received layers ('' rid without simulcast). */
  layers: { rid: string; bitrate: number; width: number; height: number; packets: number }[];
  /** Received audio. */
  audio?: { bitrate: number; packets: number };
}

/** Client for one Relaycast server; re-emits its sessions' events with `detail.session` set. */
export class Relaycast extends EventTarget {
  /** Create a client for the server at `baseUrl` (defaults to the page's origin). */
  constructor(baseUrl?: string, options?: RelaycastOptions);
  /** Server origin without trailing slash. */
  readonly baseUrl: string;
  /** Open sessions. */
  readonly sessions: Set<WatchSession | PublishSession>;
  /** Most recent watch session (target of `setLayer`); set as soon as `watch()` is called. */
  readonly session: WatchSession | null;
  /** Most recent publish session. */
  readonly publishSession: PublishSession | null;
  /** Watch a stream; resolves with a MediaStream (video + audio) once the answer is set. */
  watch(stream: string, options?: WatchOptions): Promise<MediaStream>;
  /** Publish a MediaStream; resolves with the session once the answer is set. */
  publish(stream: string, mediaStream: MediaStream, options?: PublishOptions): Promise<PublishSession>;
  /** Set the layer preference of the most recent watch session. */
  setLayer(pref?: LayerPreference): Promise<void>;
  /** List streams (`GET /api/streams`). */
  streams(): Promise<StreamInfo[]>;
  /** The archive of a stream (`GET /api/streams/{stream}/archive`). */
  archive(stream: string, options?: { token?: string }): Promise<ArchiveInfo>;
  /** URL of the stream's HLS playlist of all archived segments (`/replay/{stream}/vod.m3u8`). */
  replayUrl(stream: string, options?: { token?: string; recording?: string }): string;
  /** Every recording of `stream` the node holds, oldest first. */
  recordings(stream: string, options?: { token?: string }): Promise<RecordingInfo[]>;
  /** Play the archive from `seconds` (default 30) before its end, without a watch session. */
  replay(stream: string, video: HTMLVideoElement, options?: ReplayOptions | number): Promise<HlsPlayback>;
  /** Play a recording from its start (a finished VOD, or a running one so far). */
  vod(stream: string, video: HTMLVideoElement, options?: HlsOptions): Promise<HlsPlayback>;
  /** Play the low-latency live archive (`live.m3u8`) of `stream`, a second or two behind the publisher, without WebRTC. */
  live(stream: string, video: HTMLVideoElement, options?: HlsOptions): Promise<HlsPlayback>;
  /** Close every session and emit `close`. */
  close(): Promise<void>;
  /** Listen to an event of any session. */
  addEventListener<K extends keyof SessionEventMap>(type: K, listener: (ev: CustomEvent<SessionEventMap[K] & { session: WatchSession | PublishSession | null }>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
}

/** Simulcast encodings used by `publish()` (q: ¼ size 150 kbps, h: ½ size 500 kbps, f: full 1.5 Mbps). */
export const SIMULCAST_ENCODINGS: readonly RTCRtpEncodingParameters[];
/** Backoff delay in ms for a retry attempt (0.5 s doubling, 10 s cap, jitter). */
export function backoffDelay(attempt: number, options?: { base?: number; cap?: number; random?: () => number }): number;
/** `url` with a `?token=` query parameter (unchanged without a token). */
export function withToken(url: string, token?: string | null): string;
/** Parse `Link` header values with rel="ice-server" into RTCIceServer objects. */
export function parseIceServersFromLink(header: string | string[] | null | undefined): RTCIceServer[];
/** Candidates (address, port, protocol, type) of the `a=candidate` lines of an SDP. */
export function parseCandidates(sdp: string): { foundation: string; component: number; protocol: string; priority: number; address: string; port: number; type: string }[];
/** Load hls.js (sets `window.Hls`) from `<baseUrl>/sdk/hls.min.js` once; resolves with the Hls class. */
export function loadHlsJs(baseUrl: string): Promise<unknown>;
/** Sum of the `#EXTINF` durations of an HLS media playlist, seconds. */
export function playlistDuration(playlist: string): number;
/** The variants of a multivariant HLS playlist, URIs resolved against `base`; empty for a media playlist. */
export function parseVariants(playlist: string, base: string): HlsVariant[];
/** Build an `application/trickle-ice-sdpfrag` body for candidates of a local description. */
export function buildSdpFragment(localSdp: string, candidates: { candidate: string; sdpMid?: string | null; sdpMLineIndex?: number | null }[], endOfCandidates?: boolean): string;

export default Relaycast;
