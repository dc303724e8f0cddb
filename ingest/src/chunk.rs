//! RTMP chunk streams: the demultiplexer that turns chunks into messages, and the writer.
//!
//! Limits (a peer over any of them is a protocol error and the connection closes):
//! [`MAX_CHUNK_SIZE`] for `Set Chunk Size`, [`MAX_MESSAGE_LEN`] for one message,
//! [`MAX_CHUNK_STREAMS`] chunk streams with state, [`MAX_BUFFERED`] bytes of unfinished messages.

use crate::Error;

/// Largest chunk size a peer may set (RTMP allows 2^31 - 1; encoders use 4096 to 65536).
pub const MAX_CHUNK_SIZE: u32 = 65_536;
/// Largest message (a video frame is one message): 4 MiB.
pub const MAX_MESSAGE_LEN: u32 = 4 * 1024 * 1024;
/// Most chunk streams a connection may use (ffmpeg and OBS use fewer than 8).
pub const MAX_CHUNK_STREAMS: usize = 32;
/// Most bytes of unfinished messages across a connection's chunk streams: 8 MiB.
pub const MAX_BUFFERED: usize = 8 * 1024 * 1024;
/// The chunk size at the start of a connection.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Message type ids (RTMP specification section 5.4 and 7.1).
pub mod kind {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACK: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// AMF3 data message.
    pub const DATA_AMF3: u8 = 15;
    /// AMF3 command message.
    pub const COMMAND_AMF3: u8 = 17;
    /// AMF0 data message (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// AMF0 command message.
    pub const COMMAND_AMF0: u8 = 20;
}

/// A whole message reassembled from chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message type id ([`kind`]).
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
    /// Timestamp in milliseconds (wraps at 2^32).
    pub timestamp: u32,
    /// The message body.
    pub payload: Vec<u8>,
}

/// What a chunk stream remembers from its last header.
#[derive(Debug, Default)]
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    delta: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    has_header: bool,
    buf: Vec<u8>,
}

/// Reassembles messages from the chunks of one connection.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: Vec<ChunkStream>,
    buffered: usize,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: Vec::new(),
            buffered: 0,
        }
    }
}

fn be(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x))
}

impl ChunkReader {
    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Applies a peer's `Set Chunk Size`.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), Error> {
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(Error::ChunkSize(size));
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Drops the unfinished message of chunk stream `csid` (`Abort Message`).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            self.buffered = self.buffered.saturating_sub(s.buf.len());
            s.buf = Vec::new();
        }
    }

    /// Reads one chunk from the front of `input`: `Ok(None)` when it is not complete yet, else the
    /// bytes it took and the message it completed, if any.
    pub fn read(&mut self, input: &[u8]) -> Result<Option<(usize, Option<Message>)>, Error> {
        let Some(&b0) = input.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match input.get(1) {
                Some(&b) => (64 + u32::from(b), 2usize),
                None => return Ok(None),
            },
            1 => match input.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            c => (u32::from(c), 1),
        };
        let header_len = [11usize, 7, 3, 0][fmt as usize];
        let Some(h) = input.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;
        let idx = match self.streams.iter().position(|s| s.csid == csid) {
            Some(i) => i,
            None => {
                if self.streams.len() >= MAX_CHUNK_STREAMS {
                    return Err(Error::TooManyChunkStreams);
                }
                self.streams.push(ChunkStream {
                    csid,
                    ..ChunkStream::default()
                });
                self.streams.len() - 1
            }
        };
        let s = &self.streams[idx];
        if fmt != 0 && !s.has_header {
            return Err(Error::Chunk("a chunk stream starts without a full header"));
        }
        let starts = s.buf.is_empty();
        if !starts && fmt != 3 {
            return Err(Error::Chunk(
                "a new message header in the middle of a message",
            ));
        }
        let ts_field = if fmt < 3 { be(&h[0..3]) } else { 0 };
        let extended = if fmt < 3 {
            ts_field == 0xff_ffff
        } else {
            s.extended
        };
        let ext = if extended {
            let Some(e) = input.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some(be(e))
        } else {
            None
        };
        let mut st = ChunkStream {
            csid,
            buf: Vec::new(),
            ..*self.stream_header(idx)
        };
        let ts = ext.unwrap_or(ts_field);
        match fmt {
            0 => {
                st.timestamp = ts;
                st.delta = 0;
                st.len = be(&h[3..6]);
                st.type_id = h[6];
                st.stream_id = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            1 => {
                st.delta = ts;
                st.timestamp = st.timestamp.wrapping_add(ts);
                st.len = be(&h[3..6]);
                st.type_id = h[6];
            }
            2 => {
                st.delta = ts;
                st.timestamp = st.timestamp.wrapping_add(ts);
            }
            _ => {
                if starts {
                    st.timestamp = st.timestamp.wrapping_add(st.delta);
                }
            }
        }
        st.extended = extended;
        st.has_header = true;
        if st.len > MAX_MESSAGE_LEN {
            return Err(Error::MessageTooLarge(st.len));
        }
        let have = self.streams[idx].buf.len();
        let want = (st.len as usize)
            .saturating_sub(have)
            .min(self.chunk_size as usize);
        let Some(body) = input.get(pos..pos + want) else {
            return Ok(None);
        };
        pos += want;
        if self
            .buffered
            .checked_add(want)
            .is_none_or(|b| b > MAX_BUFFERED)
        {
            return Err(Error::Chunk("too many bytes of unfinished messages"));
        }
        let s = &mut self.streams[idx];
        let buf = std::mem::take(&mut s.buf);
        *s = ChunkStream { buf, ..st };
        s.buf.extend_from_slice(body);
        self.buffered += want;
        if s.buf.len() < s.len as usize {
            return Ok(Some((pos, None)));
        }
        let payload = std::mem::take(&mut s.buf);
        self.buffered = self.buffered.saturating_sub(payload.len());
        let msg = Message {
            type_id: s.type_id,
            stream_id: s.stream_id,
            timestamp: s.timestamp,
            payload,
        };
        Ok(Some((pos, Some(msg))))
    }

    fn stream_header(&self, idx: usize) -> &ChunkStream {
        &self.streams[idx]
    }
}

/// Appends `payload` as a message in chunks of `chunk_size` on chunk stream `csid` (2..=63).
pub fn write_message(
    out: &mut Vec<u8>,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk_size: usize,
) {
    let csid = csid & 0x3f;
    let len = payload.len().min(0xff_ffff) as u32;
    out.push(csid);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    let mut chunks = payload[..len as usize].chunks(chunk_size.max(1)).peekable();
    while let Some(c) = chunks.next() {
        out.extend_from_slice(c);
        if chunks.peek().is_some() {
            out.push(0xc0 | csid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(r: &mut ChunkReader, mut input: &[u8]) -> Result<Vec<Message>, Error> {
        let mut out = Vec::new();
        while let Some((n, m)) = r.read(input)? {
            input = &input[n..];
            out.extend(m);
        }
        assert!(input.is_empty(), "{} bytes left", input.len());
        Ok(out)
    }

    #[test]
    fn writer_output_reads_back_across_chunks() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        write_message(&mut out, 6, kind::VIDEO, 1, &payload, 128);
        // 12-byte header, 128 + 1 + 128 + 1 + 44.
        assert_eq!(out.len(), 12 + 300 + 2);
        let msgs = read_all(&mut ChunkReader::default(), &out).unwrap();
        assert_eq!(
            msgs,
            vec![Message {
                type_id: kind::VIDEO,
                stream_id: 1,
                timestamp: 0,
                payload
            }]
        );
    }

    #[test]
    fn hand_built_headers_of_every_format() {
        let mut b = vec![
            0x04, 0, 0, 10, 0, 0, 2, 9, 1, 0, 0, 0, b'a',
            b'b', // fmt 0: ts 10, len 2, video, stream 1
            0x44, 0, 0, 5, 0, 0, 1, 8, b'c', // fmt 1: delta 5, len 1, audio
            0x84, 0, 0, 7, b'd', // fmt 2: delta 7
            0xc4, b'e', // fmt 3: delta 7 again
        ];
        // Extended timestamp on a 2-byte chunk stream id (64 + 6 = 70).
        b.extend_from_slice(&[
            0x00, 6, 0xff, 0xff, 0xff, 0, 0, 1, 20, 0, 0, 0, 0, 0x01, 0, 0, 0, b'z',
        ]);
        let m = read_all(&mut ChunkReader::default(), &b).unwrap();
        let ts: Vec<u32> = m.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![10, 15, 22, 29, 0x0100_0000]);
        assert_eq!(m[1].type_id, kind::AUDIO);
        assert_eq!(m[3].payload, b"e");
        assert_eq!(m[4].type_id, kind::COMMAND_AMF0);
    }

    #[test]
    fn incomplete_input_waits() {
        let mut out = Vec::new();
        write_message(&mut out, 3, kind::COMMAND_AMF0, 0, &[1, 2, 3], 128);
        let mut r = ChunkReader::default();
        for n in 0..out.len() {
            assert_eq!(r.read(&out[..n]).unwrap(), None, "{n} bytes");
        }
        assert!(r.read(&out).unwrap().unwrap().1.is_some());
    }

    #[test]
    fn limits() {
        let mut r = ChunkReader::default();
        assert_eq!(
            r.set_chunk_size(MAX_CHUNK_SIZE + 1),
            Err(Error::ChunkSize(MAX_CHUNK_SIZE + 1))
        );
        assert_eq!(r.set_chunk_size(0), Err(Error::ChunkSize(0)));
        r.set_chunk_size(4096).unwrap();
        // A 16 MiB message is refused before any of it is buffered.
        let big = [0x04, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        assert_eq!(r.read(&big), Err(Error::MessageTooLarge(0xff_ffff)));
        // A chunk stream must start with a full header.
        assert!(ChunkReader::default().read(&[0xc5, 1]).is_err());
        let mut r = ChunkReader::default();
        let mut err = None;
        for c in 2..(MAX_CHUNK_STREAMS as u8 + 4) {
            let m = [c, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0];
            if let Err(e) = r.read(&m) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(Error::TooManyChunkStreams));
    }
}
