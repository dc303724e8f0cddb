//! Backup ingest: which of a stream's two local sources (the primary publisher and a publisher
//! that declared itself backup) feeds the stream's viewers, relays and archive.
//!
//! Sans-IO: the worker reports each source's state and the time, and [`decide`] says whether to
//! switch. The rules:
//! - the primary feeds the stream while it sends; a backup waits, connected, with its packets
//!   dropped at the node;
//! - when the feeding source is gone, or has sent nothing for [`STALL`] while the other one
//!   sends, the other one takes over at once (audio resumes at once, each viewer's video at the
//!   new source's next keyframe, which is requested);
//! - when the primary sends again steadily ([`STEADY`]) while the backup feeds, the primary
//!   takes over at its next keyframe (requested), so the switch back shows no stall at all.

use std::time::{Duration, Instant};

/// A source that has sent nothing for this long counts as stalled.
pub const STALL: Duration = Duration::from_secs(2);
/// How long a primary must have been sending again before the stream switches back to it.
pub const STEADY: Duration = Duration::from_secs(1);
/// A gap between two packets of a source longer than this starts a new run of sending.
pub const RUN_GAP: Duration = Duration::from_millis(500);

/// One of a stream's two local sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The publisher without `backup=1`.
    Primary,
    /// The publisher with `backup=1`.
    Backup,
}

impl Source {
    /// The other source.
    pub fn other(self) -> Source {
        match self {
            Source::Primary => Source::Backup,
            Source::Backup => Source::Primary,
        }
    }

    /// `primary` or `backup`, for logs, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Primary => "primary",
            Source::Backup => "backup",
        }
    }
}

/// What the worker knows of one source at a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceState {
    /// When the session was created.
    pub created: Instant,
    /// When its last media packet arrived.
    pub last_media: Option<Instant>,
    /// When its current run of packets (no gap over [`RUN_GAP`]) began.
    pub run_start: Option<Instant>,
    /// True while its packets feed the stream.
    pub active: bool,
    /// True while it waits for its own keyframe to take over.
    pub pending: bool,
}

impl SourceState {
    /// True when it sent media within [`STALL`] (a new session counts from its creation).
    pub fn sending(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_media.unwrap_or(self.created)) < STALL
    }

    /// True when it has sent media without a break for [`STEADY`] up to now.
    pub fn steady(&self, now: Instant) -> bool {
        match (self.last_media, self.run_start) {
            (Some(last), Some(start)) => {
                now.saturating_duration_since(last) < RUN_GAP && now.saturating_duration_since(start) >= STEADY
            }
            _ => false,
        }
    }

    /// Notes a media packet arriving at `now` (updates the run of sending).
    pub fn on_media(&mut self, now: Instant) {
        if self.last_media.is_none_or(|t| now.saturating_duration_since(t) > RUN_GAP) {
            self.run_start = Some(now);
        }
        self.last_media = Some(now);
    }
}

/// What the worker should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changes.
    Stay,
    /// This source feeds the stream from now on (the other one waits); ask it for a keyframe.
    SwitchNow(Source),
    /// This source takes over at its next keyframe; ask it for one.
    SwitchAtKeyframe(Source),
    /// A pending take-over is called off (the source stopped sending again).
    CancelPending(Source),
}

/// Decides, from the state of the primary and the backup (`None` when absent), whether the
/// stream should change source.
pub fn decide(primary: Option<&SourceState>, backup: Option<&SourceState>, now: Instant) -> Decision {
    let state = |s: Source| match s {
        Source::Primary => primary,
        Source::Backup => backup,
    };
    let active = [Source::Primary, Source::Backup].into_iter().find(|s| state(*s).is_some_and(|x| x.active));
    let Some(active) = active else {
        // Nothing feeds the stream: the primary if it is there, else the backup.
        return match (primary, backup) {
            (Some(_), _) => Decision::SwitchNow(Source::Primary),
            (None, Some(_)) => Decision::SwitchNow(Source::Backup),
            (None, None) => Decision::Stay,
        };
    };
    let Some(standby) = state(active.other()) else { return Decision::Stay };
    let feeding = state(active).is_some_and(|s| s.sending(now));
    if !feeding && standby.sending(now) {
        return Decision::SwitchNow(active.other());
    }
    if active == Source::Backup {
        let p = standby;
        if !p.pending && p.steady(now) {
            return Decision::SwitchAtKeyframe(Source::Primary);
        }
        if p.pending && !p.sending(now) {
            return Decision::CancelPending(Source::Primary);
        }
    }
    Decision::Stay
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// A source created at `t0` that sent every 20 ms from `from` to `to` (ms).
    fn sent(t0: Instant, from: u64, to: u64, active: bool) -> SourceState {
        let mut s = SourceState { created: t0, last_media: None, run_start: None, active, pending: false };
        let mut t = from;
        while t <= to {
            s.on_media(at(t0, t));
            t += 20;
        }
        s
    }

    #[test]
    fn the_only_source_feeds_and_a_primary_is_preferred_when_nothing_does() {
        let t0 = Instant::now();
        let p = sent(t0, 0, 100, false);
        let b = sent(t0, 0, 100, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 100)), Decision::SwitchNow(Source::Primary));
        assert_eq!(decide(None, Some(&b), at(t0, 100)), Decision::SwitchNow(Source::Backup));
        assert_eq!(decide(None, None, at(t0, 100)), Decision::Stay);
    }

    #[test]
    fn a_sending_primary_keeps_the_stream() {
        let t0 = Instant::now();
        let p = sent(t0, 0, 5_000, true);
        let b = sent(t0, 0, 5_000, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 5_000)), Decision::Stay);
        assert_eq!(decide(Some(&p), None, at(t0, 5_000)), Decision::Stay);
    }

    #[test]
    fn a_primary_silent_for_two_seconds_hands_over_to_a_sending_backup() {
        let t0 = Instant::now();
        let p = sent(t0, 0, 3_000, true);
        let b = sent(t0, 0, 6_000, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 4_990)), Decision::Stay, "1.99 s of silence is not a stall");
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 5_000)), Decision::SwitchNow(Source::Backup));
        // A backup that is silent too is no better: nothing changes.
        let quiet = sent(t0, 0, 2_000, false);
        assert_eq!(decide(Some(&p), Some(&quiet), at(t0, 5_000)), Decision::Stay);
    }

    #[test]
    fn a_primary_that_never_sends_is_stalled_two_seconds_after_it_started() {
        let t0 = Instant::now();
        let p = SourceState { created: t0, last_media: None, run_start: None, active: true, pending: false };
        let b = sent(t0, 0, 3_000, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 1_000)), Decision::Stay);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 2_000)), Decision::SwitchNow(Source::Backup));
    }

    #[test]
    fn a_returning_primary_takes_over_at_its_keyframe_once_steady() {
        let t0 = Instant::now();
        let b = sent(t0, 0, 10_000, true);
        // The primary is back since 8 s: not steady until 9 s.
        let p = sent(t0, 8_000, 8_980, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 8_980)), Decision::Stay);
        let mut p = sent(t0, 8_000, 9_000, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 9_000)), Decision::SwitchAtKeyframe(Source::Primary));
        p.pending = true;
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 9_000)), Decision::Stay, "asked once");
        // It stops again before its keyframe came: called off.
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 11_000)), Decision::CancelPending(Source::Primary));
    }

    #[test]
    fn a_gap_in_the_primary_restarts_its_steady_time() {
        let t0 = Instant::now();
        let b = sent(t0, 0, 10_000, true);
        let mut p = sent(t0, 7_000, 8_000, false);
        // 600 ms silent, then again: the run starts over.
        let mut t = 8_600;
        while t <= 9_400 {
            p.on_media(at(t0, t));
            t += 20;
        }
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 9_400)), Decision::Stay);
        while t <= 9_600 {
            p.on_media(at(t0, t));
            t += 20;
        }
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 9_600)), Decision::SwitchAtKeyframe(Source::Primary));
    }

    #[test]
    fn a_stalled_backup_hands_back_to_a_sending_primary_at_once() {
        let t0 = Instant::now();
        let b = sent(t0, 0, 3_000, true);
        let p = sent(t0, 4_500, 5_000, false);
        assert_eq!(decide(Some(&p), Some(&b), at(t0, 5_000)), Decision::SwitchNow(Source::Primary));
    }

    #[test]
    fn a_removed_source_leaves_the_other_one_in_charge() {
        let t0 = Instant::now();
        // The worker clears `active` of nobody: with the primary gone, the backup is asked to feed.
        let b = sent(t0, 0, 3_000, false);
        assert_eq!(decide(None, Some(&b), at(t0, 3_000)), Decision::SwitchNow(Source::Backup));
        let p = sent(t0, 0, 3_000, false);
        assert_eq!(decide(Some(&p), None, at(t0, 3_000)), Decision::SwitchNow(Source::Primary));
    }
}
