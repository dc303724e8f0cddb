//! How often a carrier publishes its presence of a stream, so that a stream's presence topic
//! carries about [`PRESENCE_TARGET`] presences a second however many nodes carry it (sans-IO:
//! presences heard and interval ticks in, publish decisions out).
//!
//! Every carrier follows its stream's topic and so hears every presence published there. Each
//! interval it estimates how many carriers there are from what it heard and its own publishing
//! probability (all carriers converge to the same one), and publishes with probability
//! `PRESENCE_TARGET / carriers` (1 while the stream has fewer carriers than that); the origin
//! publishes every interval and is not counted. A follower then
//! holds a rolling random sample of the carriers (presences expire after a few intervals) instead
//! of all of them: the placement sample of a large tree. What the tree itself relies on (paths,
//! depths) travels down its edges, not in presences.

use std::collections::HashMap;

/// Presences a stream's topic carries per announce interval from all its carriers together,
/// about.
pub const PRESENCE_TARGET: f64 = 16.0;
/// The least publishing probability (a stream of 100,000 carriers at the target).
pub const MIN_PROBABILITY: f64 = PRESENCE_TARGET / 100_000.0;
/// Weight of the newest carrier estimate in the running one.
const SMOOTHING: f64 = 0.3;
/// Most streams whose rate is kept (a node carries far fewer; the excess is not sampled).
pub const MAX_STREAMS: usize = 1024;

/// One stream's publishing rate.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Probability of publishing in an interval.
    probability: f64,
    /// Running estimate of the stream's carriers, this one included.
    carriers: f64,
    /// Presences of other carriers heard since the last tick.
    heard: u32,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { probability: 1.0, carriers: 1.0, heard: 0 }
    }
}

/// The publishing rates of the streams this node carries.
#[derive(Debug, Default)]
pub struct PresenceRate {
    streams: HashMap<String, Rate>,
}

impl PresenceRate {
    /// Another carrier's presence of `stream` arrived (counted only for streams this node
    /// publishes presences of).
    pub fn heard(&mut self, stream: &str) {
        if let Some(r) = self.streams.get_mut(stream) {
            r.heard = r.heard.saturating_add(1);
        }
    }

    /// Once per announce interval for each stream this node carries: whether to publish its
    /// presence now, given `roll`, a uniform random number in [0, 1).
    pub fn tick(&mut self, stream: &str, roll: f64) -> bool {
        if !self.streams.contains_key(stream) && self.streams.len() >= MAX_STREAMS {
            return true;
        }
        let r = self.streams.entry(stream.to_string()).or_default();
        // Others publish with about this node's probability: what was heard, scaled up.
        let seen = f64::from(r.heard) / r.probability + 1.0;
        r.heard = 0;
        r.carriers = (1.0 - SMOOTHING) * r.carriers + SMOOTHING * seen;
        r.probability = (PRESENCE_TARGET / r.carriers).clamp(MIN_PROBABILITY, 1.0);
        roll < r.probability
    }

    /// This node's current probability of publishing a presence of `stream` (1 when unknown).
    pub fn probability(&self, stream: &str) -> f64 {
        self.streams.get(stream).map_or(1.0, |r| r.probability)
    }

    /// Forgets the streams this node no longer carries.
    pub fn retain(&mut self, carries: impl Fn(&str) -> bool) {
        self.streams.retain(|s, _| carries(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    /// `n` carriers of one stream, each hearing every presence the others publish, for `ticks`
    /// intervals; the presences published in each of the last ten intervals.
    fn run(n: usize, ticks: usize, seed: u64) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nodes: Vec<PresenceRate> = (0..n).map(|_| PresenceRate::default()).collect();
        let mut tail = Vec::new();
        for t in 0..ticks {
            let published: Vec<usize> = (0..n).filter(|&i| nodes[i].tick("s", rng.random::<f64>())).collect();
            for &p in &published {
                for (i, node) in nodes.iter_mut().enumerate() {
                    if i != p {
                        node.heard("s");
                    }
                }
            }
            if t + 10 >= ticks {
                tail.push(published.len());
            }
        }
        tail
    }

    #[test]
    fn a_small_stream_publishes_every_presence() {
        for n in [1, 5, 12] {
            assert!(run(n, 30, 1).iter().all(|&k| k == n), "{n} carriers");
        }
    }

    #[test]
    fn a_large_stream_converges_near_the_target_whatever_its_size() {
        for (n, seed) in [(200, 2), (2_000, 3)] {
            let tail = run(n, 40, seed);
            let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
            assert!((8.0..=32.0).contains(&mean), "{n} carriers: {mean} presences per interval ({tail:?})");
        }
    }

    #[test]
    fn streams_are_bounded_and_forgotten() {
        let mut r = PresenceRate::default();
        for i in 0..MAX_STREAMS + 10 {
            assert!(r.tick(&format!("s{i}"), 0.5));
        }
        assert_eq!(r.streams.len(), MAX_STREAMS);
        r.retain(|s| s == "s0");
        assert_eq!(r.streams.len(), 1);
        assert_eq!(r.probability("s0"), 1.0);
    }
}
