//! Signed access tokens: JWT (RFC 7519) with HS256 (RFC 7518 §3.2) keyed by the API secret.
//!
//! Sans-IO: [`Verifier::verify`] takes the token text and the current Unix time and returns the
//! claims or the reason for refusing them. Only `HS256` is accepted; `alg: none` and every other
//! algorithm are refused before the signature is looked at, and the signature is compared in
//! constant time (`ring::hmac::verify`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// Longest token accepted, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("token longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three base64url parts of JSON, or claims of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none`.
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    /// The header names an algorithm other than HS256.
    #[error("token algorithm {0:?} is refused; only HS256 is accepted")]
    Algorithm(String),
    /// The header lists critical extensions (`crit`), which are not supported.
    #[error("token header has unsupported critical extensions")]
    Critical,
    /// The signature does not match (another secret, or altered contents).
    #[error("token signature is invalid")]
    BadSignature,
    /// No `exp` claim.
    #[error("token has no exp claim")]
    NoExpiry,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet (nbf)")]
    NotYetValid,
}

impl TokenError {
    /// A short fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::TooLong => "too_long",
            TokenError::Malformed(_) => "malformed",
            TokenError::Unsigned => "alg_none",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::Critical => "critical",
            TokenError::BadSignature => "bad_signature",
            TokenError::NoExpiry => "no_exp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
        }
    }
}

/// What a token allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Stream patterns the holder may publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Stream patterns the holder may watch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<String>,
    /// True when the holder may use the admin API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

impl Grants {
    /// True when a `publish` pattern matches `stream`.
    pub fn may_publish(&self, stream: &str) -> bool {
        self.publish.iter().any(|p| pattern_matches(p, stream))
    }

    /// True when a `watch` pattern matches `stream`.
    pub fn may_watch(&self, stream: &str) -> bool {
        self.watch.iter().any(|p| pattern_matches(p, stream))
    }
}

/// A stream pattern: the exact stream name, or a prefix followed by `*` (`*` alone: every stream).
pub fn pattern_matches(pattern: &str, stream: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => stream.starts_with(prefix),
        None => pattern == stream,
    }
}

/// The claims of a verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Not before, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Subject (who the token was issued to; shown in logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// What the token allows.
    #[serde(default)]
    pub grants: Grants,
}

/// The JOSE header fields looked at.
#[derive(Deserialize)]
struct Header {
    alg: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

/// The claims as they arrive: NumericDate may be an integer or a fraction (RFC 7519 §2).
#[derive(Deserialize)]
struct RawClaims {
    exp: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    sub: Option<String>,
    #[serde(default)]
    grants: Grants,
}

fn numeric_date(n: &serde_json::Number) -> Result<i64, TokenError> {
    if let Some(v) = n.as_i64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => Err(TokenError::Malformed("a date claim is not a usable number")),
    }
}

/// Verifies and mints HS256 tokens with one secret.
pub struct Verifier {
    key: hmac::Key,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(HS256)")
    }
}

impl Verifier {
    /// A verifier keyed by the secret's UTF-8 bytes (what `jwt.encode(claims, secret, "HS256")` uses).
    pub fn new(secret: &str) -> Self {
        Verifier { key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()) }
    }

    /// Checks a token at Unix time `now` and returns its claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed("a JWT has three dot-separated parts"));
        };
        let header = URL_SAFE_NO_PAD.decode(h64).map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        match header.alg {
            Some(serde_json::Value::String(a)) if a == "HS256" => {}
            Some(serde_json::Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(TokenError::Unsigned),
            Some(serde_json::Value::String(a)) => {
                let shown: String = a.chars().take(16).collect();
                return Err(TokenError::Algorithm(shown));
            }
            _ => return Err(TokenError::Malformed("header has no alg")),
        }
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| TokenError::Malformed("signature is not base64url"))?;
        // `h64.c64` is a prefix of the token; the lengths come from the split above.
        let signed = &token[..h64.len() + 1 + c64.len()];
        hmac::verify(&self.key, signed.as_bytes(), &sig).map_err(|_| TokenError::BadSignature)?;
        let claims = URL_SAFE_NO_PAD.decode(c64).map_err(|_| TokenError::Malformed("claims are not base64url"))?;
        let raw: RawClaims = serde_json::from_slice(&claims)
            .map_err(|_| TokenError::Malformed("claims are not a JSON object of the expected types"))?;
        let exp = numeric_date(raw.exp.as_ref().ok_or(TokenError::NoExpiry)?)?;
        let nbf = raw.nbf.as_ref().map(numeric_date).transpose()?;
        let iat = raw.iat.as_ref().map(numeric_date).transpose()?;
        if now >= exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = nbf
            && now.saturating_add(LEEWAY_SECS) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(Claims { exp, nbf, iat, sub: raw.sub, grants: raw.grants })
    }

    /// Signs `claims` as an HS256 JWT.
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        // Serializing plain strings, integers and lists cannot fail.
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signed = format!("{header}.{body}");
        let sig = hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn claims() -> Claims {
        Claims {
            exp: NOW + 3600,
            sub: Some("alice".into()),
            grants: Grants { publish: vec!["room-*".into()], watch: vec!["*".into()], admin: false },
            ..Claims::default()
        }
    }

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    /// A token with this header and body JSON, signed with SECRET.
    fn signed(header: &str, body: &str) -> String {
        let signed = format!("{}.{}", b64(header), b64(body));
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        let sig = hmac::sign(&key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn round_trip() {
        let v = Verifier::new(SECRET);
        let t = v.mint(&claims());
        assert_eq!(v.verify(&t, NOW).unwrap(), claims());
    }

    /// A token made by PyJWT 2.10: `jwt.encode({"exp": 1800003600, "sub": "bob",
    /// "grants": {"publish": ["a"]}}, SECRET, algorithm="HS256")`.
    #[test]
    fn pyjwt_layout_verifies() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDM2MDAsInN1YiI6ImJvYiIsImdyYW50cyI6eyJwdWJsaXNoIjpbImEiXX19.7jJnHS210eYRXrQHL1u4HUbSci5IxTUcf0jlqZIJq7A";
        assert_eq!(t, signed(r#"{"alg":"HS256","typ":"JWT"}"#, r#"{"exp":1800003600,"sub":"bob","grants":{"publish":["a"]}}"#));
        let c = Verifier::new(SECRET).verify(t, NOW).unwrap();
        assert_eq!(c.sub.as_deref(), Some("bob"));
        assert!(c.grants.may_publish("a"));
        assert!(!c.grants.may_watch("a"));
        assert!(!c.grants.admin);
        // Fractional NumericDate.
        let t = signed(r#"{"alg":"HS256"}"#, r#"{"exp":1800003600.5}"#);
        assert_eq!(Verifier::new(SECRET).verify(&t, NOW).unwrap().exp, 1_800_003_600);
    }

    #[test]
    fn refusals() {
        let v = Verifier::new(SECRET);
        let good = v.mint(&claims());
        // Expired (beyond the leeway) and within the leeway.
        let mut c = claims();
        c.exp = NOW - LEEWAY_SECS;
        assert_eq!(v.verify(&v.mint(&c), NOW), Err(TokenError::Expired));
        c.exp = NOW - LEEWAY_SECS + 1;
        assert!(v.verify(&v.mint(&c), NOW).is_ok());
        // Not yet valid (beyond the leeway) and within it.
        let mut c = claims();
        c.nbf = Some(NOW + LEEWAY_SECS + 1);
        assert_eq!(v.verify(&v.mint(&c), NOW), Err(TokenError::NotYetValid));
        c.nbf = Some(NOW + LEEWAY_SECS);
        assert!(v.verify(&v.mint(&c), NOW).is_ok());
        // Forged: another secret.
        let other = Verifier::new("another secret of thirty-two bytes!");
        assert_eq!(v.verify(&other.mint(&claims()), NOW), Err(TokenError::BadSignature));
        // Altered claims with the old signature.
        let parts: Vec<&str> = good.split('.').collect();
        let mut admin = claims();
        admin.grants.admin = true;
        let forged_body = v.mint(&admin).split('.').nth(1).unwrap().to_string();
        let altered = format!("{}.{}.{}", parts[0], forged_body, parts[2]);
        assert_eq!(v.verify(&altered, NOW), Err(TokenError::BadSignature));
        // alg none, with and without a signature part.
        let body = b64(r#"{"exp":1800003600,"grants":{"admin":true}}"#);
        let none = format!("{}.{body}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(v.verify(&none, NOW), Err(TokenError::Unsigned));
        let none = format!("{}.{body}.", b64(r#"{"alg":"None"}"#));
        assert_eq!(v.verify(&none, NOW), Err(TokenError::Unsigned));
        // Other algorithms, even when "signed" with the secret the HS256 way.
        for alg in ["HS384", "HS512", "RS256", "ES256", "hs256"] {
            let t = signed(&format!(r#"{{"alg":"{alg}"}}"#), r#"{"exp":1800003600}"#);
            assert_eq!(v.verify(&t, NOW), Err(TokenError::Algorithm(alg.into())), "{alg}");
        }
        // Critical header extensions.
        let t = signed(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#, r#"{"exp":1800003600}"#);
        assert_eq!(v.verify(&t, NOW), Err(TokenError::Critical));
        // No exp.
        let t = signed(r#"{"alg":"HS256"}"#, r#"{"sub":"x"}"#);
        assert_eq!(v.verify(&t, NOW), Err(TokenError::NoExpiry));
        // Too long.
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(v.verify(&long, NOW), Err(TokenError::TooLong));
    }

    #[test]
    fn malformed() {
        let v = Verifier::new(SECRET);
        let m = |t: &str| matches!(v.verify(t, NOW), Err(TokenError::Malformed(_)));
        assert!(m(""));
        assert!(m("abc"));
        assert!(m("a.b"));
        assert!(m("a.b.c.d"));
        assert!(m("!!!.e30.AAAA"));
        assert!(m(&format!("{}.e30.AAAA", b64("not json"))));
        assert!(m(&format!("{}.e30.AAAA", b64(r#"{"typ":"JWT"}"#))));
        assert!(m(&format!("{}.e30.AAAA", b64(r#"{"alg":5}"#))));
        assert!(m(&format!("{}.e30.!!", b64(r#"{"alg":"HS256"}"#))));
        // Correctly signed, but claims of the wrong type.
        assert!(m(&signed(r#"{"alg":"HS256"}"#, r#"{"exp":"tomorrow"}"#)));
        assert!(m(&signed(r#"{"alg":"HS256"}"#, r#"{"exp":1800003600,"grants":{"publish":"a"}}"#)));
        assert!(m(&signed(r#"{"alg":"HS256"}"#, r#"{"exp":1800003600,"sub":7}"#)));
        assert!(m(&signed(r#"{"alg":"HS256"}"#, r#"[1,2]"#)));
        assert!(m(&signed(r#"{"alg":"HS256"}"#, r#"{"exp":1e300}"#)));
        // Signed claims that are not base64url.
        let signed_junk = {
            let s = format!("{}.{}", b64(r#"{"alg":"HS256"}"#), "%%%");
            let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
            format!("{s}.{}", URL_SAFE_NO_PAD.encode(hmac::sign(&key, s.as_bytes()).as_ref()))
        };
        assert!(m(&signed_junk));
        // Non-ASCII never panics on slicing.
        assert!(v.verify("é.é.é", NOW).is_err());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("room", "room"));
        assert!(!pattern_matches("room", "room2"));
        assert!(!pattern_matches("room", "roo"));
        assert!(pattern_matches("room-*", "room-1"));
        assert!(pattern_matches("room-*", "room-"));
        assert!(!pattern_matches("room-*", "room"));
        assert!(!pattern_matches("room-*", "other-1"));
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("", "room"));
        assert!(!pattern_matches("r*m", "room"));
        let g = Grants { publish: vec!["a".into(), "b-*".into()], watch: vec![], admin: false };
        assert!(g.may_publish("a") && g.may_publish("b-2"));
        assert!(!g.may_publish("c"));
        assert!(!g.may_watch("a"));
    }
}
