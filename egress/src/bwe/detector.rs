//! The delay-based overuse detector: send groups, the trendline of their delay variation and an
//! adaptive threshold.

use super::*;

/// Output of the overuse detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    /// Queues are stable.
    Normal,
    /// Queues are growing.
    Overuse,
    /// Queues are draining.
    Underuse,
}

/// Packets sent close together, compared as a unit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Group {
    /// Send time of the first packet.
    pub(super) first_sent: Instant,
    /// Send time of the last packet.
    pub(super) last_sent: Instant,
    /// Latest receive time in the group.
    pub(super) last_recv: Instant,
}

/// Delay-based overuse detector: grouping, trendline, adaptive threshold.
#[derive(Debug)]
pub(super) struct Detector {
    /// Group being filled.
    pub(super) current: Option<Group>,
    /// Last completed group.
    pub(super) prev: Option<Group>,
    /// Receive time origin of the regression's x axis.
    pub(super) origin: Option<Instant>,
    /// Accumulated delay variation (ms).
    pub(super) acc_delay: f64,
    /// Smoothed accumulated delay (ms).
    pub(super) smoothed: f64,
    /// (arrival ms, smoothed delay ms) of the last groups.
    pub(super) samples: VecDeque<(f64, f64)>,
    /// Delay samples seen since the last reset (capped).
    pub(super) num_deltas: u32,
    /// Last slope.
    pub(super) trend: f64,
    /// Adaptive threshold.
    pub(super) threshold: f64,
    /// Arrival ms of the last threshold update.
    pub(super) last_threshold_ms: Option<f64>,
    /// Time spent over the threshold (ms), negative when not over.
    pub(super) time_over: f64,
    /// Consecutive samples over the threshold.
    pub(super) over_count: u32,
    /// Current detector output.
    pub(super) signal: Signal,
}

impl Detector {
    /// A detector with no history.
    pub(super) fn new() -> Self {
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
    pub(super) fn reset(&mut self) {
        *self = Detector {
            threshold: self.threshold,
            ..Detector::new()
        };
    }

    /// Feeds one received packet, in send order.
    pub(super) fn on_packet(&mut self, sent: Instant, recv: Instant) {
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
    pub(super) fn on_group(&mut self, prev: Group, cur: Group) {
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
    pub(super) fn detect(&mut self, prev_trend: f64, send_delta: f64, arrival_ms: f64) {
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
    pub(super) fn update_threshold(&mut self, modified: f64, arrival_ms: f64) {
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
pub(super) fn signed_ms(a: Instant, b: Instant) -> f64 {
    if a >= b {
        a.duration_since(b).as_secs_f64() * 1000.0
    } else {
        -(b.duration_since(a).as_secs_f64() * 1000.0)
    }
}

/// Least-squares slope of `(x, y)` points.
pub(super) fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
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
