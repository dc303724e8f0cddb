//! A recording's index (`index.json`) and its VOD directory.

use std::path::Path;

use relaycast_archive::Manifest;
use relaycast_ipfs::unixfs::DirectoryBuilder;
use relaycast_ipfs::{Blockstore, Entry, Profile};
use serde::{Deserialize, Serialize};

use crate::RecorderError;

/// One file of a recording, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFile {
    /// Name inside the VOD directory.
    pub name: String,
    /// Its CID.
    pub cid: String,
    /// File size in bytes.
    pub size: u64,
    /// Size of its whole DAG (a directory link's Tsize).
    pub dag_size: u64,
}

/// Everything known about one recording; persisted as `index.json` after every change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingIndex {
    /// Stream name.
    pub stream: String,
    /// Wall-clock start, milliseconds since the Unix epoch (names the recording).
    pub started_unix_ms: u64,
    /// Segments, playlists' source; `None` until the first init segment is stored.
    pub manifest: Option<Manifest>,
    /// Init and media segment files in order.
    pub files: Vec<StoredFile>,
    /// Root CID of the VOD directory, once the stream ended.
    pub vod: Option<String>,
    /// The simulcast layer recorded (`q`, `h`, `f`).
    #[serde(default)]
    pub layer: Option<String>,
    /// Kept whatever `--archive-retention` and `--archive-max-bytes` say (set through the admin
    /// API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// Per segment, milliseconds from the recorder closing it to its CID being announced
    /// (blocks and index durable); not persisted.
    #[serde(skip)]
    pub announce_ms: Vec<f64>,
}

/// Writes `index.json` into `dir` atomically and durably.
pub fn write_index(dir: &Path, index: &RecordingIndex) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("index.json.tmp");
    let bytes = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("index.json"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Ends a recording: the VOD playlist and manifest are stored, and a UnixFS directory of every
/// file becomes the VOD root.
pub fn finish_index(store: &Blockstore, ix: &mut RecordingIndex) -> Result<(), RecorderError> {
    let Some(manifest) = ix.manifest.as_mut() else { return Ok(()) };
    manifest.end();
    let playlist = relaycast_archive::playlist::vod(manifest);
    let manifest_json = manifest.to_json();
    let mut dir = DirectoryBuilder::new();
    let mut add = |name: &str, e: Entry| dir.add(name, e);
    for f in &ix.files {
        let cid: relaycast_ipfs::Cid = f.cid.parse().map_err(|_| RecorderError::BadCid { cid: f.cid.clone() })?;
        add(&f.name, Entry { cid, file_size: f.size, dag_size: f.dag_size })?;
    }
    add("vod.m3u8", store.import_reader(playlist.as_bytes(), Profile::default())?)?;
    add("manifest.json", store.import_reader(&manifest_json[..], Profile::default())?)?;
    let root = store.put_directory(dir)?;
    ix.vod = Some(root.cid.to_string());
    Ok(())
}
