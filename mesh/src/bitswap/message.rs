//! The Bitswap wire message: hand-written protobuf encoding and decoding, and the unsigned-varint
//! length framing used on streams.
//!
//! Decoding is total: malformed input yields [`DecodeError`], never a panic, and every length is
//! checked against the input before use.

/// Largest framed message accepted or produced (the limit boxo and Helia use).
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Most wantlist entries decoded from one message; later entries are skipped unparsed.
pub const MAX_DECODED_ENTRIES: usize = 1024;
/// Most blocks (1.0.0 and 1.1.0+ styles together) decoded from one message; later ones are skipped.
pub const MAX_DECODED_BLOCKS: usize = 1024;
/// Most block presences decoded from one message; later ones are skipped.
pub const MAX_DECODED_PRESENCES: usize = 1024;
/// Longest CID accepted in an entry or a presence (a CIDv1 with a 64-byte digest is ~70 bytes).
pub const MAX_CID: usize = 128;
/// Largest block carried in a message (the Bitswap block size limit).
pub const MAX_DECODED_BLOCK: usize = 2 * 1024 * 1024;

/// What a wantlist entry asks for (Bitswap 1.2.0; absent means [`WantType::Block`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantType {
    /// Send the block.
    Block,
    /// Say whether the block is here (or send it when small).
    Have,
}

/// One wantlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The wanted block's CID, as bytes.
    pub cid: Vec<u8>,
    /// Priority (higher first).
    pub priority: i32,
    /// Whether this revokes an earlier want for the CID.
    pub cancel: bool,
    /// Block or Have.
    pub want_type: WantType,
    /// Whether a DONT_HAVE answer is wanted when the block is missing.
    pub send_dont_have: bool,
}

/// A peer's wantlist (or an update to it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wantlist {
    /// The entries.
    pub entries: Vec<Entry>,
    /// Whether this replaces the whole wantlist.
    pub full: bool,
}

/// A block in a 1.1.0+ payload: CID prefix and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// CID prefix: version, codec, multihash code and digest length as varints.
    pub prefix: Vec<u8>,
    /// The block's bytes.
    pub data: Vec<u8>,
}

/// Presence answer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The block is here.
    Have,
    /// The block is not here.
    DontHave,
}

/// A block presence (Bitswap 1.2.0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockPresence {
    /// CID bytes.
    pub cid: Vec<u8>,
    /// Have or DontHave.
    pub presence: Presence,
}

/// A whole Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants of the sender.
    pub wantlist: Option<Wantlist>,
    /// Blocks, Bitswap 1.0.0 style (data only).
    pub blocks: Vec<Vec<u8>>,
    /// Blocks, Bitswap 1.1.0+ style (prefix and data).
    pub payload: Vec<Block>,
    /// Presences (1.2.0).
    pub block_presences: Vec<BlockPresence>,
    /// Bytes the sender still has queued for the receiver.
    pub pending_bytes: i32,
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint is longer than 10 bytes or overflows.
    #[error("bad varint")]
    BadVarint,
    /// A wire type that protobuf does not define (or a group).
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// A field number of 0.
    #[error("bad field number")]
    FieldNumber,
    /// The message exceeds [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too large")]
    TooLarge(u64),
    /// A CID longer than [`MAX_CID`] or a block larger than [`MAX_DECODED_BLOCK`].
    #[error("field of {0} bytes is too large")]
    FieldTooLarge(usize),
}

// ---- varints ----

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned varint from the front of `buf`: `(value, bytes used)`.
pub fn read_varint(buf: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut v: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return Err(DecodeError::BadVarint);
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    if buf.len() >= 10 {
        Err(DecodeError::BadVarint)
    } else {
        Err(DecodeError::Truncated)
    }
}

// ---- framing ----

/// Encodes `msg` with its unsigned-varint length prefix.
pub fn frame(msg: &Message) -> Vec<u8> {
    let body = msg.encode();
    let mut out = Vec::with_capacity(body.len() + 5);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Splits one length-prefixed frame off the front of `buf`: `Ok(None)` while incomplete,
/// `Ok(Some((body, consumed)))` once whole; an error when the length prefix exceeds `max`.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let (len, n) = match read_varint(buf) {
        Ok(v) => v,
        Err(DecodeError::Truncated) => return Ok(None),
        Err(e) => return Err(e),
    };
    if len > max as u64 {
        return Err(DecodeError::TooLarge(len));
    }
    let len = len as usize;
    match buf.get(n..n + len) {
        Some(body) => Ok(Some((body, n + len))),
        None => Ok(None),
    }
}

// ---- protobuf primitives ----

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_key(out, field, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, VARINT);
    put_varint(out, v);
}

/// An int32 is encoded as the sign-extended 64-bit varint.
fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    put_uint(out, field, i64::from(v) as u64);
}

/// One decoded field.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (key, n) = read_varint(self.buf)?;
        self.buf = &self.buf[n..];
        let field = u32::try_from(key >> 3).map_err(|_| DecodeError::FieldNumber)?;
        if field == 0 {
            return Err(DecodeError::FieldNumber);
        }
        let wire = (key & 7) as u8;
        let value = match wire {
            VARINT => {
                let (v, n) = read_varint(self.buf)?;
                self.buf = &self.buf[n..];
                Value::Varint(v)
            }
            LEN => {
                let (len, n) = read_varint(self.buf)?;
                let rest = &self.buf[n..];
                let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
                let b = rest.get(..len).ok_or(DecodeError::Truncated)?;
                self.buf = &rest[len..];
                Value::Bytes(b)
            }
            I64 => {
                self.buf = self.buf.get(8..).ok_or(DecodeError::Truncated)?;
                Value::Fixed
            }
            I32 => {
                self.buf = self.buf.get(4..).ok_or(DecodeError::Truncated)?;
                Value::Fixed
            }
            other => return Err(DecodeError::WireType(other)),
        };
        Ok(Some((field, value)))
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn cid_bytes(b: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if b.len() > MAX_CID {
        return Err(DecodeError::FieldTooLarge(b.len()));
    }
    Ok(b.to_vec())
}

fn block_bytes(b: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if b.len() > MAX_DECODED_BLOCK {
        return Err(DecodeError::FieldTooLarge(b.len()));
    }
    Ok(b.to_vec())
}

// ---- messages ----

impl Entry {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, 1, &self.cid);
        put_int32(out, 2, self.priority);
        if self.cancel {
            put_uint(out, 3, 1);
        }
        if self.want_type == WantType::Have {
            put_uint(out, 4, 1);
        }
        if self.send_dont_have {
            put_uint(out, 5, 1);
        }
    }

    fn decode(buf: &[u8]) -> Result<Entry, DecodeError> {
        let mut e = Entry {
            cid: Vec::new(),
            priority: 1,
            cancel: false,
            want_type: WantType::Block,
            send_dont_have: false,
        };
        let mut f = fields(buf);
        while let Some((field, v)) = f.next_field()? {
            match (field, v) {
                (1, Value::Bytes(b)) => e.cid = cid_bytes(b)?,
                (2, Value::Varint(v)) => e.priority = v as i32,
                (3, Value::Varint(v)) => e.cancel = v != 0,
                (4, Value::Varint(v)) => {
                    e.want_type = if v == 1 {
                        WantType::Have
                    } else {
                        WantType::Block
                    }
                }
                (5, Value::Varint(v)) => e.send_dont_have = v != 0,
                _ => {}
            }
        }
        Ok(e)
    }
}

impl Wantlist {
    fn encode(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            let mut b = Vec::new();
            e.encode(&mut b);
            put_bytes(out, 1, &b);
        }
        if self.full {
            put_uint(out, 2, 1);
        }
    }

    fn decode(buf: &[u8]) -> Result<Wantlist, DecodeError> {
        let mut w = Wantlist::default();
        let mut f = fields(buf);
        while let Some((field, v)) = f.next_field()? {
            match (field, v) {
                // Entries past the cap are skipped before anything is allocated for them.
                (1, Value::Bytes(b)) if w.entries.len() < MAX_DECODED_ENTRIES => {
                    w.entries.push(Entry::decode(b)?)
                }
                (2, Value::Varint(v)) => w.full = v != 0,
                _ => {}
            }
        }
        Ok(w)
    }
}

impl Block {
    fn decode(buf: &[u8]) -> Result<Block, DecodeError> {
        let mut blk = Block {
            prefix: Vec::new(),
            data: Vec::new(),
        };
        let mut f = fields(buf);
        while let Some((field, v)) = f.next_field()? {
            match (field, v) {
                (1, Value::Bytes(b)) => blk.prefix = cid_bytes(b)?,
                (2, Value::Bytes(b)) => blk.data = block_bytes(b)?,
                _ => {}
            }
        }
        Ok(blk)
    }
}

impl BlockPresence {
    fn decode(buf: &[u8]) -> Result<BlockPresence, DecodeError> {
        let mut p = BlockPresence {
            cid: Vec::new(),
            presence: Presence::Have,
        };
        let mut f = fields(buf);
        while let Some((field, v)) = f.next_field()? {
            match (field, v) {
                (1, Value::Bytes(b)) => p.cid = cid_bytes(b)?,
                (2, Value::Varint(v)) => {
                    p.presence = if v == 1 {
                        Presence::DontHave
                    } else {
                        Presence::Have
                    }
                }
                _ => {}
            }
        }
        Ok(p)
    }
}

impl Message {
    /// Protobuf encoding (without the length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        if let Some(w) = &self.wantlist {
            let mut b = Vec::new();
            w.encode(&mut b);
            put_bytes(&mut out, 1, &b);
        }
        for blk in &self.blocks {
            put_bytes(&mut out, 2, blk);
        }
        for blk in &self.payload {
            let mut b = Vec::with_capacity(blk.prefix.len() + blk.data.len() + 12);
            put_bytes(&mut b, 1, &blk.prefix);
            put_bytes(&mut b, 2, &blk.data);
            put_bytes(&mut out, 3, &b);
        }
        for p in &self.block_presences {
            let mut b = Vec::new();
            put_bytes(&mut b, 1, &p.cid);
            put_uint(
                &mut b,
                2,
                if p.presence == Presence::DontHave {
                    1
                } else {
                    0
                },
            );
            put_bytes(&mut out, 4, &b);
        }
        if self.pending_bytes != 0 {
            put_int32(&mut out, 5, self.pending_bytes);
        }
        out
    }

    fn encoded_len_hint(&self) -> usize {
        self.blocks.iter().map(|b| b.len() + 8).sum::<usize>()
            + self
                .payload
                .iter()
                .map(|b| b.data.len() + b.prefix.len() + 16)
                .sum::<usize>()
            + self.block_presences.len() * 48
            + 16
    }

    /// Decodes a protobuf message body; unknown fields are skipped.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        if buf.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLarge(buf.len() as u64));
        }
        let mut m = Message::default();
        let mut f = fields(buf);
        while let Some((field, v)) = f.next_field()? {
            match (field, v) {
                (1, Value::Bytes(b)) => m.wantlist = Some(Wantlist::decode(b)?),
                // Items past their caps are skipped before anything is allocated for them.
                (2, Value::Bytes(b)) if m.blocks.len() + m.payload.len() < MAX_DECODED_BLOCKS => {
                    m.blocks.push(block_bytes(b)?)
                }
                (3, Value::Bytes(b)) if m.blocks.len() + m.payload.len() < MAX_DECODED_BLOCKS => {
                    m.payload.push(Block::decode(b)?)
                }
                (4, Value::Bytes(b)) if m.block_presences.len() < MAX_DECODED_PRESENCES => {
                    m.block_presences.push(BlockPresence::decode(b)?)
                }
                (5, Value::Varint(v)) => m.pending_bytes = v as i32,
                _ => {}
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message {
            wantlist: Some(Wantlist {
                entries: vec![
                    Entry {
                        cid: vec![1, 2, 3],
                        priority: -5,
                        cancel: false,
                        want_type: WantType::Have,
                        send_dont_have: true,
                    },
                    Entry {
                        cid: vec![9; 36],
                        priority: 7,
                        cancel: true,
                        want_type: WantType::Block,
                        send_dont_have: false,
                    },
                ],
                full: true,
            }),
            blocks: vec![b"old".to_vec()],
            payload: vec![Block {
                prefix: vec![1, 0x55, 0x12, 0x20],
                data: vec![7; 300],
            }],
            block_presences: vec![
                BlockPresence {
                    cid: vec![4, 5],
                    presence: Presence::DontHave,
                },
                BlockPresence {
                    cid: vec![6],
                    presence: Presence::Have,
                },
            ],
            pending_bytes: 1234,
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        assert_eq!(Message::decode(&[]).unwrap(), Message::default());
    }

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, 1 << 32, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(read_varint(&b).unwrap(), (v, b.len()));
        }
        assert_eq!(read_varint(&[0x80]), Err(DecodeError::Truncated));
        assert_eq!(read_varint(&[0xff; 11]), Err(DecodeError::BadVarint));
        assert_eq!(
            read_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(DecodeError::BadVarint)
        );
    }

    #[test]
    fn framing() {
        let m = sample();
        let mut buf = frame(&m);
        let whole = buf.len();
        buf.extend_from_slice(&frame(&Message::default()));
        assert_eq!(split_frame(&buf[..whole - 1], MAX_MESSAGE).unwrap(), None);
        let (body, used) = split_frame(&buf, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(used, whole);
        assert_eq!(Message::decode(body).unwrap(), m);
        let (body, used) = split_frame(&buf[whole..], MAX_MESSAGE).unwrap().unwrap();
        assert_eq!((body.len(), used), (0, 1));
        assert!(matches!(
            split_frame(&buf, 10),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let enc = sample().encode();
        for i in 0..enc.len() {
            let _ = Message::decode(&enc[..i]);
        }
        // Deterministic pseudo-random garbage.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let mut g = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                g.push(x as u8);
            }
            let _ = Message::decode(&g);
            let _ = split_frame(&g, 32);
        }
        // A length running past the end.
        assert_eq!(
            Message::decode(&[0x0a, 0x05, 0x00]),
            Err(DecodeError::Truncated)
        );
        // Groups are not accepted.
        assert_eq!(Message::decode(&[0x0b]), Err(DecodeError::WireType(3)));
        assert_eq!(
            Message::decode(&[0x00, 0x01]),
            Err(DecodeError::FieldNumber)
        );
    }

    #[test]
    fn negative_priority_is_ten_bytes() {
        let mut out = Vec::new();
        put_int32(&mut out, 2, -1);
        assert_eq!(out.len(), 11);
    }
}
