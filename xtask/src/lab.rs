//! `cargo xtask lab`: the vipx cluster in network namespaces, up until
//! Ctrl-C, then torn down to the last namespace, process and pin.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use nix::sys::signal::{SigSet, Signal};
use vipx_lab::{Cluster, ClusterOptions};

use crate::build;

/// The line printed once the lab is ready (tests wait for it).
pub const READY_LINE: &str = "Press Ctrl-C to stop the lab.";

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Number of agent nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    nodes: u8,
    /// Skip `setup`.
    #[arg(long)]
    no_setup: bool,
    /// Build the agent in release mode.
    #[arg(long)]
    release: bool,
    /// Use this vipx-agent binary instead of building one (no build at all).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// The fast heartbeat's interval between the nodes, e.g. `1ms`; `off`
    /// leaves failure detection to VRRP alone.
    #[arg(long, default_value = "1ms", value_parser = parse_heartbeat)]
    heartbeat: Heartbeat,
    /// Without flow replication between the nodes (`[sync]`): open
    /// sessions then survive a failover only when the new master happens to
    /// pick the same backend and NAT port.
    #[arg(long)]
    no_sync: bool,
    /// Heartbeats missed before a backup takes over. 10 x 1 ms rides out
    /// the few-millisecond packet-processing stalls of a busy 2-core
    /// machine (see the README).
    #[arg(long, default_value_t = 10)]
    heartbeat_multiplier: u8,
}

/// `--heartbeat`: an interval or `off`.
#[derive(Clone, Copy, Debug)]
struct Heartbeat(Option<Duration>);

fn parse_heartbeat(text: &str) -> Result<Heartbeat, String> {
    if text == "off" {
        return Ok(Heartbeat(None));
    }
    humantime::parse_duration(text)
        .map(|d| Heartbeat(Some(d)))
        .map_err(|err| format!("{text:?}: {err} (an interval such as 2ms, or off)"))
}

pub fn run(args: &LabArgs) -> anyhow::Result<()> {
    let agent_bin = build::agent(args.agent_bin.as_deref(), !args.no_setup, args.release)?;
    let signals = block_stop_signals()?;

    println!(
        "Bringing up the lab: {} nodes, a client, PostgreSQL and 3 PgBouncers...",
        args.nodes
    );
    let cluster = Cluster::up(&ClusterOptions {
        heartbeat: args.heartbeat.0,
        group_options: format!("heartbeat_multiplier = {}\n", args.heartbeat_multiplier),
        sync: !args.no_sync,
        ..ClusterOptions::new(usize::from(args.nodes), agent_bin)
    })?;
    println!("{}", cluster.access_text());
    println!("{READY_LINE}");

    let mut reported = Vec::new();
    let signal = loop {
        if let Some(signal) = wait_signal(&signals, Duration::from_secs(1)) {
            break signal;
        }
        for node in &cluster.nodes {
            if !reported.contains(&node.agent) && !cluster.lab.is_running(node.agent) {
                reported.push(node.agent);
                println!(
                    "vipx-agent on {} exited; its log:\n{}",
                    node.host.name(),
                    cluster.lab.log_tail(node.agent, 20)
                );
            }
        }
    };
    println!("\n{signal}: tearing the lab down...");
    let id = cluster.lab.id().to_owned();
    drop(cluster);
    println!("lab {id} removed.");
    Ok(())
}

/// Blocks Ctrl-C, SIGTERM and SIGHUP, to be taken synchronously with
/// [`wait_signal`], so that a teardown always runs. The mask is inherited
/// by the lab's helper threads; the processes the lab starts get a clean
/// mask (std resets it at exec).
pub(crate) fn block_stop_signals() -> anyhow::Result<SigSet> {
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals.thread_block().context("blocking signals")?;
    Ok(signals)
}

/// Waits up to `timeout` for one of the blocked `signals`.
pub(crate) fn wait_signal(signals: &SigSet, timeout: Duration) -> Option<Signal> {
    let timeout = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(1),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: a valid signal set and timespec; no siginfo requested.
    let number = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    Signal::try_from(number).ok()
}
