//! Counters of the RTMP server, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// RTMP ingest counters.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed at once because `--rtmp-max-connections` were open.
    pub over_limit: AtomicU64,
    /// Connections closed for not finishing the handshake in time.
    pub handshake_timeouts: AtomicU64,
    /// Connections closed after the idle timeout without data.
    pub idle_timeouts: AtomicU64,
    /// Connections closed for malformed RTMP (chunks, AMF, FLV) or an over-limit size.
    pub protocol_errors: AtomicU64,
    /// Publishes the node accepted (WHIP answered).
    pub publishes: AtomicU64,
    /// Publishes the node refused (wrong or missing token, stream taken elsewhere, full).
    pub refused_signaling: AtomicU64,
    /// Streams refused for B-frames.
    pub refused_b_frames: AtomicU64,
    /// Streams refused for a video codec other than H264.
    pub refused_codec: AtomicU64,
    /// H264 access units written to WebRTC.
    pub video_frames: AtomicU64,
    /// Access units dropped (before the WebRTC session connected, or a full queue).
    pub video_dropped: AtomicU64,
    /// Opus packets (20 ms) made from AAC and written to WebRTC.
    pub audio_frames: AtomicU64,
    /// AAC frames or Opus packets dropped (not AAC-LC, undecodable, before publishing, full queue).
    pub audio_dropped: AtomicU64,
    /// SRT listeners bound again after srt-tokio's listener task stopped.
    pub listener_restarts: AtomicU64,
}

impl IngestStats {
    /// Adds one to `c`.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    /// Adds `n` to `c`.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// (name, help, value) of every counter of the SRT server (a separate instance).
    pub fn srt_counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let v = |c: &AtomicU64| c.load(Relaxed);
        vec![
            ("relaycast_srt_connections", "SRT callers accepted", v(&self.accepted)),
            ("relaycast_srt_refused", "SRT callers refused in the handshake: a stream id other than publish:STREAM:TOKEN", v(&self.protocol_errors)),
            ("relaycast_srt_over_limit", "SRT callers refused over --srt-max-connections", v(&self.over_limit)),
            ("relaycast_srt_listener_restarts", "SRT listeners bound again after a caller's handshake crashed srt-tokio's listener", v(&self.listener_restarts)),
            ("relaycast_srt_idle_timeouts", "SRT connections closed after the idle timeout", v(&self.idle_timeouts)),
            ("relaycast_srt_publishes", "SRT publishes accepted by the node", v(&self.publishes)),
            ("relaycast_srt_refused_auth", "SRT publishes refused by the node (token, grant, conflict, capacity)", v(&self.refused_signaling)),
            ("relaycast_srt_refused_b_frames", "SRT streams refused for B-frames", v(&self.refused_b_frames)),
            ("relaycast_srt_refused_codec", "SRT streams refused for a video codec other than H264", v(&self.refused_codec)),
            ("relaycast_srt_video_frames", "H264 access units from SRT written to WebRTC", v(&self.video_frames)),
            ("relaycast_srt_video_dropped", "H264 access units from SRT dropped", v(&self.video_dropped)),
            ("relaycast_srt_audio_frames", "Opus packets (20 ms) transcoded from SRT AAC", v(&self.audio_frames)),
            ("relaycast_srt_audio_dropped", "SRT audio frames dropped (not AAC-LC, undecodable, or a full queue)", v(&self.audio_dropped)),
        ]
    }

    /// (name, help, value) of every counter.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let v = |c: &AtomicU64| c.load(Relaxed);
        vec![
            (
                "relaycast_rtmp_connections",
                "RTMP connections accepted",
                v(&self.accepted),
            ),
            (
                "relaycast_rtmp_over_limit",
                "RTMP connections closed over --rtmp-max-connections",
                v(&self.over_limit),
            ),
            (
                "relaycast_rtmp_handshake_timeouts",
                "RTMP connections closed for a slow handshake",
                v(&self.handshake_timeouts),
            ),
            (
                "relaycast_rtmp_idle_timeouts",
                "RTMP connections closed after the idle timeout",
                v(&self.idle_timeouts),
            ),
            (
                "relaycast_rtmp_protocol_errors",
                "RTMP connections closed for malformed or oversized input",
                v(&self.protocol_errors),
            ),
            (
                "relaycast_rtmp_publishes",
                "RTMP publishes accepted by the node",
                v(&self.publishes),
            ),
            (
                "relaycast_rtmp_refused_auth",
                "RTMP publishes refused by the node (token, grant, conflict, capacity)",
                v(&self.refused_signaling),
            ),
            (
                "relaycast_rtmp_refused_b_frames",
                "RTMP streams refused for B-frames",
                v(&self.refused_b_frames),
            ),
            (
                "relaycast_rtmp_refused_codec",
                "RTMP streams refused for a video codec other than H264",
                v(&self.refused_codec),
            ),
            (
                "relaycast_rtmp_video_frames",
                "H264 access units from RTMP written to WebRTC",
                v(&self.video_frames),
            ),
            (
                "relaycast_rtmp_video_dropped",
                "H264 access units from RTMP dropped",
                v(&self.video_dropped),
            ),
            (
                "relaycast_rtmp_audio_frames",
                "Opus packets (20 ms) transcoded from RTMP AAC",
                v(&self.audio_frames),
            ),
            (
                "relaycast_rtmp_audio_dropped",
                "RTMP audio frames dropped (not AAC-LC, undecodable, or a full queue)",
                v(&self.audio_dropped),
            ),
        ]
    }
}
