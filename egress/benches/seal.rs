//! The SRTP seal of one media packet for each profile: the largest part of the send path's
//! per-packet work (BENCHMARKS.md "Instructions per packet"), and the profile is the DTLS
//! layer's choice.
//!
//! Run: `cargo bench -p relaycast-egress --bench seal`. One iteration seals one 1,200-byte
//! packet (a 12-byte header and its payload) in place, so its time is ns per packet per viewer.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relaycast_egress::srtp::{SrtpProfile, SrtpSender};

const PACKET: usize = 1200;
const HEADER: usize = 12;

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal_rtp");
    group.throughput(Throughput::Bytes(PACKET as u64));
    for (name, profile) in [
        ("aes128_cm_sha1_80", SrtpProfile::Aes128CmSha1_80),
        ("aead_aes128_gcm", SrtpProfile::AeadAes128Gcm),
        ("aead_aes256_gcm", SrtpProfile::AeadAes256Gcm),
    ] {
        let km: Vec<u8> = (0..profile.keying_material_len()).map(|i| i as u8).collect();
        let mut sender = SrtpSender::new(profile, &km, false).expect("keys");
        let mut packet = vec![0u8; PACKET];
        packet[0] = 0x80;
        packet[1] = 96;
        let mut buf = Vec::with_capacity(PACKET + 32);
        let mut seq = 0u16;
        group.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                buf.clear();
                buf.extend_from_slice(&packet);
                sender.seal_rtp(&mut buf, HEADER, 0).expect("seals");
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal);
criterion_main!(benches);
