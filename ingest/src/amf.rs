//! AMF0 (Action Message Format 0) values: the encoding of RTMP commands and metadata.

use crate::Error;

/// Deepest nesting of objects and arrays accepted in one value.
pub const MAX_DEPTH: usize = 8;
/// Most properties or elements of one object or array.
pub const MAX_ITEMS: usize = 256;

/// An AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// 0x00: an IEEE 754 double.
    Number(f64),
    /// 0x01.
    Boolean(bool),
    /// 0x02 (and 0x0c long strings when decoding).
    String(String),
    /// 0x03 anonymous object, 0x08 ECMA array: properties in order.
    Object(Vec<(String, Value)>),
    /// 0x05.
    Null,
    /// 0x06.
    Undefined,
    /// 0x0a: a strict array.
    Array(Vec<Value>),
    /// 0x0b: milliseconds since the epoch (the time zone is ignored).
    Date(f64),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of property `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) => props.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Reads bytes of an AMF0 body.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Error::Amf("length overflow"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(Error::Amf("truncated value"))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Error> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, Error> {
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| Error::Amf("string is not UTF-8"))
    }

    fn short_string(&mut self) -> Result<String, Error> {
        let n = self.u16()? as usize;
        self.string(n)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Amf("nested too deep"));
        }
        match self.u8()? {
            0x00 => Ok(Value::Number(self.f64()?)),
            0x01 => Ok(Value::Boolean(self.u8()? != 0)),
            0x02 => Ok(Value::String(self.short_string()?)),
            0x03 => Ok(Value::Object(self.properties(depth)?)),
            0x05 => Ok(Value::Null),
            0x06 => Ok(Value::Undefined),
            0x08 => {
                // The count is advisory; the properties end with the object-end marker.
                self.u32()?;
                Ok(Value::Object(self.properties(depth)?))
            }
            0x0a => {
                let n = self.u32()? as usize;
                if n > MAX_ITEMS {
                    return Err(Error::Amf("array too long"));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            0x0b => {
                let ms = self.f64()?;
                self.u16()?;
                Ok(Value::Date(ms))
            }
            0x0c => {
                let n = self.u32()? as usize;
                Ok(Value::String(self.string(n)?))
            }
            _ => Err(Error::Amf("unsupported type marker")),
        }
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Error> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() {
                if self.u8()? == 0x09 {
                    return Ok(props);
                }
                return Err(Error::Amf("empty key without object end"));
            }
            if props.len() >= MAX_ITEMS {
                return Err(Error::Amf("object has too many properties"));
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }
}

/// Decodes every value of an AMF0 body (a command: name, transaction id, arguments).
pub fn decode_all(buf: &[u8]) -> Result<Vec<Value>, Error> {
    let mut c = Cursor { buf, pos: 0 };
    let mut out = Vec::new();
    while c.pos < buf.len() {
        if out.len() >= MAX_ITEMS {
            return Err(Error::Amf("too many values"));
        }
        out.push(c.value(0)?);
    }
    Ok(out)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Longer strings are cut: everything this server writes is short.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

/// Appends the AMF0 encoding of `v`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Value::String(s) => {
            out.push(0x02);
            put_str(out, s);
        }
        Value::Object(props) => {
            out.push(0x03);
            for (k, v) in props {
                put_str(out, k);
                encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 0x09]);
        }
        Value::Null => out.push(0x05),
        Value::Undefined => out.push(0x06),
        Value::Array(items) => {
            out.push(0x0a);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for v in items {
                encode(v, out);
            }
        }
        Value::Date(ms) => {
            out.push(0x0b);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

/// Encodes values one after the other.
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// An object value from string keys.
pub fn object(props: &[(&str, Value)]) -> Value {
    Value::Object(
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let vals = vec![
            Value::String("connect".into()),
            Value::Number(1.0),
            object(&[
                ("app", Value::String("live".into())),
                ("flag", Value::Boolean(true)),
                ("n", Value::Null),
            ]),
            Value::Array(vec![Value::Undefined, Value::Date(5.0)]),
        ];
        assert_eq!(decode_all(&encode_all(&vals)).unwrap(), vals);
    }

    #[test]
    fn hand_built_connect() {
        // "connect", 1.0, {app: "live"} as ffmpeg writes it.
        let mut b = vec![0x02, 0, 7];
        b.extend_from_slice(b"connect");
        b.push(0);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[0x03, 0, 3]);
        b.extend_from_slice(b"app");
        b.extend_from_slice(&[0x02, 0, 4]);
        b.extend_from_slice(b"live");
        b.extend_from_slice(&[0, 0, 9]);
        let v = decode_all(&b).unwrap();
        assert_eq!(v[0].as_str(), Some("connect"));
        assert_eq!(v[1].as_f64(), Some(1.0));
        assert_eq!(v[2].get("app").and_then(Value::as_str), Some("live"));
    }

    #[test]
    fn ecma_array_and_long_string() {
        let mut b = vec![0x08, 0, 0, 0, 1, 0, 1, b'w', 0x00];
        b.extend_from_slice(&640.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9, 0x0c, 0, 0, 0, 2, b'h', b'i']);
        let v = decode_all(&b).unwrap();
        assert_eq!(v[0].get("w").and_then(Value::as_f64), Some(640.0));
        assert_eq!(v[1].as_str(), Some("hi"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_all(&[0x02, 0, 9, b'a']).is_err());
        assert!(decode_all(&[0x11]).is_err());
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x0c, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x03, 0, 0, 0x07]).is_err());
        // Objects nested deeper than MAX_DEPTH.
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend_from_slice(&[0x03, 0, 1, b'a']);
        }
        assert_eq!(decode_all(&deep), Err(Error::Amf("nested too deep")));
    }
}
