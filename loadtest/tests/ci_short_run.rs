//! Short load test in CI: a spawned `relaycast` node, the synthetic simulcast publisher and 10
//! WHEP viewers for 5 s. Asserts delivery to every viewer, loss under 1 % and the report's
//! fields; it makes no speed assertion.

mod common;

use std::time::Duration;

use common::{get_text, start_node};

use relaycast_loadtest::{RunConfig, run};

#[test]
fn ten_viewers_five_seconds() {
    let dir = std::env::temp_dir().join(format!("relaycast-loadtest-ci-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (node, url) = start_node(&dir.join("data"), &[]);
    let mut cfg = RunConfig::relaycast(&url, "ci-token", "ci", 10, Duration::from_secs(5));
    cfg.server_pid = Some(node.0.id());
    cfg.join_timeout = Duration::from_secs(30);
    cfg.warmup = Duration::from_secs(1);
    let report = run(cfg).expect("load test run");
    drop(node);

    let json = serde_json::to_value(&report).expect("report serialises");
    for field in [
        "egress", "loss", "latency_ms", "join_ms", "layers", "server_cpu", "efficiency", "loadgen_cpu", "publisher",
        "latency_cdf", "frame_latency_ms", "frame_latency_cdf",
    ] {
        assert!(json.get(field).is_some_and(|v| !v.is_null()), "report field {field}: {json:#}");
    }
    assert!(json["egress"]["gbps"].as_f64().is_some_and(|g| g > 0.0));
    // The viewers' own count agrees with the node's /metrics counter.
    let viewers_gbps = json["egress"]["gbps"].as_f64().unwrap_or(0.0);
    let server_gbps = json["egress"]["server_reported_gbps"].as_f64().expect("node egress from /metrics");
    let ratio = viewers_gbps / server_gbps;
    assert!((0.75..=1.33).contains(&ratio), "viewers {viewers_gbps} Gbit/s vs node {server_gbps} Gbit/s");
    assert!(json["efficiency"]["gbps_per_core"].as_f64().is_some());

    assert_eq!(report.viewers_connected, 10, "{json:#}");
    assert_eq!(report.viewers_with_frames, 10, "every viewer received frames: {json:#}");
    assert!(report.loss.expected > 0, "{json:#}");
    assert!(report.loss.ratio < 0.01, "loss {:.4} over 1 %: {json:#}", report.loss.ratio);
    assert!(report.latency_ms.samples > 0 && report.join_ms.samples == 10, "{json:#}");
    assert!(report.frame_latency_ms.samples > 0, "frames completed in the window: {json:#}");
    assert!(report.publisher.frames > 0 && report.publisher.packets > 0, "{json:#}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Viewers of the top layer get each frame's packets back to back, so the node hands them to the
/// kernel as UDP GSO runs: far fewer `sendmmsg` messages than datagrams (one per datagram when
/// each loop turn sent one packet per viewer).
#[test]
fn viewer_frames_leave_in_gso_runs() {
    let dir = std::env::temp_dir().join(format!("relaycast-loadtest-gso-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (node, url) = start_node(&dir.join("data"), &["--no-archive"]);
    let mut cfg = RunConfig::relaycast(&url, "ci-token", "gso", 5, Duration::from_secs(3));
    cfg.rid = Some("f".into());
    cfg.join_timeout = Duration::from_secs(30);
    cfg.warmup = Duration::from_secs(1);
    let report = run(cfg).expect("load test run");
    assert_eq!(report.viewers_with_frames, 5, "{report:#?}");
    let metrics = get_text(&format!("{url}/metrics")).expect("node /metrics");
    drop(node);
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let datagrams = counter("relaycast_egress_packets_total");
    let messages = counter("relaycast_egress_send_messages_total");
    assert!(datagrams > 1000.0, "{datagrams} datagrams");
    eprintln!("{messages} sendmmsg messages for {datagrams} datagrams");
    assert!(messages < 0.75 * datagrams, "{messages} messages for {datagrams} datagrams");
    let _ = std::fs::remove_dir_all(&dir);
}
