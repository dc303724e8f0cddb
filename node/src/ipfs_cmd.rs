//! `relaycast ipfs ...`: import files into the node's blockstore, fetch DAGs from IPFS peers
//! over Bitswap, and export CARs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use relaycast_ipfs::{Blockstore, Cid, Profile, car};

/// Subcommands of `relaycast`; without one the node runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// IPFS storage: add files, export CARs.
    #[command(subcommand)]
    Ipfs(IpfsCommand),
    /// Print an access token (JWT HS256) signed with the API secret.
    Token(crate::token_cmd::TokenArgs),
}

/// `relaycast ipfs` subcommands.
#[derive(Debug, Subcommand)]
pub enum IpfsCommand {
    /// Import FILE ("-" for stdin) as UnixFS into <data-dir>/blocks and print its CID.
    Add {
        /// File to import.
        file: PathBuf,
        /// Chunking profile: unixfs-v1-2025 (1 MiB chunks, 1024 links) or kubo (256 KiB, 174).
        #[arg(long, default_value = "unixfs-v1-2025")]
        profile: Profile,
        /// Directory for node state (blocks live in its `blocks` subdirectory); default: the node's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Only compute and print the CID; write no blocks (kubo's `ipfs add --only-hash`).
        #[arg(long, short = 'n')]
        only_hash: bool,
    },
    /// Fetch the DAG under CID over Bitswap from the IPFS peer at FROM (a multiaddr ending in
    /// /p2p/<peer id>: a Relaycast node, Helia or kubo) into <data-dir>/blocks, every block
    /// verified against its CID; prints the CID, blocks and bytes fetched.
    Get {
        /// Root CID.
        cid: String,
        /// The peer to fetch from.
        #[arg(long)]
        from: relaycast_mesh::Multiaddr,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Directory for node state (blocks live in its `blocks` subdirectory); default: the node's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write the DAG under CID as a CARv1 to stdout.
    Export {
        /// Root CID.
        cid: String,
        /// Directory for node state (blocks live in its `blocks` subdirectory); default: the node's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

impl Command {
    /// Runs the subcommand to completion with the node's flags (`--data-dir`, `--api-secret`
    /// before the subcommand).
    pub fn run(self, args: &crate::config::Args) -> anyhow::Result<()> {
        match self {
            Command::Ipfs(cmd) => cmd.run(&args.data_dir),
            Command::Token(t) => t.run(args),
        }
    }
}

/// The UnixFS entry FILE ("-" for stdin) would import as, computed without storing a block.
fn hash_only(file: &Path, profile: Profile) -> anyhow::Result<relaycast_ipfs::Entry> {
    let mut discard = |_: &Cid, _: &[u8]| Ok(());
    let entry = if file.as_os_str() == "-" {
        relaycast_ipfs::unixfs::import_reader(std::io::stdin().lock(), profile, &mut discard)?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        relaycast_ipfs::unixfs::import_reader(std::io::BufReader::with_capacity(1 << 20, f), profile, &mut discard)?
    };
    Ok(entry)
}

fn open_store(data_dir: &Path) -> anyhow::Result<Blockstore> {
    let dir = data_dir.join("blocks");
    Blockstore::open(&dir).with_context(|| format!("opening the blockstore in {}", dir.display()))
}

impl IpfsCommand {
    fn run(self, node_data_dir: &Path) -> anyhow::Result<()> {
        match self {
            IpfsCommand::Add {
                file,
                profile,
                data_dir,
                only_hash,
            } => {
                let entry = if only_hash {
                    hash_only(&file, profile)
                } else {
                    let store = open_store(data_dir.as_deref().unwrap_or(node_data_dir))?;
                    if file.as_os_str() == "-" {
                        store.import_reader(std::io::stdin().lock(), profile)
                    } else {
                        store.import_file(&file, profile)
                    }
                    .map_err(anyhow::Error::from)
                }
                .with_context(|| format!("importing {}", file.display()))?;
                tracing::debug!(cid = %entry.cid, bytes = entry.file_size, profile = profile.name(), "imported");
                println!("{}", entry.cid);
                Ok(())
            }
            IpfsCommand::Get { cid, from, timeout, data_dir } => {
                let cid: Cid = cid.parse().with_context(|| format!("invalid CID {cid:?}"))?;
                let store = Arc::new(open_store(data_dir.as_deref().unwrap_or(node_data_dir))?);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("starting the runtime")?;
                let (blocks, bytes) = rt.block_on(fetch_dag(store, cid, from, Duration::from_secs(timeout)))?;
                println!("{cid} {blocks} blocks {bytes} bytes");
                Ok(())
            }
            IpfsCommand::Export { cid, data_dir } => {
                let cid: Cid = cid
                    .parse()
                    .with_context(|| format!("invalid CID {cid:?}"))?;
                let store = open_store(data_dir.as_deref().unwrap_or(node_data_dir))?;
                if !store.has(&cid) {
                    anyhow::bail!("{cid} is not in {}", store.root().display());
                }
                let stdout = std::io::stdout().lock();
                let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
                car::export(&store, &cid, &mut out).with_context(|| format!("exporting {cid}"))?;
                out.flush().context("writing the CAR to stdout")?;
                Ok(())
            }
        }
    }
}

/// Fetches every block under `root` not already in `store` from the peer at `from`, with an
/// ephemeral mesh identity; returns the blocks and bytes fetched.
async fn fetch_dag(store: Arc<Blockstore>, root: Cid, from: relaycast_mesh::Multiaddr, timeout: Duration) -> anyhow::Result<(u64, u64)> {
    let peer = from
        .iter()
        .find_map(|p| if let relaycast_mesh::multiaddr_protocol::P2p(id) = p { Some(id) } else { None })
        .context("--from must end in /p2p/<peer id>")?;
    let identity_dir = std::env::temp_dir().join(format!("relaycast-ipfs-get-{}-{}", std::process::id(), rand::random::<u32>()));
    let mut cfg = relaycast_mesh::MeshConfig::new(&identity_dir, "");
    cfg.mdns = false;
    cfg.blocks = Some(Arc::new(crate::StoreBlocks(store.clone())));
    let (mesh, _events) = relaycast_mesh::Mesh::start(cfg).await.context("starting libp2p")?;
    let deadline = tokio::time::Instant::now() + timeout;
    let result = async {
        mesh.dial(from.clone());
        loop {
            let info = mesh.node_info().await;
            if info.known_peers.iter().any(|k| k.peer_id == peer && k.connected) {
                break;
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no connection to {from} within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got = relaycast_recorder::copies::fetch_dag(&store, &mesh, root, &[peer], deadline, u64::MAX)
            .await
            .map_err(|e| anyhow::anyhow!("fetching {root}: {e}"))?;
        Ok((got.fetched_blocks, got.fetched_bytes))
    }
    .await;
    mesh.shutdown().await;
    let _ = std::fs::remove_dir_all(&identity_dir);
    result
}
