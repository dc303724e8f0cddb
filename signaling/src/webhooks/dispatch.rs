//! Delivery bookkeeping, sans-IO: one delivery per (event, URL); attempts are handed out at most
//! `max_in_flight` at a time; a failed attempt is retried after an exponential backoff until the
//! policy's attempts are used up, then the delivery is given up. Everything is bounded: at most
//! `max_pending` deliveries exist at once and a push beyond that is refused.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::event::Event;
use super::sign::signature_header;

/// How often and how long a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; each further wait doubles.
    pub first_backoff: Duration,
    /// Longest single wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting 2, 4, 8 and 16 s between them.
    fn default() -> Self {
        RetryPolicy { max_attempts: 5, first_backoff: Duration::from_secs(2), max_backoff: Duration::from_secs(16) }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt, or `None` when none remains.
    pub fn backoff(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doublings = attempts.saturating_sub(1).min(20);
        Some(self.first_backoff.saturating_mul(1u32 << doublings).min(self.max_backoff))
    }

    /// Longest time from a delivery's first attempt to its last answer when each request takes
    /// at most `request_timeout`.
    pub fn worst_case(&self, request_timeout: Duration) -> Duration {
        let waits: Duration = (1..self.max_attempts).filter_map(|n| self.backoff(n)).sum();
        waits + request_timeout.saturating_mul(self.max_attempts)
    }
}

/// One HTTP request to make.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Delivery this attempt belongs to; report its outcome with [`Dispatcher::on_outcome`].
    pub delivery: u64,
    /// Receiver URL.
    pub url: String,
    /// JSON body (identical on every attempt).
    pub body: Arc<[u8]>,
    /// `Relaycast-Signature` value, signed at the attempt's time.
    pub signature: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub kind: &'static str,
}

/// What an attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Success,
    /// Anything else: another status, a timeout, a connection error.
    Failure,
}

/// What the dispatcher did with an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Delivered after this many attempts.
    Delivered {
        /// Attempts made.
        attempts: u32,
    },
    /// Will be tried again at `at`.
    Retry {
        /// When the next attempt is due.
        at: Instant,
        /// Attempts made so far.
        attempts: u32,
    },
    /// No attempt remains (or the dispatcher is closing): dropped.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// Not a delivery in flight (already resolved).
    Unknown,
}

/// A push the dispatcher refused because `max_pending` deliveries exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// Deliveries (one per URL) dropped.
    pub dropped: usize,
}

struct Delivery {
    url: usize,
    body: Arc<[u8]>,
    event_id: String,
    kind: &'static str,
    attempts: u32,
}

/// The delivery state machine for a set of receiver URLs.
pub struct Dispatcher {
    urls: Vec<String>,
    secret: Vec<u8>,
    policy: RetryPolicy,
    max_pending: usize,
    max_in_flight: usize,
    deliveries: HashMap<u64, Delivery>,
    ready: VecDeque<u64>,
    waiting: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: usize,
    next_id: u64,
    closing: bool,
}

impl Dispatcher {
    /// A dispatcher delivering to `urls`, signing with `secret`.
    pub fn new(urls: Vec<String>, secret: &[u8], policy: RetryPolicy, max_pending: usize, max_in_flight: usize) -> Self {
        Dispatcher {
            urls,
            secret: secret.to_vec(),
            policy,
            max_pending: max_pending.max(1),
            max_in_flight: max_in_flight.max(1),
            deliveries: HashMap::new(),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            in_flight: 0,
            next_id: 0,
            closing: false,
        }
    }

    /// Queues `event` for every URL; refused whole when that would exceed `max_pending`.
    pub fn push(&mut self, event: &Event) -> Result<(), Full> {
        let n = self.urls.len();
        if self.closing || self.deliveries.len().saturating_add(n) > self.max_pending {
            return Err(Full { dropped: n });
        }
        let body: Arc<[u8]> = event.to_body().into();
        for url in 0..n {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            self.deliveries
                .insert(id, Delivery { url, body: body.clone(), event_id: event.id.clone(), kind: event.kind, attempts: 0 });
            self.ready.push_back(id);
        }
        Ok(())
    }

    /// The attempts to start now (`unix_secs` is the signature's `t`), up to the in-flight limit.
    pub fn poll(&mut self, now: Instant, unix_secs: u64) -> Vec<Attempt> {
        while let Some(Reverse((at, id))) = self.waiting.peek().copied() {
            if at > now {
                break;
            }
            self.waiting.pop();
            self.ready.push_back(id);
        }
        let mut out = Vec::new();
        while self.in_flight < self.max_in_flight {
            let Some(id) = self.ready.pop_front() else { break };
            let Some(d) = self.deliveries.get_mut(&id) else { continue };
            d.attempts = d.attempts.saturating_add(1);
            self.in_flight += 1;
            out.push(Attempt {
                delivery: id,
                url: self.urls.get(d.url).cloned().unwrap_or_default(),
                signature: signature_header(&self.secret, unix_secs, &d.body),
                body: d.body.clone(),
                attempt: d.attempts,
                event_id: d.event_id.clone(),
                kind: d.kind,
            });
        }
        out
    }

    /// Records the outcome of an attempt handed out by [`Dispatcher::poll`].
    pub fn on_outcome(&mut self, delivery: u64, outcome: Outcome, now: Instant) -> Resolution {
        let Some(d) = self.deliveries.get(&delivery) else { return Resolution::Unknown };
        let attempts = d.attempts;
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                self.deliveries.remove(&delivery);
                Resolution::Delivered { attempts }
            }
            Outcome::Failure => match self.policy.backoff(attempts).filter(|_| !self.closing) {
                Some(wait) => {
                    let at = now + wait;
                    self.waiting.push(Reverse((at, delivery)));
                    Resolution::Retry { at, attempts }
                }
                None => {
                    self.deliveries.remove(&delivery);
                    Resolution::GaveUp { attempts }
                }
            },
        }
    }

    /// When the earliest retry is due, if any is waiting.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.waiting.peek().map(|Reverse((at, _))| *at)
    }

    /// Stops retrying: deliveries waiting for a retry are dropped (their count is returned),
    /// queued first attempts still go out once, failures are given up, and pushes are refused.
    pub fn close(&mut self) -> usize {
        self.closing = true;
        let dropped = self.waiting.len();
        for Reverse((_, id)) in self.waiting.drain() {
            self.deliveries.remove(&id);
        }
        dropped
    }

    /// Deliveries not yet resolved (queued, in flight or waiting for a retry).
    pub fn pending(&self) -> usize {
        self.deliveries.len()
    }

    /// True when no delivery is left.
    pub fn is_idle(&self) -> bool {
        self.deliveries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhooks::event::EventKind;

    fn ev(id: &str) -> Event {
        Event::new(EventKind::StreamStarted, id.into(), "room", "node", 0)
    }

    #[test]
    fn default_policy_is_five_attempts_within_a_minute() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=5).map(|n| p.backoff(n).map(|d| d.as_secs())).collect();
        assert_eq!(waits, [Some(2), Some(4), Some(8), Some(16), None]);
        assert_eq!(p.worst_case(Duration::from_secs(5)), Duration::from_secs(55));
    }

    #[test]
    fn backoff_is_capped_and_never_overflows() {
        let p = RetryPolicy { max_attempts: 100, first_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(30) };
        assert_eq!(p.backoff(3), Some(Duration::from_secs(4)));
        assert_eq!(p.backoff(60), Some(Duration::from_secs(30)));
        assert_eq!(p.backoff(100), None);
    }

    #[test]
    fn retries_with_the_same_body_and_a_fresh_signature_then_gives_up() {
        let secret = b"s3cret";
        let mut d = Dispatcher::new(vec!["http://a/hook".into()], secret, RetryPolicy::default(), 16, 4);
        d.push(&ev("e1")).unwrap();
        let t0 = Instant::now();
        let mut now = t0;
        let mut bodies = Vec::new();
        for n in 1..=5u32 {
            let unix = 1000 + u64::from(n);
            let a = d.poll(now, unix);
            assert_eq!(a.len(), 1, "attempt {n} due");
            let a = &a[0];
            assert_eq!(a.attempt, n);
            assert_eq!(a.event_id, "e1");
            assert_eq!(a.signature, signature_header(secret, unix, &a.body));
            bodies.push(a.body.clone());
            // Nothing else goes out while this one is in flight.
            assert!(d.poll(now, unix).is_empty());
            match d.on_outcome(a.delivery, Outcome::Failure, now) {
                Resolution::Retry { at, attempts } => {
                    assert_eq!(attempts, n);
                    // Not due a moment early.
                    assert!(d.poll(at - Duration::from_millis(1), unix).is_empty());
                    assert_eq!(d.next_wakeup(), Some(at));
                    now = at;
                }
                Resolution::GaveUp { attempts } => {
                    assert_eq!((n, attempts), (5, 5));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        assert!(d.is_idle());
        assert_eq!(now - t0, Duration::from_secs(2 + 4 + 8 + 16));
    }

    #[test]
    fn success_resolves_and_frees_the_slot() {
        let mut d = Dispatcher::new(vec!["http://a".into(), "http://b".into()], b"k", RetryPolicy::default(), 16, 1);
        d.push(&ev("e1")).unwrap();
        assert_eq!(d.pending(), 2);
        let now = Instant::now();
        let a = d.poll(now, 1);
        assert_eq!(a.len(), 1, "in-flight limit of 1");
        assert_eq!(a[0].url, "http://a");
        assert_eq!(d.on_outcome(a[0].delivery, Outcome::Success, now), Resolution::Delivered { attempts: 1 });
        assert_eq!(d.on_outcome(a[0].delivery, Outcome::Success, now), Resolution::Unknown);
        let b = d.poll(now, 1);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].url, "http://b");
        d.on_outcome(b[0].delivery, Outcome::Success, now);
        assert!(d.is_idle());
    }

    #[test]
    fn refuses_beyond_max_pending() {
        let mut d = Dispatcher::new(vec!["http://a".into(), "http://b".into()], b"k", RetryPolicy::default(), 5, 8);
        d.push(&ev("1")).unwrap();
        d.push(&ev("2")).unwrap();
        assert_eq!(d.push(&ev("3")), Err(Full { dropped: 2 }));
        assert_eq!(d.pending(), 4);
        let now = Instant::now();
        for a in d.poll(now, 1) {
            d.on_outcome(a.delivery, Outcome::Success, now);
        }
        d.push(&ev("3")).unwrap();
    }

    #[test]
    fn close_drops_waiting_retries_and_gives_up_failures() {
        let mut d = Dispatcher::new(vec!["http://a".into()], b"k", RetryPolicy::default(), 16, 1);
        d.push(&ev("1")).unwrap();
        d.push(&ev("2")).unwrap();
        let now = Instant::now();
        let a = d.poll(now, 1);
        assert!(matches!(d.on_outcome(a[0].delivery, Outcome::Failure, now), Resolution::Retry { .. }));
        let b = d.poll(now, 1);
        assert_eq!(b[0].event_id, "2");
        assert_eq!(d.close(), 1);
        assert_eq!(d.on_outcome(b[0].delivery, Outcome::Failure, now), Resolution::GaveUp { attempts: 1 });
        assert!(d.is_idle());
        assert!(d.push(&ev("3")).is_err());
    }
}
