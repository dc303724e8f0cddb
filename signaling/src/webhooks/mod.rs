//! Signed webhooks: `stream.started`, `stream.ended` and `recording.finished` POSTed as JSON to
//! the operator's URLs.
//!
//! The core is sans-IO: [`event`] builds the JSON bodies, [`sign`] the `Relaycast-Signature`
//! header, [`dispatch`] queues deliveries, hands out attempts and schedules retries with
//! exponential backoff for a bounded time. [`sender`] is the thin tokio task that performs the
//! HTTP requests; [`metrics`] counts outcomes for `/metrics`. Producers never wait: events go
//! into a bounded queue and are dropped (logged and counted) when it is full.

pub mod dispatch;
pub mod event;
pub mod metrics;
pub mod sender;
pub mod sign;
pub mod sources;

pub use dispatch::{Attempt, Dispatcher, Outcome, Resolution, RetryPolicy};
pub use event::{Event, EventKind};
pub use metrics::WebhookMetrics;
pub use sender::{WebhookConfig, WebhookError, Webhooks};
pub use sign::{SIGNATURE_HEADER, signature_header};
pub use sources::forward_lifecycle;
