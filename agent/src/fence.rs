//! Fencing a peer: when a peer is declared dead while it may still hold
//! the VIP, the fence command (`[cluster] fence`, an argument list with
//! `{node}` and `{address}`) makes sure it does not (powers it off, cuts
//! its port). No shell: each argument has the two substituted and goes to
//! the program as is. Each attempt runs in a process group of its own and
//! is killed with it after `timeout`; a failed attempt is retried up to
//! `retries` times after a short back-off. Exit status 0 is fenced.
//!
//! The result goes to the timeline ([`EventKind::Fence`]) and to
//! `/metrics` (`vipx_fence_runs_total`). In HA debug mode the command is
//! logged as what would run, and not run.
//!
//! A leaf: the cluster decides when to fence, this runs the command.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    command::{Group, Tails, last_lines, status_reason},
    events::{EventKind, EventLog, FenceResult},
    metrics::Metrics,
};

/// The first back-off between attempts; it doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The fence command of `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceCommand {
    /// The program and its arguments; `{node}` and `{address}` in each are
    /// replaced by the peer's name and address.
    pub argv: Vec<String>,
    /// How long one attempt may run before it is killed.
    pub timeout: Duration,
    /// Attempts after the first while they fail.
    pub retries: u32,
}

/// What a fence run came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FenceOutcome {
    /// An attempt exited 0 (`attempts` counts it).
    Fenced { attempts: u32 },
    /// Every attempt failed; why the last did.
    Failed { attempts: u32, error: String },
    /// HA debug mode: logged as what would run, not run.
    Skipped,
}

impl FenceCommand {
    /// The command's arguments for `node` at `address`.
    pub fn argv_for(&self, node: &str, address: IpAddr) -> Vec<String> {
        let address = address.to_string();
        self.argv
            .iter()
            .map(|arg| arg.replace("{node}", node).replace("{address}", &address))
            .collect()
    }

    /// Fences `node` (at `address`): runs the command until it exits 0 or
    /// its retries are spent, and records the outcome (timeline, metrics).
    pub async fn run(
        &self,
        node: &str,
        address: IpAddr,
        ha_debug: bool,
        metrics: &Metrics,
        events: &EventLog,
    ) -> FenceOutcome {
        let argv = self.argv_for(node, address);
        let shown = shell_words::join(&argv);
        let started = Instant::now();
        let outcome = if ha_debug {
            info!("HA debug: would run the fence command for {node} ({address}): {shown}");
            FenceOutcome::Skipped
        } else {
            info!("fencing {node} ({address}): {shown}");
            self.attempts(&argv).await
        };
        let (result, reason) = match &outcome {
            FenceOutcome::Fenced { attempts } => (
                FenceResult::Fenced,
                format!("{shown}: exit 0 (attempt {attempts})"),
            ),
            FenceOutcome::Failed { attempts, error } => (
                FenceResult::Failed,
                format!("{shown}: {attempts} attempts, the last: {error}"),
            ),
            FenceOutcome::Skipped => (FenceResult::WouldFence, format!("HA debug mode: {shown}")),
        };
        let label = match result {
            FenceResult::Fenced => "fenced",
            FenceResult::Failed => "failed",
            FenceResult::WouldFence => "skipped",
        };
        metrics.count_fence(node, label, started.elapsed());
        events.record(EventKind::Fence, node, None, result, &reason);
        outcome
    }

    /// Attempts until one exits 0 or the retries are spent.
    async fn attempts(&self, argv: &[String]) -> FenceOutcome {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.attempt(argv).await {
                Ok(()) => return FenceOutcome::Fenced { attempts: attempt },
                Err(error) => {
                    warn!(
                        "fence command, attempt {attempt} of {}: {error}",
                        self.retries + 1
                    );
                    if attempt > self.retries {
                        return FenceOutcome::Failed {
                            attempts: attempt,
                            error,
                        };
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    /// One run of the command, killed (with its process group) after the
    /// timeout; why it failed, with the ends of its output.
    async fn attempt(&self, argv: &[String]) -> Result<(), String> {
        let Some((program, args)) = argv.split_first() else {
            return Err("no command".to_owned());
        };
        let mut child = match Group::spawn(program, args, &[], true) {
            Ok(child) => child,
            Err(err) => return Err(format!("{program}: {err}")),
        };
        let mut tails = Tails::default();
        let waited = tokio::time::timeout(self.timeout, child.wait(&mut tails)).await;
        // Dropping the child kills its process group if it is still there.
        drop(child);
        let status = match waited {
            Err(_) => return Err(format!("killed after {:?}", self.timeout) + &output(&tails)),
            Ok(Err(err)) => return Err(format!("waiting for {program}: {err}")),
            Ok(Ok(status)) => status,
        };
        if status.success() {
            return Ok(());
        }
        Err(status_reason(status, &tails.stderr) + &stdout(&tails))
    }
}

/// "; stdout: ..." when the command wrote there.
fn stdout(tails: &Tails) -> String {
    let out = last_lines(&tails.stdout);
    if out.is_empty() {
        out
    } else {
        format!("; stdout: {out}")
    }
}

/// What a killed command wrote, both streams.
fn output(tails: &Tails) -> String {
    let err = last_lines(&tails.stderr);
    let err = if err.is_empty() {
        err
    } else {
        format!("; stderr: {err}")
    };
    err + &stdout(tails)
}

#[cfg(test)]
#[path = "fence_tests.rs"]
mod tests;
