// Compiled (never run) by tests/sdk/dts.test.mjs with `strict`: the SDK's declared types
// (sdk/relaycast.d.ts) used the way the README uses them.

import Default, {
  Relaycast, RelaycastError, WatchSession, PublishSession, HlsPlayback, SIMULCAST_ENCODINGS,
  backoffDelay, withToken, parseIceServersFromLink, parseCandidates, loadHlsJs, playlistDuration, buildSdpFragment,
} from '../../sdk/relaycast.js';
import type { WatchOptions, PublishOptions, RelaycastOptions, ReplayOptions, SessionState, WatchStats } from '../../sdk/relaycast.js';

export async function usage(video: HTMLVideoElement, media: MediaStream): Promise<void> {
  const clientOptions: RelaycastOptions = { token: 't', iceServers: [{ urls: 'stun:x' }], iceTransportPolicy: 'relay' };
  const rc: Relaycast = new Default('http://127.0.0.1:8080', clientOptions);
  const watchOptions: WatchOptions = { rid: 'q', maxHeight: 360, retry: false, trickle: true, gatherTimeout: 500, statsInterval: 1000, token: 't' };
  const stream: MediaStream = await rc.watch('room', watchOptions);
  video.srcObject = stream;
  const session: WatchSession | null = rc.session;
  await rc.setLayer({ rid: 'h' });
  await session?.setLayer({ maxHeight: 720 });
  await rc.setLayer({});
  session?.addEventListener('stats', (e) => { const s = e.detail as WatchStats; console.log(s.framesDecoded, s.frameHeight); });
  session?.addEventListener('reconnecting', (e) => console.log(e.detail.delay, e.detail.attempt));
  session?.addEventListener('state', (e) => { const st: SessionState = e.detail.state; console.log(st); });
  const replayOptions: ReplayOptions = { seconds: 30, hls: 'auto', hlsConfig: {}, token: 't' };
  const playback: HlsPlayback | undefined = await session?.replay(video, replayOptions);
  playback?.destroy();
  await session?.backToLive();
  (await rc.vod('room', video, { hls: false })).destroy();
  (await rc.replay('room', video, 10)).destroy();
  const publishOptions: PublishOptions = { token: 'SECRET', codec: 'h264', simulcast: true };
  const pub: PublishSession = await rc.publish('room', media, publishOptions);
  await pub.replaceTrack(media.getVideoTracks()[0]);
  console.log(rc.replayUrl('room', { token: 't', recording: '1700000000000' }), (await rc.archive('room')).segments.length, (await rc.streams()).length);
  const recs = await rc.recordings('room');
  if (recs[0]) await rc.vod('room', document.createElement('video'), { recording: recs[0].id });
  console.log(SIMULCAST_ENCODINGS[0].rid, backoffDelay(2, { random: () => 0.5 }), withToken('http://x/a', 't'));
  console.log(parseIceServersFromLink('<stun:x>; rel="ice-server"')[0].urls, parseCandidates('')[0]?.port, playlistDuration(''));
  console.log(buildSdpFragment('', [{ candidate: 'candidate:1 1 udp 1 1.2.3.4 5 typ host', sdpMid: '0' }], true), await loadHlsJs('http://x'));
  rc.addEventListener('viewers', (e) => console.log(e.detail.count, e.detail.session));
  try { await pub.close(); } catch (err) { if (err instanceof RelaycastError) console.log(err.status, err.body, err.retryAfter); }
  await rc.close();
}
