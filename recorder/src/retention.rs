//! Retention: which recordings a node deletes to keep its archive within `--archive-retention`
//! (how long an ended recording is kept) and `--archive-max-bytes` (the whole archive, copies of
//! other nodes' recordings included). Sans-IO: the recordings held and the time in, the ones to
//! delete out. Live recordings (and copies still being made) and pinned ones are never chosen;
//! the oldest ended recordings go first.

use std::time::Duration;

/// The limits; both off by default (nothing is deleted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Ended recordings older than this (since their end) are deleted.
    pub max_age: Option<Duration>,
    /// While the archive holds more bytes than this, the oldest ended recordings are deleted.
    pub max_bytes: Option<u64>,
}

impl Policy {
    /// True when no limit is set.
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// Whose recording a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Holding {
    /// Recorded here.
    Own,
    /// A copy of another node's recording.
    Copy,
}

/// One recording held, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Stream name.
    pub stream: String,
    /// Recording id: its start in milliseconds since the Unix epoch.
    pub id: u64,
    /// Recorded here or copied.
    pub holding: Holding,
    /// When it ended (ms since the Unix epoch); `None` while live (or, for a copy, not closed).
    pub ended_unix_ms: Option<u64>,
    /// Bytes of its files' DAGs.
    pub bytes: u64,
    /// Kept whatever the limits.
    pub pinned: bool,
}

/// Indexes into `held` of the recordings to delete, oldest end first: every ended, unpinned
/// recording past `max_age`, and, oldest first, as many more as it takes to bring the total
/// under `max_bytes` (if live and pinned ones alone exceed it, every other one goes).
pub fn plan(policy: &Policy, held: &[Held], now_unix_ms: u64) -> Vec<usize> {
    if policy.is_off() {
        return Vec::new();
    }
    let mut candidates: Vec<usize> =
        (0..held.len()).filter(|&i| held[i].ended_unix_ms.is_some() && !held[i].pinned).collect();
    candidates.sort_by_key(|&i| (held[i].ended_unix_ms, held[i].id, i));
    let mut total: u64 = held.iter().fold(0u64, |t, h| t.saturating_add(h.bytes));
    let mut out = Vec::new();
    for i in candidates {
        let h = &held[i];
        let ended = h.ended_unix_ms.unwrap_or(now_unix_ms);
        let too_old = policy.max_age.is_some_and(|a| now_unix_ms.saturating_sub(ended) >= a.as_millis() as u64);
        let over = policy.max_bytes.is_some_and(|m| total > m);
        if too_old || over {
            out.push(i);
            total = total.saturating_sub(h.bytes);
        }
    }
    out
}

/// Parses a duration: a number and a unit `s`, `m`, `h`, `d` or `w` (`90m`, `7d`); a bare number
/// is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration (like 90m, 12h, 7d)"))?;
    let unit_secs = match unit.trim() {
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        other => return Err(format!("unknown duration unit {other:?} (s, m, h, d or w)")),
    };
    let secs = n * unit_secs;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e12 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size in bytes: a number and a unit `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or
/// `K`/`M`/`G`/`T`/`KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); a bare number is bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a size (like 500MB, 50GB, 1TiB)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "K" | "KiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: u64, ended: Option<u64>, bytes: u64) -> Held {
        Held { stream: "room".into(), id, holding: Holding::Own, ended_unix_ms: ended, bytes, pinned: false }
    }

    const HOUR: u64 = 3_600_000;

    #[test]
    fn nothing_is_deleted_without_limits() {
        let h = [held(1, Some(1), 100)];
        assert!(plan(&Policy::default(), &h, 10 * HOUR).is_empty());
    }

    #[test]
    fn age_deletes_ended_recordings_past_the_limit_only() {
        let p = Policy { max_age: Some(Duration::from_secs(3600 * 2)), max_bytes: None };
        let h = [held(1, Some(0), 10), held(2, Some(9 * HOUR), 10), held(3, None, 10), held(4, Some(HOUR), 10)];
        assert_eq!(plan(&p, &h, 10 * HOUR), [0, 3], "ended 10 h and 9 h ago go; 1 h ago and live stay");
    }

    #[test]
    fn bytes_delete_the_oldest_ended_first_and_never_live_or_pinned() {
        let p = Policy { max_age: None, max_bytes: Some(250) };
        let mut h = vec![held(1, Some(100), 100), held(2, Some(300), 100), held(3, Some(200), 100), held(4, None, 100)];
        // 400 bytes: the oldest ended (id 1), then the next oldest (id 3, ended at 200).
        assert_eq!(plan(&p, &h, 1000), [0, 2]);
        h[0].pinned = true;
        assert_eq!(plan(&p, &h, 1000), [2, 1], "a pinned recording stays; the others go oldest first");
        // Live and pinned alone exceed the budget: every other one goes, they stay.
        let p = Policy { max_age: None, max_bytes: Some(50) };
        assert_eq!(plan(&p, &h, 1000), [2, 1]);
    }

    #[test]
    fn durations_and_sizes_parse_with_units() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("7y").is_err() && parse_duration("-1d").is_err() && parse_duration("0").is_err());
        assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("5 parsecs").is_err() && parse_bytes("0").is_err() && parse_bytes("").is_err());
    }
}
