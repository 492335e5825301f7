//! The lab's process table: long-running processes started in hosts, their
//! logs, signals, waiting, and stopping them all at teardown.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid as NixPid;

use crate::lab::{LabCore, lock};
use crate::process::{Pid, ProcSpec, kill_group_and_reap, tail};

/// A process started by the lab.
pub(crate) struct ProcRecord {
    name: String,
    host: String,
    pid: Pid,
    child: Child,
    stop_signal: Signal,
    log: PathBuf,
    status: Option<ExitStatus>,
}

/// What the lab knows about one of its processes.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// The name given to [`crate::Host::spawn`].
    pub name: String,
    /// The host it runs in.
    pub host: String,
    /// Its process id.
    pub pid: Pid,
    /// Its exit status, once it has exited and been reaped.
    pub status: Option<ExitStatus>,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl LabCore {
    /// Where the stdout/stderr of process `name` in host `host` go:
    /// `{tmp}/{host}-{name}.log`.
    pub fn log_path(&self, host: &str, name: &str) -> PathBuf {
        self.tmp_dir().join(format!("{host}-{name}.log"))
    }

    /// Starts `spec` in namespace `netns` of host `host`, in its own process
    /// group, output appended to [`LabCore::log_path`], and records it.
    pub(crate) fn spawn_in(
        &self,
        host: &str,
        netns: &str,
        name: &str,
        spec: &ProcSpec,
    ) -> Result<Pid> {
        if name.is_empty() || name.contains('/') {
            bail!("bad process name {name:?}");
        }
        let log = self.log_path(host, name);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        writeln!(
            file,
            "=== vipx-lab: starting `{}` in {host}",
            spec.display()
        )?;
        let mut cmd = spec.to_command(Some(netns))?;
        cmd.stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        // Hold the table lock across spawn so teardown cannot miss the child.
        let mut procs = lock(&self.procs);
        if self.is_torn_down() {
            bail!("the lab is being torn down; not starting {name} in {host}");
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `{}` in {host}", spec.display()))?;
        let pid = child.id();
        procs.push(ProcRecord {
            name: name.to_owned(),
            host: host.to_owned(),
            pid,
            child,
            stop_signal: spec.get_stop_signal(),
            log,
            status: None,
        });
        Ok(pid)
    }

    /// Sends `signal` to process `pid`, which must be one the lab started and
    /// has not reaped yet (so the pid cannot belong to anyone else).
    pub fn kill(&self, pid: Pid, signal: Signal) -> Result<()> {
        let mut procs = lock(&self.procs);
        let rec = find(&mut procs, pid)?;
        if rec.status.is_some() {
            bail!("process {pid} ({}) has already exited", rec.name);
        }
        kill(NixPid::from_raw(pid as i32), signal).with_context(|| format!("kill -{signal} {pid}"))
    }

    /// The exit status of process `pid` if it has exited (reaping it), `None`
    /// while it runs.
    pub fn try_status(&self, pid: Pid) -> Result<Option<ExitStatus>> {
        let mut procs = lock(&self.procs);
        let rec = find(&mut procs, pid)?;
        if rec.status.is_none() {
            rec.status = rec.child.try_wait()?;
        }
        Ok(rec.status)
    }

    /// Whether process `pid` still runs.
    pub fn is_running(&self, pid: Pid) -> bool {
        matches!(self.try_status(pid), Ok(None))
    }

    /// Waits up to `timeout` for process `pid` to exit; its status, or `None`
    /// if it still runs at the deadline.
    pub fn wait_exit(&self, pid: Pid, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status(pid)? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops process `pid`: its stop signal, up to [`crate::LabOptions::stop_grace`],
    /// then SIGKILL to its process group. Returns its exit status.
    pub fn stop_process(&self, pid: Pid) -> Result<ExitStatus> {
        if let Some(status) = self.try_status(pid)? {
            return Ok(status);
        }
        let signal = find(&mut lock(&self.procs), pid)?.stop_signal;
        let _ = self.kill(pid, signal);
        if let Some(status) = self.wait_exit(pid, self.options().stop_grace)? {
            return Ok(status);
        }
        let mut procs = lock(&self.procs);
        let rec = find(&mut procs, pid)?;
        kill_group_and_reap(&mut rec.child);
        rec.status = rec.child.try_wait()?;
        rec.status
            .ok_or_else(|| anyhow!("process {pid} ({}) survived SIGKILL", rec.name))
    }

    /// Every process the lab started, in start order.
    pub fn processes(&self) -> Vec<ProcInfo> {
        lock(&self.procs)
            .iter()
            .map(|r| ProcInfo {
                name: r.name.clone(),
                host: r.host.clone(),
                pid: r.pid,
                status: r.status,
                log: r.log.clone(),
            })
            .collect()
    }

    /// The last `lines` lines of the log of process `pid`.
    pub fn log_tail(&self, pid: Pid, lines: usize) -> String {
        let log = match find(&mut lock(&self.procs), pid) {
            Ok(rec) => rec.log.clone(),
            Err(err) => return format!("<{err}>"),
        };
        match std::fs::read(&log) {
            Ok(bytes) => tail(&String::from_utf8_lossy(&bytes), lines),
            Err(err) => format!("<{}: {err}>", log.display()),
        }
    }

    /// Stops every process, newest first; returns the errors.
    pub(crate) fn stop_all(&self) -> Vec<anyhow::Error> {
        let pids: Vec<Pid> = lock(&self.procs).iter().rev().map(|r| r.pid).collect();
        let mut errors = Vec::new();
        for pid in pids {
            if let Err(err) = self.stop_process(pid) {
                errors.push(err.context(format!("stopping process {pid}")));
            }
        }
        errors
    }
}

fn find(procs: &mut [ProcRecord], pid: Pid) -> Result<&mut ProcRecord> {
    // Newest first: a pid may come back after its first owner was reaped.
    procs
        .iter_mut()
        .rev()
        .find(|r| r.pid == pid)
        .ok_or_else(|| anyhow!("process {pid} was not started by this lab"))
}
