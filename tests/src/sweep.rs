//! Cleaning up after labs whose process died without dropping them (SIGKILL,
//! abort, power cut): their namespaces are named `vipx-{pid}-{seq}-{host}`.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::Pid as NixPid;

use crate::lab::KEEP_ENV;
use crate::netns::{self, list_netns, netns_inode};
use crate::process::Pid;

/// Sweeps of all processes take this lock (`flock`), one at a time.
const SWEEP_LOCK: &str = "/run/lock/vipx-lab-sweep.lock";

/// Takes the machine-wide sweep lock (waits at most 30 s for it).
pub(crate) fn lock_sweeps() -> Result<Flock<File>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(SWEEP_LOCK)
            .with_context(|| format!("opening {SWEEP_LOCK}"))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => return Err(errno).context(format!("locking {SWEEP_LOCK}")),
        }
    }
}

/// The pid encoded in a lab namespace name `vipx-{pid}-{seq}-{host}`.
pub fn owner_pid(netns_name: &str) -> Option<Pid> {
    let rest = netns_name.strip_prefix("vipx-")?;
    let mut parts = rest.splitn(3, '-');
    let pid = parts.next()?.parse().ok()?;
    let seq = parts.next()?;
    let host = parts.next()?;
    (!seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit()) && !host.is_empty()).then_some(pid)
}

/// The lab namespaces created by process `pid`.
pub fn leftovers_of(pid: Pid) -> Vec<String> {
    list_netns()
        .into_iter()
        .filter(|name| owner_pid(name) == Some(pid))
        .collect()
}

/// Whether a process with id `pid` exists.
pub fn pid_alive(pid: Pid) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(kill(NixPid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// For every lab namespace whose creating process is gone: kills the processes
/// inside it and deletes it. Returns the namespaces removed. Namespaces of
/// live processes (other tests running now) are left alone. Concurrent sweeps
/// (of several processes) run one after the other.
pub fn sweep_stale() -> Result<Vec<String>> {
    let _lock = lock_sweeps()?;
    let stale: Vec<String> = list_netns()
        .into_iter()
        .filter(|name| owner_pid(name).is_some_and(|pid| !pid_alive(pid)))
        .collect();
    let inodes: Vec<u64> = stale.iter().filter_map(|ns| netns_inode(ns).ok()).collect();
    let (_, left) = netns::kill_all_in(&inodes, Duration::from_secs(5));
    if !left.is_empty() {
        anyhow::bail!("processes survived SIGKILL in stale namespaces: {left:?}");
    }
    // Hub namespaces last, after the hosts that hang on their bridges.
    let (hubs, hosts): (Vec<&String>, Vec<&String>) =
        stale.iter().partition(|name| name.ends_with("-hub"));
    for ns in hosts.into_iter().chain(hubs) {
        netns::delete(ns)?;
    }
    Ok(stale)
}

/// Removes the temporary directories (`{temp dir}/vipx-{pid}-{seq}-*`) of
/// labs whose process is gone, as a kept (`VIPX_LAB_KEEP=1`) or killed lab
/// leaves them. Returns the directories removed. Does nothing while
/// `VIPX_LAB_KEEP=1` is set: someone is keeping lab directories to read them.
pub fn sweep_stale_dirs() -> Result<Vec<PathBuf>> {
    if std::env::var(KEEP_ENV).is_ok_and(|v| v == "1") {
        return Ok(Vec::new());
    }
    let tmp = std::env::temp_dir();
    let entries = std::fs::read_dir(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let stale = entry
            .file_name()
            .to_str()
            .and_then(owner_pid)
            .is_some_and(|pid| !pid_alive(pid));
        if stale && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_owner_pid() {
        assert_eq!(owner_pid("vipx-123-0-n1"), Some(123));
        assert_eq!(owner_pid("vipx-123-4-hub"), Some(123));
        assert_eq!(owner_pid("vipx-123-4-my-host"), Some(123));
        assert_eq!(owner_pid("vipx-123-n1"), None);
        assert_eq!(owner_pid("vipx-abc-0-n1"), None);
        assert_eq!(owner_pid("other-123-0-n1"), None);
        assert_eq!(owner_pid("vipx-123-0-"), None);
    }
}
