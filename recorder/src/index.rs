//! A recording's index (`index.json`) and its VOD directory.

use std::path::Path;

use relaycast_archive::Manifest;
use relaycast_archive::playlist::Variant;
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

/// A simulcast layer recorded besides the main one: a variant of the multivariant playlists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendition {
    /// Its layer's rid (`q`, `h`).
    pub rid: String,
    /// Its segments; `None` until its init segment is stored.
    pub manifest: Option<Manifest>,
    /// Its frame size, width and height in pixels, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<[u32; 2]>,
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
    /// The simulcast layer of the main rendition (`q`, `h`, `f`): the highest sending when the
    /// recording started.
    #[serde(default)]
    pub layer: Option<String>,
    /// The other simulcast layers recorded, highest first (their files are named `{rid}/…`); a
    /// layer that started after the main one was chosen may be higher than it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<Rendition>,
    /// The main rendition's frame size, width and height in pixels, when known (kept out of
    /// the manifest, so that a copy built from the segments alone closes into the same VOD root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<[u32; 2]>,
    /// Kept whatever `--archive-retention` and `--archive-max-bytes` say (set through the admin
    /// API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// Per segment, milliseconds from the recorder closing it to its CID being announced
    /// (blocks and index durable); not persisted.
    #[serde(skip)]
    pub announce_ms: Vec<f64>,
}

impl RecordingIndex {
    /// The segments of the rendition named `rid` (the main one's rid, or `main` when it has
    /// none), ended when the recording has its VOD root; `None` when there is no such rendition.
    pub fn rendition(&self, rid: &str) -> Option<Manifest> {
        let main = self.layer.as_deref().unwrap_or("main") == rid;
        let mut m = match main {
            true => self.manifest.clone()?,
            false => self.renditions.iter().find(|r| r.rid == rid)?.manifest.clone()?,
        };
        if self.vod.is_some() {
            m.end();
        }
        Some(m)
    }

    /// Every rendition's segments with its peak bit rate, the main one first (ended when the
    /// recording has its VOD root): what an MPD lists as Representations.
    pub fn layers(&self) -> Vec<(Manifest, u64)> {
        let sizes: std::collections::HashMap<&str, u64> = self.files.iter().map(|f| (f.cid.as_str(), f.size)).collect();
        let ended = self.vod.is_some();
        self.manifest
            .iter()
            .chain(self.renditions.iter().filter_map(|r| r.manifest.as_ref()))
            .map(|m| {
                let bandwidth = relaycast_archive::playlist::peak_bitrate(
                    m.segments.iter().filter_map(|s| Some((*sizes.get(s.cid.as_str())?, s.duration))),
                );
                let mut m = m.clone();
                if ended {
                    m.end();
                }
                (m, bandwidth)
            })
            .collect()
    }

    /// The variants of its multivariant playlists, highest layer first: the main rendition and
    /// every other with a stored init segment. `uri` names a variant's media playlist from its
    /// rid (`None` for the main rendition). Empty when there is nothing but the main rendition.
    pub fn variants(&self, uri: impl Fn(Option<&str>) -> String) -> Vec<Variant> {
        if self.renditions.iter().all(|r| r.manifest.is_none()) {
            return Vec::new();
        }
        let sizes: std::collections::HashMap<&str, u64> = self.files.iter().map(|f| (f.cid.as_str(), f.size)).collect();
        let variant = |m: &Manifest, rid: Option<&str>, resolution: Option<[u32; 2]>| Variant {
            uri: uri(rid),
            bandwidth: relaycast_archive::playlist::peak_bitrate(
                m.segments.iter().filter_map(|s| Some((*sizes.get(s.cid.as_str())?, s.duration))),
            ),
            resolution,
            codecs: m.codecs.clone(),
        };
        let rank = crate::core::rid_rank;
        let main_rank = self.layer.as_deref().map_or(i32::MAX, rank);
        let main = self.manifest.iter().map(|m| (main_rank, variant(m, None, self.resolution)));
        let others = self.renditions.iter().filter_map(|r| Some((rank(&r.rid), variant(r.manifest.as_ref()?, Some(&r.rid), r.resolution))));
        let mut all: Vec<(i32, Variant)> = main.chain(others).collect();
        all.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        all.into_iter().map(|(_, v)| v).collect()
    }
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
/// file becomes the VOD root: the main rendition's files, `vod.m3u8` and `manifest.json` at the
/// top, every other rendition's in a directory named by its rid, and with renditions a
/// multivariant `master.m3u8` naming each rendition's `vod.m3u8`. The same index always gives
/// the same root.
pub fn finish_index(store: &Blockstore, ix: &mut RecordingIndex) -> Result<(), RecorderError> {
    let Some(manifest) = ix.manifest.as_mut() else { return Ok(()) };
    manifest.end();
    for r in &mut ix.renditions {
        if let Some(m) = r.manifest.as_mut() {
            m.end();
        }
    }
    let mut root = rendition_dir(store, ix, "", ix.manifest.as_ref())?;
    for r in &ix.renditions {
        let sub = rendition_dir(store, ix, &format!("{}/", r.rid), r.manifest.as_ref())?;
        root.add(&r.rid, store.put_directory(sub)?)?;
    }
    let variants = ix.variants(|rid| rid.map_or_else(|| "vod.m3u8".to_string(), |rid| format!("{rid}/vod.m3u8")));
    if !variants.is_empty() {
        let master = relaycast_archive::playlist::multivariant(&variants);
        root.add("master.m3u8", store.import_reader(master.as_bytes(), Profile::default())?)?;
    }
    let root = store.put_directory(root)?;
    ix.vod = Some(root.cid.to_string());
    Ok(())
}

/// The directory of one rendition: its files (those named `{prefix}…`, without the prefix), its
/// `vod.m3u8` and `manifest.json`.
fn rendition_dir(store: &Blockstore, ix: &RecordingIndex, prefix: &str, manifest: Option<&Manifest>) -> Result<DirectoryBuilder, RecorderError> {
    let mut dir = DirectoryBuilder::new();
    for f in &ix.files {
        let Some(name) = f.name.strip_prefix(prefix) else { continue };
        if name.contains('/') {
            continue;
        }
        let cid: relaycast_ipfs::Cid = f.cid.parse().map_err(|_| RecorderError::BadCid { cid: f.cid.clone() })?;
        dir.add(name, Entry { cid, file_size: f.size, dag_size: f.dag_size })?;
    }
    if let Some(m) = manifest {
        let playlist = relaycast_archive::playlist::vod(m);
        dir.add("vod.m3u8", store.import_reader(playlist.as_bytes(), Profile::default())?)?;
        dir.add("manifest.json", store.import_reader(&m.to_json()[..], Profile::default())?)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use relaycast_ipfs::exporter::{read_range, resolve};

    use super::*;

    /// Stores `bytes` and names the file `name` in `ix`.
    fn file(store: &Blockstore, ix: &mut RecordingIndex, name: &str, bytes: &[u8]) -> String {
        let e = store.import_reader(bytes, Profile::default()).unwrap();
        ix.files.push(StoredFile { name: name.into(), cid: e.cid.to_string(), size: e.file_size, dag_size: e.dag_size });
        e.cid.to_string()
    }

    fn read(store: &Blockstore, root: &relaycast_ipfs::Cid, path: &[&str]) -> String {
        let cid = *resolve(store, root, path).unwrap().unwrap().last().unwrap();
        let mut out = Vec::new();
        read_range(store, &cid, 0, u64::MAX, &mut |b| {
            out.extend_from_slice(b);
            true
        })
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_vod_directory_holds_every_rendition_and_a_multivariant_playlist() {
        let dir = std::env::temp_dir().join(format!("relaycast-index-{}", std::process::id()));
        let store = Blockstore::open(dir.join("blocks")).unwrap();
        let mut ix = RecordingIndex {
            stream: "s".into(),
            started_unix_ms: 1,
            manifest: None,
            files: Vec::new(),
            vod: None,
            layer: Some("f".into()),
            renditions: Vec::new(),
            resolution: Some([1280, 720]),
            pinned: false,
            announce_ms: Vec::new(),
        };
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let init = file(&store, &mut ix, "init.mp4", b"main init");
        let seg = file(&store, &mut ix, "segment-000000.m4s", &[1u8; 500_000]);
        let mut m = Manifest::new(init.clone(), "avc1.42e01f,opus");
        m.push_segment(0, seg, Duration::from_secs(2), start, &init);
        ix.manifest = Some(m);
        let q_init = file(&store, &mut ix, "q/init.mp4", b"q init");
        let q_seg = file(&store, &mut ix, "q/segment-000000.m4s", &[2u8; 50_000]);
        let mut q = Manifest::new(q_init.clone(), "avc1.42e01f,opus");
        q.push_segment(0, q_seg.clone(), Duration::from_secs(2), start, &q_init);
        ix.renditions.push(Rendition { rid: "q".into(), manifest: Some(q), resolution: Some([320, 180]) });

        let mut again = ix.clone();
        finish_index(&store, &mut ix).unwrap();
        finish_index(&store, &mut again).unwrap();
        assert_eq!(ix.vod, again.vod, "the same index gives the same root");
        let root: relaycast_ipfs::Cid = ix.vod.as_deref().unwrap().parse().unwrap();
        let master = read(&store, &root, &["master.m3u8"]);
        assert_eq!(
            master,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,CODECS=\"avc1.42e01f,opus\"\nvod.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=320x180,CODECS=\"avc1.42e01f,opus\"\nq/vod.m3u8\n"
        );
        assert!(read(&store, &root, &["vod.m3u8"]).contains("#EXT-X-ENDLIST"));
        let q_playlist = read(&store, &root, &["q", "vod.m3u8"]);
        assert!(q_playlist.contains(&format!("/ipfs/{q_seg}\n")) && q_playlist.contains("#EXT-X-ENDLIST"), "{q_playlist}");
        assert!(resolve(&store, &root, &["q", "segment-000000.m4s"]).unwrap().is_some());
        assert!(resolve(&store, &root, &["q", "manifest.json"]).unwrap().is_some());
        assert!(resolve(&store, &root, &["segment-000000.m4s"]).unwrap().is_some());
        assert!(ix.renditions[0].manifest.as_ref().unwrap().ended);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
