//! `relaycast ipfs ...`: import files into the node's blockstore and export CARs.

use std::io::Write;
use std::path::{Path, PathBuf};

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
            } => {
                let store = open_store(data_dir.as_deref().unwrap_or(node_data_dir))?;
                let entry = if file.as_os_str() == "-" {
                    store.import_reader(std::io::stdin().lock(), profile)
                } else {
                    store.import_file(&file, profile)
                }
                .with_context(|| format!("importing {}", file.display()))?;
                tracing::debug!(cid = %entry.cid, bytes = entry.file_size, profile = profile.name(), "imported");
                println!("{}", entry.cid);
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
