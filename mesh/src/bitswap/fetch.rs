//! The Bitswap client's core: which peers to ask for which block, when to ask the next
//! provider, and when to give up. A pure state machine (inputs and time in, actions out); the
//! server module's tokio side sends its wants and feeds it the blocks and presences that arrive.
//!
//! A fetch asks up to [`FANOUT`] providers at once (want-block with DONT_HAVE wanted) and asks the
//! next provider when one answers DONT_HAVE, sends a block that does not hash to the CID or cannot
//! be reached. A DONT_HAVE leaves the want in place (a patient server sends the block when it
//! arrives, as for a live segment wanted before it is stored), so a fetch ends when the block
//! comes, at its deadline, or early with [`FetchError::NotFound`] once no provider is left. A completed fetch cancels its wants at every other peer asked. At most
//! [`MAX_PER_PEER`] wants are outstanding at one peer and [`MAX_FETCHES`] fetches at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use cid::Cid;
use libp2p::PeerId;
use sha2::{Digest, Sha256};

/// Providers asked at once per fetch.
pub const FANOUT: usize = 3;
/// Most outstanding wants at one peer.
pub const MAX_PER_PEER: usize = 256;
/// Most fetches in progress.
pub const MAX_FETCHES: usize = 4096;
/// Default time a fetch may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No provider sent the block before the deadline.
    #[error("no provider sent the block in time")]
    Timeout,
    /// No provider is left: each sent a block that did not verify or could not be reached.
    #[error("no provider has the block")]
    NotFound,
    /// This node runs no Bitswap.
    #[error("Bitswap is off on this node")]
    Disabled,
    /// Too many fetches in progress.
    #[error("too many fetches in progress")]
    Busy,
    /// The CID's hash function cannot be verified here.
    #[error("unsupported hash function {0:#x}")]
    UnsupportedHash(u64),
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `peer` a want-block for `cid` (DONT_HAVE wanted).
    Want {
        /// The provider.
        peer: PeerId,
        /// The block.
        cid: Cid,
    },
    /// Revoke an earlier want at `peer`.
    Cancel {
        /// The provider.
        peer: PeerId,
        /// The block.
        cid: Cid,
    },
    /// A fetch ended.
    Done {
        /// The block.
        cid: Cid,
        /// Its verified bytes, or why not.
        result: Result<Vec<u8>, FetchError>,
        /// The peer that sent it.
        from: Option<PeerId>,
    },
}

struct Fetch {
    /// Providers not asked yet.
    waiting: VecDeque<PeerId>,
    /// Providers asked whose want is outstanding.
    asked: HashSet<PeerId>,
    /// Providers that answered DONT_HAVE (their want stays), sent a bad block or failed (their
    /// want is gone); never asked again.
    declined: HashSet<PeerId>,
    deadline: Instant,
}

/// In-progress fetches.
#[derive(Default)]
pub struct Fetcher {
    fetches: HashMap<Cid, Fetch>,
    outstanding: HashMap<PeerId, usize>,
    actions: VecDeque<Action>,
}

impl Fetcher {
    /// No fetch in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts fetching `cid` from `providers` (in order of preference) until `deadline`. A fetch
    /// already running for `cid` gains the new providers.
    pub fn start(&mut self, cid: Cid, providers: impl IntoIterator<Item = PeerId>, deadline: Instant) {
        let code = cid.hash().code();
        if code != SHA2_256 && code != IDENTITY {
            self.actions.push_back(Action::Done { cid, result: Err(FetchError::UnsupportedHash(code)), from: None });
            return;
        }
        if !self.fetches.contains_key(&cid) && self.fetches.len() >= MAX_FETCHES {
            self.actions.push_back(Action::Done { cid, result: Err(FetchError::Busy), from: None });
            return;
        }
        let f = self.fetches.entry(cid).or_insert_with(|| Fetch {
            waiting: VecDeque::new(),
            asked: HashSet::new(),
            declined: HashSet::new(),
            deadline,
        });
        for p in providers {
            if !f.asked.contains(&p) && !f.declined.contains(&p) && !f.waiting.contains(&p) {
                f.waiting.push_back(p);
            }
        }
        self.ask_more(cid);
        self.end_if_hopeless(cid);
    }

    /// A block arrived from `peer` as `(prefix CID, data)`: `cid` is what the data claims to be
    /// (from the message's CID prefix); it completes the fetch only when the data hashes to it.
    pub fn on_block(&mut self, peer: PeerId, cid: Cid, data: Vec<u8>) {
        if !self.fetches.contains_key(&cid) {
            return;
        }
        if verify(&cid, &data) {
            self.finish(cid, Ok(data), Some(peer));
        } else {
            self.decline(peer, cid, true);
        }
    }

    /// `peer` does not have `cid` (now).
    pub fn on_dont_have(&mut self, peer: PeerId, cid: Cid) {
        self.decline(peer, cid, false);
    }

    /// `peer` cannot be reached: every want there counts as declined.
    pub fn on_peer_failed(&mut self, peer: PeerId) {
        let cids: Vec<Cid> = self.fetches.iter().filter(|(_, f)| f.asked.contains(&peer)).map(|(c, _)| *c).collect();
        for cid in cids {
            self.decline(peer, cid, true);
        }
    }

    /// Ends fetches past their deadline.
    pub fn tick(&mut self, now: Instant) {
        let late: Vec<Cid> = self.fetches.iter().filter(|(_, f)| f.deadline <= now).map(|(c, _)| *c).collect();
        for cid in late {
            self.finish(cid, Err(FetchError::Timeout), None);
        }
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Fetches in progress.
    pub fn len(&self) -> usize {
        self.fetches.len()
    }

    /// True when nothing is being fetched.
    pub fn is_empty(&self) -> bool {
        self.fetches.is_empty()
    }

    /// Whether `cid` is being fetched.
    pub fn is_fetching(&self, cid: &Cid) -> bool {
        self.fetches.contains_key(cid)
    }

    /// Wants outstanding at `peer`.
    pub fn outstanding(&self, peer: &PeerId) -> usize {
        self.outstanding.get(peer).copied().unwrap_or(0)
    }

    /// The earliest deadline of a fetch in progress.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.fetches.values().map(|f| f.deadline).min()
    }

    fn decline(&mut self, peer: PeerId, cid: Cid, drop_want: bool) {
        let Some(f) = self.fetches.get_mut(&cid) else { return };
        if !f.asked.contains(&peer) || f.declined.contains(&peer) {
            return;
        }
        f.declined.insert(peer);
        if drop_want {
            f.asked.remove(&peer);
            self.release(peer);
            self.actions.push_back(Action::Cancel { peer, cid });
        }
        self.ask_more(cid);
        self.end_if_hopeless(cid);
    }

    /// Asks waiting providers until [`FANOUT`] undeclined wants are out.
    fn ask_more(&mut self, cid: Cid) {
        let Some(f) = self.fetches.get_mut(&cid) else { return };
        let mut skipped = VecDeque::new();
        while f.asked.iter().filter(|p| !f.declined.contains(p)).count() < FANOUT {
            let Some(p) = f.waiting.pop_front() else { break };
            let n = self.outstanding.entry(p).or_default();
            if *n >= MAX_PER_PEER {
                skipped.push_back(p);
                continue;
            }
            *n += 1;
            f.asked.insert(p);
            self.actions.push_back(Action::Want { peer: p, cid });
        }
        // Providers at their limit are asked later (when a want there ends).
        skipped.append(&mut f.waiting);
        f.waiting = skipped;
    }

    /// Ends a fetch with no want outstanding and no provider left to ask.
    fn end_if_hopeless(&mut self, cid: Cid) {
        let Some(f) = self.fetches.get(&cid) else { return };
        if f.asked.is_empty() && f.waiting.is_empty() {
            self.finish(cid, Err(FetchError::NotFound), None);
        }
    }

    fn finish(&mut self, cid: Cid, result: Result<Vec<u8>, FetchError>, from: Option<PeerId>) {
        let Some(f) = self.fetches.remove(&cid) else { return };
        for p in f.asked {
            self.release(p);
            if Some(p) != from {
                self.actions.push_back(Action::Cancel { peer: p, cid });
            }
        }
        self.actions.push_back(Action::Done { cid, result, from });
    }

    fn release(&mut self, peer: PeerId) {
        if let Some(n) = self.outstanding.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.outstanding.remove(&peer);
            }
        }
    }
}

const SHA2_256: u64 = 0x12;
const IDENTITY: u64 = 0x00;

/// Whether `data` hashes to `cid` (sha2-256 or identity multihash).
pub fn verify(cid: &Cid, data: &[u8]) -> bool {
    let mh = cid.hash();
    match mh.code() {
        SHA2_256 => Sha256::digest(data).as_slice() == mh.digest(),
        IDENTITY => mh.digest() == data,
        _ => false,
    }
}

/// The CID a 1.1.0+ payload block claims: its prefix (version, codec, hash code, digest length)
/// with the digest computed from the data. `None` for a malformed prefix or a hash this node
/// cannot compute.
pub fn payload_cid(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let mut rest = prefix;
    let mut next = || -> Option<u64> {
        let (v, used) = super::message::read_varint(rest).ok()?;
        rest = rest.get(used..)?;
        Some(v)
    };
    let (version, codec, code, len) = (next()?, next()?, next()?, next()?);
    let digest: Vec<u8> = match code {
        SHA2_256 if len == 32 => Sha256::digest(data).to_vec(),
        IDENTITY if len == data.len() as u64 => data.to_vec(),
        _ => return None,
    };
    let mh = cid::multihash::Multihash::<64>::wrap(code, &digest).ok()?;
    match version {
        0 if codec == 0x70 && code == SHA2_256 => Some(Cid::new_v0(mh).ok()?),
        1 => Some(Cid::new_v1(codec, mh)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: u8) -> (Cid, Vec<u8>) {
        let data = vec![n; 100];
        let mh = cid::multihash::Multihash::<64>::wrap(SHA2_256, &Sha256::digest(&data)).unwrap();
        (Cid::new_v1(0x55, mh), data)
    }

    fn drain(f: &mut Fetcher) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    fn wants(actions: &[Action]) -> Vec<PeerId> {
        actions.iter().filter_map(|a| if let Action::Want { peer, .. } = a { Some(*peer) } else { None }).collect()
    }

    #[test]
    fn asks_three_providers_and_cancels_the_others_when_one_delivers() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let (cid, data) = block(1);
        let now = Instant::now();
        let mut f = Fetcher::new();
        f.start(cid, peers.clone(), now + DEFAULT_TIMEOUT);
        assert_eq!(wants(&drain(&mut f)), peers[..3].to_vec());
        f.on_block(peers[1], cid, data.clone());
        let a = drain(&mut f);
        let mut cancelled: Vec<PeerId> = a.iter().filter_map(|a| if let Action::Cancel { peer, .. } = a { Some(*peer) } else { None }).collect();
        cancelled.sort();
        let mut expect = vec![peers[0], peers[2]];
        expect.sort();
        assert_eq!(cancelled, expect);
        assert_eq!(a.last(), Some(&Action::Done { cid, result: Ok(data), from: Some(peers[1]) }));
        assert!(f.is_empty());
        assert_eq!(peers.iter().map(|p| f.outstanding(p)).sum::<usize>(), 0);
    }

    #[test]
    fn dont_have_asks_the_next_provider_and_keeps_waiting_for_a_late_block() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let (cid, data) = block(2);
        let mut f = Fetcher::new();
        f.start(cid, peers.clone(), Instant::now() + DEFAULT_TIMEOUT);
        drain(&mut f);
        f.on_dont_have(peers[0], cid);
        assert_eq!(wants(&drain(&mut f)), vec![peers[3]]);
        for p in &peers[1..] {
            f.on_dont_have(*p, cid);
        }
        assert!(drain(&mut f).is_empty(), "every want stays out");
        assert!(f.is_fetching(&cid));
        // A patient server sends the block once it has it.
        f.on_block(peers[0], cid, data.clone());
        let a = drain(&mut f);
        assert_eq!(a.iter().filter(|a| matches!(a, Action::Cancel { .. })).count(), 3);
        assert_eq!(a.last(), Some(&Action::Done { cid, result: Ok(data), from: Some(peers[0]) }));
    }

    #[test]
    fn unreachable_providers_end_the_fetch_once_none_is_left() {
        let peers: Vec<PeerId> = (0..2).map(|_| PeerId::random()).collect();
        let (cid, _) = block(5);
        let mut f = Fetcher::new();
        f.start(cid, peers.clone(), Instant::now() + DEFAULT_TIMEOUT);
        drain(&mut f);
        f.on_peer_failed(peers[0]);
        assert!(f.is_fetching(&cid));
        f.on_peer_failed(peers[1]);
        let a = drain(&mut f);
        assert!(matches!(a.last(), Some(Action::Done { result: Err(FetchError::NotFound), .. })), "{a:?}");
        assert_eq!(peers.iter().map(|p| f.outstanding(p)).sum::<usize>(), 0);
    }

    #[test]
    fn a_block_that_does_not_verify_is_refused_and_the_next_provider_asked() {
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let (cid, data) = block(3);
        let mut f = Fetcher::new();
        f.start(cid, peers.clone(), Instant::now() + DEFAULT_TIMEOUT);
        drain(&mut f);
        f.on_block(peers[0], cid, b"forged".to_vec());
        let a = drain(&mut f);
        assert!(a.contains(&Action::Cancel { peer: peers[0], cid }));
        assert_eq!(wants(&a), vec![peers[3]]);
        assert!(f.is_fetching(&cid));
        f.on_block(peers[3], cid, data.clone());
        assert!(drain(&mut f).contains(&Action::Done { cid, result: Ok(data), from: Some(peers[3]) }));
    }

    #[test]
    fn the_deadline_ends_a_fetch_and_cancels_its_wants() {
        let p = PeerId::random();
        let (cid, _) = block(4);
        let t0 = Instant::now();
        let mut f = Fetcher::new();
        f.start(cid, [p], t0 + Duration::from_secs(5));
        drain(&mut f);
        f.on_dont_have(p, cid);
        assert_eq!(f.next_deadline(), Some(t0 + Duration::from_secs(5)));
        f.tick(t0 + Duration::from_secs(4));
        assert!(drain(&mut f).is_empty());
        f.tick(t0 + Duration::from_secs(5));
        let a = drain(&mut f);
        assert_eq!(a, vec![Action::Cancel { peer: p, cid }, Action::Done { cid, result: Err(FetchError::Timeout), from: None }]);
        assert_eq!(f.outstanding(&p), 0);
    }

    #[test]
    fn per_peer_limit_holds_providers_back_until_wants_end() {
        let p = PeerId::random();
        let mut f = Fetcher::new();
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        for n in 0..=MAX_PER_PEER {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(n as u64).to_be_bytes());
            let cid = Cid::new_v1(0x55, cid::multihash::Multihash::<64>::wrap(SHA2_256, &d).unwrap());
            f.start(cid, [p], deadline);
        }
        let a = drain(&mut f);
        assert_eq!(wants(&a).len(), MAX_PER_PEER);
        assert_eq!(f.outstanding(&p), MAX_PER_PEER);
        assert_eq!(f.len(), MAX_PER_PEER + 1, "the last fetch waits for room");
    }

    #[test]
    fn payload_prefix_and_data_give_the_cid() {
        let (cid, data) = block(9);
        let prefix = super::super::ledger::prefix(&cid);
        assert_eq!(payload_cid(&prefix, &data), Some(cid));
        assert_eq!(payload_cid(&prefix[..2], &data), None);
        assert!(verify(&cid, &data));
        assert!(!verify(&cid, b"other"));
    }
}
