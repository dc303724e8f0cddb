//! The delay-based AIMD rate controller and the congestion point it remembers.

use super::*;

/// State of the AIMD controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RateState {
    /// Keep the rate.
    Hold,
    /// Increase the rate.
    Increase,
}

/// Average acked bitrate at past decreases: the congestion point.
#[derive(Debug, Clone, Copy)]
pub(super) struct LinkCapacity {
    /// Average (bit/s).
    pub(super) avg: f64,
    /// Relative variance.
    pub(super) var: f64,
}

impl LinkCapacity {
    /// Upper edge of the "near the congestion point" band.
    pub(super) fn upper(&self) -> f64 {
        self.avg * (1.0 + 3.0 * self.var.sqrt())
    }

    /// Lower edge of the band.
    pub(super) fn lower(&self) -> f64 {
        self.avg * (1.0 - 3.0 * self.var.sqrt()).max(0.0)
    }
}

/// Delay-based AIMD rate controller.
#[derive(Debug)]
pub(super) struct Aimd {
    /// Current rate (bit/s).
    pub(super) rate: f64,
    /// Controller state.
    pub(super) state: RateState,
    /// Time of the last update.
    pub(super) last_update: Instant,
    /// Congestion point, when known.
    pub(super) link: Option<LinkCapacity>,
}

impl Aimd {
    /// A controller starting at `rate`.
    pub(super) fn new(rate: f64, now: Instant) -> Self {
        Aimd {
            rate,
            state: RateState::Hold,
            last_update: now,
            link: None,
        }
    }

    /// Applies the detector signal; returns whether the rate was decreased.
    pub(super) fn update(&mut self, signal: Signal, acked: Option<f64>, rtt: Duration, now: Instant) -> bool {
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
    pub(super) fn observe_link(&mut self, acked: f64) {
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
