//! The nonce the guard answers unauthenticated requests with (learned from the `turn` server).

use super::*;

/// What the guard does with a request that carries no credentials.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Answer 401 with this nonce (one the server issued and still accepts).
    Reply(String),
    /// Let the server answer, so that the guard learns a fresh nonce from its 401.
    Pass,
    /// Drop it (the client retransmits).
    Drop,
}

/// The nonce the guard hands to unauthenticated clients: one the `turn` server issued (learned
/// from one of its 401 answers) and still accepts. The server keeps every nonce it issues, so
/// it is asked for a new one at most once per [`HARVEST_INTERVAL`], and only once the current
/// one is older than [`NONCE_FRESH`]: strangers never grow its table.
#[derive(Debug, Default)]
pub(crate) struct NoncePool {
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
pub(super) struct PoolState {
    current: Option<(String, Instant)>,
    last_pass: Option<Instant>,
}

impl NoncePool {
    /// What to do with an unauthenticated request at `now`.
    pub fn challenge(&self, now: Instant) -> Challenge {
        let mut st = lock(&self.state);
        let age = |t: Instant| now.saturating_duration_since(t);
        if let Some((n, t)) = &st.current
            && age(*t) < NONCE_FRESH
        {
            return Challenge::Reply(n.clone());
        }
        if st.last_pass.is_none_or(|t| age(t) >= HARVEST_INTERVAL) {
            st.last_pass = Some(now);
            return Challenge::Pass;
        }
        match &st.current {
            Some((n, t)) if age(*t) < NONCE_USABLE => Challenge::Reply(n.clone()),
            _ => Challenge::Drop,
        }
    }

    /// Records a nonce the server just issued.
    pub fn learn(&self, nonce: String, now: Instant) {
        lock(&self.state).current = Some((nonce, now));
    }
}

/// The NONCE of a 401 error response the server sends, if `buf` is one (checked cheaply first:
/// relayed data passes through the same path).
pub(super) fn issued_nonce(buf: &[u8]) -> Option<String> {
    // STUN, error-response class (both class bits of the message type set).
    if buf.len() < 20 || buf[0] >> 6 != 0 || u16::from_be_bytes([buf[0], buf[1]]) & 0x0110 != 0x0110 {
        return None;
    }
    let mut m = Message::new();
    m.raw = buf.to_vec();
    m.decode().ok()?;
    let mut code = ErrorCodeAttribute::default();
    use stun::message::Getter;
    code.get_from(&m).ok()?;
    if code.code.0 != CODE_UNAUTHORIZED && code.code.0 != CODE_STALE_NONCE {
        return None;
    }
    let nonce = m.get(ATTR_NONCE).ok()?;
    (nonce.len() <= 256).then(|| String::from_utf8(nonce).ok()).flatten()
}
