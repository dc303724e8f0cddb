//! `relaycast-turn`: the Relaycast TURN server on its own.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use relaycast_turn::{TurnArgs, TurnServer};

/// Relaycast TURN server with time-limited credentials.
#[derive(Debug, Parser)]
#[command(name = "relaycast-turn", version, about)]
struct Args {
    #[command(flatten)]
    turn: TurnArgs,

    /// Directory where a generated TURN secret is kept.
    #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "relaycast-data")]
    data_dir: PathBuf,

    /// Print credentials for this label (valid for --turn-credential-ttl) and keep serving.
    #[arg(long, value_name = "LABEL")]
    print_credentials: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAYCAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if args.turn.turn.is_none() {
        args.turn.turn = Some("0.0.0.0:3478".parse()?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let cfg = args
            .turn
            .config(&args.data_dir, vec![])
            .with_context(|| format!("loading the TURN secret from {}", args.data_dir.display()))?
            .context("no TURN address")?;
        let server = TurnServer::start(cfg).await?;
        println!("relaycast-turn {} ready", env!("CARGO_PKG_VERSION"));
        println!("  turn: {}", server.udp_addr());
        if let Some(label) = &args.print_credentials {
            let c = server.credentials(label, args.turn.credential_ttl());
            println!("  username: {}", c.username);
            println!("  credential: {}", c.password);
        }
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        server.close().await?;
        Ok(())
    })
}
