//! The `Relaycast-Signature` header: `t=UNIX,v1=HEX`, where `v1` is the lowercase hex
//! HMAC-SHA256 of `"{t}.{body}"` keyed by the API secret's UTF-8 bytes.

use ring::hmac;

/// Name of the signature header.
pub const SIGNATURE_HEADER: &str = "Relaycast-Signature";

/// Lowercase hex HMAC-SHA256 of `"{t}.{body}"` under `secret`.
pub fn v1(secret: &[u8], t: u64, body: &[u8]) -> String {
    use std::fmt::Write;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let mut hex = String::with_capacity(64);
    for b in tag.as_ref() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// The header value for `body` sent at Unix time `t`.
pub fn signature_header(secret: &[u8], t: u64, body: &[u8]) -> String {
    format!("t={t},v1={}", v1(secret, t, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_hmac() {
        // From Python: hmac.new(secret, b"1796443800." + body, hashlib.sha256).hexdigest()
        let body = br#"{"id":"0123456789abcdef0123456789abcdef","type":"stream.started","stream":"room","node":"12D3KooWTest","time":"2026-12-05T04:10:00.250Z"}"#;
        let h = signature_header(b"topsecret-0123456789abcdef0123456789", 1_796_443_800, body);
        assert_eq!(h, "t=1796443800,v1=d4512943f73136b9e4910c37f2ebb31c209b584e538329807bb7c2dd831dacee");
    }

    #[test]
    fn depends_on_time_body_and_key() {
        let a = v1(b"k", 1, b"{}");
        assert_ne!(a, v1(b"k", 2, b"{}"));
        assert_ne!(a, v1(b"k", 1, b"{ }"));
        assert_ne!(a, v1(b"j", 1, b"{}"));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
}
