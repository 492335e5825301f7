//! Invariant 2, sessions: long psql sessions and single-client pgbench runs
//! through the VIP for the whole run, watched by a thread of their own.
//!
//! Each session has a name (`s3.2`: slot 3, its second start) that is its
//! process's and its `application_name`, so PgBouncer's `SHOW CLIENTS`
//! tells which PgBouncer it uses. Before a PgBouncer is killed, the names
//! it serves are marked ([`Load::expect_losses`]): their end is a loss by
//! the backend's kill. Any other end of an established session (one that
//! had an answer) before the run's end is a loss vipx caused, and so is a
//! session without progress for [`STUCK_AFTER`] (killed then). A session
//! that never got an answer failed to connect (during a move); it is
//! counted, not held against vipx. Ended sessions start again, under a new
//! name, once the cluster is calm.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use vipx_lab::sessions::{self, SessionEnd};
use vipx_lab::{Host, PG_USER, Pid, ProcSpec, Signal, VIP_PORT, pg_bin_dir};

/// psql sessions (a `SELECT 1` every 100 ms each).
pub const PSQL_SESSIONS: usize = 8;
/// pgbench runs, one persistent client each.
pub const PGBENCH_CLIENTS: usize = 4;
/// pgbench's rate per client (transactions per second).
const PGBENCH_RATE: u32 = 25;
/// A session without progress this long is stuck: lost.
pub const STUCK_AFTER: Duration = Duration::from_secs(20);
/// How often the watcher looks.
const POLL: Duration = Duration::from_millis(300);
/// Failed looks in a row after which the watcher gives up.
const MAX_FAILED_LOOKS: u32 = 20;
/// How long a session gets to end once the run is over.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

/// How a session instance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Alive and answering to the end.
    Kept,
    /// Lost with the PgBouncer that was killed under it.
    LostByBackendKill,
    /// Lost otherwise: a violation.
    Lost(String),
    /// Never got an answer (could not connect).
    NoConnection,
}

/// A loss vipx caused, for the report.
#[derive(Clone, Debug)]
pub struct Loss {
    pub name: String,
    pub at: Instant,
    pub fault: String,
    pub what: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    Psql,
    Pgbench,
}

struct Slot {
    tool: Tool,
    index: usize,
    generation: u32,
    /// The running instance, if any.
    pid: Option<Pid>,
    name: String,
    progress: usize,
    progressed_at: Instant,
}

#[derive(Default)]
struct Shared {
    slots: Vec<Slot>,
    /// Sessions may start again.
    calm: bool,
    /// The fault under way, for the losses' descriptions.
    fault: String,
    /// Names whose loss a PgBouncer's kill explains.
    expected: HashSet<String>,
    ends: Vec<End>,
    losses: Vec<Loss>,
    /// Checks of the sessions' state done.
    checks: u64,
    /// Looks that failed, not yet reported.
    errors: Vec<String>,
    /// The watcher stopped after failing too often.
    gave_up: bool,
}

/// The running load and its watcher.
pub struct Load {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    client: Host,
    stop_file: PathBuf,
}

struct Ctx {
    client: Host,
    vip: IpAddr,
    stop_file: PathBuf,
    pgbench_seconds: u64,
}

impl Load {
    /// Starts the sessions from `client` to `vip` and the watcher; pgbench
    /// runs are planned for `length` (they are stopped at the end).
    pub fn start(client: &Host, vip: IpAddr, length: Duration) -> Result<Self> {
        let stop_file = client.lab().tmp_dir().join("chaos-sessions.stop");
        let _ = std::fs::remove_file(&stop_file);
        let ctx = Ctx {
            client: client.clone(),
            vip,
            stop_file: stop_file.clone(),
            pgbench_seconds: length.as_secs() + 3600,
        };
        let now = Instant::now();
        let slots = (0..PSQL_SESSIONS)
            .map(|i| (Tool::Psql, i))
            .chain((0..PGBENCH_CLIENTS).map(|i| (Tool::Pgbench, i)))
            .map(|(tool, index)| Slot {
                tool,
                index,
                generation: 0,
                pid: None,
                name: String::new(),
                progress: 0,
                progressed_at: now,
            })
            .collect();
        let shared = Arc::new(Mutex::new(Shared {
            slots,
            calm: true,
            ..Shared::default()
        }));
        for slot in &mut lock(&shared).slots {
            start(&ctx, slot)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("chaos-load".into())
                .spawn(move || watch(&ctx, &shared, &stop))
                .context("spawning the load's watcher")?
        };
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
            client: client.clone(),
            stop_file,
        })
    }

    /// A fault starts (`Some`) or the cluster is calm again (`None`).
    pub fn set_fault(&self, fault: Option<String>) {
        let mut shared = lock(&self.shared);
        shared.calm = fault.is_none();
        if let Some(fault) = fault {
            shared.fault = fault;
            shared.expected.clear();
        }
    }

    /// The running sessions' names.
    pub fn names(&self) -> Vec<String> {
        lock(&self.shared)
            .slots
            .iter()
            .filter(|s| s.pid.is_some())
            .map(|s| s.name.clone())
            .collect()
    }

    /// These sessions' loss is explained by the PgBouncer being killed.
    pub fn expect_losses(&self, names: impl IntoIterator<Item = String>) {
        lock(&self.shared).expected.extend(names);
    }

    /// Whether every session runs and progressed since `since`.
    pub fn all_progressing(&self, since: Instant) -> bool {
        lock(&self.shared)
            .slots
            .iter()
            .all(|s| s.pid.is_some() && s.progress > 0 && s.progressed_at >= since)
    }

    /// The losses so far, the watcher's failed looks since the last call,
    /// and whether it gave up.
    pub fn losses(&self) -> (Vec<Loss>, Vec<String>, bool) {
        let mut shared = lock(&self.shared);
        let errors = std::mem::take(&mut shared.errors);
        (shared.losses.clone(), errors, shared.gave_up)
    }

    /// Ends the load: the psql sessions end cleanly, pgbench is stopped;
    /// every instance's end.
    pub fn finish(mut self) -> Result<(Vec<End>, Vec<Loss>, u64)> {
        self.stop_watcher();
        std::fs::write(&self.stop_file, "")?;
        let lab = self.client.lab();
        let deadline = Instant::now() + FINISH_WITHIN;
        let mut shared = lock(&self.shared);
        let fault = "the run's end".to_owned();
        let mut ends = Vec::new();
        let mut losses = Vec::new();
        for slot in &mut shared.slots {
            let Some(pid) = slot.pid.take() else { continue };
            let status = match slot.tool {
                Tool::Psql => {
                    lab.wait_exit(pid, deadline.saturating_duration_since(Instant::now()))?
                }
                Tool::Pgbench => {
                    // Its progress is what counts; it is stopped, not ended.
                    let progressing = slot.progressed_at.elapsed() < STUCK_AFTER;
                    let _ = lab.stop_process(pid);
                    ends.push(if progressing {
                        End::Kept
                    } else {
                        losses.push(loss(slot, &fault, "no progress at the end".into()));
                        End::Lost("no progress".into())
                    });
                    continue;
                }
            };
            if status.is_none() {
                let _ = lab.kill(pid, Signal::SIGKILL);
                let _ = lab.wait_exit(pid, Duration::from_secs(5));
            }
            let log = std::fs::read_to_string(self.client.log_path(&slot.name)).unwrap_or_default();
            let end = sessions::session_end(status, &log);
            if end == SessionEnd::Kept {
                ends.push(End::Kept);
            } else {
                let what = format!("{end:?} at the end: {}", vipx_lab::tail(&log, 3).trim());
                losses.push(loss(slot, &fault, what.clone()));
                ends.push(End::Lost(what));
            }
        }
        shared.ends.extend(ends);
        shared.losses.extend(losses);
        Ok((
            std::mem::take(&mut shared.ends),
            std::mem::take(&mut shared.losses),
            shared.checks,
        ))
    }

    fn stop_watcher(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // The lab's teardown stops the processes.
        self.stop_watcher();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn loss(slot: &Slot, fault: &str, what: String) -> Loss {
    Loss {
        name: slot.name.clone(),
        at: Instant::now(),
        fault: fault.to_owned(),
        what,
    }
}

/// The lines of a session's log that say why it ended (errors), else its
/// last lines.
fn why(log: &str) -> String {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error")
                || l.contains("fatal")
                || l.contains("closed")
                || l.contains("reset")
        })
        .collect();
    if errors.is_empty() {
        vipx_lab::tail(log, 3).trim().replace('\n', " | ")
    } else {
        errors.join(" | ")
    }
}

/// Starts the slot's next instance.
fn start(ctx: &Ctx, slot: &mut Slot) -> Result<()> {
    slot.generation += 1;
    let prefix = match slot.tool {
        Tool::Psql => "s",
        Tool::Pgbench => "b",
    };
    slot.name = format!("chaos-{prefix}{}.{}", slot.index, slot.generation);
    let pid = match slot.tool {
        Tool::Psql => sessions::start_session(&ctx.client, ctx.vip, &slot.name, &ctx.stop_file)?,
        Tool::Pgbench => ctx.client.spawn(
            &slot.name,
            ProcSpec::new(pg_bin_dir()?.join("pgbench"))
                .args(["-h", &ctx.vip.to_string(), "-p", &VIP_PORT.to_string()])
                .args(["-U", PG_USER, "-S", "-n", "-c", "1", "-j", "1", "-P", "1"])
                .args(["-R", &PGBENCH_RATE.to_string()])
                .args(["-T", &ctx.pgbench_seconds.to_string()])
                .arg("postgres")
                .env("PGCONNECT_TIMEOUT", "5")
                .env("PGAPPNAME", &slot.name),
        )?,
    };
    slot.pid = Some(pid);
    slot.progress = 0;
    slot.progressed_at = Instant::now();
    Ok(())
}

/// The progress an instance's log shows: answered queries (psql), seconds
/// with transactions (pgbench's `-P 1` lines).
fn progress(tool: Tool, log: &str) -> usize {
    match tool {
        Tool::Psql => sessions::answered(log),
        Tool::Pgbench => log
            .lines()
            .filter_map(|l| l.strip_prefix("progress: "))
            .filter(|l| {
                l.split(", ")
                    .nth(1)
                    .and_then(|tps| tps.strip_suffix(" tps"))
                    .and_then(|tps| tps.parse::<f64>().ok())
                    .is_some_and(|tps| tps > 0.0)
            })
            .count(),
    }
}

/// Looks every [`POLL`] until told to stop. A look that fails (a session
/// that could not be started) is tried again at the next; after
/// [`MAX_FAILED_LOOKS`] failures in a row the watcher gives up
/// ([`Load::losses`] says so, and the run stops).
fn watch(ctx: &Ctx, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let mut failed = 0;
    while !stop.load(Ordering::Relaxed) {
        // The guard goes at the end of this statement: the error is
        // recorded under a lock of its own.
        let result = watch_once(ctx, &mut lock(shared));
        match result {
            Ok(()) => failed = 0,
            Err(err) => {
                failed += 1;
                let mut shared = lock(shared);
                shared.errors.push(format!("{err:#}"));
                if failed >= MAX_FAILED_LOOKS {
                    shared.gave_up = true;
                    return;
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// One look at every slot: progress, ends, restarts.
fn watch_once(ctx: &Ctx, shared: &mut Shared) -> Result<()> {
    let lab = ctx.client.lab();
    let Shared {
        slots,
        calm,
        fault,
        expected,
        ends,
        losses,
        checks,
        ..
    } = shared;
    for slot in slots.iter_mut() {
        let Some(pid) = slot.pid else {
            if *calm {
                start(ctx, slot)?;
            }
            continue;
        };
        *checks += 1;
        let log = std::fs::read_to_string(ctx.client.log_path(&slot.name)).unwrap_or_default();
        let now = progress(slot.tool, &log);
        if now > slot.progress {
            slot.progress = now;
            slot.progressed_at = Instant::now();
        }
        let mut status = lab.try_status(pid)?.map(Some);
        if status.is_none() && slot.progressed_at.elapsed() > STUCK_AFTER {
            lab.kill(pid, Signal::SIGKILL)?;
            let _ = lab.wait_exit(pid, Duration::from_secs(5))?;
            status = Some(None);
        }
        let Some(status) = status else { continue };
        slot.pid = None;
        let end = if slot.progress == 0 {
            End::NoConnection
        } else if expected.contains(&slot.name) {
            End::LostByBackendKill
        } else {
            let what = match status {
                None => format!("no progress for {STUCK_AFTER:?} (killed)"),
                Some(status) => format!(
                    "ended ({status}) after {} answers: {}",
                    slot.progress,
                    why(&log)
                ),
            };
            losses.push(loss(slot, fault, what.clone()));
            End::Lost(what)
        };
        ends.push(end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_progresses_only_with_transactions() {
        let log = "progress: 1.0 s, 25.0 tps, lat 1.1 ms stddev 0.2, 0 failed, lag 0.1 ms\n\
                   progress: 2.0 s, 0.0 tps, lat 0.000 ms stddev 0.000, 0 failed, lag 0.000 ms\n\
                   progress: 3.0 s, 24.0 tps, lat 1.0 ms stddev 0.1, 0 failed, lag 0.1 ms\n\
                   pgbench: error: client 0 aborted in command 1 (SQL) of script 0\n";
        assert_eq!(progress(Tool::Pgbench, log), 2);
        assert_eq!(progress(Tool::Psql, "1\n1\nsent 2\n"), 2);
    }
}
