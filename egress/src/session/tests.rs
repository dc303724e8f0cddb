//! The send path driven with packets and RTCP in virtual time, its datagrams opened with the
//! viewer's keys.

use super::*;
use crate::header::rtp_header_len;
use crate::srtp::SrtpReceiver;
use str0m::rtp::rtcp::{Nack, NackEntry, ReportList};

const VIDEO: u32 = 0x1111;
const RTX: u32 = 0x2222;
const AUDIO: u32 = 0x3333;

fn egress(profile: SrtpProfile, now: Instant) -> (ViewerEgress, SrtpReceiver) {
    let km: Vec<u8> = (0..profile.keying_material_len()).map(|i| i as u8 ^ 0x5a).collect();
    let ext = ExtIds { mid: 1, abs_send_time: 2, transport_cc: 3, audio_level: 4 };
    let cfg = Config {
        profile,
        keying_material: km.clone(),
        local_is_client: false,
        video: Some(TrackConfig { ssrc: VIDEO, rtx: Some((RTX, vec![(96, 97)])), mid: b"0".to_vec(), ext, clock_rate: 90_000 }),
        audio: Some(TrackConfig { ssrc: AUDIO, rtx: None, mid: b"1".to_vec(), ext, clock_rate: 48_000 }),
        initial_bps: 1_000_000,
        cname: "test".into(),
    };
    let e = ViewerEgress::new(cfg, now, SystemTime::now()).expect("keys");
    (e, SrtpReceiver::new(profile, &km, true).expect("keys"))
}

fn video(seq: u64, now: Instant) -> Outgoing {
    let mut patch = Patch::default();
    patch.push(1, 0xee);
    Outgoing {
        kind: Kind::Video,
        pt: 96,
        marker: seq % 5 == 4,
        seq,
        ts: 3000 * (seq / 5) as u32,
        capture: now,
        payload: Arc::from(vec![seq as u8; 1000]),
        patch,
        audio_level: None,
    }
}

/// Runs the send path's clock until `until`, opening every datagram: (ssrc, seq, pt, payload)
/// of each RTP packet but probes' padding, and (ssrc, 0, packet type, packet) of RTCP.
fn drain(e: &mut ViewerEgress, rx: &mut SrtpReceiver, now: &mut Instant, until: Instant) -> Vec<(u32, u16, u8, Vec<u8>)> {
    let mut got = Vec::new();
    while *now <= until {
        while let Some(mut d) = e.poll_datagram(*now) {
            if (200..=206).contains(&d[1]) {
                rx.open_rtcp(&mut d).expect("sender report opens");
                got.push((u32::from_be_bytes([d[4], d[5], d[6], d[7]]), 0, d[1], d.clone()));
                continue;
            }
            if d[0] & 0x20 != 0 {
                // Padding only: a bandwidth probe.
                continue;
            }
            let hl = rtp_header_len(&d).expect("header");
            let seq = u16::from_be_bytes([d[2], d[3]]);
            rx.open_rtp(&mut d, hl, 0).expect("opens with the receiver's keys");
            got.push((u32::from_be_bytes([d[8], d[9], d[10], d[11]]), seq, d[1] & 0x7f, d[hl..].to_vec()));
        }
        *now = e.poll_timeout().min(until + Duration::from_micros(1)).max(*now + Duration::from_micros(1));
    }
    got
}

#[test]
fn packets_leave_sealed_paced_patched_and_nacked_ones_return_on_rtx() {
    for profile in [SrtpProfile::Aes128CmSha1_80, SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm] {
        let start = Instant::now();
        let mut now = start;
        let (mut e, mut rx) = egress(profile, now);
        for seq in 1000..1010 {
            e.send(video(seq, now), now);
        }
        let got = drain(&mut e, &mut rx, &mut now, start + Duration::from_millis(200));
        let media: Vec<_> = got.iter().filter(|g| g.0 == VIDEO).collect();
        assert_eq!(media.iter().map(|g| g.1).collect::<Vec<_>>(), (1000..1010).collect::<Vec<u16>>(), "{profile:?}: in order");
        for g in &media {
            assert_eq!(g.2, 96);
            assert_eq!(g.3.len(), 1000);
            assert_eq!((g.3[0], g.3[1]), (g.1 as u8, 0xee), "payload copied with its patch");
        }
        // 10 kB at 2.5 Mbit/s pacing: the last packet leaves ~30 ms after the first, not at once.
        assert!(now > start + Duration::from_millis(20), "paced: {:?}", now - start);

        let nack = Nack { sender_ssrc: 9.into(), ssrc: VIDEO.into(), reports: ReportList::from(NackEntry { pid: 1003, blp: 0b1 }) };
        e.handle_rtcp(&Rtcp::Nack(nack), now);
        let until = now + Duration::from_millis(50);
        let got = drain(&mut e, &mut rx, &mut now, until);
        let rtx: Vec<_> = got.iter().filter(|g| g.0 == RTX).collect();
        // 1004 is also asked for, but resends may take 15 % of what was sent: one of ten.
        assert_eq!(rtx.len(), 1, "{profile:?}: 1003 resent");
        for (g, osn) in rtx.iter().zip([1003u16]) {
            assert_eq!(g.2, 97, "RTX payload type");
            assert_eq!(u16::from_be_bytes([g.3[0], g.3[1]]), osn, "original sequence number first");
            assert_eq!((g.3[2], g.3[3]), (osn as u8, 0xee), "then the payload as first sent");
        }
        let counts = e.take_counts();
        assert_eq!((counts.resends, counts.resends_over_budget), (1, 1), "{profile:?}: 1004 is over the budget, and counted");
        // Sender reports once a second, for the track that sent.
        let until = start + Duration::from_millis(1100);
        let got = drain(&mut e, &mut rx, &mut now, until);
        assert!(got.iter().any(|g| g.2 == 200 && g.0 == VIDEO), "{profile:?}: a sender report for the video");
        assert!(!got.iter().any(|g| g.2 == 200 && g.0 == AUDIO), "none for silent audio");
    }
}

#[test]
fn a_nack_for_what_was_never_sent_or_for_another_ssrc_costs_nothing() {
    let mut now = Instant::now();
    let (mut e, mut rx) = egress(SrtpProfile::AeadAes128Gcm, now);
    e.send(video(5, now), now);
    let until = now + Duration::from_millis(10);
    drain(&mut e, &mut rx, &mut now, until);
    for (ssrc, pid) in [(VIDEO, 6), (VIDEO, 60_000), (AUDIO, 5), (777, 5)] {
        let nack = Nack { sender_ssrc: 9.into(), ssrc: ssrc.into(), reports: ReportList::from(NackEntry { pid, blp: 0xffff }) };
        e.handle_rtcp(&Rtcp::Nack(nack), now);
    }
    let until = now + Duration::from_millis(50);
    assert!(drain(&mut e, &mut rx, &mut now, until).is_empty());
    assert_eq!(e.take_counts().resends, 0);
}

#[test]
fn the_viewers_srtcp_is_opened_split_and_handled() {
    for profile in [SrtpProfile::Aes128CmSha1_80, SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm] {
        let start = Instant::now();
        let mut now = start;
        let (mut e, mut rx) = egress(profile, now);
        for seq in 1000..1010 {
            e.send(video(seq, now), now);
        }
        drain(&mut e, &mut rx, &mut now, start + Duration::from_millis(100));
        // What the viewer sends: an empty receiver report, a PLI and a NACK for 1004, sealed
        // with the viewer's keys (the DTLS client's here).
        let km: Vec<u8> = (0..profile.keying_material_len()).map(|i| i as u8 ^ 0x5a).collect();
        let mut viewer = crate::srtp::SrtpSender::new(profile, &km, true).expect("keys");
        let mut d = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        d.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 9]);
        d.extend_from_slice(&VIDEO.to_be_bytes());
        d.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 9]);
        d.extend_from_slice(&VIDEO.to_be_bytes());
        d.extend_from_slice(&1004u16.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        viewer.seal_rtcp(&mut d).expect("seals");
        assert_eq!(e.handle_srtcp(&d, now), Ok(true), "{profile:?}: the PLI asks for a keyframe");
        let until = now + Duration::from_millis(50);
        let got = drain(&mut e, &mut rx, &mut now, until);
        assert!(got.iter().any(|g| g.0 == RTX && u16::from_be_bytes([g.3[0], g.3[1]]) == 1004), "{profile:?}: the NACK is answered");
        // Tampered, truncated or garbage datagrams are refused and change nothing.
        let mut bad = d.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(e.handle_srtcp(&bad, now).is_err());
        assert!(e.handle_srtcp(&d[..10], now).is_err());
        assert!(e.handle_srtcp(&[0x80, 200, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8], now).is_err());
        // 20 receiver reports in one datagram: the 4 past the limit are dropped and counted.
        e.take_counts();
        let mut many: Vec<u8> = (0..MAX_RTCP_PACKETS + 4).flat_map(|_| [0x80, 201, 0, 1, 0, 0, 0, 9]).collect();
        viewer.seal_rtcp(&mut many).expect("seals");
        assert_eq!(e.handle_srtcp(&many, now), Ok(false));
        assert_eq!(e.take_counts().rtcp_over_limit, 4, "{profile:?}");
    }
}

#[test]
fn rtcp_compounds_split_on_their_lengths_and_padding() {
    let mut buf: &[u8] = &[0x80, 201, 0, 1, 0, 0, 0, 9, 0xa1, 206, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 4];
    assert_eq!(next_rtcp(&mut buf).map(<[u8]>::len), Some(8));
    assert_eq!(next_rtcp(&mut buf).map(<[u8]>::len), Some(12), "padding removed");
    assert_eq!(next_rtcp(&mut buf), None);
    for garbage in [&[0x80u8, 201, 0xff, 0xff, 0][..], &[0xa0, 201, 0, 0][..], &[0xa0, 201, 0, 0, 0, 0, 0, 9][..], &[1][..]] {
        let mut g = garbage;
        assert_eq!(next_rtcp(&mut g), None, "{garbage:?}");
    }
}

#[test]
fn per_viewer_records_stay_compact() {
    // Every viewer holds a pacer queue, a history and cipher state: their size is the
    // memory per viewer (BENCHMARKS.md "Memory per viewer").
    assert!(std::mem::size_of::<Queued>() <= 48, "{}", std::mem::size_of::<Queued>());
    assert!(std::mem::size_of::<Sent>() <= 32);
    assert!(std::mem::size_of::<ViewerEgress>() <= 2048, "{}", std::mem::size_of::<ViewerEgress>());
}

#[test]
fn media_waits_for_the_start_delay() {
    let now = Instant::now();
    let (mut e, _) = egress(SrtpProfile::AeadAes128Gcm, now);
    e.send(video(1, now), now);
    assert!(e.poll_datagram(now).is_none());
    assert_eq!(e.poll_timeout(), now + START_DELAY);
    assert!(e.poll_datagram(now + START_DELAY).is_some());
}

#[test]
fn a_full_queue_drops_and_counts_and_a_skip_empties_the_video() {
    let now = Instant::now();
    let (mut e, _) = egress(SrtpProfile::AeadAes128Gcm, now);
    for seq in 0..(MAX_QUEUED as u64 + 10) {
        e.send(video(seq, now), now);
    }
    assert_eq!(e.take_counts().dropped_full, 10);
    assert_eq!(e.oldest_video(), Some(now));
    assert_eq!(e.drop_video(), MAX_QUEUED);
    assert_eq!(e.oldest_video(), None);
}
