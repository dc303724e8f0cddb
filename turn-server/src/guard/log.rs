//! Rate-limited logging of refusals.

use super::*;

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; the rest are counted and reported once.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    state: Mutex<(Instant, u32, u64)>,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter { state: Mutex::new((Instant::now(), 0, 0)) }
    }
}

impl LogLimiter {
    /// Whether a line may be written at `now`.
    pub fn allow(&self, now: Instant) -> bool {
        let mut st = lock(&self.state);
        if now.saturating_duration_since(st.0) >= LOG_WINDOW {
            if st.2 > 0 {
                tracing::info!(suppressed = st.2, "TURN: refusal log lines left out in the last window");
            }
            *st = (now, 0, 0);
        }
        if st.1 < LOG_BURST {
            st.1 += 1;
            true
        } else {
            st.2 += 1;
            false
        }
    }
}
