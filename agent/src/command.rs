//! A command the agent runs (a health check's `exec`, a fence command): in
//! a process group of its own, so that one that times out is killed with
//! whatever it started (`sh -c 'curl ...'`), and with the ends of its
//! output kept, bounded, to say why it failed.
//!
//! A leaf.

use std::{
    process::{ExitStatus, Stdio},
    time::Duration,
};

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _},
    process::{Child, Command},
};

/// How much of stdout and of stderr is kept (their ends).
pub const TAIL: usize = 4096;
/// How many of its last lines a reason quotes.
const REASON_LINES: usize = 2;
/// How long the output is still read after the command exited (a
/// background process it started may hold it open).
const OUTPUT_GRACE: Duration = Duration::from_millis(50);

/// A started command's child, whose process group is killed when this is
/// dropped before the child was reaped (a timeout, a cancelled caller).
pub struct Group {
    child: Child,
    pgid: Option<Pid>,
}

/// The ends of a command's output (at most [`TAIL`] bytes each).
#[derive(Debug, Default)]
pub struct Tails {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Group {
    /// Starts `program` with `args` (and `env`) in a process group of its
    /// own, stdin from /dev/null, stderr piped, stdout piped if `stdout`.
    pub fn spawn(
        program: &str,
        args: &[String],
        env: &[(&str, String)],
        stdout: bool,
    ) -> std::io::Result<Self> {
        let stdout = if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map(Self::new)
    }

    fn new(child: Child) -> Self {
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Self { child, pgid }
    }

    /// Waits for the command while it reads the ends of its piped output;
    /// the child is reaped when this returns.
    pub async fn wait(&mut self, tails: &mut Tails) -> std::io::Result<ExitStatus> {
        let (stdout, stderr) = (self.child.stdout.take(), self.child.stderr.take());
        let read = async {
            tokio::join!(
                read_tail(stdout, &mut tails.stdout),
                read_tail(stderr, &mut tails.stderr)
            );
        };
        tokio::pin!(read);
        let wait = self.child.wait();
        tokio::pin!(wait);
        let mut read_done = false;
        let status = loop {
            tokio::select! {
                status = &mut wait => break status,
                () = &mut read, if !read_done => read_done = true,
            }
        };
        if status.is_ok() {
            // Reaped: its pid may be reused, so no more killpg.
            self.pgid = None;
        }
        if !read_done {
            let _ = tokio::time::timeout(OUTPUT_GRACE, read).await;
        }
        status
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The child is not reaped yet, so the group id is still ours. Its
        // own kill_on_drop follows when `child` drops.
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Reads `from` to its end, keeping the last [`TAIL`] bytes in `tail`.
async fn read_tail(from: Option<impl AsyncRead + Unpin>, tail: &mut Vec<u8>) {
    let Some(mut from) = from else {
        return;
    };
    let mut chunk = [0u8; 1024];
    // Each round reads at least one byte or ends: bounded by the output.
    while let Ok(n @ 1..) = from.read(&mut chunk).await {
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * TAIL {
            tail.drain(..tail.len() - TAIL);
        }
    }
    if tail.len() > TAIL {
        tail.drain(..tail.len() - TAIL);
    }
}

/// "exit status 3: <last lines of `output`>".
pub fn status_reason(status: ExitStatus, output: &[u8]) -> String {
    let tail = last_lines(output);
    let status = status.to_string(); // "exit status: 3", "signal: 9 (SIGKILL)"
    let status = status.replacen(": ", " ", 1);
    if tail.is_empty() {
        status
    } else {
        format!("{status}: {tail}")
    }
}

/// The last non-empty lines of some output, joined by " / ".
pub fn last_lines(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(REASON_LINES)..].join(" / ")
}
