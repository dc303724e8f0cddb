//! Estimator tests against a simulated bottleneck link, in virtual time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use str0m::rtp::rtcp::{Rtcp, Twcc};

use super::*;
use crate::twcc::SendRegister;

const PACKET: usize = 1200;
const TICK_US: u64 = 1000;
const FEEDBACK_INTERVAL_US: u64 = 50_000;
const ONE_WAY_US: u64 = 20_000;

/// Encodes a transport-wide feedback packet (two-bit vector chunks, large deltas) and parses it
/// with str0m, as the RTCP path would.
fn build_twcc(base_seq: u16, fb_count: u8, arrivals: &[Option<u64>]) -> Twcc {
    let first = arrivals.iter().flatten().next().copied().unwrap_or(0);
    let ref_time = (first / 64_000) as u32 & 0x00ff_ffff;
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(&2u32.to_be_bytes());
    body.extend_from_slice(&base_seq.to_be_bytes());
    body.extend_from_slice(&(arrivals.len() as u16).to_be_bytes());
    body.extend_from_slice(&ref_time.to_be_bytes()[1..4]);
    body.push(fb_count);
    for chunk in arrivals.chunks(7) {
        let mut v: u16 = 0b11 << 14;
        for (i, a) in chunk.iter().enumerate() {
            if a.is_some() {
                v |= 0b10 << (12 - 2 * i);
            }
        }
        body.extend_from_slice(&v.to_be_bytes());
    }
    let mut prev = u64::from(ref_time) * 64_000;
    for a in arrivals.iter().flatten() {
        let delta = (*a as i64 - prev as i64) / 250;
        let delta = delta.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
        body.extend_from_slice(&delta.to_be_bytes());
        prev = (prev as i64 + i64::from(delta) * 250) as u64;
    }
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let words = (body.len() + 4) / 4 - 1;
    let mut buf = vec![0x80 | 15, 205];
    buf.extend_from_slice(&(words as u16).to_be_bytes());
    buf.extend_from_slice(&body);
    match Rtcp::try_from(&buf[..]) {
        Ok(Rtcp::Twcc(t)) => t,
        other => panic!("feedback did not parse: {other:?}"),
    }
}

/// Sender + FIFO bottleneck + feedback-producing receiver.
struct Sim {
    t0: Instant,
    now_us: u64,
    reg: SendRegister,
    est: Estimator,
    results: Vec<PacketResult>,
    capacity_bps: u64,
    buffer_bytes: u64,
    loss: f64,
    rng: StdRng,
    link_free_us: u64,
    app_bps: u64,
    budget: f64,
    probe: Option<(Probe, f64, i64)>,
    // Per packet index: wire sequence number and arrival time.
    wire: Vec<u16>,
    arrival: Vec<Option<u64>>,
    next_report: usize,
    fb_count: u8,
    last_fb_us: u64,
    fb_queue: VecDeque<(u64, Twcc)>,
    max_queue_us: u64,
}

impl Sim {
    fn new(initial_bps: u64, capacity_bps: u64, app_bps: u64) -> Self {
        let t0 = Instant::now();
        let mut est = Estimator::new(initial_bps, t0);
        est.set_desired(app_bps);
        est.set_rtt(Duration::from_micros(2 * ONE_WAY_US));
        Sim {
            t0,
            now_us: 0,
            reg: SendRegister::new(1024),
            est,
            results: Vec::new(),
            capacity_bps,
            buffer_bytes: 1_000_000,
            loss: 0.0,
            rng: StdRng::seed_from_u64(7),
            link_free_us: 0,
            app_bps,
            budget: 0.0,
            probe: None,
            wire: Vec::new(),
            arrival: Vec::new(),
            next_report: 0,
            fb_count: 0,
            last_fb_us: 0,
            fb_queue: VecDeque::new(),
            max_queue_us: 0,
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    fn queue_us(&self) -> u64 {
        self.link_free_us.saturating_sub(self.now_us)
    }

    fn send(&mut self, probe: Option<u32>) {
        let now = self.at(self.now_us);
        let wire = self.reg.register(now, PACKET, probe);
        self.wire.push(wire);
        let queued_bytes = self.queue_us() * self.capacity_bps / 8 / 1_000_000;
        let lost = self.rng.random::<f64>() < self.loss || queued_bytes > self.buffer_bytes;
        if lost {
            self.arrival.push(None);
            return;
        }
        let serialize = PACKET as u64 * 8 * 1_000_000 / self.capacity_bps;
        let depart = self.link_free_us.max(self.now_us) + serialize;
        self.link_free_us = depart;
        self.arrival.push(Some(depart + ONE_WAY_US));
        self.max_queue_us = self.max_queue_us.max(self.queue_us());
    }

    fn feedback(&mut self) {
        let now = self.now_us;
        let Some(end) = (self.next_report..self.arrival.len())
            .rev()
            .find(|&i| self.arrival[i].is_some_and(|a| a <= now))
        else {
            return;
        };
        let arrivals: Vec<Option<u64>> = self.arrival[self.next_report..=end]
            .iter()
            .map(|a| a.filter(|&a| a <= now))
            .collect();
        let twcc = build_twcc(self.wire[self.next_report], self.fb_count, &arrivals);
        self.fb_count = self.fb_count.wrapping_add(1);
        self.next_report = end + 1;
        self.fb_queue.push_back((now + ONE_WAY_US, twcc));
    }

    fn tick(&mut self) {
        let now = self.at(self.now_us);
        while self
            .fb_queue
            .front()
            .is_some_and(|(t, _)| *t <= self.now_us)
        {
            let Some((_, twcc)) = self.fb_queue.pop_front() else {
                break;
            };
            self.results.clear();
            self.reg.on_feedback(&twcc, &mut self.results);
            self.est.on_feedback(&self.results, now);
        }
        if self.probe.is_none()
            && let Some(p) = self.est.poll_probe(now)
        {
            self.probe = Some((p, 0.0, p.bytes as i64));
        }
        let tick_s = TICK_US as f64 / 1e6;
        if let Some((p, mut budget, mut left)) = self.probe.take() {
            budget += p.bitrate_bps as f64 * tick_s / 8.0;
            while budget >= PACKET as f64 && left > 0 {
                budget -= PACKET as f64;
                left -= PACKET as i64;
                self.send(Some(p.id));
            }
            if left > 0 {
                self.probe = Some((p, budget, left));
            }
        } else {
            let rate = self.est.estimate().min(self.app_bps);
            self.budget = (self.budget + rate as f64 * tick_s / 8.0).min(2.0 * PACKET as f64);
            while self.budget >= PACKET as f64 {
                self.budget -= PACKET as f64;
                self.send(None);
            }
        }
        if self.now_us - self.last_fb_us >= FEEDBACK_INTERVAL_US {
            self.last_fb_us = self.now_us;
            self.feedback();
        }
        self.now_us += TICK_US;
    }

    /// Runs for `ms` of virtual time, calling `each` every 100 ms.
    fn run(&mut self, ms: u64, mut each: impl FnMut(&mut Sim)) {
        let end = self.now_us + ms * 1000;
        while self.now_us < end {
            self.tick();
            if self.now_us.is_multiple_of(100_000) {
                each(self);
            }
        }
    }
}

#[test]
fn ramps_up_to_capacity() {
    let mut sim = Sim::new(300_000, 5_000_000, 3_000_000);
    let mut reached = None;
    sim.run(3000, |s| {
        if reached.is_none() && s.est.estimate() > 2_000_000 {
            reached = Some(s.now_us / 1000);
        }
    });
    println!(
        "reached 2 Mbit/s at {reached:?} ms, final {}",
        sim.est.estimate()
    );
    assert!(reached.is_some(), "estimate {}", sim.est.estimate());
}

#[test]
fn settles_on_a_1mbit_link() {
    let mut sim = Sim::new(300_000, 1_000_000, 3_000_000);
    sim.run(5000, |_| {});
    sim.max_queue_us = 0;
    let (mut lo, mut hi) = (u64::MAX, 0);
    sim.run(10_000, |s| {
        let e = s.est.estimate();
        lo = lo.min(e);
        hi = hi.max(e);
    });
    println!(
        "estimate range {lo}..{hi}, max queue {} ms",
        sim.max_queue_us / 1000
    );
    assert!(lo >= 600_000 && hi <= 1_200_000, "range {lo}..{hi}");
    assert!(sim.max_queue_us < 400_000, "queue {} us", sim.max_queue_us);
}

#[test]
fn follows_a_capacity_drop() {
    let mut sim = Sim::new(1_000_000, 3_000_000, 3_000_000);
    sim.buffer_bytes = 100_000;
    sim.run(6000, |_| {});
    let before = sim.est.estimate();
    assert!(before > 2_000_000, "estimate before the drop {before}");
    sim.capacity_bps = 800_000;
    let drop_at = sim.now_us;
    let mut fell = None;
    sim.run(1500, |s| {
        if fell.is_none() && s.est.estimate() < 1_000_000 {
            fell = Some((s.now_us - drop_at) / 1000);
        }
    });
    println!("before {before}, below 1 Mbit/s after {fell:?} ms");
    assert!(fell.is_some(), "estimate {}", sim.est.estimate());
}

#[test]
fn random_loss_lowers_the_estimate() {
    let mut sim = Sim::new(1_000_000, 5_000_000, 1_500_000);
    sim.run(3000, |_| {});
    let before = sim.est.estimate();
    sim.loss = 0.2;
    sim.run(5000, |_| {});
    let after = sim.est.estimate();
    println!("before loss {before}, after 5 s at 20% loss {after}");
    assert!(after < before / 2, "{before} -> {after}");
}

#[test]
fn garbage_feedback_changes_nothing() {
    let mut sim = Sim::new(500_000, 2_000_000, 1_000_000);
    sim.run(2000, |_| {});
    let before = sim.est.estimate();
    let now = sim.at(sim.now_us);
    let mut out = Vec::new();

    // Unknown sequence numbers, far from anything sent, with a huge status count.
    let far = sim.wire.last().copied().unwrap_or(0).wrapping_add(30_000);
    let arrivals: Vec<Option<u64>> = (0..60_000u64).map(|i| Some(i * 1000)).collect();
    let twcc = build_twcc(far, 200, &arrivals);
    sim.reg.on_feedback(&twcc, &mut out);
    assert!(out.is_empty());

    // Already acked packets again, with the remote clock going backwards.
    let start = sim.next_report.saturating_sub(20);
    let arrivals: Vec<Option<u64>> = (0..20).map(|i| Some(i * 100)).collect();
    let twcc = build_twcc(sim.wire[start], 201, &arrivals);
    sim.reg.on_feedback(&twcc, &mut out);
    assert!(out.is_empty(), "{out:?}");

    // Empty feedback.
    let twcc = build_twcc(sim.wire[start], 202, &[]);
    sim.reg.on_feedback(&twcc, &mut out);
    assert!(out.is_empty());

    sim.est.on_feedback(&out, now);
    assert_eq!(sim.est.estimate(), before);

    // Random bytes: whatever parses must not panic anything.
    let mut rng = StdRng::seed_from_u64(99);
    for _ in 0..2000 {
        let len = rng.random_range(20..200);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        buf[0] = 0x80 | 15;
        buf[1] = 205;
        let words = (len / 4 - 1) as u16;
        buf[2..4].copy_from_slice(&words.to_be_bytes());
        if rng.random_bool(0.5) {
            // Aim the base sequence at recently sent packets.
            let back = rng.random_range(0..sim.wire.len().min(500));
            let seq = sim.wire[sim.wire.len() - 1 - back];
            buf[12..14].copy_from_slice(&seq.to_be_bytes());
        }
        if let Ok(Rtcp::Twcc(t)) = Rtcp::try_from(&buf[..buf.len() / 4 * 4]) {
            out.clear();
            sim.reg.on_feedback(&t, &mut out);
            sim.est.on_feedback(&out, now);
        }
    }
    let e = sim.est.estimate();
    assert!((30_000..=100_000_000).contains(&e));

    // Results with arbitrary times straight into the estimator.
    let mut results = Vec::new();
    for i in 0..5000u64 {
        let sent = now + Duration::from_millis(rng.random_range(0..100_000));
        let received = match rng.random_range(0..3) {
            0 => None,
            1 => Some(sent + Duration::from_millis(rng.random_range(0..10_000_000))),
            _ => now.checked_sub(Duration::from_millis(rng.random_range(0..1000))),
        };
        let probe = rng.random_bool(0.2).then(|| rng.random_range(0..4));
        results.push(PacketResult {
            seq: i,
            sent,
            size: rng.random(),
            received,
            probe,
        });
    }
    for chunk in results.chunks(50) {
        sim.est.on_feedback(chunk, now);
        let _ = sim.est.poll_probe(now);
    }
    let e = sim.est.estimate();
    assert!((30_000..=100_000_000).contains(&e));
}

#[test]
fn register_reports_received_and_lost_once() {
    let t0 = Instant::now();
    let mut reg = SendRegister::new(64);
    let seqs: Vec<u16> = (0..10)
        .map(|i| reg.register(t0 + Duration::from_millis(i), 1000, (i >= 5).then_some(9)))
        .collect();
    let arrivals: Vec<Option<u64>> = (0..10u64)
        .map(|i| (i != 3).then_some(100_000 + i * 1000))
        .collect();
    let mut out = Vec::new();
    reg.on_feedback(&build_twcc(seqs[0], 0, &arrivals), &mut out);
    assert_eq!(out.len(), 10);
    assert!(out[3].received.is_none());
    assert_eq!(out[6].probe, Some(9));
    assert_eq!(out[0].probe, None);
    let d = out[9].received.unwrap() - out[0].received.unwrap();
    assert_eq!(d, Duration::from_millis(9));
    assert_eq!(out[4].sent - out[0].sent, Duration::from_millis(4));

    // The lost packet shows up late: only it is reported.
    out.clear();
    let late: Vec<Option<u64>> = (0..10u64).map(|i| Some(100_000 + i * 1000)).collect();
    reg.on_feedback(&build_twcc(seqs[0], 1, &late), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].seq % 65_536, u64::from(seqs[3]));
    assert!(out[0].received.is_some());

    // The same feedback again is ignored.
    out.clear();
    reg.on_feedback(&build_twcc(seqs[0], 1, &late), &mut out);
    assert!(out.is_empty());
}

#[test]
fn register_wraps_sequence_numbers() {
    let t0 = Instant::now();
    let mut reg = SendRegister::new(1024);
    let mut out = Vec::new();
    let mut last = 0u64;
    for round in 0..200u64 {
        let first = reg.register(t0, 1200, None);
        for _ in 1..500 {
            reg.register(t0, 1200, None);
        }
        let arrivals: Vec<Option<u64>> = (0..500).map(|i| Some(round * 1_000_000 + i)).collect();
        out.clear();
        reg.on_feedback(&build_twcc(first, round as u8, &arrivals), &mut out);
        assert_eq!(out.len(), 500);
        assert!(out[0].seq > last || round == 0);
        last = out[499].seq;
    }
}

#[test]
fn acked_rate_measures_a_steady_rate_across_rebases_and_restarts_on_a_clock_going_back() {
    let start = Instant::now();
    let mut a = AckedRate::default();
    // 1000-byte packets every 8 ms: 1 Mbit/s, for 40 minutes of receive time (past the rebase).
    let mut t = start;
    let mut rates = Vec::new();
    for i in 0..300_000u32 {
        a.push(t, 1000);
        if i % 10_000 == 9_999 {
            rates.push(a.bps().unwrap());
        }
        t += Duration::from_millis(8);
    }
    assert!(t.duration_since(start) > Duration::from_micros(acked::ACKED_REBASE_US), "the run passes a rebase");
    for r in &rates {
        assert!((r - 1_000_000.0).abs() < 20_000.0, "rate {r}");
    }
    assert!(a.window.len() <= 64, "only the window is kept: {}", a.window.len());
    // The remote clock jumps 5 s back: the window starts over.
    let back = t - Duration::from_secs(5);
    a.push(back, 1000);
    assert_eq!(a.window.len(), 1);
    assert_eq!(a.bps(), None);
    for i in 1..=10u32 {
        a.push(back + Duration::from_millis(8 * u64::from(i)), 1000);
    }
    // 10 packets over 80 ms are measured over at least 100 ms.
    let r = a.bps().unwrap();
    assert!((r - 800_000.0).abs() < 1.0, "rate {r}");
}

#[test]
fn missing_feedback_cuts_the_estimate_while_media_goes_on_and_not_while_paused() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut e = Estimator::new(2_000_000, t0);
    // Before any feedback there is nothing to miss.
    e.on_sent(t0);
    assert!(!e.check_feedback(ms(5000)));
    let results: Vec<PacketResult> = (0..10u64)
        .map(|i| PacketResult { seq: i, sent: ms(i), size: 1200, received: Some(ms(i + 20)), probe: None })
        .collect();
    e.on_feedback(&results, ms(100));
    let before = e.estimate();
    // Paused: nothing sent since the feedback, nothing cut however long.
    assert!(!e.check_feedback(ms(10_000)));
    assert_eq!(e.estimate(), before);
    // Media goes on without feedback: one cut a second.
    let mut cuts = 0;
    for n in (110..=3_600).step_by(10) {
        e.on_sent(ms(n));
        cuts += u32::from(e.check_feedback(ms(n)));
    }
    assert_eq!(cuts, 3, "cuts at 1.1, 2.1 and 3.1 s");
    let expected = before as f64 * FEEDBACK_TIMEOUT_CUT.powi(3);
    assert!((e.estimate() as f64 - expected).abs() < expected * 0.01, "{} against {expected}", e.estimate());
    // Feedback is back: no cut for the next second.
    e.on_feedback(&results, ms(3_650));
    for n in (3_660..=4_600).step_by(10) {
        e.on_sent(ms(n));
        assert!(!e.check_feedback(ms(n)));
    }
}
