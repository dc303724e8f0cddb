//! Access checks over HTTP: the master publish token and signed access tokens (see [`crate::token`])
//! from `Authorization: Bearer …` or, for players that cannot set headers, `?token=…`.
//!
//! Tokens are never logged: refusals log a fixed reason and the token's `sub` at most.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use tracing::info;

use crate::error::ApiError;
use crate::token::{Claims, TokenError, Verifier, unix_now};

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Publish this stream (WHIP).
    Publish(&'a str),
    /// Watch this stream (WHEP, events, replay, archive).
    Watch(&'a str),
    /// Use the admin API.
    Admin,
}

/// Who a request was allowed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No check applied (watching without `--watch-auth`).
    Open,
    /// The master publish token (`--publish-token`).
    Master,
    /// A signed token with these claims.
    Token(Claims),
}

/// Reasons requests were refused, counted for `/metrics`.
const REFUSALS: [&str; 13] = [
    "missing",
    "not_bearer",
    "too_long",
    "malformed",
    "alg_none",
    "algorithm",
    "critical",
    "bad_signature",
    "no_exp",
    "expired",
    "not_yet_valid",
    "no_grant",
    "other",
];

/// Checks requests against the master token and signed tokens; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    master: String,
    watch_auth: bool,
    refused: [AtomicU64; REFUSALS.len()],
    /// When a refusal was last logged, and how many went unlogged since.
    last_log: Mutex<(Option<Instant>, u64)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("watch_auth", &self.inner.watch_auth).finish_non_exhaustive()
    }
}

/// At most one refusal log line per this interval (refusals come from unauthenticated clients).
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Auth {
    /// Checks publishes against `master` and tokens signed with `api_secret`; watching needs a
    /// token only when `watch_auth` is set.
    pub fn new(master: &str, api_secret: &str, watch_auth: bool) -> Self {
        Auth {
            inner: Arc::new(Inner {
                verifier: Verifier::new(api_secret),
                master: master.to_owned(),
                watch_auth,
                refused: Default::default(),
                last_log: Mutex::new((None, 0)),
            }),
        }
    }

    /// True when watching needs a `watch` grant.
    pub fn watch_auth(&self) -> bool {
        self.inner.watch_auth
    }

    /// The verifier (to mint tokens with the same secret).
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// Checks a request for `need`: the token comes from the `Authorization: Bearer` header or,
    /// when `uri` is given, from its `?token=` query parameter. 401 for a missing or bad token,
    /// 403 for a valid token without the grant.
    pub fn check(&self, headers: &HeaderMap, uri: Option<&Uri>, need: Need<'_>) -> Result<Access, ApiError> {
        if matches!(need, Need::Watch(_)) && !self.inner.watch_auth {
            return Ok(Access::Open);
        }
        let token = match bearer(headers) {
            Ok(Some(t)) => Some(t.to_owned()),
            Ok(None) => uri.and_then(query_token),
            Err(e) => return Err(self.refuse("not_bearer", None, e)),
        };
        let Some(token) = token else {
            let e = ApiError::new(StatusCode::UNAUTHORIZED, "missing access token (Authorization: Bearer TOKEN or ?token=TOKEN)");
            return Err(self.refuse("missing", None, e));
        };
        if !self.inner.master.is_empty() && constant_time_eq(token.as_bytes(), self.inner.master.as_bytes()) {
            return Ok(Access::Master);
        }
        let claims = match self.inner.verifier.verify(&token, unix_now()) {
            Ok(c) => c,
            Err(e) => {
                let label = e.label();
                return Err(self.refuse(label, None, token_error(&e)));
            }
        };
        let granted = match need {
            Need::Publish(s) => claims.grants.may_publish(s),
            Need::Watch(s) => claims.grants.may_watch(s),
            Need::Admin => claims.grants.admin,
        };
        if !granted {
            let reason = match need {
                Need::Publish(s) => format!("token has no publish grant for stream {s:?}"),
                Need::Watch(s) => format!("token has no watch grant for stream {s:?}"),
                Need::Admin => "token has no admin grant".to_owned(),
            };
            let e = ApiError::new(StatusCode::FORBIDDEN, reason);
            return Err(self.refuse("no_grant", claims.sub.as_deref(), e));
        }
        Ok(Access::Token(claims))
    }

    /// Counts a refusal, logs it (rate-limited), and returns the error.
    fn refuse(&self, label: &'static str, sub: Option<&str>, e: ApiError) -> ApiError {
        let i = REFUSALS.iter().position(|r| *r == label).unwrap_or(REFUSALS.len() - 1);
        self.inner.refused[i].fetch_add(1, Ordering::Relaxed);
        let mut g = self.inner.last_log.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if g.0.is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL) {
            let suppressed = g.1;
            *g = (Some(now), 0);
            drop(g);
            let sub: String = sub.unwrap_or("").chars().take(64).collect();
            info!(status = %e.status, reason = label, sub = %sub, suppressed, "access refused");
        } else {
            g.1 = g.1.saturating_add(1);
        }
        e
    }

    /// Refusal counters in the OpenMetrics text format (without `# EOF`).
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP relaycast_access_refused Requests refused for a missing, invalid or insufficient access token.\n# TYPE relaycast_access_refused counter\n",
        );
        for (name, n) in REFUSALS.iter().zip(&self.inner.refused) {
            let _ = writeln!(out, "relaycast_access_refused_total{{reason=\"{name}\"}} {}", n.load(Ordering::Relaxed));
        }
        out
    }
}

fn token_error(e: &TokenError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, format!("invalid access token: {e}"))
}

/// The token of an `Authorization: Bearer` header; `Ok(None)` without the header.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = value
        .to_str()
        .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "Authorization header is not ASCII"))?;
    let (scheme, token) = v.trim().split_once(' ').unwrap_or((v, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Authorization must be a Bearer token"));
    }
    Ok(Some(token.trim()))
}

/// The `token` query parameter of a URI.
pub fn query_token(uri: &Uri) -> Option<String> {
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri).ok()?;
    q.get("token").filter(|t| !t.is_empty()).cloned()
}

/// The token a request carries (Bearer header first, then `?token=`), to hand on in a redirect.
pub fn request_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    match bearer(headers) {
        Ok(Some(t)) => Some(t.to_owned()),
        _ => query_token(uri),
    }
}

/// Checks `Authorization: Bearer <token>` against the expected token in constant time.
pub fn check_bearer(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let token = bearer(headers)?
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer token"))?;
    if constant_time_eq(token.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid publish token"))
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Grants;
    use axum::http::HeaderValue;

    const SECRET: &str = "auth-test-secret-of-32-bytes-or-more";

    fn with_bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        h
    }

    fn token(grants: Grants, exp_in: i64) -> String {
        let v = Verifier::new(SECRET);
        v.mint(&Claims { exp: unix_now() + exp_in, grants, sub: Some("t".into()), ..Claims::default() })
    }

    #[test]
    fn bearer_token_checks() {
        let mut h = HeaderMap::new();
        assert_eq!(check_bearer(&h, "s3cret").unwrap_err().status, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert_eq!(check_bearer(&h, "s3cret").unwrap_err().status, StatusCode::UNAUTHORIZED);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic s3cret"));
        assert!(check_bearer(&h, "s3cret").is_err());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer s3cret"));
        assert!(check_bearer(&h, "s3cret").is_ok());
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer s3cret"));
        assert!(check_bearer(&h, "s3cret").is_ok());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn grants_and_statuses() {
        let auth = Auth::new("master", SECRET, true);
        let pub_a = token(Grants { publish: vec!["a".into()], ..Grants::default() }, 60);
        assert!(matches!(auth.check(&with_bearer(&pub_a), None, Need::Publish("a")), Ok(Access::Token(_))));
        let e = auth.check(&with_bearer(&pub_a), None, Need::Publish("b")).unwrap_err();
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(auth.check(&with_bearer(&pub_a), None, Need::Watch("a")).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(auth.check(&with_bearer(&pub_a), None, Need::Admin).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(auth.check(&with_bearer("master"), None, Need::Publish("z")).unwrap(), Access::Master);
        let expired = token(Grants { publish: vec!["a".into()], ..Grants::default() }, -3600);
        let e = auth.check(&with_bearer(&expired), None, Need::Publish("a")).unwrap_err();
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
        assert!(e.reason.contains("expired"), "{}", e.reason);
        assert!(!e.reason.contains(&expired));
        assert_eq!(auth.check(&HeaderMap::new(), None, Need::Publish("a")).unwrap_err().status, StatusCode::UNAUTHORIZED);
        // Watch tokens by header or query; the query is not read for publishing.
        let watch = token(Grants { watch: vec!["room-*".into()], ..Grants::default() }, 60);
        let uri: Uri = format!("/whep/room-1?rid=q&token={watch}").parse().unwrap();
        assert!(auth.check(&HeaderMap::new(), Some(&uri), Need::Watch("room-1")).is_ok());
        assert_eq!(auth.check(&HeaderMap::new(), Some(&uri), Need::Watch("x")).unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(auth.check(&HeaderMap::new(), None, Need::Publish("room-1")).is_err());
        // Without --watch-auth, watching is open.
        let open = Auth::new("master", SECRET, false);
        assert_eq!(open.check(&HeaderMap::new(), None, Need::Watch("a")).unwrap(), Access::Open);
        assert!(open.check(&HeaderMap::new(), None, Need::Admin).is_err());
        let m = auth.metrics_text();
        assert!(m.contains("relaycast_access_refused_total{reason=\"expired\"} 1"), "{m}");
        assert!(m.contains("relaycast_access_refused_total{reason=\"no_grant\"} 4"), "{m}");
    }

    #[test]
    fn query_tokens() {
        let uri: Uri = "/replay/a/vod.m3u8?x=1&token=abc.def.ghi".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("abc.def.ghi"));
        let uri: Uri = "/replay/a/vod.m3u8?token=".parse().unwrap();
        assert_eq!(query_token(&uri), None);
        let uri: Uri = "/replay/a/vod.m3u8".parse().unwrap();
        assert_eq!(query_token(&uri), None);
        assert_eq!(request_token(&with_bearer("h"), &uri).as_deref(), Some("h"));
    }
}
