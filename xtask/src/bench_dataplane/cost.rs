//! What a transaction costs the machine, whatever else runs on it: the CPU
//! time of every process of the lab (its namespaces: PgBouncers,
//! PostgreSQL, the agents, HAProxy, and pgbench, reaped by this process),
//! and the time the kernel spent in the nodes' XDP programs (its BPF run
//! statistics), per transaction. TPS on two shared cores moves with the
//! load around it; the CPU a transaction takes does much less, so the
//! difference between two targets is what the hop between them costs.
//! Softirq work is charged to the task it interrupts (no IRQ time
//! accounting on this kernel); on the lab's veths it runs in the sending
//! process's context, so the hop's packet work is counted too.

use std::{
    collections::HashMap,
    os::fd::{FromRawFd as _, OwnedFd},
};

use anyhow::Context as _;
use vipx_lab::{Cluster, Pid, processes_in_netns_inodes};

/// `BPF_ENABLE_STATS` (`include/uapi/linux/bpf.h`) and its one type,
/// `BPF_STATS_RUN_TIME`.
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Keeps the kernel's BPF run-time statistics on while it lives (the
/// `kernel.bpf_stats_enabled` sysctl is left as it was).
pub struct BpfStats(#[allow(dead_code, reason = "held for its lifetime")] OwnedFd);

impl BpfStats {
    pub fn enable() -> anyhow::Result<Self> {
        let mut attr = [0u32; 4];
        attr[0] = BPF_STATS_RUN_TIME;
        // SAFETY: `attr` is a zeroed prefix of `union bpf_attr` holding the
        // `enable_stats.type` field; its size is passed along.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                attr.as_mut_ptr(),
                std::mem::size_of_val(&attr),
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("BPF_ENABLE_STATS");
        }
        // SAFETY: the kernel returned a new file descriptor we own.
        Ok(Self(unsafe {
            OwnedFd::from_raw_fd(i32::try_from(fd).context("fd")?)
        }))
    }
}

/// The lab's CPU and XDP time at one instant.
pub struct Reading {
    /// Per process: its start time (to tell a recycled pid) and its CPU
    /// ticks, its reaped children's included.
    procs: HashMap<Pid, (u64, u64)>,
    /// This process's reaped children (pgbench), in microseconds.
    children_us: u64,
    /// Nanoseconds in the nodes' XDP programs.
    xdp_ns: u64,
}

/// Reads a cluster's lab.
pub struct Meter {
    inodes: Vec<u64>,
    progs: Vec<u32>,
    hz: f64,
}

impl Meter {
    pub fn new(cluster: &Cluster) -> anyhow::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(Self {
            inodes: cluster.lab.netns_inodes()?,
            progs: cluster
                .nodes
                .iter()
                .filter_map(|n| n.host.xdp_prog_id())
                .collect(),
            hz,
        })
    }

    pub fn read(&self) -> Reading {
        let procs = processes_in_netns_inodes(&self.inodes)
            .into_iter()
            .filter_map(|pid| Some((pid, proc_ticks(pid)?)))
            .collect();
        // SAFETY: a zeroed rusage is a valid out-parameter.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a valid, writable rusage.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Reading {
            procs,
            children_us: us(usage.ru_utime) + us(usage.ru_stime),
            xdp_ns: self.progs.iter().filter_map(|id| run_time_ns(*id)).sum(),
        }
    }

    /// Microseconds of CPU, and of it in XDP, per transaction between two
    /// readings.
    pub fn per_txn(&self, before: &Reading, after: &Reading, txns: u64) -> (f64, f64) {
        let ticks: u64 = after
            .procs
            .iter()
            .map(|(pid, (start, ticks))| match before.procs.get(pid) {
                Some((s, t)) if s == start => ticks.saturating_sub(*t),
                _ => *ticks,
            })
            .sum();
        let cpu_us = ticks as f64 / self.hz * 1e6
            + after.children_us.saturating_sub(before.children_us) as f64;
        let xdp_us = after.xdp_ns.saturating_sub(before.xdp_ns) as f64 / 1e3;
        let txns = txns.max(1) as f64;
        (cpu_us / txns, xdp_us / txns)
    }
}

/// Field `n` (numbered from 1, as in proc(5)) of each of `pid`'s
/// `/proc/PID/stat` fields `ns`, numeric ones only.
pub(super) fn stat_fields<const K: usize>(pid: Pid, ns: [usize; K]) -> Option<[u64; K]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start at 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let mut out = [0; K];
    for (value, n) in out.iter_mut().zip(ns) {
        *value = fields.get(n.checked_sub(3)?)?.parse().ok()?;
    }
    Some(out)
}

/// Start time and utime + stime + cutime + cstime of `pid`, in ticks.
fn proc_ticks(pid: Pid) -> Option<(u64, u64)> {
    let [utime, stime, cutime, cstime, start] = stat_fields(pid, [14, 15, 16, 17, 22])?;
    Some((start, utime + stime + cutime + cstime))
}

/// `run_time_ns` of BPF program `id` (`bpftool prog show`).
fn run_time_ns(id: u32) -> Option<u64> {
    let out = std::process::Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = text.split("run_time_ns ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
