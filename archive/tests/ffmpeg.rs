//! End-to-end: ffmpeg sends RTP (VP8 or H264 video plus Opus audio) to loopback sockets, the
//! Recorder turns the packets into CMAF, and ffprobe/ffmpeg check the result.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use relaycast_archive::recorder::{Recorder, RecorderConfig, RecorderOutput, Segment, VideoCodec};
use relaycast_archive::rtp::{MediaKind, RtpPacket, SeqUnwrapper};
use relaycast_archive::{Manifest, playlist};

const SECONDS: f64 = 6.0;

fn tool(name: &str) -> Command {
    let probe = Command::new(name)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "`{name}` is required by this test: install the Debian package `ffmpeg` (scripts/test.sh does)"
    );
    Command::new(name)
}

/// Collects datagrams until the socket stays quiet after traffic, or a deadline passes.
fn collect(sock: UdpSocket, deadline: Instant) -> Vec<(Instant, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut quiet_since = Instant::now();
    let mut buf = vec![0u8; 2048];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                got.push((Instant::now(), buf[..n].to_vec()));
                quiet_since = Instant::now();
            }
            Err(_) if !got.is_empty() && quiet_since.elapsed() > Duration::from_millis(1500) => {
                break;
            }
            Err(_) => {}
        }
    }
    got
}

fn wait_child(mut child: Child, timeout: Duration) -> Output {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("output"),
            None if Instant::now() > end => {
                let _ = child.kill();
                panic!("ffmpeg did not exit within {timeout:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

struct Capture {
    video: Vec<(Instant, Vec<u8>)>,
    audio: Vec<(Instant, Vec<u8>)>,
}

fn send_with_ffmpeg(video_codec_args: &[&str]) -> Capture {
    let vsock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let asock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (vport, aport) = (
        vsock.local_addr().expect("addr").port(),
        asock.local_addr().expect("addr").port(),
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let vt = std::thread::spawn(move || collect(vsock, deadline));
    let at = std::thread::spawn(move || collect(asock, deadline));
    let t = SECONDS.to_string();
    let mut args: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-map",
        "0:v",
        "-t",
        &t,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(video_codec_args.iter().map(|s| s.to_string()));
    args.extend(
        [
            "-f",
            "rtp",
            "-payload_type",
            "96",
            &format!("rtp://127.0.0.1:{vport}?pkt_size=1200"),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.extend(
        [
            "-map",
            "1:a",
            "-t",
            &t,
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-ac",
            "2",
            "-f",
            "rtp",
            "-payload_type",
            "111",
            &format!("rtp://127.0.0.1:{aport}?pkt_size=1200"),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let child = tool("ffmpeg")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let out = wait_child(child, Duration::from_secs(40));
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Capture {
        video: vt.join().expect("video thread"),
        audio: at.join().expect("audio thread"),
    }
}

struct Recording {
    init: Vec<u8>,
    segments: Vec<Segment>,
    /// Low-latency HLS parts (fMP4 recordings only).
    parts: Vec<relaycast_archive::Part>,
    keyframe_requests: usize,
    /// Seconds between the first video and the first audio packet's arrival: the encoders start
    /// apart (x264's first frame comes later on a busy machine), and the file keeps that offset.
    start_skew: f64,
}

fn merge(cap: Capture) -> Vec<(Instant, MediaKind, Vec<u8>)> {
    let mut all: Vec<(Instant, MediaKind, Vec<u8>)> = cap
        .video
        .into_iter()
        .map(|(t, b)| (t, MediaKind::Video, b))
        .chain(cap.audio.into_iter().map(|(t, b)| (t, MediaKind::Audio, b)))
        .collect();
    all.sort_by_key(|(t, _, _)| *t);
    all
}

fn record(cap: Capture, codec: VideoCodec) -> Recording {
    record_packets(merge(cap), codec)
}

/// Feeds packets in the given order; undecodable datagrams are skipped.
fn record_packets(all: Vec<(Instant, MediaKind, Vec<u8>)>, codec: VideoCodec) -> Recording {
    let first = |kind: MediaKind| all.iter().filter(|(_, k, _)| *k == kind).map(|(t, _, _)| *t).min();
    let start_skew = match (first(MediaKind::Video), first(MediaKind::Audio)) {
        (Some(v), Some(a)) => v.max(a).duration_since(v.min(a)).as_secs_f64(),
        _ => 0.0,
    };
    let start = all
        .first()
        .map(|(t, _, _)| *t)
        .expect("ffmpeg sent packets");
    let mut cfg = RecorderConfig {
        video: Some(codec),
        ..RecorderConfig::default()
    };
    cfg.segment.part_target = Some(relaycast_archive::lowlatency::PART_TARGET);
    let mut rec = Recorder::with_clock(
        cfg,
        start,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let (mut vseq, mut aseq) = (SeqUnwrapper::default(), SeqUnwrapper::default());
    let mut outputs = Vec::new();
    for (t, kind, bytes) in all {
        let unwrap = if kind == MediaKind::Video {
            &mut vseq
        } else {
            &mut aseq
        };
        let Ok(pkt) = RtpPacket::from_bytes(&bytes, kind, unwrap, t) else {
            continue;
        };
        outputs.extend(rec.push(pkt, t));
    }
    outputs.extend(rec.finish());
    let mut init = None;
    let mut segments = Vec::new();
    let mut parts = Vec::new();
    let mut keyframe_requests = 0;
    for o in outputs {
        match o {
            RecorderOutput::InitSegment(i) => {
                assert!(
                    init.is_none(),
                    "codec parameters did not change, one init segment expected"
                );
                init = Some(i.bytes);
            }
            RecorderOutput::Segment(s) => segments.push(s),
            RecorderOutput::RequestKeyframe => keyframe_requests += 1,
            RecorderOutput::Part(p) => parts.push(p),
        }
    }
    Recording {
        init: init.expect("an init segment"),
        segments,
        parts,
        keyframe_requests,
        start_skew,
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaycast-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

fn ffprobe_json(path: &Path, extra: &[&str]) -> serde_json::Value {
    let out = tool("ffprobe")
        .args(["-v", "error"])
        .args(extra)
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

fn decodes_cleanly(path: &Path) {
    let out = tool("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg could not decode {} cleanly: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(rec: &Recording, name: &str, video_codec: &str) {
    assert!(rec.segments.len() >= 3, "{} segments", rec.segments.len());
    assert_eq!(
        rec.keyframe_requests, 0,
        "GOP of 2 s needs no keyframe requests"
    );
    for (i, s) in rec.segments.iter().enumerate() {
        assert_eq!(s.seq, i as u64);
        assert!(s.has_video);
        if i + 1 < rec.segments.len() {
            let d = s.duration.as_secs_f64();
            assert!((1.8..=2.2).contains(&d), "segment {i} lasts {d} s");
        }
    }
    let total: f64 = rec.segments.iter().map(|s| s.duration.as_secs_f64()).sum();
    assert!(
        (total - SECONDS).abs() <= SECONDS * 0.05,
        "segment durations sum to {total} s"
    );
    for w in rec.segments.windows(2) {
        let gap = w[1]
            .start_wallclock
            .duration_since(w[0].start_wallclock)
            .expect("ordered");
        assert_eq!(gap, w[0].duration, "program date times follow durations");
    }

    // VP8 is recorded in WebM (EBML magic), everything else in fMP4.
    let webm = rec.init.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]);
    let (ext, format) = if webm { ("webm", "webm") } else { ("mp4", "mp4") };
    let path = temp_path(&format!("{name}.{ext}"));
    let mut file = rec.init.clone();
    for s in &rec.segments {
        file.extend_from_slice(&s.bytes);
    }
    std::fs::write(&path, &file).expect("write");
    let probe = ffprobe_json(
        &path,
        &[
            "-count_frames",
            "-show_entries",
            "format=format_name,duration:stream=codec_name,width,height,nb_read_frames",
        ],
    );
    eprintln!("{name}: {probe}");
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .is_some_and(|f| f.contains(format)),
        "{name} is {format}: {probe}"
    );
    // A live WebM (a Segment of unknown size) has no duration in its header: the span of its
    // packets is the duration.
    let duration: f64 = match probe["format"]["duration"].as_str().and_then(|d| d.parse().ok()) {
        Some(d) => d,
        None => packet_span(&path),
    };
    assert!(
        (duration - SECONDS).abs() <= SECONDS * 0.05 + rec.start_skew,
        "file lasts {duration} s, sent {SECONDS} s (audio and video started {:.3} s apart)",
        rec.start_skew
    );
    let streams = probe["streams"].as_array().expect("streams");
    let video = streams
        .iter()
        .find(|s| s["codec_name"] == video_codec)
        .expect("video stream");
    assert_eq!(video["width"], 640);
    assert_eq!(video["height"], 360);
    let frames: f64 = video["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("frame count");
    assert!(
        (frames - SECONDS * 30.0).abs() <= SECONDS * 30.0 * 0.05,
        "{frames} video frames"
    );
    let audio = streams
        .iter()
        .find(|s| s["codec_name"] == "opus")
        .expect("opus stream");
    let audio_frames: f64 = audio["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("audio count");
    assert!(
        (audio_frames - SECONDS * 50.0).abs() <= SECONDS * 50.0 * 0.05,
        "{audio_frames} Opus packets"
    );
    decodes_cleanly(&path);
    let _ = std::fs::remove_file(&path);
    check_each_segment(rec, name, ext);
    // ffmpeg's HLS reader takes fMP4 segments; WebM recordings are played by MSE from their
    // segment list (and the concatenation above is what it appends).
    if !webm {
        check_playlist(rec, name);
    }
}

/// From the first packet's start to the last packet's end, over every stream, seconds.
fn packet_span(path: &Path) -> f64 {
    let probe = ffprobe_json(path, &["-show_entries", "packet=pts_time,duration_time"]);
    let packets = probe["packets"].as_array().expect("packets");
    let num = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok());
    let start = packets.iter().filter_map(|p| num(&p["pts_time"])).fold(f64::INFINITY, f64::min);
    let end = packets
        .iter()
        .filter_map(|p| Some(num(&p["pts_time"])? + num(&p["duration_time"]).unwrap_or(0.0)))
        .fold(0.0, f64::max);
    end - start
}

/// The VOD playlist over files named like CIDs plays as one continuous stream.
fn check_playlist(rec: &Recording, name: &str) {
    let dir = temp_path(&format!("{name}-hls"));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("init.mp4"), &rec.init).expect("write");
    let mut m = Manifest::new("init.mp4", "test");
    for s in &rec.segments {
        let cid = format!("seg{}.m4s", s.seq);
        std::fs::write(dir.join(&cid), &s.bytes).expect("write");
        m.push_segment(s.seq, cid, s.duration, s.start_wallclock, "init.mp4");
    }
    m.end();
    let list = dir.join("vod.m3u8");
    std::fs::write(&list, playlist::vod_with_prefix(&m, "")).expect("write");
    let probe = ffprobe_json(
        &list,
        &["-show_entries", "format=duration:stream=codec_name"],
    );
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(
        (duration - SECONDS).abs() <= SECONDS * 0.05 + rec.start_skew,
        "playlist lasts {duration} s (audio and video started {:.3} s apart): {probe}",
        rec.start_skew
    );
    assert_eq!(
        probe["streams"].as_array().map(Vec::len),
        Some(2),
        "{probe}"
    );
    decodes_cleanly(&list);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each segment on its own (after the init segment) starts with a video keyframe and decodes.
fn check_each_segment(rec: &Recording, name: &str, ext: &str) {
    // Each segment on its own (after the init segment) starts with a keyframe and decodes.
    for s in &rec.segments {
        let seg_path = temp_path(&format!("{name}-{}.{ext}", s.seq));
        let mut one = rec.init.clone();
        one.extend_from_slice(&s.bytes);
        std::fs::write(&seg_path, &one).expect("write");
        let first = ffprobe_json(
            &seg_path,
            &[
                "-select_streams",
                "v",
                "-read_intervals",
                "%+#1",
                "-show_entries",
                "frame=key_frame,pict_type",
            ],
        );
        assert_eq!(
            first["frames"][0]["key_frame"], 1,
            "segment {} starts with {}",
            s.seq, first
        );
        decodes_cleanly(&seg_path);
        let _ = std::fs::remove_file(&seg_path);
    }
}

#[test]
fn vp8_and_opus_from_ffmpeg_become_playable_webm() {
    let cap = send_with_ffmpeg(&[
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-g",
        "60",
        "-b:v",
        "1M",
    ]);
    let rec = record(cap, VideoCodec::Vp8);
    check(&rec, "vp8", "vp8");
    check_parts(&rec, "vp8", "webm");
}

#[test]
fn h264_and_opus_from_ffmpeg_become_playable_cmaf() {
    let cap = send_with_ffmpeg(&[
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-tune",
        "zerolatency",
        "-pix_fmt",
        "yuv420p",
        "-g",
        "60",
        "-b:v",
        "1M",
    ]);
    let rec = record(cap, VideoCodec::H264);
    check(&rec, "h264", "h264");
    check_parts(&rec, "h264", "mp4");
}

/// The low-latency parts of each segment number 0, 1, … in order, the first one independent,
/// each at most the part target; the init segment followed by every part (fMP4 fragments, or
/// WebM clusters) decodes as the whole recording does, frame for frame.
fn check_parts(rec: &Recording, name: &str, ext: &str) {
    let target = relaycast_archive::lowlatency::PART_TARGET;
    for s in &rec.segments {
        let parts: Vec<_> = rec.parts.iter().filter(|p| p.seq == s.seq).collect();
        assert!(parts.len() >= 3, "segment {} has {} parts", s.seq, parts.len());
        assert!(parts.iter().enumerate().all(|(i, p)| p.index as usize == i));
        assert!(parts[0].independent, "segment {}'s first part starts with its keyframe", s.seq);
        assert!(parts.iter().all(|p| p.duration <= target + Duration::from_millis(40)), "{:?}", parts.iter().map(|p| p.duration).collect::<Vec<_>>());
        let sum: Duration = parts.iter().map(|p| p.duration).sum();
        assert!(sum.abs_diff(s.duration) < Duration::from_millis(2), "segment {}: parts {sum:?}, segment {:?}", s.seq, s.duration);
    }
    let frames = |path: &Path| -> usize {
        let probe = ffprobe_json(path, &["-count_packets", "-show_entries", "stream=codec_type,nb_read_packets"]);
        probe["streams"].as_array().expect("streams").iter().map(|st| st["nb_read_packets"].as_str().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0)).sum()
    };
    let whole_path = temp_path(&format!("{name}-whole.{ext}"));
    let mut whole = rec.init.clone();
    rec.segments.iter().for_each(|s| whole.extend_from_slice(&s.bytes));
    std::fs::write(&whole_path, &whole).expect("write");
    let parted_path = temp_path(&format!("{name}-parts.{ext}"));
    let mut parted = rec.init.clone();
    rec.parts.iter().for_each(|p| parted.extend_from_slice(&p.bytes));
    std::fs::write(&parted_path, &parted).expect("write");
    decodes_cleanly(&parted_path);
    assert_eq!(frames(&parted_path), frames(&whole_path), "the parts hold every frame of the segments");
    let _ = std::fs::remove_file(&whole_path);
    let _ = std::fs::remove_file(&parted_path);
}

#[test]
fn vp8_over_an_impaired_network_stays_keyframe_aligned_and_decodable() {
    let cap = send_with_ffmpeg(&[
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-g",
        "60",
        "-b:v",
        "1M",
    ]);
    let clean = merge(cap);

    // Reordered pairs, duplicates and garbage datagrams: nothing is lost, so the result is whole.
    let mut shuffled = Vec::new();
    let mut i = 0;
    while i < clean.len() {
        if i % 7 == 3 && i + 1 < clean.len() {
            shuffled.push(clean[i + 1].clone());
            shuffled.push(clean[i].clone());
            i += 2;
            continue;
        }
        shuffled.push(clean[i].clone());
        if i % 11 == 0 {
            shuffled.push(clean[i].clone());
        }
        if i % 97 == 0 {
            let (t, kind, _) = &clean[i];
            shuffled.push((*t, *kind, vec![0xde, 0xad, 0xbe, 0xef]));
            // Valid header, far-away sequence number, nonsense payload.
            let mut junk = clean[i].2.clone();
            junk[2] ^= 0x80;
            junk.truncate(16);
            shuffled.push((*t, *kind, junk));
        }
        i += 1;
    }
    let rec = record_packets(shuffled, VideoCodec::Vp8);
    check(&rec, "vp8-shuffled", "vp8");

    // One video packet lost in the middle of the second GOP: frames up to the next keyframe are
    // dropped, keyframes are requested, and every segment still starts with a keyframe.
    let video_at: Vec<usize> = clean
        .iter()
        .enumerate()
        .filter(|(_, (_, k, _))| *k == MediaKind::Video)
        .map(|(i, _)| i)
        .collect();
    let victim = video_at[video_at.len() / 2 - video_at.len() / 12];
    let lossy: Vec<_> = clean
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, p)| p.clone())
        .collect();
    let rec = record_packets(lossy, VideoCodec::Vp8);
    assert!(
        rec.keyframe_requests >= 1,
        "a loss must trigger a keyframe request"
    );
    let path = temp_path("vp8-lossy.mp4");
    let mut file = rec.init.clone();
    for s in &rec.segments {
        file.extend_from_slice(&s.bytes);
    }
    std::fs::write(&path, &file).expect("write");
    let probe = ffprobe_json(
        &path,
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,nb_read_frames",
        ],
    );
    let frames: u64 = probe["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["codec_name"] == "vp8"))
        .and_then(|s| s["nb_read_frames"].as_str())
        .and_then(|n| n.parse().ok())
        .expect("vp8 frame count");
    assert!(
        (100..180).contains(&frames),
        "{frames} frames after one loss"
    );
    decodes_cleanly(&path);
    let _ = std::fs::remove_file(&path);
    check_each_segment(&rec, "vp8-lossy", "webm");
}
