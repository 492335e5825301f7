//! Describing commands ([`ProcSpec`]) and running short ones with a deadline.
//!
//! Long-running processes are started and tracked by the lab (see
//! [`crate::Host::spawn`]); this module only builds command lines and runs
//! commands to completion, never longer than their timeout.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid as NixPid, User};

/// A process id as the standard library hands it out ([`std::process::Child::id`]).
pub type Pid = u32;

/// Default deadline of [`crate::Host::run`] and friends.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A command to run in a lab host: program, arguments, environment, working
/// directory, the system user to run as, and the signal that asks it to stop.
#[derive(Debug, Clone)]
pub struct ProcSpec {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    user: Option<String>,
    stop_signal: Signal,
}

impl ProcSpec {
    /// A spec that runs `program` (looked up in `PATH`) with no arguments.
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Self {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            user: None,
            stop_signal: Signal::SIGTERM,
        }
    }

    /// A spec from an argument vector whose first element is the program.
    pub fn from_argv<S: AsRef<OsStr>>(argv: &[S]) -> Self {
        let mut it = argv.iter();
        let program = it.next().map(|p| p.as_ref().to_owned()).unwrap_or_default();
        Self::new(program).args(it)
    }

    /// A spec with the program, arguments, environment and working directory
    /// of a [`Command`] (user and other settings of the `Command` are not readable
    /// and therefore not copied; use [`ProcSpec::user`]).
    pub fn from_command(cmd: &Command) -> Self {
        let mut spec = Self::new(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                spec = spec.env(k, v);
            }
        }
        if let Some(dir) = cmd.get_current_dir() {
            spec = spec.current_dir(dir);
        }
        spec
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable (the rest of the environment is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Runs the program as this system user (and its groups), through
    /// `setpriv`, which execs: the process id stays the program's own.
    pub fn user(mut self, name: &str) -> Self {
        self.user = Some(name.to_owned());
        self
    }

    /// The signal that asks the process to stop (default `SIGTERM`; PostgreSQL
    /// uses `SIGINT`, its fast shutdown).
    pub fn stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// The configured stop signal.
    pub fn get_stop_signal(&self) -> Signal {
        self.stop_signal
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The command line as a human-readable string, for messages and logs.
    pub fn display(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        if let Some(user) = &self.user {
            s.push_str(&format!(" (as {user})"));
        }
        s
    }

    /// Builds the [`Command`]: `ip netns exec NS [setpriv ...] program args`, in
    /// its own process group, stdin from `/dev/null`.
    pub(crate) fn to_command(&self, netns: Option<&str>) -> Result<Command> {
        if self.program.is_empty() {
            bail!("empty command line");
        }
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(ns) = netns {
            argv.extend(["ip", "netns", "exec", ns].map(OsString::from));
        }
        let mut env = self.env.clone();
        if let Some(name) = &self.user {
            let user = User::from_name(name)
                .with_context(|| format!("looking up user {name}"))?
                .with_context(|| format!("no such user: {name}"))?;
            argv.extend(
                [
                    "setpriv",
                    "--reuid",
                    name,
                    "--regid",
                    name,
                    "--init-groups",
                    "--",
                ]
                .map(OsString::from),
            );
            env.push(("HOME".into(), user.dir.into_os_string()));
            env.push(("USER".into(), name.into()));
            env.push(("LOGNAME".into(), name.into()));
        }
        argv.push(self.program.clone());
        argv.extend(self.args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(env)
            .stdin(Stdio::null())
            .process_group(0);
        // A signal mask is inherited across fork and exec: a caller that
        // blocks SIGTERM (to wait for it synchronously) would otherwise
        // start processes that cannot be stopped.
        // SAFETY: sigprocmask is async-signal-safe; nothing else runs
        // between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::SigSet::all()
                    .thread_unblock()
                    .map_err(std::io::Error::from)
            });
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        Ok(cmd)
    }
}

impl From<&[&str]> for ProcSpec {
    fn from(argv: &[&str]) -> Self {
        Self::from_argv(argv)
    }
}

impl<const N: usize> From<[&str; N]> for ProcSpec {
    fn from(argv: [&str; N]) -> Self {
        Self::from_argv(&argv)
    }
}

impl From<Vec<String>> for ProcSpec {
    fn from(argv: Vec<String>) -> Self {
        Self::from_argv(&argv)
    }
}

impl From<&Command> for ProcSpec {
    fn from(cmd: &Command) -> Self {
        Self::from_command(cmd)
    }
}

/// Runs `cmd` to completion with piped stdout/stderr; kills its process group
/// and fails if it runs longer than `timeout`. The exit status is not checked.
pub(crate) fn run_output(mut cmd: Command, what: &str, timeout: Duration) -> Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("starting `{what}`"))?;
    let out_rx = read_pipe(child.stdout.take());
    let err_rx = read_pipe(child.stderr.take());
    let status = match wait_child(&mut child, timeout)? {
        Some(status) => status,
        None => {
            kill_group_and_reap(&mut child);
            let stderr = err_rx
                .recv_timeout(Duration::from_secs(1))
                .unwrap_or_default();
            bail!(
                "`{what}` timed out after {timeout:?}; stderr: {}",
                String::from_utf8_lossy(&stderr).trim()
            );
        }
    };
    // A grandchild that keeps the pipes open must not hang us: bounded waits.
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Fails with the command line, status, stderr and stdout unless `out` succeeded.
pub(crate) fn check_output(out: Output, what: &str) -> Result<Output> {
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}); stderr: {}; stdout: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            tail(&String::from_utf8_lossy(&out.stdout), 20)
        );
    }
    Ok(out)
}

/// Polls `child` until it exits or `timeout` passes; `None` on timeout.
pub(crate) fn wait_child(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut sleep = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(20));
    }
}

/// SIGKILLs the child's process group (the child leads it) and reaps the child.
/// The child is not reaped before the group is signalled, so its id cannot
/// have been reused.
pub(crate) fn kill_group_and_reap(child: &mut Child) {
    let pid = child.id() as i32;
    let _ = kill(NixPid::from_raw(-pid), Signal::SIGKILL);
    let _ = kill(NixPid::from_raw(pid), Signal::SIGKILL);
    if let Ok(None) = wait_child(child, Duration::from_secs(5)) {
        eprintln!("vipx-lab: pid {pid} did not die after SIGKILL within 5 s");
    }
}

fn read_pipe<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
