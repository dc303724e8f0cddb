//! Fuzz target bodies: one function per parser that sees network bytes, each calling the real
//! parsing code of the node. `fuzz_targets/*.rs` hand libFuzzer's input to these functions, and
//! the corpus replay test (`node/tests/fuzz_corpus.rs`) runs every committed seed through them.
//!
//! A target returns nothing: it fails only by panicking (or by a sanitizer report), which is the
//! bug it looks for. Inputs that need more than one value (a stream split into reads, a sequence
//! of packets) are cut from the fuzzer's bytes by a small reader. The modules follow the crates
//! they exercise; a cargo feature of the same name builds each (all by default), so that one
//! group of targets builds without the others' dependencies.

// Some groups use only some of its readers.
#[allow(dead_code)]
mod input;

#[cfg(feature = "archive")]
pub mod archive;
#[cfg(feature = "codec")]
pub mod codec;
#[cfg(feature = "ingest")]
pub mod ingest;
#[cfg(feature = "ipfs")]
pub mod ipfs;
#[cfg(feature = "mesh")]
pub mod mesh;
#[cfg(feature = "sfu")]
pub mod sfu;
#[cfg(feature = "turn")]
pub mod turn;
