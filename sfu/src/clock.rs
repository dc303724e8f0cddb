//! The publisher's clock: RTCP sender reports pair each RTP source's timestamps with the
//! publisher's wall clock (NTP). With them, every packet gets the local instant of its capture
//! on one timeline shared by all of the publisher's sources, so audio and video keep the sync the
//! publisher gave them whatever each one met on the network: the recorder places audio by it,
//! and this node's own sender reports downstream carry it (str0m derives them from the wall
//! clock each packet is written with), so sync holds at every depth of a relay tree.
//!
//! Sans-IO: reports and packets in, instants out. Before a source's first report its packets
//! keep their arrival time (and are flagged as such).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Most RTP sources of one publisher tracked (three simulcast layers, audio, their repairs).
pub const MAX_SOURCES: usize = 8;

/// One source's latest report: RTP timestamp ↔ NTP nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug)]
struct Source {
    ssrc: u32,
    rate: u32,
    rtp: u32,
    ntp_ns: i128,
}

/// What a packet's capture instant is based on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capture {
    /// The local instant the publisher captured the packet's media at (on the timeline shared
    /// by the publisher's sources), or its arrival when `synced` is false.
    pub at: Instant,
    /// True when `at` comes from the publisher's sender reports.
    pub synced: bool,
}

/// The RTP-to-wall-clock mapping of one publisher's sources.
#[derive(Debug, Default)]
pub struct PublisherClock {
    sources: Vec<Source>,
    /// The reference the local nanoseconds count from.
    origin: Option<Instant>,
    /// Local nanoseconds (since `origin`) minus publisher NTP nanoseconds: the smallest seen, so
    /// that no capture instant lies after its packet's arrival.
    offset: Option<i128>,
}

fn ntp_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

impl PublisherClock {
    /// A clock that has seen no report.
    pub fn new() -> Self {
        Self::default()
    }

    fn local_ns(&mut self, t: Instant) -> i128 {
        let origin = *self.origin.get_or_insert(t);
        if t >= origin {
            t.duration_since(origin).as_nanos() as i128
        } else {
            -(origin.duration_since(t).as_nanos() as i128)
        }
    }

    fn instant(&self, local_ns: i128) -> Option<Instant> {
        let origin = self.origin?;
        let d = std::time::Duration::from_nanos(local_ns.unsigned_abs().min(u64::MAX as u128) as u64);
        if local_ns >= 0 { origin.checked_add(d) } else { origin.checked_sub(d) }
    }

    /// A sender report of source `ssrc` (clock `rate` Hz): RTP timestamp `rtp` was captured at
    /// NTP time `ntp`; the report arrived at `received`. Reports of sources past
    /// [`MAX_SOURCES`] are ignored.
    pub fn on_sender_report(&mut self, ssrc: u32, rate: u32, rtp: u32, ntp: SystemTime, received: Instant) {
        if rate == 0 {
            return;
        }
        let ntp_ns = ntp_ns(ntp);
        let src = Source { ssrc, rate, rtp, ntp_ns };
        match self.sources.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => self.sources[i] = src,
            None if self.sources.len() < MAX_SOURCES => self.sources.push(src),
            None => return,
        }
        let received = self.local_ns(received);
        let bound = received - ntp_ns;
        self.offset = Some(self.offset.map_or(bound, |o| o.min(bound)));
    }

    /// The capture instant of a packet of `ssrc` with RTP timestamp `ts` that arrived at
    /// `arrival`: from the source's latest report when there is one, else the arrival.
    pub fn capture(&mut self, ssrc: u32, ts: u32, arrival: Instant) -> Capture {
        let unsynced = Capture { at: arrival, synced: false };
        let Some(src) = self.sources.iter().find(|s| s.ssrc == ssrc).copied() else { return unsynced };
        let Some(offset) = self.offset else { return unsynced };
        // Signed distance to the report's timestamp, so packets just before it and wraps work.
        let ticks = i128::from(ts.wrapping_sub(src.rtp) as i32);
        let ntp = src.ntp_ns + ticks * 1_000_000_000 / i128::from(src.rate);
        let arrived = self.local_ns(arrival);
        let mut local = ntp + offset;
        if local > arrived {
            // Less delay than any packet before: the shared offset moves back for every source.
            self.offset = Some(arrived - ntp);
            local = arrived;
        }
        match self.instant(local) {
            Some(at) => Capture { at, synced: true },
            None => unsynced,
        }
    }

    /// Whether `ssrc` has had a sender report.
    pub fn is_synced(&self, ssrc: u32) -> bool {
        self.offset.is_some() && self.sources.iter().any(|s| s.ssrc == ssrc)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const AUDIO: u32 = 1;
    const VIDEO: u32 = 2;

    /// A publisher capturing audio and video at the same instants; the network delays audio by
    /// 200 ms more than video.
    #[test]
    fn audio_delayed_on_the_network_keeps_the_capture_sync_of_its_sender_reports() {
        let t0 = Instant::now();
        let ntp0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = PublisherClock::new();
        let (a_base, v_base) = (1_000u32, 4_000_000_000u32);
        // Before any report: arrival times.
        let a = c.capture(AUDIO, a_base, t0 + Duration::from_millis(250));
        assert_eq!(a, Capture { at: t0 + Duration::from_millis(250), synced: false });
        // Reports sent at capture time 0, arriving after each source's delay.
        c.on_sender_report(VIDEO, 90_000, v_base, ntp0, t0 + Duration::from_millis(50));
        c.on_sender_report(AUDIO, 48_000, a_base, ntp0, t0 + Duration::from_millis(250));
        assert!(c.is_synced(AUDIO) && c.is_synced(VIDEO) && !c.is_synced(3));
        // Media captured 1 s later; the video timestamp wraps past 2^32.
        let v = c.capture(VIDEO, v_base.wrapping_add(90_000), t0 + Duration::from_millis(1050));
        let a = c.capture(AUDIO, a_base + 48_000, t0 + Duration::from_millis(1250));
        assert!(v.synced && a.synced);
        assert_eq!(a.at, v.at, "one capture instant for both");
        assert!(v.at <= t0 + Duration::from_millis(1050) && a.at <= t0 + Duration::from_millis(1250));
        // A packet from before the report maps back in time.
        let early = c.capture(AUDIO, a_base.wrapping_sub(4_800), t0 + Duration::from_millis(160));
        assert_eq!(a.at.duration_since(early.at), Duration::from_millis(1100));
    }

    #[test]
    fn a_capture_never_lies_after_its_arrival_and_the_shared_offset_follows() {
        let t0 = Instant::now();
        let ntp0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut c = PublisherClock::new();
        c.on_sender_report(VIDEO, 90_000, 0, ntp0, t0 + Duration::from_millis(80));
        c.on_sender_report(AUDIO, 48_000, 0, ntp0, t0 + Duration::from_millis(80));
        // This packet took 30 ms less than the reports did.
        let v = c.capture(VIDEO, 9_000, t0 + Duration::from_millis(70));
        assert_eq!(v.at, t0 + Duration::from_millis(70));
        // Audio of the same instant now maps to the same (earlier) local time.
        let a = c.capture(AUDIO, 4_800, t0 + Duration::from_millis(300));
        assert_eq!(a.at, v.at);
    }

    #[test]
    fn sources_are_bounded_and_a_zero_rate_is_ignored() {
        let t0 = Instant::now();
        let mut c = PublisherClock::new();
        for ssrc in 0..20 {
            c.on_sender_report(ssrc, 90_000, 0, UNIX_EPOCH + Duration::from_secs(1), t0);
        }
        assert_eq!(c.sources.len(), MAX_SOURCES);
        assert!(!c.capture(19, 0, t0).synced);
        c.on_sender_report(100, 0, 0, UNIX_EPOCH, t0);
        assert!(!c.is_synced(100));
    }
}
