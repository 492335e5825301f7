//! `cargo xtask bench failover`: the unavailability a client sees when the
//! VIP's master is killed, loses its link, is stopped, or returns and
//! preempts — for keepalived 2.2 + HAProxy 2.6, vipx with VRRP alone and
//! vipx with its fast heartbeat, with 2 and 3 nodes, in the same run; and a
//! steady-state run counting false failovers under load.

mod probe;
mod steady;
mod systems;

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use vipx_lab::{Cluster, ClusterOptions};

use probe::{Analysis, Prober, analyse, wait_serving};
use systems::{Keepalived, System, Vipx, wait_for};

/// The fast heartbeat's interval in the heartbeat rows.
const HEARTBEAT: Duration = Duration::from_millis(1);
/// Advert intervals measured.
const ADVERTS_MS: [u64; 2] = [10, 1000];
/// Probing before the event.
const LEAD: Duration = Duration::from_millis(300);
/// Probing after the new master is in place, at least.
const TAIL: Duration = Duration::from_millis(300);
/// Successes in a row that end the window after [`TAIL`].
const TAIL_STREAK: u64 = 200;

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
}

/// The name of a vipx system in the tables.
pub fn system_label(heartbeat: Option<Duration>) -> String {
    match heartbeat {
        Some(interval) => format!("vipx (heartbeat {} ms)", interval.as_secs_f64() * 1e3),
        None => "vipx (VRRP only)".into(),
    }
}

/// One row of a layout's table.
struct Row {
    system: String,
    advert_ms: u64,
    event: Event,
    /// The rounds, or why the row could not be measured.
    rounds: Result<Vec<Analysis>, String>,
}

/// The rounds of one event on `system`.
fn measure(
    system: &mut dyn System,
    event: Event,
    rounds: u32,
    limit: Duration,
) -> anyhow::Result<Vec<Analysis>> {
    let mut results = Vec::new();
    for round in 0..rounds {
        system.prepare(event)?;
        wait_serving(system.client(), system.vip(), 20, limit)?;
        let prober = Prober::start(system.client(), system.vip());
        std::thread::sleep(LEAD);
        let at = Instant::now();
        let outcome = system
            .event(event)
            .and_then(|()| wait_for("the new master in place", limit, || system.settled(event)));
        if outcome.is_ok() {
            let settled = Instant::now();
            std::thread::sleep(TAIL);
            while prober.streak() < TAIL_STREAK && settled.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let attempts = prober.finish()?;
        outcome.with_context(|| format!("{} round {round}", event.name()))?;
        let a = analyse(&attempts, at);
        eprintln!(
            "  {} round {round}: gap {:.1} ms{}, {} of {} attempts failed (refused/reset/timeout/other {:?}){}",
            event.name(),
            a.gap.as_secs_f64() * 1e3,
            if a.recovered {
                ""
            } else {
                " (never recovered)"
            },
            a.failed,
            a.attempts,
            a.failed_by,
            a.span
                .map(|(from, to)| format!(", failures from {from:+.1} to {to:+.1} ms"))
                .unwrap_or_default(),
        );
        results.push(a);
        system.restore(event)?;
        let took = wait_serving(system.client(), system.vip(), 20, Duration::from_secs(90))?;
        if took > Duration::from_secs(1) {
            eprintln!(
                "  after restoring node 0 the VIP answered again only after {:.1} s",
                took.as_secs_f64()
            );
        }
    }
    Ok(results)
}

/// Every event on one system; an error ends the system's rows.
fn measure_all(
    system: &mut dyn System,
    label: &str,
    advert_ms: u64,
    rounds: u32,
    limit: Duration,
    rows: &mut Vec<Row>,
) {
    for event in Event::ALL {
        eprintln!("{label}, {advert_ms} ms adverts, {}:", event.name());
        let result = measure(system, event, rounds, limit);
        let failed = result.is_err();
        rows.push(Row {
            system: label.into(),
            advert_ms,
            event,
            rounds: result.map_err(|e| format!("{e:#}")),
        });
        if failed {
            return;
        }
    }
}

/// The rows of one layout and advert interval.
fn layout_rows(
    opts: &Options,
    agent: &std::path::Path,
    nodes: usize,
    advert_ms: u64,
    rows: &mut Vec<Row>,
) {
    let selected = |only: Only| opts.only.is_none_or(|o| o == only);
    // Master_Down_Interval (3 adverts and Skew_Time) with room to spare.
    let limit = Duration::from_millis(4 * advert_ms + 10_000);
    let cluster_opts = |heartbeat| ClusterOptions {
        advert_interval_ms: advert_ms,
        heartbeat,
        ..ClusterOptions::new(nodes, agent.to_owned())
    };
    let not_run = |rows: &mut Vec<Row>, system: String, why: String| {
        eprintln!("{system}, {advert_ms} ms adverts: not run: {why}");
        rows.extend(Event::ALL.map(|event| Row {
            system: system.clone(),
            advert_ms,
            event,
            rounds: Err(why.clone()),
        }));
    };
    if selected(Only::Keepalived) || selected(Only::Vrrp) {
        match Cluster::up(&cluster_opts(None)) {
            Ok(cluster) => {
                if let Err(e) = cluster.client.sysctl("net.ipv4.tcp_tw_reuse", "1") {
                    eprintln!("tcp_tw_reuse: {e:#}");
                }
                if selected(Only::Keepalived) {
                    let label = "keepalived 2.2 + HAProxy 2.6";
                    match Keepalived::up(&cluster, nodes, advert_ms, limit) {
                        Ok(mut ka) => {
                            measure_all(&mut ka, label, advert_ms, opts.rounds, limit, rows);
                        }
                        Err(e) => not_run(rows, label.into(), format!("{e:#}")),
                    }
                }
                if selected(Only::Vrrp) {
                    let mut vipx = Vipx { cluster, limit };
                    let label = system_label(None);
                    measure_all(&mut vipx, &label, advert_ms, opts.rounds, limit, rows);
                }
            }
            Err(e) => not_run(rows, "(lab)".into(), format!("{e:#}")),
        }
    }
    if selected(Only::Heartbeat) {
        let label = system_label(Some(HEARTBEAT));
        match Cluster::up(&cluster_opts(Some(HEARTBEAT))) {
            Ok(cluster) => {
                let _ = cluster.client.sysctl("net.ipv4.tcp_tw_reuse", "1");
                let mut vipx = Vipx { cluster, limit };
                measure_all(&mut vipx, &label, advert_ms, opts.rounds, limit, rows);
            }
            Err(e) => not_run(rows, label, format!("{e:#}")),
        }
    }
}

/// Milliseconds with one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// `min | median | max | failed attempts (median)` of a row's rounds.
fn summary(rounds: &[Analysis]) -> String {
    let mut gaps: Vec<Duration> = rounds.iter().map(|a| a.gap).collect();
    let mut failed: Vec<usize> = rounds.iter().map(|a| a.failed).collect();
    gaps.sort();
    failed.sort_unstable();
    let open = if rounds.iter().any(|a| !a.recovered) {
        ">"
    } else {
        ""
    };
    format!(
        "{} | {} | {open}{} | {}",
        ms(gaps[0]),
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() - 1]),
        failed[failed.len() / 2]
    )
}

/// Whether a row meets its event's aim, in words.
fn verdict(event: Event, rounds: &[Analysis]) -> String {
    let mut gaps: Vec<Duration> = rounds.iter().map(|a| a.gap).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    match event.aim() {
        Aim::MedianAtMost(bound) => format!(
            "median {} ms: {}",
            ms(median),
            if median <= bound { "met" } else { "missed" }
        ),
        Aim::NoFailure => {
            let failed: usize = rounds.iter().map(|a| a.failed).sum();
            format!(
                "{failed} failed attempts in {} rounds: {}",
                rounds.len(),
                if failed == 0 { "met" } else { "missed" }
            )
        }
    }
}

fn table(nodes: usize, rounds: u32, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Failover gap, {nodes} nodes, {rounds} rounds: a client starts a new connection through the VIP every 1 ms (open loop; connect + SSLRequest + PgBouncer's answer within {} ms); gap = from the last success started before the failures to the first success started after them",
        probe::ATTEMPT_TIMEOUT.as_millis()
    );
    let _ = writeln!(
        out,
        "| system | adverts | event | min (ms) | median (ms) | max (ms) | failed attempts (median) |"
    );
    let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|");
    for row in rows {
        let figures = match &row.rounds {
            Ok(rounds) if !rounds.is_empty() => summary(rounds),
            Ok(_) => "- | - | - | -".into(),
            Err(_) => "not run | - | - | -".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} ms | {} | {figures} |",
            row.system,
            row.advert_ms,
            row.event.name()
        );
    }
    let _ = writeln!(
        out,
        "\nAim: median <= 15 ms on kill -9 and link cut; no failed attempt on graceful stop and failback."
    );
    let heartbeat = system_label(Some(HEARTBEAT));
    for row in rows.iter().filter(|r| r.system == heartbeat) {
        let verdict = match &row.rounds {
            Ok(rounds) if !rounds.is_empty() => verdict(row.event, rounds),
            Ok(_) => "no rounds".into(),
            Err(_) => "not run".into(),
        };
        let _ = writeln!(
            out,
            "- {heartbeat}, {} ms adverts, {}: {verdict}",
            row.advert_ms,
            row.event.name()
        );
    }
    let mut errors: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.rounds
                .as_ref()
                .err()
                .map(|e| format!("{}, {} ms adverts: {e}", r.system, r.advert_ms))
        })
        .collect();
    errors.dedup();
    for e in errors {
        let _ = writeln!(out, "- not run or stopped: {e}");
    }
    out
}

/// Runs the layouts and the steady-state run, printing each table as soon
/// as it is done.
pub fn run(opts: &Options, agent: PathBuf) -> anyhow::Result<()> {
    let began = Instant::now();
    for &nodes in &opts.nodes {
        anyhow::ensure!((2..=3).contains(&nodes), "--nodes: 2 or 3, not {nodes}");
    }
    for &nodes in &opts.nodes {
        let mut rows = Vec::new();
        for advert_ms in ADVERTS_MS {
            layout_rows(opts, &agent, nodes, advert_ms, &mut rows);
        }
        println!("{}", table(nodes, opts.rounds, &rows));
    }
    if opts.steady_secs > 0 {
        let heartbeat = (opts.only != Some(Only::Vrrp)).then_some(HEARTBEAT);
        match steady::run(agent, opts.steady_secs, heartbeat) {
            Ok(text) => println!("{text}"),
            Err(e) => println!(
                "Steady state ({}): not run: {e:#}\n",
                system_label(heartbeat)
            ),
        }
    }
    println!("Total wall time: {:.0} s", began.elapsed().as_secs_f64());
    Ok(())
}
