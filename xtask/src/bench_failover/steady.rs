//! The steady-state run: pgbench at full load through the VIP of a healthy
//! two-node cluster for a while, counting the MASTER/BACKUP transitions no
//! failure caused (false failovers) on each agent's timeline, and the
//! pgbench clients that lost their connection. The nodes replicate their
//! flows (`[sync]`), as a deployment that cares about sessions does.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;
use vipx_agent::events::{Event, EventKind};
use vipx_lab::{
    Cluster, ClusterOptions, PG_PORT, PG_USER, ProcSpec, VIP_PORT, http, pg_bin_dir, pgbench_init,
};

/// What the run saw.
struct Steady {
    /// Group state changes per node during the run.
    transitions: Vec<Vec<Event>>,
    tps: Option<f64>,
    failed: Option<u64>,
    /// Clients pgbench reports as aborted (a broken connection aborts one).
    aborted: usize,
    exit: Option<i32>,
}

/// The timeline of node `index` after sequence number `after`.
fn events(cluster: &Cluster, index: usize, after: u64) -> anyhow::Result<Vec<Event>> {
    let (code, body) = http::get_from(
        &cluster.client,
        cluster.nodes[index].api,
        &format!("/api/v1/events?after={after}"),
    )?;
    anyhow::ensure!(code == 200, "/api/v1/events answered {code}");
    serde_json::from_str(&body).context("the events JSON")
}

/// `value` after `prefix` on a line of pgbench's report.
fn report_value<T: std::str::FromStr>(report: &str, prefix: &str) -> Option<T> {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn measure(cluster: &Cluster, secs: u64) -> anyhow::Result<Steady> {
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    let before = (0..cluster.nodes.len())
        .map(|i| Ok(events(cluster, i, 0)?.last().map_or(0, |e| e.seq)))
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let spec = ProcSpec::new(pg_bin_dir()?.join("pgbench"))
        .args([
            "-h",
            &cluster.vip().to_string(),
            "-p",
            &VIP_PORT.to_string(),
        ])
        .args(["-U", PG_USER, "-S", "-n", "-c", "8", "-j", "2"])
        .args(["-T", &secs.to_string(), "postgres"])
        .env("PGCONNECT_TIMEOUT", "5");
    // Not checked: clients that lost their connection make pgbench exit 2,
    // and its report is what this run is for.
    let out = cluster
        .client
        .run_spec(&spec, Duration::from_secs(secs + 120))?;
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    let transitions = before
        .iter()
        .enumerate()
        .map(|(i, after)| {
            Ok(events(cluster, i, *after)?
                .into_iter()
                .filter(|e| e.kind == EventKind::Group)
                .collect())
        })
        .collect::<anyhow::Result<Vec<Vec<Event>>>>()?;
    if report_value::<f64>(&report, "tps = ").is_none() {
        eprintln!("pgbench printed no report; its stderr:\n{errors}");
    }
    Ok(Steady {
        transitions,
        tps: report_value(&report, "tps = "),
        failed: report_value(&report, "number of failed transactions: "),
        aborted: errors
            .lines()
            .filter(|l| l.contains("client ") && l.contains(" aborted"))
            .count(),
        exit: out.status.code(),
    })
}

/// One steady run of `secs` on a fresh two-node cluster; prints what
/// changed state and returns the table row.
fn row(
    agent: &Path,
    secs: u64,
    heartbeat: Option<Duration>,
    advert_ms: u64,
) -> anyhow::Result<String> {
    let label = steady_label(heartbeat);
    eprintln!("steady state: {label}, {advert_ms} ms adverts, {secs} s of pgbench");
    let cluster = Cluster::up(&ClusterOptions {
        advert_interval_ms: advert_ms,
        heartbeat,
        group_options: super::heartbeat_group_options(heartbeat),
        // A false takeover moves the VIP: replication keeps the clients'
        // sessions through it.
        sync: true,
        ..ClusterOptions::new(2, agent.to_owned())
    })?;
    let steady = measure(&cluster, secs)?;
    for (i, events) in steady.transitions.iter().enumerate() {
        for e in events {
            eprintln!(
                "  n{}: {} -> {} ({}) at {} ms",
                i + 1,
                e.from,
                e.to,
                e.reason,
                e.unix_ms
            );
        }
    }
    let per_node: Vec<String> = steady
        .transitions
        .iter()
        .map(|t| t.len().to_string())
        .collect();
    Ok(format!(
        "| {label} | {advert_ms} ms | {secs} | {} ({}) | {} | {} | {} | {} |",
        steady.transitions.iter().map(Vec::len).sum::<usize>(),
        per_node.join(", "),
        steady.tps.map_or("-".into(), |t| format!("{t:.0}")),
        steady.failed.map_or("-".into(), |f| f.to_string()),
        steady.aborted,
        steady.exit.map_or("signal".into(), |c| c.to_string()),
    ))
}

/// The system of a steady-state row: vipx, with flow replication.
fn steady_label(heartbeat: Option<Duration>) -> String {
    format!("{}, [sync]", super::system_label(heartbeat))
}

/// pgbench for `secs` through the VIP of two nodes with `heartbeat` (or
/// VRRP alone), at each advert interval; returns the table.
pub fn run(agent: &Path, secs: u64, heartbeat: Option<Duration>, adverts_ms: &[u64]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Steady state: pgbench -S -c 8 -j 2 -T {secs} through the VIP of 2 healthy nodes; every MASTER/BACKUP change on the agents' timelines is a false failover"
    );
    let _ = writeln!(
        out,
        "| system | adverts | seconds | state changes (n1, n2) | pgbench TPS | failed transactions | aborted clients | pgbench exit |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---:|---:|---:|");
    for &advert_ms in adverts_ms {
        match row(agent, secs, heartbeat, advert_ms) {
            Ok(line) => {
                let _ = writeln!(out, "{line}");
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | {advert_ms} ms | {secs} | not run: {} | - | - | - | - |",
                    steady_label(heartbeat),
                    format!("{e:#}").replace('\n', " ")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_figures_are_read() {
        let report = "number of transactions actually processed: 10/10\nnumber of failed transactions: 3 (0.1%)\ntps = 1234.5 (without initial connection time)\n";
        assert_eq!(report_value::<f64>(report, "tps = "), Some(1234.5));
        assert_eq!(
            report_value::<u64>(report, "number of failed transactions: "),
            Some(3)
        );
        assert_eq!(report_value::<u64>("nothing", "tps = "), None);
    }
}
