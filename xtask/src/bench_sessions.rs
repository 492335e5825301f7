//! `cargo xtask bench sessions`: which PostgreSQL sessions survive a
//! failover. Eight long sessions through the VIP (a `SELECT 1` every
//! 100 ms) and pgbench with four persistent clients run while the master
//! (node 0 of two) loses its link, is killed, is stopped for 5 s, or is
//! stopped cleanly; vipx with flow replication (`[sync]`) and without, in
//! the same run. The replication lag is read from the master's histogram.

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use vipx_lab::{
    Cluster, ClusterOptions, PG_PORT, PG_USER, Pid, ProcSpec, Signal, VIP_PORT, http, pg_bin_dir,
    pgbench_init,
};

/// Long sessions.
const SESSIONS: usize = 8;
/// Their rounds (a query and a 100 ms sleep each): about 12 s.
const ROUNDS: usize = 110;
/// pgbench's persistent clients.
const CLIENTS: usize = 4;
/// When the event happens, after the load started.
const EVENT_AT: Duration = Duration::from_secs(4);
/// How long after the event the load may take to finish: a session or a
/// client still running then is stuck on a dead connection, lost.
const FINISH_WITHIN: Duration = Duration::from_secs(30);

/// What happens to the master (node 0).
#[derive(Clone, Copy, Debug)]
enum Event {
    LinkCut,
    Kill,
    Stall,
    Stop,
}

impl Event {
    const ALL: [Self; 4] = [Self::LinkCut, Self::Kill, Self::Stall, Self::Stop];

    fn name(self) -> &'static str {
        match self {
            Self::LinkCut => "master's link cut",
            Self::Kill => "master's agent killed (-9)",
            Self::Stall => "master's agent stopped 5 s (SIGSTOP)",
            Self::Stop => "master's agent stopped (SIGTERM)",
        }
    }

    fn apply(self, cluster: &Cluster) -> anyhow::Result<()> {
        let node = &cluster.nodes[0];
        match self {
            Self::LinkCut => node.host.set_connected(false),
            Self::Kill => cluster.lab.kill(node.agent, Signal::SIGKILL),
            Self::Stall => {
                cluster.lab.kill(node.agent, Signal::SIGSTOP)?;
                std::thread::sleep(Duration::from_secs(5));
                cluster.lab.kill(node.agent, Signal::SIGCONT)
            }
            Self::Stop => cluster.lab.kill(node.agent, Signal::SIGTERM),
        }
    }
}

/// What one run saw.
struct Outcome {
    sessions: usize,
    aborted: usize,
    failed: Option<u64>,
    /// pgbench itself was still stuck after [`FINISH_WITHIN`] (killed).
    stuck: bool,
    /// Replication lag on node 0: samples, p50 and p99 (bucket bounds, s).
    lag: Option<(u64, f64, f64)>,
}

/// Runs the table and prints it.
pub fn run(agent: &Path) -> anyhow::Result<()> {
    let mut table = String::new();
    writeln!(
        table,
        "Sessions through a failover, 2 nodes, heartbeat 1 ms x 10: {SESSIONS} long psql sessions \
         (SELECT 1 every 100 ms) and pgbench -S -n -c {CLIENTS} -j 2 -R 200 (persistent \
         connections); the event {} s in\n",
        EVENT_AT.as_secs()
    )?;
    writeln!(
        table,
        "| system | event | sessions kept | pgbench clients aborted | failed transactions | replication lag p50 / p99 (samples) |"
    )?;
    writeln!(table, "|---|---|---:|---:|---:|---|")?;
    for sync in [true, false] {
        for event in Event::ALL {
            let system = if sync {
                "vipx, [sync]"
            } else {
                "vipx, no replication"
            };
            eprintln!("sessions: {system}, {}", event.name());
            let outcome = one(agent, sync, event)?;
            let lag = outcome.lag.map_or("-".to_owned(), |(n, p50, p99)| {
                format!("<= {} / <= {} ({n})", seconds(p50), seconds(p99))
            });
            let row = format!(
                "| {system} | {} | {} of {SESSIONS} | {} of {CLIENTS}{} | {} | {lag} |",
                event.name(),
                outcome.sessions,
                outcome.aborted,
                if outcome.stuck {
                    " (pgbench stuck, killed)"
                } else {
                    ""
                },
                outcome.failed.map_or("-".to_owned(), |f| f.to_string()),
            );
            eprintln!("  {row}");
            writeln!(table, "{row}")?;
        }
    }
    println!("{table}");
    Ok(())
}

fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0} us", s * 1e6)
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

/// One event on a fresh cluster.
fn one(agent: &Path, sync: bool, event: Event) -> anyhow::Result<Outcome> {
    let cluster = Cluster::up(&ClusterOptions {
        heartbeat: Some(Duration::from_millis(1)),
        group_options: "heartbeat_multiplier = 10\n".into(),
        sync,
        ..ClusterOptions::new(2, agent.to_owned())
    })?;
    cluster.wait_master(0, Duration::from_secs(10))?;
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1)?;
    let sessions = (0..SESSIONS)
        .map(|i| start_session(&cluster, i))
        .collect::<anyhow::Result<Vec<Pid>>>()?;
    let pgbench = cluster.client.spawn(
        "pgbench",
        ProcSpec::new(pg_bin_dir()?.join("pgbench"))
            .args([
                "-h",
                &cluster.vip().to_string(),
                "-p",
                &VIP_PORT.to_string(),
            ])
            .args(["-U", PG_USER, "-S", "-n", "-c", &CLIENTS.to_string()])
            .args(["-j", "2", "-R", "200", "-T", "12", "postgres"])
            .env("PGCONNECT_TIMEOUT", "5"),
    )?;
    std::thread::sleep(EVENT_AT);
    let lag = lag(&cluster);
    event.apply(&cluster)?;
    let deadline = Instant::now() + FINISH_WITHIN;
    let finish = |pid: Pid| -> anyhow::Result<Option<std::process::ExitStatus>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = cluster.lab.wait_exit(pid, left)?;
        if status.is_none() {
            cluster.lab.kill(pid, Signal::SIGKILL)?;
        }
        Ok(status)
    };
    let mut kept = 0;
    for (i, pid) in sessions.into_iter().enumerate() {
        let status = finish(pid)?;
        let log = std::fs::read_to_string(cluster.client.log_path(&format!("session{i}")))
            .unwrap_or_default();
        let answered = log.lines().filter(|l| l.trim() == "1").count();
        if status.is_some_and(|s| s.success()) && answered == ROUNDS {
            kept += 1;
        }
    }
    let stuck = finish(pgbench)?.is_none();
    let report = std::fs::read_to_string(cluster.client.log_path("pgbench")).unwrap_or_default();
    Ok(Outcome {
        sessions: kept,
        aborted: report
            .lines()
            .filter(|l| l.contains("client ") && l.contains(" aborted"))
            .count(),
        failed: report
            .lines()
            .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok()),
        stuck,
        lag,
    })
}

/// Session `i`: a query and a 100 ms sleep, [`ROUNDS`] times, on one
/// connection.
fn start_session(cluster: &Cluster, i: usize) -> anyhow::Result<Pid> {
    let script = format!(
        "for i in $(seq {ROUNDS}); do echo 'SELECT 1;'; echo 'SELECT pg_sleep(0.1);'; done \
         | psql -X -A -t -v ON_ERROR_STOP=1 -h {vip} -p {VIP_PORT} -U {PG_USER} -d postgres",
        vip = cluster.vip()
    );
    cluster.client.spawn(
        &format!("session{i}"),
        ProcSpec::new("bash")
            .args(["-c", &script])
            .env("PGCONNECT_TIMEOUT", "5"),
    )
}

/// Node 0's replication lag so far: samples, and the upper bounds of the
/// buckets holding the median and the 99th percentile.
fn lag(cluster: &Cluster) -> Option<(u64, f64, f64)> {
    let (_, page) = http::get_from(&cluster.client, cluster.nodes[0].api, "/metrics").ok()?;
    let buckets: Vec<(f64, f64)> = page
        .lines()
        .filter_map(|l| l.strip_prefix("vipx_sync_lag_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let quantile = |q: f64| {
        buckets
            .iter()
            .find(|(_, count)| *count >= q * total)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    Some((total as u64, quantile(0.5), quantile(0.99)))
}
