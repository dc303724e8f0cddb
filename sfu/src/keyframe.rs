//! Upstream keyframe request throttling.
//!
//! Many viewers switching layers at once would each ask the publisher for a keyframe;
//! [`KeyframeThrottle`] lets one request per layer through per interval.

use std::time::{Duration, Instant};

/// Slots: one per simulcast layer (0, 1, 2) plus one shared by any out-of-range layer index.
const SLOTS: usize = 4;

/// Upstream keyframe request throttle: at most one request per layer per interval (default 300 ms).
#[derive(Clone, Debug)]
pub struct KeyframeThrottle {
    /// Minimum time between two requests for the same layer.
    interval: Duration,
    /// When a request for each slot last went upstream.
    last: [Option<Instant>; SLOTS],
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(Self::DEFAULT_INTERVAL)
    }
}

impl KeyframeThrottle {
    /// Default minimum time between two requests for the same layer.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(300);

    /// Creates a throttle letting one request per layer through every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: [None; SLOTS] }
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
        }
        allowed
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
        let mut k = KeyframeThrottle::default();
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
        let mut k = KeyframeThrottle::default();
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
        let mut k = KeyframeThrottle::default();
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
        let mut k = KeyframeThrottle::default();
        assert!(k.allow(0, t0));
        assert!(!k.allow(0, t0 - Duration::from_secs(5)));
        assert!(k.allow(0, t0 + ms(300)));
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
