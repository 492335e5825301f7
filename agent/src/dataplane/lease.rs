//! VIP group state in the data plane: the MASTER flag and the agent's
//! lease. XDP serves a group's services only while both hold, so a hung or
//! dead agent stops serving within one lease timeout.

use crate::locks::lock;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::info;
use vipx_common::{Group, MAP_GROUPS, service::MAX_GROUPS};

use super::{error::DataplaneError, maps::Maps};

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable");
    u64::try_from(now.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(now.tv_nsec()).unwrap_or(0)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes the group map: master flags and lease.
pub struct GroupStates {
    maps: Arc<Maps>,
    /// The lease, in nanoseconds (a reload may change it).
    lease_ns: std::sync::atomic::AtomicU64,
    dry_run: bool,
    masters: Mutex<Vec<bool>>,
    /// `CLOCK_MONOTONIC` of the refresher's last pass that wrote every
    /// lease (0: none yet).
    refreshed_ns: std::sync::atomic::AtomicU64,
}

impl GroupStates {
    /// `lease`: how long a refresh keeps the data plane serving.
    pub fn new(maps: Arc<Maps>, lease: Duration, dry_run: bool) -> Self {
        Self {
            maps,
            lease_ns: std::sync::atomic::AtomicU64::new(nanos(lease)),
            dry_run,
            masters: Mutex::new(vec![false; MAX_GROUPS as usize]),
            refreshed_ns: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A reload changed `[dataplane] lease_timeout`: the next refresh
    /// writes leases of the new length.
    pub fn set_lease(&self, lease: Duration) {
        self.lease_ns
            .store(nanos(lease), std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes this node MASTER (or not) of `group` in the data plane, with a
    /// fresh lease.
    pub fn set_master(&self, group: u32, master: bool) -> Result<(), DataplaneError> {
        let slot = usize::try_from(group)
            .ok()
            .filter(|g| *g < MAX_GROUPS as usize);
        let slot = slot.ok_or(DataplaneError::Full("groups"))?;
        lock(&self.masters)[slot] = master;
        if self.dry_run {
            info!(
                group,
                master, "HA debug: would set the data-plane master flag"
            );
            return Ok(());
        }
        self.write(group, master, monotonic_ns())
    }

    /// Whether this node is MASTER of `group` in the data plane.
    pub fn is_master(&self, group: u32) -> bool {
        lock(&self.masters)
            .get(group as usize)
            .copied()
            .unwrap_or(false)
    }

    /// Pushes the lease of every group this node masters forward.
    pub fn refresh(&self) -> Result<(), DataplaneError> {
        if self.dry_run {
            return Ok(());
        }
        let now = monotonic_ns();
        let masters: Vec<u32> = lock(&self.masters)
            .iter()
            .enumerate()
            .filter(|(_, m)| **m)
            .filter_map(|(g, _)| u32::try_from(g).ok())
            .collect();
        for group in masters {
            self.write(group, true, now)?;
        }
        self.refreshed_ns
            .store(now, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// How long a refresh keeps the data plane serving.
    pub fn lease(&self) -> Duration {
        Duration::from_nanos(self.lease_ns.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The time since the refresher last wrote every lease (`None` before
    /// its first pass, and in HA debug mode, where nothing is written).
    pub fn since_refresh(&self) -> Option<Duration> {
        match self.refreshed_ns.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_nanos(monotonic_ns().saturating_sub(at))),
        }
    }

    fn write(&self, group: u32, master: bool, now: u64) -> Result<(), DataplaneError> {
        let lease_ns = self.lease_ns.load(std::sync::atomic::Ordering::Relaxed);
        let value = Group {
            master: u32::from(master),
            _pad: 0,
            lease_until_ns: if master {
                now.saturating_add(lease_ns)
            } else {
                0
            },
        };
        lock(&self.maps.groups)
            .set(group, value, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_GROUPS,
                source,
            })
    }

    /// Starts the lease refresher on a thread of its own, at real-time
    /// priority when the system allows it (as keepalived runs its VRRP
    /// process): a busy tokio scheduler or a loaded machine must not let
    /// the lease lapse while the agent is healthy. `refreshed` is called
    /// after each refresh that worked (systemd's watchdog is pinged there).
    /// Stops when the returned guard is dropped.
    pub fn spawn_refresher(
        self: Arc<Self>,
        every: Duration,
        refreshed: impl Fn() + Send + 'static,
    ) -> std::io::Result<Refresher> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("vipx-lease".into())
            .spawn(move || {
                realtime::raise("lease refresher");
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    match self.refresh() {
                        Ok(()) => refreshed(),
                        Err(err) => tracing::error!("refreshing the data-plane lease: {err}"),
                    }
                    std::thread::sleep(every);
                }
            })?;
        Ok(Refresher {
            stop,
            thread: Some(thread),
        })
    }
}

/// Stops the lease refresher when dropped.
pub struct Refresher {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Real-time scheduling for threads whose timing matters.
pub mod realtime {
    /// `SCHED_FIFO` priority of timing threads (keepalived's default
    /// `vrrp_rt_priority` range is 1-99; 50 leaves room around it).
    pub const PRIORITY: i32 = 50;

    /// Puts the calling thread in `SCHED_FIFO`; logs and carries on at
    /// normal priority where that is not allowed.
    pub fn raise(what: &str) {
        let param = libc::sched_param {
            sched_priority: PRIORITY,
        };
        // SAFETY: pthread_self is always valid; param is initialised.
        let err =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        if err == 0 {
            tracing::debug!("{what}: SCHED_FIFO {PRIORITY}");
        } else {
            tracing::warn!(
                "{what}: no real-time priority ({}); it runs at normal priority",
                std::io::Error::from_raw_os_error(err)
            );
        }
    }
}
