//! `cargo xtask bench sessions`: which PostgreSQL sessions survive a
//! failover, and how far behind replication runs.
//!
//! Each row is one event on a fresh lab: eight long psql sessions through
//! the VIP (a `SELECT 1` every 100 ms) and pgbench with four persistent
//! clients run while the master (node 0 of two) is killed, loses its link,
//! is stopped for 5 s, is stopped cleanly, leaves and returns (preempting),
//! or is restarted; the load lasts until a few seconds after the event's
//! last move. vipx with flow replication (`[sync]`) and without, and
//! keepalived + HAProxy with the closest counterpart of each event, in the
//! same run. The replication lag is the master's histogram; a second table
//! measures it at steady rates of new flows.

mod events;
mod flows;
mod lag;
mod rates;

use std::{
    fmt::Write as _,
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

pub use events::Event;
use lag::{Histogram, LAG};
use vipx_lab::sessions::{CLIENTS, Load, LoadOutcome, SESSIONS, SessionEnd};
use vipx_lab::{Cluster, ClusterOptions, Host, PG_PORT, pgbench_init};

use crate::bench_lab::keepalived::{KA_VIP, Keepalived};

/// When the event happens, after the load started.
const EVENT_AT: Duration = Duration::from_secs(4);
/// How long the load goes on after the event's last move.
const TAIL: Duration = Duration::from_secs(4);
/// keepalived's advert interval.
const KA_ADVERT_MS: u64 = 10;

/// A system measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// vipx with flow replication (`[sync]`).
    VipxSync,
    /// vipx without replication.
    Vipx,
    /// keepalived 2.2 (10 ms adverts) + HAProxy 2.6 on two hosts.
    Keepalived,
}

impl System {
    pub const ALL: [Self; 3] = [Self::VipxSync, Self::Vipx, Self::Keepalived];

    fn label(self) -> &'static str {
        match self {
            Self::VipxSync => "vipx, [sync]",
            Self::Vipx => "vipx, no replication",
            Self::Keepalived => "keepalived 2.2 + HAProxy 2.6",
        }
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Options {
    pub events: Vec<Event>,
    pub systems: Vec<System>,
    /// New flows per second of the lag table.
    pub rates: Vec<u32>,
}

/// Runs the tables, each row printed (to stderr) as soon as it is
/// measured, each table once it is complete.
pub fn run(opts: &Options, agent: &Path) -> anyhow::Result<()> {
    let began = Instant::now();
    if !opts.events.is_empty() && !opts.systems.is_empty() {
        let mut table = heading();
        for &event in &opts.events {
            for &system in &opts.systems {
                eprintln!("sessions: {}, {}", system.label(), event.label());
                let row = row(agent, system, event);
                eprintln!("  {row}");
                let _ = writeln!(table, "{row}");
            }
        }
        println!("{table}");
    }
    if !opts.rates.is_empty() {
        println!("{}", rates::heading());
        for row in rates::rows(agent, &opts.rates) {
            println!("{row}");
        }
        println!();
    }
    println!("Total wall time: {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}

fn heading() -> String {
    format!(
        "Sessions through a failover, 2 nodes, vipx with heartbeat 1 ms x 10, keepalived with \
         {KA_ADVERT_MS} ms adverts: {SESSIONS} long psql sessions (SELECT 1 every 100 ms) and \
         pgbench -S -n -c {CLIENTS} -j 2 -R 200 (persistent connections); the event {} s in, \
         the load until {} s after its last move. Replication lag: the master's \
         vipx_sync_lag_seconds before the event (one sample per acknowledged batch), p50 / p99 / \
         max as the upper bounds of their buckets.\n\n\
         | event | system | done to the master | sessions kept | pgbench clients aborted | \
         failed transactions | replication lag p50 / p99 / max (samples) | notes |\n\
         |---|---|---|---:|---:|---:|---|---|\n",
        EVENT_AT.as_secs(),
        TAIL.as_secs()
    )
}

/// The options of the vipx clusters: 2 nodes, heartbeat 1 ms x 10.
fn vipx_options(agent: &Path, sync: bool) -> ClusterOptions {
    ClusterOptions {
        heartbeat: Some(Duration::from_millis(1)),
        group_options: "heartbeat_multiplier = 10\n".into(),
        sync,
        ..ClusterOptions::new(2, agent.to_owned())
    }
}

/// What one row saw.
struct Measured {
    load: LoadOutcome,
    /// The master's lag histogram before the event.
    lag: Option<Histogram>,
    /// The event did not end as it should (a deadline passed...).
    event_error: Option<String>,
    /// pgbench's planned run ended before (or within 1 s after) the event's
    /// last move.
    pgbench_short: bool,
}

/// One row of the sessions table.
fn row(agent: &Path, system: System, event: Event) -> String {
    let done = match system {
        System::Keepalived => event.keepalived_name(),
        System::VipxSync | System::Vipx => event.name(),
    };
    let cells = match measure(agent, system, event) {
        Ok(m) => cells(&m),
        Err(e) => format!("- | - | - | - | not measured: {e:#}"),
    };
    format!(
        "| {} | {} | {done} | {cells} |",
        event.label(),
        system.label()
    )
}

/// The cells from "sessions kept" on.
fn cells(m: &Measured) -> String {
    let mut notes = Vec::new();
    if let Some(e) = &m.event_error {
        notes.push(format!("event: {e}"));
    }
    let lost: Vec<String> = [
        (SessionEnd::Reset, "reset"),
        (SessionEnd::Stuck, "stuck (killed)"),
        (SessionEnd::Failed, "failed otherwise"),
    ]
    .iter()
    .filter_map(|(end, what)| {
        let n = m.load.count(*end);
        (n > 0).then(|| format!("{n} {what}"))
    })
    .collect();
    if !lost.is_empty() {
        notes.push(format!("sessions lost: {}", lost.join(", ")));
    }
    if m.load.pgbench_stuck {
        notes.push("pgbench stuck (killed)".into());
    }
    if m.pgbench_short {
        notes.push("pgbench's run ended before the event's last move".into());
    }
    let lag = m.lag.as_ref().filter(|h| h.count() > 0).map_or_else(
        || "-".to_owned(),
        |h| {
            let [p50, p99, max] = h.summary();
            format!("{p50} / {p99} / {max} ({})", h.count())
        },
    );
    format!(
        "{} of {SESSIONS} | {} of {CLIENTS} | {} | {lag} | {}",
        m.load.kept(),
        m.load.aborted,
        m.load.failed.map_or("-".to_owned(), |f| f.to_string()),
        if notes.is_empty() {
            "-".to_owned()
        } else {
            notes.join("; ")
        }
    )
}

/// One event on a fresh lab (torn down when this returns, also on error).
fn measure(agent: &Path, system: System, event: Event) -> anyhow::Result<Measured> {
    match system {
        System::VipxSync | System::Vipx => {
            let mut cluster = Cluster::up(&vipx_options(agent, system == System::VipxSync))?;
            pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
            let running = Running::start(&cluster.client, cluster.vip().into(), event)?;
            let lag = cluster
                .metrics(0)
                .ok()
                .and_then(|page| Histogram::parse(&page, LAG));
            let result = events::vipx(&mut cluster, event);
            running.finish(result, lag)
        }
        System::Keepalived => {
            // The lab's client and PgBouncers; its one vipx node idles.
            let cluster = Cluster::up(&ClusterOptions::new(1, agent.to_owned()))?;
            let limit = Duration::from_millis(4 * KA_ADVERT_MS + 10_000);
            let mut ka = Keepalived::up(&cluster, 2, KA_ADVERT_MS, limit)?;
            pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
            let running = Running::start(&cluster.client, KA_VIP.into(), event)?;
            let result = events::keepalived(&mut ka, event);
            if result.is_err() {
                eprintln!("  keepalived:\n{}", ka.diagnostics());
            }
            running.finish(result, None)
        }
    }
}

/// The load, running until the event is done to the master.
struct Running {
    load: Load,
}

impl Running {
    /// Starts the load, planned to outlast the event, and waits until it
    /// is time for the event.
    fn start(client: &Host, vip: IpAddr, event: Event) -> anyhow::Result<Self> {
        let load = Load::start(client, vip, EVENT_AT + event.expected() + TAIL)?;
        std::thread::sleep(EVENT_AT);
        Ok(Self { load })
    }

    /// After the event: the load goes on for [`TAIL`] (at least until
    /// pgbench's planned end), then what became of it.
    fn finish(self, event: anyhow::Result<()>, lag: Option<Histogram>) -> anyhow::Result<Measured> {
        let done = Instant::now();
        let pgbench_end = self.load.pgbench_end();
        let load = self.load.finish(pgbench_end.max(done + TAIL))?;
        Ok(Measured {
            load,
            lag,
            event_error: event.err().map(|e| format!("{e:#}")),
            pgbench_short: pgbench_end < done + Duration::from_secs(1),
        })
    }
}
