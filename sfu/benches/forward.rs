//! The per-packet, per-viewer forwarding path: layer decision and header rewrite, then str0m's
//! RTP serialisation and SRTP protect, then a UDP send on loopback.
//!
//! Run: `cargo bench -p relaycast-sfu --bench forward`. Each benchmark handles one packet for one
//! viewer per iteration, so its time is ns per packet per viewer.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relaycast_sfu::codec::vp8;
use relaycast_sfu::forward::Forwarder;
use relaycast_sfu::layer::{LayerPreference, SelectorConfig};
use relaycast_sfu::packet::{MediaPacket, TrackKind};
use relaycast_sfu::rewrite::{SeqTsRewriter, vp8_patch_for};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// How a benchmark sends the protected datagrams.
#[derive(Clone, Copy)]
enum Send {
    /// Not at all.
    None,
    /// One `sendto` per datagram.
    Each,
    /// Through the worker's `sendmmsg` batch, 32 per call.
    Batched,
}

/// Payload size of a typical video packet.
const PAYLOAD: usize = 1100;

/// A server-side Rtc (RTP mode, sending VP8) connected in memory to a receiving client Rtc.
struct Pair {
    server: Rtc,
    client: Rtc,
    server_addr: SocketAddr,
    client_addr: SocketAddr,
    mid: Mid,
}

fn exchange(from: &mut Rtc, to: &mut Rtc, now: Instant) -> (bool, Vec<Event>) {
    let mut events = Vec::new();
    let mut moved = false;
    loop {
        match from.poll_output() {
            Ok(Output::Transmit(t)) => {
                let data = t.contents.to_vec();
                if let Ok(contents) = data.as_slice().try_into() {
                    let input = Input::Receive(
                        now,
                        Receive { proto: Protocol::Udp, source: t.source, destination: t.destination, contents },
                    );
                    let _ = to.handle_input(input);
                    moved = true;
                }
            }
            Ok(Output::Timeout(_)) => break,
            Ok(Output::Event(e)) => events.push(e),
            Err(_) => break,
        }
    }
    (moved, events)
}

fn connect() -> Pair {
    let now = Instant::now();
    let server_addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let client_addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let mut client = Rtc::builder().clear_codecs().enable_vp8(true).build(now);
    let mut server = Rtc::builder().set_rtp_mode(true).clear_codecs().enable_vp8(true).build(now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
    server.add_local_candidate(Candidate::host(server_addr, "udp").unwrap());
    let mut change = client.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    client.sdp_api().accept_answer(pending, answer).unwrap();
    let mut mid = None;
    let (mut s_ok, mut c_ok) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(s_ok && c_ok && mid.is_some()) {
        assert!(Instant::now() < deadline, "in-memory peers did not connect");
        let t = Instant::now();
        let _ = server.handle_input(Input::Timeout(t));
        let _ = client.handle_input(Input::Timeout(t));
        let (_, ev) = exchange(&mut server, &mut client, t);
        for e in ev {
            match e {
                Event::Connected => s_ok = true,
                Event::MediaAdded(m) => mid = Some(m.mid),
                _ => {}
            }
        }
        let (_, ev) = exchange(&mut client, &mut server, t);
        c_ok |= ev.iter().any(|e| matches!(e, Event::Connected));
        std::thread::sleep(Duration::from_millis(1));
    }
    Pair { server, client, server_addr, client_addr, mid: mid.unwrap() }
}

fn vp8_payload(picture_id: u16, key: bool) -> Arc<[u8]> {
    let mut p = vec![0u8; PAYLOAD];
    p[0] = 0x90; // X, S, partition 0
    p[1] = 0xe0; // I, L, T present
    p[2] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
    p[3] = picture_id as u8;
    p[4] = 7; // TL0PICIDX
    p[5] = 0x20; // TID 0, Y
    p[6] = if key { 0x10 } else { 0x11 };
    p.into()
}

fn packet(seq: u64, key: bool, params: str0m::format::PayloadParams) -> MediaPacket {
    let payload = vp8_payload((seq / 4) as u16 & 0x7fff, key);
    MediaPacket {
        stream_id: 1,
        generation: 1,
        kind: TrackKind::Video,
        layer: 2,
        codec: relaycast_sfu::codec::Codec::Vp8,
        params,
        seq,
        ts: (seq as u32 / 4) * 3000,
        marker: seq % 4 == 3,
        keyframe_start: key,
        vp8: vp8::Descriptor::parse(&payload).ok(),
        audio_level: None,
        voice_activity: None,
        arrival: Instant::now(),
        capture: Instant::now(),
        capture_synced: false,
        payload,
    }
}

fn forwarder() -> Forwarder {
    let mut f = Forwarder::with_rewriters(
        SelectorConfig::default(),
        LayerPreference::Fixed(2),
        SeqTsRewriter::with_start(90_000, 1000, 5000),
        SeqTsRewriter::with_start(48_000, 1000, 5000),
    );
    let layers = [
        relaycast_sfu::layer::LayerState { active: true, bitrate_bps: 150_000, height: Some(180) },
        relaycast_sfu::layer::LayerState { active: true, bitrate_bps: 500_000, height: Some(360) },
        relaycast_sfu::layer::LayerState { active: true, bitrate_bps: 1_500_000, height: Some(720) },
    ];
    f.selector().update(Instant::now(), None, &layers);
    f
}

fn bench(c: &mut Criterion) {
    str0m::crypto::from_feature_flags().install_process_default();
    let mut pair = connect();
    let params = *pair.server.codec_config().params().iter().find(|p| p.spec().codec == Codec::Vp8).unwrap();
    let pt = params.pt();
    // Pre-built packets: the publisher side's work is not part of the per-viewer cost.
    let packets: Vec<MediaPacket> = (0..4096u64).map(|i| packet(i, i == 0, params)).collect();

    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.set_nonblocking(true).unwrap();
    // Drain the sink so sends never hit a full buffer.
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
    });

    let mut g = c.benchmark_group("per_packet_per_viewer");
    g.throughput(Throughput::Elements(1));

    let mut fwd = forwarder();
    let mut i = 0usize;
    g.bench_function("rewrite", |b| {
        b.iter(|| {
            let p = &packets[i % packets.len()];
            i += 1;
            let out = fwd.forward(black_box(p));
            if let Some(o) = out
                && let Some(d) = &p.vp8 {
                    black_box(vp8_patch_for(d, o.picture_id, o.tl0_pic_idx));
                }
            black_box(out)
        })
    });

    let mut fwd = forwarder();
    let mut i = 0usize;
    let mid = pair.mid;
    let mut srtp_bytes = 0usize;
    let mut batch = relaycast_sfu::udp::SendBatch::without_gso();
    let mut run = |pair: &mut Pair, fwd: &mut Forwarder, i: &mut usize, send: Send, srtp_bytes: &mut usize| {
        let p = &packets[*i % packets.len()];
        *i += 1;
        let Some(o) = fwd.forward(p) else { return };
        let mut w = RtpWrite::new(pt, SeqNo::from(o.seq), o.ts, p.arrival, p.payload.clone())
            .marker(p.marker)
            .nackable(true);
        if let Some(d) = &p.vp8
            && let Some(patch) = vp8_patch_for(d, o.picture_id, o.tl0_pic_idx)
        {
            w = w.vp8_patch(patch);
        }
        if let Some(tx) = pair.server.direct_api().stream_tx_by_mid(mid, None) {
            tx.write_rtp(w);
        }
        let now = Instant::now();
        let _ = pair.server.handle_input(Input::Timeout(now));
        loop {
            match pair.server.poll_output() {
                Ok(Output::Transmit(t)) => {
                    *srtp_bytes += t.contents.len();
                    match send {
                        Send::None => {
                            black_box(&t);
                        }
                        Send::Each => {
                            let _ = sender.send_to(&t.contents, sink_addr);
                        }
                        Send::Batched => {
                            batch.push(sink_addr, t.contents);
                            if batch.len() >= 32 {
                                use std::os::fd::AsRawFd;
                                black_box(batch.flush(sender.as_raw_fd()));
                            }
                        }
                    }
                }
                Ok(Output::Timeout(_)) | Err(_) => break,
                Ok(Output::Event(_)) => {}
            }
        }
    };
    g.bench_function("rewrite_srtp", |b| {
        b.iter(|| run(&mut pair, &mut fwd, &mut i, Send::None, &mut srtp_bytes))
    });
    g.bench_function("rewrite_srtp_send", |b| {
        b.iter(|| run(&mut pair, &mut fwd, &mut i, Send::Each, &mut srtp_bytes))
    });
    g.bench_function("rewrite_srtp_sendmmsg32", |b| {
        b.iter(|| run(&mut pair, &mut fwd, &mut i, Send::Batched, &mut srtp_bytes))
    });
    g.finish();
    let _ = (&pair.client, pair.server_addr, pair.client_addr);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
