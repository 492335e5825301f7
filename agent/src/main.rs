//! `vipx-agent`: see `vipx-agent --help`.

use std::{io::IsTerminal as _, process::ExitCode};

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use vipx_agent::{
    api::client,
    cli::{Cli, Command, status},
    config::Config,
    daemon,
    operator::{HandoverGroup, HandoverRequest},
    sync::Credentials,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, None | Some(Command::Run)) {
        // A command-line tool whose reader went away (`vipx-agent events |
        // head`) ends quietly, as Unix tools do; the daemon keeps Rust's
        // default (SIGPIPE ignored, a write to a closed socket is an error).
        // SAFETY: SIG_DFL for SIGPIPE, set before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
            // The files [sync] names: read as the agent will (never shown).
            if let Some(sync) = &config.sync {
                Credentials::load(sync)
                    .map_err(|err| anyhow::anyhow!("{}: [sync]: {err}", path.display()))?;
            }
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
            let base = api_base(api, &cli.config)?;
            let secret = api_secret(&cli.config)?;
            let answer = runtime.block_on(client::drain(&base, secret.as_ref(), backend, !undo))?;
            println!("{answer}");
            Ok(())
        }
        Command::Handover {
            group,
            undo,
            hold,
            api,
        } => {
            let base = api_base(api, &cli.config)?;
            let request = HandoverRequest {
                group,
                undo,
                hold_ms: hold.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let secret = api_secret(&cli.config)?;
            for done in runtime.block_on(client::handover(&base, secret.as_ref(), &request))? {
                println!("{}", describe_handover(&done));
            }
            Ok(())
        }
        Command::Import {
            keepalived,
            haproxy,
            output,
        } => import(keepalived.as_deref(), haproxy.as_deref(), output.as_deref()),
        Command::Events { api } => {
            let base = api_base(api, &cli.config)?;
            for event in runtime.block_on(client::events(&base))? {
                println!(
                    "{:>6} {} {:<8} {:<32} {} -> {} ({})",
                    event.seq,
                    event.unix_ms,
                    event.kind,
                    event.subject,
                    event.from,
                    event.to,
                    event.reason
                );
            }
            Ok(())
        }
        Command::Status { api, json } => {
            let base = api_base(api, &cli.config)?;
            let report = runtime.block_on(client::fetch(&base))?;
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

/// The API's secret, when the config file sets `[api] secret_file` (a
/// config file that is not there means none: the agent then accepts
/// changes from this node only).
fn api_secret(config: &std::path::Path) -> anyhow::Result<Option<vipx_agent::sync::auth::Secret>> {
    if !config.exists() {
        return Ok(None);
    }
    let config = Config::load(config)?;
    config
        .api
        .secret_file
        .as_deref()
        .map(vipx_agent::sync::auth::Secret::load)
        .transpose()
        .map_err(|err| anyhow::anyhow!("[api] secret_file: {err}"))
}

/// The API's base URL: given, or from the config file's `[api] listen`.
fn api_base(api: Option<String>, config: &std::path::Path) -> anyhow::Result<String> {
    Ok(match api {
        Some(url) => url,
        None => client::api_url(Config::load(config)?.api.listen),
    })
}
