//! Optional pinning to a kubo node (`--pin-to URL`): each segment as it is announced, each init
//! segment, and each recording's VOD root, every one as a CAR posted to kubo's RPC
//! `POST /api/v0/dag/import`.
//!
//! [`PinQueue`] is the sans-IO core (what to pin next, retries with backoff, bounds);
//! [`Pinner`] drives it and keeps the queue on disk (`DATA_DIR/pins/`, one file per CID waiting),
//! so pins interrupted by a crash or a restart resume.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use relaycast_ipfs::{Blockstore, Cid};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::RecorderError;
use crate::stats::ArchiveStats;

/// Pins posted at once.
const PARALLEL_PINS: usize = 2;
/// First retry delay; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// CIDs remembered as pinned in this run (so a repeated init segment is not pinned again).
const MAX_REMEMBERED: usize = 65_536;

/// A CID waiting to be pinned.
#[derive(Debug)]
struct Waiting {
    failures: u32,
    not_before: Instant,
    running: bool,
}

/// What to pin and when (sans-IO): CIDs go in, [`PinQueue::due`] hands out those to post now,
/// [`PinQueue::done`] takes each outcome. A failed pin is tried again after a delay that doubles
/// per failure (1 s up to 5 min), for as long as the node runs.
#[derive(Debug, Default)]
pub struct PinQueue {
    waiting: BTreeMap<String, Waiting>,
    pinned: HashSet<String>,
    pinned_order: VecDeque<String>,
}

impl PinQueue {
    /// Adds `cid` unless it is waiting or was pinned in this run; true when added.
    pub fn add(&mut self, cid: &str, now: Instant) -> bool {
        if self.waiting.contains_key(cid) || self.pinned.contains(cid) {
            return false;
        }
        self.waiting.insert(cid.to_owned(), Waiting { failures: 0, not_before: now, running: false });
        true
    }

    /// CIDs to post now (marked running), at most [`PARALLEL_PINS`] running at once.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut running = self.waiting.values().filter(|w| w.running).count();
        let mut out = Vec::new();
        for (cid, w) in &mut self.waiting {
            if running >= PARALLEL_PINS {
                break;
            }
            if !w.running && w.not_before <= now {
                w.running = true;
                running += 1;
                out.push(cid.clone());
            }
        }
        out
    }

    /// The outcome of posting `cid`: removed when pinned, else tried again later.
    pub fn done(&mut self, cid: &str, pinned: bool, now: Instant) {
        if pinned {
            self.waiting.remove(cid);
            if self.pinned.insert(cid.to_owned()) {
                self.pinned_order.push_back(cid.to_owned());
            }
            while self.pinned_order.len() > MAX_REMEMBERED {
                if let Some(old) = self.pinned_order.pop_front() {
                    self.pinned.remove(&old);
                }
            }
        } else if let Some(w) = self.waiting.get_mut(cid) {
            w.running = false;
            w.failures = w.failures.saturating_add(1);
            let backoff = FIRST_BACKOFF.saturating_mul(1 << (w.failures - 1).min(16)).min(MAX_BACKOFF);
            w.not_before = now + backoff;
        }
    }

    /// When the next waiting CID is due (`None` when none waits, or every post slot is busy).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.waiting.values().filter(|w| w.running).count() >= PARALLEL_PINS {
            return None;
        }
        self.waiting.values().filter(|w| !w.running).map(|w| w.not_before).min()
    }

    /// CIDs waiting (running or not).
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// Pins CIDs to a kubo node, durably queued under `DATA_DIR/pins/`.
pub struct Pinner {
    queue: Mutex<PinQueue>,
    dir: PathBuf,
    url: String,
    store: Arc<Blockstore>,
    stats: Arc<ArchiveStats>,
    wake: Notify,
}

impl Pinner {
    /// Opens the queue in `dir` (resuming what a previous run left) for the kubo RPC at `url`.
    pub fn open(dir: &Path, url: String, store: Arc<Blockstore>, stats: Arc<ArchiveStats>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let mut queue = PinQueue::default();
        let now = Instant::now();
        let mut resumed = 0;
        for e in std::fs::read_dir(dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.parse::<Cid>().is_ok() && queue.add(&name, now) {
                resumed += 1;
            }
        }
        if resumed > 0 {
            info!(resumed, "pins left by the previous run are tried again");
        }
        Ok(Arc::new(Self { queue: Mutex::new(queue), dir: dir.to_owned(), url, store, stats, wake: Notify::new() }))
    }

    fn queue(&self) -> MutexGuard<'_, PinQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `cid` (durably: a file named after it) unless it waits or was pinned already.
    pub fn add(&self, cid: &str) {
        if cid.parse::<Cid>().is_err() || !self.queue().add(cid, Instant::now()) {
            return;
        }
        let path = self.dir.join(cid);
        if let Err(e) = std::fs::File::create(&path).and_then(|f| f.sync_all()) {
            warn!(%cid, error = %e, "cannot record a pin on disk; it is tried in this run only");
        }
        self.wake.notify_one();
    }

    /// CIDs waiting to be pinned.
    pub fn waiting(&self) -> usize {
        self.queue().len()
    }

    /// Posts due pins and retries failed ones; runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            let due = self.queue().due(Instant::now());
            for cid in due {
                let this = self.clone();
                tokio::spawn(async move {
                    let pinned = pin_car(this.store.clone(), this.url.clone(), cid.clone()).await;
                    if pinned {
                        ArchiveStats::count(&this.stats.pins);
                        let _ = std::fs::remove_file(this.dir.join(&cid));
                    } else {
                        ArchiveStats::count(&this.stats.pin_failures);
                        debug!(%cid, "pin failed; tried again later");
                    }
                    this.queue().done(&cid, pinned, Instant::now());
                    this.wake.notify_one();
                });
            }
            let next = self.queue().poll_timeout();
            match next {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at.into(), self.wake.notified()).await;
                }
                None => self.wake.notified().await,
            }
        }
    }
}

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
/// root); true when kubo took it. Failures are logged (at debug: the queue retries); the local
/// archive is unaffected.
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
            debug!(%endpoint, bytes, "pinned");
            true
        }
        Ok(r) => {
            debug!(%endpoint, status = %r.status(), "pinning refused");
            false
        }
        Err(e) => {
            debug!(%endpoint, error = %e, "pinning failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_retry_with_doubling_backoff_and_are_not_repeated() {
        let t = Instant::now();
        let mut q = PinQueue::default();
        for c in ["a", "b", "c"] {
            assert!(q.add(c, t));
        }
        assert!(!q.add("a", t), "already waiting");
        assert_eq!(q.due(t), vec!["a", "b"], "two at once");
        assert_eq!(q.poll_timeout(), None, "both slots busy");
        q.done("a", false, t);
        q.done("b", true, t);
        assert!(!q.add("b", t), "pinned in this run");
        assert_eq!(q.due(t), vec!["c"], "a waits for its retry");
        assert_eq!(q.poll_timeout(), Some(t + Duration::from_secs(1)));
        assert!(q.due(t + Duration::from_millis(999)).is_empty());
        assert_eq!(q.due(t + Duration::from_secs(1)), vec!["a"]);
        q.done("a", false, t + Duration::from_secs(1));
        q.done("c", true, t);
        assert_eq!(q.poll_timeout(), Some(t + Duration::from_secs(3)), "doubled");
        for i in 0..30 {
            q.due(t + Duration::from_secs(10_000 * (i + 1)));
            q.done("a", false, t);
        }
        assert_eq!(q.poll_timeout(), Some(t + MAX_BACKOFF), "capped");
        assert_eq!(q.len(), 1);
    }

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
