//! mDNS discovery without `--bootstrap` between two nodes in network namespaces this test
//! creates (a bridge, two namespaces joined to it by veth pairs, addresses in 10.98.0.0/24).
//! Each node must list the other as a connected known peer in `GET /api/node`.
//!
//! Needs root and iproute2 (and curl to query the nodes inside their namespaces); where any is
//! missing, or namespaces cannot be created, the test prints why and returns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HTTP_PORT: u16 = 18_980;
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(40);

fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    run("ip", args)
}

fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
}

/// One namespace with a veth pair into the bridge and a running node.
struct Node {
    ns: String,
    /// The veth end in the root namespace.
    outer: String,
    addr: String,
    child: Option<Child>,
    dir: PathBuf,
}

/// The bridge and namespaces; everything is removed on drop, also after a failed assertion.
struct Net {
    bridge: String,
    nodes: Vec<Node>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Deleting the namespace deletes its veth end and with it the pair.
            let _ = ip(&["netns", "del", &n.ns]);
            let _ = ip(&["link", "del", &n.outer]);
            let _ = std::fs::remove_dir_all(&n.dir);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

impl Net {
    fn create(tag: &str) -> Result<Net, String> {
        let bridge = format!("rcbr{tag}");
        let mut net = Net {
            bridge: bridge.clone(),
            nodes: Vec::new(),
        };
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["link", "set", &bridge, "up"])?;
        for (i, host) in [2u8, 3].iter().enumerate() {
            let ns = format!("rc-mdns-{tag}-{i}");
            let outer = format!("rcv{tag}{i}");
            let inner = format!("rcp{tag}{i}");
            let addr = format!("10.98.0.{host}");
            let dir = std::env::temp_dir().join(format!("relaycast-{ns}"));
            ip(&["netns", "add", &ns])?;
            net.nodes.push(Node {
                ns: ns.clone(),
                outer: outer.clone(),
                addr: addr.clone(),
                child: None,
                dir,
            });
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &outer, "master", &bridge])?;
            ip(&["link", "set", &outer, "up"])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &inner])?;
        }
        Ok(net)
    }

    fn start_nodes(&mut self) -> Result<(), String> {
        let bin = env!("CARGO_BIN_EXE_relaycast");
        for n in &mut self.nodes {
            std::fs::create_dir_all(&n.dir).map_err(|e| e.to_string())?;
            let log = std::fs::File::create(n.dir.join("node.log")).map_err(|e| e.to_string())?;
            let log2 = log.try_clone().map_err(|e| e.to_string())?;
            let data = n.dir.join("data");
            let child = Command::new("ip")
                .env(
                    "RELAYCAST_LOG",
                    std::env::var("RELAYCAST_LOG")
                        .unwrap_or_else(|_| "info,relaycast_mesh=debug".into()),
                )
                .args(["netns", "exec", &n.ns, bin])
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--http",
                    &format!("{}:{HTTP_PORT}", n.addr),
                    "--media-port",
                    "0",
                ])
                .args(["--p2p", &format!("/ip4/{}/tcp/0", n.addr)])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("spawning the node: {e}"))?;
            n.child = Some(child);
        }
        Ok(())
    }

    /// `GET /api/node` of node `i`, from inside its namespace.
    fn node_info(&self, i: usize) -> Option<serde_json::Value> {
        let n = &self.nodes[i];
        let url = format!("http://{}:{HTTP_PORT}/api/node", n.addr);
        let out = run(
            "ip",
            &[
                "netns",
                "exec",
                &n.ns,
                "curl",
                "-sf",
                "--max-time",
                "2",
                &url,
            ],
        )
        .ok()?;
        serde_json::from_str(&out).ok()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(n.dir.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                format!(
                    "--- {} ---\n{}",
                    n.ns,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn connected_to(info: &serde_json::Value, peer: &str) -> bool {
    info["known_peers"].as_array().is_some_and(|l| {
        l.iter()
            .any(|p| p["peer_id"] == peer && p["connected"] == true)
    })
}

#[test]
fn nodes_in_separate_namespaces_find_each_other_by_mdns() {
    let uid = run("id", &["-u"]).unwrap_or_default();
    if uid.trim() != "0" {
        println!(
            "skipped: creating network namespaces needs root (uid {})",
            uid.trim()
        );
        return;
    }
    for tool in ["ip", "curl"] {
        if !have(tool) {
            println!("skipped: `{tool}` is not installed");
            return;
        }
    }
    let tag = format!("{}", std::process::id() % 100_000);
    let mut net = match Net::create(&tag) {
        Ok(net) => net,
        Err(e) => {
            println!("skipped: cannot set up network namespaces here: {e}");
            return;
        }
    };
    net.start_nodes().expect("start nodes");

    let started = Instant::now();
    let ids: Vec<String> = (0..2)
        .map(|i| {
            loop {
                if let Some(info) = net.node_info(i)
                    && let Some(id) = info["peer_id"].as_str()
                {
                    break id.to_string();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "node {i} did not serve /api/node\n{}",
                    net.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .collect();

    let deadline = Instant::now() + DISCOVERY_TIMEOUT;
    loop {
        let a = net.node_info(0);
        let b = net.node_info(1);
        let ok = a.as_ref().is_some_and(|a| connected_to(a, &ids[1]))
            && b.as_ref().is_some_and(|b| connected_to(b, &ids[0]));
        if ok {
            println!(
                "mDNS discovery across namespaces in {:?}",
                started.elapsed()
            );
            let logs = net.logs();
            assert!(
                logs.contains("mdns discovered"),
                "peers found by mDNS:\n{logs}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not discover each other by mDNS within {DISCOVERY_TIMEOUT:?}\nA: {a:?}\nB: {b:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
