//! Hand-written dag-pb (`PBNode`/`PBLink`) and UnixFS `Data` protobuf encoding.
//!
//! Field order and presence follow `@ipld/dag-pb` and the UnixFS `Data` encoders of the
//! JS importers: links before data in a node; `Hash`, `Name`, `Tsize` in a link; `Type`,
//! `Data`, `filesize`, then unpacked `blocksizes` in UnixFS data.

use cid::Cid;
use thiserror::Error;

use crate::varint;

/// A protobuf structure that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PbError {
    /// The bytes end inside a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A varint is malformed.
    #[error("bad varint: {0}")]
    Varint(#[from] varint::VarintError),
    /// A wire type this decoder does not know.
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// A field has the wrong wire type or an invalid value.
    #[error("invalid field {0}")]
    Field(&'static str),
    /// A link's hash is not a valid CID.
    #[error("invalid link CID")]
    Cid,
}

/// A dag-pb link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// Target of the link.
    pub hash: Cid,
    /// Link name (empty for file chunks).
    pub name: String,
    /// Cumulative size of the target DAG in bytes.
    pub tsize: Option<u64>,
}

/// A dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PbNode {
    /// Links in encoding order.
    pub links: Vec<PbLink>,
    /// Opaque data (UnixFS `Data` for UnixFS nodes).
    pub data: Option<Vec<u8>>,
}

/// UnixFS node types (`Data.DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnixFsType {
    /// Raw bytes.
    Raw,
    /// Directory.
    Directory,
    /// File.
    File,
    /// Metadata.
    Metadata,
    /// Symbolic link.
    Symlink,
    /// HAMT-sharded directory.
    HamtShard,
}

impl UnixFsType {
    fn code(self) -> u64 {
        match self {
            Self::Raw => 0,
            Self::Directory => 1,
            Self::File => 2,
            Self::Metadata => 3,
            Self::Symlink => 4,
            Self::HamtShard => 5,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => Self::Raw,
            1 => Self::Directory,
            2 => Self::File,
            3 => Self::Metadata,
            4 => Self::Symlink,
            5 => Self::HamtShard,
            _ => return None,
        })
    }
}

/// The UnixFS `Data` message (fields this crate writes or reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixFsData {
    /// Node type.
    pub kind: UnixFsType,
    /// Inline bytes (absent when empty).
    pub data: Option<Vec<u8>>,
    /// Total file bytes below this node (files only).
    pub filesize: Option<u64>,
    /// File bytes below each link, in link order.
    pub blocksizes: Vec<u64>,
}

fn put_tag(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint::encode((u64::from(field) << 3) | u64::from(wire), out);
}

fn put_bytes(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_tag(field, 2, out);
    varint::encode(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_varint(field: u32, v: u64, out: &mut Vec<u8>) {
    put_tag(field, 0, out);
    varint::encode(v, out);
}

impl PbLink {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(1, &self.hash.to_bytes(), out);
        put_bytes(2, self.name.as_bytes(), out);
        if let Some(t) = self.tsize {
            put_varint(3, t, out);
        }
    }
}

impl PbNode {
    /// Encodes the node as dag-pb bytes (links first, then data).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.data.as_ref().map_or(0, Vec::len) + self.links.len() * 48 + 8);
        let mut link_buf = Vec::with_capacity(48);
        for l in &self.links {
            link_buf.clear();
            l.encode(&mut link_buf);
            put_bytes(2, &link_buf, &mut out);
        }
        if let Some(d) = &self.data {
            put_bytes(1, d, &mut out);
        }
        out
    }

    /// Decodes dag-pb bytes.
    pub fn decode(buf: &[u8]) -> Result<Self, PbError> {
        let mut node = PbNode::default();
        for field in Fields(buf) {
            match field? {
                (1, Value::Bytes(b)) => node.data = Some(b.to_vec()),
                (2, Value::Bytes(b)) => node.links.push(decode_link(b)?),
                (1 | 2, _) => return Err(PbError::Field("PBNode")),
                _ => return Err(PbError::Field("PBNode unknown field")),
            }
        }
        Ok(node)
    }
}

fn decode_link(buf: &[u8]) -> Result<PbLink, PbError> {
    let mut hash = None;
    let mut name = String::new();
    let mut tsize = None;
    for field in Fields(buf) {
        match field? {
            (1, Value::Bytes(b)) => hash = Some(Cid::try_from(b).map_err(|_| PbError::Cid)?),
            (2, Value::Bytes(b)) => {
                name = String::from_utf8(b.to_vec()).map_err(|_| PbError::Field("PBLink.Name"))?
            }
            (3, Value::Varint(v)) => tsize = Some(v),
            _ => return Err(PbError::Field("PBLink")),
        }
    }
    Ok(PbLink {
        hash: hash.ok_or(PbError::Field("PBLink.Hash"))?,
        name,
        tsize,
    })
}

impl UnixFsData {
    /// A `File` node over children holding `blocksizes` bytes each.
    pub fn file(blocksizes: Vec<u64>) -> Self {
        let filesize = blocksizes.iter().sum();
        Self {
            kind: UnixFsType::File,
            data: None,
            filesize: Some(filesize),
            blocksizes,
        }
    }

    /// A plain (unsharded) `Directory` node.
    pub fn directory() -> Self {
        Self {
            kind: UnixFsType::Directory,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
        }
    }

    /// Encodes the message in the field order of the JS encoders.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.blocksizes.len() * 4);
        put_varint(1, self.kind.code(), &mut out);
        if let Some(d) = self.data.as_deref().filter(|d| !d.is_empty()) {
            put_bytes(2, d, &mut out);
        }
        if let Some(s) = self.filesize {
            put_varint(3, s, &mut out);
        }
        for &b in &self.blocksizes {
            put_varint(4, b, &mut out);
        }
        out
    }

    /// Decodes the message; unknown or unused fields (mode, mtime, HAMT) are skipped.
    pub fn decode(buf: &[u8]) -> Result<Self, PbError> {
        let mut kind = None;
        let mut data = None;
        let mut filesize = None;
        let mut blocksizes = Vec::new();
        for field in Fields(buf) {
            match field? {
                (1, Value::Varint(v)) => {
                    kind = Some(UnixFsType::from_code(v).ok_or(PbError::Field("Data.Type"))?)
                }
                (2, Value::Bytes(b)) => data = Some(b.to_vec()),
                (3, Value::Varint(v)) => filesize = Some(v),
                (4, Value::Varint(v)) => blocksizes.push(v),
                (4, Value::Bytes(mut packed)) => {
                    while !packed.is_empty() {
                        let (v, n) = varint::decode(packed)?;
                        blocksizes.push(v);
                        packed = &packed[n..];
                    }
                }
                (1..=4, _) => return Err(PbError::Field("Data")),
                _ => {}
            }
        }
        Ok(Self {
            kind: kind.ok_or(PbError::Field("Data.Type"))?,
            data,
            filesize,
            blocksizes,
        })
    }

    /// Bytes of file content under this node: inline data plus children. The block sizes come
    /// from the network, so the sum saturates at `u64::MAX` (no real file is that large, and the
    /// exporter refuses a node whose sizes do not add up).
    pub fn content_size(&self) -> u64 {
        self.filesize.unwrap_or_else(|| {
            let inline = self.data.as_ref().map_or(0, |d| d.len() as u64);
            self.blocksizes.iter().fold(inline, |sum, &size| sum.saturating_add(size))
        })
    }
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterator over `(field number, value)` of a protobuf message.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), PbError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = self.step();
        if r.is_err() {
            self.0 = &[];
        }
        Some(r)
    }
}

impl<'a> Fields<'a> {
    fn step(&mut self) -> Result<(u64, Value<'a>), PbError> {
        let (tag, n) = varint::decode(self.0)?;
        self.0 = &self.0[n..];
        let field = tag >> 3;
        if field == 0 {
            return Err(PbError::Field("field number 0"));
        }
        let value = match (tag & 7) as u8 {
            0 => {
                let (v, n) = varint::decode(self.0)?;
                self.0 = &self.0[n..];
                Value::Varint(v)
            }
            1 => {
                self.0 = self.0.get(8..).ok_or(PbError::Truncated)?;
                Value::Fixed
            }
            2 => {
                let (len, n) = varint::decode(self.0)?;
                let rest = &self.0[n..];
                let len = usize::try_from(len).map_err(|_| PbError::Truncated)?;
                if len > rest.len() {
                    return Err(PbError::Truncated);
                }
                self.0 = &rest[len..];
                Value::Bytes(&rest[..len])
            }
            5 => {
                self.0 = self.0.get(4..).ok_or(PbError::Truncated)?;
                Value::Fixed
            }
            w => return Err(PbError::WireType(w)),
        };
        Ok((field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(s: &str) -> Cid {
        s.parse().unwrap()
    }

    #[test]
    fn file_data_layout_matches_js() {
        let d = UnixFsData::file(vec![262144, 10]);
        // Type=2, filesize=262154, blocksizes 262144 and 10 (unpacked).
        assert_eq!(
            d.encode(),
            [
                0x08, 0x02, 0x18, 0x8a, 0x80, 0x10, 0x20, 0x80, 0x80, 0x10, 0x20, 0x0a
            ]
        );
        assert_eq!(UnixFsData::decode(&d.encode()).unwrap(), d);
        assert_eq!(UnixFsData::directory().encode(), [0x08, 0x01]);
    }

    #[test]
    fn node_roundtrip_and_order() {
        let c = cid("bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e");
        let node = PbNode {
            links: vec![PbLink {
                hash: c,
                name: String::new(),
                tsize: Some(11),
            }],
            data: Some(UnixFsData::file(vec![11]).encode()),
        };
        let bytes = node.encode();
        // Links (field 2) come before Data (field 1); the link holds Hash, Name "", Tsize.
        assert_eq!(bytes[0], 0x12);
        assert_eq!(bytes[1] as usize, 2 + 36 + 2 + 2);
        assert_eq!(bytes[2], 0x0a);
        assert_eq!(&bytes[40..44], &[0x12, 0x00, 0x18, 11]);
        assert_eq!(bytes[44], 0x0a);
        assert_eq!(PbNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn packed_blocksizes_decode() {
        let bytes = [0x08, 0x02, 0x22, 0x02, 0x05, 0x06];
        let d = UnixFsData::decode(&bytes).unwrap();
        assert_eq!(d.blocksizes, vec![5, 6]);
        assert_eq!(d.content_size(), 11);
    }

    #[test]
    fn block_sizes_that_overflow_saturate() {
        // Packed blocksizes [u64::MAX, 1] without a filesize (found by the `dagpb` fuzz target).
        let mut bytes = vec![0x08, 0x02, 0x22, 11];
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01]);
        let d = UnixFsData::decode(&bytes).unwrap();
        assert_eq!(d.blocksizes, vec![u64::MAX, 1]);
        assert_eq!(d.content_size(), u64::MAX);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(PbNode::decode(&[0x12, 0x05, 0x0a]).is_err());
        assert!(PbNode::decode(&[0x12, 0x02, 0x0a, 0x00]).is_err());
        assert!(PbNode::decode(&[0x0b]).is_err());
        assert!(PbNode::decode(&[0x80]).is_err());
        assert!(UnixFsData::decode(&[0x18, 0x01]).is_err());
        assert!(UnixFsData::decode(&[0x08, 0x09]).is_err());
        assert_eq!(PbNode::decode(&[]).unwrap(), PbNode::default());
    }
}
