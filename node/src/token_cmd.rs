//! `relaycast token …`: prints an access token signed with the node's API secret.

use anyhow::Context;
use clap::Args as ClapArgs;
use relaycast_signaling::token::{Claims, Grants, Verifier, unix_now};

/// Longest `--ttl` accepted (one year).
const MAX_TTL_SECS: i64 = 366 * 24 * 3600;

/// Flags of `relaycast token`.
#[derive(Debug, ClapArgs)]
pub struct TokenArgs {
    /// Stream pattern the token may publish (a name, or a prefix ending in `*`); repeatable.
    #[arg(long = "publish", value_name = "PATTERN")]
    pub publish: Vec<String>,
    /// Stream pattern the token may watch (a name, or a prefix ending in `*`); repeatable.
    #[arg(long = "watch", value_name = "PATTERN")]
    pub watch: Vec<String>,
    /// The token may use the admin API.
    #[arg(long)]
    pub admin: bool,
    /// Lifetime: seconds, or a number with s, m, h or d (e.g. 90s, 30m, 2h, 7d).
    #[arg(long, default_value = "2h", value_parser = parse_ttl)]
    pub ttl: i64,
    /// Subject (who the token is for; shown in the node's logs).
    #[arg(long)]
    pub sub: Option<String>,
}

/// Parses a lifetime such as `90`, `90s`, `30m`, `2h`, `7d` into seconds.
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: i64 = num.parse().map_err(|_| format!("invalid lifetime {s:?}: expected e.g. 90s, 30m, 2h, 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("invalid lifetime unit {unit:?}: use s, m, h or d")),
    };
    match n.checked_mul(mult) {
        Some(v) if v > 0 && v <= MAX_TTL_SECS => Ok(v),
        _ => Err(format!("lifetime must be between 1 s and {} days", MAX_TTL_SECS / 86400)),
    }
}

impl TokenArgs {
    /// The claims of the token, issued at `now`.
    pub fn claims(&self, now: i64) -> Claims {
        Claims {
            exp: now.saturating_add(self.ttl),
            nbf: None,
            iat: Some(now),
            sub: self.sub.clone(),
            grants: Grants { publish: self.publish.clone(), watch: self.watch.clone(), admin: self.admin },
        }
    }

    /// Prints the token signed with `--api-secret` or the data dir's `api-secret`.
    pub fn run(self, args: &crate::config::Args) -> anyhow::Result<()> {
        if self.publish.is_empty() && self.watch.is_empty() && !self.admin {
            anyhow::bail!("give at least one grant: --publish PATTERN, --watch PATTERN or --admin");
        }
        for p in self.publish.iter().chain(&self.watch) {
            let name = p.strip_suffix('*').unwrap_or(p);
            if !(name.is_empty() || relaycast_signaling::sessions::valid_stream_name(name)) || name.contains('*') {
                anyhow::bail!("invalid stream pattern {p:?}: a stream name, or a prefix ending in *");
            }
        }
        let secret = args
            .api_secret()
            .with_context(|| format!("loading the API secret in {}", args.data_dir.display()))?;
        println!("{}", Verifier::new(&secret).mint(&self.claims(unix_now())));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("90s"), Ok(90));
        assert_eq!(parse_ttl("30m"), Ok(1800));
        assert_eq!(parse_ttl("2h"), Ok(7200));
        assert_eq!(parse_ttl("7d"), Ok(7 * 86400));
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("2w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("-5m").is_err());
        assert!(parse_ttl("999999999999999999d").is_err());
        assert!(parse_ttl("400d").is_err());
    }

    #[test]
    fn minted_token_verifies() {
        let t = TokenArgs { publish: vec!["room-*".into()], watch: vec![], admin: true, ttl: 60, sub: Some("ops".into()) };
        let v = Verifier::new("secret-for-the-token-command-test");
        let c = v.verify(&v.mint(&t.claims(1_000)), 1_010).unwrap();
        assert_eq!(c.exp, 1_060);
        assert!(c.grants.may_publish("room-9") && c.grants.admin && !c.grants.may_watch("room-9"));
        assert_eq!(c.sub.as_deref(), Some("ops"));
    }
}
