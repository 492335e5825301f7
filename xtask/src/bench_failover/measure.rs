//! Running the rounds: each event on each system, one layout and advert
//! interval at a time.

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use vipx_lab::{Cluster, ClusterOptions};

use super::{
    Event, HEARTBEAT, Only, Options, Row,
    gap::{Analysis, analyse},
    probe::{self, Prober, monotonic_ns, wait_serving},
    report::ms,
    system_label,
    systems::{System, Vipx},
};
use crate::bench_lab::{keepalived::Keepalived, wait_for};

/// Probing before the event.
const LEAD: Duration = Duration::from_millis(300);
/// Probing after the new master is in place, at least.
const TAIL: Duration = Duration::from_millis(300);
/// Successes in a row that end the window after [`TAIL`].
const TAIL_STREAK: u64 = 200;
/// The most the VIP may take to answer again after node 0 is restored
/// (an ARP cache pointing at the wrong node heals within about a minute).
const SERVING_AGAIN: Duration = Duration::from_secs(90);

/// A VIP that takes longer than this to answer after node 0 is restored
/// is reported.
const SLOW_RESTORE: Duration = Duration::from_secs(1);

/// One round: prepare, probe around the event, restore. The round's
/// analysis is pushed as soon as it exists, even if the restore fails.
/// Returns how long the VIP took to answer again after the restore.
fn round(
    system: &mut dyn System,
    event: Event,
    round: u32,
    limit: Duration,
    results: &mut Vec<Analysis>,
) -> anyhow::Result<Duration> {
    system.prepare(event)?;
    wait_serving(system.client(), system.vip(), 20, limit)?;
    let prober = Prober::start(system.client(), system.vip());
    std::thread::sleep(LEAD);
    let at = monotonic_ns();
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
    outcome?;
    let a = analyse(&attempts, at);
    eprintln!("  {} round {round}: {}", event.name(), describe(&a));
    results.push(a);
    system.restore(event).context("restoring node 0")?;
    let took = wait_serving(system.client(), system.vip(), 20, SERVING_AGAIN)
        .context("after node 0 was restored")?;
    if took > SLOW_RESTORE {
        eprintln!(
            "  after node 0 was restored the VIP answered again only after {:.1} s; the nodes:\n{}",
            took.as_secs_f64(),
            system.diagnostics()
        );
    }
    Ok(took)
}

/// One round in words, for the log.
fn describe(a: &Analysis) -> String {
    let mut text = format!(
        "gap {} ms{}, {} of {} attempts failed (refused/reset/timeout/other {:?})",
        ms(a.gap),
        if a.recovered {
            ""
        } else {
            " (never recovered)"
        },
        a.failed,
        a.attempts,
        a.failed_by,
    );
    if let Some((from, to)) = a.span {
        let _ = write!(text, ", failures from {from:+.1} to {to:+.1} ms");
    }
    if a.before_event > 0 {
        let _ = write!(text, "; {} failed before the event", a.before_event);
    }
    if a.max_spacing > 3 * probe::PERIOD {
        let _ = write!(
            text,
            "; the prober was held up for {} ms once",
            ms(a.max_spacing)
        );
    }
    text
}

/// Every event on one system. A failed round is noted and the system is
/// reset; if that fails too, its remaining rows are not run.
fn measure_all(
    system: &mut dyn System,
    label: &str,
    advert_ms: u64,
    rounds: u32,
    limit: Duration,
    rows: &mut Vec<Row>,
) {
    let mut broken: Option<String> = None;
    for event in Event::ALL {
        let mut row = Row {
            system: label.into(),
            advert_ms,
            event,
            rounds: Vec::new(),
            errors: Vec::new(),
            slow_restores: Vec::new(),
        };
        if let Some(why) = &broken {
            row.errors.push(why.clone());
            rows.push(row);
            continue;
        }
        eprintln!("{label}, {advert_ms} ms adverts, {}:", event.name());
        for n in 0..rounds {
            let e = match round(system, event, n, limit, &mut row.rounds) {
                Ok(took) => {
                    if took > SLOW_RESTORE {
                        row.slow_restores.push(took);
                    }
                    continue;
                }
                Err(e) => e,
            };
            eprintln!(
                "  {} round {n} failed: {e:#}; the nodes:\n{}",
                event.name(),
                system.diagnostics()
            );
            row.errors.push(format!("round {n}: {e:#}"));
            let reset = system
                .reset()
                .and_then(|()| wait_serving(system.client(), system.vip(), 20, SERVING_AGAIN));
            if let Err(e) = reset {
                eprintln!("  {label}: the reset failed too: {e:#}");
                broken = Some(format!("not run: {label} could not be reset: {e:#}"));
                break;
            }
        }
        rows.push(row);
    }
}

/// The rows of one layout and advert interval.
pub fn layout(opts: &Options, agent: &Path, nodes: usize, advert_ms: u64, rows: &mut Vec<Row>) {
    let selected = |only: Only| opts.only.is_none_or(|o| o == only);
    // Master_Down_Interval (3 adverts and Skew_Time) with room to spare.
    let limit = Duration::from_millis(4 * advert_ms + 10_000);
    let cluster_opts = |heartbeat| ClusterOptions {
        advert_interval_ms: advert_ms,
        heartbeat,
        group_options: super::heartbeat_group_options(heartbeat),
        ..ClusterOptions::new(nodes, agent.to_owned())
    };
    let not_run = |rows: &mut Vec<Row>, system: String, why: String| {
        eprintln!("{system}, {advert_ms} ms adverts: not run: {why}");
        rows.extend(Event::ALL.map(|event| Row {
            system: system.clone(),
            advert_ms,
            event,
            rounds: Vec::new(),
            errors: vec![format!("not run: {why}")],
            slow_restores: Vec::new(),
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
                if let Err(e) = cluster.client.sysctl("net.ipv4.tcp_tw_reuse", "1") {
                    eprintln!("tcp_tw_reuse: {e:#}");
                }
                let mut vipx = Vipx { cluster, limit };
                measure_all(&mut vipx, &label, advert_ms, opts.rounds, limit, rows);
            }
            Err(e) => not_run(rows, label, format!("{e:#}")),
        }
    }
}
