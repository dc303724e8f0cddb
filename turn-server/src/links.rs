//! `Link` header values advertising a TURN server with fresh credentials (WHIP/WHEP answers).

use std::net::IpAddr;
use std::time::Duration;

use crate::creds::mint;

/// What a node advertises about its TURN server.
#[derive(Debug, Clone)]
pub struct TurnLinks {
    /// Host clients reach the server at.
    pub host: IpAddr,
    /// Port (UDP and TCP).
    pub port: u16,
    /// Whether the TCP listener speaks TLS (`turns:`).
    pub tls: bool,
    /// Whether the TCP listener is on.
    pub tcp: bool,
    /// Shared secret.
    pub secret: String,
    /// How long minted credentials stay valid.
    pub ttl: Duration,
}

impl TurnLinks {
    /// `Link` values for one session, UDP first then TCP, with credentials under `label`.
    pub fn link_headers(&self, label: &str) -> Vec<String> {
        let c = mint(&self.secret, label, self.ttl);
        let host = match self.host {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        let link = |scheme: &str, transport: &str| {
            format!(
                "<{scheme}:{host}:{}?transport={transport}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                self.port, c.username, c.password
            )
        };
        let mut out = vec![link("turn", "udp")];
        if self.tcp {
            out.push(link(if self.tls { "turns" } else { "turn" }, "tcp"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::creds::{check_username, password_for, unix_now};

    #[test]
    fn links_carry_valid_credentials() {
        let l = TurnLinks {
            host: "127.0.0.1".parse().unwrap(),
            port: 3478,
            tls: false,
            tcp: true,
            secret: "s".into(),
            ttl: Duration::from_secs(60),
        };
        let v = l.link_headers("abc");
        assert_eq!(v.len(), 2);
        assert!(v[0].starts_with("<turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; username=\""));
        assert!(v[1].starts_with("<turn:127.0.0.1:3478?transport=tcp>;"));
        let user = v[0].split("username=\"").nth(1).unwrap().split('"').next().unwrap();
        let pass = v[0].split("credential=\"").nth(1).unwrap().split('"').next().unwrap();
        assert!(user.ends_with(":abc"));
        assert!(check_username(user, unix_now()).unwrap() >= unix_now() + 59);
        assert_eq!(pass, password_for("s", user));
        let v6 = TurnLinks { host: "::1".parse().unwrap(), tls: true, ..l }.link_headers("x");
        assert!(v6[0].starts_with("<turn:[::1]:3478?transport=udp>"));
        assert!(v6[1].starts_with("<turns:[::1]:3478?transport=tcp>"));
    }
}
