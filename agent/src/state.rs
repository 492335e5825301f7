//! What the running agent shares with its API: the handles the daemon
//! built at start-up, and the configuration in force.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use crate::{
    balancer::SharedTable,
    config::Config,
    dataplane::PeerMaps,
    dataplane::{Attachment, CounterMaps, GroupStates},
    events::{Event, EventKind, EventLog, ReloadOutcome},
    health::{HealthRunner, track::Tracking},
    locks::{lock, read, write},
    metrics::Metrics,
    operator::{HandoverCall, OperatorState},
};

/// The running agent, as the API handlers see it.
pub struct AgentState {
    pub node: String,
    pub ha_debug: bool,
    pub config_path: PathBuf,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub events: Arc<EventLog>,
    pub health: Mutex<HealthRunner>,
    pub counters: CounterMaps,
    pub table: SharedTable,
    pub groups: Arc<GroupStates>,
    pub config: RwLock<Config>,
    pub attachments: RwLock<Vec<Attachment>>,
    pub tracking: RwLock<Arc<Tracking>>,
    /// Drains and handovers set by hand, as `[node] state_file` keeps them.
    pub operator: Mutex<OperatorState>,
    /// Handovers asked through the API, for the daemon.
    pub handovers: tokio::sync::mpsc::UnboundedSender<HandoverCall>,
    /// The XDP records of the peers' adverts and heartbeats (none in HA
    /// debug mode).
    pub peers: RwLock<Option<Arc<PeerMaps>>>,
    /// This node's voter, with `[cluster] members`.
    pub cluster: RwLock<Option<Arc<crate::cluster::Cluster>>>,
}

/// What the metrics count of the timeline: the groups' transitions and
/// the reloads' outcomes.
pub fn count_event(metrics: &Metrics, event: &Event) {
    match event.kind {
        EventKind::Group => metrics.count_group_transition(&event.subject, &event.to),
        EventKind::Reload => {
            metrics.set_reload(event.is(EventKind::Reload, ReloadOutcome::Applied));
        }
        _ => {}
    }
}

impl AgentState {
    /// Drains (or undrains) a backend and keeps it in the state file;
    /// false if no service has it.
    pub fn drain(&self, backend: SocketAddr, drain: bool) -> bool {
        if !lock(&self.health).drain(backend, drain) {
            return false;
        }
        let mut operator = lock(&self.operator);
        let changed = if drain {
            operator.drained.insert(backend)
        } else {
            operator.drained.remove(&backend)
        };
        if changed {
            self.save_operator(&operator);
        }
        true
    }

    /// Writes the operator's settings to `[node] state_file` (a failure is
    /// logged: the setting holds until the agent stops).
    pub fn save_operator(&self, operator: &OperatorState) {
        let path = read(&self.config).node.state_file.clone();
        if self.ha_debug {
            tracing::info!(path = %path.display(), "HA debug mode: the state file is not written");
            return;
        }
        if let Err(err) = operator.save(&path) {
            tracing::error!("keeping drains and handovers across a restart: {err}");
        }
    }

    /// Records where XDP is attached now.
    pub fn set_attachments(&self, attachments: Vec<Attachment>) {
        let labels: Vec<(&str, &str)> = attachments
            .iter()
            .map(|a| (a.iface.as_str(), a.mode.name()))
            .collect();
        self.metrics.set_attachments(&labels);
        *write(&self.attachments) = attachments;
    }
}
