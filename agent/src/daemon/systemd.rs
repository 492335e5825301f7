//! systemd's service protocol (`sd_notify`, for `Type=notify`): READY once
//! the groups run and the API answers, STATUS with the groups' states,
//! RELOADING/READY around a SIGHUP, STOPPING at the stop, and WATCHDOG
//! when the unit sets `WatchdogSec`. Without `NOTIFY_SOCKET` (not under
//! systemd) every call does nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sd_notify::NotifyState;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::events::{EventKind, EventLog};

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        warn!("telling systemd {states:?}: {err}");
    }
}

/// The agent is ready: systemd may start what comes after it.
pub(super) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A SIGHUP reload begins (READY follows when it is done).
pub(super) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The agent is stopping (stepping down first).
pub(super) fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: handing the VIPs over"),
    ]);
}

/// Keeps systemd's STATUS line in step with the groups' states, as the
/// event log records their changes.
pub(super) fn follow_groups(
    events: &EventLog,
    mut states: std::collections::BTreeMap<String, String>,
) -> JoinHandle<()> {
    let mut live = events.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = live.recv().await {
            if event.kind == EventKind::Group {
                states.insert(event.subject.clone(), event.to.clone());
                send(&[NotifyState::Status(&summary(&states))]);
            }
        }
    })
}

/// "group pg MASTER, group web BACKUP".
pub(super) fn summary(states: &std::collections::BTreeMap<String, String>) -> String {
    if states.is_empty() {
        return "running, no VIP group".to_owned();
    }
    states
        .iter()
        .map(|(group, state)| format!("group {group} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// systemd's watchdog (`WatchdogSec=`): the lease refresher's thread pings
/// it, but only while the runtime that runs the elections also answers
/// (a task of it stamps a clock): a hung agent is restarted by systemd.
pub(super) struct Watchdog {
    /// Milliseconds since `epoch` when the runtime last stamped.
    stamp: Arc<AtomicU64>,
    epoch: Instant,
    /// Longest age of the stamp for a ping: half the watchdog time.
    limit: Duration,
    ticker: JoinHandle<()>,
}

impl Watchdog {
    /// The watchdog, when the unit asks for one (`WATCHDOG_USEC` for this
    /// process); the lease must be refreshed at least twice per period.
    pub(super) fn start(lease_refresh: Duration) -> Option<Self> {
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) {
            return None;
        }
        let period = Duration::from_micros(usec);
        let limit = period / 2;
        if lease_refresh > limit {
            warn!(
                ?period,
                ?lease_refresh,
                "the systemd watchdog period is under twice [dataplane] lease_refresh: pings may come too late"
            );
        }
        info!(
            ?period,
            "systemd watchdog on: pinged by the lease refresher while the runtime answers"
        );
        let stamp = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let ticker = {
            let stamp = Arc::clone(&stamp);
            tokio::spawn(async move {
                let mut every = tokio::time::interval((limit / 4).max(Duration::from_millis(10)));
                loop {
                    every.tick().await;
                    stamp.store(millis(epoch.elapsed()), Ordering::Relaxed);
                }
            })
        };
        Some(Self {
            stamp,
            epoch,
            limit,
            ticker,
        })
    }

    /// What the lease refresher calls after each refresh: pings systemd
    /// while the runtime's stamp is fresh.
    pub(super) fn pinger(&self) -> impl Fn() + Send + 'static {
        let stamp = Arc::clone(&self.stamp);
        let epoch = self.epoch;
        let limit = millis(self.limit);
        move || {
            let age = millis(epoch.elapsed()).saturating_sub(stamp.load(Ordering::Relaxed));
            if age <= limit {
                let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
            }
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_every_group_and_its_state() {
        let mut states = std::collections::BTreeMap::new();
        assert_eq!(summary(&states), "running, no VIP group");
        states.insert("web".to_owned(), "BACKUP".to_owned());
        states.insert("pg".to_owned(), "MASTER".to_owned());
        assert_eq!(summary(&states), "group pg MASTER, group web BACKUP");
    }
}
