//! Counts of the archive's work, rendered in `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use relaycast_sfu::metrics::ExtraCounter;

/// What the archive stored, finished and failed to do since the node started.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    /// Media segments stored (blocks and index durable) and announced.
    pub segments: AtomicU64,
    /// Bytes of init and media segment files stored.
    pub bytes: AtomicU64,
    /// Recordings closed into a VOD root.
    pub recordings: AtomicU64,
    /// Files or segments lost, or VOD roots or indexes not written (each logged).
    pub errors: AtomicU64,
    /// Media segments dropped before storage: their recording's storage was too far behind, or
    /// no init segment was stored (each logged; a gap in the recording).
    pub dropped: AtomicU64,
    /// Recordings (own and copies) deleted by retention.
    pub retention_deleted: AtomicU64,
    /// Blocks deleted by retention's collection.
    pub gc_blocks: AtomicU64,
    /// Bytes of those blocks.
    pub gc_bytes: AtomicU64,
    /// CIDs imported into the `--pin-to` kubo node (segments, init segments, VOD roots).
    pub pins: AtomicU64,
    /// Pin attempts the `--pin-to` kubo node refused or could not be reached for (each retried).
    pub pin_failures: AtomicU64,
    /// Segments of other nodes' recordings copied here (every block fetched and verified).
    pub copied_segments: AtomicU64,
    /// Bytes fetched from other nodes for copies.
    pub copy_bytes: AtomicU64,
    /// Segment copies that failed (each is retried, with backoff, a few times).
    pub copy_failures: AtomicU64,
    /// Segments not copied: the copy queue was full, or every try failed.
    pub copy_given_up: AtomicU64,
    /// Low-latency HLS requests refused or not answered in time: blocking reloads too far ahead
    /// (400) or timed out (503), parts not at the live edge (404).
    pub ll_refused: AtomicU64,
}

impl ArchiveStats {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The counters, for `/metrics`.
    pub fn counters(&self) -> Vec<ExtraCounter> {
        let c = |name, help, v: &AtomicU64| ExtraCounter { name, help, value: v.load(Relaxed) };
        vec![
            c("relaycast_archive_segments", "Media segments archived (blocks and index durable) and announced", &self.segments),
            c("relaycast_archive_bytes", "Bytes of init and media segment files archived", &self.bytes),
            c("relaycast_archive_recordings_finished", "Recordings closed into a VOD root", &self.recordings),
            c("relaycast_archive_errors", "Archive files or segments lost, or VOD roots or indexes not written", &self.errors),
            c("relaycast_archive_segments_dropped", "Media segments dropped before storage: the recording's storage was behind, or it had no init segment", &self.dropped),
 c("relaycast_archive_retention_deleted", "Recordings (own and copies) deleted by --archive-retention / --archive-max-bytes", &self.retention_deleted),
            c("relaycast_archive_gc_blocks", "Blocks no kept recording referenced, deleted by retention", &self.gc_blocks),
            c("relaycast_archive_gc_bytes", "Bytes of the blocks deleted by retention", &self.gc_bytes),
            c("relaycast_archive_pins", "CIDs (segments, init segments, VOD roots) imported into the --pin-to kubo node", &self.pins),
            c("relaycast_archive_pin_failures", "Pin attempts the --pin-to kubo node refused or could not be reached for (each retried)", &self.pin_failures),
            c("relaycast_archive_copied_segments", "Segments of other nodes' recordings copied here, every block verified", &self.copied_segments),
            c("relaycast_archive_copy_bytes", "Bytes fetched from other nodes for copies of their recordings", &self.copy_bytes),
            c("relaycast_archive_ll_refused", "Low-latency HLS requests refused: a blocking reload too far ahead (400) or not answered within 6 s (503), a part not at the live edge (404)", &self.ll_refused),
            c("relaycast_archive_copy_failures", "Segment copies that failed (retried with backoff)", &self.copy_failures),
            c("relaycast_archive_copy_given_up", "Segments not copied: the copy queue was full, or every try failed", &self.copy_given_up),
        ]
    }
}
