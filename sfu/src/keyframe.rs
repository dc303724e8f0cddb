//! Upstream keyframe request throttling.
//!
//! Many viewers switching layers at once would each ask the publisher for a keyframe;
//! [`KeyframeThrottle`] lets one request per layer through per interval. A request that arrives
//! inside the interval is not forgotten: it goes out when the interval ends
//! ([`KeyframeThrottle::take_due`]), unless a keyframe of the layer arrives first and answers it.
//! Viewers that have not seen a frame yet ([`KeyframeReason::Join`]) are served on a shorter
//! interval than refreshes (layer switches, recovery from a congested send queue, viewers' own
//! PLIs): joins decide how long a viewer waits for its first frame, while refreshes come in
//! floods when a node is overloaded, and keyframes (several times a delta frame's size) make
//! that overload worse.

use std::time::{Duration, Instant};

/// Slots: one per simulcast layer (0, 1, 2) plus one shared by any out-of-range layer index.
const SLOTS: usize = 4;

/// Why a keyframe is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyframeReason {
    /// A viewer or downstream relay is waiting for its first frame of the layer.
    Join,
    /// Anything else: a layer switch, a congested viewer skipping ahead, a viewer's PLI, the
    /// archive's segment boundary.
    Refresh,
}

/// Upstream keyframe request throttle: at most one request per layer per interval (200 ms
/// for joins, 500 ms for refreshes by default).
#[derive(Clone, Debug)]
pub struct KeyframeThrottle {
    /// Minimum time between a request and a following join request for the same layer.
    join_interval: Duration,
    /// Minimum time between a request and a following refresh request for the same layer.
    refresh_interval: Duration,
    /// When a request for each slot last went upstream.
    last: [Option<Instant>; SLOTS],
    /// Slots with a throttled request waiting for its interval to end, and that interval.
    pending: [Option<Duration>; SLOTS],
}

impl Default for KeyframeThrottle {
    fn default() -> Self {
        Self::new(Self::JOIN_INTERVAL, Self::REFRESH_INTERVAL)
    }
}

impl KeyframeThrottle {
    /// Default interval for joins: a viewer that joins just after a keyframe waits at most this
    /// long for the next, and joins ask a publisher for at most five keyframes a second per
    /// layer however many viewers arrive.
    pub const JOIN_INTERVAL: Duration = Duration::from_millis(200);
    /// Default interval for refreshes: at most two keyframes a second per layer.
    pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

    /// Creates a throttle with the given minimum intervals for join and refresh requests.
    pub fn new(join_interval: Duration, refresh_interval: Duration) -> Self {
        Self { join_interval, refresh_interval, last: [None; SLOTS], pending: [None; SLOTS] }
    }

    fn interval(&self, reason: KeyframeReason) -> Duration {
        match reason {
            KeyframeReason::Join => self.join_interval,
            KeyframeReason::Refresh => self.refresh_interval,
        }
    }

    /// True when a request for `layer` may go upstream now (and records it); false when throttled.
    ///
    /// Layers 3 and above share one slot of their own. A `now` earlier than the last allowed
    /// request counts as no time having passed.
    pub fn allow(&mut self, layer: u8, reason: KeyframeReason, now: Instant) -> bool {
        let interval = self.interval(reason);
        let slot = usize::from(layer).min(SLOTS - 1);
        let last = &mut self.last[slot];
        let allowed = match *last {
            None => true,
            Some(prev) => now.saturating_duration_since(prev) >= interval,
        };
        if allowed {
            *last = Some(now);
            self.pending[slot] = None;
        } else {
            let p = &mut self.pending[slot];
            *p = Some(p.map_or(interval, |held| held.min(interval)));
        }
        allowed
    }

    /// A keyframe of `layer` arrived: it answers a request held back by the throttle, which
    /// then need not go out (every viewer waiting at this moment starts on this keyframe).
    pub fn keyframe_arrived(&mut self, layer: u8) {
        self.pending[usize::from(layer).min(SLOTS - 1)] = None;
    }

    /// When the request held for `slot` may go out (None: nothing held). A request is only
    /// held after one went through, so `last` is set whenever `pending` is.
    fn held_until(&self, slot: usize) -> Option<Instant> {
        Some(self.last[slot]? + self.pending[slot]?)
    }

    /// When the earliest held request's interval ends, if a request is held.
    pub fn next_due(&self) -> Option<Instant> {
        (0..SLOTS).filter_map(|slot| self.held_until(slot)).min()
    }

    /// Throttled requests whose interval has ended, as layer slots (0..=3, 3 standing for every
    /// out-of-range layer); each is recorded as sent now. Cheap when nothing is pending.
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = u8> + '_ {
        (0..SLOTS).filter_map(move |slot| {
            if now < self.held_until(slot)? {
                return None;
            }
            self.pending[slot] = None;
            self.last[slot] = Some(now);
            Some(slot as u8)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const J: KeyframeReason = KeyframeReason::Join;
    const R: KeyframeReason = KeyframeReason::Refresh;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_request_passes_then_throttles() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(0, J, t0));
        assert!(!k.allow(0, J, t0));
        assert!(!k.allow(0, J, t0 + ms(299)));
        assert!(k.allow(0, J, t0 + ms(300)));
        assert!(!k.allow(0, J, t0 + ms(301)));
        assert!(k.allow(0, J, t0 + ms(600)));
    }

    #[test]
    fn throttled_requests_do_not_extend_the_interval() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(1, J, t0));
        for i in 1..30 {
            assert!(!k.allow(1, J, t0 + ms(i * 10)));
        }
        // Measured from the last request that went through, not the last attempt.
        assert!(k.allow(1, J, t0 + ms(300)));
    }

    #[test]
    fn layers_are_independent() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(1000), ms(1000));
        assert!(k.allow(0, J, t0));
        assert!(k.allow(1, J, t0));
        assert!(k.allow(2, J, t0));
        assert!(!k.allow(0, J, t0 + ms(10)));
        assert!(!k.allow(1, J, t0 + ms(10)));
        assert!(!k.allow(2, J, t0 + ms(10)));
        assert!(k.allow(1, J, t0 + ms(1000)));
        assert!(!k.allow(2, J, t0 + ms(999)));
    }

    #[test]
    fn out_of_range_layers_share_their_own_slot() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(3, J, t0));
        assert!(!k.allow(200, J, t0));
        assert!(!k.allow(u8::MAX, J, t0 + ms(100)));
        // They do not consume layer 2's budget.
        assert!(k.allow(2, J, t0));
        assert!(k.allow(u8::MAX, J, t0 + ms(300)));
    }

    #[test]
    fn time_going_backwards_is_throttled_not_a_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(0, J, t0));
        assert!(!k.allow(0, J, t0 - Duration::from_secs(5)));
        assert!(k.allow(0, J, t0 + ms(300)));
    }

    #[test]
    fn a_throttled_request_goes_out_when_the_interval_ends() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert_eq!(k.take_due(t0).count(), 0, "nothing pending");
        assert!(k.allow(1, J, t0));
        assert!(!k.allow(1, J, t0 + ms(50)));
        assert!(!k.allow(1, J, t0 + ms(120)), "several throttled requests make one pending");
        assert_eq!(k.take_due(t0 + ms(299)).count(), 0, "not before the interval ends");
        assert_eq!(k.next_due(), Some(t0 + ms(300)), "the owner wakes up for it");
        assert_eq!(k.take_due(t0 + ms(300)).collect::<Vec<_>>(), [1]);
        assert_eq!(k.take_due(t0 + ms(301)).count(), 0, "taken once");
        assert_eq!(k.next_due(), None);
        // The pending request counted as sent: the next one is throttled from then.
        assert!(!k.allow(1, J, t0 + ms(400)));
        assert_eq!(k.take_due(t0 + ms(600)).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn a_keyframe_arriving_answers_the_pending_request() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(2, J, t0));
        assert!(!k.allow(2, J, t0 + ms(5)), "asked while the keyframe is on its way");
        k.keyframe_arrived(2);
        assert_eq!(k.take_due(t0 + ms(300)).count(), 0, "answered by the keyframe that came");
        assert!(!k.allow(2, J, t0 + ms(100)), "a request after the keyframe is throttled as usual");
        assert_eq!(k.take_due(t0 + ms(300)).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn a_request_let_through_clears_the_pending_one() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(ms(300), ms(300));
        assert!(k.allow(0, J, t0));
        assert!(!k.allow(0, J, t0 + ms(10)));
        assert!(k.allow(0, J, t0 + ms(300)));
        assert_eq!(k.take_due(t0 + ms(900)).count(), 0);
    }

    #[test]
    fn refreshes_wait_longer_than_joins() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::default();
        assert!(k.allow(2, R, t0));
        assert!(!k.allow(2, R, t0 + ms(200)), "a refresh waits 500 ms");
        assert!(k.allow(2, J, t0 + ms(200)), "a join waits 200 ms");
        assert!(!k.allow(2, R, t0 + ms(300)));
        assert_eq!(k.take_due(t0 + ms(699)).count(), 0);
        assert_eq!(k.take_due(t0 + ms(700)).collect::<Vec<_>>(), [2]);
        // A held refresh is promoted when a join arrives: it goes out on the join interval.
        assert!(k.allow(1, J, t0));
        assert!(!k.allow(1, R, t0 + ms(50)));
        assert!(!k.allow(1, J, t0 + ms(60)));
        assert_eq!(k.take_due(t0 + ms(200)).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn zero_interval_never_throttles() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::ZERO, Duration::ZERO);
        assert!(k.allow(0, J, t0));
        assert!(k.allow(0, J, t0));
        assert!(k.allow(0, J, t0));
    }
}
