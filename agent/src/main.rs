//! `vipx-agent`: see `vipx-agent --help`.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use vipx_agent::{
    api::client::Agent,
    cli::{Cli, Command, LogFormat, events, status},
    config::Config,
    daemon,
    operator::{HandoverGroup, HandoverRequest},
    sync::Credentials,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Run | Command::Witness)) {
        // A command-line tool whose reader went away (`vipx-agent events |
        // head`) ends quietly, as Unix tools do; the daemon keeps Rust's
        // default (SIGPIPE ignored, a write to a closed socket is an error).
        // SAFETY: SIG_DFL for SIGPIPE, set before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logs(&cli);
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
        Command::Witness => runtime.block_on(daemon::witness::run(&cli.config)),
        Command::CheckConfig { path } => {
            let config = Config::load(&path)?;
            // The files [sync] names: read as the agent will (never shown).
            if let Some(sync) = &config.sync {
                Credentials::load(sync)
                    .map_err(|err| anyhow::anyhow!("{}: [sync]: {err}", path.display()))?;
            }
            vipx_agent::tls::agent::acceptor(&config.api)
                .map_err(|err| anyhow::anyhow!("{}: [api]: {err}", path.display()))?;
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
        Command::Drain { backend, undo, api } => {
            let agent = Agent::new(api, &cli.config)?;
            let answer = runtime.block_on(agent.drain(backend, !undo))?;
            println!("{answer}");
            Ok(())
        }
        Command::Handover {
            group,
            undo,
            hold,
            api,
        } => {
            let agent = Agent::new(api, &cli.config)?;
            let request = HandoverRequest {
                group,
                undo,
                hold_ms: hold.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            for done in runtime.block_on(agent.handover(&request))? {
                println!("{}", describe_handover(&done));
            }
            Ok(())
        }
        Command::Import {
            keepalived,
            haproxy,
            output,
        } => import(keepalived.as_deref(), haproxy.as_deref(), output.as_deref()),
        Command::Events { api, follow, json } => {
            let agent = Agent::new(api, &cli.config)?;
            runtime.block_on(events::print(&agent, follow, json))
        }
        Command::Nodes { api, json } => {
            let agent = Agent::new(api, &cli.config)?;
            let report = runtime.block_on(agent.nodes())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", vipx_agent::cli::nodes::render(&report));
            }
            Ok(())
        }
        Command::Status { api, json } => {
            let agent = Agent::new(api, &cli.config)?;
            let report = runtime.block_on(agent.status())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", status::render(&report));
            }
            Ok(())
        }
    }
}

/// `vipx-agent import`: the configuration, checked as `check-config`
/// would, and the notes on stderr.
fn import(
    keepalived: Option<&std::path::Path>,
    haproxy: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let imported = vipx_agent::import::import(keepalived, haproxy)?;
    for note in &imported.notes {
        eprintln!("not carried over: {note}");
    }
    let name = output.map_or_else(
        || "the imported configuration".into(),
        |p| p.display().to_string(),
    );
    if let Err(err) = Config::parse(std::path::Path::new(&name), &imported.toml) {
        eprintln!("{}", imported.toml);
        anyhow::bail!("the imported configuration needs a hand: {err}");
    }
    match output {
        Some(path) => {
            std::fs::write(path, &imported.toml)
                .map_err(|err| anyhow::anyhow!("writing {}: {err}", path.display()))?;
            eprintln!("wrote {} ({} notes)", path.display(), imported.notes.len());
        }
        None => print!("{}", imported.toml),
    }
    Ok(())
}

/// One line per group a handover touched.
fn describe_handover(done: &HandoverGroup) -> String {
    let group = &done.group;
    if !done.held {
        return format!("{group}: handover undone; the group's priority applies again");
    }
    let what = if done.was_master {
        "handed to the best backup"
    } else {
        "not MASTER here"
    };
    let until = match done.until_unix_ms {
        Some(ms) => format!(
            "until {}",
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
            )
        ),
        None => "until `vipx-agent handover --undo`".to_owned(),
    };
    format!("{group}: {what}; stays BACKUP {until}")
}

/// Logs to stderr, as text or JSON lines. The level: `RUST_LOG` if set
/// (and not empty),
/// else the daemon's `[log] level` (info when the file cannot be read: the
/// daemon then says why). No colours unless stderr is a terminal, no
/// timestamps of its own under journald (`JOURNAL_STREAM`), which stamps
/// each line.
fn init_logs(cli: &Cli) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok());
    let filter = from_env.unwrap_or_else(|| {
        let level = match cli.command {
            None | Some(Command::Run | Command::Witness) => Config::load(&cli.config)
                .map(|c| c.log.level.0)
                .unwrap_or_else(|_| "info".to_owned()),
            _ => "info".to_owned(),
        };
        EnvFilter::new(level)
    });
    let journald = std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && cli.log_format == LogFormat::Text);
    match (cli.log_format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
