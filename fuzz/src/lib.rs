//! Fuzz target bodies: one function per parser that sees network bytes, each calling the real
//! parsing code of the node. `fuzz_targets/*.rs` hand libFuzzer's input to these functions, and
//! the corpus replay test (`node/tests/fuzz_corpus.rs`) runs every committed seed through them.
//!
//! A target returns nothing: it fails only by panicking (or by a sanitizer report), which is the
//! bug it looks for. Inputs that need more than one value (a stream split into reads, a sequence
//! of packets) are cut from the fuzzer's bytes by the small [`Input`] reader.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Every target by name, in the order `fuzz/corpus/` lists them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("rtp", rtp),
    ("rtcp", rtcp),
    ("vp8", vp8),
    ("h264", h264),
    ("opus", opus),
    ("recorder", recorder),
    ("turn_framing", turn_framing),
    ("turn_guard", turn_guard),
    ("stun", stun),
    ("sdp", sdp),
    ("bitswap", bitswap),
    ("gossip", gossip),
    ("relay_protocol", relay_protocol),
    ("dagpb", dagpb),
    ("car", car),
    ("varint", varint),
    ("gateway_range", gateway_range),
    ("gateway", gateway),
];

/// Cuts values off the front of the fuzzer's bytes; runs dry with zeros and empty slices.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next `n` bytes (fewer at the end).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// A chunk prefixed by its 16-bit length.
    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.u16());
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// RTP as the archive parses it off the media tap: header, payload bounds, sequence and
/// timestamp unwrapping over a run of packets (each a 16-bit-length-prefixed chunk).
pub fn rtp(data: &[u8]) {
    use relaycast_archive::rtp::{MediaKind, RtpHeader, SeqUnwrapper, TsUnwrapper};
    let mut seq = SeqUnwrapper::default();
    let mut ts = TsUnwrapper::default();
    let now = Instant::now();
    let mut input = Input(data);
    let mut packets = 0;
    while !input.is_empty() && packets < 256 {
        packets += 1;
        let buf = input.chunk();
        if let Ok(h) = RtpHeader::parse(buf) {
            assert!(h.payload.start <= h.payload.end && h.payload.end <= buf.len());
            ts.extend(h.timestamp);
        }
        if let Ok(p) = relaycast_archive::RtpPacket::from_bytes(buf, MediaKind::Video, &mut seq, now) {
            assert!(p.payload.len() <= buf.len());
        }
    }
}

/// RTCP compound packets as str0m parses them from a peer.
pub fn rtcp(data: &[u8]) {
    let _ = str0m::rtp::rtcp::Rtcp::try_from(data);
}

/// VP8 payload descriptors: the SFU's parse and keyframe checks, its PictureID/TL0PICIDX
/// rewriting and patch, and the archive's descriptor and frame-size parse.
pub fn vp8(data: &[u8]) {
    use relaycast_sfu::codec::{self, VideoCodec};
    let mut input = Input(data);
    let (pid, tl0) = (input.u16(), input.byte());
    let payload = input.0;
    codec::is_keyframe_start(VideoCodec::Vp8, payload);
    codec::vp8_keyframe_size(payload);
    if let Some(info) = codec::parse_vp8(payload) {
        let mut rw = relaycast_sfu::rewrite::Vp8Rewriter::new();
        let _ = rw.rewrite(&info);
        rw.switch_source();
        let (p, t) = rw.rewrite(&info);
        let _ = relaycast_sfu::rewrite::vp8_patch(payload, p, t);
    }
    let _ = relaycast_sfu::rewrite::vp8_patch(payload, Some(pid), Some(tl0));
    if let Ok(d) = relaycast_archive::depacketize::vp8::Vp8Descriptor::parse(payload) {
        d.starts_frame();
    }
    relaycast_archive::depacketize::vp8::frame_size(payload);
}

/// H264 payloads: the SFU's keyframe detection and SPS size parse, the archive's NAL unit split.
pub fn h264(data: &[u8]) {
    use relaycast_sfu::codec::{self, VideoCodec};
    codec::is_keyframe_start(VideoCodec::H264, data);
    codec::h264_keyframe_size(data);
    for nal in relaycast_archive::depacketize::h264::nal_units(data).take(4096) {
        if nal.is_err() {
            break;
        }
    }
}

/// Opus packets: the archive's TOC parse for the packet's duration.
pub fn opus(data: &[u8]) {
    if let Some(d) = relaycast_archive::depacketize::opus::packet_duration(data) {
        assert!(d <= 120 * 48, "an Opus packet lasts at most 120 ms");
    }
}

/// A run of RTP packets through the archive's whole recorder: reorder buffer, depacketizer
/// (VP8 or H264 by the first byte, plus Opus), segmenter and fMP4 muxer (which reads the SPS).
/// Each packet: a flags byte (bit 0 audio, bits 1..7 milliseconds to advance), then a
/// 16-bit-length-prefixed RTP packet.
pub fn recorder(data: &[u8]) {
    use relaycast_archive::rtp::{MediaKind, SeqUnwrapper};
    use relaycast_archive::{Recorder, RecorderConfig, VideoCodec};
    let mut input = Input(data);
    let video = if input.byte() & 1 == 0 { VideoCodec::Vp8 } else { VideoCodec::H264 };
    let start = Instant::now();
    let mut rec = Recorder::with_clock(
        RecorderConfig { video: Some(video), ..RecorderConfig::default() },
        start,
        std::time::SystemTime::UNIX_EPOCH,
    );
    let (mut vseq, mut aseq) = (SeqUnwrapper::default(), SeqUnwrapper::default());
    let mut now = start;
    let mut packets = 0;
    while !input.is_empty() && packets < 1024 {
        packets += 1;
        let flags = input.byte();
        now += Duration::from_millis(u64::from(flags >> 1));
        let (kind, seq) = if flags & 1 == 1 { (MediaKind::Audio, &mut aseq) } else { (MediaKind::Video, &mut vseq) };
        if let Ok(p) = relaycast_archive::RtpPacket::from_bytes(input.chunk(), kind, seq, now) {
            rec.push(p, now);
        }
        rec.poll(now);
    }
    rec.finish();
    let _ = rec.init_segment();
}

/// TURN over TCP/TLS: the stream decoder fed the input in reads whose sizes the input picks.
pub fn turn_framing(data: &[u8]) {
    let mut input = Input(data);
    let max = 1 + usize::from(input.u16());
    let mut d = relaycast_turn::framing::StreamDecoder::new(max);
    'stream: while !input.is_empty() {
        let n = 1 + usize::from(input.byte());
        d.push(input.take(n));
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => assert!(frame.len() <= max, "frame over the limit"),
                Ok(None) => break,
                Err(_) => break 'stream,
            }
        }
    }
    assert!(d.buffered() <= data.len());
}

/// The TURN guard's inspection of one datagram (ChannelData, STUN requests, signed requests,
/// XOR-PEER-ADDRESS policy checks, quotas), from an IPv4 or IPv6 source.
pub fn turn_guard(data: &[u8]) {
    static GUARD: OnceLock<relaycast_turn::fuzzing::Guard> = OnceLock::new();
    let guard = GUARD.get_or_init(Default::default);
    let v4 = SocketAddr::from(([203, 0, 113, 7], 40000));
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)), 40000);
    let src = if data.len() % 2 == 0 { v4 } else { v6 };
    if let Some(reply) = guard.inspect(data, src) {
        assert!(reply.len() >= 20, "the guard replies with a STUN message");
    }
}

/// STUN messages through the `stun` crate's decoder and every attribute getter the guard and
/// the `turn` server use, plus the `turn` crate's ChannelData decoder.
pub fn stun(data: &[u8]) {
    relaycast_turn::fuzzing::stun_decode(data);
    relaycast_turn::fuzzing::channel_data_decode(data);
}

/// SDP as a WHIP/WHEP offer reaches the SFU: the `v=` check, str0m's offer parse, the relay's
/// video m-line scan, str0m accepting the offer into an `Rtc` configured like the SFU's (VP8,
/// H264, Opus, RTP mode), the same text as a relay answer, and trickled candidate lines.
pub fn sdp(data: &[u8]) {
    use str0m::change::{SdpAnswer, SdpOffer};
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines() {
        if let Some(c) = line.trim().strip_prefix("a=candidate:") {
            let _ = str0m::Candidate::from_sdp_string(&format!("candidate:{c}"));
        }
    }
    if !text.trim_start().starts_with("v=") {
        return;
    }
    let _ = relaycast_sfu::relay::video_mids_in_order(text);
    let _ = SdpAnswer::from_sdp_string(text);
    let Ok(offer) = SdpOffer::from_sdp_string(text) else { return };
    static CERT: OnceLock<str0m::config::DtlsCert> = OnceLock::new();
    let cert = CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("a DTLS certificate for the fuzz target")
    });
    let mut rtc = str0m::Rtc::builder()
        .set_rtp_mode(true)
        .set_crypto_provider(relaycast_sfu::dtls::crypto_provider())
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .set_dtls_cert(cert.clone())
        .build(Instant::now());
    if let Ok(c) = str0m::Candidate::host(SocketAddr::from(([127, 0, 0, 1], 50000)), "udp") {
        rtc.add_local_candidate(c);
    }
    if let Ok(answer) = rtc.sdp_api().accept_offer(offer) {
        let _ = answer.to_sdp_string();
    }
}

/// Bitswap: the frame splitter (with the 4 MiB limit), the message decoder and the server's
/// plan of lookups for every protocol version.
pub fn bitswap(data: &[u8]) {
    use relaycast_mesh::bitswap::{ledger, message};
    let _ = message::read_varint(data);
    let mut rest = data;
    while let Ok(Some((body, used))) = message::split_frame(rest, message::MAX_MESSAGE) {
        assert!(used > 0 && used <= rest.len());
        if let Ok(m) = message::Message::decode(body) {
            for v in [ledger::Version::V100, ledger::Version::V110, ledger::Version::V120] {
                let plan = ledger::plan(&m, v);
                assert!(plan.wants.len() <= ledger::MAX_ENTRIES_PER_MESSAGE);
            }
        }
        rest = &rest[used..];
    }
    let _ = message::Message::decode(data);
}

/// Gossip payloads on every topic, validated against a signer (as gossipsub delivers them) and
/// without one.
pub fn gossip(data: &[u8]) {
    use relaycast_mesh::gossip;
    static PEER: OnceLock<relaycast_mesh::PeerId> = OnceLock::new();
    let peer = *PEER.get_or_init(relaycast_mesh::PeerId::random);
    let mut input = Input(data);
    let which = input.byte();
    let payload = input.0;
    let topic = match which % 4 {
        0 => gossip::STREAMS_TOPIC.to_string(),
        1 => gossip::LOAD_TOPIC.to_string(),
        2 => gossip::segments_topic("room"),
        _ => String::from_utf8_lossy(payload.get(..8).unwrap_or_default()).into_owned(),
    };
    let _ = gossip::validate(&topic, payload, Some(peer));
    let _ = gossip::validate(&topic, payload, None);
}

/// The relay protocol's CBOR request and response decoding on `/relaycast/relay/1`.
pub fn relay_protocol(data: &[u8]) {
    let _ = relaycast_mesh::fuzzing::decode_relay_request(data);
    let _ = relaycast_mesh::fuzzing::decode_relay_response(data);
}

/// dag-pb nodes and the UnixFS data inside them, as the exporter and gateway read blocks.
pub fn dagpb(data: &[u8]) {
    use relaycast_ipfs::dagpb::{PbNode, UnixFsData};
    if let Ok(node) = PbNode::decode(data) {
        if let Some(d) = &node.data
            && let Ok(u) = UnixFsData::decode(d)
        {
            let _ = u.content_size();
            let _ = u.encode();
        }
        let _ = node.encode();
    }
    if let Ok(u) = UnixFsData::decode(data) {
        let _ = u.content_size();
    }
}

/// CARv1 streams: header, roots and every block, each checked against its CID.
pub fn car(data: &[u8]) {
    let Ok(mut r) = relaycast_ipfs::car::CarReader::new(data) else { return };
    let _ = r.roots();
    for _ in 0..4096 {
        match r.next_block() {
            Ok(Some((cid, bytes))) => {
                let _ = relaycast_ipfs::block::verify(&cid, &bytes);
                let _ = relaycast_ipfs::block::identity_content(&cid);
            }
            _ => break,
        }
    }
}

/// Unsigned varints, from a slice and from a reader; a value decoded re-encodes to its length.
pub fn varint(data: &[u8]) {
    use relaycast_ipfs::varint;
    if let Ok((v, n)) = varint::decode(data) {
        assert!(n <= varint::MAX_LEN && n <= data.len());
        let mut out = Vec::new();
        varint::encode(v, &mut out);
        assert_eq!(out.len(), varint::encoded_len(v));
    }
    let mut r = data;
    let _ = varint::read(&mut r);
}

/// The gateway's `Range` header parse against a file size the input picks.
pub fn gateway_range(data: &[u8]) {
    use relaycast_ipfs::gateway::{RangeReq, parse_range};
    let mut input = Input(data);
    let size = u64::from_be_bytes(std::array::from_fn(|_| input.byte()));
    let Ok(value) = std::str::from_utf8(input.0) else { return };
    if let RangeReq::Part(a, b) = parse_range(Some(value), size) {
        assert!(a < b && b <= size, "range {a}..{b} of {size}");
    }
}

/// A small store: a directory with a two-chunk file and an empty file, built once.
struct GatewayFixture {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    dir_cid: String,
    file_cid: String,
}

fn gateway_fixture() -> &'static GatewayFixture {
    static FIXTURE: OnceLock<GatewayFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        use relaycast_ipfs::{Blockstore, DirectoryBuilder, Profile};
        let path = std::env::temp_dir().join(format!("relaycast-fuzz-gateway-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        let store = Arc::new(Blockstore::open(&path).expect("a temporary blockstore"));
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let file = store.import_reader(&content[..], Profile::Kubo).expect("import a file");
        let empty = store.import_reader(&[][..], Profile::Kubo).expect("import an empty file");
        let mut dir = DirectoryBuilder::new();
        dir.add("video.mp4", file.clone()).expect("add a file");
        dir.add("empty.txt", empty).expect("add a file");
        let dir = store.put_directory(dir).expect("store a directory");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        GatewayFixture {
            runtime,
            router: relaycast_ipfs::router(store),
            dir_cid: dir.cid.to_string(),
            file_cid: file.cid.to_string(),
        }
    })
}

/// A whole gateway request through the router: the first line is the method and the path with
/// its query (`$D` and `$F` stand for the directory's and the file's CIDs), then `Name: value`
/// header lines (`Range`, `Accept`, `If-None-Match` ...). The response body is read to the end.
pub fn gateway(data: &[u8]) {
    use tower::ServiceExt;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let f = gateway_fixture();
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default().replace("$D", &f.dir_cid).replace("$F", &f.file_cid);
    let (method, path) = first.split_once(' ').unwrap_or(("GET", first.as_str()));
    let method = if method == "HEAD" { axum::http::Method::HEAD } else { axum::http::Method::GET };
    let mut req = axum::http::Request::builder().method(method).uri(path);
    for line in lines.take(32) {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(req) = req.body(axum::body::Body::empty()) else { return };
    f.runtime.block_on(async {
        let Ok(resp) = f.router.clone().oneshot(req).await;
        let status = resp.status();
        assert!(!status.is_server_error() || status == axum::http::StatusCode::NOT_IMPLEMENTED, "{status}");
        let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await;
    });
}
