//! UnixFS importer: fixed-size chunks as raw leaves under a balanced dag-pb tree, and flat
//! directories, with the layout and encoding of the JS importers (`ipfs-unixfs-importer`'s
//! balanced builder, `ipfs-car`).

use std::io::Read;

use cid::Cid;
use thiserror::Error;

use crate::block::{DAG_PB, RAW, cid_of};
use crate::dagpb::{PbLink, PbNode, UnixFsData};

/// Chunking and tree-width parameters of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// IPIP-499 `unixfs-v1-2025`: 1 MiB chunks, 1024 links per node (`ipfs-car pack`).
    #[default]
    UnixfsV1_2025,
    /// Kubo's defaults with raw leaves and CIDv1: 256 KiB chunks, 174 links per node.
    Kubo,
}

impl Profile {
    /// Bytes per leaf chunk.
    pub fn chunk_size(self) -> usize {
        match self {
            Self::UnixfsV1_2025 => 1024 * 1024,
            Self::Kubo => 256 * 1024,
        }
    }

    /// Most links in one interior node.
    pub fn max_links(self) -> usize {
        match self {
            Self::UnixfsV1_2025 => 1024,
            Self::Kubo => 174,
        }
    }

    /// The profile's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnixfsV1_2025 => "unixfs-v1-2025",
            Self::Kubo => "kubo",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unixfs-v1-2025" => Ok(Self::UnixfsV1_2025),
            "kubo" => Ok(Self::Kubo),
            other => Err(format!(
                "unknown profile {other:?} (expected unixfs-v1-2025 or kubo)"
            )),
        }
    }
}

/// An import that failed.
#[derive(Debug, Error)]
pub enum ImportError {
    /// Reading the source or writing a block failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Two directory entries have the same name.
    #[error("duplicate directory entry {0:?}")]
    DuplicateName(String),
    /// A directory entry name is empty or contains `/`.
    #[error("invalid directory entry name {0:?}")]
    InvalidName(String),
}

/// Receives the blocks of an import, children before their parents.
pub trait BlockSink {
    /// Stores (or forwards) one block.
    fn put_block(&mut self, cid: &Cid, bytes: &[u8]) -> std::io::Result<()>;
}

impl<F: FnMut(&Cid, &[u8]) -> std::io::Result<()>> BlockSink for F {
    fn put_block(&mut self, cid: &Cid, bytes: &[u8]) -> std::io::Result<()> {
        self(cid, bytes)
    }
}

/// A link to an imported DAG: its root, file bytes and cumulative block bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Root CID.
    pub cid: Cid,
    /// File content bytes under the root (0 for directories).
    pub file_size: u64,
    /// Sum of the sizes of all blocks of the DAG (a link's `Tsize`).
    pub dag_size: u64,
}

/// Streaming balanced-tree builder for one file; feed chunks, then `finish`.
#[derive(Debug)]
pub struct FileBuilder {
    width: usize,
    /// `levels[0]` holds leaves, `levels[k]` nodes of height `k`, not yet under a parent.
    levels: Vec<Vec<Entry>>,
    leaves: u64,
}

impl FileBuilder {
    /// A builder with the profile's tree width.
    pub fn new(profile: Profile) -> Self {
        Self::with_width(profile.max_links())
    }

    /// A builder with `width` links per node (at least 2).
    pub fn with_width(width: usize) -> Self {
        Self {
            width: width.max(2),
            levels: vec![Vec::new()],
            leaves: 0,
        }
    }

    /// Adds the next chunk as a raw leaf.
    pub fn push_chunk(&mut self, chunk: &[u8], sink: &mut impl BlockSink) -> std::io::Result<()> {
        let cid = cid_of(RAW, chunk);
        sink.put_block(&cid, chunk)?;
        self.leaves += 1;
        let len = chunk.len() as u64;
        self.push(
            0,
            Entry {
                cid,
                file_size: len,
                dag_size: len,
            },
            sink,
        )
    }

    fn push(
        &mut self,
        level: usize,
        entry: Entry,
        sink: &mut impl BlockSink,
    ) -> std::io::Result<()> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(entry);
        if self.levels[level].len() == self.width {
            let children = std::mem::take(&mut self.levels[level]);
            let parent = write_file_node(&children, sink)?;
            self.push(level + 1, parent, sink)?;
        }
        Ok(())
    }

    /// Closes the tree and returns its root; an input with one chunk is that raw leaf.
    pub fn finish(mut self, sink: &mut impl BlockSink) -> std::io::Result<Entry> {
        if self.leaves == 0 {
            self.push_chunk(&[], sink)?;
        }
        let mut level = 0;
        loop {
            let higher_pending = self.levels[level + 1..].iter().any(|l| !l.is_empty());
            let row = std::mem::take(&mut self.levels[level]);
            if !higher_pending {
                if let [only] = row.as_slice() {
                    return Ok(*only);
                }
                // Several entries and nothing above: their parent is the root.
                return write_file_node(&row, sink);
            }
            if !row.is_empty() {
                let parent = write_file_node(&row, sink)?;
                self.levels[level + 1].push(parent);
            }
            level += 1;
        }
    }
}

fn write_file_node(children: &[Entry], sink: &mut impl BlockSink) -> std::io::Result<Entry> {
    let data = UnixFsData::file(children.iter().map(|c| c.file_size).collect());
    let node = PbNode {
        links: children
            .iter()
            .map(|c| PbLink {
                hash: c.cid,
                name: String::new(),
                tsize: Some(c.dag_size),
            })
            .collect(),
        data: Some(data.encode()),
    };
    let bytes = node.encode();
    let cid = cid_of(DAG_PB, &bytes);
    sink.put_block(&cid, &bytes)?;
    Ok(Entry {
        cid,
        file_size: data.filesize.unwrap_or(0),
        dag_size: bytes.len() as u64 + children.iter().map(|c| c.dag_size).sum::<u64>(),
    })
}

/// Imports everything `reader` yields as one UnixFS file, one chunk in memory at a time.
pub fn import_reader<R: Read>(
    mut reader: R,
    profile: Profile,
    sink: &mut impl BlockSink,
) -> Result<Entry, ImportError> {
    let mut builder = FileBuilder::new(profile);
    let mut buf = vec![0u8; profile.chunk_size()];
    loop {
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        builder.push_chunk(&buf[..n], sink)?;
        if n < buf.len() {
            break;
        }
    }
    Ok(builder.finish(sink)?)
}

/// Imports an in-memory byte slice as one UnixFS file.
pub fn import_bytes(
    bytes: &[u8],
    profile: Profile,
    sink: &mut impl BlockSink,
) -> Result<Entry, ImportError> {
    let mut builder = FileBuilder::new(profile);
    for chunk in bytes.chunks(profile.chunk_size()) {
        builder.push_chunk(chunk, sink)?;
    }
    Ok(builder.finish(sink)?)
}

/// Fills `buf` from `r` unless the stream ends first; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A flat UnixFS directory of named entries (files or other DAGs already imported).
#[derive(Debug, Default, Clone)]
pub struct DirectoryBuilder {
    entries: Vec<(String, Entry)>,
}

impl DirectoryBuilder {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `entry` under `name`; names must be unique, non-empty and free of `/`.
    pub fn add(&mut self, name: &str, entry: Entry) -> Result<(), ImportError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ImportError::InvalidName(name.to_owned()));
        }
        if self.entries.iter().any(|(n, _)| n == name) {
            return Err(ImportError::DuplicateName(name.to_owned()));
        }
        self.entries.push((name.to_owned(), entry));
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the directory node (links sorted by name bytes) and returns its entry.
    pub fn finish(mut self, sink: &mut impl BlockSink) -> std::io::Result<Entry> {
        self.entries
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let node = PbNode {
            links: self
                .entries
                .iter()
                .map(|(name, e)| PbLink {
                    hash: e.cid,
                    name: name.clone(),
                    tsize: Some(e.dag_size),
                })
                .collect(),
            data: Some(UnixFsData::directory().encode()),
        };
        let bytes = node.encode();
        let cid = cid_of(DAG_PB, &bytes);
        sink.put_block(&cid, &bytes)?;
        Ok(Entry {
            cid,
            file_size: 0,
            dag_size: bytes.len() as u64
                + self.entries.iter().map(|(_, e)| e.dag_size).sum::<u64>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Mem(Vec<(Cid, Vec<u8>)>);

    impl BlockSink for Mem {
        fn put_block(&mut self, cid: &Cid, bytes: &[u8]) -> std::io::Result<()> {
            self.0.push((*cid, bytes.to_vec()));
            Ok(())
        }
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
            .collect()
    }

    #[test]
    fn hello_world_is_one_raw_block() {
        let mut m = Mem::default();
        let e = import_reader(&b"hello world"[..], Profile::default(), &mut m).unwrap();
        assert_eq!(
            e.cid.to_string(),
            "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        );
        assert_eq!(m.0.len(), 1);
        assert_eq!((e.file_size, e.dag_size), (11, 11));
    }

    #[test]
    fn empty_file_is_the_empty_raw_block() {
        let mut m = Mem::default();
        let e = import_reader(&b""[..], Profile::Kubo, &mut m).unwrap();
        assert_eq!(
            e.cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(m.0.len(), 1);
    }

    /// Reference shape: group each level into nodes of `width` until one node is left.
    fn reference_shape(leaves: usize, width: usize) -> Vec<usize> {
        let mut levels = vec![leaves];
        let mut n = leaves;
        while n > 1 {
            n = n.div_ceil(width);
            levels.push(n);
        }
        levels
    }

    fn count_shape(m: &Mem, root: &Cid) -> Vec<usize> {
        let blocks: HashMap<Cid, &Vec<u8>> = m.0.iter().map(|(c, b)| (*c, b)).collect();
        let mut levels = Vec::new();
        let mut row = vec![*root];
        while !row.is_empty() {
            levels.push(row.len());
            let mut next = Vec::new();
            for c in &row {
                if c.codec() == DAG_PB {
                    let node = PbNode::decode(blocks[c]).unwrap();
                    next.extend(node.links.iter().map(|l| l.hash));
                }
            }
            row = next;
        }
        levels.reverse();
        levels
    }

    #[test]
    fn balanced_shape_matches_reference() {
        for width in [2usize, 3, 4] {
            for leaves in 1..=40usize {
                let data = content(leaves * 4 - 1);
                let mut b = FileBuilder::with_width(width);
                let mut m = Mem::default();
                for c in data.chunks(4) {
                    b.push_chunk(c, &mut m).unwrap();
                }
                let root = b.finish(&mut m).unwrap();
                assert_eq!(
                    count_shape(&m, &root.cid),
                    reference_shape(leaves, width),
                    "width {width} leaves {leaves}"
                );
                assert_eq!(root.file_size, data.len() as u64);
                assert_eq!(
                    root.dag_size,
                    m.0.iter().map(|(_, b)| b.len() as u64).sum::<u64>()
                );
                // Children always come before their parent; the root is last.
                assert_eq!(m.0.last().unwrap().0, root.cid);
            }
        }
    }

    #[test]
    fn reader_and_bytes_agree() {
        let data = content(3 * 262144 + 5);
        let a = import_bytes(&data, Profile::Kubo, &mut Mem::default()).unwrap();
        // A reader that returns short reads must not change chunk boundaries.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(1000);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let b = import_reader(Trickle(&data), Profile::Kubo, &mut Mem::default()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.cid.codec(), DAG_PB);
    }

    #[test]
    fn multi_chunk_fixtures_from_js_tools() {
        // CIDs computed by ipfs-unixfs-importer (kubo parameters) and `ipfs-car pack --no-wrap`.
        let data = content(3 * 262144 + 5);
        let k = import_bytes(&data, Profile::Kubo, &mut Mem::default()).unwrap();
        assert_eq!(
            k.cid.to_string(),
            "bafybeica3csi5ov3xa7t263a6iltitgxqbjdrfx4ptibbzhjk7dgpgjz3a"
        );
        let data = content(2 * 1048576 + 3);
        let v = import_bytes(&data, Profile::UnixfsV1_2025, &mut Mem::default()).unwrap();
        assert_eq!(
            v.cid.to_string(),
            "bafybeiahwxgfu7pgb7c4dodszycg5cplk2w2hytv63dkmkwqmrrujbu674"
        );
    }

    #[test]
    fn directory_sorts_names_and_sums_sizes() {
        let mut m = Mem::default();
        let a = import_bytes(b"segment", Profile::default(), &mut m).unwrap();
        let b = import_bytes(b"#EXTM3U\n", Profile::default(), &mut m).unwrap();
        let mut d = DirectoryBuilder::new();
        d.add("seg-1.m4s", a).unwrap();
        d.add("index.m3u8", b).unwrap();
        d.add("init.mp4", a).unwrap();
        assert!(matches!(
            d.add("index.m3u8", b),
            Err(ImportError::DuplicateName(_))
        ));
        assert!(matches!(d.add("a/b", b), Err(ImportError::InvalidName(_))));
        let root = d.finish(&mut m).unwrap();
        // Same root as ipfs-car pack (wrapped) and ipfs-unixfs-importer with wrapWithDirectory.
        assert_eq!(
            root.cid.to_string(),
            "bafybeid4dv4mmccke6ki3ny6b7eugrcrkdwc7u3o5kyspb7q7nm3eqlzte"
        );
        let node = PbNode::decode(&m.0.last().unwrap().1).unwrap();
        let names: Vec<&str> = node.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["index.m3u8", "init.mp4", "seg-1.m4s"]);
        assert_eq!(node.data.as_deref(), Some(&[0x08, 0x01][..]));
        let node_len = m.0.last().unwrap().1.len() as u64;
        assert_eq!(root.dag_size, node_len + 7 + 8 + 7);
    }
}
