//! CPU time of a process from `/proc/PID/stat`, and the machine description.

use std::time::Instant;

/// Kernel clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// User and system CPU seconds of a process (all its threads), None if unreadable.
pub fn process_cpu_split(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_split(&stat)
}

/// User and system CPU seconds from the text of a `/proc/PID/stat` file.
pub fn parse_stat_cpu_split(stat: &str) -> Option<(f64, f64)> {
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime as f64 / CLK_TCK, stime as f64 / CLK_TCK))
}

/// The CPUs a process may run on (`Cpus_allowed_list`), None if unreadable.
pub fn cpus_allowed(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss_kib(&status)
}

/// `VmRSS` in KiB from the text of a `/proc/PID/status` file.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// A CPU reading of one process at one instant.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    /// Process id.
    pub pid: u32,
    /// User CPU seconds at `at`.
    pub user: f64,
    /// System (kernel) CPU seconds at `at`.
    pub system: f64,
    /// When it was read.
    pub at: Instant,
}

impl CpuSample {
    /// Reads `pid` now.
    pub fn take(pid: u32) -> Option<Self> {
        let (user, system) = process_cpu_split(pid)?;
        Some(CpuSample { pid, user, system, at: Instant::now() })
    }

    /// CPU used between `self` and a later sample, as a report entry.
    pub fn until(&self, later: &CpuSample) -> crate::stats::Cpu {
        let user = (later.user - self.user).max(0.0);
        let system = (later.system - self.system).max(0.0);
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        crate::stats::Cpu {
            pid: self.pid,
            cpu_seconds: user + system,
            user_seconds: user,
            system_seconds: system,
            cores: (user + system) / wall,
            cpus_allowed: cpus_allowed(self.pid),
        }
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
        assert_eq!(parse_stat_cpu_split(s), Some((2.5, 1.5)));
        assert_eq!(parse_rss_kib("Name:\tx\nVmPeak:\t  900 kB\nVmRSS:\t  1234 kB\n"), Some(1234));
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(process_cpu_split(std::process::id()).is_some());
    }
}
