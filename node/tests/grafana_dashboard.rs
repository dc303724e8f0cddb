//! `dist/grafana/relaycast.json` names only metrics the node serves: every metric in the
//! dashboard's PromQL expressions (panels and template variables) must be in the `/metrics` of
//! a relaycast binary started for the test, with the suffixes the exposition gives it
//! (`_total` for counters, `_bucket`/`_sum`/`_count` for histograms).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on any one wait on the node.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The node under test; killed and reaped on drop.
struct Node {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Starts the binary with TURN and the archive on, on ephemeral ports; returns it and its
/// `host:port`.
fn start_node() -> (Node, String) {
    let data_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("grafana-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaycast"))
        .args(["--http", "127.0.0.1:0", "--media-port", "0", "--turn", "127.0.0.1:0", "--no-mdns"])
        .arg("--data-dir")
        .arg(&data_dir)
        .env("RELAYCAST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the relaycast binary");
    let stdout = child.stdout.take().expect("relaycast stdout");
    let node = Node { child, data_dir };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("relaycast did not print its HTTP address in time");
        if let Some(url) = line.strip_prefix("  http: ") {
            let addr = url.trim().trim_start_matches("http://").to_string();
            return (node, addr);
        }
    }
}

/// The body of `GET /metrics` (HTTP/1.1, connection closed by the server).
fn get_metrics(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connecting to the node");
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("reading /metrics");
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "expected a plain body: {head}");
    body.to_string()
}

/// Every series name `/metrics` can hold: sample names, and for each `# TYPE` line the names
/// its samples take (also for families without series yet, e.g. per-stream ones).
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(ty)) = (it.next(), it.next()) else { continue };
            match ty {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for s in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                "summary" => {
                    for s in ["", "_sum", "_count"] {
                        names.insert(format!("{name}{s}"));
                    }
                }
                _ => {
                    names.insert(name.to_string());
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(|c: char| c == '{' || c == ' ').unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// PromQL words that are not metric names when not followed by `(`: operators, modifiers and
/// aggregations (which may be followed by `by (…)` before their parenthesis).
const KEYWORDS: [&str; 24] = [
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan", "sum", "min",
    "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
];

/// Words followed by an optional `(label, …)` list.
const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names in a PromQL expression: identifiers that are not functions (followed by
/// `(`), keywords, label names (in `{…}` or after `by`/`without`/`on`/`ignoring`/`group_*`),
/// durations (`[…]`), strings or Grafana variables (`$…`). Grafana's `label_values(METRIC,
/// LABEL)` names METRIC.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut skip_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_label_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_label_list = false;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j] == ' ' {
                    j += 1;
                }
                let is_call = j < chars.len() && chars[j] == '(';
                if word == "label_values" && is_call {
                    let end = chars[j..].iter().position(|&c| c == ')').map_or(chars.len(), |p| j + p);
                    let inner: String = chars[j + 1..end].iter().collect();
                    if let Some((metric, _label)) = inner.split_once(',') {
                        out.extend(metric_names(metric));
                    }
                    i = end + 1;
                } else if LABEL_LISTS.contains(&word.as_str()) {
                    skip_label_list = is_call;
                } else if !is_call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    out.push(word);
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Every PromQL expression in the dashboard: panel targets (rows included) and the queries of
/// template variables.
fn expressions(dash: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => out.push(s.clone()),
                        ("query", serde_json::Value::String(s)) if s.contains('(') => out.push(s.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dash, &mut out);
    out
}

#[test]
fn the_extractor_finds_metric_names_only() {
    let names = metric_names(
        "sum by (reason) (rate(relaycast_a_total{instance=~\"$instance\",reason=\"x y\"}[$__rate_interval])) * 8 \
         / on (instance) group_left clamp_min(relaycast_b, 1) + label_values(relaycast_c, instance)",
    );
    assert_eq!(names, ["relaycast_a_total", "relaycast_b", "relaycast_c"]);
}

#[test]
fn every_metric_in_the_dashboard_is_served() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana/relaycast.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reading the dashboard")).expect("the dashboard is JSON");
    let exprs = expressions(&dash);
    assert!(exprs.len() >= 40, "only {} expressions found", exprs.len());
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();

    let (node, addr) = start_node();
    let exposed = exposed_names(&get_metrics(&addr));
    drop(node);
    assert!(exposed.contains("relaycast_sessions") && exposed.contains("relaycast_turn_garbage_total"), "{exposed:?}");

    let missing: Vec<&String> = used.difference(&exposed).collect();
    assert!(missing.is_empty(), "the dashboard names metrics /metrics does not serve: {missing:?}");
    // The dashboard covers each area of the node.
    for prefix in [
        "relaycast_sessions", "relaycast_viewers", "relaycast_egress_bytes", "relaycast_stream_viewer_nacks", "relaycast_workers_healthy",
        "relaycast_worker_panics", "relaycast_access_refused", "relaycast_http_connections_refused", "relaycast_turn_", "relaycast_mesh_",
        "relaycast_webhook_", "relaycast_join_seconds_bucket", "relaycast_archive_",
    ] {
        assert!(used.iter().any(|u| u.starts_with(prefix)), "no panel uses {prefix}*");
    }
    eprintln!("{} expressions, {} metrics, all served", exprs.len(), used.len());
}
