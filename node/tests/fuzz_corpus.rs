//! Replays every committed fuzz seed (`fuzz/corpus/<target>/`, which also holds the reproducers
//! of crashes found and fixed) through the fuzz targets' bodies as ordinary tests, then a short
//! deterministic mutation run of each target from its seeds: the parsers that see network bytes
//! must not panic on any of it. The coverage-guided runs use `cargo fuzz` in `fuzz/` (see the
//! README's "Fuzzing" section).

#[path = "../../fuzz/src/input.rs"]
mod input;
#[path = "../../fuzz/src/archive.rs"]
mod archive;
#[path = "../../fuzz/src/codec.rs"]
mod codec;
#[path = "../../fuzz/src/ingest.rs"]
mod ingest;
#[path = "../../fuzz/src/ipfs.rs"]
mod ipfs;
#[path = "../../fuzz/src/mesh.rs"]
mod mesh;
#[path = "../../fuzz/src/sfu.rs"]
mod sfu;
#[path = "../../fuzz/src/turn.rs"]
mod turn;

mod targets {
    /// Every fuzz target, by name.
    pub fn all() -> Vec<(&'static str, fn(&[u8]))> {
        [super::archive::TARGETS, super::codec::TARGETS, super::sfu::TARGETS, super::turn::TARGETS, super::mesh::TARGETS, super::ipfs::TARGETS, super::ingest::TARGETS].concat()
    }
}

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files under `dir/<target>/`, sorted; empty when the directory does not exist.
fn inputs(dir: &Path, target: &str) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir.join(target)) else { return Vec::new() };
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

fn replay(dir: &str, require_seeds: bool) {
    let dir = fuzz_dir().join(dir);
    let mut total = 0;
    for (name, run) in targets::all() {
        let files = inputs(&dir, name);
        assert!(!require_seeds || !files.is_empty(), "no seeds in {}/{name}", dir.display());
        for f in files {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz target {name} panicked on {}", f.display());
            total += 1;
        }
    }
    eprintln!("replayed {total} inputs from {}", dir.display());
}

#[test]
fn seed_corpora_replay_without_panics() {
    replay("corpus", true);
}

#[test]
fn every_target_has_a_cargo_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in targets::all() {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
        assert!(fuzz_dir().join(format!("fuzz_targets/{name}.rs")).is_file(), "no fuzz_targets/{name}.rs");
    }
}

/// xorshift64*: a fixed sequence, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One random edit of `data` in the manner of libFuzzer's mutators: flip, set, insert, erase,
/// duplicate a slice, splice in another seed, or cut.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x40, 0x20, 0x10];
    match rng.below(7) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = rng.below(data.len() + 1);
            data.insert(i, rng.next() as u8);
        }
        3 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(16));
            data.drain(i..i + n);
        }
        4 if !data.is_empty() && data.len() < 16_384 => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(64));
            let copy = data[i..i + n].to_vec();
            let at = rng.below(data.len() + 1);
            data.splice(at..at, copy);
        }
        5 if !other.is_empty() => {
            let at = rng.below(data.len() + 1);
            let from = rng.below(other.len());
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        _ => data.truncate(rng.below(data.len() + 1)),
    }
}

#[test]
fn mutated_seeds_do_not_panic() {
    // A budget per target in inputs and in time, so the suite stays short on a slow machine.
    const INPUTS: usize = 3_000;
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(3);
    let dir = fuzz_dir().join("corpus");
    for (name, run) in targets::all() {
        let seeds: Vec<Vec<u8>> = inputs(&dir, name).iter().filter_map(|f| std::fs::read(f).ok()).collect();
        assert!(!seeds.is_empty(), "no seeds for {name}");
        let mut rng = Rng(name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
        let start = std::time::Instant::now();
        let mut done = 0;
        while done < INPUTS && start.elapsed() < BUDGET {
            let mut data = seeds[rng.below(seeds.len())].clone();
            let other = &seeds[rng.below(seeds.len())];
            for _ in 0..1 + rng.below(8) {
                mutate(&mut rng, &mut data, other);
            }
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                let path = std::env::temp_dir().join(format!("relaycast-fuzz-crash-{name}"));
                let _ = std::fs::write(&path, &data);
                panic!("fuzz target {name} panicked on a mutated seed, written to {}", path.display());
            }
            done += 1;
        }
        eprintln!("{name}: {done} mutated inputs in {:?}", start.elapsed());
        assert!(done > 0, "{name} ran no mutated input");
    }
}
