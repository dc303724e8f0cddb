//! Upstream keyframe request throttling.
//!
//! Many viewers switching layers at once would each ask the publisher for a keyframe;
//! [`KeyframeThrottle`] lets one request per layer through per interval. A request that arrives
//! inside the interval is not forgotten: it goes out when the interval ends ([`KeyframeThrottle::take_due`]),
//! so a viewer that joins just after a keyframe waits at most one interval for the next.

use std::time::{Duration, Instant};

/// Slots: one per simulcast layer (0, 1, 2) plus one shared by any out-of-range layer index.
const SLOTS: usize = 4;

/// Upstream keyframe request throttle: at most one request per layer per interval (default 200 ms).
#[derive(Clone, Debug)]
pub struct KeyframeThrottle {
    /// Minimum time between two requests for the same layer.
    interval: Duration,
    /// When a request for each slot last went upstream.
    last: [Option<Instant>; SLOTS],
    /// Slots with a throttled request waiting for the interval to end.
    pending: [bool; SLOTS],
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INTERVAL)
    }
}

impl KeyframeThrottle {
    /// Default minimum time between two requests for the same layer: a viewer that joins just
    /// after a keyframe waits at most this long for the next, and a publisher is asked for at
    /// most five keyframes a second per layer however many viewers join.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

    /// Creates a throttle letting one request per layer through every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: [None; SLOTS], pending: [false; SLOTS] }
    }

    /// True when a request for `layer` may go upstream now (and records it); false when throttled.
    ///
    /// Layers 3 and above share one slot of their own. A `now` earlier than the last allowed
    /// request counts as no time having passed.
    pub fn allow(&mut self, layer: u8, now: Instant) -> bool {
        let slot = usize::from(layer).min(SLOTS - 1);
        let last = &mut self.last[slot];
        let allowed = match *last {
            None => true,
            Some(prev) => now.saturating_duration_since(prev) >= self.interval,
        };
        if allowed {
            *last = Some(now);
            self.pending[slot] = false;
        } else {
            self.pending[slot] = true;
        }
        allowed
    }

    /// Throttled requests whose interval has ended, as layer slots (0..=3, 3 standing for every
    /// out-of-range layer); each is recorded as sent now. Cheap when nothing is pending.
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = u8> + '_ {
        let interval = self.interval;
        (0..SLOTS).filter_map(move |slot| {
            if !self.pending[slot] {
                return None;
            }
            let due = self.last[slot].is_none_or(|prev| now.saturating_duration_since(prev) >= interval);
            if !due {
                return None;
            }
            self.pending[slot] = false;
            self.last[slot] = Some(now);
            Some(slot as u8)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_request_passes_then_throttles() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300));
        assert!(k.allow(0, t0));
        assert!(!k.allow(0, t0));
        assert!(!k.allow(0, t0 + ms(299)));
        assert!(k.allow(0, t0 + ms(300)));
        assert!(!k.allow(0, t0 + ms(301)));
        assert!(k.allow(0, t0 + ms(600)));
    }

    #[test]
    fn throttled_requests_do_not_extend_the_interval() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300));
        assert!(k.allow(1, t0));
        for i in 1..30 {
            assert!(!k.allow(1, t0 + ms(i * 10)));
        }
        // Measured from the last request that went through, not the last attempt.
        assert!(k.allow(1, t0 + ms(300)));
    }

    #[test]
    fn layers_are_independent() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(1000));
        assert!(k.allow(0, t0));
        assert!(k.allow(1, t0));
        assert!(k.allow(2, t0));
        assert!(!k.allow(0, t0 + ms(10)));
        assert!(!k.allow(1, t0 + ms(10)));
        assert!(!k.allow(2, t0 + ms(10)));
        assert!(k.allow(1, t0 + ms(1000)));
        assert!(!k.allow(2, t0 + ms(999)));
    }

    #[test]
    fn out_of_range_layers_share_their_own_slot() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300));
        assert!(k.allow(3, t0));
        assert!(!k.allow(200, t0));
        assert!(!k.allow(u8::MAX, t0 + ms(100)));
        // They do not consume layer 2's budget.
        assert!(k.allow(2, t0));
        assert!(k.allow(u8::MAX, t0 + ms(300)));
    }

    #[test]
    fn time_going_backwards_is_throttled_not_a_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut k = KeyframeThrottle::new(ms(300));
        assert!(k.allow(0, t0));
        assert!(!k.allow(0, t0 - Duration::from_secs(5)));
        assert!(k.allow(0, t0 + ms(300)));
    }

    #[test]
    fn a_throttled_request_goes_out_when_the_interval_ends() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300));
        assert_eq!(k.take_due(t0).count(), 0, "nothing pending");
        assert!(k.allow(1, t0));
        assert!(!k.allow(1, t0 + ms(50)));
        assert!(!k.allow(1, t0 + ms(120)), "several throttled requests make one pending");
        assert_eq!(k.take_due(t0 + ms(299)).count(), 0, "not before the interval ends");
        assert_eq!(k.take_due(t0 + ms(300)).collect::<Vec<_>>(), [1]);
        assert_eq!(k.take_due(t0 + ms(301)).count(), 0, "taken once");
        // The pending request counted as sent: the next one is throttled from then.
        assert!(!k.allow(1, t0 + ms(400)));
        assert_eq!(k.take_due(t0 + ms(600)).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_request_let_through_clears_the_pending_one() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300));
        assert!(k.allow(0, t0));
        assert!(!k.allow(0, t0 + ms(10)));
        assert!(k.allow(0, t0 + ms(300)));
        assert_eq!(k.take_due(t0 + ms(900)).count(), 0);
    }

    #[test]
    fn zero_interval_never_throttles() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::ZERO);
        assert!(k.allow(0, t0));
        assert!(k.allow(0, t0));
        assert!(k.allow(0, t0));
    }
}
