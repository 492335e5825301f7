//! What the lab benchmarks share: keepalived + HAProxy beside a vipx
//! cluster (the reference vipx is measured against), waiting with a
//! deadline, and the end of a process's log for error messages.

pub mod keepalived;

use std::time::{Duration, Instant};

use anyhow::bail;
use vipx_lab::Pid;

/// How often a state is polled while waiting for it.
const POLL: Duration = Duration::from_millis(50);

/// Polls `done` until it holds, at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The last lines of `pid`'s log, indented, without the netlink crate's
/// noise.
pub fn log_end(lab: &vipx_lab::LabCore, pid: Pid) -> String {
    lab.log_tail(pid, 40)
        .lines()
        .filter(|l| !l.contains("IFLA_INET6_CONF"))
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|l| format!("    {l}\n"))
        .collect()
}
