//! Shared set-up of the load-test crate's integration tests: spawning a `relaycast` node.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the node when the test ends, however it ends.
pub struct Node(pub Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/debug` (or the profile directory this test was built in).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/ci_short_run-HASH → target/debug
    exe.parent().and_then(|p| p.parent()).expect("profile dir").to_path_buf()
}

pub fn relaycast_binary() -> PathBuf {
    let bin = profile_dir().join("relaycast");
    if !bin.exists() {
        // `cargo test -p relaycast-loadtest` alone does not build the node binary.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "relaycast", "--bin", "relaycast"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building relaycast failed");
    }
    assert!(bin.exists(), "no relaycast binary at {}", bin.display());
    bin
}

/// Starts a node on loopback with `extra` flags; returns it and its HTTP base URL.
pub fn start_node(data: &std::path::Path, extra: &[&str]) -> (Node, String) {
    let mut child = Command::new(relaycast_binary())
        .args(["--http", "127.0.0.1:0", "--media-port", "0", "--publish-token", "ci-token", "--workers", "1"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RELAYCAST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn relaycast");
    let stdout = child.stdout.take().expect("stdout");
    let node = Node(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim_start().strip_prefix("http: ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("relaycast printed its http address");
    (node, url)
}


/// Minimal blocking GET of a plain `http://host:port/path` URL: the body of a 200 answer, `None`
/// on any failure.
pub fn get_text(url: &str) -> Option<String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8(buf).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}
