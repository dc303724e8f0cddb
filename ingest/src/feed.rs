//! What every ingest connection does with its media, whatever the protocol: publish its H264
//! into the node over WHIP at the first frame (see [`crate::publisher`]), and transcode its AAC
//! to Opus for the same WebRTC session.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::audio::Transcoder;
use crate::flv::AvcConfig;
use crate::publisher::{self, PublishError, Publisher, Signaling};
use crate::session::VideoFrame;
use crate::stats::IngestStats;

/// One ingest connection's media on its way to the node.
pub struct Feed {
    /// `RTMP` or `SRT`, for logs.
    proto: &'static str,
    peer: SocketAddr,
    stream: String,
    token: Option<String>,
    /// The encoder declared itself the stream's backup (`backup=1`).
    backup: bool,
    signaling: Arc<dyn Signaling>,
    stats: Arc<IngestStats>,
    media_ip: IpAddr,
    avc: Option<AvcConfig>,
    publisher: Option<Publisher>,
    transcoder: Option<Transcoder>,
    /// The AudioSpecificConfig the transcoder was made for.
    asc: Vec<u8>,
    opus_out: Vec<Vec<u8>>,
}

impl Feed {
    /// A feed for `stream`, published with `token` once its first frame arrives.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        proto: &'static str,
        peer: SocketAddr,
        stream: String,
        token: Option<String>,
        signaling: Arc<dyn Signaling>,
        stats: Arc<IngestStats>,
        media_ip: IpAddr,
    ) -> Self {
        Self {
            proto,
            peer,
            stream,
            token,
            backup: false,
            signaling,
            stats,
            media_ip,
            avc: None,
            publisher: None,
            transcoder: None,
            asc: Vec::new(),
            opus_out: Vec::new(),
        }
    }

    /// Publishes as the stream's backup (`backup=1` in the stream key or id): held ready while
    /// the primary feeds the stream.
    pub fn with_backup(mut self, backup: bool) -> Self {
        self.backup = backup;
        self
    }

    /// The stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The current H264 parameters.
    pub fn avc(&self) -> Option<&AvcConfig> {
        self.avc.as_ref()
    }

    /// New H264 parameters (before the first frame and whenever they change).
    pub fn video_config(&mut self, cfg: AvcConfig) {
        self.avc = Some(cfg);
    }

    /// One access unit. The first one (with parameters known) starts the WHIP session; an error
    /// is the node's refusal or a failed setup, and the connection should end.
    pub async fn video(&mut self, f: VideoFrame) -> Result<(), PublishError> {
        if let Some(p) = &self.publisher {
            if !p.send(f) {
                IngestStats::inc(&self.stats.video_dropped);
            }
            return Ok(());
        }
        let Some(cfg) = &self.avc else {
            IngestStats::inc(&self.stats.video_dropped);
            return Ok(());
        };
        match publisher::start(
            self.signaling.clone(),
            self.stream.clone(),
            self.token.clone(),
            self.backup,
            cfg,
            self.media_ip,
            self.stats.clone(),
        )
        .await
        {
            Ok((p, _connected)) => {
                IngestStats::inc(&self.stats.publishes);
                info!(proto = %self.proto, peer = %self.peer, stream = %self.stream, "ingest stream published");
                if !p.send(f) {
                    IngestStats::inc(&self.stats.video_dropped);
                }
                self.publisher = Some(p);
                Ok(())
            }
            Err(e) => {
                match &e {
                    PublishError::Refused(r) => {
                        IngestStats::inc(&self.stats.refused_signaling);
                        warn!(proto = %self.proto, peer = %self.peer, stream = %self.stream, status = r.status, reason = %r.reason.trim(), "ingest publish refused");
                    }
                    other => {
                        warn!(proto = %self.proto, peer = %self.peer, stream = %self.stream, error = %other, "ingest publish failed")
                    }
                }
                Err(e)
            }
        }
    }

    /// The AAC AudioSpecificConfig (a new one replaces the transcoder).
    pub fn audio_config(&mut self, asc: &[u8]) {
        if self.transcoder.is_some() && self.asc == asc {
            return;
        }
        self.asc = asc.to_vec();
        match Transcoder::new(asc) {
            Ok(t) => {
                info!(proto = %self.proto, peer = %self.peer, sample_rate = t.config().sample_rate, channels = t.channels(), "AAC audio: transcoding to Opus");
                self.transcoder = Some(t);
            }
            Err(e) => {
                self.transcoder = None;
                warn!(proto = %self.proto, peer = %self.peer, error = %e, "audio dropped; viewers get video only");
            }
        }
    }

    /// One raw AAC frame.
    pub fn audio(&mut self, aac: &[u8]) {
        let (Some(t), Some(p)) = (self.transcoder.as_mut(), self.publisher.as_ref()) else {
            IngestStats::inc(&self.stats.audio_dropped);
            return;
        };
        self.opus_out.clear();
        if let Err(e) = t.push(aac, &mut self.opus_out) {
            IngestStats::inc(&self.stats.audio_dropped);
            debug!(proto = %self.proto, peer = %self.peer, error = %e, "AAC frame dropped");
            return;
        }
        for pkt in self.opus_out.drain(..) {
            if p.send_opus(pkt) {
                IngestStats::inc(&self.stats.audio_frames);
            } else {
                IngestStats::inc(&self.stats.audio_dropped);
            }
        }
    }
}
