//! HTTP signaling clients: WHIP/WHEP for Relaycast, the HTTP JSON API for Janus.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Error;

/// Result of a WHIP/WHEP POST.
#[derive(Clone, Debug)]
pub struct Created {
    /// Absolute URL of the session resource.
    pub location: String,
    /// SDP answer.
    pub answer: String,
}

/// Posts an SDP offer to a WHIP or WHEP endpoint; expects 201 with a Location.
pub async fn post_offer(client: &reqwest::Client, endpoint: &str, token: Option<&str>, offer: String) -> Result<Created, Error> {
    let mut req = client.post(endpoint).header("content-type", "application/sdp").body(offer);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    let body = resp.text().await?;
    if status.as_u16() != 201 {
        return Err(Error::Signaling(format!("{endpoint}: {status}: {body}")));
    }
    let location = location.ok_or_else(|| Error::Signaling(format!("{endpoint}: 201 without Location")))?;
    Ok(Created { location: absolute(endpoint, &location), answer: body })
}

/// Deletes a WHIP/WHEP session (best effort).
pub async fn delete(client: &reqwest::Client, location: &str) {
    let _ = client.delete(location).timeout(Duration::from_secs(5)).send().await;
}

/// Resolves a possibly relative Location against the endpoint URL.
pub fn absolute(endpoint: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    // scheme://host[:port] of the endpoint.
    let after_scheme = endpoint.find("://").map(|i| i + 3).unwrap_or(0);
    let origin_end = endpoint[after_scheme..].find('/').map(|i| i + after_scheme).unwrap_or(endpoint.len());
    format!("{}{}", &endpoint[..origin_end], location)
}

/// A Janus session with one handle attached to the streaming plugin.
#[derive(Clone, Debug)]
pub struct JanusHandle {
    /// Base URL of the Janus API (e.g. `http://127.0.0.1:8088/janus`).
    pub base: String,
    /// Session id.
    pub session: u64,
    /// Handle id.
    pub handle: u64,
}

fn transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn janus_post(client: &reqwest::Client, url: &str, mut body: Value) -> Result<Value, Error> {
    body["transaction"] = json!(transaction());
    let v: Value = client.post(url).json(&body).send().await?.json().await?;
    if v["janus"] == "error" {
        return Err(Error::Signaling(format!("janus {url}: {v}")));
    }
    Ok(v)
}

impl JanusHandle {
    /// Creates a session and attaches `janus.plugin.streaming`.
    pub async fn attach(client: &reqwest::Client, base: &str) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_string();
        let v = janus_post(client, &base, json!({"janus": "create"})).await?;
        let session = v["data"]["id"].as_u64().ok_or_else(|| Error::Signaling(format!("janus create: {v}")))?;
        let v = janus_post(client, &format!("{base}/{session}"), json!({"janus": "attach", "plugin": "janus.plugin.streaming"})).await?;
        let handle = v["data"]["id"].as_u64().ok_or_else(|| Error::Signaling(format!("janus attach: {v}")))?;
        Ok(JanusHandle { base, session, handle })
    }

    /// Sends `{request: "watch", id}` and long-polls until the plugin's SDP offer arrives.
    pub async fn watch(&self, client: &reqwest::Client, mountpoint: u64, wait: Duration) -> Result<String, Error> {
        let url = format!("{}/{}/{}", self.base, self.session, self.handle);
        janus_post(client, &url, json!({"janus": "message", "body": {"request": "watch", "id": mountpoint}})).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout("janus offer"));
            }
            let poll = format!("{}/{}?maxev=1&rid={}", self.base, self.session, transaction());
            let v: Value = tokio::time::timeout(left, async { client.get(&poll).send().await?.json::<Value>().await })
                .await
                .map_err(|_| Error::Timeout("janus offer"))??;
            for ev in v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]) {
                if ev["janus"] == "event" && ev["jsep"]["type"] == "offer"
                    && let Some(sdp) = ev["jsep"]["sdp"].as_str() {
                        return Ok(sdp.to_string());
                    }
                if ev["plugindata"]["data"]["error"].is_string() {
                    return Err(Error::Signaling(format!("janus watch: {ev}")));
                }
            }
        }
    }

    /// Sends `{request: "start"}` with the SDP answer.
    pub async fn start(&self, client: &reqwest::Client, answer: String) -> Result<(), Error> {
        let url = format!("{}/{}/{}", self.base, self.session, self.handle);
        janus_post(
            client,
            &url,
            json!({"janus": "message", "body": {"request": "start"}, "jsep": {"type": "answer", "sdp": answer}}),
        )
        .await?;
        Ok(())
    }

    /// Destroys the session (best effort).
    pub async fn destroy(&self, client: &reqwest::Client) {
        let url = format!("{}/{}", self.base, self.session);
        let _ = tokio::time::timeout(Duration::from_secs(5), janus_post(client, &url, json!({"janus": "destroy"}))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_location() {
        assert_eq!(absolute("http://127.0.0.1:9/whep/s", "/whep/s/abc"), "http://127.0.0.1:9/whep/s/abc");
        assert_eq!(absolute("http://h/whep/s", "http://x/y"), "http://x/y");
    }
}
