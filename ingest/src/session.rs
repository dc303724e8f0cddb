//! One RTMP connection as a sans-IO state machine: bytes in, bytes to send and events out.
//!
//! The server side of the simple handshake (C0/C1/C2, S0/S1/S2), the chunk streams, the
//! commands of a publisher (`connect`, `releaseStream`, `FCPublish`, `createStream`,
//! `publish`, `FCUnpublish`, `deleteStream`) and its FLV video and audio tags.

use std::collections::VecDeque;

use crate::Error;
use crate::amf::{self, Value};
use crate::chunk::{self, ChunkReader, Message, kind};
use crate::flv::{self, AudioTag, AvcConfig, VideoTag};

/// Size of C1/C2 and S1/S2.
pub const HANDSHAKE_LEN: usize = 1536;
/// The application name publishers use (`rtmp://HOST:PORT/live`).
pub const APP: &str = "live";
/// Chunk size this server writes with.
pub const OUT_CHUNK_SIZE: u32 = 4096;
/// Window acknowledgement size this server asks for and announces.
pub const WINDOW: u32 = 2_500_000;
/// Message stream id given to the publisher's `createStream`.
const STREAM_ID: u32 = 1;
/// Longest stream key (stream name and query) accepted.
pub const MAX_KEY_LEN: usize = 4096;

/// A publisher's `publish` request, from its stream key `STREAM?token=TOKEN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRequest {
    /// The stream name.
    pub stream: String,
    /// The `token` query parameter.
    pub token: Option<String>,
    /// `backup=1`: the publisher declares itself a backup.
    pub backup: bool,
}

/// Why a publish is refused by the core itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The video has B-frames (a composition time offset other than 0).
    BFrames,
    /// The video codec is not H264 (the FLV codec id).
    VideoCodec(u8),
}

impl Refusal {
    /// The description sent to the encoder in `onStatus`.
    pub fn description(&self) -> String {
        match self {
            Refusal::BFrames => {
                "B-frames are not supported: WebRTC viewers would stutter. Turn them off in the \
                encoder: OBS x264 options `bframes=0` (or Profile: baseline), ffmpeg `-bf 0`"
                    .to_string()
            }
            Refusal::VideoCodec(c) => {
                format!("video codec {c:#x} is not supported: send H264 (ffmpeg `-c:v libx264`)")
            }
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Refusal::BFrames => "b_frames",
            Refusal::VideoCodec(_) => "video_codec",
        }
    }
}

/// An H264 access unit in Annex B form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoFrame {
    /// Decoding timestamp in milliseconds (RTMP's, wraps at 2^32).
    pub timestamp: u32,
    /// A keyframe: SPS and PPS are in front of its slices.
    pub keyframe: bool,
    /// NAL units with start codes.
    pub annexb: Vec<u8>,
}

/// What the connection reports to its driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The client asks to publish; answer with [`Session::accept_publish`] or
    /// [`Session::reject_publish`].
    Publish(PublishRequest),
    /// H264 parameters (the sequence header), before the first frame and whenever they change.
    VideoConfig(AvcConfig),
    /// A video access unit.
    Video(VideoFrame),
    /// The AAC AudioSpecificConfig.
    AudioConfig(Vec<u8>),
    /// A raw AAC frame with its timestamp in milliseconds.
    Audio {
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The AAC frame.
        data: Vec<u8>,
    },
    /// Audio in a format other than AAC (FLV sound format id): dropped.
    UnsupportedAudio(u8),
    /// The core refused the stream; an `onStatus` error is queued and the session is closing.
    Refused(Refusal),
    /// The client stopped publishing (`FCUnpublish`, `deleteStream`, `closeStream`).
    Unpublish,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Waiting for C0 and C1.
    Handshake,
    /// S0/S1/S2 sent; waiting for C2.
    HandshakeAck,
    /// Chunks.
    Chunks,
    /// Finished: the driver sends what is queued and closes.
    Closed,
}

/// Where the publish stands.
#[derive(Debug, PartialEq, Eq)]
enum Publish {
    None,
    Requested,
    Publishing,
}

/// An RTMP server connection.
#[derive(Debug)]
pub struct Session {
    state: State,
    input: Vec<u8>,
    reader: ChunkReader,
    out: Vec<u8>,
    events: VecDeque<Event>,
    connected: bool,
    publish: Publish,
    avc: Option<AvcConfig>,
    received: u64,
    acked: u64,
    peer_window: Option<u32>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

fn cmd(name: &str, transaction: f64, args: Vec<Value>) -> Vec<u8> {
    let mut v = vec![Value::String(name.to_string()), Value::Number(transaction)];
    v.extend(args);
    amf::encode_all(&v)
}

/// `onStatus` info object.
fn status(level: &str, code: &str, description: &str) -> Value {
    amf::object(&[
        ("level", Value::String(level.into())),
        ("code", Value::String(code.into())),
        ("description", Value::String(description.into())),
    ])
}

/// Decodes `%XX` escapes of a query value (invalid escapes stay as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a stream key `STREAM?token=TOKEN&backup=1`.
pub fn parse_stream_key(key: &str) -> PublishRequest {
    let (stream, query) = key.split_once('?').unwrap_or((key, ""));
    let mut req = PublishRequest {
        stream: stream.to_string(),
        token: None,
        backup: false,
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "token" => req.token = Some(percent_decode(v)),
            "backup" => req.backup = v == "1" || v == "true",
            _ => {}
        }
    }
    req
}

impl Session {
    /// A connection that has received nothing yet.
    pub fn new() -> Self {
        Session {
            state: State::Handshake,
            input: Vec::new(),
            reader: ChunkReader::default(),
            out: Vec::new(),
            events: VecDeque::new(),
            connected: false,
            publish: Publish::None,
            avc: None,
            received: 0,
            acked: 0,
            peer_window: None,
        }
    }

    /// Bytes to send to the client (empty when there are none).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True once the session is finished: send the output, then close.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True once the handshake is done.
    pub fn handshake_done(&self) -> bool {
        matches!(self.state, State::Chunks)
    }

    /// True while media is accepted.
    pub fn is_publishing(&self) -> bool {
        self.publish == Publish::Publishing
    }

    /// Feeds bytes received from the client. An error is a protocol violation: close.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.state == State::Closed {
            return Ok(());
        }
        self.received = self.received.saturating_add(data.len() as u64);
        self.input.extend_from_slice(data);
        let r = self.process();
        if r.is_err() {
            self.state = State::Closed;
            self.input = Vec::new();
        }
        r
    }

    fn process(&mut self) -> Result<(), Error> {
        let mut pos = 0usize;
        loop {
            match self.state {
                State::Handshake => {
                    let Some(c) = self.input.get(pos..pos + 1 + HANDSHAKE_LEN) else {
                        break;
                    };
                    if c[0] != 3 {
                        return Err(Error::Handshake(c[0]));
                    }
                    self.out.push(3);
                    // S1: time 0, zero version (so clients skip digest checks), random-ish bytes.
                    let mut s1 = vec![0u8; HANDSHAKE_LEN];
                    let mut x: u32 = 0x9e37_79b9 ^ (c[1] as u32);
                    for b in s1.iter_mut().skip(8) {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        *b = x as u8;
                    }
                    self.out.extend_from_slice(&s1);
                    // S2 echoes C1.
                    self.out.extend_from_slice(&c[1..]);
                    pos += 1 + HANDSHAKE_LEN;
                    self.state = State::HandshakeAck;
                }
                State::HandshakeAck => {
                    if self.input.len() < pos + HANDSHAKE_LEN {
                        break;
                    }
                    pos += HANDSHAKE_LEN;
                    self.state = State::Chunks;
                }
                State::Chunks => {
                    let Some((n, msg)) = self.reader.read(&self.input[pos..])? else {
                        break;
                    };
                    pos += n;
                    if let Some(m) = msg {
                        self.on_message(m)?;
                    }
                }
                State::Closed => break,
            }
        }
        self.input.drain(..pos);
        self.maybe_ack();
        Ok(())
    }

    fn maybe_ack(&mut self) {
        let Some(w) = self.peer_window else { return };
        if w > 0 && self.received - self.acked >= u64::from(w) {
            self.acked = self.received;
            let seq = (self.received & 0xffff_ffff) as u32;
            chunk::write_message(
                &mut self.out,
                2,
                kind::ACK,
                0,
                &seq.to_be_bytes(),
                OUT_CHUNK_SIZE as usize,
            );
        }
    }

    fn send_control(&mut self, type_id: u8, payload: &[u8]) {
        chunk::write_message(
            &mut self.out,
            2,
            type_id,
            0,
            payload,
            OUT_CHUNK_SIZE as usize,
        );
    }

    fn send_command(&mut self, stream_id: u32, body: &[u8]) {
        chunk::write_message(
            &mut self.out,
            3,
            kind::COMMAND_AMF0,
            stream_id,
            body,
            OUT_CHUNK_SIZE as usize,
        );
    }

    fn on_status(&mut self, level: &str, code: &str, description: &str) {
        let body = cmd(
            "onStatus",
            0.0,
            vec![Value::Null, status(level, code, description)],
        );
        self.send_command(STREAM_ID, &body);
    }

    fn on_message(&mut self, m: Message) -> Result<(), Error> {
        match m.type_id {
            kind::SET_CHUNK_SIZE => {
                let b = m
                    .payload
                    .get(..4)
                    .ok_or(Error::Chunk("short Set Chunk Size"))?;
                let size = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                self.reader.set_chunk_size(size)?;
            }
            kind::ABORT => {
                if let Some(b) = m.payload.get(..4) {
                    self.reader
                        .abort(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            kind::WINDOW_ACK_SIZE => {
                if let Some(b) = m.payload.get(..4) {
                    self.peer_window = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
            }
            kind::COMMAND_AMF0 => self.on_command(&m.payload, m.stream_id)?,
            kind::COMMAND_AMF3 => {
                // An AMF3 command message is AMF0 after one format byte.
                self.on_command(m.payload.get(1..).unwrap_or_default(), m.stream_id)?
            }
            // Media is parsed from the publish request on (clients that do not wait for the
            // answer); a refused publish closes the session.
            kind::VIDEO if self.publish != Publish::None => {
                self.on_video(m.timestamp, &m.payload)?
            }
            kind::AUDIO if self.publish != Publish::None => {
                self.on_audio(m.timestamp, &m.payload)?
            }
            // Acknowledgements, user control, peer bandwidth, metadata and media before publish.
            _ => {}
        }
        Ok(())
    }

    fn on_command(&mut self, body: &[u8], stream_id: u32) -> Result<(), Error> {
        let vals = amf::decode_all(body)?;
        let name = vals
            .first()
            .and_then(Value::as_str)
            .ok_or(Error::Command("command without a name"))?;
        let txn = vals.get(1).and_then(Value::as_f64).unwrap_or(0.0);
        match name {
            "connect" => {
                let app = vals
                    .get(2)
                    .and_then(|o| o.get("app"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let app = app.trim_end_matches('/');
                if app != APP {
                    let info = status(
                        "error",
                        "NetConnection.Connect.Rejected",
                        &format!("unknown application {app:?}: use rtmp://HOST:PORT/{APP}"),
                    );
                    self.send_command(0, &cmd("_error", txn, vec![Value::Null, info]));
                    self.state = State::Closed;
                    return Err(Error::Command("connect to an unknown application"));
                }
                self.send_control(kind::WINDOW_ACK_SIZE, &WINDOW.to_be_bytes());
                let mut bw = WINDOW.to_be_bytes().to_vec();
                bw.push(2);
                self.send_control(kind::SET_PEER_BANDWIDTH, &bw);
                self.send_control(kind::SET_CHUNK_SIZE, &OUT_CHUNK_SIZE.to_be_bytes());
                let props = amf::object(&[
                    ("fmsVer", Value::String("FMS/3,0,1,123".into())),
                    ("capabilities", Value::Number(31.0)),
                ]);
                let mut info = status(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                if let Value::Object(p) = &mut info {
                    p.push(("objectEncoding".into(), Value::Number(0.0)));
                }
                self.send_command(0, &cmd("_result", txn, vec![props, info]));
                self.connected = true;
            }
            "createStream" => {
                self.send_command(
                    0,
                    &cmd(
                        "_result",
                        txn,
                        vec![Value::Null, Value::Number(f64::from(STREAM_ID))],
                    ),
                );
            }
            "releaseStream" | "FCPublish" if txn != 0.0 => {
                self.send_command(0, &cmd("_result", txn, vec![Value::Null, Value::Undefined]));
            }
            "publish" => {
                if !self.connected {
                    return Err(Error::Command("publish before connect"));
                }
                if self.publish != Publish::None {
                    return Err(Error::Command("a second publish on one connection"));
                }
                let key = vals
                    .get(3)
                    .and_then(Value::as_str)
                    .ok_or(Error::Command("publish without a stream key"))?;
                if key.len() > MAX_KEY_LEN {
                    return Err(Error::Command("stream key too long"));
                }
                let _ = stream_id;
                self.publish = Publish::Requested;
                self.events.push_back(Event::Publish(parse_stream_key(key)));
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if self.publish == Publish::Publishing {
                    self.on_status(
                        "status",
                        "NetStream.Unpublish.Success",
                        "Stopped publishing.",
                    );
                    self.events.push_back(Event::Unpublish);
                }
                self.publish = Publish::None;
                self.state = State::Closed;
            }
            _ => {}
        }
        Ok(())
    }

    /// Lets the requested publish start: `NetStream.Publish.Start`.
    pub fn accept_publish(&mut self) {
        if self.publish == Publish::Requested {
            // User control: Stream Begin on stream 1.
            let mut ev = vec![0u8, 0];
            ev.extend_from_slice(&STREAM_ID.to_be_bytes());
            self.send_control(kind::USER_CONTROL, &ev);
            self.on_status("status", "NetStream.Publish.Start", "Publishing.");
            self.publish = Publish::Publishing;
        }
    }

    /// Refuses the publish (or stops it): an `onStatus` error naming `reason`, then the session
    /// closes. `code` is e.g. `NetStream.Publish.BadName` or `NetStream.Publish.Rejected`.
    pub fn reject_publish(&mut self, code: &str, reason: &str) {
        self.on_status("error", code, reason);
        self.publish = Publish::None;
        self.state = State::Closed;
    }

    fn refuse(&mut self, r: Refusal) {
        self.reject_publish("NetStream.Publish.Rejected", &r.description());
        self.events.push_back(Event::Refused(r));
    }

    fn on_video(&mut self, timestamp: u32, body: &[u8]) -> Result<(), Error> {
        match flv::parse_video(body)? {
            VideoTag::AvcConfig(c) => {
                self.avc = Some(c.clone());
                self.events.push_back(Event::VideoConfig(c));
            }
            VideoTag::AvcNalus {
                keyframe,
                composition_time,
                data,
            } => {
                if composition_time != 0 {
                    self.refuse(Refusal::BFrames);
                    return Ok(());
                }
                let Some(cfg) = &self.avc else { return Ok(()) };
                let annexb = flv::avcc_to_annexb(data, cfg.length_size, keyframe.then_some(cfg))?;
                if annexb.is_empty() {
                    return Ok(());
                }
                self.events.push_back(Event::Video(VideoFrame {
                    timestamp,
                    keyframe,
                    annexb,
                }));
            }
            VideoTag::Unsupported(c) => self.refuse(Refusal::VideoCodec(c)),
            VideoTag::AvcEnd | VideoTag::Info => {}
        }
        Ok(())
    }

    fn on_audio(&mut self, timestamp: u32, body: &[u8]) -> Result<(), Error> {
        let ev = match flv::parse_audio(body)? {
            AudioTag::AacConfig(c) => Event::AudioConfig(c.to_vec()),
            AudioTag::AacRaw(d) => Event::Audio {
                timestamp,
                data: d.to_vec(),
            },
            AudioTag::Unsupported(f) => Event::UnsupportedAudio(f),
        };
        self.events.push_back(ev);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::write_message;

    /// A client side: handshake, then commands as ffmpeg sends them.
    fn handshaken() -> Session {
        let mut s = Session::new();
        let mut c = vec![3u8];
        c.extend((0..HANDSHAKE_LEN).map(|i| i as u8));
        s.handle_input(&c).unwrap();
        let out = s.take_output();
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_LEN);
        assert_eq!(out[0], 3);
        assert_eq!(&out[1 + HANDSHAKE_LEN..], &c[1..], "S2 echoes C1");
        assert!(!s.handshake_done());
        s.handle_input(&out[1..1 + HANDSHAKE_LEN]).unwrap();
        assert!(s.handshake_done());
        s
    }

    fn command(s: &mut Session, stream: u32, vals: &[Value]) -> Result<(), Error> {
        let mut b = Vec::new();
        write_message(
            &mut b,
            3,
            kind::COMMAND_AMF0,
            stream,
            &amf::encode_all(vals),
            128,
        );
        s.handle_input(&b)
    }

    fn replies(s: &mut Session) -> Vec<(u8, Vec<Value>)> {
        let out = s.take_output();
        let mut r = ChunkReader::default();
        r.set_chunk_size(OUT_CHUNK_SIZE).unwrap();
        let mut input = &out[..];
        let mut msgs = Vec::new();
        while let Some((n, m)) = r.read(input).unwrap() {
            input = &input[n..];
            if let Some(m) = m {
                let vals = if m.type_id == kind::COMMAND_AMF0 {
                    amf::decode_all(&m.payload).unwrap()
                } else {
                    vec![]
                };
                msgs.push((m.type_id, vals));
            }
        }
        msgs
    }

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    fn publishing(key: &str) -> Session {
        let mut ss = handshaken();
        command(
            &mut ss,
            0,
            &[
                s("connect"),
                Value::Number(1.0),
                amf::object(&[("app", s("live")), ("tcUrl", s("rtmp://h/live"))]),
            ],
        )
        .unwrap();
        let r = replies(&mut ss);
        let types: Vec<u8> = r.iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            vec![
                kind::WINDOW_ACK_SIZE,
                kind::SET_PEER_BANDWIDTH,
                kind::SET_CHUNK_SIZE,
                kind::COMMAND_AMF0
            ]
        );
        assert_eq!(r[3].1[0], s("_result"));
        assert_eq!(
            r[3].1[3].get("code"),
            Some(&s("NetConnection.Connect.Success"))
        );
        command(
            &mut ss,
            0,
            &[s("releaseStream"), Value::Number(2.0), Value::Null, s(key)],
        )
        .unwrap();
        command(
            &mut ss,
            0,
            &[s("FCPublish"), Value::Number(3.0), Value::Null, s(key)],
        )
        .unwrap();
        command(
            &mut ss,
            0,
            &[s("createStream"), Value::Number(4.0), Value::Null],
        )
        .unwrap();
        let r = replies(&mut ss);
        assert_eq!(
            r.last().unwrap().1,
            vec![
                s("_result"),
                Value::Number(4.0),
                Value::Null,
                Value::Number(1.0)
            ]
        );
        command(
            &mut ss,
            1,
            &[
                s("publish"),
                Value::Number(5.0),
                Value::Null,
                s(key),
                s("live"),
            ],
        )
        .unwrap();
        ss
    }

    fn media(s: &mut Session, type_id: u8, ts: u32, body: &[u8]) -> Result<(), Error> {
        let mut b = vec![0x06, (ts >> 16) as u8, (ts >> 8) as u8, ts as u8];
        b.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        b.push(type_id);
        b.extend_from_slice(&1u32.to_le_bytes());
        let mut rest = body.chunks(128).peekable();
        while let Some(c) = rest.next() {
            b.extend_from_slice(c);
            if rest.peek().is_some() {
                b.push(0xc6);
            }
        }
        s.handle_input(&b)
    }

    #[test]
    fn ffmpeg_publish_sequence_and_h264() {
        let mut ss = publishing("room?token=abc%2Bd&backup=1");
        assert_eq!(
            ss.poll_event(),
            Some(Event::Publish(PublishRequest {
                stream: "room".into(),
                token: Some("abc+d".into()),
                backup: true
            }))
        );
        // NAL units before the sequence header are ignored.
        media(
            &mut ss,
            kind::VIDEO,
            0,
            &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41],
        )
        .unwrap();
        assert_eq!(ss.poll_event(), None);
        ss.accept_publish();
        let r = replies(&mut ss);
        assert_eq!(
            r.last().unwrap().1[3].get("code"),
            Some(&s("NetStream.Publish.Start"))
        );
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend(crate::flv::tests::config_record());
        media(&mut ss, kind::VIDEO, 0, &seq).unwrap();
        let Some(Event::VideoConfig(c)) = ss.poll_event() else {
            panic!("no config")
        };
        assert_eq!(c.profile_level_id_hex(), "42c01e");
        let mut key = vec![0x17, 1, 0, 0, 0, 0, 0, 0, 200];
        key.push(0x65);
        key.extend(std::iter::repeat_n(0xab, 199));
        media(&mut ss, kind::VIDEO, 33, &key).unwrap();
        let Some(Event::Video(f)) = ss.poll_event() else {
            panic!("no frame")
        };
        assert!(f.keyframe);
        assert_eq!(f.timestamp, 33);
        assert_eq!(&f.annexb[..5], &[0, 0, 0, 1, 0x67], "SPS first");
        assert_eq!(f.annexb.len(), 4 + 6 + 4 + 4 + 4 + 200);
        media(&mut ss, kind::AUDIO, 40, &[0xaf, 0, 0x12, 0x10]).unwrap();
        assert_eq!(ss.poll_event(), Some(Event::AudioConfig(vec![0x12, 0x10])));
        command(
            &mut ss,
            1,
            &[
                s("deleteStream"),
                Value::Number(6.0),
                Value::Null,
                Value::Number(1.0),
            ],
        )
        .unwrap();
        assert_eq!(ss.poll_event(), Some(Event::Unpublish));
        assert!(ss.is_closed());
    }

    #[test]
    fn b_frames_are_refused_with_the_setting_to_change() {
        let mut ss = publishing("room?token=t");
        ss.poll_event();
        ss.accept_publish();
        replies(&mut ss);
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend(crate::flv::tests::config_record());
        media(&mut ss, kind::VIDEO, 0, &seq).unwrap();
        ss.poll_event();
        media(
            &mut ss,
            kind::VIDEO,
            0,
            &[0x17, 1, 0, 0, 80, 0, 0, 0, 1, 0x65],
        )
        .unwrap();
        assert_eq!(ss.poll_event(), Some(Event::Refused(Refusal::BFrames)));
        let r = replies(&mut ss);
        let info = &r.last().unwrap().1[3];
        assert_eq!(info.get("level"), Some(&s("error")));
        assert!(
            info.get("description")
                .and_then(Value::as_str)
                .unwrap()
                .contains("bframes=0")
        );
        assert!(ss.is_closed());
    }

    #[test]
    fn rejected_publish_and_wrong_app() {
        let mut ss = publishing("room");
        assert_eq!(
            ss.poll_event(),
            Some(Event::Publish(PublishRequest {
                stream: "room".into(),
                token: None,
                backup: false
            }))
        );
        ss.reject_publish("NetStream.Publish.BadName", "401: no token");
        let r = replies(&mut ss);
        assert_eq!(
            r.last().unwrap().1[3].get("code"),
            Some(&s("NetStream.Publish.BadName"))
        );
        assert!(ss.is_closed());

        let mut ss = handshaken();
        let e = command(
            &mut ss,
            0,
            &[
                s("connect"),
                Value::Number(1.0),
                amf::object(&[("app", s("vod"))]),
            ],
        );
        assert!(e.is_err());
        assert_eq!(replies(&mut ss)[0].1[0], s("_error"));
    }

    #[test]
    fn garbage_never_panics() {
        assert_eq!(
            Session::new().handle_input(&[6; 1537]),
            Err(Error::Handshake(6))
        );
        // Pseudo-random bytes after a good handshake: errors or waiting, never a panic.
        let mut x: u32 = 1;
        for round in 0..200 {
            let mut ss = handshaken();
            let mut b = Vec::new();
            for _ in 0..(round * 7 % 400) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(x as u8);
            }
            let _ = ss.handle_input(&b);
        }
    }

    #[test]
    fn acknowledges_the_peer_window() {
        let mut ss = handshaken();
        let mut b = Vec::new();
        write_message(
            &mut b,
            2,
            kind::WINDOW_ACK_SIZE,
            0,
            &100u32.to_be_bytes(),
            128,
        );
        ss.handle_input(&b).unwrap();
        let mut pad = Vec::new();
        write_message(&mut pad, 2, kind::USER_CONTROL, 0, &[0u8; 120], 128);
        ss.handle_input(&pad).unwrap();
        let r = replies(&mut ss);
        // One after the window message (the handshake's 3073 bytes count), one after the 132 more.
        assert_eq!(r.iter().filter(|m| m.0 == kind::ACK).count(), 2);
    }
}
