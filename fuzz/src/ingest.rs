//! The ingest cores (`relaycast-ingest`): the RTMP server (chunk streams, AMF0 commands and FLV
//! H264/AAC tags, fed as a client's byte stream after the handshake) and the MPEG-TS demuxer of
//! SRT ingest (with its H264 access units and ADTS frames).

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[("rtmp", rtmp), ("mpegts", mpegts)];

/// An SRT caller's transport stream, in reads of every size: PAT, PMT, PES reassembly, then each
/// video access unit through the Annex B preparation and each audio PES through ADTS splitting.
pub fn mpegts(data: &[u8]) {
    use relaycast_ingest::ts::{Demuxer, TsEvent, adts_frames};
    use relaycast_ingest::{annexb, flv::AvcConfig};
    let _ = adts_frames(data);
    let _ = annexb::access_unit(data, None);
    let mut d = Demuxer::new();
    let mut known: Option<AvcConfig> = None;
    let mut rest = data;
    for &n in READS.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (read, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        d.push(read);
        while let Some(ev) = d.poll_event() {
            match ev {
                TsEvent::Video { annexb: au, .. } => {
                    let out = annexb::access_unit(&au, known.as_ref());
                    assert!(out.annexb.is_empty() || out.annexb.starts_with(&[0, 0, 0, 1]));
                    if let Some(c) = out.new_config {
                        known = Some(c);
                    }
                }
                TsEvent::Audio { adts, .. } => {
                    for f in adts_frames(&adts) {
                        assert!(f.raw.len() < adts.len());
                    }
                }
                _ => {}
            }
        }
    }
    d.flush();
    while d.poll_event().is_some() {}
}

/// Read sizes the stream is cut into, in turn, so chunks straddle reads.
const READS: &[usize] = &[1, 7, 64, 1500, 4096, 13];

/// A client's bytes after C0/C1/C2 into a session that accepts every publish; also the same
/// bytes as one AMF0 body and as FLV video and audio tags.
pub fn rtmp(data: &[u8]) {
    use relaycast_ingest::session::{Event, HANDSHAKE_LEN, Session};
    use relaycast_ingest::{amf, flv};
    let _ = amf::decode_all(data);
    if let Ok(flv::VideoTag::AvcNalus { data: d, .. }) = flv::parse_video(data) {
        let _ = flv::avcc_to_annexb(d, 4, None);
    }
    let _ = flv::parse_audio(data);
    let mut s = Session::new();
    let mut hs = vec![3u8];
    hs.resize(1 + 2 * HANDSHAKE_LEN, 0);
    s.handle_input(&hs).expect("a well-formed handshake");
    assert!(s.handshake_done());
    let mut rest = data;
    for &n in READS.iter().cycle() {
        if rest.is_empty() || s.is_closed() {
            break;
        }
        let (read, tail) = rest.split_at(n.min(rest.len()));
        rest = tail;
        if s.handle_input(read).is_err() {
            assert!(s.is_closed(), "an error closes the session");
            break;
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::Publish(_) => s.accept_publish(),
                Event::Video(f) => assert!(
                    f.annexb.starts_with(&[0, 0, 0, 1]),
                    "Annex B starts with a start code"
                ),
                _ => {}
            }
        }
        s.take_output();
    }
}
