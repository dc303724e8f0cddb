//! mDNS discovery without bootstrap addresses, inside a private network namespace (so no
//! multicast leaves the machine). The test thread moves into a new namespace whose loopback
//! interface gets multicast and a non-127 address (mDNS ignores 127/8 addresses); both nodes
//! run on a single-threaded runtime on that thread.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use relaycast_mesh::MeshEvent;

const IFACE_ADDR: &str = "10.77.0.1";

fn ip(netns: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .arg("ip")
        .args(args)
        .output()
        .map_err(|e| format!("nsenter: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Moves the calling thread into a fresh network namespace whose `lo` carries multicast.
fn enter_private_netns() -> Result<(), String> {
    // SAFETY: unshare only changes the calling thread's namespace membership.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let netns = format!("/proc/{}/task/{tid}/ns/net", std::process::id());
    ip(&netns, &["addr", "add", &format!("{IFACE_ADDR}/32"), "dev", "lo"])?;
    ip(&netns, &["link", "set", "lo", "multicast", "on", "up"])?;
    ip(&netns, &["route", "add", "224.0.0.0/4", "dev", "lo"])?;
    Ok(())
}

#[test]
fn mdns_discovers_peers_without_bootstrap() {
    let outcome = std::thread::spawn(|| -> Result<(), String> {
        if let Err(reason) = enter_private_netns() {
            println!("skipping mDNS test: no private network namespace with multicast ({reason})");
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mk = |tag: &str| {
                let mut c = config(tag);
                c.mdns = true;
                c.listen = vec![format!("/ip4/{IFACE_ADDR}/tcp/0").parse().expect("addr")];
                c
            };
            let (a, mut ea) = start(mk("ma")).await;
            let (b, _eb) = start(mk("mb")).await;
            let bid = b.peer_id();
            let ev = next_event(&mut ea, Duration::from_secs(8), |e| matches!(e, MeshEvent::PeerDiscovered(p) if *p == bid)).await;
            a.shutdown().await;
            b.shutdown().await;
            if ev.is_some() { Ok(()) } else { Err("A did not discover B over mDNS within 8 s".to_string()) }
        })
    })
    .join()
    .expect("test thread");
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
