//! The loss-based limit on the estimate.

use super::*;

/// Loss-based limit on the estimate.
#[derive(Debug)]
pub(super) struct LossLimit {
    /// Current limit (bit/s); none while loss is low.
    pub(super) limit: Option<f64>,
    /// Packets reported lost in the current window.
    pub(super) lost: u32,
    /// Packets reported in the current window.
    pub(super) total: u32,
    /// Start of the current window.
    pub(super) window_start: Instant,
    /// Last decrease.
    pub(super) last_decrease: Option<Instant>,
    /// Loss fraction of the last complete window.
    pub(super) last_loss: f64,
}

impl LossLimit {
    /// No limit, empty window.
    pub(super) fn new(now: Instant) -> Self {
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
    pub(super) fn count(&mut self, received: bool) {
        self.total = self.total.saturating_add(1);
        if !received {
            self.lost = self.lost.saturating_add(1);
        }
    }

    /// Closes the window when it holds enough packets; returns whether the limit was lowered.
    pub(super) fn update(&mut self, estimate: f64, delay_rate: f64, rtt: Duration, now: Instant) -> bool {
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
