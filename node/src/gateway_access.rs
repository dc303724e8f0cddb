//! The gateway's access check under `--watch-auth`: a file of a recording goes to a `watch`
//! token for the recording's stream; anything else the blockstore holds to an admin token.

use std::sync::Arc;

use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use relaycast_archive::owners::Owners;
use relaycast_ipfs::{Cid, GatewayAccess};
use relaycast_signaling::auth::{Auth, Need};

/// Checks gateway reads against the grants of the stream that owns the content.
pub struct WatchGate {
    /// Which stream each recorded file belongs to.
    pub owners: Arc<Owners>,
    /// The node's token checks.
    pub auth: Auth,
}

impl GatewayAccess for WatchGate {
    fn check(&self, cid: &Cid, headers: &HeaderMap, uri: &Uri) -> Result<(), Response> {
        let need_stream = self.owners.stream_of(&cid.to_string());
        let need = match &need_stream {
            Some(stream) => Need::Watch(stream),
            None => Need::Admin,
        };
        self.auth.check(headers, Some(uri), need).map(|_| ()).map_err(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_signaling::token::{Claims, Grants, Verifier};

    fn gate() -> (WatchGate, Verifier, Cid, Cid) {
        let owners = Arc::new(Owners::new());
        let seg = relaycast_ipfs::block::cid_of(relaycast_ipfs::block::RAW, b"segment");
        let other = relaycast_ipfs::block::cid_of(relaycast_ipfs::block::RAW, b"other");
        owners.insert("talk", [seg.to_string().as_str()]);
        let secret = "0123456789abcdef0123456789abcdef";
        (WatchGate { owners, auth: Auth::new("master-token", secret, true) }, Verifier::new(secret), seg, other)
    }

    fn status(r: Result<(), Response>) -> u16 {
        r.err().map_or(200, |e| e.status().as_u16())
    }

    #[test]
    fn recording_files_need_a_watch_grant_for_their_stream_and_other_content_an_admin_token() {
        let (g, v, seg, other) = gate();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let mint = |grants: Grants| v.mint(&Claims { exp: now + 600, nbf: None, iat: None, sub: None, grants });
        let watch_talk = mint(Grants { watch: vec!["talk".into()], ..Grants::default() });
        let watch_other = mint(Grants { watch: vec!["other-*".into()], ..Grants::default() });
        let admin = mint(Grants { admin: true, ..Grants::default() });
        let uri = |q: &str| -> Uri { format!("/ipfs/x{q}").parse().unwrap() };
        let h = HeaderMap::new();
        assert_eq!(status(g.check(&seg, &h, &uri(""))), 401, "no token");
        assert_eq!(status(g.check(&seg, &h, &uri(&format!("?token={watch_other}")))), 403, "another stream's grant");
        assert_eq!(status(g.check(&seg, &h, &uri(&format!("?token={watch_talk}")))), 200);
        let mut bearer = HeaderMap::new();
        bearer.insert("authorization", format!("Bearer {watch_talk}").parse().unwrap());
        assert_eq!(status(g.check(&seg, &bearer, &uri(""))), 200, "Bearer header");
        assert_eq!(status(g.check(&other, &h, &uri(&format!("?token={watch_talk}")))), 403, "not a recording's file");
        assert_eq!(status(g.check(&other, &h, &uri(&format!("?token={admin}")))), 200, "admin reads anything");
        assert_eq!(status(g.check(&other, &h, &uri("?token=master-token"))), 200, "the master token too");
    }
}
