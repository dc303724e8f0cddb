//! Wants this node could not answer yet, kept until the block arrives (a live segment is wanted
//! before it exists) or the peer cancels, bounded per peer and in total, and forgotten after
//! [`PATIENCE`]. A pure table: the server feeds it wants, cancels, arrivals and time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use cid::Cid;
use libp2p::PeerId;

use super::message::WantType;

/// Most waiting wants per peer.
pub const MAX_PER_PEER: usize = 1024;
/// Most waiting wants across all peers.
pub const MAX_TOTAL: usize = 16_384;
/// How long a want waits for its block.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Why a want was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer already has [`MAX_PER_PEER`] waiting wants.
    PeerFull,
    /// [`MAX_TOTAL`] wants wait across all peers.
    Full,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    peer: PeerId,
    want_type: WantType,
    until: Instant,
}

/// The waiting wants of every peer.
#[derive(Debug, Default)]
pub struct PendingWants {
    by_cid: HashMap<Cid, Vec<Waiter>>,
    per_peer: HashMap<PeerId, usize>,
    total: usize,
    /// Expiry order (wants all wait the same time, so insertion order); entries of wants that
    /// were answered or cancelled meanwhile are skipped when they come up.
    expiry: VecDeque<(Instant, Cid, PeerId)>,
}

impl PendingWants {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `peer`'s want for `cid` until the block arrives. A second want of the same peer
    /// for the same CID keeps the first one's time and becomes a block want if either was.
    pub fn add(&mut self, peer: PeerId, cid: Cid, want_type: WantType, now: Instant) -> Result<(), Refusal> {
        if let Some(w) = self.by_cid.get_mut(&cid).and_then(|ws| ws.iter_mut().find(|w| w.peer == peer)) {
            if want_type == WantType::Block {
                w.want_type = WantType::Block;
            }
            return Ok(());
        }
        if self.per_peer.get(&peer).copied().unwrap_or(0) >= MAX_PER_PEER {
            return Err(Refusal::PeerFull);
        }
        if self.total >= MAX_TOTAL {
            return Err(Refusal::Full);
        }
        let until = now + PATIENCE;
        self.by_cid.entry(cid).or_default().push(Waiter { peer, want_type, until });
        *self.per_peer.entry(peer).or_default() += 1;
        self.total += 1;
        self.expiry.push_back((until, cid, peer));
        if self.expiry.len() > 2 * MAX_TOTAL {
            self.compact();
        }
        Ok(())
    }

    /// Drops `peer`'s want for `cid`; true if one waited.
    pub fn cancel(&mut self, peer: PeerId, cid: &Cid) -> bool {
        let Some(ws) = self.by_cid.get_mut(cid) else { return false };
        let Some(i) = ws.iter().position(|w| w.peer == peer) else { return false };
        ws.swap_remove(i);
        if ws.is_empty() {
            self.by_cid.remove(cid);
        }
        self.dec(peer);
        true
    }

    /// Drops every want of `peer` (gone, or sent a full wantlist); returns how many waited.
    pub fn forget_peer(&mut self, peer: PeerId) -> usize {
        if !self.per_peer.contains_key(&peer) {
            return 0;
        }
        let mut dropped = 0;
        self.by_cid.retain(|_, ws| {
            let before = ws.len();
            ws.retain(|w| w.peer != peer);
            dropped += before - ws.len();
            !ws.is_empty()
        });
        self.per_peer.remove(&peer);
        self.total -= dropped;
        dropped
    }

    /// The block `cid` arrived: the peers that waited for it and what they wanted (removed).
    pub fn arrived(&mut self, cid: &Cid) -> Vec<(PeerId, WantType)> {
        let Some(ws) = self.by_cid.remove(cid) else { return Vec::new() };
        for w in &ws {
            self.dec(w.peer);
        }
        ws.into_iter().map(|w| (w.peer, w.want_type)).collect()
    }

    /// Forgets wants that waited [`PATIENCE`]; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(until, cid, peer)) = self.expiry.front() {
            if until > now {
                break;
            }
            self.expiry.pop_front();
            let live = self.by_cid.get(&cid).is_some_and(|ws| ws.iter().any(|w| w.peer == peer && w.until == until));
            if live && self.cancel(peer, &cid) {
                expired += 1;
            }
        }
        expired
    }

    /// Whether anyone waits for `cid`.
    pub fn is_wanted(&self, cid: &Cid) -> bool {
        self.by_cid.contains_key(cid)
    }

    /// Every CID someone waits for.
    pub fn cids(&self) -> Vec<Cid> {
        self.by_cid.keys().copied().collect()
    }

    /// Wants waiting across all peers.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when no want waits.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Wants of `peer` waiting.
    pub fn of_peer(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }

    fn dec(&mut self, peer: PeerId) {
        self.total -= 1;
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
    }

    /// Drops expiry entries of wants no longer waiting.
    fn compact(&mut self) {
        let by_cid = &self.by_cid;
        self.expiry
            .retain(|(until, cid, peer)| by_cid.get(cid).is_some_and(|ws| ws.iter().any(|w| w.peer == *peer && w.until == *until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u32) -> Cid {
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&n.to_be_bytes());
        Cid::new_v1(0x55, cid::multihash::Multihash::<64>::wrap(0x12, &d).expect("multihash"))
    }

    #[test]
    fn a_waiting_want_is_handed_back_once_when_its_block_arrives() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut p = PendingWants::new();
        p.add(a, cid(1), WantType::Have, now).unwrap();
        p.add(a, cid(1), WantType::Block, now).unwrap();
        p.add(b, cid(1), WantType::Have, now).unwrap();
        p.add(b, cid(2), WantType::Block, now).unwrap();
        assert_eq!((p.len(), p.of_peer(&a), p.of_peer(&b)), (3, 1, 2));
        let mut got = p.arrived(&cid(1));
        got.sort_by_key(|(peer, _)| *peer != a);
        assert_eq!(got, vec![(a, WantType::Block), (b, WantType::Have)], "a have want upgraded to a block want");
        assert!(p.arrived(&cid(1)).is_empty(), "answered once");
        assert_eq!((p.len(), p.of_peer(&a)), (1, 0));
        assert!(p.is_wanted(&cid(2)));
    }

    #[test]
    fn cancels_and_gone_peers_drop_their_wants() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        let mut p = PendingWants::new();
        for n in 0..5 {
            p.add(a, cid(n), WantType::Block, now).unwrap();
        }
        p.add(b, cid(0), WantType::Block, now).unwrap();
        assert!(p.cancel(a, &cid(0)));
        assert!(!p.cancel(a, &cid(0)));
        assert_eq!(p.forget_peer(a), 4);
        assert_eq!(p.len(), 1);
        assert_eq!(p.arrived(&cid(0)), vec![(b, WantType::Block)]);
        assert!(p.is_empty());
    }

    #[test]
    fn wants_expire_after_the_patience() {
        let a = PeerId::random();
        let t0 = Instant::now();
        let mut p = PendingWants::new();
        p.add(a, cid(1), WantType::Block, t0).unwrap();
        p.add(a, cid(2), WantType::Block, t0 + Duration::from_secs(10)).unwrap();
        p.cancel(a, &cid(2));
        p.add(a, cid(2), WantType::Block, t0 + Duration::from_secs(20)).unwrap();
        assert_eq!(p.expire(t0 + PATIENCE - Duration::from_secs(1)), 0);
        assert_eq!(p.expire(t0 + PATIENCE), 1);
        assert_eq!(p.expire(t0 + PATIENCE + Duration::from_secs(15)), 0, "the cancelled entry is not the re-added want");
        assert_eq!(p.expire(t0 + PATIENCE + Duration::from_secs(20)), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn limits_per_peer_and_in_total_hold_and_add_cancel_churn_stays_bounded() {
        let now = Instant::now();
        let mut p = PendingWants::new();
        let a = PeerId::random();
        for n in 0..MAX_PER_PEER as u32 {
            p.add(a, cid(n), WantType::Block, now).unwrap();
        }
        assert_eq!(p.add(a, cid(u32::MAX), WantType::Block, now), Err(Refusal::PeerFull));
        let mut n = 1_000_000u32;
        while p.len() < MAX_TOTAL {
            let peer = PeerId::random();
            for _ in 0..MAX_PER_PEER.min(MAX_TOTAL - p.len()) {
                p.add(peer, cid(n), WantType::Have, now).unwrap();
                n += 1;
            }
        }
        assert_eq!(p.add(PeerId::random(), cid(n), WantType::Block, now), Err(Refusal::Full));
        p.forget_peer(a);
        let b = PeerId::random();
        for i in 0..3 * MAX_TOTAL as u32 {
            p.add(b, cid(i), WantType::Block, now).unwrap();
            p.cancel(b, &cid(i));
        }
        assert!(p.expiry.len() <= 2 * MAX_TOTAL + 1, "expiry queue {} entries", p.expiry.len());
    }
}
