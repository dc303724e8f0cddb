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

/// Acked bitrate over a sliding window of receive time.
#[derive(Debug, Default)]
struct AckedRate {
    /// The instant receive times are counted from (the first packet's, moved forward when the
    /// offsets would no longer fit).
    origin: Option<Instant>,
    /// (receive time in µs since `origin`, size) of received packets, receive time
    /// non-decreasing: 8 bytes a packet, about 100 in a window at 2 Mbit/s.
    window: VecDeque<(u32, u16)>,
    /// Sum of sizes in `window`.
    bytes: u64,
}

/// Receive times are rebased before their offset from the origin passes this (about 35 min).
const ACKED_REBASE_US: u64 = 1 << 31;

impl AckedRate {
    /// Adds one received packet.
    fn push(&mut self, recv: Instant, size: u16) {
        let origin = *self.origin.get_or_insert(recv);
        let since = |t: Instant| t.saturating_duration_since(origin).as_micros().min(u128::from(u64::MAX)) as u64;
        let mut at = since(recv);
        if let Some(&(back, _)) = self.window.back() {
            let back = u64::from(back);
            if recv < origin || back.saturating_sub(at) > 1_000_000 {
                // The remote clock went far backwards: start over.
                self.restart(recv);
                at = 0;
            } else {
                at = at.max(back);
            }
        } else if recv < origin {
            self.restart(recv);
            at = 0;
        }
        if at >= ACKED_REBASE_US {
            // Rebase to the oldest packet kept (at most a window old, so everything fits again).
            let shift = self.window.front().map_or(at, |&(f, _)| u64::from(f));
            for (t, _) in self.window.iter_mut() {
                *t -= shift as u32;
            }
            self.origin = Some(origin + Duration::from_micros(shift));
            at -= shift;
            if at >= ACKED_REBASE_US {
                self.restart(recv);
                at = 0;
            }
        }
        self.window.push_back((at as u32, size));
        self.bytes += u64::from(size);
        let window_us = ACKED_WINDOW.as_micros() as u64;
        while let Some(&(front, sz)) = self.window.front() {
            let old = at.saturating_sub(u64::from(front)) > window_us;
            if old || self.window.len() > ACKED_MAX_PACKETS {
                self.window.pop_front();
                self.bytes -= u64::from(sz);
            } else {
                break;
            }
        }
    }

    /// Forgets every packet and counts from `origin`.
    fn restart(&mut self, origin: Instant) {
        self.window.clear();
        self.bytes = 0;
        self.origin = Some(origin);
    }

    /// Bitrate over the window, when it holds enough data.
    fn bps(&self) -> Option<f64> {
        let &(first, first_size) = self.window.front()?;
        let &(last, _) = self.window.back()?;
        if self.window.len() < 3 {
            return None;
        }
        // Short spans give noisy rates; never use less than 100 ms.
        let span_us = last.saturating_sub(first).max(100_000);
        let bits = (self.bytes - u64::from(first_size)) as f64 * 8.0;
        Some(bits * 1e6 / f64::from(span_us))
    }
}

/// Output of the overuse detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    /// Queues are stable.
    Normal,
    /// Queues are growing.
    Overuse,
    /// Queues are draining.
    Underuse,
}

/// Packets sent close together, compared as a unit.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// Send time of the first packet.
    first_sent: Instant,
    /// Send time of the last packet.
    last_sent: Instant,
    /// Latest receive time in the group.
    last_recv: Instant,
}

/// Delay-based overuse detector: grouping, trendline, adaptive threshold.
#[derive(Debug)]
struct Detector {
    /// Group being filled.
    current: Option<Group>,
    /// Last completed group.
    prev: Option<Group>,
    /// Receive time origin of the regression's x axis.
    origin: Option<Instant>,
    /// Accumulated delay variation (ms).
    acc_delay: f64,
    /// Smoothed accumulated delay (ms).
    smoothed: f64,
    /// (arrival ms, smoothed delay ms) of the last groups.
    samples: VecDeque<(f64, f64)>,
    /// Delay samples seen since the last reset (capped).
    num_deltas: u32,
    /// Last slope.
    trend: f64,
    /// Adaptive threshold.
    threshold: f64,
    /// Arrival ms of the last threshold update.
    last_threshold_ms: Option<f64>,
    /// Time spent over the threshold (ms), negative when not over.
    time_over: f64,
    /// Consecutive samples over the threshold.
    over_count: u32,
    /// Current detector output.
    signal: Signal,
}

impl Detector {
    /// A detector with no history.
    fn new() -> Self {
        Detector {
            current: None,
            prev: None,
            origin: None,
            acc_delay: 0.0,
            smoothed: 0.0,
            samples: VecDeque::with_capacity(TREND_WINDOW + 1),
            num_deltas: 0,
            trend: 0.0,
            threshold: 12.5,
            last_threshold_ms: None,
            time_over: -1.0,
            over_count: 0,
            signal: Signal::Normal,
        }
    }

    /// Forgets the delay history (after a clock jump).
    fn reset(&mut self) {
        *self = Detector {
            threshold: self.threshold,
            ..Detector::new()
        };
    }

    /// Feeds one received packet, in send order.
    fn on_packet(&mut self, sent: Instant, recv: Instant) {
        let Some(mut cur) = self.current else {
            self.current = Some(Group {
                first_sent: sent,
                last_sent: sent,
                last_recv: recv,
            });
            return;
        };
        if sent < cur.first_sent {
            // Out of order (e.g. a late report of an older packet).
            return;
        }
        if sent.saturating_duration_since(cur.first_sent) <= GROUP_SPAN {
            cur.last_sent = cur.last_sent.max(sent);
            cur.last_recv = cur.last_recv.max(recv);
            self.current = Some(cur);
            return;
        }
        // The current group is complete.
        if let Some(prev) = self.prev {
            self.on_group(prev, cur);
        }
        self.prev = Some(cur);
        self.current = Some(Group {
            first_sent: sent,
            last_sent: sent,
            last_recv: recv,
        });
    }

    /// Compares two consecutive groups.
    fn on_group(&mut self, prev: Group, cur: Group) {
        let send_delta = signed_ms(cur.last_sent, prev.last_sent);
        let recv_delta = signed_ms(cur.last_recv, prev.last_recv);
        let variation = recv_delta - send_delta;
        if !variation.is_finite()
            || variation.abs() > MAX_DELAY_JUMP_MS
            || recv_delta < -MAX_DELAY_JUMP_MS
        {
            self.reset();
            return;
        }
        if recv_delta < 0.0 {
            // Reordered arrival; no usable sample.
            return;
        }
        let origin = *self.origin.get_or_insert(cur.last_recv);
        let arrival_ms = signed_ms(cur.last_recv, origin);
        if !(0.0..=1.0e9).contains(&arrival_ms) {
            self.reset();
            return;
        }

        self.num_deltas = (self.num_deltas + 1).min(1000);
        self.acc_delay += variation;
        self.smoothed = TREND_SMOOTHING * self.smoothed + (1.0 - TREND_SMOOTHING) * self.acc_delay;
        self.samples.push_back((arrival_ms, self.smoothed));
        if self.samples.len() > TREND_WINDOW {
            self.samples.pop_front();
        }
        let prev_trend = self.trend;
        if self.samples.len() == TREND_WINDOW
            && let Some(slope) = slope(&self.samples)
        {
            self.trend = slope;
        }
        self.detect(prev_trend, send_delta, arrival_ms);
    }

    /// Turns the trend into a signal and adapts the threshold.
    fn detect(&mut self, prev_trend: f64, send_delta: f64, arrival_ms: f64) {
        if self.num_deltas < 2 {
            return;
        }
        let modified = f64::from(self.num_deltas.min(60)) * self.trend * TREND_GAIN;
        if modified > self.threshold {
            if self.time_over < 0.0 {
                self.time_over = send_delta / 2.0;
            } else {
                self.time_over += send_delta;
            }
            self.over_count += 1;
            if self.time_over > 10.0 && self.over_count > 1 && self.trend >= prev_trend {
                self.time_over = 0.0;
                self.over_count = 0;
                self.signal = Signal::Overuse;
            }
        } else if modified < -self.threshold {
            self.time_over = -1.0;
            self.over_count = 0;
            self.signal = Signal::Underuse;
        } else {
            self.time_over = -1.0;
            self.over_count = 0;
            self.signal = Signal::Normal;
        }
        self.update_threshold(modified, arrival_ms);
    }

    /// Moves the threshold towards the observed trend: quickly down, slowly up.
    fn update_threshold(&mut self, modified: f64, arrival_ms: f64) {
        let last = *self.last_threshold_ms.get_or_insert(arrival_ms);
        self.last_threshold_ms = Some(arrival_ms);
        if modified.abs() > self.threshold + 15.0 {
            // A sudden spike: don't let it drag the threshold along.
            return;
        }
        let k = if modified.abs() < self.threshold {
            0.039
        } else {
            0.0087
        };
        let dt = (arrival_ms - last).clamp(0.0, 100.0);
        self.threshold += k * (modified.abs() - self.threshold) * dt;
        self.threshold = self.threshold.clamp(6.0, 600.0);
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64() * 1000.0
    } else {
        -(b.duration_since(a).as_secs_f64() * 1000.0)
    }
}

/// Least-squares slope of `(x, y)` points.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    if n < 2.0 {
        return None;
    }
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), &(x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
    });
    if den <= 0.0 {
        return None;
    }
    let s = num / den;
    s.is_finite().then_some(s)
}

/// State of the AIMD controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateState {
    /// Keep the rate.
    Hold,
    /// Increase the rate.
    Increase,
}

/// Average acked bitrate at past decreases: the congestion point.
#[derive(Debug, Clone, Copy)]
struct LinkCapacity {
    /// Average (bit/s).
    avg: f64,
    /// Relative variance.
    var: f64,
}

impl LinkCapacity {
    /// Upper edge of the "near the congestion point" band.
    fn upper(&self) -> f64 {
        self.avg * (1.0 + 3.0 * self.var.sqrt())
    }

    /// Lower edge of the band.
    fn lower(&self) -> f64 {
        self.avg * (1.0 - 3.0 * self.var.sqrt()).max(0.0)
    }
}

/// Delay-based AIMD rate controller.
#[derive(Debug)]
struct Aimd {
    /// Current rate (bit/s).
    rate: f64,
    /// Controller state.
    state: RateState,
    /// Time of the last update.
    last_update: Instant,
    /// Congestion point, when known.
    link: Option<LinkCapacity>,
}

impl Aimd {
    /// A controller starting at `rate`.
    fn new(rate: f64, now: Instant) -> Self {
        Aimd {
            rate,
            state: RateState::Hold,
            last_update: now,
            link: None,
        }
    }

    /// Applies the detector signal; returns whether the rate was decreased.
    fn update(&mut self, signal: Signal, acked: Option<f64>, rtt: Duration, now: Instant) -> bool {
        let dt = now
            .saturating_duration_since(self.last_update)
            .min(Duration::from_secs(1))
            .as_secs_f64();
        self.last_update = now;
        // Throughput past the old congestion point means it no longer applies.
        if let (Some(link), Some(acked)) = (self.link, acked)
            && acked > link.upper()
        {
            self.link = None;
        }
        match signal {
            Signal::Overuse => {
                let base = acked.unwrap_or(self.rate);
                let target = BETA * base;
                if let Some(acked) = acked {
                    self.observe_link(acked);
                }
                self.state = RateState::Hold;
                if target < self.rate {
                    self.rate = target;
                    return true;
                }
                false
            }
            Signal::Underuse => {
                self.state = RateState::Hold;
                false
            }
            Signal::Normal => {
                if self.state == RateState::Hold {
                    self.state = RateState::Increase;
                    return false;
                }
                let increased = match self.link {
                    Some(_) => {
                        let response = rtt.as_secs_f64() + 0.1;
                        let per_s = (1200.0 * 8.0 / response).max(4000.0);
                        self.rate + per_s * dt
                    }
                    None => {
                        let grown = self.rate * MULT_INCREASE_PER_S.powf(dt);
                        grown.max(self.rate + 1000.0 * dt)
                    }
                };
                let limited = match acked {
                    Some(acked) => increased.min(self.rate.max(1.5 * acked + 10_000.0)),
                    None => increased,
                };
                self.rate = limited.max(self.rate);
                false
            }
        }
    }

    /// Folds an acked bitrate at a decrease into the congestion point.
    fn observe_link(&mut self, acked: f64) {
        let link = match self.link {
            Some(l) if acked >= l.lower() => {
                let alpha = 0.05;
                let avg = (1.0 - alpha) * l.avg + alpha * acked;
                let dev = (avg - acked) / avg.max(1.0);
                let var = ((1.0 - alpha) * l.var + alpha * dev * dev).clamp(0.0025, 0.04);
                LinkCapacity { avg, var }
            }
            _ => LinkCapacity {
                avg: acked,
                var: 0.0025,
            },
        };
        self.link = Some(link);
    }
}

/// Loss-based limit on the estimate.
#[derive(Debug)]
struct LossLimit {
    /// Current limit (bit/s); none while loss is low.
    limit: Option<f64>,
    /// Packets reported lost in the current window.
    lost: u32,
    /// Packets reported in the current window.
    total: u32,
    /// Start of the current window.
    window_start: Instant,
    /// Last decrease.
    last_decrease: Option<Instant>,
    /// Loss fraction of the last complete window.
    last_loss: f64,
}

impl LossLimit {
    /// No limit, empty window.
    fn new(now: Instant) -> Self {
        LossLimit {
            limit: None,
            lost: 0,
            total: 0,
            window_start: now,
            last_decrease: None,
            last_loss: 0.0,
        }
    }

    /// Counts one reported packet.
    fn count(&mut self, received: bool) {
        self.total = self.total.saturating_add(1);
        if !received {
            self.lost = self.lost.saturating_add(1);
        }
    }

    /// Closes the window when it holds enough packets; returns whether the limit was lowered.
    fn update(&mut self, estimate: f64, delay_rate: f64, rtt: Duration, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start);
        if self.total < 20 || elapsed < Duration::from_millis(100) {
            return false;
        }
        let loss = f64::from(self.lost) / f64::from(self.total);
        self.last_loss = loss;
        self.lost = 0;
        self.total = 0;
        self.window_start = now;
        if loss > 0.10 {
            let spacing = Duration::from_millis(300) + rtt;
            let due = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= spacing);
            if due {
                let base = self.limit.map_or(estimate, |l| l.min(estimate));
                self.limit = Some(base * (1.0 - 0.5 * loss));
                self.last_decrease = Some(now);
                return true;
            }
        } else if loss < 0.02
            && let Some(limit) = self.limit
        {
            let dt = elapsed.min(Duration::from_secs(1)).as_secs_f64();
            let grown = (limit * MULT_INCREASE_PER_S.powf(dt)).max(limit + 1000.0 * dt);
            self.limit = (grown < delay_rate).then_some(grown);
        }
        false
    }
}

/// Receive statistics of one probe cluster.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    /// Cluster id.
    id: u32,
    /// Rate the cluster was sent at.
    target_bps: u64,
    /// Bytes in the cluster.
    bytes: u64,
    /// When the cluster was handed out.
    created: Instant,
    /// Received packets.
    count: u32,
    /// Bytes received plus bytes reported lost.
    reported: u64,
    /// Bytes received.
    received: u64,
    /// Earliest send time and its packet size.
    first_sent: Option<(Instant, u16)>,
    /// Latest send time and its packet size.
    last_sent: Option<(Instant, u16)>,
    /// Earliest receive time and its packet size.
    first_recv: Option<(Instant, u16)>,
    /// Latest receive time.
    last_recv: Option<Instant>,
}

impl Cluster {
    /// min(send rate, receive rate) of the received packets, when measurable.
    fn result(&self) -> Option<f64> {
        if self.count < PROBE_MIN_PACKETS {
            return None;
        }
        let (fs, _) = self.first_sent?;
        let (ls, ls_size) = self.last_sent?;
        let (fr, fr_size) = self.first_recv?;
        let lr = self.last_recv?;
        let recv_span = lr.saturating_duration_since(fr).as_secs_f64();
        if recv_span <= 0.0 {
            return None;
        }
        let recv_rate = (self.received - u64::from(fr_size)) as f64 * 8.0 / recv_span;
        let send_span = ls.saturating_duration_since(fs).as_secs_f64();
        let send_rate = if send_span > 0.0 {
            (self.received - u64::from(ls_size)) as f64 * 8.0 / send_span
        } else {
            f64::INFINITY
        };
        let rate = recv_rate.min(send_rate);
        (rate.is_finite() && rate > 0.0).then_some(rate)
    }
}

/// Probe scheduling and result collection.
#[derive(Debug, Default)]
struct Prober {
    /// Whether the startup probes were queued.
    started: bool,
    /// Rates of probes to run next.
    pending: VecDeque<u64>,
    /// Earliest time of the next probe.
    next_at: Option<Instant>,
    /// Last time a probe was handed out.
    last_probe_at: Option<Instant>,
    /// Next cluster id.
    next_id: u32,
    /// Clusters awaiting feedback.
    clusters: VecDeque<Cluster>,
}

impl Prober {
    /// Hands out a probe at `rate`.
    fn start(&mut self, rate: u64, now: Instant) -> Probe {
        let bytes = (rate as f64 * PROBE_DURATION.as_secs_f64() / 8.0) as u64;
        let bytes = bytes.max(PROBE_MIN_BYTES);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let send_time = Duration::from_secs_f64(bytes as f64 * 8.0 / rate.max(1) as f64);
        self.next_at =
            Some(now + send_time.min(Duration::from_secs(1)) + Duration::from_millis(50));
        self.last_probe_at = Some(now);
        if self.clusters.len() >= MAX_CLUSTERS {
            self.clusters.pop_front();
        }
        self.clusters.push_back(Cluster {
            id,
            target_bps: rate,
            bytes,
            created: now,
            count: 0,
            reported: 0,
            received: 0,
            first_sent: None,
            last_sent: None,
            first_recv: None,
            last_recv: None,
        });
        Probe {
            id,
            bitrate_bps: rate,
            bytes: usize::try_from(bytes).unwrap_or(usize::MAX),
        }
    }

    /// Records a received probe packet.
    fn on_received(&mut self, id: u32, sent: Instant, recv: Instant, size: u16) {
        let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return;
        };
        c.count += 1;
        c.received += u64::from(size);
        c.reported += u64::from(size);
        if c.first_sent.is_none_or(|(t, _)| sent < t) {
            c.first_sent = Some((sent, size));
        }
        if c.last_sent.is_none_or(|(t, _)| sent >= t) {
            c.last_sent = Some((sent, size));
        }
        if c.first_recv.is_none_or(|(t, _)| recv < t) {
            c.first_recv = Some((recv, size));
        }
        if c.last_recv.is_none_or(|t| recv > t) {
            c.last_recv = Some(recv);
        }
    }

    /// Records a lost probe packet.
    fn on_lost(&mut self, id: u32, size: u16) {
        if let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) {
            c.reported += u64::from(size);
        }
    }

    /// The best result of clusters whose feedback is complete: (rate, target, id).
    fn evaluate(&mut self, now: Instant) -> Option<(f64, u64, u32)> {
        let mut best: Option<(f64, u64, u32)> = None;
        self.clusters.retain(|c| {
            let complete = c.reported * 10 >= c.bytes * 8;
            let expired = now.saturating_duration_since(c.created) > PROBE_TIMEOUT;
            if !(complete || expired) {
                return true;
            }
            if let Some(rate) = c.result()
                && best.is_none_or(|(b, _, _)| rate > b)
            {
                best = Some((rate, c.target_bps, c.id));
            }
            false
        });
        best
    }
}
