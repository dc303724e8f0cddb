//! A real publisher's bytes: what ffmpeg 5.1 sent to this server after the handshake
//! (`-f lavfi -i testsrc=size=160x90:rate=10 -f lavfi -i sine=frequency=440:sample_rate=48000
//! -c:v libx264 -profile:v baseline -bf 0 -g 10 -pix_fmt yuv420p -c:a aac -f flv
//! rtmp://…/live/room?token=tok`), replayed through the session core and the AAC to Opus path.

use relaycast_ingest::audio::{FRAME, Transcoder};
use relaycast_ingest::session::{Event, HANDSHAKE_LEN, Session};

const CAPTURE: &[u8] = include_bytes!("data/ffmpeg-publish.rtmp");

fn replay(read_size: usize) -> Vec<Event> {
    let mut s = Session::new();
    let mut hs = vec![3u8];
    hs.resize(1 + 2 * HANDSHAKE_LEN, 0);
    s.handle_input(&hs).unwrap();
    let mut events = Vec::new();
    for read in CAPTURE.chunks(read_size) {
        s.handle_input(read).unwrap();
        while let Some(e) = s.poll_event() {
            if matches!(e, Event::Publish(_)) {
                s.accept_publish();
            }
            events.push(e);
        }
    }
    events
}

#[test]
fn ffmpeg_publish_yields_h264_and_aac() {
    let events = replay(1500);
    let Some(Event::Publish(req)) = events.first() else {
        panic!("no publish first: {:?}", events.first())
    };
    assert_eq!(
        (req.stream.as_str(), req.token.as_deref()),
        ("room", Some("tok"))
    );
    let cfg = events
        .iter()
        .find_map(|e| {
            if let Event::VideoConfig(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .expect("an AVC sequence header");
    assert_eq!(cfg.profile_level_id[0], 66, "x264 baseline: profile_idc 66");
    let frames: Vec<_> = events
        .iter()
        .filter_map(|e| {
            if let Event::Video(f) = e {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    assert!(frames.len() >= 10, "{} frames", frames.len());
    assert!(frames[0].keyframe, "the first frame is a keyframe");
    assert!(
        frames[0].annexb.windows(5).any(|w| w == [0, 0, 0, 1, 0x67]),
        "SPS in front of the keyframe"
    );
    assert!(
        frames.windows(2).all(|w| w[1].timestamp >= w[0].timestamp),
        "timestamps rise"
    );
    // Reads of another size give the same events.
    assert_eq!(replay(7), events);
}

#[test]
fn ffmpeg_aac_becomes_a_440_hz_opus_tone() {
    let events = replay(4096);
    let asc = events
        .iter()
        .find_map(|e| {
            if let Event::AudioConfig(a) = e {
                Some(a.clone())
            } else {
                None
            }
        })
        .expect("an AAC sequence header");
    let mut t = Transcoder::new(&asc).expect("AAC-LC");
    assert_eq!(t.config().sample_rate, 48000);
    let mut packets = Vec::new();
    for e in &events {
        if let Event::Audio { data, .. } = e {
            t.push(data, &mut packets).expect("ffmpeg's AAC decodes");
        }
    }
    assert!(packets.len() >= 10, "{} Opus packets", packets.len());
    // Decode the Opus back and count zero crossings of the last packets: 440 Hz is 17.6 per 20 ms.
    let ch = usize::from(t.channels());
    let mut dec = opus::Decoder::new(
        48000,
        if ch == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        },
    )
    .unwrap();
    let mut pcm: Vec<f32> = Vec::new();
    for p in &packets {
        let mut out = vec![0f32; FRAME * ch];
        let n = dec.decode_float(p, &mut out, false).unwrap();
        pcm.extend(out[..n * ch].iter().step_by(ch));
    }
    let tail = &pcm[pcm.len() - 10 * FRAME..];
    let crossings = tail
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    // 10 frames = 200 ms: 88 periods, 176 crossings.
    assert!(
        (170..=182).contains(&crossings),
        "{crossings} zero crossings in 200 ms"
    );
}
