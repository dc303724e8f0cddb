//! Durable on-disk blockstore: one file per block, named by its CID, sharded by the
//! next-to-last two characters of the CID string (like go-ds-flatfs).
//!
//! A block becomes visible only by `rename` of a fully written and fsynced temp file,
//! and a write returns only after the directory entry is fsynced too.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cid::Cid;
use thiserror::Error;
use tracing::{debug, warn};

use crate::block::{self, VerifyError};
use crate::unixfs::{self, BlockSink, Entry, ImportError, Profile};

/// A blockstore operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Stored bytes do not match their CID (corruption), or a put was given wrong bytes.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// Importing a file failed.
    #[error("import: {0}")]
    Import(#[from] ImportError),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Called with the CID of each block written through this store once it is durable.
pub type DurableHook = std::sync::Arc<dyn Fn(&Cid) + Send + Sync>;

/// Blocks on disk under one directory.
pub struct Blockstore {
    root: PathBuf,
    tmp_seq: AtomicU64,
    /// Told about every new block after its commit (a Bitswap server answering waiting wants).
    durable_hook: std::sync::OnceLock<DurableHook>,
}

impl std::fmt::Debug for Blockstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blockstore").field("root", &self.root).finish_non_exhaustive()
    }
}

const TMP_SUFFIX: &str = ".tmp";
/// Age after which an unfinished block write is treated as left by a crash.
const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

impl Blockstore {
    /// Opens (creating if needed) the store at `root` and removes temp files left by a crash
    /// (older than ten minutes; temp files are never visible as blocks either way).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root).map_err(io("creating", &root))?;
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let store = Self {
            root,
            tmp_seq: AtomicU64::new(0),
            durable_hook: std::sync::OnceLock::new(),
        };
        store.clean_temp_files()?;
        Ok(store)
    }

    /// Sets the hook told about each block written through this store once its batch is
    /// committed (blocks already present are not new and are not told). False if one was set.
    pub fn on_durable(&self, hook: DurableHook) -> bool {
        self.durable_hook.set(hook).is_ok()
    }

    /// The directory holding the blocks.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn clean_temp_files(&self) -> Result<(), StoreError> {
        let mut dirs = vec![self.root.clone()];
        for entry in fs::read_dir(&self.root).map_err(io("listing", &self.root))? {
            let entry = entry.map_err(io("listing", &self.root))?;
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(entry.path());
            }
        }
        for dir in dirs {
            for entry in fs::read_dir(&dir).map_err(io("listing", &dir))? {
                let entry = entry.map_err(io("listing", &dir))?;
                let path = entry.path();
                let is_tmp = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(TMP_SUFFIX));
                // A recent temp file may be another process's write in progress on the same store.
                let stale = || {
                    entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= STALE_TMP_AGE)
                };
                if is_tmp && stale() {
                    debug!(path = %path.display(), "removing an unfinished block write");
                    if let Err(e) = fs::remove_file(&path) {
                        warn!(path = %path.display(), error = %e, "cannot remove a temp file");
                    }
                }
            }
        }
        Ok(())
    }

    fn shard_dir(&self, name: &str) -> PathBuf {
        let n = name.len();
        let shard = if n >= 3 { &name[n - 3..n - 1] } else { "_" };
        self.root.join(shard)
    }

    /// Path of the file holding `cid`.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        let name = cid.to_string();
        self.shard_dir(&name).join(name)
    }

    /// Whether `cid` is stored (identity CIDs are always present).
    pub fn has(&self, cid: &Cid) -> bool {
        block::identity_content(cid).is_some() || self.path_of(cid).is_file()
    }

    /// Reads and verifies the block `cid`; `Ok(None)` when it is not stored.
    pub fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(inline) = block::identity_content(cid) {
            return Ok(Some(inline.to_vec()));
        }
        let path = self.path_of(cid);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Io {
                    op: "opening",
                    path,
                    source: e,
                });
            }
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("reading", &path))?;
        block::verify(cid, &bytes)?;
        Ok(Some(bytes))
    }

    /// Deletes the block `cid` if its file was last written before `before` (a block written
    /// again since, by a writer that found it present, is kept); true when deleted.
    pub fn remove_if_older(&self, cid: &Cid, before: std::time::SystemTime) -> Result<bool, StoreError> {
        if block::identity_content(cid).is_some() {
            return Ok(false);
        }
        let path = self.path_of(cid);
        let modified = match fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::Io { op: "stat", path, source: e }),
        };
        if modified >= before {
            return Ok(false);
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::Io { op: "removing", path, source: e }),
        }
    }

    /// Size in bytes of the stored block, without reading it.
    pub fn size(&self, cid: &Cid) -> Result<Option<u64>, StoreError> {
        if let Some(inline) = block::identity_content(cid) {
            return Ok(Some(inline.len() as u64));
        }
        let path = self.path_of(cid);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                op: "stat",
                path,
                source: e,
            }),
        }
    }

    /// Stores one block durably (verified against `cid` first).
    pub fn put(&self, cid: &Cid, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_many([(cid, bytes)])
    }

    /// Stores several blocks; returns once all of them are durable.
    pub fn put_many<'a, I>(&self, blocks: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = (&'a Cid, &'a [u8])>,
    {
        let mut batch = self.batch();
        for (cid, bytes) in blocks {
            block::verify(cid, bytes)?;
            batch.write(cid, bytes)?;
        }
        batch.commit()
    }

    /// A writer that makes each block visible atomically and syncs directories on `commit`.
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            store: self,
            dirty: BTreeSet::new(),
            written: Vec::new(),
        }
    }

    /// Imports a file into the store; returns its root once every block is durable.
    pub fn import_reader<R: Read>(&self, reader: R, profile: Profile) -> Result<Entry, StoreError> {
        let mut batch = self.batch();
        let entry = unixfs::import_reader(reader, profile, &mut batch)?;
        batch.commit()?;
        Ok(entry)
    }

    /// Imports the file at `path`; returns its root CID once every block is durable.
    pub fn import_file(
        &self,
        path: impl AsRef<Path>,
        profile: Profile,
    ) -> Result<Entry, StoreError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(io("opening", path))?;
        self.import_reader(std::io::BufReader::with_capacity(1 << 16, file), profile)
    }

    /// Builds a flat directory from entries already in the store; returns it once durable.
    pub fn put_directory(&self, dir: unixfs::DirectoryBuilder) -> Result<Entry, StoreError> {
        let mut batch = self.batch();
        let entry = dir.finish(&mut batch).map_err(ImportError::Io)?;
        batch.commit()?;
        Ok(entry)
    }
}

/// Blocks written but whose directory entries are not yet synced; see [`Batch::commit`].
#[derive(Debug)]
pub struct Batch<'a> {
    store: &'a Blockstore,
    dirty: BTreeSet<PathBuf>,
    /// New blocks, for the store's durable hook (kept only when one is set).
    written: Vec<Cid>,
}

impl Batch<'_> {
    /// Writes one block (temp file, fsync, rename); skipped when already stored.
    pub fn write(&mut self, cid: &Cid, bytes: &[u8]) -> Result<(), StoreError> {
        if block::identity_content(cid).is_some() {
            return Ok(());
        }
        let name = cid.to_string();
        let dir = self.store.shard_dir(&name);
        let path = dir.join(&name);
        if path.is_file() {
            // Written again: its time is refreshed, so that a garbage collection that started
            // before this write keeps it (see `Blockstore::remove_if_older`). If it vanished
            // meanwhile, it is written anew below.
            let touched = OpenOptions::new().write(true).open(&path).and_then(|f| f.set_modified(std::time::SystemTime::now()));
            if touched.is_ok() {
                // Another writer may have renamed it without syncing the directory yet.
                self.dirty.insert(dir);
                return Ok(());
            }
        }
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            self.dirty.insert(self.store.root.clone());
        }
        let seq = self.store.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{name}.{}-{seq}{TMP_SUFFIX}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io("creating", &tmp))?;
            f.write_all(bytes).map_err(io("writing", &tmp))?;
            f.sync_all().map_err(io("syncing", &tmp))?;
            fs::rename(&tmp, &path).map_err(io("renaming", &tmp))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        self.dirty.insert(dir);
        if self.store.durable_hook.get().is_some() {
            self.written.push(*cid);
        }
        Ok(())
    }

    /// Syncs every directory that received a block; after this all blocks are durable.
    pub fn commit(self) -> Result<(), StoreError> {
        // Shard directories first, then the root that may have gained new shards.
        let root = self.store.root.clone();
        for dir in self
            .dirty
            .iter()
            .filter(|d| **d != root)
            .chain(self.dirty.iter().filter(|d| **d == root))
        {
            sync_dir(dir)?;
        }
        if let Some(hook) = self.store.durable_hook.get() {
            for cid in &self.written {
                hook(cid);
            }
        }
        Ok(())
    }
}

impl BlockSink for Batch<'_> {
    fn put_block(&mut self, cid: &Cid, bytes: &[u8]) -> std::io::Result<()> {
        self.write(cid, bytes).map_err(|e| match e {
            StoreError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{RAW, cid_of};

    #[test]
    fn the_durable_hook_hears_each_new_block_once_after_commit() {
        let dir = temp_dir("hook");
        let store = Blockstore::open(&dir).unwrap();
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = heard.clone();
        assert!(store.on_durable(std::sync::Arc::new(move |c: &Cid| h.lock().unwrap().push(*c))));
        assert!(!store.on_durable(std::sync::Arc::new(|_: &Cid| {})), "one hook");
        let (a, b) = (cid_of(RAW, b"a"), cid_of(RAW, b"b"));
        let mut batch = store.batch();
        batch.write(&a, b"a").unwrap();
        batch.write(&b, b"b").unwrap();
        assert!(heard.lock().unwrap().is_empty(), "nothing before the commit");
        batch.commit().unwrap();
        assert_eq!(*heard.lock().unwrap(), vec![a, b]);
        store.put(&a, b"a").unwrap();
        assert_eq!(heard.lock().unwrap().len(), 2, "a block already stored is not new");
        let _ = fs::remove_dir_all(&dir);
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("relaycast-ipfs-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn only_blocks_not_written_since_a_collection_began_are_removed() {
        let dir = temp_dir("gc");
        let store = Blockstore::open(&dir).unwrap();
        let (a, b) = (cid_of(RAW, b"old"), cid_of(RAW, b"again"));
        store.put(&a, b"old").unwrap();
        store.put(&b, b"again").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let began = std::time::SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // A writer stores `b` again after the collection began: it is kept.
        store.put(&b, b"again").unwrap();
        assert!(store.remove_if_older(&a, began).unwrap());
        assert!(!store.remove_if_older(&b, began).unwrap());
        assert!(!store.has(&a) && store.has(&b));
        assert!(!store.remove_if_older(&a, began).unwrap(), "already gone");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn put_get_has() {
        let dir = temp_dir("putget");
        let store = Blockstore::open(&dir).unwrap();
        let cid = cid_of(RAW, b"hello world");
        assert!(!store.has(&cid));
        assert_eq!(store.get(&cid).unwrap(), None);
        store.put(&cid, b"hello world").unwrap();
        assert!(store.has(&cid));
        assert_eq!(
            store.get(&cid).unwrap().as_deref(),
            Some(&b"hello world"[..])
        );
        assert_eq!(store.size(&cid).unwrap(), Some(11));
        let path = store.path_of(&cid);
        assert_eq!(path.parent().unwrap().file_name().unwrap(), "n5");
        // Putting again is a no-op; putting wrong bytes is refused.
        store.put(&cid, b"hello world").unwrap();
        assert!(matches!(
            store.put(&cid, b"hello"),
            Err(StoreError::Verify(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupted_block_is_an_error() {
        let dir = temp_dir("corrupt");
        let store = Blockstore::open(&dir).unwrap();
        let cid = cid_of(RAW, b"segment bytes");
        store.put(&cid, b"segment bytes").unwrap();
        fs::write(store.path_of(&cid), b"segment bytez").unwrap();
        assert!(matches!(
            store.get(&cid),
            Err(StoreError::Verify(VerifyError::Mismatch(_)))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_files_are_invisible_and_cleaned() {
        let dir = temp_dir("tmp");
        let store = Blockstore::open(&dir).unwrap();
        let cid = cid_of(RAW, b"partial");
        let shard = store.path_of(&cid).parent().unwrap().to_owned();
        fs::create_dir_all(&shard).unwrap();
        let tmp = shard.join(format!("{cid}.1-0.tmp"));
        fs::write(&tmp, b"parti").unwrap();
        assert!(!store.has(&cid));
        assert_eq!(store.get(&cid).unwrap(), None);
        drop(store);
        // A fresh temp file may belong to a concurrent writer: kept.
        let store = Blockstore::open(&dir).unwrap();
        assert!(tmp.exists());
        drop(store);
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let store = Blockstore::open(&dir).unwrap();
        assert!(!tmp.exists());
        assert!(!store.has(&cid));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn import_stores_every_block() {
        let dir = temp_dir("import");
        let store = Blockstore::open(&dir).unwrap();
        let data: Vec<u8> = (0..(262144 * 2 + 7)).map(|i| (i % 253) as u8).collect();
        let e = store.import_reader(&data[..], Profile::Kubo).unwrap();
        assert_eq!(e.file_size, data.len() as u64);
        let root = crate::dagpb::PbNode::decode(&store.get(&e.cid).unwrap().unwrap()).unwrap();
        assert_eq!(root.links.len(), 3);
        for l in &root.links {
            assert!(store.get(&l.hash).unwrap().is_some());
        }
        let id: Cid = "bafkqaaa".parse().unwrap();
        assert!(store.has(&id));
        assert_eq!(store.get(&id).unwrap(), Some(Vec::new()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
