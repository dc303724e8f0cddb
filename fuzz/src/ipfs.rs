//! IPFS: dag-pb and UnixFS, CAR, varints and the gateway.

use std::sync::{Arc, OnceLock};

use crate::input::Input;

/// The targets of this module by name.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("dagpb", dagpb),
    ("car", car),
    ("varint", varint),
    ("gateway_range", gateway_range),
    ("gateway", gateway),
];

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
