//! VIP group state in the data plane: the MASTER flag and the agent's
//! lease. XDP serves a group's services only while both hold, so a hung or
//! dead agent stops serving within one lease timeout.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::info;
use vipx_common::{Group, MAP_GROUPS, service::MAX_GROUPS};

use super::{
    loader::DataplaneError,
    maps::{Maps, lock},
};

/// `CLOCK_MONOTONIC` now, in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always readable");
    u64::try_from(now.tv_sec()).unwrap_or(0) * 1_000_000_000
        + u64::try_from(now.tv_nsec()).unwrap_or(0)
}

/// Writes the group map: master flags and lease.
pub struct GroupStates {
    maps: Arc<Maps>,
    lease: Duration,
    dry_run: bool,
    masters: Mutex<Vec<bool>>,
}

impl GroupStates {
    /// `lease`: how long a refresh keeps the data plane serving.
    pub fn new(maps: Arc<Maps>, lease: Duration, dry_run: bool) -> Self {
        Self {
            maps,
            lease,
            dry_run,
            masters: Mutex::new(vec![false; MAX_GROUPS as usize]),
        }
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
        Ok(())
    }

    fn write(&self, group: u32, master: bool, now: u64) -> Result<(), DataplaneError> {
        let lease_ns = u64::try_from(self.lease.as_nanos()).unwrap_or(u64::MAX);
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

    /// Runs the lease refresher until the task is dropped.
    pub async fn run_refresher(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = self.refresh() {
                tracing::error!("refreshing the data-plane lease: {err}");
            }
        }
    }
}
