//! The VIP groups of this node: each either elected with VRRP or held in
//! its configured static state, tracked items applied, stepped down on stop.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use tracing::error;

use crate::{
    config::{Config, Election, GroupConfig, GroupId, InitialState},
    election::runner::{self, Command, ElectionHandle, Wiring},
    events::{EventKind, GroupState},
    health::track::{Effective, Tracking},
    operator::{HandoverError, Hold},
};

/// Runs the groups of a configuration.
pub struct GroupRunner {
    /// What every election works with (the heartbeat thread and the XDP
    /// records are absent in HA debug mode).
    wiring: Wiring,
    elections: HashMap<String, ElectionHandle>,
    /// Whether this node holds the cluster's quorum (always, without a
    /// cluster): without it no group may be MASTER.
    quorum: bool,
}

fn state(master: bool) -> GroupState {
    if master {
        GroupState::Master
    } else {
        GroupState::Backup
    }
}

impl GroupRunner {
    pub fn new(wiring: Wiring) -> Self {
        Self {
            wiring,
            elections: HashMap::new(),
            quorum: true,
        }
    }

    /// The XDP peer filter of a VRRP group: its `unicast_peers`, or
    /// everyone when it has none (multicast).
    fn set_filter(&self, group: &GroupConfig, peers: &[IpAddr]) {
        if let Some(records) = &self.wiring.records
            && let Err(err) = records.set_peers(group.vrid, peers)
        {
            error!(group = %group.name, "setting the XDP peer filter: {err}");
        }
    }

    /// Starts every group of `config`: elections for `vrrp` groups, the
    /// configured state for `static` ones; the groups of `held` start
    /// handed over (BACKUP, not taking the VIPs back).
    pub async fn start(
        &mut self,
        config: &Config,
        tracking: &Tracking,
        held: &BTreeMap<String, Hold>,
    ) {
        for (id, group) in config.groups_with_ids() {
            self.start_one(id, group, tracking, held).await;
        }
    }

    /// A reload: only the groups whose configuration (or place in the
    /// file, which is their id in the data plane) changed stop and start
    /// again; the others run on untouched (no failover). Returns the names
    /// of the groups restarted, removed or added.
    pub async fn reconfigure(
        &mut self,
        old: &Config,
        new: &Config,
        tracking: &Tracking,
        held: &BTreeMap<String, Hold>,
    ) -> Vec<String> {
        let same = |config: &Config, id: GroupId, group: &GroupConfig| {
            config.groups_with_ids().any(|(i, g)| i == id && g == group)
        };
        let mut changed = Vec::new();
        for (id, group) in old.groups_with_ids() {
            if !same(new, id, group) {
                self.stop_one(id, group).await;
                changed.push(group.name.clone());
            }
        }
        for (id, group) in new.groups_with_ids() {
            if !same(old, id, group) {
                self.start_one(id, group, tracking, held).await;
                if !changed.contains(&group.name) {
                    changed.push(group.name.clone());
                }
            }
        }
        changed
    }

    async fn start_one(
        &mut self,
        id: GroupId,
        group: &GroupConfig,
        tracking: &Tracking,
        held: &BTreeMap<String, Hold>,
    ) {
        {
            let effective = tracking.effective(&group.name).unwrap_or(Effective {
                priority: group.priority,
                fault: false,
            });
            if let Some(cluster) = &self.wiring.cluster {
                cluster.set_group_priority(&group.name, effective.priority);
            }
            self.wiring.metrics.set_group_priority(
                &group.name,
                effective.priority,
                effective.fault,
            );
            match group.election {
                Election::Vrrp => {
                    self.wiring.metrics.set_group_master(&group.name, false);
                    self.set_filter(group, &group.unicast_peers);
                    match runner::spawn(
                        id,
                        group,
                        effective.priority,
                        held.contains_key(&group.name),
                        self.wiring.clone(),
                    ) {
                        Ok(handle) => {
                            if effective.fault {
                                handle.send(Command::Fault(true));
                            }
                            if !self.quorum {
                                handle.send(Command::Quorum(false));
                            }
                            self.elections.insert(group.name.clone(), handle);
                        }
                        Err(err) => error!("{err:#}"),
                    }
                }
                Election::Static => {
                    let master =
                        group.state == InitialState::Master && !effective.fault && self.quorum;
                    self.set_static(id, group, master, "configured state").await;
                }
            }
        }
    }

    /// Stops one group: its election sends priority 0 and releases its
    /// VIPs; a static MASTER releases them.
    async fn stop_one(&mut self, id: GroupId, group: &GroupConfig) {
        if let Some(election) = self.elections.remove(&group.name) {
            election.shutdown().await;
        }
        if group.election == Election::Vrrp
            && let Some(records) = &self.wiring.records
            && let Err(err) = records.release(group.vrid)
        {
            error!(group = %group.name, "releasing the XDP peer filter: {err}");
        }
        if self.wiring.ownership.is_master(id) {
            self.wiring.ownership.become_backup(id, group).await;
            self.wiring.metrics.set_group_master(&group.name, false);
            self.wiring.events.record(
                EventKind::Group,
                &group.name,
                Some(GroupState::Master),
                GroupState::Backup,
                "stopping",
            );
        }
    }

    async fn set_static(&self, id: GroupId, group: &GroupConfig, master: bool, reason: &str) {
        let was = self.wiring.ownership.is_master(id);
        if master {
            self.wiring.ownership.become_master(id, group).await;
        } else {
            self.wiring.ownership.become_backup(id, group).await;
        }
        self.wiring.metrics.set_group_master(&group.name, master);
        if was != master || !was {
            self.wiring.events.record(
                EventKind::Group,
                &group.name,
                Some(state(was)),
                state(master),
                reason,
            );
        }
    }

    /// The elected groups this node is MASTER of, by name.
    pub fn masters(&self, config: &Config) -> Vec<String> {
        config
            .groups_with_ids()
            .filter(|(id, g)| g.election == Election::Vrrp && self.wiring.ownership.is_master(*id))
            .map(|(_, g)| g.name.clone())
            .collect()
    }

    /// Checks that `name` is an elected group of `config`, and says
    /// whether this node is its MASTER.
    pub fn check_hold(&self, config: &Config, name: &str) -> Result<bool, HandoverError> {
        let (id, group) = config
            .groups_with_ids()
            .find(|(_, g)| g.name == name)
            .ok_or_else(|| HandoverError::NoSuchGroup(name.to_owned()))?;
        if group.election != Election::Vrrp || !self.elections.contains_key(name) {
            return Err(HandoverError::Static(name.to_owned()));
        }
        Ok(self.wiring.ownership.is_master(id))
    }

    /// A manual handover of group `name` (`held`), or its end: see
    /// [`Command::Hold`].
    pub fn hold(&self, name: &str, held: bool) {
        if let Some(election) = self.elections.get(name) {
            election.send(Command::Hold(held));
        }
    }

    /// A group's tracked priority changed.
    pub async fn on_tracking(&mut self, config: &Config, name: &str, effective: Effective) {
        self.wiring
            .metrics
            .set_group_priority(name, effective.priority, effective.fault);
        let Some((id, group)) = config.groups_with_ids().find(|(_, g)| g.name == name) else {
            return;
        };
        if let Some(cluster) = &self.wiring.cluster {
            cluster.set_group_priority(name, effective.priority);
        }
        if let Some(election) = self.elections.get(name) {
            election.send(Command::Fault(effective.fault));
            election.send(Command::SetPriority(effective.priority));
            return;
        }
        // Static groups: a FAULT gives up MASTER, its end restores the state.
        let master = group.state == InitialState::Master && !effective.fault && self.quorum;
        if master != self.wiring.ownership.is_master(id) {
            let reason = if effective.fault {
                "a tracked item failed (FAULT)"
            } else {
                "tracked items recovered"
            };
            self.set_static(id, group, master, reason).await;
        }
    }

    /// The node lost or regained the cluster's quorum: without it every
    /// group gives its VIPs up (FAULT) and claims nothing.
    pub async fn on_quorum(&mut self, config: &Config, tracking: &Tracking, held: bool) {
        self.quorum = held;
        for (id, group) in config.groups_with_ids() {
            if let Some(election) = self.elections.get(&group.name) {
                election.send(Command::Quorum(held));
                continue;
            }
            if group.election == Election::Static {
                let fault = tracking.effective(&group.name).is_some_and(|e| e.fault);
                let master = group.state == InitialState::Master && !fault && held;
                if master != self.wiring.ownership.is_master(id) {
                    let reason = if held {
                        "the cluster's quorum is back"
                    } else {
                        "this node lost the cluster's quorum (fenced itself)"
                    };
                    self.set_static(id, group, master, reason).await;
                }
            }
        }
    }

    /// Steps down everywhere: elections send priority 0 and release their
    /// VIPs (and leave the heartbeat), static masters release theirs.
    pub async fn stop(&mut self, config: &Config) {
        for (id, group) in config.groups_with_ids() {
            self.stop_one(id, group).await;
        }
    }
}
