//! CPU time of a process from `/proc/PID/stat`, and the machine description.

use std::time::Instant;

/// Kernel clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// User + system CPU seconds of a process (all its threads), None if unreadable.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_seconds(&stat)
}

/// User + system CPU seconds from the text of a `/proc/PID/stat` file.
pub fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLK_TCK)
}

/// The CPUs a process may run on (`Cpus_allowed_list`), None if unreadable.
pub fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
}

/// A CPU reading of one process at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// Process id.
    pub pid: u32,
    /// CPU seconds at `at`.
    pub seconds: f64,
    /// When it was read.
    pub at: Instant,
}

impl CpuSample {
    /// Reads `pid` now.
    pub fn take(pid: u32) -> Option<Self> {
        Some(CpuSample { pid, seconds: process_cpu_seconds(pid)?, at: Instant::now() })
    }

    /// CPU used between `self` and a later sample, as a report entry.
    pub fn until(&self, later: &CpuSample) -> crate::stats::Cpu {
        let cpu = (later.seconds - self.seconds).max(0.0);
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        crate::stats::Cpu { pid: self.pid, cpu_seconds: cpu, cores: cpu / wall, cpus_allowed: cpus_allowed(self.pid) }
    }
}

/// One line describing the machine: CPU model and core count.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{model}, {cores} cores visible")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let s = "1234 (my (odd) prog) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_cpu_seconds(s), Some(4.0));
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }
}
