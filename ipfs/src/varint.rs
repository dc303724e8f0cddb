//! Unsigned LEB128 varints as used by multiformats, protobuf and CARv1.

use thiserror::Error;

/// Most bytes a `u64` varint can take.
pub const MAX_LEN: usize = 10;

/// A varint that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended inside the varint.
    #[error("truncated varint")]
    Truncated,
    /// The varint does not fit in 64 bits.
    #[error("varint overflows u64")]
    Overflow,
}

/// Appends `v` as a varint to `out`.
pub fn encode(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Number of bytes `v` takes as a varint.
pub fn encoded_len(v: u64) -> usize {
    let bits = 64 - v.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Decodes a varint from the start of `buf`; returns the value and the bytes consumed.
pub fn decode(buf: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_LEN) {
        let part = u64::from(b & 0x7f);
        if i == MAX_LEN - 1 && b > 1 {
            return Err(VarintError::Overflow);
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    if buf.len() >= MAX_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

/// Reads a varint from a byte stream; `Ok(None)` when the stream ends before its first byte.
pub fn read<R: std::io::Read>(r: &mut R) -> std::io::Result<Option<u64>> {
    let mut buf = [0u8; MAX_LEN];
    for i in 0..MAX_LEN {
        let mut b = [0u8; 1];
        let n = loop {
            match r.read(&mut b) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                VarintError::Truncated,
            ));
        }
        buf[i] = b[0];
        if b[0] & 0x80 == 0 {
            return decode(&buf[..=i])
                .map(|(v, _)| Some(v))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        VarintError::Overflow,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: u64) {
        let mut out = Vec::new();
        encode(v, &mut out);
        assert_eq!(out.len(), encoded_len(v), "length of {v}");
        assert_eq!(decode(&out), Ok((v, out.len())));
        let mut r = &out[..];
        assert_eq!(read(&mut r).unwrap(), Some(v));
    }

    #[test]
    fn edges_roundtrip() {
        for v in [
            0,
            1,
            127,
            128,
            255,
            300,
            16383,
            16384,
            (1 << 32) - 1,
            1 << 32,
            u64::MAX - 1,
            u64::MAX,
        ] {
            roundtrip(v);
        }
    }

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        encode(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
        out.clear();
        encode(127, &mut out);
        assert_eq!(out, [0x7f]);
        out.clear();
        encode(u64::MAX, &mut out);
        assert_eq!(out.len(), 10);
        assert_eq!(out[9], 0x01);
    }

    #[test]
    fn bad_input() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Overflow));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overflow)
        );
        assert_eq!(decode(&[0xff; 11]), Err(VarintError::Overflow));
        let mut r: &[u8] = &[];
        assert_eq!(read(&mut r).unwrap(), None);
        let mut r: &[u8] = &[0x80];
        assert!(read(&mut r).is_err());
    }
}
