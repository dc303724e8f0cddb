//! Sans-IO viewer accounting: loss from sequence numbers, latency from stamps, join time,
//! layer counts, and the aggregate report.

use serde::Serialize;

use crate::source::parse_stamp;

/// Width of the duplicate-detection window in packets.
const WINDOW: u64 = 4096;

/// Counts unique packets and the highest extended sequence number seen.
#[derive(Clone, Debug)]
pub struct SeqTracker {
    max: Option<u64>,
    bits: Vec<u64>,
    unique: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker { max: None, bits: vec![0; (WINDOW / 64) as usize], unique: 0 }
    }
}

impl SeqTracker {
    /// Records a packet; returns false for a duplicate or a packet older than the window.
    pub fn record(&mut self, seq: u64) -> bool {
        match self.max {
            None => {
                self.max = Some(seq);
            }
            Some(max) if seq > max => {
                let advance = seq - max;
                if advance >= WINDOW {
                    self.bits.iter_mut().for_each(|b| *b = 0);
                } else {
                    for s in max + 1..seq {
                        self.clear(s);
                    }
                }
                self.max = Some(seq);
            }
            Some(max) => {
                if max - seq >= WINDOW || self.get(seq) {
                    return false;
                }
            }
        }
        self.set(seq);
        self.unique += 1;
        true
    }

    /// Highest sequence number seen.
    pub fn max(&self) -> Option<u64> {
        self.max
    }

    /// Unique packets seen.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    fn idx(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }
    fn get(&self, seq: u64) -> bool {
        let (w, b) = Self::idx(seq);
        self.bits[w] & b != 0
    }
    fn set(&mut self, seq: u64) {
        let (w, b) = Self::idx(seq);
        self.bits[w] |= b;
    }
    fn clear(&mut self, seq: u64) {
        let (w, b) = Self::idx(seq);
        self.bits[w] &= !b;
    }
}

/// Number of layers tracked in layer counts.
pub const LAYERS: usize = 3;

/// One viewer's figures, accumulated by its driver.
#[derive(Clone, Debug, Default)]
pub struct ViewerStats {
    /// When signaling started (ns since the epoch).
    pub join_start_ns: u64,
    /// First frame stamp received (ns since the epoch).
    pub first_frame_ns: Option<u64>,
    /// When the signaling answer arrived (ns since the epoch).
    pub answer_ns: Option<u64>,
    /// When ICE and DTLS completed (ns since the epoch); None while not connected.
    pub connected_ns: Option<u64>,
    /// Sequence tracking of the video stream.
    pub seq: SeqTracker,
    /// Measurement window open.
    pub measuring: bool,
    /// Snapshot (max seq, unique) at window start.
    window_start: Option<(Option<u64>, u64)>,
    /// Datagram bytes received in the window.
    pub bytes: u64,
    /// Datagrams received in the window.
    pub datagrams: u64,
    /// Latency samples in microseconds (first packet of each frame, in the window).
    pub latencies_us: Vec<u32>,
    /// Latency samples in microseconds to the last packet of each frame (the frame complete), in
    /// the window.
    pub frame_latencies_us: Vec<u32>,
    /// RTP timestamp and stamp send time of the frame whose last packet is awaited.
    open_frame: Option<(u32, u64)>,
    /// Frames per layer in the window.
    pub frames_per_layer: [u64; LAYERS],
    /// Layer of the last frame received.
    pub last_layer: Option<u8>,
}

impl ViewerStats {
    /// A viewer that starts joining at `join_start_ns`.
    pub fn new(join_start_ns: u64) -> Self {
        ViewerStats { join_start_ns, ..Default::default() }
    }

    /// Counts one received datagram of `len` bytes.
    pub fn on_datagram(&mut self, len: usize) {
        if self.measuring {
            self.bytes += len as u64;
            self.datagrams += 1;
        }
    }

    /// Counts one received video RTP packet (`marker`: last packet of its frame), `recv_ns`
    /// being when its datagram arrived.
    pub fn on_rtp(&mut self, seq: u64, rtp_ts: u32, marker: bool, payload: &[u8], recv_ns: u64) {
        self.seq.record(seq);
        if let Some(stamp) = parse_stamp(payload) {
            self.first_frame_ns.get_or_insert(recv_ns);
            self.last_layer = Some(stamp.layer);
            self.open_frame = Some((rtp_ts, stamp.send_ns));
            if self.measuring {
                self.latencies_us.push(micros_since(stamp.send_ns, recv_ns));
                if let Some(c) = self.frames_per_layer.get_mut(stamp.layer as usize) {
                    *c += 1;
                }
            }
        }
        if marker
            && let Some((_, send_ns)) = self.open_frame.take_if(|(ts, _)| *ts == rtp_ts)
            && self.measuring
        {
            self.frame_latencies_us.push(micros_since(send_ns, recv_ns));
        }
    }

    /// Opens the measurement window.
    pub fn start_window(&mut self) {
        self.measuring = true;
        self.window_start = Some((self.seq.max(), self.seq.unique()));
    }

    /// Closes the window; returns (expected, received) packets within it.
    pub fn end_window(&mut self) -> (u64, u64) {
        self.measuring = false;
        let Some((start_max, start_unique)) = self.window_start else { return (0, 0) };
        let received = self.seq.unique() - start_unique;
        let expected = match (start_max, self.seq.max()) {
            (Some(a), Some(b)) => b - a,
            // Joined during the window: count from the first packet.
            (None, Some(_)) => received,
            _ => 0,
        };
        (expected.max(received), received)
    }

    /// Join time in ms (signaling start to first frame), if a frame arrived.
    pub fn join_ms(&self) -> Option<f64> {
        self.since_join_ms(self.first_frame_ns)
    }

    /// Milliseconds from the signaling start to `t`.
    pub fn since_join_ms(&self, t: Option<u64>) -> Option<f64> {
        t.map(|t| t.saturating_sub(self.join_start_ns) as f64 / 1e6)
    }
}

/// Microseconds from `from_ns` to `to_ns`, saturating.
fn micros_since(from_ns: u64, to_ns: u64) -> u32 {
    (to_ns.saturating_sub(from_ns) / 1000).min(u64::from(u32::MAX)) as u32
}

/// The `p`-quantile (0..=1) of sorted values, None when empty.
pub fn quantile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i).copied()
}

/// At most `points` (value, cumulative fraction) pairs of a sorted sample.
pub fn cdf(sorted: &[f64], points: usize) -> Vec<(f64, f64)> {
    if sorted.is_empty() || points == 0 {
        return Vec::new();
    }
    let n = sorted.len();
    let step = (n / points).max(1);
    let mut out: Vec<(f64, f64)> = (0..n).step_by(step).map(|i| (sorted[i], (i + 1) as f64 / n as f64)).collect();
    if out.last().map(|l| l.1) != Some(1.0) {
        out.push((sorted[n - 1], 1.0));
    }
    out
}

/// Egress figures.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Egress {
    /// Gbit/s received by all viewers (UDP payload bytes, SRTP).
    pub gbps: f64,
    /// Datagrams per second received by all viewers.
    pub packets_per_s: f64,
    /// Bytes received in the window.
    pub bytes: u64,
    /// Datagrams received in the window.
    pub packets: u64,
    /// Gbit/s the node itself counted as sent in the window (`/metrics`), for a cross-check.
    pub server_reported_gbps: Option<f64>,
}

/// Loss figures.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Loss {
    /// Video RTP packets expected from sequence numbers.
    pub expected: u64,
    /// Unique video RTP packets received.
    pub received: u64,
    /// 1 − received / expected.
    pub ratio: f64,
}

/// Join time split into phases, each from the signaling start.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct JoinPhases {
    /// To the signaling answer (the server's work on the offer plus the HTTP round trip).
    pub answer: Percentiles,
    /// To ICE and DTLS connected.
    pub connected: Percentiles,
}

/// Percentiles in milliseconds.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// 99.9th percentile.
    pub p999: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
    /// Number of samples.
    pub samples: usize,
}

impl Percentiles {
    /// Percentiles of a sorted sample.
    pub fn of(sorted: &[f64]) -> Self {
        Percentiles {
            p50: quantile(sorted, 0.5),
            p99: quantile(sorted, 0.99),
            p999: quantile(sorted, 0.999),
            max: sorted.last().copied(),
            samples: sorted.len(),
        }
    }
}

/// Layer distribution.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Layers {
    /// RIDs of the layer indices.
    pub rids: Vec<String>,
    /// Frames received per layer in the window, all viewers.
    pub frames: Vec<u64>,
    /// Viewers per layer of their last frame.
    pub viewers_final: Vec<u64>,
}

/// CPU time of a process over the window.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Cpu {
    /// Process id read.
    pub pid: u32,
    /// User + system CPU seconds in the window.
    pub cpu_seconds: f64,
    /// User-space CPU seconds in the window.
    #[serde(default)]
    pub user_seconds: f64,
    /// Kernel CPU seconds in the window.
    #[serde(default)]
    pub system_seconds: f64,
    /// Average cores busy (cpu_seconds / window seconds).
    pub cores: f64,
    /// Core pinning (the process's allowed CPUs), when known.
    pub cpus_allowed: Option<String>,
}

/// Server efficiency figures derived from its CPU and the egress.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Efficiency {
    /// Egress Gbit/s per core of server CPU.
    pub gbps_per_core: Option<f64>,
    /// Server CPU seconds per delivered Gbit.
    pub cpu_seconds_per_gbit: Option<f64>,
    /// Server CPU per viewer, percent of one core.
    pub cpu_percent_per_viewer: Option<f64>,
}

/// Server resident memory before the viewers joined and at the end of the window.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Memory {
    /// KiB with the publisher connected and no viewer yet.
    pub rss_before_kib: u64,
    /// KiB at the end of the measurement window.
    pub rss_kib: u64,
    /// (`rss_kib` - `rss_before_kib`) / connected viewers.
    pub per_viewer_kib: Option<f64>,
}

/// Publisher totals.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct PublisherStats {
    /// Frames sent per layer.
    pub frames: u64,
    /// RTP packets sent.
    pub packets: u64,
    /// RTP payload bytes sent.
    pub payload_bytes: u64,
    /// Keyframe requests received.
    pub keyframe_requests: u64,
}

/// The whole report written as JSON.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct Report {
    /// "relaycast" or "janus".
    pub server: String,
    /// Server URL.
    pub url: String,
    /// Stream name or mountpoint.
    pub stream: String,
    /// Viewers requested.
    pub viewers: usize,
    /// Viewers whose ICE/DTLS connected.
    pub viewers_connected: usize,
    /// Viewers that received at least one frame.
    pub viewers_with_frames: usize,
    /// Measurement window in seconds.
    pub duration_s: f64,
    /// Viewer runtime threads.
    pub threads: usize,
    /// Forced layer (WHEP `?rid=`), if any.
    pub rid: Option<String>,
    /// Egress.
    pub egress: Egress,
    /// Loss.
    pub loss: Loss,
    /// Latency in ms: frame first packet's receive time minus its stamp.
    pub latency_ms: Percentiles,
    /// Latency in ms to the frame complete: its last packet's receive time minus its stamp.
    #[serde(default)]
    pub frame_latency_ms: Percentiles,
    /// Join time in ms: signaling start to first frame.
    pub join_ms: Percentiles,
    /// Where join time goes: signaling start to the answer, and to ICE + DTLS connected (the
    /// rest, up to `join_ms`, is waiting for the first keyframe).
    #[serde(default)]
    pub join_phases_ms: JoinPhases,
    /// Layer distribution.
    pub layers: Layers,
    /// Server CPU over the window, when `--server-pid` was given.
    pub server_cpu: Option<Cpu>,
    /// Efficiency figures derived from the server CPU.
    pub efficiency: Efficiency,
    /// Server memory (`VmRSS` from `/proc`), when `--server-pid` was given.
    #[serde(default)]
    pub server_memory: Option<Memory>,
    /// The load generator's own CPU over the window.
    pub loadgen_cpu: Cpu,
    /// Publisher totals.
    pub publisher: PublisherStats,
    /// Latency CDF points (ms, fraction), to the frame's first packet.
    pub latency_cdf: Vec<(f64, f64)>,
    /// Latency CDF points (ms, fraction), to the frame complete.
    #[serde(default)]
    pub frame_latency_cdf: Vec<(f64, f64)>,
    /// Machine description.
    pub machine: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceConfig, SyntheticSource};

    #[test]
    fn seq_tracker_counts_unique_and_gaps() {
        let mut t = SeqTracker::default();
        for s in [10, 11, 13, 12, 12, 14, 20] {
            t.record(s);
        }
        assert_eq!(t.unique(), 6);
        assert_eq!(t.max(), Some(20));
        assert!(!t.record(11));
        assert!(t.record(19));
        assert!(t.record(10_000));
        assert!(!t.record(1), "older than the window");
    }

    #[test]
    fn viewer_window_loss_and_latency() {
        let mut src = SyntheticSource::new(SourceConfig::default());
        let mut v = ViewerStats::new(0);
        let mut pkts = Vec::new();
        for i in 0..10 {
            src.next_frame(i * 33_000_000, &mut pkts);
        }
        let f: Vec<_> = pkts.iter().filter(|p| p.layer == 2).collect();
        v.on_rtp(f[0].seq, f[0].rtp_ts, f[0].marker, &f[0].payload, 5_000_000);
        assert_eq!(v.join_ms(), Some(5.0));
        v.start_window();
        for (i, p) in f.iter().enumerate().skip(1) {
            if i == 7 {
                continue; // lost
            }
            v.on_datagram(p.payload.len());
            v.on_rtp(p.seq, p.rtp_ts, p.marker, &p.payload, 1_000_000_000 + i as u64 * 1000);
        }
        let (expected, received) = v.end_window();
        assert_eq!(expected, f.len() as u64 - 1);
        assert_eq!(received, expected - 1);
        assert_eq!(v.latencies_us.len(), 9);
        // A frame counts when its first and last packets arrived and the last one in the window;
        // its sample runs from its stamp (frame k sent at k × 33 ms) to its last packet.
        let frame_no = |ts: u32| f.iter().filter(|p| p.marker && p.rtp_ts < ts).count() as u64;
        let expected: Vec<u32> = f
            .iter()
            .enumerate()
            .filter(|(i, p)| p.marker && *i != 0 && *i != 7)
            .filter(|(_, p)| f.iter().position(|q| q.rtp_ts == p.rtp_ts) != Some(7))
            .map(|(i, p)| ((1_000_000_000 + i as u64 * 1000 - frame_no(p.rtp_ts) * 33_000_000) / 1000) as u32)
            .collect();
        assert!(expected.len() >= 8);
        assert_eq!(v.frame_latencies_us, expected);
        assert_eq!(v.frames_per_layer, [0, 0, 9]);
    }

    #[test]
    fn quantiles_and_cdf() {
        let s: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), Some(501.0));
        assert_eq!(quantile(&s, 0.999), Some(999.0));
        let c = cdf(&s, 10);
        assert_eq!(c.last(), Some(&(1000.0, 1.0)));
        assert!(c.len() <= 11);
    }
}
