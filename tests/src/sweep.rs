//! Cleaning up after labs whose process died without dropping them (SIGKILL,
//! abort, power cut): their namespaces are named `vipx-{pid}-{seq}-{host}`.

use std::time::Duration;

use anyhow::Result;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid as NixPid;

use crate::netns::{self, list_netns, netns_inode};
use crate::process::Pid;

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
/// live processes (other tests running now) are left alone.
pub fn sweep_stale() -> Result<Vec<String>> {
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
