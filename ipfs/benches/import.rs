//! Import throughput (bytes hashed and encoded per second on one core): UnixFS import of an
//! in-memory file into a sink that drops blocks, and into the durable on-disk blockstore.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relaycast_ipfs::unixfs::{self, Profile};
use relaycast_ipfs::{Blockstore, Cid};

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

fn import(c: &mut Criterion) {
    let data = content(64 << 20);
    let mut g = c.benchmark_group("import");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for profile in [Profile::UnixfsV1_2025, Profile::Kubo] {
        g.bench_function(format!("memory/{}", profile.name()), |b| {
            b.iter(|| {
                let mut sink = |_: &Cid, bytes: &[u8]| {
                    black_box(bytes);
                    Ok(())
                };
                unixfs::import_reader(black_box(&data[..]), profile, &mut sink).unwrap()
            })
        });
    }
    let dir = std::env::temp_dir().join(format!("relaycast-ipfs-bench-{}", std::process::id()));
    g.bench_function("blockstore/unixfs-v1-2025", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&dir);
            let store = Blockstore::open(&dir).unwrap();
            store
                .import_reader(&data[..], Profile::UnixfsV1_2025)
                .unwrap()
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, import);
criterion_main!(benches);
