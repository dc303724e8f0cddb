//! Counters of the HTTP listener and of per-address refusals, rendered in the OpenMetrics text
//! format beside the media plane's metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// HTTP listener counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused at the total cap.
    pub refused_total: AtomicU64,
    /// Connections refused at the per-address cap.
    pub refused_per_address: AtomicU64,
    /// Connections closed for not sending a complete request in time.
    pub header_timeouts: AtomicU64,
    /// Connections closed after the idle timeout.
    pub idle_timeouts: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: AtomicU64,
    /// Errors accepting sockets (for example out of file descriptors).
    pub accept_errors: AtomicU64,
    /// Event streams refused at the per-address cap.
    pub sse_refused: AtomicU64,
    /// WHEP offers refused at the per-address cap on sessions not connected yet.
    pub pending_viewers_refused: AtomicU64,
    /// Connections open now (including those draining after close).
    pub open: AtomicI64,
}

/// One open connection; counted in [`HttpMetrics::open`] until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<HttpMetrics>);

impl OpenConnection {
    /// Counts a connection as open.
    pub fn new(m: Arc<HttpMetrics>) -> Self {
        m.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(m)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HttpMetrics {
    /// The metrics as OpenMetrics text families (without the final `# EOF`).
    pub fn render(&self) -> String {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, ty: &str, help: &str, samples: &[(&str, i128)]| {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {ty}");
            for (labels, v) in samples {
                let suffix = if ty == "counter" { "_total" } else { "" };
                let _ = writeln!(out, "{name}{suffix}{labels} {v}");
            }
        };
        family("relaycast_http_connections_accepted", "counter", "HTTP connections accepted", &[("", l(&self.accepted).into())]);
        family(
            "relaycast_http_connections_refused",
            "counter",
            "HTTP connections refused at a connection cap, by cap",
            &[("{reason=\"total\"}", l(&self.refused_total).into()), ("{reason=\"per_address\"}", l(&self.refused_per_address).into())],
        );
        family(
            "relaycast_http_connections_closed",
            "counter",
            "HTTP connections closed by the server for a timeout, by reason",
            &[
                ("{reason=\"header_timeout\"}", l(&self.header_timeouts).into()),
                ("{reason=\"idle_timeout\"}", l(&self.idle_timeouts).into()),
                ("{reason=\"tls_handshake\"}", l(&self.tls_failures).into()),
            ],
        );
        family("relaycast_http_accept_errors", "counter", "Errors accepting HTTP connections", &[("", l(&self.accept_errors).into())]);
        family("relaycast_http_connections_open", "gauge", "HTTP connections open", &[("", self.open.load(Ordering::Relaxed).into())]);
        family(
            "relaycast_http_requests_refused",
            "counter",
            "Requests refused at a per-address cap, by kind",
            &[
                ("{kind=\"event_stream\"}", l(&self.sse_refused).into()),
                ("{kind=\"pending_viewer\"}", l(&self.pending_viewers_refused).into()),
            ],
        );
        out
    }
}

/// Inserts extra families before the `# EOF` line of an OpenMetrics text.
pub fn append_families(mut text: String, extra: &str) -> String {
    match text.rfind("# EOF") {
        Some(i) => text.insert_str(i, extra),
        None => text.push_str(extra),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_before_eof() {
        let m = Arc::new(HttpMetrics::default());
        m.refused_per_address.fetch_add(3, Ordering::Relaxed);
        let open = OpenConnection::new(m.clone());
        let text = append_families("# TYPE x counter\nx_total 1\n# EOF\n".into(), &m.render());
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("relaycast_http_connections_refused_total{reason=\"per_address\"} 3\n"));
        assert!(text.contains("relaycast_http_connections_open 1\n"));
        drop(open);
        assert!(m.render().contains("relaycast_http_connections_open 0\n"));
    }
}
