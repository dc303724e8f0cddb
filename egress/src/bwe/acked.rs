//! The acked bitrate: what the receiver got over a sliding window of its receive time.

use super::*;

/// Acked bitrate over a sliding window of receive time.
#[derive(Debug, Default)]
pub(super) struct AckedRate {
    /// The instant receive times are counted from (the first packet's, moved forward when the
    /// offsets would no longer fit).
    pub(super) origin: Option<Instant>,
    /// (receive time in µs since `origin`, size) of received packets, receive time
    /// non-decreasing: 8 bytes a packet, about 100 in a window at 2 Mbit/s.
    pub(super) window: VecDeque<(u32, u16)>,
    /// Sum of sizes in `window`.
    pub(super) bytes: u64,
}

/// Receive times are rebased before their offset from the origin passes this (about 35 min).
pub(super) const ACKED_REBASE_US: u64 = 1 << 31;

impl AckedRate {
    /// Adds one received packet.
    pub(super) fn push(&mut self, recv: Instant, size: u16) {
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
    pub(super) fn restart(&mut self, origin: Instant) {
        self.window.clear();
        self.bytes = 0;
        self.origin = Some(origin);
    }

    /// Bitrate over the window, when it holds enough data.
    pub(super) fn bps(&self) -> Option<f64> {
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
