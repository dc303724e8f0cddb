//! The RTMP server's limits over real loopback sockets: the handshake timeout, the connection
//! limit and a bad handshake, each closing the connection and counted.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use relaycast_ingest::publisher::{Answer, BoxFuture, Refused, Signaling};
use relaycast_ingest::server::{RtmpServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node that refuses every publish (none is made here).
struct Refuse;

impl Signaling for Refuse {
    fn offer<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
        _: bool,
        _: String,
    ) -> BoxFuture<'a, Result<Answer, Refused>> {
        Box::pin(async {
            Err(Refused {
                status: 401,
                reason: "no".into(),
            })
        })
    }
    fn delete<'a>(&'a self, _: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Reads until the server closes the connection; fails after 10 s.
async fn closed(mut s: TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    all
}

#[tokio::test]
async fn handshake_timeout_connection_limit_and_bad_version() {
    let cfg = ServerConfig {
        max_connections: 2,
        handshake_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(5),
        media_ip: "127.0.0.1".parse().unwrap(),
    };
    let server = RtmpServer::bind("127.0.0.1:0".parse().unwrap(), cfg, Arc::new(Refuse))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let stats = server.stats();
    let task = tokio::spawn(server.run());

    // Two silent clients take the two slots; a third is closed at once.
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.accepted.load(Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let c = TcpStream::connect(addr).await.unwrap();
    assert!(closed(c).await.is_empty());
    assert_eq!(stats.over_limit.load(Relaxed), 1);

    // The silent ones are closed after the handshake timeout.
    let started = tokio::time::Instant::now();
    closed(a).await;
    closed(b).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(stats.handshake_timeouts.load(Relaxed), 2);

    // RTMPE (version 6) is refused: no S0, a protocol error.
    let mut d = TcpStream::connect(addr).await.unwrap();
    let mut c0c1 = vec![6u8];
    c0c1.resize(1537, 0);
    d.write_all(&c0c1).await.unwrap();
    assert!(closed(d).await.is_empty());
    assert_eq!(stats.protocol_errors.load(Relaxed), 1);

    // A good handshake gets S0, S1 and S2 (C1 echoed).
    let mut e = TcpStream::connect(addr).await.unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..1536).map(|i| (i % 251) as u8));
    e.write_all(&c0c1).await.unwrap();
    let mut s = vec![0u8; 1 + 2 * 1536];
    tokio::time::timeout(Duration::from_secs(5), e.read_exact(&mut s))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s[0], 3);
    assert_eq!(&s[1537..], &c0c1[1..]);
    task.abort();
}
