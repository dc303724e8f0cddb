//! CARv1: a streaming writer (header `{roots, version: 1}` in hand-written dag-cbor, then
//! varint-length-prefixed `cid ++ block` sections), a depth-first DAG export, and a reader.

use std::collections::HashSet;
use std::io::{Read, Write};

use cid::Cid;
use thiserror::Error;

use crate::block::{self, DAG_PB};
use crate::blockstore::{Blockstore, StoreError};
use crate::dagpb::{PbError, PbNode};
use crate::varint;

/// Largest header or section the reader accepts (a block is at most a few MiB).
pub const MAX_SECTION: u64 = 16 << 20;

/// A CAR that cannot be written or read.
#[derive(Debug, Error)]
pub enum CarError {
    /// Writing or reading the stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading a block from the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A block the DAG links to is not in the store.
    #[error("block {0} is missing from the store")]
    Missing(Cid),
    /// A dag-pb block could not be decoded.
    #[error("block {0}: {1}")]
    DagPb(Cid, PbError),
    /// The CAR bytes are malformed.
    #[error("malformed CAR: {0}")]
    Malformed(&'static str),
}

/// Encodes the CARv1 header `{roots: [...], version: 1}` as dag-cbor (canonical key order).
pub fn encode_header(roots: &[Cid]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + roots.len() * 40);
    out.push(0xa2); // map(2)
    cbor_head(3, 5, &mut out);
    out.extend_from_slice(b"roots");
    cbor_head(4, roots.len() as u64, &mut out);
    for r in roots {
        let bytes = r.to_bytes();
        out.extend_from_slice(&[0xd8, 0x2a]); // tag(42)
        cbor_head(2, bytes.len() as u64 + 1, &mut out);
        out.push(0x00); // multibase identity prefix
        out.extend_from_slice(&bytes);
    }
    cbor_head(3, 7, &mut out);
    out.extend_from_slice(b"version");
    out.push(0x01);
    out
}

fn cbor_head(major: u8, v: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    match v {
        0..=23 => out.push(m | v as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, v as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

/// Writes a CARv1 stream section by section.
#[derive(Debug)]
pub struct CarWriter<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header naming `roots`.
    pub fn new(mut out: W, roots: &[Cid]) -> std::io::Result<Self> {
        let header = encode_header(roots);
        let mut prefix = Vec::with_capacity(header.len() + 2);
        varint::encode(header.len() as u64, &mut prefix);
        prefix.extend_from_slice(&header);
        out.write_all(&prefix)?;
        Ok(Self {
            out,
            written: prefix.len() as u64,
        })
    }

    /// Appends one block section.
    pub fn write_block(&mut self, cid: &Cid, bytes: &[u8]) -> std::io::Result<()> {
        let cid_bytes = cid.to_bytes();
        let mut head = Vec::with_capacity(cid_bytes.len() + varint::MAX_LEN);
        varint::encode((cid_bytes.len() + bytes.len()) as u64, &mut head);
        head.extend_from_slice(&cid_bytes);
        self.out.write_all(&head)?;
        self.out.write_all(bytes)?;
        self.written += (head.len() + bytes.len()) as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Visits every block of the DAG under `root` depth-first, parents before children, links
/// in order, each block once (the trustless gateway's `order=dfs`, `dups=n`); identity
/// CIDs are skipped.
pub fn walk_dfs(
    store: &Blockstore,
    root: &Cid,
    mut visit: impl FnMut(&Cid, &[u8]) -> Result<(), CarError>,
) -> Result<(), CarError> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        // Identity CIDs carry their bytes inline: never sent as blocks.
        if !seen.insert(cid) || block::identity_content(&cid).is_some() {
            continue;
        }
        let bytes = store.get(&cid)?.ok_or(CarError::Missing(cid))?;
        visit(&cid, &bytes)?;
        if cid.codec() == DAG_PB {
            let node = PbNode::decode(&bytes).map_err(|e| CarError::DagPb(cid, e))?;
            stack.extend(node.links.iter().rev().map(|l| l.hash));
        }
    }
    Ok(())
}

/// Every block CID of the DAG under `root` that this store holds or names: dag-pb nodes are read
/// for their links, raw leaves are named by their parents and never read (cheap for large files).
/// A dag-pb node that is not stored ends its branch.
pub fn dag_cids(store: &Blockstore, root: &Cid) -> Result<HashSet<Cid>, CarError> {
    let mut seen = HashSet::new();
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) || cid.codec() != DAG_PB {
            continue;
        }
        let Some(bytes) = store.get(&cid)? else { continue };
        let node = PbNode::decode(&bytes).map_err(|e| CarError::DagPb(cid, e))?;
        stack.extend(node.links.iter().map(|l| l.hash));
    }
    seen.retain(|c| block::identity_content(c).is_none());
    Ok(seen)
}

/// Writes the whole DAG under `root` as a CARv1 to `out`; returns the bytes written.
pub fn export<W: Write>(store: &Blockstore, root: &Cid, out: W) -> Result<u64, CarError> {
    let mut w = CarWriter::new(out, &[*root])?;
    walk_dfs(store, root, |cid, bytes| Ok(w.write_block(cid, bytes)?))?;
    let n = w.bytes_written();
    w.finish()?;
    Ok(n)
}

/// Reads a CARv1 stream: the header's roots, then blocks one at a time.
#[derive(Debug)]
pub struct CarReader<R: Read> {
    input: R,
    roots: Vec<Cid>,
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, CarError> {
        let len = varint::read(&mut input)?.ok_or(CarError::Malformed("empty stream"))?;
        if len == 0 || len > MAX_SECTION {
            return Err(CarError::Malformed("header length"));
        }
        let mut header = vec![0u8; len as usize];
        input.read_exact(&mut header)?;
        let roots = decode_header(&header)?;
        Ok(Self { input, roots })
    }

    /// Root CIDs named in the header.
    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, or `None` at the end of the stream.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, CarError> {
        let Some(len) = varint::read(&mut self.input)? else {
            return Ok(None);
        };
        if len == 0 || len > MAX_SECTION {
            return Err(CarError::Malformed("section length"));
        }
        let mut section = vec![0u8; len as usize];
        self.input.read_exact(&mut section)?;
        let mut cursor = &section[..];
        let cid = Cid::read_bytes(&mut cursor).map_err(|_| CarError::Malformed("section CID"))?;
        let data = cursor.to_vec();
        Ok(Some((cid, data)))
    }
}

/// Parses the header map; only `version: 1` with a `roots` array of CIDs is accepted.
fn decode_header(buf: &[u8]) -> Result<Vec<Cid>, CarError> {
    let mut c = Cbor(buf);
    let (major, n) = c.head()?;
    if major != 5 {
        return Err(CarError::Malformed("header is not a map"));
    }
    let mut roots = None;
    let mut version = None;
    for _ in 0..n {
        let key = c.text()?;
        match key {
            b"roots" => {
                let (major, count) = c.head()?;
                if major != 4 {
                    return Err(CarError::Malformed("roots is not an array"));
                }
                let mut list = Vec::new();
                for _ in 0..count {
                    let (major, tag) = c.head()?;
                    if (major, tag) != (6, 42) {
                        return Err(CarError::Malformed("root is not a CID"));
                    }
                    let bytes = c.bytes()?;
                    let cid = bytes
                        .split_first()
                        .filter(|(p, _)| **p == 0)
                        .and_then(|(_, b)| Cid::try_from(b).ok())
                        .ok_or(CarError::Malformed("root CID bytes"))?;
                    list.push(cid);
                }
                roots = Some(list);
            }
            b"version" => {
                let (major, v) = c.head()?;
                if major != 0 {
                    return Err(CarError::Malformed("version is not an integer"));
                }
                version = Some(v);
            }
            _ => return Err(CarError::Malformed("unknown header key")),
        }
    }
    if version != Some(1) {
        return Err(CarError::Malformed("not a CARv1"));
    }
    roots.ok_or(CarError::Malformed("no roots"))
}

struct Cbor<'a>(&'a [u8]);

impl<'a> Cbor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CarError> {
        if n > self.0.len() {
            return Err(CarError::Malformed("truncated header"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn head(&mut self) -> Result<(u8, u64), CarError> {
        let b = self.take(1)?[0];
        let (major, info) = (b >> 5, b & 0x1f);
        let v = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes([self.take(1)?[0], self.take(1)?[0]])),
            26 => {
                let s = self.take(4)?;
                u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
            }
            27 => {
                let s = self.take(8)?;
                u64::from_be_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]])
            }
            _ => return Err(CarError::Malformed("indefinite or reserved CBOR length")),
        };
        Ok((major, v))
    }

    fn string(&mut self, want: u8) -> Result<&'a [u8], CarError> {
        let (major, len) = self.head()?;
        if major != want {
            return Err(CarError::Malformed("unexpected CBOR type"));
        }
        let len = usize::try_from(len).map_err(|_| CarError::Malformed("CBOR length"))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<&'a [u8], CarError> {
        self.string(3)
    }

    fn bytes(&mut self) -> Result<&'a [u8], CarError> {
        self.string(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixfs::Profile;

    #[test]
    fn dag_cids_names_every_block_reading_only_dag_pb_nodes() {
        let dir = std::env::temp_dir().join(format!("relaycast-ipfs-dagcids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Blockstore::open(&dir).unwrap();
        // Three 1 MiB chunks: a dag-pb root over three raw leaves.
        let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
        let e = store.import_reader(&data[..], Profile::default()).unwrap();
        let cids = dag_cids(&store, &e.cid).unwrap();
        assert_eq!(cids.len(), 4);
        let mut walked = HashSet::new();
        walk_dfs(&store, &e.cid, |c, _| {
            walked.insert(*c);
            Ok(())
        })
        .unwrap();
        assert_eq!(cids, walked);
        // A leaf that is gone is still named (it is not read).
        let leaf = *cids.iter().find(|c| c.codec() == block::RAW).unwrap();
        std::fs::remove_file(store.path_of(&leaf)).unwrap();
        assert_eq!(dag_cids(&store, &e.cid).unwrap().len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn header_bytes_match_reference() {
        let root: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let h = encode_header(&[root]);
        let mut expected = vec![0xa2, 0x65];
        expected.extend_from_slice(b"roots");
        expected.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 0x25, 0x00]);
        expected.extend_from_slice(&root.to_bytes());
        expected.push(0x67);
        expected.extend_from_slice(b"version");
        expected.push(0x01);
        assert_eq!(h, expected);
        assert_eq!(decode_header(&h).unwrap(), vec![root]);
        // An empty root list is a valid header too.
        assert_eq!(
            decode_header(&encode_header(&[])).unwrap(),
            Vec::<Cid>::new()
        );
    }

    #[test]
    fn hello_world_car_bytes() {
        // Same bytes as `ipfs-car pack` writes for an 11-byte file, with its root in the header.
        let root: Cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
            .parse()
            .unwrap();
        let mut w = CarWriter::new(Vec::new(), &[root]).unwrap();
        w.write_block(&root, b"hello world").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes[0], 0x3a); // 58-byte header
        assert_eq!(bytes[59], 36 + 11);
        assert_eq!(&bytes[bytes.len() - 11..], b"hello world");
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert_eq!(r.roots(), &[root]);
        assert_eq!(
            r.next_block().unwrap(),
            Some((root, b"hello world".to_vec()))
        );
        assert_eq!(r.next_block().unwrap(), None);
    }

    #[test]
    fn export_walks_dfs_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("relaycast-ipfs-car-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Blockstore::open(&dir).unwrap();
        let data: Vec<u8> = (0..(262144 * 3 + 1))
            .map(|i: usize| (i % 251) as u8 ^ (i / 251) as u8)
            .collect();
        let e = store.import_reader(&data[..], Profile::Kubo).unwrap();
        let mut car = Vec::new();
        export(&store, &e.cid, &mut car).unwrap();
        let mut r = CarReader::new(&car[..]).unwrap();
        assert_eq!(r.roots(), &[e.cid]);
        let mut blocks = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            crate::block::verify(&b.0, &b.1).unwrap();
            blocks.push(b);
        }
        assert_eq!(blocks[0].0, e.cid);
        assert_eq!(blocks.len(), 5);
        let joined: Vec<u8> = blocks[1..].iter().flat_map(|(_, b)| b.clone()).collect();
        assert_eq!(joined, data);
        // A missing child is reported, not skipped.
        std::fs::remove_file(store.path_of(&blocks[2].0)).unwrap();
        assert!(
            matches!(export(&store, &e.cid, std::io::sink()), Err(CarError::Missing(c)) if c == blocks[2].0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_input() {
        assert!(CarReader::new(&[][..]).is_err());
        assert!(CarReader::new(&[0x05, 0xa2][..]).is_err());
        let mut h = encode_header(&[]);
        *h.last_mut().unwrap() = 0x02; // version 2
        let mut car = Vec::new();
        varint::encode(h.len() as u64, &mut car);
        car.extend_from_slice(&h);
        assert!(matches!(
            CarReader::new(&car[..]),
            Err(CarError::Malformed("not a CARv1"))
        ));
        // A truncated section is an error.
        let root: Cid = "bafkqaaa".parse().unwrap();
        let mut w = CarWriter::new(Vec::new(), &[root]).unwrap();
        w.write_block(&root, b"").unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.extend_from_slice(&[0x30, 0x01]);
        let mut r = CarReader::new(&bytes[..]).unwrap();
        assert!(r.next_block().unwrap().is_some());
        assert!(r.next_block().is_err());
    }
}
