//! The gateway router served on 127.0.0.1:0 and queried with a plain HTTP client.

use std::sync::Arc;
use std::time::Duration;

use relaycast_ipfs::car::CarReader;
use relaycast_ipfs::unixfs::DirectoryBuilder;
use relaycast_ipfs::{Blockstore, Cid, Profile, block, router};

struct Fixture {
    base: String,
    store: Arc<Blockstore>,
    dir: std::path::PathBuf,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(tag: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("relaycast-ipfs-gw-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Blockstore::open(&dir).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(store.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Fixture {
        base: format!("http://{addr}"),
        store,
        dir,
        server,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn raw_block_and_immutable_headers() {
    let f = start("raw").await;
    let cid = block::cid_of(block::RAW, b"hello world");
    f.store.put(&cid, b"hello world").unwrap();
    let r = client()
        .get(format!("{}/ipfs/{cid}", f.base))
        .header("accept", "application/vnd.ipld.raw")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/vnd.ipld.raw");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=29030400, immutable"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "x-ipfs-path"), format!("/ipfs/{cid}"));
    assert_eq!(header(&r, "etag"), format!("\"{cid}.raw\""));
    assert!(header(&r, "content-disposition").starts_with("attachment"));
    assert_eq!(r.bytes().await.unwrap(), &b"hello world"[..]);
    // ?format=raw works without Accept, and the bytes hash to the CID.
    let r = client()
        .get(format!("{}/ipfs/{cid}?format=raw", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    block::verify(&cid, &r.bytes().await.unwrap()).unwrap();
}

#[tokio::test]
async fn multi_block_file_car_file_head_and_range() {
    let f = start("file").await;
    let data = content(262144 * 3 + 1000);
    let e = f.store.import_reader(&data[..], Profile::Kubo).unwrap();
    let url = format!("{}/ipfs/{}", f.base, e.cid);

    // Whole file, deserialized.
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(header(&r, "etag"), format!("\"{}\"", e.cid));
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-type"), "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);

    // HEAD: same headers, no body.
    let r = client().head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert!(r.bytes().await.unwrap().is_empty());

    // Range across a chunk boundary.
    let r = client()
        .get(&url)
        .header("range", "bytes=262000-262299")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 262000-262299/{}", data.len())
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[262000..262300]);
    // Suffix range and open-ended range.
    let r = client()
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[data.len() - 10..]);
    let r = client()
        .get(&url)
        .header("range", format!("bytes={}-", data.len() + 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes */{}", data.len())
    );

    // CAR: the whole DAG, root first, every block verifiable.
    let r = client()
        .get(&url)
        .header("accept", "application/vnd.ipld.car")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.ipld.car; version=1; order=dfs; dups=n"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let car = r.bytes().await.unwrap();
    let mut reader = CarReader::new(&car[..]).unwrap();
    assert_eq!(reader.roots(), &[e.cid]);
    let mut cids = Vec::new();
    let mut file = Vec::new();
    while let Some((cid, bytes)) = reader.next_block().unwrap() {
        block::verify(&cid, &bytes).unwrap();
        if cid.codec() == block::RAW {
            file.extend_from_slice(&bytes);
        }
        cids.push(cid);
    }
    assert_eq!(cids[0], e.cid);
    assert_eq!(cids.len(), 5);
    assert_eq!(file, data);
    // HEAD on a CAR sends no body.
    let r = client()
        .head(format!("{url}?format=car"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    // Revalidation.
    let r = client()
        .get(&url)
        .header("if-none-match", format!("\"{}\"", e.cid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
}

#[tokio::test]
async fn identity_bad_and_unknown_cids() {
    let f = start("errors").await;
    let r = client()
        .get(format!("{}/ipfs/bafkqaaa", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "0");
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client()
        .get(format!("{}/ipfs/bafkqaaa?format=raw", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client()
        .get(format!("{}/ipfs/bafkqaaa?format=car", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let car = r.bytes().await.unwrap();
    let mut reader = CarReader::new(&car[..]).unwrap();
    assert_eq!(reader.roots().len(), 1);
    assert_eq!(
        reader.next_block().unwrap(),
        None,
        "identity blocks are never sent"
    );

    let r = client()
        .get(format!("{}/ipfs/not-a-cid", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid CID"));
    let r = client()
        .get(format!("{}/ipfs/bafkqaaa?format=dag-json", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let unknown: Cid = block::cid_of(block::RAW, b"never stored");
    for accept in [
        "application/vnd.ipld.raw",
        "application/vnd.ipld.car",
        "*/*",
    ] {
        let r = client()
            .get(format!("{}/ipfs/{unknown}", f.base))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "accept {accept}");
    }
    let r = client()
        .head(format!("{}/ipfs/{unknown}", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn corrupted_block_is_not_served() {
    let f = start("corrupt").await;
    let cid = block::cid_of(block::RAW, b"original");
    f.store.put(&cid, b"original").unwrap();
    std::fs::write(f.store.path_of(&cid), b"tampered").unwrap();
    for q in ["?format=raw", ""] {
        let r = client()
            .get(format!("{}/ipfs/{cid}{q}", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500, "query {q:?}");
        assert!(!r.text().await.unwrap().contains("tampered"));
    }
}

#[tokio::test]
async fn directory_paths_for_a_recording() {
    let f = start("dir").await;
    let playlist = b"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-MAP:URI=\"init.mp4\"\nseg-1.m4s\n";
    let segment = content(300_000);
    let p = f
        .store
        .import_reader(&playlist[..], Profile::default())
        .unwrap();
    let s = f.store.import_reader(&segment[..], Profile::Kubo).unwrap();
    let mut d = DirectoryBuilder::new();
    d.add("index.m3u8", p).unwrap();
    d.add("seg-1.m4s", s).unwrap();
    let root = f.store.put_directory(d).unwrap();

    let r = client()
        .get(format!("{}/ipfs/{}/index.m3u8", f.base, root.cid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "application/vnd.apple.mpegurl");
    assert_eq!(
        header(&r, "x-ipfs-path"),
        format!("/ipfs/{}/index.m3u8", root.cid)
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), &playlist[..]);

    let r = client()
        .get(format!("{}/ipfs/{}/seg-1.m4s", f.base, root.cid))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-type"), "video/mp4");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &segment[100..200]);

    let r = client()
        .get(format!("{}/ipfs/{}/missing.m4s", f.base, root.cid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(format!(
            "{}/ipfs/{}/index.m3u8?format=raw",
            f.base, root.cid
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The directory itself: a listing, and as CAR every block of the recording.
    let r = client()
        .get(format!("{}/ipfs/{}", f.base, root.cid))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listing = r.text().await.unwrap();
    assert!(
        listing.contains(&format!("index.m3u8\t{}", p.cid)),
        "{listing}"
    );
    let r = client()
        .get(format!("{}/ipfs/{}?format=car", f.base, root.cid))
        .send()
        .await
        .unwrap();
    let car = r.bytes().await.unwrap();
    let mut reader = CarReader::new(&car[..]).unwrap();
    let mut n = 0;
    while let Some((cid, bytes)) = reader.next_block().unwrap() {
        block::verify(&cid, &bytes).unwrap();
        n += 1;
    }
    // Directory + playlist leaf + segment root + 2 segment leaves.
    assert_eq!(n, 5);
}

/// Lets through only CIDs it lists, and only with `?token=open`.
struct ListedWithToken(Vec<Cid>);

impl relaycast_ipfs::GatewayAccess for ListedWithToken {
    fn check(&self, cid: &Cid, _headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> Result<(), axum::response::Response> {
        use axum::response::IntoResponse;
        if !uri.query().unwrap_or("").split('&').any(|p| p == "token=open") {
            return Err((axum::http::StatusCode::UNAUTHORIZED, "token needed\n").into_response());
        }
        if !self.0.contains(cid) {
            return Err((axum::http::StatusCode::FORBIDDEN, "not yours\n").into_response());
        }
        Ok(())
    }
}

#[tokio::test]
async fn access_check_runs_before_every_read_and_makes_caching_private() {
    let dir = std::env::temp_dir().join(format!("relaycast-ipfs-gw-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Blockstore::open(&dir).unwrap());
    let listed = block::cid_of(block::RAW, b"listed");
    let other = block::cid_of(block::RAW, b"other");
    store.put(&listed, b"listed").unwrap();
    store.put(&other, b"other").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = relaycast_ipfs::router_with_access(store, Arc::new(ListedWithToken(vec![listed])));
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let get = |url: String| async move { client().get(url).send().await.unwrap() };

    assert_eq!(get(format!("{base}/ipfs/{listed}")).await.status(), 401, "no token");
    assert_eq!(get(format!("{base}/ipfs/{other}?token=open")).await.status(), 403, "a CID the check refuses");
    assert_eq!(get(format!("{base}/ipfs/{other}/name?token=open")).await.status(), 403, "a path below a refused root");
    // Refused before the store is read: an absent CID is not told apart from a present one.
    let absent = block::cid_of(block::RAW, b"absent");
    assert_eq!(get(format!("{base}/ipfs/{absent}?token=open")).await.status(), 403);
    let ok = get(format!("{base}/ipfs/{listed}?token=open&format=raw")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(header(&ok, "cache-control"), relaycast_ipfs::gateway::PRIVATE_IMMUTABLE);
    assert_eq!(ok.bytes().await.unwrap().as_ref(), b"listed");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
