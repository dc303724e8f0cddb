//! RFC 8656 §10 framing of STUN messages and ChannelData on a byte stream, as a sans-IO decoder.
//!
//! A STUN message starts with two zero bits and carries its length at bytes 2..4 (plus a 20-byte
//! header); a ChannelData message starts with `01` bits (channels 0x4000..=0x7FFF, RFC 5766 range), carries its length at bytes 2..4 (plus a
//! 4-byte header) and is padded to a multiple of four bytes on a stream.

/// Why a stream cannot be decoded; the connection must be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramingError {
    /// The first bits name neither STUN nor ChannelData.
    #[error("stream byte 0x{0:02x} starts neither a STUN message nor ChannelData")]
    UnknownFrame(u8),
    /// A STUN header without the magic cookie or with a length not a multiple of four.
    #[error("malformed STUN header")]
    MalformedStun,
    /// A frame longer than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Declared frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Splits a byte stream into STUN and ChannelData messages.
#[derive(Debug)]
pub struct StreamDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame: usize,
}

impl StreamDecoder {
    /// A decoder refusing frames longer than `max_frame` bytes (header included).
    pub fn new(max_frame: usize) -> Self {
        StreamDecoder { buf: Vec::with_capacity(4096), start: 0, max_frame }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 4096 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame (ChannelData without its stream padding), `None` when more bytes
    /// are needed, or an error after which the stream must be dropped.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let b = &self.buf[self.start..];
        if b.is_empty() {
            return Ok(None);
        }
        let (len, consumed) = match b[0] >> 6 {
            0 => {
                if b.len() >= 8 && b[4..8] != STUN_MAGIC {
                    return Err(FramingError::MalformedStun);
                }
                if b.len() < 4 {
                    return Ok(None);
                }
                let body = usize::from(u16::from_be_bytes([b[2], b[3]]));
                if body % 4 != 0 {
                    return Err(FramingError::MalformedStun);
                }
                (20 + body, 20 + body)
            }
            1 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                let len = 4 + usize::from(u16::from_be_bytes([b[2], b[3]]));
                (len, (len + 3) & !3)
            }
            _ => return Err(FramingError::UnknownFrame(b[0])),
        };
        if len > self.max_frame {
            return Err(FramingError::TooLarge { len, max: self.max_frame });
        }
        if b.len() < consumed {
            return Ok(None);
        }
        let at = self.start;
        self.start += consumed;
        Ok(Some(&self.buf[at..at + len]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(body_len: u16, fill: u8) -> Vec<u8> {
        let mut v = vec![0x00, 0x01];
        v.extend_from_slice(&body_len.to_be_bytes());
        v.extend_from_slice(&STUN_MAGIC);
        v.extend_from_slice(&[7u8; 12]);
        v.extend(std::iter::repeat_n(fill, usize::from(body_len)));
        v
    }

    fn chan(len: u16, padded: bool) -> Vec<u8> {
        let mut v = vec![0x40, 0x00];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend(std::iter::repeat_n(0xaa, usize::from(len)));
        if padded {
            while v.len() % 4 != 0 {
                v.push(0);
            }
        }
        v
    }

    fn drain(d: &mut StreamDecoder) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut out = vec![];
        while let Some(f) = d.next_frame()? {
            out.push(f.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn back_to_back_frames_split_anywhere() {
        let mut stream = stun(8, 1);
        stream.extend(chan(5, true));
        stream.extend(stun(0, 0));
        stream.extend(chan(8, true));
        for cut in 1..stream.len() {
            let mut d = StreamDecoder::new(1500);
            d.push(&stream[..cut]);
            let mut frames = drain(&mut d).unwrap();
            d.push(&stream[cut..]);
            frames.extend(drain(&mut d).unwrap());
            assert_eq!(frames, vec![stun(8, 1), chan(5, false), stun(0, 0), chan(8, false)], "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn byte_by_byte() {
        let stream: Vec<u8> = [stun(4, 9), chan(1, true)].concat();
        let mut d = StreamDecoder::new(1500);
        let mut frames = vec![];
        for b in &stream {
            d.push(std::slice::from_ref(b));
            frames.extend(drain(&mut d).unwrap());
        }
        assert_eq!(frames, vec![stun(4, 9), chan(1, false)]);
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        let mut d = StreamDecoder::new(1500);
        d.push(b"\x80garbage");
        assert_eq!(d.next_frame(), Err(FramingError::UnknownFrame(0x80)));

        let mut d = StreamDecoder::new(1500);
        d.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(d.next_frame(), Err(FramingError::TooLarge { len: 0x5420 + 4, max: 1500 }));

        let mut d = StreamDecoder::new(1500);
        d.push(&[0, 1, 0, 4, 1, 2, 3, 4]);
        assert_eq!(d.next_frame(), Err(FramingError::MalformedStun));

        let mut d = StreamDecoder::new(1500);
        d.push(&[0, 1, 0, 3]);
        assert_eq!(d.next_frame(), Err(FramingError::MalformedStun));

        let mut d = StreamDecoder::new(1500);
        d.push(&[0x40, 0x00, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FramingError::TooLarge { len: 65539, max: 1500 }));

        let mut d = StreamDecoder::new(100);
        d.push(&stun(84, 0)[..8]);
        assert_eq!(d.next_frame(), Err(FramingError::TooLarge { len: 104, max: 100 }));
    }

    #[test]
    fn partial_header_waits() {
        let mut d = StreamDecoder::new(1500);
        d.push(&[0x40]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0x01, 0x00]);
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0x01, 0xee, 0, 0, 0]);
        assert_eq!(d.next_frame().unwrap(), Some(&[0x40, 0x01, 0x00, 0x01, 0xee][..]));
    }
}
