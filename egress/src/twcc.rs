//! Send register for transport-wide sequence numbers (draft-holmer-rmcat-transport-wide-cc-extensions-01).
//!
//! Every packet leaving on the transport gets the next sequence number and a compact record in a
//! fixed ring. Feedback from the receiver (already parsed by str0m) is matched against the ring and
//! turned into [`PacketResult`]s for the bandwidth estimator. Nothing in the feedback can grow the
//! memory used: sequence numbers outside the ring are ignored.

use std::time::{Duration, Instant};

use str0m::rtp::rtcp::Twcc;

/// What feedback said about one sent packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    /// Extended transport-wide sequence number.
    pub seq: u64,
    /// When the packet was sent (local clock).
    pub sent: Instant,
    /// Packet size in bytes.
    pub size: u16,
    /// Arrival in the remote clock mapped to an `Instant`; only differences are meaningful.
    pub received: Option<Instant>,
    /// Probe cluster id, when the packet was part of a probe.
    pub probe: Option<u32>,
}

/// The first extended sequence number handed out; keeps extension arithmetic away from zero.
const FIRST_SEQ: u64 = 1 << 16;

/// Largest ring size; half the 16-bit sequence space keeps extension unambiguous.
const MAX_CAPACITY: usize = 1 << 15;

/// Span of the 24-bit reference time (64 ms units).
const REF_TIME_SPAN: i64 = 1 << 24;

/// Feedback state of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    /// No feedback seen yet.
    Unreported = 0,
    /// Reported as not received (may still be reported received later).
    Lost = 1,
    /// Reported as received; never reported again.
    Acked = 2,
}

/// Compact record of one sent packet (12 bytes).
#[derive(Debug, Clone, Copy)]
struct Record {
    /// Send time in microseconds since the register's epoch, modulo 2^32 (about 71 minutes;
    /// read back against the newest packet's time, see [`SendRegister::sent_at`]).
    sent_us: u32,
    /// Probe cluster id (valid when `has_probe`).
    probe: u32,
    /// Size in bytes (saturated).
    size: u16,
    /// Feedback state.
    state: State,
    /// Whether `probe` is set.
    has_probe: bool,
}

const EMPTY: Record = Record {
    sent_us: 0,
    probe: 0,
    size: 0,
    state: State::Unreported,
    has_probe: false,
};

/// Bounded ring of sent packets keyed by extended transport-wide sequence number.
#[derive(Debug)]
pub struct SendRegister {
    /// Ring storage; the record for `seq` lives at `seq % ring.len()`.
    ring: Vec<Record>,
    /// Next extended sequence number to assign.
    next: u64,
    /// Local time of the first registered packet; send times are offsets from it.
    epoch: Option<Instant>,
    /// The newest packet's send time in microseconds since `epoch`.
    newest_us: u64,
    /// Last feedback identity seen (feedback_count, base_seq, status_count), for deduplication.
    last_feedback: Option<(u8, u16, u16)>,
    /// Last raw 24-bit reference time and its unwrapped value.
    ref_time: Option<(u32, i64)>,
}

impl SendRegister {
    /// Creates a register remembering the last `capacity` packets (clamped to 1..=32768).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        SendRegister {
            ring: vec![EMPTY; capacity],
            next: FIRST_SEQ,
            epoch: None,
            newest_us: 0,
            last_feedback: None,
            ref_time: None,
        }
    }

    /// Number of packets the register remembers.
    pub fn capacity(&self) -> usize {
        self.ring.len()
    }

    /// Assigns the next transport-wide sequence number (wire value) to a packet of `size` bytes sent at `now`.
    pub fn register(&mut self, now: Instant, size: usize, probe: Option<u32>) -> u16 {
        let epoch = *self.epoch.get_or_insert(now);
        let sent_us =
            u64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX);
        self.newest_us = self.newest_us.max(sent_us);
        let seq = self.next;
        self.next += 1;
        let idx = self.index(seq);
        self.ring[idx] = Record {
            sent_us: sent_us as u32,
            probe: probe.unwrap_or(0),
            size: u16::try_from(size).unwrap_or(u16::MAX),
            state: State::Unreported,
            has_probe: probe.is_some(),
        };
        seq as u16
    }

    /// Applies one feedback packet; appends a result for every reported packet still in the register (received or lost). Duplicate/old feedback is ignored (feedback_count / already-acked).
    pub fn on_feedback(&mut self, fb: &Twcc, out: &mut Vec<PacketResult>) {
        let Some(epoch) = self.epoch else {
            return;
        };
        let identity = (fb.feedback_count, fb.base_seq, fb.status_count);
        if self.last_feedback == Some(identity) {
            return;
        }
        self.last_feedback = Some(identity);

        let oldest = self.oldest();
        let newest = self.next - 1;
        // Extend the base sequence to the value nearest the newest registered packet.
        let base = extend(newest, fb.base_seq);
        let end = base.saturating_add(u64::from(fb.status_count));
        if end <= oldest || base > newest {
            return;
        }

        let Some(time_zero) = self.time_zero(epoch, fb.reference_time) else {
            return;
        };

        // `base` is passed as the extension point so str0m's iterator yields exactly `base..end`.
        let iter = fb.clone().into_iter(time_zero, base.into());
        for (seq, _status, received) in iter {
            let seq: u64 = *seq;
            if seq > newest {
                break;
            }
            if seq < oldest {
                continue;
            }
            let idx = self.index(seq);
            let rec = &mut self.ring[idx];
            let report = match (rec.state, received.is_some()) {
                (State::Acked, _) => false,
                (State::Lost, false) => false,
                (State::Lost, true) | (State::Unreported, _) => true,
            };
            if !report {
                continue;
            }
            rec.state = if received.is_some() {
                State::Acked
            } else {
                State::Lost
            };
            out.push(PacketResult {
                seq,
                sent: epoch + Duration::from_micros(Self::sent_at(self.newest_us, rec.sent_us)),
                size: rec.size,
                received,
                probe: rec.has_probe.then_some(rec.probe),
            });
        }
    }

    /// A record's full send time (µs since the epoch) from its low 32 bits: the one at or
    /// before the newest packet's (records are at most the ring's length of packets old).
    fn sent_at(newest_us: u64, low: u32) -> u64 {
        newest_us.saturating_sub(u64::from((newest_us as u32).wrapping_sub(low)))
    }

    /// Ring index of an extended sequence number.
    fn index(&self, seq: u64) -> usize {
        (seq % self.ring.len() as u64) as usize
    }

    /// Oldest extended sequence number still in the ring.
    fn oldest(&self) -> u64 {
        self.next
            .saturating_sub(self.ring.len() as u64)
            .max(FIRST_SEQ)
    }

    /// The `time_zero` to hand str0m's iterator so that remote times stay continuous across
    /// 24-bit reference time wraps. Remote times are placed one full reference span after the
    /// epoch so that a step backwards cannot fall before it.
    fn time_zero(&mut self, epoch: Instant, raw: u32) -> Option<Instant> {
        let raw = raw & 0x00ff_ffff;
        let unwrapped = match self.ref_time {
            None => i64::from(raw),
            Some((last_raw, last)) => {
                let mut diff = (i64::from(raw) - i64::from(last_raw)).rem_euclid(REF_TIME_SPAN);
                if diff >= REF_TIME_SPAN / 2 {
                    diff -= REF_TIME_SPAN;
                }
                last + diff
            }
        };
        // Whole wraps between the raw and the unwrapped value, relative to one span of margin.
        let cycles = (unwrapped - i64::from(raw)).div_euclid(REF_TIME_SPAN) + 1;
        if !(0..=1024).contains(&cycles) {
            // Far outside anything plausible: start over from this reference time.
            self.ref_time = Some((raw, i64::from(raw)));
            return epoch.checked_add(span_duration(1)?);
        }
        self.ref_time = Some((raw, unwrapped));
        epoch.checked_add(span_duration(cycles as u64)?)
    }
}

/// Duration of `n` full 24-bit reference time spans.
fn span_duration(n: u64) -> Option<Duration> {
    let ms = (REF_TIME_SPAN as u64).checked_mul(64)?.checked_mul(n)?;
    Some(Duration::from_millis(ms))
}

/// Extends a 16-bit sequence number to the 64-bit value nearest `reference`.
fn extend(reference: u64, wire: u16) -> u64 {
    let diff = wire.wrapping_sub(reference as u16) as i16;
    reference.saturating_add_signed(i64::from(diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_nearest() {
        assert_eq!(extend(65_536, 0), 65_536);
        assert_eq!(extend(65_536 + 65_535, 0), 131_072);
        assert_eq!(extend(131_073, 65_535), 131_071);
        assert_eq!(extend(70_000, 70_000u64 as u16), 70_000);
    }

    #[test]
    fn send_times_read_back_across_the_32_bit_wrap() {
        let wrap = 1u64 << 32;
        // The newest packet just past a wrap; a record from just before it.
        assert_eq!(SendRegister::sent_at(wrap + 5, (wrap - 10) as u32), wrap - 10);
        assert_eq!(SendRegister::sent_at(wrap + 5, 5), wrap + 5);
        assert_eq!(SendRegister::sent_at(3 * wrap + 7, 2), 3 * wrap + 2);
        // Never before the epoch.
        assert_eq!(SendRegister::sent_at(3, 10), 0);
    }

    #[test]
    fn record_is_compact() {
        assert!(std::mem::size_of::<Record>() <= 12);
    }

    #[test]
    fn bounded_after_a_million() {
        let mut reg = SendRegister::new(1024);
        let t0 = Instant::now();
        for i in 0..1_000_000u64 {
            let now = t0 + Duration::from_micros(i * 100);
            reg.register(now, 1200, None);
        }
        assert_eq!(reg.ring.len(), 1024);
        assert_eq!(reg.ring.capacity(), 1024);
        assert_eq!(reg.oldest(), reg.next - 1024);
    }

    #[test]
    fn capacity_is_clamped() {
        assert_eq!(SendRegister::new(0).capacity(), 1);
        assert_eq!(SendRegister::new(usize::MAX).capacity(), MAX_CAPACITY);
    }

    #[test]
    fn reference_time_wraps_forward() {
        let mut reg = SendRegister::new(16);
        let t0 = Instant::now();
        let a = reg.time_zero(t0, 0x00ff_fff0).unwrap();
        let b = reg.time_zero(t0, 0x0000_0010).unwrap();
        // a + 0xfffff0 * 64 ms and b + 0x10 * 64 ms are 0x20 * 64 ms apart.
        let ta = a + Duration::from_millis(0x00ff_fff0 * 64);
        let tb = b + Duration::from_millis(0x10 * 64);
        assert_eq!(tb - ta, Duration::from_millis(0x20 * 64));
        // And stepping back again is continuous too.
        let c = reg.time_zero(t0, 0x00ff_fff8).unwrap();
        let tc = c + Duration::from_millis(0x00ff_fff8 * 64);
        assert_eq!(tc - ta, Duration::from_millis(8 * 64));
    }
}
