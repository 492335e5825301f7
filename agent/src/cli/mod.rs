//! The command line: `vipx-agent [--config PATH] [--ha-debug] [COMMAND]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub mod events;
pub mod nodes;
pub mod status;

use crate::config::DEFAULT_CONFIG_PATH;

/// vipx-agent: a floating VIP (VRRPv3) and an XDP L4 load balancer in front
/// of PgBouncer/PostgreSQL pools.
#[derive(Debug, Parser)]
#[command(name = "vipx-agent", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// HA debug mode: run everything, but only log the actions that would
    /// change the host or the cluster (VIP add/remove, map flips, fencing).
    #[arg(long)]
    pub ha_debug: bool,
    /// Log lines as text or as JSON objects (one per line). The level
    /// comes from the config's `[log] level`, or `RUST_LOG` when set.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--log-format`
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Run,
    /// Run as the cluster's witness (`[cluster] witness`): a vote without
    /// a data plane, which makes two nodes safe against a partition. It
    /// reads the cluster's configuration file (the nodes' own will do):
    /// its `[node] name` (or VIPX_NODE_NAME) must be the witness's, and it
    /// listens on the witness's address.
    Witness,
    /// Check a configuration file without touching the host.
    CheckConfig {
        /// The file to check.
        path: PathBuf,
    },
    /// Drain a backend in the running agent: its flows stay, new flows go
    /// elsewhere (`--undo` to take it back).
    Drain {
        /// The backend, ADDRESS:PORT.
        backend: std::net::SocketAddr,
        /// Undrain.
        #[arg(long)]
        undo: bool,
        /// Base URL of the agent's API (default: from the config file).
        #[arg(long)]
        api: Option<String>,
    },
    /// Hand the VIPs of GROUP (every group this node is MASTER of, when
    /// absent) to the best backup, at once and without a probe lost (the
    /// ordered handover of a stopping agent), and stay BACKUP until
    /// `--undo`, `--for` or `[node] handover_hold` ends it. Kept across a
    /// restart of the agent.
    Handover {
        /// The group (default: every group this node is MASTER of; with
        /// `--undo`, every group handed over).
        group: Option<String>,
        /// End the handover: the group's priority applies again (and with
        /// preempt, the VIPs come back).
        #[arg(long)]
        undo: bool,
        /// Stay BACKUP this long, then end the handover by itself
        /// (`10m`, `1h`; default: `[node] handover_hold`, else until
        /// `--undo`).
        #[arg(long = "for", value_parser = humantime::parse_duration, conflicts_with = "undo")]
        hold: Option<std::time::Duration>,
        /// Base URL of the agent's API (default: from the config file).
        #[arg(long)]
        api: Option<String>,
    },
    /// Write a vipx.toml from a keepalived.conf and a haproxy.cfg (either
    /// or both): VRRP instances become groups, TCP listeners and LVS
    /// virtual servers become services. Every setting that could not be
    /// carried over is listed (on stderr, and at the top of the file).
    Import {
        /// keepalived's configuration.
        #[arg(long)]
        keepalived: Option<PathBuf>,
        /// HAProxy's configuration.
        #[arg(long)]
        haproxy: Option<PathBuf>,
        /// Write the configuration here (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print the running agent's event timeline (UTC timestamps).
    Events {
        /// Base URL of the agent's API (default: from the config file).
        #[arg(long)]
        api: Option<String>,
        /// Keep printing new events until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running agent how it sees the cluster (`[cluster]
    /// members`): the quorum and every voter, with the cluster secret of
    /// the config file.
    Nodes {
        /// Base URL of the agent's API (default: from the config file's
        /// `[api] listen`).
        #[arg(long)]
        api: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running agent for its state.
    Status {
        /// Base URL of the agent's API (default: from the config file's
        /// `[api] listen`).
        #[arg(long)]
        api: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cli = Cli::parse_from(["vipx-agent"]);
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        assert!(cli.command.is_none());
        let cli = Cli::parse_from(["vipx-agent", "--config", "/x.toml", "--ha-debug"]);
        assert!(cli.ha_debug);
        assert_eq!(cli.config, PathBuf::from("/x.toml"));
        let cli = Cli::parse_from(["vipx-agent", "check-config", "/y.toml"]);
        assert!(
            matches!(cli.command, Some(Command::CheckConfig { path }) if path == std::path::Path::new("/y.toml"))
        );
        let cli = Cli::parse_from([
            "vipx-agent",
            "events",
            "-f",
            "--json",
            "--log-format",
            "json",
        ]);
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(matches!(
            cli.command,
            Some(Command::Events {
                follow: true,
                json: true,
                ..
            })
        ));
        let cli = Cli::parse_from(["vipx-agent", "status", "--api", "http://127.0.0.1:1"]);
        assert_eq!(cli.log_format, LogFormat::Text);
        assert!(matches!(
            cli.command,
            Some(Command::Status {
                api: Some(_),
                json: false
            })
        ));
    }
}
