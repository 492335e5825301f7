//! `vipx-agent`: see `vipx-agent --help`.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use vipx_agent::{
    cli::{Cli, Command},
    config::Config,
    daemon, status,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vipx-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => runtime.block_on(daemon::run(&cli.config, cli.ha_debug)),
        Command::CheckConfig { path } => {
            let config = Config::load(&path)?;
            println!(
                "{}: OK (node {}, XDP on {})",
                path.display(),
                config.node.name(),
                config
                    .dataplane
                    .interfaces
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Status { api, json } => {
            let base = match api {
                Some(url) => url,
                None => status::api_url(Config::load(&cli.config)?.api.listen),
            };
            let report = runtime.block_on(status::fetch(&base))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status::render(&report));
            }
            Ok(())
        }
    }
}
