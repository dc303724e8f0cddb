//! Webhook counters for `/metrics`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Delivery and attempt counters (one delivery is one event to one URL).
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    /// Deliveries the receiver answered with 2xx.
    pub delivered: AtomicU64,
    /// Deliveries dropped after every attempt failed.
    pub gave_up: AtomicU64,
    /// Deliveries dropped because the queue was full.
    pub queue_full: AtomicU64,
    /// Deliveries dropped at shutdown while waiting for a retry.
    pub shutdown: AtomicU64,
    /// Attempts answered 2xx.
    pub attempts_ok: AtomicU64,
    /// Attempts answered with another status.
    pub attempts_status: AtomicU64,
    /// Attempts that timed out.
    pub attempts_timeout: AtomicU64,
    /// Attempts that failed to connect or send.
    pub attempts_error: AtomicU64,
    /// Deliveries not yet resolved.
    pub pending: AtomicU64,
}

impl WebhookMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Encodes [`WebhookMetrics`] on each scrape.
#[derive(Debug, Clone)]
pub struct WebhookCollector(pub Arc<WebhookMetrics>);

impl Collector for WebhookCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        {
            let mut fam = enc.encode_descriptor(
                "relaycast_webhook_deliveries",
                "Webhook deliveries (an event to one URL) resolved, by result",
                None,
                MetricType::Counter,
            )?;
            for (result, v) in [
                ("delivered", l(&m.delivered)),
                ("gave_up", l(&m.gave_up)),
                ("queue_full", l(&m.queue_full)),
                ("shutdown", l(&m.shutdown)),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("result", result)])?)?;
            }
        }
        {
            let mut fam = enc.encode_descriptor(
                "relaycast_webhook_attempts",
                "Webhook HTTP requests made, by result",
                None,
                MetricType::Counter,
            )?;
            for (result, v) in [
                ("ok", l(&m.attempts_ok)),
                ("http_status", l(&m.attempts_status)),
                ("timeout", l(&m.attempts_timeout)),
                ("error", l(&m.attempts_error)),
            ] {
                ConstCounter::new(v).encode(fam.encode_family(&[("result", result)])?)?;
            }
        }
        ConstGauge::new(l(&m.pending) as i64).encode(enc.encode_descriptor(
            "relaycast_webhook_pending",
            "Webhook deliveries queued, in flight or waiting for a retry",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}
