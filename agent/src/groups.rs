//! The VIP groups of this node: each either elected with VRRP or held in
//! its configured static state, tracked items applied, stepped down on stop.

use std::{collections::HashMap, sync::Arc};

use tracing::error;

use crate::{
    config::{Config, Election, GroupConfig, InitialState},
    election::runner::{self, Command, ElectionHandle},
    events::EventLog,
    health::track::{Effective, Tracking},
    metrics::Metrics,
    ownership::Ownership,
};

/// Runs the groups of a configuration.
pub struct GroupRunner {
    ownership: Arc<Ownership>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    elections: HashMap<String, ElectionHandle>,
}

fn ids(config: &Config) -> impl Iterator<Item = (u32, &GroupConfig)> {
    config
        .groups
        .iter()
        .enumerate()
        .map(|(id, g)| (u32::try_from(id).unwrap_or(u32::MAX), g.get_ref()))
}

impl GroupRunner {
    pub fn new(ownership: Arc<Ownership>, events: Arc<EventLog>, metrics: Arc<Metrics>) -> Self {
        Self {
            ownership,
            events,
            metrics,
            elections: HashMap::new(),
        }
    }

    /// Starts every group of `config`: elections for `vrrp` groups, the
    /// configured state for `static` ones.
    pub async fn start(&mut self, config: &Config, tracking: &Tracking) {
        for (id, group) in ids(config) {
            let effective = tracking.effective(&group.name).unwrap_or(Effective {
                priority: group.priority,
                fault: false,
            });
            self.metrics
                .set_group_priority(&group.name, effective.priority, effective.fault);
            match group.election {
                Election::Vrrp => {
                    self.metrics.set_group_master(&group.name, false);
                    match runner::spawn(
                        id,
                        group,
                        effective.priority,
                        Arc::clone(&self.ownership),
                        Arc::clone(&self.events),
                        Arc::clone(&self.metrics),
                    ) {
                        Ok(handle) => {
                            if effective.fault {
                                handle.send(Command::Fault(true));
                            }
                            self.elections.insert(group.name.clone(), handle);
                        }
                        Err(err) => error!("{err:#}"),
                    }
                }
                Election::Static => {
                    let master = group.state == InitialState::Master && !effective.fault;
                    self.set_static(id, group, master, "configured state").await;
                }
            }
        }
    }

    async fn set_static(&self, id: u32, group: &GroupConfig, master: bool, reason: &str) {
        let was = self.ownership.is_master(id);
        if master {
            self.ownership.become_master(id, group).await;
        } else {
            self.ownership.become_backup(id, group).await;
        }
        self.metrics.set_group_master(&group.name, master);
        if was != master || !was {
            let name = |m: bool| if m { "MASTER" } else { "BACKUP" };
            self.events
                .record("group", &group.name, name(was), name(master), reason);
        }
    }

    /// A group's tracked priority changed.
    pub async fn on_tracking(&mut self, config: &Config, name: &str, effective: Effective) {
        self.metrics
            .set_group_priority(name, effective.priority, effective.fault);
        let Some((id, group)) = ids(config).find(|(_, g)| g.name == name) else {
            return;
        };
        if let Some(election) = self.elections.get(name) {
            election.send(Command::Fault(effective.fault));
            election.send(Command::SetPriority(effective.priority));
            return;
        }
        // Static groups: a FAULT gives up MASTER, its end restores the state.
        let master = group.state == InitialState::Master && !effective.fault;
        if master != self.ownership.is_master(id) {
            let reason = if effective.fault {
                "a tracked item failed (FAULT)"
            } else {
                "tracked items recovered"
            };
            self.set_static(id, group, master, reason).await;
        }
    }

    /// Steps down everywhere: elections send priority 0 and release their
    /// VIPs, static masters release theirs.
    pub async fn stop(&mut self, config: &Config) {
        for (_, election) in self.elections.drain() {
            election.shutdown().await;
        }
        for (id, group) in ids(config) {
            if self.ownership.is_master(id) {
                self.ownership.become_backup(id, group).await;
                self.metrics.set_group_master(&group.name, false);
                self.events
                    .record("group", &group.name, "MASTER", "BACKUP", "stopping");
            }
        }
    }
}
