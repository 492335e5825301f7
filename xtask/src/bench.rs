//! `cargo xtask bench`: figures measured side by side in one run, printed
//! as tables with ratios. Timings live here, never in pass/fail tests.

use std::time::Duration;

use crate::{build, setup};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    what: BenchKind,
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Rounds: of the dataplane figures (at least 3; default 3), of each
    /// health measure (at least 5), of each failover
    /// event (default 5).
    #[arg(long)]
    rounds: Option<u32>,
    /// failover: the layouts, as numbers of nodes (2 and/or 3).
    #[arg(long, value_delimiter = ',', default_values_t = [2, 3])]
    nodes: Vec<usize>,
    /// failover: only this system (quick runs).
    #[arg(long, value_enum)]
    only: Option<crate::bench_failover::Only>,
    /// failover: seconds of the steady-state pgbench run (0: none).
    #[arg(long, default_value_t = 600)]
    steady_secs: u64,
    /// failover: only the partition row (3 nodes, vipx's quorum beside
    /// keepalived).
    #[arg(long)]
    partition_only: bool,
    /// sessions: the events, comma-separated (default: all); with no
    /// value, no sessions table.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
    events: Option<Vec<crate::bench_sessions::Event>>,
    /// sessions: the systems, comma-separated (default: all); with no
    /// value, no sessions table.
    #[arg(long, value_enum, value_delimiter = ',', num_args = 0..)]
    systems: Option<Vec<crate::bench_sessions::System>>,
    /// sessions: rates of new flows per second of the replication-lag
    /// table, comma-separated (default: 1000,10000); with no value, no lag
    /// table.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    rates: Option<Vec<u32>>,
    /// dataplane: the parts, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    parts: Option<Vec<crate::bench_dataplane::Part>>,
    /// dataplane: seconds of each idle-agent measure.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Skip `setup`.
    #[arg(long)]
    no_setup: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BenchKind {
    /// XDP cost per packet beside a floor program, its growth with the
    /// flow table, Maglev rebuilds, pgbench (-S and -C) through the VIP /
    /// direct / HAProxy, idle agents.
    Dataplane,
    /// Time from a PgBouncer's death to its removal, and from its restart
    /// to its return.
    Health,
    /// The client's gap when the master dies, stops or returns, for vipx
    /// and keepalived + HAProxy.
    Failover,
    /// Which PostgreSQL sessions and pgbench clients survive each
    /// failover event, for vipx with flow replication and without and for
    /// keepalived + HAProxy; and the replication lag at steady rates of
    /// new flows.
    Sessions,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.no_setup {
        setup::run()?;
    }
    build::ebpf(true)?;
    if let BenchKind::Dataplane = args.what {
        let opts = crate::bench_dataplane::Options {
            parts: args
                .parts
                .clone()
                .unwrap_or_else(|| crate::bench_dataplane::Part::ALL.to_vec()),
            rounds: args.rounds.unwrap_or(3),
            seconds: args.seconds,
            idle: Duration::from_secs(args.idle_secs),
        };
        // The XDP parts run the object this binary embeds: only the lab's
        // parts need the agent built.
        let agent = if opts.needs_agent() {
            Some(build::binaries(true)?)
        } else {
            None
        };
        return crate::bench_dataplane::run(&opts, agent.as_deref());
    }
    let agent = build::binaries(true)?;
    match args.what {
        BenchKind::Dataplane => unreachable!("handled above"),
        BenchKind::Failover => crate::bench_failover::run(
            &crate::bench_failover::Options {
                rounds: args.rounds.unwrap_or(5).max(1),
                nodes: args.nodes.clone(),
                only: args.only,
                steady_secs: args.steady_secs,
                partition_only: args.partition_only,
            },
            agent,
        ),
        BenchKind::Sessions => crate::bench_sessions::run(
            &crate::bench_sessions::Options {
                events: args
                    .events
                    .clone()
                    .unwrap_or_else(|| crate::bench_sessions::Event::ALL.to_vec()),
                systems: args
                    .systems
                    .clone()
                    .unwrap_or_else(|| crate::bench_sessions::System::ALL.to_vec()),
                rates: args.rates.clone().unwrap_or_else(|| vec![1_000, 10_000]),
            },
            &agent,
        ),
        BenchKind::Health => {
            println!(
                "{}",
                crate::bench_health::run(args.rounds.unwrap_or(5).max(5), agent)?
            );
            Ok(())
        }
    }
}
