//! Named network namespaces (`/run/netns/NAME`, as `ip netns` manages them):
//! creation, deletion, entering from a thread, and finding the processes
//! inside one by its inode.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use nix::sched::{CloneFlags, setns};

use crate::process::{Pid, check_output, run_output};

/// Where `ip netns` keeps its named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `ip netns add` makes `/run/netns` a shared mount on first use; concurrent
/// first uses can race, so this process serialises its own adds and deletes.
static NETNS_LOCK: Mutex<()> = Mutex::new(());

/// The file that names namespace `name`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether a named namespace `name` exists.
pub fn netns_exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// All named namespaces (the entries of `/run/netns`), sorted.
pub fn list_netns() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The inode of namespace `name`: what `/proc/PID/ns/net` shows as `net:[INODE]`
/// for every process inside it.
pub fn netns_inode(name: &str) -> Result<u64> {
    let meta = std::fs::metadata(netns_path(name))
        .with_context(|| format!("no network namespace {name}"))?;
    Ok(meta.ino())
}

/// The process ids (thread-group leaders) whose network namespace is one of
/// `inodes`, found by scanning `/proc/*/ns/net`. This process is never listed.
pub fn processes_in_netns_inodes(inodes: &[u64]) -> Vec<Pid> {
    let wanted: HashSet<u64> = inodes.iter().copied().collect();
    let me = std::process::id();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<Pid> = proc_dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| net_inode_of(pid).is_some_and(|ino| wanted.contains(&ino)))
        .collect();
    pids.sort_unstable();
    pids
}

/// The network-namespace inode of process `pid`, if it is alive (zombies have none).
pub(crate) fn net_inode_of(pid: Pid) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
    let link = link.to_str()?;
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// SIGKILLs every process inside the namespaces `inodes` and waits (at most
/// `timeout`) until none is left. A process is signalled through a pidfd after
/// re-checking its namespace, so a recycled pid is never hit. Returns the pids
/// that were signalled, and those still there at the deadline.
pub(crate) fn kill_all_in(inodes: &[u64], timeout: Duration) -> (Vec<Pid>, Vec<Pid>) {
    let wanted: HashSet<u64> = inodes.iter().copied().collect();
    let mut killed = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let pids = processes_in_netns_inodes(inodes);
        if pids.is_empty() || std::time::Instant::now() >= deadline {
            return (killed, pids);
        }
        for pid in pids {
            if sigkill_if_in(pid, &wanted) && !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigkill_if_in(pid: Pid, wanted: &HashSet<u64>) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the syscall returned a fresh file descriptor that we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // The pidfd pins the process: if it is still in the namespace now, the
    // signal reaches that very process.
    if !net_inode_of(pid).is_some_and(|ino| wanted.contains(&ino)) {
        return false;
    }
    // SAFETY: pidfd_send_signal on an fd we own, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    rc == 0
}

/// Runs `ip ARGS` in the current (root) namespace with a 30 s deadline; fails
/// with the command line and stderr unless it succeeds.
pub(crate) fn ip(args: &[&str]) -> Result<Output> {
    let what = format!("ip {}", args.join(" "));
    let mut cmd = Command::new("ip");
    cmd.args(args);
    check_output(run_output(cmd, &what, Duration::from_secs(30))?, &what)
}

/// `ip netns add NAME`.
pub(crate) fn add(name: &str) -> Result<()> {
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ip(&["netns", "add", name])?;
    Ok(())
}

/// `ip netns del NAME` (a no-op if it does not exist, or stops existing).
pub(crate) fn delete(name: &str) -> Result<()> {
    let _guard = NETNS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !netns_exists(name) {
        return Ok(());
    }
    match ip(&["netns", "del", name]) {
        // Another process (a concurrent sweep) may have deleted it meanwhile.
        Err(_) if !netns_exists(name) => Ok(()),
        other => other.map(drop),
    }
}

/// Runs `f` on a fresh thread that has joined namespace `name`
/// (`setns(CLONE_NEWNET)`) and returns its result; a panic in `f` is resumed
/// in the caller. Sockets opened in `f` stay in that namespace.
///
/// Note: `/sys/class/net` still shows the devices of the namespace `/sys` was
/// mounted in; use `/proc/thread-self/net/*`, netlink or ioctls inside `f`.
pub fn in_netns<F, R>(name: &str, f: F) -> Result<R>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file = File::open(netns_path(name))
        .with_context(|| format!("opening network namespace {name}"))?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn_scoped(scope, move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map(|()| {
                    drop(file);
                    f()
                })
            })
            .context("spawning a thread")?;
        match handle.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(errno)) => Err(anyhow!("setns into {name}: {errno}")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `/proc/sys` path of a sysctl given dotted (`net.ipv4.ip_forward`) or with
/// slashes (`net/ipv4/conf/eth0.100/rp_filter`, for names that contain dots).
fn sysctl_path(key: &str) -> PathBuf {
    let rel = if key.contains('/') {
        key.to_owned()
    } else {
        key.replace('.', "/")
    };
    PathBuf::from("/proc/sys").join(rel)
}

/// Writes a sysctl (see [`sysctl_path`] for `key`) in namespace `name`, through
/// `/proc/sys` from a thread inside it.
pub(crate) fn write_sysctl(name: &str, key: &str, value: &str) -> Result<()> {
    let path = sysctl_path(key);
    in_netns(name, || std::fs::write(&path, value))?
        .with_context(|| format!("sysctl {key}={value} in {name}"))
}

/// Reads a sysctl in namespace `name`.
pub(crate) fn read_sysctl(name: &str, key: &str) -> Result<String> {
    let path = sysctl_path(key);
    let value = in_netns(name, || std::fs::read_to_string(&path))?
        .with_context(|| format!("reading sysctl {key} in {name}"))?;
    Ok(value.trim().to_owned())
}
