//! The load through a VIP: long psql sessions (a `SELECT 1` every 100 ms
//! on one connection each, until told to stop) and pgbench with
//! persistent connections for a planned length; then what became of them.
//! Used by the session tests and `cargo xtask bench sessions`.

use std::{
    net::IpAddr,
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant},
};

use crate::{Host, PG_USER, Pid, ProcSpec, Signal, VIP_PORT, pg_bin_dir};

/// Long sessions.
pub const SESSIONS: usize = 8;
/// pgbench's persistent clients.
pub const CLIENTS: usize = 4;
/// How long a process may take to end once its load is over: one still
/// running then is stuck on a dead connection, killed and lost.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Every query answered, a clean exit.
    Kept,
    /// psql said the connection was reset or closed.
    Reset,
    /// Still waiting for an answer at the deadline (killed).
    Stuck,
    /// Another failure (an error, an unanswered query).
    Failed,
}

/// What the load saw.
pub struct LoadOutcome {
    pub sessions: Vec<SessionEnd>,
    /// pgbench clients aborted.
    pub aborted: usize,
    /// pgbench's failed transactions (none when it printed no report).
    pub failed: Option<u64>,
    /// pgbench was still running at its deadline (killed).
    pub pgbench_stuck: bool,
}

impl LoadOutcome {
    /// Every session kept, no pgbench client aborted or stuck, no failed
    /// transaction.
    pub fn all_survived(&self) -> bool {
        self.kept() == self.sessions.len()
            && self.aborted == 0
            && !self.pgbench_stuck
            && self.failed == Some(0)
    }

    pub fn kept(&self) -> usize {
        self.count(SessionEnd::Kept)
    }

    pub fn count(&self, end: SessionEnd) -> usize {
        self.sessions.iter().filter(|s| **s == end).count()
    }
}

impl std::fmt::Display for LoadOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} sessions kept ({} reset, {} stuck, {} failed otherwise), {} of {CLIENTS} pgbench clients aborted, {} failed transactions{}",
            self.kept(),
            self.sessions.len(),
            self.count(SessionEnd::Reset),
            self.count(SessionEnd::Stuck),
            self.count(SessionEnd::Failed),
            self.aborted,
            self.failed.map_or("?".to_owned(), |n| n.to_string()),
            if self.pgbench_stuck {
                ", pgbench stuck"
            } else {
                ""
            }
        )
    }
}

/// The running load.
pub struct Load {
    client: Host,
    sessions: Vec<Pid>,
    pgbench: Pid,
    /// When pgbench's `-T` ends.
    pgbench_end: Instant,
    /// The file whose creation ends the sessions.
    stop: PathBuf,
}

impl Load {
    /// Starts the sessions and pgbench (`-T length`) from `client` to
    /// `vip`:5432.
    pub fn start(client: &Host, vip: IpAddr, length: Duration) -> anyhow::Result<Self> {
        let stop = client.lab().tmp_dir().join("sessions.stop");
        let _ = std::fs::remove_file(&stop);
        let sessions = (0..SESSIONS)
            .map(|i| start_session(client, vip, &session_name(i), &stop))
            .collect::<anyhow::Result<Vec<Pid>>>()?;
        let seconds = length.as_secs().max(1);
        let pgbench = client.spawn(
            "pgbench",
            ProcSpec::new(pg_bin_dir()?.join("pgbench"))
                .args(["-h", &vip.to_string(), "-p", &VIP_PORT.to_string()])
                .args(["-U", PG_USER, "-S", "-n", "-c", &CLIENTS.to_string()])
                .args(["-j", "2", "-R", "200", "-T", &seconds.to_string()])
                .arg("postgres")
                .env("PGCONNECT_TIMEOUT", "5"),
        )?;
        Ok(Self {
            client: client.clone(),
            sessions,
            pgbench,
            pgbench_end: Instant::now() + Duration::from_secs(seconds),
            stop,
        })
    }

    /// When pgbench's run ends.
    pub fn pgbench_end(&self) -> Instant {
        self.pgbench_end
    }

    /// Ends the sessions at `stop_at` (not before), waits for everything
    /// (each at most [`FINISH_WITHIN`] after its end; the stuck are killed)
    /// and reads their logs.
    pub fn finish(self, stop_at: Instant) -> anyhow::Result<LoadOutcome> {
        std::thread::sleep(stop_at.saturating_duration_since(Instant::now()));
        std::fs::write(&self.stop, "")?;
        let deadline = Instant::now() + FINISH_WITHIN;
        let mut sessions = Vec::with_capacity(self.sessions.len());
        for (i, pid) in self.sessions.iter().enumerate() {
            let status = self.finish_one(*pid, deadline)?;
            let log =
                std::fs::read_to_string(self.client.log_path(&session_name(i))).unwrap_or_default();
            sessions.push(session_end(status, &log));
        }
        let status = self.finish_one(
            self.pgbench,
            (self.pgbench_end + FINISH_WITHIN).max(deadline),
        )?;
        let report = std::fs::read_to_string(self.client.log_path("pgbench")).unwrap_or_default();
        Ok(LoadOutcome {
            sessions,
            aborted: report
                .lines()
                .filter(|l| l.contains("client ") && l.contains(" aborted"))
                .count(),
            failed: report
                .lines()
                .find_map(|l| l.trim().strip_prefix("number of failed transactions: "))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok()),
            pgbench_stuck: status.is_none(),
        })
    }

    /// Waits for `pid` until `deadline`; kills it (by its pid) if it still
    /// runs then.
    fn finish_one(&self, pid: Pid, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
        let lab = self.client.lab();
        let status = lab.wait_exit(pid, deadline.saturating_duration_since(Instant::now()))?;
        if status.is_none() {
            lab.kill(pid, Signal::SIGKILL)?;
            let _ = lab.wait_exit(pid, Duration::from_secs(5))?;
        }
        Ok(status)
    }
}

fn session_name(i: usize) -> String {
    format!("session{i}")
}

/// A session named `name` (its process, its log, and its
/// `application_name`, which PgBouncer's `SHOW CLIENTS` lists): psql on one
/// connection, fed a `SELECT 1` every 100 ms until `stop` exists; the
/// feeder then says how many it sent. psql is the process started (exec),
/// so its pid and exit status are the session's.
pub fn start_session(
    client: &Host,
    vip: IpAddr,
    name: &str,
    stop: &std::path::Path,
) -> anyhow::Result<Pid> {
    let script = format!(
        "exec psql -X -A -t -v ON_ERROR_STOP=1 -h {vip} -p {VIP_PORT} -U {PG_USER} -d postgres \
         < <(n=0; while [ ! -e '{stop}' ]; do echo 'SELECT 1;'; n=$((n+1)); sleep 0.1; done; \
             echo \"sent $n\" >&2)",
        stop = stop.display()
    );
    client.spawn(
        name,
        ProcSpec::new("bash")
            .args(["-c", &script])
            .env("PGCONNECT_TIMEOUT", "5")
            .env("PGAPPNAME", name),
    )
}

/// Queries a session's log shows answered.
pub fn answered(log: &str) -> usize {
    log.lines().filter(|l| l.trim() == "1").count()
}

/// What a session's exit status (`None`: it was killed at its deadline)
/// and log say.
pub fn session_end(status: Option<ExitStatus>, log: &str) -> SessionEnd {
    let Some(status) = status else {
        return SessionEnd::Stuck;
    };
    let answered = answered(log);
    let sent = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("sent "))
        .and_then(|n| n.parse::<usize>().ok());
    if status.success() && sent.is_some_and(|n| n > 0 && n == answered) {
        SessionEnd::Kept
    } else if log.contains("reset") || log.contains("closed the connection") {
        SessionEnd::Reset
    } else {
        SessionEnd::Failed
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;

    use super::*;

    #[test]
    fn a_session_is_kept_only_when_every_query_was_answered() {
        let ok = ExitStatus::from_raw(0);
        let code2 = ExitStatus::from_raw(2 << 8);
        let log = "=== vipx-lab: starting `bash`\n1\n1\n1\nsent 3\n";
        assert_eq!(session_end(Some(ok), log), SessionEnd::Kept);
        assert_eq!(
            session_end(Some(ok), "1\n1\nsent 3\n"),
            SessionEnd::Failed,
            "a query without its answer"
        );
        assert_eq!(
            session_end(
                Some(code2),
                "1\npsql:<stdin>:2: server closed the connection unexpectedly\n"
            ),
            SessionEnd::Reset
        );
        assert_eq!(
            session_end(
                Some(code2),
                "1\npsql: could not receive data from server: Connection reset by peer\n"
            ),
            SessionEnd::Reset
        );
        assert_eq!(session_end(None, "1\n"), SessionEnd::Stuck);
        assert_eq!(session_end(Some(ok), "sent 0\n"), SessionEnd::Failed);
    }
}
