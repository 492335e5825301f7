//! PostgreSQL sessions through a failover: long psql sessions (a
//! `SELECT 1`, then a 100 ms sleep, again and again on one connection) and
//! pgbench with persistent clients, started from a client host; what
//! survived once they end. Used by the session tests and `cargo xtask bench
//! sessions`.

use std::{fmt::Display, process::ExitStatus, time::Instant};

use anyhow::Result;

use crate::{Host, PG_USER, Pid, ProcSpec, Signal, pg_bin_dir, tail};

/// The load: how many sessions and clients, for how long, against what.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Where the load goes (the VIP), and its port.
    pub host: String,
    pub port: u16,
    /// Long psql sessions.
    pub sessions: usize,
    /// Their rounds: a `SELECT 1` and a 100 ms sleep each.
    pub rounds: usize,
    /// pgbench's persistent clients (`-c`, `-S -n -j 2 -R 200`).
    pub clients: usize,
    /// pgbench's duration (`-T`).
    pub seconds: u64,
}

impl LoadSpec {
    /// The scenario: 8 sessions and `pgbench -c 4` for about
    /// `seconds` each, against `host:port`.
    pub fn new(host: impl Display, port: u16, seconds: u64) -> Self {
        Self {
            host: host.to_string(),
            port,
            sessions: 8,
            // A round takes a little over the sleep's 100 ms.
            rounds: usize::try_from(seconds * 9).unwrap_or(usize::MAX),
            clients: 4,
            seconds,
        }
    }
}

/// The load running.
pub struct Load {
    spec: LoadSpec,
    sessions: Vec<Pid>,
    pgbench: Pid,
}

/// What survived.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Sessions that answered every round and ended well.
    pub kept: usize,
    pub sessions: usize,
    /// pgbench clients reported aborted.
    pub aborted: usize,
    pub clients: usize,
    /// pgbench's "number of failed transactions" (none: no report).
    pub failed: Option<u64>,
    /// pgbench was still running at the deadline (then killed).
    pub stuck: bool,
    /// The ends of the lost sessions' output and of pgbench's, to explain
    /// a loss.
    pub losses: String,
}

impl Outcome {
    /// Every session kept and no client aborted.
    pub fn all_survived(&self) -> bool {
        self.kept == self.sessions && self.aborted == 0 && !self.stuck && self.failed == Some(0)
    }
}

impl Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} sessions kept, {} of {} pgbench clients aborted, {} failed transactions{}",
            self.kept,
            self.sessions,
            self.aborted,
            self.clients,
            self.failed.map_or("?".to_owned(), |n| n.to_string()),
            if self.stuck { ", pgbench stuck" } else { "" }
        )
    }
}

impl Load {
    /// Starts the sessions and pgbench in `client` (pgbench's tables must
    /// exist: [`crate::pgbench_init`]).
    pub fn start(client: &Host, spec: &LoadSpec) -> Result<Self> {
        let sessions = (0..spec.sessions)
            .map(|i| {
                let script = format!(
                    "for i in $(seq {rounds}); do echo 'SELECT 1;'; echo 'SELECT pg_sleep(0.1);'; done \
                     | psql -X -A -t -v ON_ERROR_STOP=1 -h {host} -p {port} -U {PG_USER} -d postgres",
                    rounds = spec.rounds,
                    host = spec.host,
                    port = spec.port,
                );
                client.spawn(
                    &format!("session{i}"),
                    ProcSpec::new("bash")
                        .args(["-c", &script])
                        .env("PGCONNECT_TIMEOUT", "5"),
                )
            })
            .collect::<Result<Vec<Pid>>>()?;
        let pgbench = client.spawn(
            "pgbench",
            ProcSpec::new(pg_bin_dir()?.join("pgbench"))
                .args(["-h", &spec.host, "-p", &spec.port.to_string()])
                .args(["-U", PG_USER, "-S", "-n", "-c", &spec.clients.to_string()])
                .args(["-j", "2", "-R", "200", "-T", &spec.seconds.to_string()])
                .arg("postgres")
                .env("PGCONNECT_TIMEOUT", "5"),
        )?;
        Ok(Self {
            spec: spec.clone(),
            sessions,
            pgbench,
        })
    }

    /// Waits, at most until `deadline`, for the load to end (a session or
    /// client still running then is stuck on a dead connection: killed,
    /// lost) and counts what survived.
    pub fn finish(self, client: &Host, deadline: Instant) -> Result<Outcome> {
        let lab = client.lab();
        let finish = |pid: Pid| -> Result<Option<ExitStatus>> {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = lab.wait_exit(pid, left)?;
            if status.is_none() {
                lab.kill(pid, Signal::SIGKILL)?;
            }
            Ok(status)
        };
        let mut kept = 0;
        let mut losses = String::new();
        for (i, pid) in self.sessions.into_iter().enumerate() {
            let status = finish(pid)?;
            let log = std::fs::read_to_string(client.log_path(&format!("session{i}")))
                .unwrap_or_default();
            let answered = log.lines().filter(|l| l.trim() == "1").count();
            if status.is_some_and(|s| s.success()) && answered == self.spec.rounds {
                kept += 1;
            } else {
                losses.push_str(&format!(
                    "session {i}: {answered} of {} answered, {status:?}:\n{}\n",
                    self.spec.rounds,
                    tail(&log, 5)
                ));
            }
        }
        let stuck = finish(self.pgbench)?.is_none();
        let report = std::fs::read_to_string(client.log_path("pgbench")).unwrap_or_default();
        let aborted = report
            .lines()
            .filter(|l| l.contains("client ") && l.contains(" aborted"))
            .count();
        let failed = report
            .lines()
            .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok());
        if aborted > 0 || stuck || failed != Some(0) {
            losses.push_str(&format!("pgbench:\n{}\n", tail(&report, 12)));
        }
        Ok(Outcome {
            kept,
            sessions: self.spec.sessions,
            aborted,
            clients: self.spec.clients,
            failed,
            stuck,
            losses,
        })
    }
}
