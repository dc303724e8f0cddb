//! Helpers shared by the mesh integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use relaycast_mesh::{Mesh, MeshConfig, MeshEvent, Multiaddr};
use tokio::sync::mpsc;

/// A fresh temporary data directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaycast-mesh-{tag}-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A loopback-only config with mDNS off, a short announce interval, and an HTTP URL on
/// loopback (the address peers see it at, so they accept the URL).
pub fn config(tag: &str) -> MeshConfig {
    let mut c = MeshConfig::new(temp_dir(tag), format!("http://127.0.0.1:8080/{tag}"));
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    c.mdns = false;
    c.announce_interval = Duration::from_millis(300);
    c
}

/// Starts a mesh with the given config.
pub async fn start(c: MeshConfig) -> (Mesh, mpsc::Receiver<MeshEvent>) {
    tokio::time::timeout(Duration::from_secs(5), Mesh::start(c))
        .await
        .expect("start in time")
        .expect("start")
}

/// Bootstrap addresses of a running mesh.
pub async fn addrs(m: &Mesh) -> Vec<Multiaddr> {
    let a = m.listen_addrs().await;
    assert!(!a.is_empty(), "mesh has listen addresses");
    a
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the next event matching `pred`.
pub async fn next_event(
    rx: &mut mpsc::Receiver<MeshEvent>,
    timeout: Duration,
    mut pred: impl FnMut(&MeshEvent) -> bool,
) -> Option<MeshEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return Some(ev),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}
