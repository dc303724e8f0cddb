//! A mesh node that lies: it joins a mesh and gossips, signed with its own key, an origin claim
//! on a stream another node originates, with an HTTP URL it is not seen at, plus segment events
//! for that stream. For checking a mesh's defences (the end-to-end tests run it); it is not
//! part of the node.
//!
//! `cargo run -p relaycast-mesh --example claim -- --bootstrap ADDR… --stream NAME
//!  [--http-url URL] [--seconds N]`; prints `peer: <id>` once started and `done` at the end.

use std::time::{Duration, Instant};

use relaycast_mesh::gossip::{STREAMS_TOPIC, encode, segments_topic};
use relaycast_mesh::{Mesh, MeshConfig, SegmentAnnouncement, StreamAnnouncement};

struct Args {
    bootstrap: Vec<relaycast_mesh::Multiaddr>,
    stream: String,
    http_url: String,
    seconds: u64,
}

fn parse() -> Result<Args, String> {
    let mut args = Args { bootstrap: Vec::new(), stream: String::new(), http_url: "http://192.0.2.66:8080".into(), seconds: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bootstrap" => args.bootstrap.push(value.parse().map_err(|e| format!("--bootstrap: {e}"))?),
            "--stream" => args.stream = value,
            "--http-url" => args.http_url = value,
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.stream.is_empty() || args.bootstrap.is_empty() {
        return Err("--stream and --bootstrap are required".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let dir = std::env::temp_dir().join(format!("relaycast-claim-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut config = MeshConfig::new(&dir, args.http_url.clone());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
    config.mdns = false;
    config.bootstrap = args.bootstrap.clone();
    let (mesh, mut events) = Mesh::start(config).await?;
    println!("peer: {}", mesh.peer_id());
    // Drain events (relay requests are answered with an error when dropped).
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let claim = StreamAnnouncement {
        origin: mesh.peer_id(),
        stream: args.stream.clone(),
        codec: "VP8".into(),
        layers: vec![],
        http_url: args.http_url.clone(),
        // Claims to have started first.
        started_ms: 1,
    };
    let seg = SegmentAnnouncement {
        stream: args.stream.clone(),
        seq: 1,
        cid: "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e".into(),
        init: "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e".into(),
        codecs: "vp08.00.10.08,opus".into(),
        duration: 2.0,
        start_unix_ms: 0,
        sig: String::new(),
    };
    let end = Instant::now() + Duration::from_secs(args.seconds);
    while Instant::now() < end {
        mesh.publish_raw(STREAMS_TOPIC, encode(&claim));
        mesh.publish_raw(&segments_topic(&args.stream), encode(&seg));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    mesh.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("done");
    Ok(())
}
