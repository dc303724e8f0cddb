//! Sliding-window bitrate metering.
//!
//! [`BitrateMeter`] counts bytes into ten 100 ms buckets covering the last second. Adding and
//! reading are allocation-free and touch at most ten buckets.

use std::time::{Duration, Instant};

/// Number of buckets in the window.
const BUCKETS: usize = 10;
/// Width of one bucket.
const BUCKET_WIDTH: Duration = Duration::from_millis(100);
/// Bits per byte; the window is exactly 1 s, so bits in the window are bits per second.
const BITS_PER_BYTE: u64 = 8;

/// Sliding-window bitrate meter (1 s window in 10 buckets of 100 ms).
#[derive(Clone, Debug)]
pub struct BitrateMeter {
    /// Reference point bucket ticks are counted from (the first `add`).
    base: Option<Instant>,
    /// Byte counts; bucket `i` holds the tick `t` with `t % BUCKETS == i` in `head-9..=head`.
    buckets: [u64; BUCKETS],
    /// Tick of the newest bucket written.
    head: u64,
    /// Time of the last `add`.
    last: Option<Instant>,
}

impl Default for BitrateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl BitrateMeter {
    /// Creates an empty meter.
    pub fn new() -> Self {
        Self { base: None, buckets: [0; BUCKETS], head: 0, last: None }
    }

    /// The 100 ms tick `now` falls in (instants before the base count as tick 0).
    fn tick(base: Instant, now: Instant) -> u64 {
        let ms = now.saturating_duration_since(base).as_millis();
        u64::try_from(ms / BUCKET_WIDTH.as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts `bytes` as received at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        let base = *self.base.get_or_insert(now);
        let tick = Self::tick(base, now);
        if tick > self.head {
            // Clear the buckets the window slid over (all of them after a long pause).
            let advance = tick - self.head;
            if advance >= BUCKETS as u64 {
                self.buckets = [0; BUCKETS];
            } else {
                for t in self.head + 1..=tick {
                    self.buckets[(t % BUCKETS as u64) as usize] = 0;
                }
            }
            self.head = tick;
        }
        // A time older than the window is counted in the newest bucket rather than lost.
        let slot = if self.head - tick < BUCKETS as u64 { tick } else { self.head };
        let bucket = &mut self.buckets[(slot % BUCKETS as u64) as usize];
        *bucket = bucket.saturating_add(bytes as u64);
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }

    /// Bits per second over the last window, 0 when idle.
    pub fn bitrate_bps(&self, now: Instant) -> u64 {
        let Some(base) = self.base else {
            return 0;
        };
        let tick = Self::tick(base, now).max(self.head);
        // Buckets hold ticks head-9..=head; keep those within tick-9..=tick.
        let oldest = tick.saturating_sub(BUCKETS as u64 - 1);
        let lowest_stored = self.head.saturating_sub(BUCKETS as u64 - 1);
        let mut bytes = 0u64;
        for t in oldest.max(lowest_stored)..=self.head {
            bytes = bytes.saturating_add(self.buckets[(t % BUCKETS as u64) as usize]);
        }
        bytes.saturating_mul(BITS_PER_BYTE)
    }

    /// Time of the last add.
    pub fn last_activity(&self) -> Option<Instant> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn empty_meter_reads_zero() {
        let m = BitrateMeter::new();
        let now = Instant::now();
        assert_eq!(m.bitrate_bps(now), 0);
        assert_eq!(m.last_activity(), None);
        assert_eq!(BitrateMeter::default().bitrate_bps(now), 0);
    }

    #[test]
    fn steady_rate_is_measured() {
        // 1000 bytes every 10 ms = 100 kB/s = 800 kbps.
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        for i in 0..300 {
            m.add(t0 + ms(i * 10), 1000);
        }
        let now = t0 + ms(2990);
        let bps = m.bitrate_bps(now);
        // The newest bucket is complete here (ticks 20..=29 each hold 10 packets).
        assert_eq!(bps, 800_000);
        assert_eq!(m.last_activity(), Some(now));
    }

    #[test]
    fn rate_decays_to_zero_when_idle() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        for i in 0..100 {
            m.add(t0 + ms(i * 10), 500);
        }
        let last = t0 + ms(990);
        assert_eq!(m.bitrate_bps(last), 400_000);
        // Half a window later about half of the bytes are still inside it.
        let half = m.bitrate_bps(last + ms(500));
        assert!(half > 150_000 && half < 250_000, "{half}");
        assert_eq!(m.bitrate_bps(last + ms(1000)), 0);
        assert_eq!(m.bitrate_bps(last + Duration::from_secs(3600)), 0);
        assert_eq!(m.last_activity(), Some(last));
    }

    #[test]
    fn long_pause_clears_old_buckets() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.add(t0, 10_000);
        m.add(t0 + ms(50), 10_000);
        let later = t0 + Duration::from_secs(5);
        m.add(later, 100);
        assert_eq!(m.bitrate_bps(later), 800);
    }

    #[test]
    fn partial_slide_clears_only_expired_buckets() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.add(t0, 1000); // tick 0
        m.add(t0 + ms(500), 1000); // tick 5
        m.add(t0 + ms(1250), 1000); // tick 12: tick 0 and 1, 2 expire, tick 5 stays
        assert_eq!(m.bitrate_bps(t0 + ms(1250)), 16_000);
        // At tick 15 the tick-5 bytes have left the window.
        assert_eq!(m.bitrate_bps(t0 + ms(1500)), 8_000);
    }

    #[test]
    fn out_of_order_times_are_tolerated() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.add(t0 + ms(2000), 100);
        // Before the base, and far before the window: both still counted, never a panic.
        m.add(t0, 100);
        m.add(t0 + ms(1950), 100);
        assert_eq!(m.bitrate_bps(t0 + ms(2000)), 2400);
        assert_eq!(m.last_activity(), Some(t0 + ms(2000)));
        // Querying at a time before the newest bucket does not underflow.
        assert_eq!(m.bitrate_bps(t0), 2400);
    }

    #[test]
    fn huge_byte_counts_saturate() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.add(t0, usize::MAX);
        m.add(t0, usize::MAX);
        assert_eq!(m.bitrate_bps(t0), u64::MAX);
    }
}
