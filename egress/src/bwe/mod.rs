//! Send-side bandwidth estimation driven by transport-wide feedback.
//!
//! The estimator combines:
//! - an acked bitrate (bytes the receiver got over a sliding window of receive time),
//! - a delay-based controller: packets are grouped by send time, the inter-group delay
//!   variation feeds a trendline (least-squares slope of the smoothed accumulated delay), and an
//!   adaptive threshold turns the slope into overuse / normal / underuse; an AIMD rule moves the
//!   rate from that signal,
//! - a loss-based limit from the fraction of packets reported lost,
//! - probing: short bursts above the current rate whose receive rate shows spare capacity.
//!
//! The estimate is `min(delay-based, loss-based)`, clamped to the configured bounds. All memory
//! is bounded and all input is treated as untrusted: times may jump or go backwards.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::twcc::PacketResult;

mod acked;
mod aimd;
mod detector;
mod loss;
mod prober;

use acked::AckedRate;
use aimd::{Aimd, RateState};
use detector::{Detector, Signal};
use loss::LossLimit;
use prober::Prober;

#[cfg(test)]
mod tests;

/// With media sent for this long after the last feedback and none since, the estimate is cut
/// (and again each time this passes): the feedback or the path is gone, and holding the rate
/// would keep filling whatever queue swallowed it.
pub const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(1);
/// What a feedback timeout leaves of the estimate.
const FEEDBACK_TIMEOUT_CUT: f64 = 0.8;
/// Sliding window for the acked bitrate.
const ACKED_WINDOW: Duration = Duration::from_millis(500);
/// Upper bound on packets kept in the acked window.
const ACKED_MAX_PACKETS: usize = 4096;
/// Packets sent within this span form one group.
const GROUP_SPAN: Duration = Duration::from_millis(5);
/// Number of groups in the trendline regression.
const TREND_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const TREND_SMOOTHING: f64 = 0.9;
/// Gain applied to the trendline slope before comparing with the threshold.
const TREND_GAIN: f64 = 4.0;
/// Delay variation (ms) beyond which the delay history is discarded as a clock jump.
const MAX_DELAY_JUMP_MS: f64 = 3000.0;
/// Multiplicative decrease factor applied to the acked bitrate on overuse.
const BETA: f64 = 0.85;
/// Multiplicative increase per second far from the last congestion point.
const MULT_INCREASE_PER_S: f64 = 1.08;
/// Probe clusters tracked at once.
const MAX_CLUSTERS: usize = 8;
/// Received packets needed before a probe result counts.
const PROBE_MIN_PACKETS: u32 = 5;
/// Minimum bytes per probe cluster (six full-size packets).
const PROBE_MIN_BYTES: u64 = 6 * 1200;
/// Target duration of a probe cluster.
const PROBE_DURATION: Duration = Duration::from_millis(40);
/// Time without congestion and since the last probe before a periodic probe.
const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// Clusters whose feedback has not completed by then are evaluated or dropped.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A probe to run: the pacer sends `bytes` at `bitrate_bps` (media, else padding), tagging packets with `id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Probe cluster id to tag packets with in the send register.
    pub id: u32,
    /// Rate to send the cluster at.
    pub bitrate_bps: u64,
    /// Total bytes of the cluster.
    pub bytes: usize,
}

/// Bandwidth estimator for one viewer's transport.
#[derive(Debug)]
pub struct Estimator {
    /// Lowest estimate reported.
    min_bps: u64,
    /// Highest estimate reported.
    max_bps: u64,
    /// What the sender would like to send.
    desired_bps: u64,
    /// Estimate given at construction; startup probes are multiples of it.
    initial_bps: u64,
    /// Round-trip time.
    rtt: Duration,
    /// Acked bitrate measurement.
    acked: AckedRate,
    /// Delay-based overuse detector.
    detector: Detector,
    /// Delay-based AIMD rate.
    aimd: Aimd,
    /// Loss-based limit.
    loss: LossLimit,
    /// Probe scheduling and evaluation.
    prober: Prober,
    /// Last time a decrease (delay or loss) happened.
    last_congestion: Option<Instant>,
    /// When feedback last arrived (none before the first).
    last_feedback: Option<Instant>,
    /// When a packet that feedback should report was last sent.
    last_sent: Option<Instant>,
    /// The last cut for missing feedback.
    last_timeout_cut: Option<Instant>,
}

impl Estimator {
    /// Creates an estimator starting at `initial_bps`.
    pub fn new(initial_bps: u64, now: Instant) -> Self {
        let min_bps = 30_000;
        let max_bps = 100_000_000;
        let initial_bps = initial_bps.clamp(min_bps, max_bps);
        Estimator {
            min_bps,
            max_bps,
            desired_bps: 0,
            initial_bps,
            rtt: Duration::from_millis(100),
            acked: AckedRate::default(),
            detector: Detector::new(),
            aimd: Aimd::new(initial_bps as f64, now),
            loss: LossLimit::new(now),
            prober: Prober::default(),
            last_congestion: None,
            last_feedback: None,
            last_sent: None,
            last_timeout_cut: None,
        }
    }

    /// Lowest and highest estimate ever reported.
    pub fn set_bounds(&mut self, min_bps: u64, max_bps: u64) {
        let min_bps = min_bps.max(1);
        self.min_bps = min_bps;
        self.max_bps = max_bps.max(min_bps);
        self.aimd.rate = self.clamp(self.aimd.rate);
    }

    /// What the sender would like to send (the top layer's need); probes go up to it.
    pub fn set_desired(&mut self, bps: u64) {
        self.desired_bps = bps;
    }

    /// Round-trip time, when known (from receiver reports).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt.clamp(Duration::from_millis(1), Duration::from_secs(5));
    }

    /// The current estimate in bit/s.
    pub fn estimate(&self) -> u64 {
        let rate = match self.loss.limit {
            Some(limit) => self.aimd.rate.min(limit),
            None => self.aimd.rate,
        };
        (self.clamp(rate) as u64).clamp(self.min_bps, self.max_bps)
    }

    /// The acked bitrate (what the receiver got over the last ~500 ms), when measurable.
    pub fn acked_bitrate(&self) -> Option<u64> {
        self.acked.bps().map(|b| b as u64)
    }

    /// A packet that transport-wide feedback should report was sent at `now`.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// Cuts the estimate when feedback stopped while media went on ([`FEEDBACK_TIMEOUT`]);
    /// true when it did. Cheap: called whenever the sender polls.
    pub fn check_feedback(&mut self, now: Instant) -> bool {
        let (Some(fb), Some(sent)) = (self.last_feedback, self.last_sent) else { return false };
        let since = self.last_timeout_cut.map_or(fb, |c| c.max(fb));
        if sent.saturating_duration_since(fb) < FEEDBACK_TIMEOUT || now.saturating_duration_since(since) < FEEDBACK_TIMEOUT {
            return false;
        }
        let rate = self.estimate() as f64 * FEEDBACK_TIMEOUT_CUT;
        self.aimd.rate = self.clamp(rate);
        self.last_timeout_cut = Some(now);
        self.last_congestion = Some(now);
        true
    }

    /// Feedback results (from SendRegister::on_feedback), in order.
    pub fn on_feedback(&mut self, results: &[PacketResult], now: Instant) {
        if results.is_empty() {
            return;
        }
        self.last_feedback = Some(now);
        let mut received = 0u32;
        for r in results {
            self.loss.count(r.received.is_some());
            let Some(recv) = r.received else {
                if let Some(id) = r.probe {
                    self.prober.on_lost(id, r.size);
                }
                continue;
            };
            received += 1;
            self.acked.push(recv, r.size);
            if let Some(id) = r.probe {
                self.prober.on_received(id, r.sent, recv, r.size);
            }
            self.detector.on_packet(r.sent, recv);
        }

        let acked = self.acked.bps();
        let signal = self.detector.signal;

        // Delay-based AIMD.
        if received > 0 {
            let decreased = self.aimd.update(signal, acked, self.rtt, now);
            if decreased {
                self.last_congestion = Some(now);
            }
        }
        self.aimd.rate = self.clamp(self.aimd.rate);

        // Probe results.
        let before = self.estimate();
        if let Some((result, target, id)) = self.prober.evaluate(now) {
            self.apply_probe(result, target, id, signal, now);
        }

        // Loss-based limit.
        if self
            .loss
            .update(before as f64, self.aimd.rate, self.rtt, now)
        {
            self.last_congestion = Some(now);
        }
    }

    /// A probe to run now, if one is due: the pacer sends `bytes` at `bitrate_bps` (media, else padding), tagging packets with `id` in the register.
    pub fn poll_probe(&mut self, now: Instant) -> Option<Probe> {
        let estimate = self.estimate();
        let cap = self.probe_cap();
        if !self.prober.started {
            self.prober.started = true;
            for mult in [3, 6] {
                let rate = self.initial_bps.saturating_mul(mult).min(cap);
                if rate > estimate {
                    self.prober.pending.push_back(rate);
                }
            }
        }
        if self.prober.next_at.is_some_and(|t| now < t) {
            return None;
        }
        let rate = match self.prober.pending.pop_front() {
            Some(rate) => rate,
            None => {
                let quiet = self
                    .last_congestion
                    .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL);
                let since_probe = self
                    .prober
                    .last_probe_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL);
                let wanted = self.desired_bps > estimate;
                if !(quiet && since_probe && wanted && self.loss.limit.is_none()) {
                    return None;
                }
                estimate.saturating_mul(2).min(cap)
            }
        };
        if rate <= estimate.saturating_add(estimate / 10) {
            return None;
        }
        Some(self.prober.start(rate, now))
    }

    /// Highest rate a probe may use.
    fn probe_cap(&self) -> u64 {
        let cap = if self.desired_bps > 0 {
            self.desired_bps.saturating_add(self.desired_bps / 5)
        } else {
            self.max_bps
        };
        cap.min(self.max_bps)
    }

    /// Applies one probe result; schedules a follow-up probe while the link keeps up.
    fn apply_probe(&mut self, result: f64, target: u64, id: u32, signal: Signal, now: Instant) {
        if signal == Signal::Overuse || !result.is_finite() {
            return;
        }
        let probed = self.clamp(0.95 * result);
        if probed > self.aimd.rate {
            self.aimd.rate = probed;
            self.aimd.state = RateState::Hold;
            self.aimd.last_update = now;
            if self.aimd.link.is_some_and(|l| probed > l.upper()) {
                self.aimd.link = None;
            }
        }
        // The link carried the probe: try twice as much right away.
        let latest = self.prober.next_id.wrapping_sub(1) == id;
        let cap = self.probe_cap();
        let estimate = self.estimate();
        if latest && result >= 0.8 * target as f64 && self.desired_bps > estimate {
            let next = ((2.0 * result) as u64).min(cap);
            if next > estimate.saturating_add(estimate / 10) {
                self.prober.pending.retain(|&r| r > next);
                self.prober.pending.push_front(next);
                self.prober.next_at = None;
            }
        }
    }

    /// Clamps a rate to the bounds.
    fn clamp(&self, rate: f64) -> f64 {
        if rate.is_nan() {
            return self.min_bps as f64;
        }
        rate.clamp(self.min_bps as f64, self.max_bps as f64)
    }
}
