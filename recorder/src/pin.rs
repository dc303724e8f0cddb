//! Optional pinning of finished recordings to a kubo node: the VOD DAG as a CAR, posted to its
//! RPC `POST /api/v0/dag/import` (`--pin-to URL`).

use std::sync::Arc;
use std::time::Duration;

use relaycast_ipfs::{Blockstore, Cid};
use tracing::{info, warn};

use crate::RecorderError;

/// Boundary of the multipart body (never occurs in a CAR's framing at a line start by chance
/// that matters: the part length is not parsed from it by kubo's multipart reader).
const BOUNDARY: &str = "relaycast-car-boundary-7f3e9a1c";

/// Builds the `multipart/form-data` body kubo's `dag/import` expects (one `file` part).
pub fn multipart_body(car: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(car.len() + 256);
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"recording.car\"\r\n\
             Content-Type: application/vnd.ipld.car\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(car);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Exports the DAG under `root` as a CAR and imports it into the kubo node at `url` (pinning the
/// root); true when kubo took it. Failures are logged; the local archive is unaffected.
pub async fn pin_car(store: Arc<Blockstore>, url: String, root: String) -> bool {
    let car = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, RecorderError> {
        let cid: Cid = root.parse().map_err(|_| RecorderError::BadCid { cid: root.clone() })?;
        let mut out = Vec::new();
        relaycast_ipfs::car::export(&store, &cid, &mut out)?;
        Ok(out)
    })
    .await;
    let car = match car {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            warn!(error = %e, "cannot export the recording for pinning");
            return false;
        }
        Err(e) => {
            warn!(error = %e, "CAR export task failed");
            return false;
        }
    };
    let endpoint = format!("{}/api/v0/dag/import?pin-roots=true", url.trim_end_matches('/'));
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(120)).build() {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot build the HTTP client for pinning");
            return false;
        }
    };
    let bytes = car.len();
    let resp = client
        .post(&endpoint)
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart_body(&car))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => {
            info!(%endpoint, bytes, "recording pinned");
            true
        }
        Ok(r) => {
            warn!(%endpoint, status = %r.status(), "pinning refused");
            false
        }
        Err(e) => {
            warn!(%endpoint, error = %e, "pinning failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_wraps_the_car_in_one_file_part() {
        let body = multipart_body(b"CARBYTES");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{BOUNDARY}\r\n")));
        assert!(text.contains("name=\"file\""));
        assert!(text.contains("\r\n\r\nCARBYTES\r\n"));
        assert!(text.ends_with(&format!("--{BOUNDARY}--\r\n")));
    }
}
