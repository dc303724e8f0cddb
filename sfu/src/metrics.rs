//! Prometheus metrics: counters kept as atomics by the media plane and encoded at scrape time.
//!
//! Nothing here runs per packet per viewer: viewers count locally and flush into these atomics
//! during housekeeping; publishers (one writer per stream) add per packet.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::Shared;

/// Node-wide counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Datagrams dropped because they were not STUN, DTLS, RTP or RTCP.
    pub dropped_unrecognised: AtomicU64,
    /// Datagrams dropped because no session accepted them.
    pub dropped_no_session: AtomicU64,
    /// Packets not handed to another worker because its queue was full.
    pub dropped_handoff: AtomicU64,
    /// UDP sends that failed.
    pub dropped_send: AtomicU64,
    /// Packets the archive tap could not take (its queue was full).
    pub dropped_tap: AtomicU64,
    /// Datagrams received on the media ports.
    pub ingress_packets: AtomicU64,
    /// Bytes received on the media ports.
    pub ingress_bytes: AtomicU64,
    /// Datagrams sent.
    pub egress_packets: AtomicU64,
    /// Bytes sent.
    pub egress_bytes: AtomicU64,
    /// Messages handed to the kernel for those datagrams (fewer when GSO joins datagrams).
    pub egress_messages: AtomicU64,
    /// WHIP/WHEP offers refused because no video format in them fits (the 422s).
    pub codec_refusals: AtomicU64,
    /// Panics caught in media workers (each dropped the session that caused it).
    pub worker_panics: AtomicU64,
    /// Times a stream switched between its primary and backup publisher (backup ingest).
    pub source_switches: AtomicU64,
    /// Session commands (trickle, layer, close) refused because a worker's control queue was full.
    pub dropped_control: AtomicU64,
    /// Trickled ICE candidates ignored past the per-session limit.
    pub ignored_candidates: AtomicU64,
    /// Join times of viewers, publishers and relay edges to downstream nodes.
    pub joins: [JoinTimes; 3],
}

impl Metrics {
    /// Records that a session of `role` connected `took` after it was set up.
    pub fn observe_join(&self, role: JoinRole, took: Duration) {
        self.joins[role as usize].observe(took);
    }
}

/// The kind of session whose join time is recorded (the `role` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRole {
    /// A viewer (WHEP).
    Viewer = 0,
    /// A publisher (WHIP), or a stream relayed in from an upstream node.
    Publisher = 1,
    /// A relay edge to a downstream node.
    Relay = 2,
}

impl JoinRole {
    const ALL: [(JoinRole, &'static str); 3] = [(JoinRole::Viewer, "viewer"), (JoinRole::Publisher, "publisher"), (JoinRole::Relay, "relay")];
}

/// Upper bounds, in seconds, of the join-time buckets (the last one is `+Inf`).
pub const JOIN_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, f64::INFINITY];

/// A histogram of join times (session set up, i.e. the SDP answer, to ICE and DTLS connected)
/// kept in atomics: one bucket count per bound, not cumulative.
#[derive(Debug, Default)]
pub struct JoinTimes {
    buckets: [AtomicU64; JOIN_BUCKETS.len()],
    sum_micros: AtomicU64,
}

impl JoinTimes {
    /// Counts one join that took `took`.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = JOIN_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(JOIN_BUCKETS.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Sum in seconds, count, and (bound, count) per bucket.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = JOIN_BUCKETS.iter().zip(&self.buckets).map(|(&b, c)| (b, c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        (self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6, count, buckets)
    }
}

/// A counter kept outside the media plane (e.g. by the TURN server), rendered with the node's.
#[derive(Debug, Clone, Copy)]
pub struct ExtraCounter {
    /// Metric name (without `_total`).
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Current value.
    pub value: u64,
}

/// Reads the extra counters at scrape time.
pub type ExtraCounters = Arc<dyn Fn() -> Vec<ExtraCounter> + Send + Sync>;

/// Per-stream counters.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// RTP packets received from the publisher.
    pub ingress_packets: AtomicU64,
    /// RTP payload bytes received from the publisher.
    pub ingress_bytes: AtomicU64,
    /// Datagrams sent to this stream's viewers.
    pub egress_packets: AtomicU64,
    /// Bytes sent to this stream's viewers.
    pub egress_bytes: AtomicU64,
    /// Simulcast layer switches made for viewers.
    pub layer_switches: AtomicU64,
    /// PLIs and FIRs received from viewers.
    pub viewer_keyframe_requests: AtomicU64,
    /// Keyframe requests sent to the publisher (after throttling).
    pub upstream_keyframe_requests: AtomicU64,
    /// NACKs received from viewers.
    pub viewer_nacks: AtomicU64,
    /// NACKs sent to the publisher.
    pub upstream_nacks: AtomicU64,
    /// Packets not forwarded because the viewer had no payload type for the codec.
    pub dropped_no_payload_type: AtomicU64,
    /// Times a viewer's send queue backed up and its video skipped to the next keyframe.
    pub congestion_skips: AtomicU64,
    /// Viewers started from a cached keyframe instead of a requested one.
    pub cached_starts: AtomicU64,
    /// Times a relay edge to a downstream node shed its highest layers (congestion).
    pub relay_layer_sheds: AtomicU64,
    /// Send-path limits a viewer reached (packets dropped, each counted once).
    pub egress_limits: EgressLimitCounters,
}

/// Packets the own send path dropped at one of its limits, by limit.
#[derive(Debug, Default)]
pub struct EgressLimitCounters {
    /// Media and resends refused by a viewer's full pacer queue.
    pub queue_full: AtomicU64,
    /// Packets that failed to seal.
    pub seal_failed: AtomicU64,
    /// NACKed packets not resent because resends would pass the viewer's budget.
    pub resend_over_budget: AtomicU64,
    /// Viewer RTCP packets past the per-datagram limit.
    pub rtcp_over_limit: AtomicU64,
    /// Viewer SRTCP datagrams that did not open (bad tag, truncated, replayed keys).
    pub rtcp_unopened: AtomicU64,
}

/// A peer's counter deltas since its last flush: plain integers, bumped on the hot path, that
/// the worker adds to the stream's counters every housekeeping interval and when the peer
/// leaves.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalCounts {
    /// Datagrams sent.
    pub egress_packets: u64,
    /// Bytes sent.
    pub egress_bytes: u64,
    /// Layer switches.
    pub layer_switches: u64,
    /// Packets without a payload type match.
    pub dropped_no_payload_type: u64,
    /// RTP packets received from the publisher.
    pub ingress_packets: u64,
    /// RTP payload bytes received from the publisher.
    pub ingress_bytes: u64,
    /// PLIs and FIRs received from viewers (and downstream relays).
    pub viewer_keyframe_requests: u64,
    /// Keyframe requests sent to the publisher.
    pub upstream_keyframe_requests: u64,
    /// NACKs received from viewers.
    pub viewer_nacks: u64,
    /// NACKs sent to the publisher.
    pub upstream_nacks: u64,
    /// Times a viewer's video skipped to a keyframe (send queue backed up).
    pub congestion_skips: u64,
    /// Times a relay edge shed its highest layers.
    pub relay_layer_sheds: u64,
    /// See [`EgressLimitCounters::queue_full`].
    pub egress_queue_full: u64,
    /// See [`EgressLimitCounters::seal_failed`].
    pub egress_seal_failed: u64,
    /// See [`EgressLimitCounters::resend_over_budget`].
    pub resend_over_budget: u64,
    /// See [`EgressLimitCounters::rtcp_over_limit`].
    pub viewer_rtcp_over_limit: u64,
    /// See [`EgressLimitCounters::rtcp_unopened`].
    pub viewer_rtcp_unopened: u64,
}

impl LocalCounts {
    /// Adds the counts to the stream's atomics and resets them.
    pub fn flush(&mut self, to: &StreamCounters) {
        let add = |a: &AtomicU64, v: u64| {
            if v > 0 {
                a.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&to.egress_packets, self.egress_packets);
        add(&to.egress_bytes, self.egress_bytes);
        add(&to.layer_switches, self.layer_switches);
        add(&to.dropped_no_payload_type, self.dropped_no_payload_type);
        add(&to.ingress_packets, self.ingress_packets);
        add(&to.ingress_bytes, self.ingress_bytes);
        add(&to.viewer_keyframe_requests, self.viewer_keyframe_requests);
        add(&to.upstream_keyframe_requests, self.upstream_keyframe_requests);
        add(&to.viewer_nacks, self.viewer_nacks);
        add(&to.egress_limits.queue_full, self.egress_queue_full);
        add(&to.egress_limits.seal_failed, self.egress_seal_failed);
        add(&to.egress_limits.resend_over_budget, self.resend_over_budget);
        add(&to.egress_limits.rtcp_over_limit, self.viewer_rtcp_over_limit);
        add(&to.egress_limits.rtcp_unopened, self.viewer_rtcp_unopened);
        add(&to.upstream_nacks, self.upstream_nacks);
        add(&to.congestion_skips, self.congestion_skips);
        add(&to.relay_layer_sheds, self.relay_layer_sheds);
        *self = LocalCounts::default();
    }
}

/// Encodes the node's metrics on each scrape.
#[derive(Clone)]
pub struct MetricsCollector {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for MetricsCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MetricsCollector")
    }
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl Collector for MetricsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let m = &self.shared.metrics;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let streams = self.shared.registry.streams();
        let viewers: usize = streams.iter().map(|s| s.viewers.load(Ordering::Relaxed)).sum();
        let publishers = streams.iter().filter(|s| s.is_live()).count();
        gauge(&mut enc, "relaycast_sessions", "Sessions (publishers and viewers) on the node", self.shared.registry.session_count() as i64)?;
        gauge(&mut enc, "relaycast_viewers", "Viewers on the node", viewers as i64)?;
        gauge(&mut enc, "relaycast_publishers", "Connected publishers on the node", publishers as i64)?;
        gauge(&mut enc, "relaycast_streams", "Streams known to the node", streams.len() as i64)?;
        counter(&mut enc, "relaycast_ingress_packets", "Datagrams received on the media ports", l(&m.ingress_packets))?;
        counter(&mut enc, "relaycast_ingress_bytes", "Bytes received on the media ports", l(&m.ingress_bytes))?;
        counter(&mut enc, "relaycast_egress_packets", "Datagrams sent from the media ports", l(&m.egress_packets))?;
        counter(&mut enc, "relaycast_egress_bytes", "Bytes sent from the media ports", l(&m.egress_bytes))?;
        counter(
            &mut enc,
            "relaycast_egress_send_messages",
            "Messages handed to the kernel for the egress datagrams (a UDP GSO message carries several)",
            l(&m.egress_messages),
        )?;
        counter(
            &mut enc,
            "relaycast_codec_refusals",
            "Offers refused because no video format in them is forwarded or carries the stream",
            l(&m.codec_refusals),
        )?;
        let extra = self.shared.extra_counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(extra) = extra {
            for c in extra() {
                counter(&mut enc, c.name, c.help, c.value)?;
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "relaycast_join_seconds",
                "Time from a session's SDP answer to ICE and DTLS connected, by role",
                None,
                MetricType::Histogram,
            )?;
            for (role, name) in JoinRole::ALL {
                let (sum, count, buckets) = m.joins[role as usize].snapshot();
                fam.encode_family(&[("role", name)])?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        counter(&mut enc, "relaycast_worker_panics", "Panics caught in media workers; each dropped the session that caused it", l(&m.worker_panics))?;
        counter(&mut enc, "relaycast_source_switches", "Times a stream switched between its primary and backup publisher", l(&m.source_switches))?;
        gauge(
            &mut enc,
            "relaycast_workers_healthy",
            "Media workers taking new sessions (a worker pauses for 30 s after a panic)",
            self.shared.worker_healthy.iter().filter(|h| h.load(Ordering::Relaxed)).count() as i64,
        )?;
        counter(&mut enc, "relaycast_refused_control_commands", "Trickle, layer and close requests refused because a media worker's control queue was full", l(&m.dropped_control))?;
        counter(&mut enc, "relaycast_ignored_candidates", "Trickled ICE candidates ignored past the per-session limit", l(&m.ignored_candidates))?;
        {
            let mut fam = enc.encode_descriptor(
                "relaycast_dropped_packets",
                "Packets dropped by the node, by reason",
                None,
                MetricType::Counter,
            )?;
            for (reason, v) in [
                ("unrecognised", l(&m.dropped_unrecognised)),
                ("no_session", l(&m.dropped_no_session)),
                ("handoff_queue_full", l(&m.dropped_handoff)),
                ("send_failed", l(&m.dropped_send)),
                ("archive_tap_full", l(&m.dropped_tap)),
                (
                    "no_payload_type",
                    streams.iter().map(|s| l(&s.counters.dropped_no_payload_type)).sum::<u64>(),
                ),
                ("viewer_queue_full", streams.iter().map(|s| l(&s.counters.egress_limits.queue_full)).sum::<u64>()),
                ("seal_failed", streams.iter().map(|s| l(&s.counters.egress_limits.seal_failed)).sum::<u64>()),
                ("resend_over_budget", streams.iter().map(|s| l(&s.counters.egress_limits.resend_over_budget)).sum::<u64>()),
                ("viewer_rtcp_over_limit", streams.iter().map(|s| l(&s.counters.egress_limits.rtcp_over_limit)).sum::<u64>()),
                ("viewer_rtcp_unopened", streams.iter().map(|s| l(&s.counters.egress_limits.rtcp_unopened)).sum::<u64>()),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("reason", reason)])?)?;
            }
        }
        type Get = fn(&crate::stream::StreamShared) -> u64;
        let per_stream: [(&str, &str, MetricType, Get); 14] = [
            ("relaycast_stream_congestion_skips", "Times a viewer's video skipped to a keyframe because its send queue backed up", MetricType::Counter, |s| s.counters.congestion_skips.load(Ordering::Relaxed)),
            ("relaycast_stream_relay_layer_sheds", "Times a relay edge to a downstream node stopped sending its highest layers because its bandwidth estimate could not carry them", MetricType::Counter, |s| s.counters.relay_layer_sheds.load(Ordering::Relaxed)),
            ("relaycast_stream_viewers", "Viewers of the stream", MetricType::Gauge, |s| s.viewers.load(Ordering::Relaxed) as u64),
            ("relaycast_stream_ingress_packets", "RTP packets received from the publisher", MetricType::Counter, |s| s.counters.ingress_packets.load(Ordering::Relaxed)),
            ("relaycast_stream_ingress_bytes", "RTP payload bytes received from the publisher", MetricType::Counter, |s| s.counters.ingress_bytes.load(Ordering::Relaxed)),
            ("relaycast_stream_egress_packets", "Datagrams sent to the stream's viewers", MetricType::Counter, |s| s.counters.egress_packets.load(Ordering::Relaxed)),
            ("relaycast_stream_egress_bytes", "Bytes sent to the stream's viewers", MetricType::Counter, |s| s.counters.egress_bytes.load(Ordering::Relaxed)),
            ("relaycast_stream_layer_switches", "Simulcast layer switches made for viewers", MetricType::Counter, |s| s.counters.layer_switches.load(Ordering::Relaxed)),
            ("relaycast_stream_viewer_plis", "PLIs and FIRs received from viewers", MetricType::Counter, |s| s.counters.viewer_keyframe_requests.load(Ordering::Relaxed)),
            ("relaycast_stream_upstream_plis", "Keyframe requests sent to the publisher", MetricType::Counter, |s| s.counters.upstream_keyframe_requests.load(Ordering::Relaxed)),
            ("relaycast_stream_cached_starts", "Viewers started from the cached keyframe instead of a requested one", MetricType::Counter, |s| s.counters.cached_starts.load(Ordering::Relaxed)),
            ("relaycast_stream_viewer_nacks", "NACKs received from viewers", MetricType::Counter, |s| s.counters.viewer_nacks.load(Ordering::Relaxed)),
            ("relaycast_stream_upstream_nacks", "NACKs sent to the publisher", MetricType::Counter, |s| s.counters.upstream_nacks.load(Ordering::Relaxed)),
            ("relaycast_stream_dropped_packets", "Packets not forwarded for want of a payload type", MetricType::Counter, |s| s.counters.dropped_no_payload_type.load(Ordering::Relaxed)),
        ];
        for (name, help, ty, get) in per_stream {
            let mut fam = enc.encode_descriptor(name, help, None, ty)?;
            for s in &streams {
                let labels = [("stream", s.name.as_str())];
                let v = get(s);
                match ty {
                    MetricType::Gauge => ConstGauge::new(v as i64).encode(fam.encode_family(&labels)?)?,
                    _ => ConstCounter::new(v).encode(fam.encode_family(&labels)?)?,
                }
            }
        }
        Ok(())
    }
}

/// Renders the node's metrics in the Prometheus text format.
pub fn render(collector: &MetricsCollector) -> Result<String, fmt::Error> {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(collector.clone()));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    let _ = out.write_str("");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_times_fall_in_their_buckets() {
        let j = JoinTimes::default();
        for ms in [10, 50, 51, 700, 1000, 60_000] {
            j.observe(Duration::from_millis(ms));
        }
        let (sum, count, buckets) = j.snapshot();
        assert_eq!(count, 6);
        assert!((sum - 61.811).abs() < 1e-9, "{sum}");
        let at = |bound: f64| buckets.iter().find(|(b, _)| *b == bound).map(|(_, c)| *c);
        assert_eq!(at(0.05), Some(2), "bounds are inclusive");
        assert_eq!(at(0.1), Some(1));
        assert_eq!(at(1.0), Some(2));
        assert_eq!(at(f64::INFINITY), Some(1));
        assert_eq!(buckets.len(), JOIN_BUCKETS.len());
    }
}
