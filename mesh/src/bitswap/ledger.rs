//! Sans-IO server logic: which lookups a wantlist asks for, what each lookup answers, and the
//! bounded per-peer queue of answers packed into outgoing messages.

use std::collections::{HashSet, VecDeque};

use cid::Cid;

use super::message::{Block, BlockPresence, Message, Presence, WantType};

/// Most wantlist entries served from one message (the rest are ignored).
pub const MAX_ENTRIES_PER_MESSAGE: usize = 1024;
/// Largest block served; bigger ones are answered as missing (the Bitswap block size limit).
pub const MAX_BLOCK: usize = 2 * 1024 * 1024;
/// Target size of one outgoing message (a single larger block still goes alone).
pub const TARGET_MESSAGE: usize = 1024 * 1024;

/// The Bitswap protocol version spoken with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `/ipfs/bitswap/1.0.0`: blocks without prefixes, no presences.
    V100,
    /// `/ipfs/bitswap/1.1.0`: blocks with CID prefixes.
    V110,
    /// `/ipfs/bitswap/1.2.0`: want-have and block presences.
    V120,
}

impl Version {
    /// The protocol id.
    pub fn protocol(self) -> &'static str {
        match self {
            Version::V100 => "/ipfs/bitswap/1.0.0",
            Version::V110 => "/ipfs/bitswap/1.1.0",
            Version::V120 => "/ipfs/bitswap/1.2.0",
        }
    }
}

/// One block the peer asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The block.
    pub cid: Cid,
    /// Block or Have.
    pub want_type: WantType,
    /// Whether a miss is answered with DONT_HAVE.
    pub send_dont_have: bool,
}

/// What one incoming message asks of the server.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Wants to look up, highest priority first.
    pub wants: Vec<Want>,
    /// CIDs (as bytes) whose queued answers are revoked.
    pub cancels: Vec<Vec<u8>>,
    /// The message carries the peer's full wantlist (replacing what it wanted before).
    pub full: bool,
}

/// Turns an incoming message into lookups and cancels. Entries with undecodable CIDs, duplicates
/// and entries past [`MAX_ENTRIES_PER_MESSAGE`] are dropped. Before 1.2.0 every want is a block want.
pub fn plan(msg: &Message, version: Version) -> Plan {
    let mut p = Plan::default();
    let Some(wl) = &msg.wantlist else { return p };
    p.full = wl.full;
    let mut seen = HashSet::new();
    let mut wants: Vec<(i32, Want)> = Vec::new();
    for e in wl.entries.iter().take(MAX_ENTRIES_PER_MESSAGE) {
        if e.cancel {
            p.cancels.push(e.cid.clone());
            continue;
        }
        let Ok(cid) = Cid::try_from(e.cid.as_slice()) else {
            continue;
        };
        if !seen.insert(cid) {
            continue;
        }
        let (want_type, send_dont_have) = if version >= Version::V120 {
            (e.want_type, e.send_dont_have)
        } else {
            (WantType::Block, false)
        };
        wants.push((
            e.priority,
            Want {
                cid,
                want_type,
                send_dont_have,
            },
        ));
    }
    wants.sort_by_key(|w| std::cmp::Reverse(w.0));
    p.wants = wants.into_iter().map(|(_, w)| w).collect();
    p
}

/// The result of looking a want up in the block source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The block's bytes (for a block want).
    Block(Vec<u8>),
    /// The block is present (for a have want).
    Present,
    /// The block is not here.
    Missing,
}

/// One queued answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A block with its CID.
    Block {
        /// The block's CID.
        cid: Cid,
        /// Its bytes.
        data: Vec<u8>,
    },
    /// A HAVE or DONT_HAVE.
    Presence {
        /// The CID.
        cid: Cid,
        /// Have or DontHave.
        presence: Presence,
    },
}

impl Item {
    fn cid(&self) -> &Cid {
        match self {
            Item::Block { cid, .. } | Item::Presence { cid, .. } => cid,
        }
    }

    fn cost(&self) -> usize {
        match self {
            Item::Block { data, .. } => data.len() + 64,
            Item::Presence { .. } => 48,
        }
    }
}

/// What a want's lookup result answers, if anything.
pub fn answer(want: &Want, found: Found, version: Version) -> Option<Item> {
    let cid = want.cid;
    let dont_have = || {
        (want.send_dont_have && version >= Version::V120).then_some(Item::Presence {
            cid,
            presence: Presence::DontHave,
        })
    };
    match (want.want_type, found) {
        (WantType::Block, Found::Block(data)) if data.len() <= MAX_BLOCK => {
            Some(Item::Block { cid, data })
        }
        (WantType::Have, Found::Present) if version >= Version::V120 => Some(Item::Presence {
            cid,
            presence: Presence::Have,
        }),
        (WantType::Have, Found::Block(data)) if data.len() <= MAX_BLOCK => {
            Some(Item::Block { cid, data })
        }
        _ => dont_have(),
    }
}

/// The CID prefix carried with a block in 1.1.0+: version, codec, hash code, digest length.
pub fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    super::message::put_varint(&mut out, u64::from(cid.version()));
    super::message::put_varint(&mut out, cid.codec());
    super::message::put_varint(&mut out, cid.hash().code());
    super::message::put_varint(&mut out, u64::from(cid.hash().size()));
    out
}

/// Bounded queue of answers for one peer.
#[derive(Debug)]
pub struct PeerQueue {
    items: VecDeque<Item>,
    cost: usize,
    max_items: usize,
    max_cost: usize,
}

impl PeerQueue {
    /// A queue holding at most `max_items` answers and about `max_cost` bytes.
    pub fn new(max_items: usize, max_cost: usize) -> Self {
        PeerQueue {
            items: VecDeque::new(),
            cost: 0,
            max_items,
            max_cost,
        }
    }

    /// Whether another answer may be pushed (one answer may overshoot the byte bound).
    pub fn has_room(&self) -> bool {
        self.items.len() < self.max_items && self.cost < self.max_cost
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of queued answers.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Queues an answer; returns false (dropping it) when the queue is full.
    pub fn push(&mut self, item: Item) -> bool {
        if !self.has_room() {
            return false;
        }
        self.cost += item.cost();
        self.items.push_back(item);
        true
    }

    /// Drops queued answers for a CID given as bytes; returns how many were dropped.
    pub fn cancel(&mut self, cid: &[u8]) -> usize {
        let Ok(cid) = Cid::try_from(cid) else {
            return 0;
        };
        let before = self.items.len();
        let mut cost = self.cost;
        self.items.retain(|i| {
            let keep = i.cid() != &cid;
            if !keep {
                cost -= i.cost();
            }
            keep
        });
        self.cost = cost;
        before - self.items.len()
    }

    /// Packs queued answers into one message of about `target` bytes (at least one answer).
    pub fn next_message(&mut self, version: Version, target: usize) -> Option<Message> {
        let mut msg = Message::default();
        let mut size = 0;
        while let Some(item) = self.items.front() {
            let c = item.cost();
            if size > 0 && size + c > target {
                break;
            }
            let Some(item) = self.items.pop_front() else {
                break;
            };
            self.cost -= c;
            size += c;
            match item {
                Item::Block { cid, data } => match version {
                    Version::V100 => msg.blocks.push(data),
                    _ => msg.payload.push(Block {
                        prefix: prefix(&cid),
                        data,
                    }),
                },
                Item::Presence { cid, presence } => {
                    if version >= Version::V120 {
                        msg.block_presences.push(BlockPresence {
                            cid: cid.to_bytes(),
                            presence,
                        });
                    }
                }
            }
        }
        if msg.blocks.is_empty() && msg.payload.is_empty() && msg.block_presences.is_empty() {
            return None;
        }
        msg.pending_bytes = i32::try_from(
            self.items
                .iter()
                .map(|i| {
                    if let Item::Block { data, .. } = i {
                        data.len()
                    } else {
                        0
                    }
                })
                .sum::<usize>(),
        )
        .unwrap_or(i32::MAX);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::message::{Entry, Wantlist};
    use super::*;

    fn cid_of(n: u8) -> Cid {
        // CIDv1 raw with an identity-like sha2-256 digest of 32 copies of n.
        let mh = cid::multihash::Multihash::<64>::wrap(0x12, &[n; 32]).unwrap();
        Cid::new_v1(0x55, mh)
    }

    fn entry(cid: &Cid, priority: i32, want_type: WantType, cancel: bool, sdh: bool) -> Entry {
        Entry {
            cid: cid.to_bytes(),
            priority,
            cancel,
            want_type,
            send_dont_have: sdh,
        }
    }

    #[test]
    fn plan_orders_dedups_and_filters() {
        let (a, b) = (cid_of(1), cid_of(2));
        let msg = Message {
            wantlist: Some(Wantlist {
                entries: vec![
                    entry(&a, 1, WantType::Block, false, false),
                    entry(&b, 9, WantType::Have, false, true),
                    entry(&a, 5, WantType::Have, false, true),
                    Entry {
                        cid: vec![0xff, 0x00],
                        priority: 3,
                        cancel: false,
                        want_type: WantType::Block,
                        send_dont_have: true,
                    },
                    entry(&cid_of(3), 1, WantType::Block, true, false),
                ],
                full: false,
            }),
            ..Default::default()
        };
        let p = plan(&msg, Version::V120);
        assert_eq!(p.wants.len(), 2);
        assert_eq!(
            p.wants[0],
            Want {
                cid: b,
                want_type: WantType::Have,
                send_dont_have: true
            }
        );
        assert_eq!(
            p.wants[1],
            Want {
                cid: a,
                want_type: WantType::Block,
                send_dont_have: false
            }
        );
        assert_eq!(p.cancels, vec![cid_of(3).to_bytes()]);
        // Before 1.2.0 every want is a block want without DONT_HAVE.
        let p = plan(&msg, Version::V110);
        assert!(
            p.wants
                .iter()
                .all(|w| w.want_type == WantType::Block && !w.send_dont_have)
        );
    }

    #[test]
    fn answers() {
        let c = cid_of(7);
        let block = Want {
            cid: c,
            want_type: WantType::Block,
            send_dont_have: true,
        };
        let have = Want {
            cid: c,
            want_type: WantType::Have,
            send_dont_have: true,
        };
        let quiet = Want {
            cid: c,
            want_type: WantType::Block,
            send_dont_have: false,
        };
        assert_eq!(
            answer(&block, Found::Block(vec![1]), Version::V120),
            Some(Item::Block {
                cid: c,
                data: vec![1]
            })
        );
        assert_eq!(
            answer(&block, Found::Missing, Version::V120),
            Some(Item::Presence {
                cid: c,
                presence: Presence::DontHave
            })
        );
        assert_eq!(answer(&block, Found::Missing, Version::V110), None);
        assert_eq!(answer(&quiet, Found::Missing, Version::V120), None);
        assert_eq!(
            answer(&have, Found::Present, Version::V120),
            Some(Item::Presence {
                cid: c,
                presence: Presence::Have
            })
        );
        assert_eq!(
            answer(&have, Found::Missing, Version::V120),
            Some(Item::Presence {
                cid: c,
                presence: Presence::DontHave
            })
        );
        let huge = vec![0; MAX_BLOCK + 1];
        assert_eq!(answer(&quiet, Found::Block(huge), Version::V120), None);
    }

    #[test]
    fn prefix_of_v0_and_v1() {
        let v1 = cid_of(1);
        assert_eq!(prefix(&v1), vec![1, 0x55, 0x12, 0x20]);
        let v0 =
            Cid::new_v0(cid::multihash::Multihash::<64>::wrap(0x12, &[0; 32]).unwrap()).unwrap();
        assert_eq!(prefix(&v0), vec![0, 0x70, 0x12, 0x20]);
    }

    #[test]
    fn queue_bounds_cancel_and_packing() {
        let mut q = PeerQueue::new(3, 10_000);
        let (a, b, c) = (cid_of(1), cid_of(2), cid_of(3));
        assert!(q.push(Item::Block {
            cid: a,
            data: vec![1; 600]
        }));
        assert!(q.push(Item::Presence {
            cid: b,
            presence: Presence::DontHave
        }));
        assert!(q.push(Item::Block {
            cid: c,
            data: vec![3; 600]
        }));
        assert!(!q.has_room());
        assert!(!q.push(Item::Presence {
            cid: c,
            presence: Presence::Have
        }));
        assert_eq!(q.cancel(&b.to_bytes()), 1);
        assert_eq!(q.cancel(&[1, 2, 3]), 0);
        assert!(q.has_room());
        // Target 700: the first block alone, then the second.
        let m1 = q.next_message(Version::V120, 700).unwrap();
        assert_eq!(m1.payload.len(), 1);
        assert_eq!(m1.payload[0].prefix, vec![1, 0x55, 0x12, 0x20]);
        assert_eq!(m1.pending_bytes, 600);
        let m2 = q.next_message(Version::V100, 700).unwrap();
        assert_eq!(m2.blocks, vec![vec![3; 600]]);
        assert!(q.next_message(Version::V120, 700).is_none());
        assert!(q.is_empty());
        // The byte bound.
        let mut q = PeerQueue::new(100, 1000);
        assert!(q.push(Item::Block {
            cid: a,
            data: vec![0; 2000]
        }));
        assert!(!q.has_room());
        // Presences are dropped for 1.1.0 peers.
        let mut q = PeerQueue::new(10, 10_000);
        q.push(Item::Presence {
            cid: a,
            presence: Presence::Have,
        });
        assert!(q.next_message(Version::V110, 1000).is_none());
    }
}
