//! Reading UnixFS content back from the store: what a CID is, a file's bytes (or any byte
//! range of them, touching only the blocks that hold it) and names in flat directories.

use cid::Cid;
use thiserror::Error;

use crate::block::{DAG_PB, RAW};
use crate::blockstore::{Blockstore, StoreError};
use crate::dagpb::{PbError, PbLink, PbNode, UnixFsData, UnixFsType};

/// Content that cannot be read back.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The store failed or holds a corrupted block.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block the DAG links to is not stored.
    #[error("block {0} is missing from the store")]
    Missing(Cid),
    /// A dag-pb block or its UnixFS data is malformed.
    #[error("block {0}: {1}")]
    Decode(Cid, PbError),
    /// A file's blocks do not add up to the sizes its nodes declare.
    #[error("block {0} does not match the sizes its parent declares")]
    Inconsistent(Cid),
    /// The CID's codec is neither raw nor dag-pb.
    #[error("unsupported codec {0:#x}")]
    UnsupportedCodec(u64),
    /// The file tree is deeper than any importer builds.
    #[error("block {0}: file tree deeper than {MAX_DEPTH} levels")]
    TooDeep(Cid),
    /// The receiver of the bytes stopped reading.
    #[error("output closed")]
    Closed,
}

/// Deepest file tree read back (a 1024-wide tree of this depth holds far more than any disk).
pub const MAX_DEPTH: usize = 32;

/// What a CID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A file (raw leaf or dag-pb UnixFS file) of `size` bytes.
    File {
        /// Content bytes.
        size: u64,
    },
    /// A flat UnixFS directory with these links.
    Directory {
        /// Entries (name, target, cumulative size).
        links: Vec<PbLink>,
    },
    /// Another UnixFS node type (symlink, HAMT shard, metadata).
    Other,
}

fn load(store: &Blockstore, cid: &Cid) -> Result<Vec<u8>, ExportError> {
    store.get(cid)?.ok_or(ExportError::Missing(*cid))
}

fn decode(cid: &Cid, bytes: &[u8]) -> Result<(PbNode, UnixFsData), ExportError> {
    let node = PbNode::decode(bytes).map_err(|e| ExportError::Decode(*cid, e))?;
    let data = UnixFsData::decode(node.data.as_deref().unwrap_or_default())
        .map_err(|e| ExportError::Decode(*cid, e))?;
    Ok((node, data))
}

/// Describes the root `cid`; `Ok(None)` when the root block is not stored.
pub fn stat(store: &Blockstore, cid: &Cid) -> Result<Option<Kind>, ExportError> {
    match cid.codec() {
        RAW => Ok(store.size(cid)?.map(|size| Kind::File { size })),
        DAG_PB => {
            let Some(bytes) = store.get(cid)? else {
                return Ok(None);
            };
            let (node, data) = decode(cid, &bytes)?;
            Ok(Some(match data.kind {
                UnixFsType::File | UnixFsType::Raw => Kind::File {
                    size: data.content_size(),
                },
                UnixFsType::Directory => Kind::Directory { links: node.links },
                _ => Kind::Other,
            }))
        }
        c => Err(ExportError::UnsupportedCodec(c)),
    }
}

/// Follows `segments` by name through flat directories from `root`; returns every CID on
/// the way (root first, target last), or `Ok(None)` when a name does not exist.
pub fn resolve(
    store: &Blockstore,
    root: &Cid,
    segments: &[&str],
) -> Result<Option<Vec<Cid>>, ExportError> {
    let mut path = vec![*root];
    let mut cur = *root;
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        if cur.codec() != DAG_PB {
            return Ok(None);
        }
        let bytes = load(store, &cur)?;
        let (node, data) = decode(&cur, &bytes)?;
        if data.kind != UnixFsType::Directory {
            return Ok(None);
        }
        match node.links.iter().find(|l| l.name == *seg) {
            Some(l) => {
                cur = l.hash;
                path.push(cur);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(path))
}

/// Streams bytes `[start, end)` of the file `cid` to `out`, reading only the blocks that
/// overlap the range. `out` returns `false` to stop early (then `Err(Closed)`).
pub fn read_range(
    store: &Blockstore,
    cid: &Cid,
    start: u64,
    end: u64,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<(), ExportError> {
    if start >= end {
        return Ok(());
    }
    read_node(store, cid, 0, None, start, end, 0, out)
}

/// Emits the part of node `cid` (whose content begins at file offset `base`) inside `[start, end)`.
#[allow(clippy::too_many_arguments)]
fn read_node(
    store: &Blockstore,
    cid: &Cid,
    base: u64,
    declared: Option<u64>,
    start: u64,
    end: u64,
    depth: usize,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<(), ExportError> {
    if depth > MAX_DEPTH {
        return Err(ExportError::TooDeep(*cid));
    }
    let bytes = load(store, cid)?;
    match cid.codec() {
        RAW => {
            if declared.is_some_and(|d| d != bytes.len() as u64) {
                return Err(ExportError::Inconsistent(*cid));
            }
            emit(&bytes, base, start, end, out)
        }
        DAG_PB => {
            let (node, data) = decode(cid, &bytes)?;
            if !matches!(data.kind, UnixFsType::File | UnixFsType::Raw) {
                return Err(ExportError::Inconsistent(*cid));
            }
            if declared.is_some_and(|d| d != data.content_size())
                || data.blocksizes.len() != node.links.len()
            {
                return Err(ExportError::Inconsistent(*cid));
            }
            let mut pos = base;
            if let Some(inline) = &data.data {
                emit(inline, pos, start, end, out)?;
                pos += inline.len() as u64;
            }
            for (link, &size) in node.links.iter().zip(&data.blocksizes) {
                if pos >= end {
                    break;
                }
                if pos + size > start {
                    read_node(
                        store,
                        &link.hash,
                        pos,
                        Some(size),
                        start,
                        end,
                        depth + 1,
                        out,
                    )?;
                }
                pos += size;
            }
            Ok(())
        }
        c => Err(ExportError::UnsupportedCodec(c)),
    }
}

fn emit(
    bytes: &[u8],
    base: u64,
    start: u64,
    end: u64,
    out: &mut impl FnMut(&[u8]) -> bool,
) -> Result<(), ExportError> {
    let len = bytes.len() as u64;
    let from = start.saturating_sub(base).min(len);
    let to = end.saturating_sub(base).min(len);
    if from < to && !out(&bytes[from as usize..to as usize]) {
        return Err(ExportError::Closed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::{DirectoryBuilder, Profile};

    fn store(tag: &str) -> (Blockstore, std::path::PathBuf) {
        let d =
            std::env::temp_dir().join(format!("relaycast-ipfs-exp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        (Blockstore::open(&d).unwrap(), d)
    }

    fn collect(store: &Blockstore, cid: &Cid, start: u64, end: u64) -> Vec<u8> {
        let mut v = Vec::new();
        read_range(store, cid, start, end, &mut |b| {
            v.extend_from_slice(b);
            true
        })
        .unwrap();
        v
    }

    #[test]
    fn ranges_of_a_multi_level_file() {
        let (s, dir) = store("ranges");
        let data: Vec<u8> = (0..(262144 * 5 + 77))
            .map(|i: usize| (i % 251) as u8 ^ (i / 251) as u8)
            .collect();
        let e = s.import_reader(&data[..], Profile::Kubo).unwrap();
        assert_eq!(
            stat(&s, &e.cid).unwrap(),
            Some(Kind::File {
                size: data.len() as u64
            })
        );
        let n = data.len() as u64;
        for (a, b) in [
            (0, n),
            (0, 1),
            (262143, 262145),
            (n - 1, n),
            (1000, 900_000),
            (n, n + 10),
            (5, 5),
        ] {
            let want = &data[(a.min(n)) as usize..(b.min(n)) as usize];
            assert_eq!(collect(&s, &e.cid, a, b), want, "range {a}..{b}");
        }
        // Stopping early is reported.
        let r = read_range(&s, &e.cid, 0, n, &mut |_| false);
        assert!(matches!(r, Err(ExportError::Closed)));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn directory_resolution_and_missing_blocks() {
        let (s, dir) = store("dir");
        let a = s
            .import_reader(&b"#EXTM3U\n"[..], Profile::default())
            .unwrap();
        let big: Vec<u8> = (0..(262144 * 2 + 1))
            .map(|i: usize| (i % 7) as u8 + (i / 262144) as u8)
            .collect();
        let b = s.import_reader(&big[..], Profile::Kubo).unwrap();
        let mut d = DirectoryBuilder::new();
        d.add("index.m3u8", a).unwrap();
        d.add("seg.m4s", b).unwrap();
        let root = s.put_directory(d).unwrap();
        match stat(&s, &root.cid).unwrap() {
            Some(Kind::Directory { links }) => assert_eq!(links.len(), 2),
            other => panic!("not a directory: {other:?}"),
        }
        assert_eq!(
            resolve(&s, &root.cid, &["seg.m4s"]).unwrap(),
            Some(vec![root.cid, b.cid])
        );
        assert_eq!(resolve(&s, &root.cid, &["nope"]).unwrap(), None);
        assert_eq!(resolve(&s, &root.cid, &["index.m3u8", "x"]).unwrap(), None);
        assert_eq!(collect(&s, &b.cid, 0, big.len() as u64), big);
        // Remove a leaf: reading reports the missing block instead of short output.
        let node = PbNode::decode(&s.get(&b.cid).unwrap().unwrap()).unwrap();
        std::fs::remove_file(s.path_of(&node.links[1].hash)).unwrap();
        let r = read_range(&s, &b.cid, 0, big.len() as u64, &mut |_| true);
        assert!(matches!(r, Err(ExportError::Missing(c)) if c == node.links[1].hash));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
