//! The `moe-edge` binary: parse the command line, set up logging, run one
//! subcommand. Flags and their translation into library options live in
//! `cli/`; everything else lives in the library.

mod cli;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let default_filter = format!("info,{}", moe_edge::transport::broker::QUIET_LOG_FILTER);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .init();
    cli::run(cli::Cli::parse())
}
