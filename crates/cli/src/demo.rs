//! `drawbridge demo`: a throwaway PostgreSQL with the gateway in front of it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct DemoArgs {
    /// Port for the gateway (default: 6432).
    #[arg(long, default_value_t = 6432)]
    port: u16,
    /// Write connection URLs here as KEY=VALUE lines.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Exit after setting up instead of serving until interrupted.
    #[arg(long)]
    no_wait: bool,
}

pub fn run(_args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo: not yet available")
}
