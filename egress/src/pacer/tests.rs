use super::*;

const MS: Duration = Duration::from_millis(1);
const NS: Duration = Duration::from_nanos(1);

/// Releases everything that may leave at `now`.
fn drain_at(p: &mut Pacer<u32>, now: Instant) -> Vec<Release<u32>> {
    let mut out = Vec::new();
    while let Some(r) = p.poll(now) {
        out.push(r);
        assert!(out.len() < 1_000_000, "poll loop does not end");
    }
    out
}

fn item(r: &Release<u32>) -> Option<u32> {
    match r {
        Release::Packet { item, .. } => Some(*item),
        Release::Padding { .. } => None,
    }
}

/// Polls at each wake until the queue is empty; returns (time, release) pairs.
fn run_until_idle(p: &mut Pacer<u32>, limit: usize) -> Vec<(Instant, Release<u32>)> {
    let mut out = Vec::new();
    while let Some(t) = p.next_wake() {
        let got = drain_at(p, t);
        assert!(!got.is_empty(), "polling at next_wake released nothing");
        out.extend(got.into_iter().map(|r| (t, r)));
        assert!(out.len() <= limit);
    }
    out
}

#[test]
fn frame_leaves_in_burst_then_spread() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(1_500_000);
    for i in 0..10 {
        p.push(i, 1200, Class::Video, t0).unwrap();
    }
    let first = drain_at(&mut p, t0);
    // Burst: max(5 ms at 1.5 Mbit/s = 937 B, 3000 B); a packet leaves while debt <= burst.
    assert_eq!(first.len(), 3);
    assert!(first.len() * 1200 <= DEFAULT_BURST_MIN_BYTES + 1200);
    assert_eq!(
        first.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let rest = run_until_idle(&mut p, 100);
    assert_eq!(rest.len(), 7);
    // One packet per wake, spaced by 1200 B at 1.5 Mbit/s = 6.4 ms.
    let mut prev: Option<Instant> = None;
    for (t, r) in &rest {
        assert!(matches!(r, Release::Packet { probe: None, .. }));
        if let Some(pt) = prev {
            assert_eq!(*t - pt, Duration::from_micros(6400));
        }
        prev = Some(*t);
    }
    assert_eq!(p.queued(), 0);
    assert_eq!(p.queued_bytes(), 0);
}

/// Feeds `offered_bps` of video in 10-packet frames every 33 ms for `secs`; returns the send rate.
fn sustained(rate: u64, offered_bps: u64, secs: u64) -> f64 {
    let t0 = Instant::now();
    let mut p = Pacer::new(1_000_000, t0);
    p.set_rate(rate);
    let frame_every = Duration::from_millis(33);
    let pkt = ((offered_bps as f64 * 0.033 / 8.0) / 10.0) as usize;
    let end = t0 + Duration::from_secs(secs);
    let mut next_frame = t0;
    let mut sent = 0usize;
    let mut now = t0;
    let mut n = 0u32;
    while now < end {
        if now >= next_frame {
            for _ in 0..10 {
                p.push(n, pkt, Class::Video, now).unwrap();
                n += 1;
            }
            next_frame += frame_every;
        }
        let mut released = false;
        while let Some(r) = p.poll(now) {
            assert!(matches!(r, Release::Packet { .. }));
            sent += pkt;
            released = true;
        }
        let next = match p.next_wake() {
            Some(w) => w.min(next_frame),
            None => next_frame,
        };
        assert!(released || next > now, "no progress at {:?}", now - t0);
        now = next;
    }
    assert!(p.queued() > 0, "not overloaded");
    sent as f64 * 8.0 / secs as f64
}

#[test]
fn long_run_rate_under_overload() {
    for (rate, offered) in [
        (1_500_000, 3_000_000),
        (500_000, 2_000_000),
        (8_000_000, 12_000_000),
    ] {
        let got = sustained(rate, offered, 10);
        let err = (got - rate as f64).abs() / rate as f64;
        assert!(err < 0.05, "rate {rate}: sent {got} bit/s");
        // Slightly above the rate only by the initial burst.
        assert!(got >= rate as f64 * 0.99, "rate {rate}: sent {got} bit/s");
    }
}

#[test]
fn audio_overtakes_queued_video_and_counts_bytes() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(1_000_000);
    for i in 0..10 {
        p.push(i, 1200, Class::Video, t0).unwrap();
    }
    drain_at(&mut p, t0);
    let wake_before = p.next_wake().unwrap();
    p.push(100, 200, Class::Audio, t0).unwrap();
    assert_eq!(p.next_wake(), Some(t0));
    let got = drain_at(&mut p, t0);
    assert_eq!(
        got.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
        vec![100]
    );
    // The audio bytes delay the next video packet by 200 B at 1 Mbit/s = 1.6 ms.
    assert_eq!(
        p.next_wake().unwrap() - wake_before,
        Duration::from_micros(1600)
    );
    // Audio pushed later still leaves before queued video.
    let t1 = t0 + MS;
    p.push(101, 200, Class::Audio, t1).unwrap();
    p.push(102, 200, Class::Audio, t1).unwrap();
    let got = drain_at(&mut p, t1);
    assert_eq!(
        got.iter().map(|r| item(r).unwrap()).collect::<Vec<_>>(),
        vec![101, 102]
    );
}

#[test]
fn audio_debt_is_capped() {
    let t0 = Instant::now();
    let mut p = Pacer::new(10_000, t0);
    p.set_rate(100_000);
    for i in 0..1000 {
        p.push(i, 1000, Class::Audio, t0).unwrap();
    }
    assert_eq!(drain_at(&mut p, t0).len(), 1000);
    p.push(5000, 100, Class::Video, t0).unwrap();
    // Debt at most burst + 500 ms: video waits no longer than 500 ms.
    let w = p.next_wake().unwrap();
    assert!(w - t0 <= MAX_AUDIO_DEBT, "{:?}", w - t0);
}

#[test]
fn resend_before_video() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(1_000_000);
    p.push(1, 1200, Class::Video, t0).unwrap();
    p.push(2, 1200, Class::Video, t0).unwrap();
    p.push(3, 1200, Class::Resend, t0).unwrap();
    p.push(4, 1200, Class::Resend, t0).unwrap();
    p.push(5, 100, Class::Audio, t0).unwrap();
    let mut order: Vec<u32> = drain_at(&mut p, t0)
        .iter()
        .map(|r| item(r).unwrap())
        .collect();
    order.extend(
        run_until_idle(&mut p, 10)
            .iter()
            .map(|(_, r)| item(r).unwrap()),
    );
    assert_eq!(order, vec![5, 3, 4, 1, 2]);
}

#[test]
fn oldest_video_and_drop_video() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(100_000);
    assert_eq!(p.oldest_video(), None);
    p.push(1, 1200, Class::Video, t0).unwrap();
    p.push(2, 1200, Class::Video, t0 + 10 * MS).unwrap();
    p.push(3, 1200, Class::Video, t0 + 20 * MS).unwrap();
    p.push(4, 1200, Class::Video, t0 + 30 * MS).unwrap();
    assert_eq!(p.oldest_video(), Some(t0));
    // Three leave within the burst at 30 ms (each leaves while the debt is at most 3000 B).
    let got = drain_at(&mut p, t0 + 30 * MS);
    assert_eq!(got.len(), 3);
    assert_eq!(p.oldest_video(), Some(t0 + 30 * MS));
    p.push(5, 500, Class::Resend, t0 + 30 * MS).unwrap();
    p.push(6, 80, Class::Audio, t0 + 30 * MS).unwrap();
    assert_eq!(p.queued(), 3);
    assert_eq!(p.queued_bytes(), 1200 + 500 + 80);
    let mut dropped = Vec::new();
    assert_eq!(p.drop_video_with(|i| dropped.push(i)), 2);
    assert_eq!(dropped, vec![5, 4]);
    assert_eq!(p.oldest_video(), None);
    assert_eq!(p.queued(), 1);
    assert_eq!(p.queued_bytes(), 80);
    assert_eq!(p.drop_video(), 0);
    // Audio stays.
    assert_eq!(item(&p.poll(t0 + 30 * MS).unwrap()), Some(6));
}

#[test]
fn item_cap_refuses_and_hands_back() {
    let t0 = Instant::now();
    let mut p = Pacer::new(3, t0);
    p.push(1, 100, Class::Video, t0).unwrap();
    p.push(2, 100, Class::Resend, t0).unwrap();
    p.push(3, 100, Class::Audio, t0).unwrap();
    assert_eq!(p.push(4, 100, Class::Audio, t0), Err(4));
    assert_eq!(p.push(5, 100, Class::Video, t0), Err(5));
    assert_eq!(p.queued(), 3);
    assert_eq!(p.queued_bytes(), 300);
    assert!(p.poll(t0).is_some());
    p.push(6, 100, Class::Video, t0).unwrap();
    let mut zero = Pacer::new(0, t0);
    assert_eq!(zero.push(7, 1, Class::Audio, t0), Err(7));
    assert_eq!(zero.next_wake(), None);
}

#[test]
fn probe_pads_at_its_rate_and_ends_at_its_bytes() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(500_000);
    assert_eq!(p.next_wake(), None);
    p.probe(7, 2_000_000, 20_000, t0);
    assert_eq!(p.probing(), Some(7));
    assert_eq!(p.next_wake(), Some(t0));
    let out = run_until_idle(&mut p, 1000);
    let mut total = 0;
    for (_, r) in &out {
        match r {
            Release::Padding { bytes, probe } => {
                assert_eq!(*probe, 7);
                assert!((1..=255).contains(bytes));
                total += bytes;
            }
            Release::Packet { .. } => panic!("no media was queued"),
        }
    }
    assert_eq!(total, 20_000);
    assert_eq!(p.probing(), None);
    assert_eq!(p.poll(out.last().unwrap().0), None);
    // Rate: bytes after the initial burst over the time they took.
    let first = out[0].0;
    let last = out.last().unwrap().0;
    let burst_end = out
        .iter()
        .take_while(|(t, _)| *t == first)
        .map(|(_, r)| match r {
            Release::Padding { bytes, .. } => *bytes,
            _ => 0,
        });
    let after: usize = total - burst_end.sum::<usize>();
    let bps = after as f64 * 8.0 / (last - first).as_secs_f64();
    assert!(
        (bps - 2_000_000.0).abs() / 2_000_000.0 < 0.05,
        "probe rate {bps}"
    );
    // Back at the pacing rate: a packet now leaves untagged once the debt drains at 500 kbit/s.
    p.push(1, 1200, Class::Video, last).unwrap();
    let w = p.next_wake().unwrap();
    assert!(
        w - last <= Duration::from_micros(255 * 8 * 2 + 1),
        "{:?}",
        w - last
    );
    assert!(matches!(
        p.poll(w),
        Some(Release::Packet {
            item: 1,
            probe: None
        })
    ));
}

#[test]
fn probe_tags_media_and_counts_it() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(500_000);
    p.set_max_padding(100);
    for i in 0..5 {
        p.push(i, 1000, Class::Video, t0).unwrap();
    }
    p.push(9, 100, Class::Audio, t0).unwrap();
    p.probe(3, 4_000_000, 5_250, t0);
    let out = run_until_idle(&mut p, 100);
    let mut media = 0;
    let mut padding = 0;
    for (_, r) in &out {
        match r {
            Release::Packet { probe, .. } => {
                assert_eq!(*probe, Some(3));
                media += 1;
            }
            Release::Padding { bytes, probe } => {
                assert_eq!(*probe, 3);
                assert!(*bytes <= 100);
                padding += bytes;
            }
        }
    }
    assert_eq!(media, 6);
    // 5100 bytes of media leave 150 bytes of padding: 100 then 50.
    assert_eq!(padding, 150);
    assert_eq!(p.probing(), None);
    // Spread at 4 Mbit/s: the whole probe takes well under the 500 kbit/s time.
    let span = out.last().unwrap().0 - t0;
    assert!(span < Duration::from_millis(10), "{span:?}");
}

#[test]
fn probe_times_out() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(100_000);
    p.probe(1, 1_000_000, 1_000_000, t0);
    let out = run_until_idle(&mut p, 100_000);
    let total: usize = out
        .iter()
        .map(|(_, r)| match r {
            Release::Padding { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    // About 100 ms at 1 Mbit/s (12.5 kB) plus the burst.
    assert!((12_500..=12_500 + 3_000 + 255).contains(&total), "{total}");
    assert!(out.last().unwrap().0 < t0 + PROBE_TIMEOUT);
    assert_eq!(p.next_wake(), None);
    assert_eq!(p.poll(t0 + PROBE_TIMEOUT), None);
    assert_eq!(p.probing(), None);
}

#[test]
fn next_wake_is_exact() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(1_234_567);
    for i in 0..20 {
        p.push(i, 1000 + i as usize * 7, Class::Video, t0).unwrap();
    }
    drain_at(&mut p, t0);
    let mut n = 0;
    while let Some(w) = p.next_wake() {
        assert!(w > t0);
        assert_eq!(p.poll(w - NS), None, "released before next_wake");
        assert_eq!(p.next_wake(), Some(w));
        assert!(p.poll(w).is_some(), "nothing at next_wake");
        drain_at(&mut p, w);
        n += 1;
    }
    assert!(n >= 15);
}

#[test]
fn next_wake_is_exact_across_probe_end() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(50_000);
    for i in 0..40 {
        p.push(i, 1200, Class::Video, t0).unwrap();
    }
    // 2 Mbit/s for 100 ms is 25 kB (plus the burst) of 48 kB queued: the probe times out mid-queue.
    p.probe(1, 2_000_000, 1_000_000, t0);
    let mut tagged = 0;
    let mut untagged = 0;
    let mut now = t0;
    while let Some(w) = p.next_wake() {
        if w > now {
            assert_eq!(p.poll(w - NS), None, "released before next_wake");
        }
        let got = drain_at(&mut p, w);
        assert!(!got.is_empty());
        for r in got {
            match r {
                Release::Packet { probe: Some(1), .. } => tagged += 1,
                Release::Packet { probe: None, .. } => untagged += 1,
                Release::Padding { .. } => {}
                r => panic!("{r:?}"),
            }
        }
        now = w;
        if p.queued() == 0 && p.probing().is_none() {
            break;
        }
    }
    assert_eq!(tagged + untagged, 40);
    assert!((20..=24).contains(&tagged), "{tagged}");
}

#[test]
fn rate_changes_take_effect() {
    let t0 = Instant::now();
    let mut p = Pacer::new(100, t0);
    p.set_rate(1_000_000);
    for i in 0..20 {
        p.push(i, 1250, Class::Video, t0).unwrap();
    }
    drain_at(&mut p, t0);
    let w1 = p.next_wake().unwrap();
    drain_at(&mut p, w1);
    let w2 = p.next_wake().unwrap();
    assert_eq!(w2 - w1, Duration::from_millis(10));
    drain_at(&mut p, w2);
    p.set_rate(4_000_000);
    let w3 = p.next_wake().unwrap();
    assert_eq!(w3 - w2, Duration::from_micros(2500));
    drain_at(&mut p, w3);
    p.set_rate(0);
    assert_eq!(p.rate(), MIN_RATE_BPS);
    let w4 = p.next_wake().unwrap();
    assert_eq!(w4 - w3, Duration::from_secs(1));
}

#[test]
fn rate_zero_and_time_backwards_do_not_panic() {
    let t0 = Instant::now() + Duration::from_secs(10);
    let mut p = Pacer::new(50, t0);
    p.set_rate(0);
    for i in 0..10 {
        p.push(i, 1200, Class::Video, t0).unwrap();
    }
    assert_eq!(drain_at(&mut p, t0).len(), 3);
    // Earlier times act as the latest time seen.
    assert!(drain_at(&mut p, t0 - Duration::from_secs(5)).is_empty());
    p.push(20, 100, Class::Audio, t0 - Duration::from_secs(9))
        .unwrap();
    assert_eq!(drain_at(&mut p, t0 - Duration::from_secs(9)).len(), 1);
    let w = p.next_wake().unwrap();
    assert!(w > t0);
    assert!(p.poll(w).is_some());
    p.probe(1, 0, 10, t0 - Duration::from_secs(1));
    p.probe(2, u64::MAX, usize::MAX, t0);
    p.set_rate(u64::MAX);
    p.set_burst(Duration::MAX, usize::MAX);
    p.set_max_padding(0);
    p.push(30, usize::MAX, Class::Video, t0).unwrap();
    p.push(31, usize::MAX, Class::Audio, t0).unwrap();
    for _ in 0..100 {
        let _ = p.poll(t0);
    }
    let _ = p.next_wake();
    p.set_burst(Duration::ZERO, 0);
    p.set_rate(0);
    for _ in 0..100 {
        let _ = p.poll(t0 + MS);
        let _ = p.next_wake();
    }
}

#[test]
fn random_operations_keep_accounting() {
    let t0 = Instant::now();
    let mut p = Pacer::new(64, t0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut now = t0 + Duration::from_secs(1);
    let mut model_items = 0usize;
    let mut model_bytes = 0usize;
    let mut sizes = std::collections::HashMap::new();
    for n in 0..200_000u32 {
        let r = next();
        match r % 10 {
            0..=3 => {
                let size = (next() % 1500) as usize;
                let class = [Class::Audio, Class::Resend, Class::Video][(next() % 3) as usize];
                if p.push(n, size, class, now).is_ok() {
                    model_items += 1;
                    model_bytes += size;
                    sizes.insert(n, size);
                }
            }
            4..=6 => {
                if let Some(Release::Packet { item, .. }) = p.poll(now) {
                    model_items -= 1;
                    model_bytes -= sizes.remove(&item).unwrap();
                }
            }
            7 => p.set_rate(next() % 20_000_000),
            8 => {
                if next() % 50 == 0 {
                    p.probe(n, next() % 10_000_000, (next() % 20_000) as usize, now);
                } else if next() % 100 == 0 {
                    p.drop_video_with(|i| {
                        model_items -= 1;
                        model_bytes -= sizes.remove(&i).unwrap();
                    });
                } else if let Some(w) = p.next_wake()
                    && w >= now
                {
                    now = w;
                    match p.poll(now) {
                        Some(Release::Packet { item, .. }) => {
                            model_items -= 1;
                            model_bytes -= sizes.remove(&item).unwrap();
                        }
                        Some(Release::Padding { .. }) => {}
                        None => panic!("nothing at next_wake"),
                    }
                }
            }
            _ => {
                // Mostly forward, sometimes backwards.
                let step = Duration::from_micros(next() % 5_000);
                if next() % 8 == 0 {
                    now = now.checked_sub(step).unwrap_or(now);
                } else {
                    now += step;
                }
            }
        }
        assert_eq!(p.queued(), model_items);
        assert_eq!(p.queued_bytes(), model_bytes);
    }
}

#[test]
fn padding_counts_its_headers_against_the_rate_and_the_probe() {
    let t0 = Instant::now();
    let mut p = Pacer::<u32>::new(100, t0);
    p.set_rate(500_000);
    p.set_padding_overhead(45);
    p.probe(3, 2_000_000, 20_000, t0);
    let out = run_until_idle(&mut p, 1000);
    let chunks: Vec<usize> = out
        .iter()
        .map(|(_, r)| match r {
            Release::Padding { bytes, .. } => *bytes,
            Release::Packet { .. } => panic!("no media was queued"),
        })
        .collect();
    let wire: usize = chunks.iter().map(|b| b + 45).sum();
    // The probe's 20,000 bytes are wire bytes: headers included, the last chunk at least 1 byte.
    assert!((20_000..20_000 + 46).contains(&wire), "{wire} bytes on the wire");
    // And its rate is the wire rate: 2 Mbit/s of datagrams, not of padding.
    let first = out[0].0;
    let last = out.last().unwrap().0;
    let burst: usize = out.iter().take_while(|(t, _)| *t == first).map(|(_, r)| match r {
        Release::Padding { bytes, .. } => bytes + 45,
        _ => 0,
    }).sum();
    let bps = (wire - burst) as f64 * 8.0 / (last - first).as_secs_f64();
    assert!((bps - 2_000_000.0).abs() / 2_000_000.0 < 0.05, "probe rate {bps}");
}
