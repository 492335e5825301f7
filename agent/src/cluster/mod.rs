//! The cluster (`[cluster] members`): registration and liveness between
//! the voters over HTTP (`/api/v1/ha/register`, `/ping`, `/nodes`), the
//! quorum, the witness's vote, and the gate every claim of a group passes.
//!
//! - A node may be (or become) MASTER only while it sees a majority of the
//!   voters within `quorum_timeout` ([`view`]); the daemon fences the
//!   node (every group gives its VIPs up) when the quorum goes.
//! - The witness (`vipx-agent witness`) gives its one vote to one node at
//!   a time ([`ballot`]).
//! - A backup takes over from a MASTER it lost only once nobody it hears
//!   reports that MASTER alive: a MASTER cut off from the majority has
//!   fenced itself by then ([`Cluster::claim`]).
//!
//! - [`wire`]: what the voters send each other;
//! - [`pinger`]: the pings this node sends.

pub mod ballot;
pub mod pinger;
pub mod view;
pub mod wire;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    config::ClusterConfig,
    events::EventLog,
    fence::FenceCommand,
    locks::lock,
    metrics::{Metrics, cluster::ClusterMetrics},
};
use ballot::Ballot;
use view::{Quorum, View};
use wire::{GroupReport, NodesReport, Ping, Pong, Register, Registered, VoterReport};

/// What this voter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Node,
    Witness,
}

impl Role {
    fn word(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Witness => "witness",
        }
    }
}

/// Why a voter's request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("{node} is not a voter of this cluster reached from {from}")]
    Unknown { node: String, from: IpAddr },
}

/// Why a claim of a group was not allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClaimRefused {
    #[error("no quorum ({0})")]
    NoQuorum(String),
    #[error("{0} still reports being its MASTER")]
    MasterAlive(String),
    #[error("{0} outranks this node and is ready to take over")]
    Outranked(String),
}

/// What fences a MASTER peer lost while it may still hold the VIPs
/// (`[cluster] fence`).
pub struct Fencer {
    pub command: FenceCommand,
    pub ha_debug: bool,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
}

impl std::fmt::Debug for Fencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fencer")
            .field("command", &self.command)
            .field("ha_debug", &self.ha_debug)
            .finish_non_exhaustive()
    }
}

/// This voter's part in the cluster.
#[derive(Debug)]
pub struct Cluster {
    me: String,
    address: std::net::SocketAddr,
    /// This agent's start (ns since the Unix epoch).
    epoch: u64,
    role: Role,
    ping_interval: Duration,
    quorum_timeout: Duration,
    view: Mutex<View>,
    /// The witness's vote (the witness only).
    ballot: Option<Mutex<Ballot>>,
    /// This node's groups, as its pings report them.
    local: Mutex<BTreeMap<String, GroupReport>>,
    quorum: watch::Sender<Quorum>,
    metrics: Option<ClusterMetrics>,
    fencer: Option<Arc<Fencer>>,
}

impl Cluster {
    /// `me` as a voter of `config`'s cluster (listed there: checked before).
    pub fn new(
        me: &str,
        config: &ClusterConfig,
        role: Role,
        metrics: Option<ClusterMetrics>,
    ) -> Self {
        let view = View::new(me, config);
        let quorum = view.quorum(Instant::now());
        let address = config
            .voter(me)
            .map_or_else(|| ([0, 0, 0, 0], 0).into(), |m| m.address);
        Self {
            me: me.to_owned(),
            address,
            epoch: start_epoch(),
            role,
            ping_interval: config.ping_interval,
            quorum_timeout: config.quorum_timeout,
            view: Mutex::new(view),
            ballot: (role == Role::Witness)
                .then(|| Mutex::new(Ballot::new(config.quorum_timeout + config.ping_interval))),
            local: Mutex::new(BTreeMap::new()),
            quorum: watch::channel(quorum).0,
            metrics,
            fencer: None,
        }
    }

    /// With a fence command: the MASTER peers this node takes over from
    /// (after they fell silent) are fenced, in the background.
    pub fn with_fencer(mut self, fencer: Fencer) -> Self {
        for name in lock(&self.view)
            .targets()
            .into_iter()
            .filter(|t| !t.2)
            .map(|t| t.0)
        {
            fencer.metrics.declare_fence_peer(&name);
        }
        self.fencer = Some(Arc::new(fencer));
        self
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn ping_interval(&self) -> Duration {
        self.ping_interval
    }

    pub fn quorum_timeout(&self) -> Duration {
        self.quorum_timeout
    }

    /// The quorum as it changes.
    pub fn quorum(&self) -> watch::Receiver<Quorum> {
        self.quorum.subscribe()
    }

    /// Whether this node holds the quorum now.
    pub fn has_quorum(&self) -> bool {
        self.quorum.borrow().held
    }

    /// Records a group's state (MASTER, BACKUP, FAULT) for the pings.
    pub fn set_group_state(&self, group: &str, state: &str) {
        let mut local = lock(&self.local);
        let entry = local
            .entry(group.to_owned())
            .or_insert_with(|| GroupReport {
                name: group.to_owned(),
                state: String::new(),
                priority: 0,
            });
        state.clone_into(&mut entry.state);
    }

    /// Records a group's election priority for the pings.
    pub fn set_group_priority(&self, group: &str, priority: u8) {
        let mut local = lock(&self.local);
        local
            .entry(group.to_owned())
            .or_insert_with(|| GroupReport {
                name: group.to_owned(),
                state: "BACKUP".to_owned(),
                priority,
            })
            .priority = priority;
    }

    /// Forgets a group no longer configured.
    pub fn remove_group(&self, group: &str) {
        lock(&self.local).remove(group);
    }

    fn local_groups(&self) -> Vec<GroupReport> {
        lock(&self.local).values().cloned().collect()
    }

    fn is_master(&self) -> bool {
        lock(&self.local).values().any(|g| g.state == "MASTER")
    }

    /// Counts the quorum again and publishes a change.
    pub fn evaluate(&self) {
        let now = Instant::now();
        let (quorum, voters) = {
            let view = lock(&self.view);
            (view.quorum(now), view.voters(now, self.self_report()))
        };
        if let Some(metrics) = &self.metrics {
            metrics.set_quorum(quorum.held, quorum.seen, quorum.voters);
            for voter in voters.iter().skip(1) {
                metrics.set_voter_up(&voter.name, voter.up);
            }
        }
        self.quorum.send_if_modified(|current| {
            let changed = current.held != quorum.held;
            *current = quorum;
            changed
        });
    }

    fn self_report(&self) -> VoterReport {
        VoterReport {
            name: self.me.clone(),
            address: self.address,
            role: "self".to_owned(),
            registered: true,
            up: true,
            last_seen_ms: Some(0),
            groups: self.local_groups(),
        }
    }

    /// `POST /api/v1/ha/register` from `from`.
    pub fn on_register(&self, from: IpAddr, register: &Register) -> Result<Registered, Refusal> {
        let mut view = lock(&self.view);
        if !view.knows(&register.node, from) {
            return Err(Refusal::Unknown {
                node: register.node.clone(),
                from,
            });
        }
        view.register(&register.node, register.epoch);
        Ok(Registered {
            node: self.me.clone(),
            registered: view.registered(),
        })
    }

    /// `POST /api/v1/ha/ping` from `from`.
    pub fn on_ping(&self, from: IpAddr, ping: Ping) -> Result<Pong, Refusal> {
        let now = Instant::now();
        let vote = self
            .ballot
            .as_ref()
            .and_then(|ballot| lock(ballot).ask(&ping.node, ping.want_vote, now));
        let pong = {
            let mut view = lock(&self.view);
            if !view.knows(&ping.node, from) {
                return Err(Refusal::Unknown {
                    node: ping.node,
                    from,
                });
            }
            let registered = view.is_registered(&ping.node);
            view.heard(&ping.node, now, ping.groups, ping.masters);
            Pong {
                node: self.me.clone(),
                epoch: self.epoch,
                role: self.role.word().to_owned(),
                registered,
                groups: self.local_groups(),
                masters: self.masters_seen(&view, now),
                vote,
            }
        };
        self.evaluate();
        Ok(pong)
    }

    /// The MASTERs this node reports seeing: itself for its MASTER groups,
    /// and the members it heard say so.
    fn masters_seen(&self, view: &View, now: Instant) -> Vec<wire::MasterSeen> {
        let mut seen = view.masters_seen(now);
        seen.extend(
            self.local_groups()
                .into_iter()
                .filter(|g| g.state == "MASTER")
                .map(|g| wire::MasterSeen {
                    group: g.name,
                    node: self.me.clone(),
                }),
        );
        seen
    }

    /// The ping this node sends now.
    fn ping(&self) -> Ping {
        let now = Instant::now();
        let view = lock(&self.view);
        Ping {
            node: self.me.clone(),
            epoch: self.epoch,
            groups: self.local_groups(),
            masters: self.masters_seen(&view, now),
            want_vote: view.wants_vote(now, self.is_master()),
        }
    }

    /// `GET /api/v1/ha/nodes`.
    pub fn nodes(&self) -> NodesReport {
        let now = Instant::now();
        let view = lock(&self.view);
        let mut quorum = view.quorum_report(now);
        if let Some(ballot) = &self.ballot {
            quorum.vote_holder = lock(ballot).holder(now).map(str::to_owned);
        }
        NodesReport {
            node: self.me.clone(),
            role: self.role.word().to_owned(),
            quorum,
            voters: view.voters(now, self.self_report()),
        }
    }

    /// The gate of a claim of `group`: allowed once this node holds the
    /// quorum and, after its MASTER fell `silent`, no voter it hears
    /// reports another MASTER of it alive. Waits at most the time a MASTER
    /// cut off takes to fence itself (the quorum timeout, and the pings
    /// that carry the news, and the witness's vote moving); refused after
    /// that.
    pub async fn claim(&self, group: &str, silent: bool) -> Result<(), ClaimRefused> {
        let started = Instant::now();
        let limit = self.quorum_timeout + self.ping_interval * 4;
        // The MASTERs reported when the loss was seen: those to fence once
        // this node takes over.
        let lost = if silent {
            lock(&self.view).other_masters(group, started)
        } else {
            Vec::new()
        };
        loop {
            let now = Instant::now();
            let priority = lock(&self.local).get(group).map_or(0, |g| g.priority);
            let blocked = {
                let view = lock(&self.view);
                let quorum = view.quorum(now);
                let better = view.outranked_by(group, priority, now);
                if silent && !better.is_empty() {
                    // The best candidate takes over: as VRRP's skew time
                    // lets it, which the gate's wait would undo.
                    self.count_claim(group, "deferred");
                    return Err(ClaimRefused::Outranked(better.join(", ")));
                }
                let others = if silent {
                    view.other_masters(group, now)
                } else {
                    Vec::new()
                };
                if !quorum.held {
                    Some(ClaimRefused::NoQuorum(quorum.describe()))
                } else if !others.is_empty() {
                    Some(ClaimRefused::MasterAlive(others.join(", ")))
                } else {
                    None
                }
            };
            let Some(blocked) = blocked else {
                let waited = now.duration_since(started);
                if waited >= self.ping_interval {
                    info!(
                        group,
                        "claim allowed after {waited:?}: the MASTER lost can no longer be serving"
                    );
                    self.count_claim(group, "waited");
                } else {
                    self.count_claim(group, "allowed");
                }
                self.fence(&lost);
                return Ok(());
            };
            if started.elapsed() >= limit {
                self.count_claim(group, "refused");
                warn!(group, "claim refused after {limit:?}: {blocked}");
                return Err(blocked);
            }
            tokio::time::sleep(self.ping_interval / 4).await;
        }
    }

    /// Runs the fence command against each of `nodes`, in the background
    /// (the claim does not wait for it: the quorum already made sure they
    /// fenced themselves; this is for a node that cannot, such as a hung
    /// one whose kernel still answers for the VIP).
    fn fence(&self, nodes: &[String]) {
        let Some(fencer) = &self.fencer else {
            return;
        };
        for node in nodes {
            let Some(address) = lock(&self.view).address_of(node) else {
                continue;
            };
            let fencer = Arc::clone(fencer);
            let node = node.clone();
            tokio::spawn(async move {
                fencer
                    .command
                    .run(
                        &node,
                        address.ip(),
                        fencer.ha_debug,
                        &fencer.metrics,
                        &fencer.events,
                    )
                    .await;
            });
        }
    }

    fn count_claim(&self, group: &str, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics.count_claim(group, outcome);
        }
    }
}

/// Now, in ns since the Unix epoch: this agent's start, as its pings
/// carry it (a new one tells the others it restarted).
fn start_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
