//! Sans-IO decision to close a connection that is too slow to send a request or idle too long.

use std::time::Duration;

/// What is known about a connection at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    /// Time since it was accepted.
    pub age: Duration,
    /// Time since bytes last moved either way or a request started or finished.
    pub since_activity: Duration,
    /// Requests whose headers have arrived.
    pub requests: u64,
    /// Requests being handled now.
    pub in_flight: usize,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request (TLS handshake included) within the header timeout.
    HeaderTimeout,
    /// No request in flight and nothing sent or received for the idle timeout.
    Idle,
}

impl CloseReason {
    /// Label used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Idle => "idle_timeout",
        }
    }
}

/// The connection timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time allowed from accept to the first request's complete headers.
    pub header: Duration,
    /// Time a connection may sit with no request in flight and no bytes moving.
    pub idle: Duration,
}

/// Whether to close the connection now.
pub fn verdict(s: ConnState, t: Timeouts) -> Option<CloseReason> {
    if s.requests == 0 && s.age >= t.header {
        return Some(CloseReason::HeaderTimeout);
    }
    if s.in_flight == 0 && s.since_activity >= t.idle {
        return Some(CloseReason::Idle);
    }
    None
}

/// How long until the verdict could change, if nothing happens meanwhile (at least 100 ms).
pub fn next_check(s: ConnState, t: Timeouts) -> Duration {
    let mut wait = t.idle.saturating_sub(s.since_activity);
    if s.requests == 0 {
        wait = wait.min(t.header.saturating_sub(s.age));
    }
    wait.max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts { header: Duration::from_secs(10), idle: Duration::from_secs(60) };

    fn st(age: u64, idle: u64, requests: u64, in_flight: usize) -> ConnState {
        ConnState { age: Duration::from_secs(age), since_activity: Duration::from_secs(idle), requests, in_flight }
    }

    #[test]
    fn silent_or_trickling_connections_hit_the_header_timeout() {
        assert_eq!(verdict(st(9, 9, 0, 0), T), None);
        assert_eq!(verdict(st(10, 10, 0, 0), T), Some(CloseReason::HeaderTimeout));
        // Bytes trickling in do not extend it.
        assert_eq!(verdict(st(11, 0, 0, 0), T), Some(CloseReason::HeaderTimeout));
        assert_eq!(next_check(st(4, 4, 0, 0), T), Duration::from_secs(6));
    }

    #[test]
    fn idle_keepalive_is_closed_but_busy_requests_are_not() {
        assert_eq!(verdict(st(100, 59, 3, 0), T), None);
        assert_eq!(verdict(st(100, 60, 3, 0), T), Some(CloseReason::Idle));
        // A long request (waiting on the mesh, say) is not idle.
        assert_eq!(verdict(st(500, 400, 1, 1), T), None);
        assert_eq!(next_check(st(100, 50, 3, 0), T), Duration::from_secs(10));
        assert_eq!(next_check(st(100, 60, 3, 0), T), Duration::from_millis(100));
    }
}
