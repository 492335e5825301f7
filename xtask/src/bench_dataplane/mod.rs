//! `cargo xtask bench dataplane`: the XDP program's cost per packet beside
//! a floor program and an empty one, how it grows with the flow table,
//! Maglev's rebuilds, pgbench through the VIP against direct, kernel NAT and HAProxy
//! (long connections and a connection per transaction), and the agent at
//! rest. Every figure is the median (min-max) of the rounds.

mod cost;
mod idle;
mod maglev;
mod pgbench;
mod scale;
mod setup;
mod stats;
mod xdp;

use std::{path::Path, time::Duration};

use anyhow::Context as _;

/// The parts of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// XDP cost per packet: empty, floor, vipx rows.
    Xdp,
    /// Flow hit at 1k, 100k and 1M flows.
    Scale,
    /// Maglev rebuild and flip at 3, 100 and 1,000 backends.
    Maglev,
    /// pgbench -S and -S -C: direct, vipx nat (one and three PgBouncers), kernel NAT, HAProxy; dsr.
    Pgbench,
    /// Idle agents' RSS and CPU.
    Idle,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::Xdp,
        Part::Scale,
        Part::Maglev,
        Part::Pgbench,
        Part::Idle,
    ];
}

/// What to run.
pub struct Options {
    pub parts: Vec<Part>,
    /// At least 3.
    pub rounds: u32,
    /// Seconds of each pgbench run.
    pub seconds: u32,
    /// The window of the idle measures.
    pub idle: Duration,
}

impl Options {
    /// Whether a part runs the agent binary (in the lab).
    pub fn needs_agent(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Pgbench | Part::Idle))
    }
}

/// Runs the parts, printing each table as it is done; `agent` is the
/// binary the lab's parts run.
pub fn run(opts: &Options, agent: Option<&Path>) -> anyhow::Result<()> {
    let agent = || agent.context("the agent binary was not built");
    let floor = crate::build::ebpf_object(true).with_file_name("vipx-floor");
    let rounds = opts.rounds.max(3);
    for part in &opts.parts {
        let table = match part {
            Part::Xdp => {
                let mut bench = xdp::Bench::new(&floor, 65536)?;
                xdp::table(&mut bench, rounds)?
            }
            Part::Scale => scale::table(&floor, rounds)?,
            Part::Maglev => maglev::table(rounds)?,
            Part::Pgbench => {
                let nat = pgbench::nat(agent()?, opts.seconds, rounds)?;
                format!("{nat}\n{}", pgbench::dsr(agent()?, opts.seconds, rounds)?)
            }
            Part::Idle => idle::table(agent()?, opts.idle)?,
        };
        println!("{table}");
    }
    Ok(())
}
