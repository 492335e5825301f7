//! `cargo xtask bench failover`: the unavailability a client sees when the
//! VIP's master is killed, loses its link, is stopped, or returns and
//! preempts — for keepalived 2.2 + HAProxy 2.6, vipx with VRRP alone and
//! vipx with its fast heartbeat, with 2 and 3 nodes, in the same run; and a
//! steady-state run counting false failovers under load.

mod gap;
mod measure;
mod partition;
mod probe;
mod report;
mod steady;
mod systems;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use gap::Analysis;

/// The fast heartbeat's interval in the heartbeat rows.
const HEARTBEAT: Duration = Duration::from_millis(1);
/// Its detect multiplier: 10 x 1 ms. With 3 (3 ms) the 10-minute
/// steady-state run under full pgbench load saw 164 false takeovers: on 2
/// busy cores packet processing stalls for 3-7 ms at times.
const HEARTBEAT_MULTIPLIER: u8 = 10;

/// The group settings of the heartbeat rows (none for VRRP alone).
fn heartbeat_group_options(heartbeat: Option<Duration>) -> String {
    heartbeat
        .map(|_| format!("heartbeat_multiplier = {HEARTBEAT_MULTIPLIER}\n"))
        .unwrap_or_default()
}

/// Advert intervals measured.
const ADVERTS_MS: [u64; 2] = [10, 1000];

/// What happens to the master (node 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Kill,
    LinkCut,
    Stop,
    Failback,
}

impl Event {
    const ALL: [Self; 4] = [Self::Kill, Self::LinkCut, Self::Stop, Self::Failback];

    fn name(self) -> &'static str {
        match self {
            Self::Kill => "master killed (-9)",
            Self::LinkCut => "master's link cut",
            Self::Stop => "master stopped (SIGTERM)",
            Self::Failback => "old master returns (preempt)",
        }
    }

    /// The aim: a short gap on a loss, none at all on a planned change.
    fn aim(self) -> Aim {
        match self {
            Self::Kill | Self::LinkCut => Aim::MedianAtMost(Duration::from_millis(15)),
            Self::Stop | Self::Failback => Aim::NoFailure,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Aim {
    MedianAtMost(Duration),
    NoFailure,
}

/// `--only`: one system, for quick runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    /// keepalived 2.2 + HAProxy 2.6.
    Keepalived,
    /// vipx with VRRP alone.
    Vrrp,
    /// vipx with the fast heartbeat.
    Heartbeat,
}

/// The bench's options.
#[derive(Clone, Debug)]
pub struct Options {
    pub rounds: u32,
    /// Layouts: numbers of nodes.
    pub nodes: Vec<usize>,
    pub only: Option<Only>,
    /// Seconds of the steady-state run (0: none).
    pub steady_secs: u64,
    /// Only the partition row (no layouts, no steady-state run).
    pub partition_only: bool,
}

/// The name of a vipx system in the tables.
pub fn system_label(heartbeat: Option<Duration>) -> String {
    match heartbeat {
        Some(interval) => format!(
            "vipx (heartbeat {} ms x {HEARTBEAT_MULTIPLIER})",
            interval.as_secs_f64() * 1e3
        ),
        None => "vipx (VRRP only)".into(),
    }
}

/// One row of a layout's table.
pub struct Row {
    system: String,
    advert_ms: u64,
    event: Event,
    /// The rounds measured.
    rounds: Vec<Analysis>,
    /// Rounds that failed, or why the row was not measured at all.
    errors: Vec<String>,
    /// How long the VIP took to answer again after node 0 was restored,
    /// when that was slow.
    slow_restores: Vec<Duration>,
}

/// Runs the layouts and the steady-state run, printing each table as soon
/// as it is done.
pub fn run(opts: &Options, agent: PathBuf) -> anyhow::Result<()> {
    let began = Instant::now();
    for &nodes in &opts.nodes {
        anyhow::ensure!((2..=3).contains(&nodes), "--nodes: 2 or 3, not {nodes}");
    }
    if opts.partition_only {
        println!("{}", partition::run(&agent, opts.rounds));
        println!("Total wall time: {:.0} s", began.elapsed().as_secs_f64());
        return Ok(());
    }
    for &nodes in &opts.nodes {
        let mut rows = Vec::new();
        for advert_ms in ADVERTS_MS {
            measure::layout(opts, &agent, nodes, advert_ms, &mut rows);
        }
        println!("{}", report::table(nodes, opts.rounds, &rows));
    }
    if opts.nodes.contains(&3) && opts.only.is_none() {
        println!("{}", partition::run(&agent, opts.rounds));
    }
    if opts.steady_secs > 0 {
        let heartbeat = (opts.only != Some(Only::Vrrp)).then_some(HEARTBEAT);
        println!(
            "{}",
            steady::run(&agent, opts.steady_secs, heartbeat, &ADVERTS_MS[..1])
        );
    }
    println!("Total wall time: {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}
