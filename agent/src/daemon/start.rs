//! The daemon's start-up steps that the reload repeats or that stand on
//! their own: the wait for the first health checks, the flow collector's
//! policy, the notify hooks and the tracked items.

/// Ready before claiming: backend MACs resolved (at start) and every
/// backend checked once, so a node taking the VIP (back) serves a current
/// view.
use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::TrackChange;
use crate::{
    config::Config,
    dataplane::FlowPolicy,
    health::track::Tracker,
    locks::{lock, read, write},
    notify::Notifier,
    state::AgentState,
    sync::Replicator,
};

pub(super) async fn wait_ready(
    config: &Config,
    state: &AgentState,
    replicator: Option<&Replicator>,
) {
    let limit = first_round_limit(config);
    let ready = lock(&state.health).ready_waiter();
    if tokio::time::timeout(limit, ready).await.is_ok() {
        info!("every backend checked once: taking part in the groups");
    } else {
        warn!("backends not all checked within {limit:?}: taking part in the groups anyway");
    }
    // A node that takes the VIP (back) must hold the flows it would serve:
    // a peer's whole table first, when there is a peer to send one (the
    // gate is bounded by `ready_timeout`, and says why it opened).
    if let Some(replicator) = replicator {
        let _ = replicator.ready().wait_for(|open| *open).await;
    }
}

/// How long start-up waits for the first round of health checks: the first
/// check of a backend starts within its jitter and ends within its timeout.
pub(super) fn first_round_limit(config: &Config) -> Duration {
    config
        .services
        .iter()
        .filter_map(|s| s.get_ref().health.as_ref())
        .map(|h| h.jitter + h.timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_millis(500)
}

pub(super) fn flow_policy(config: &Config) -> FlowPolicy {
    FlowPolicy {
        tcp_idle: config.dataplane.tcp_idle_timeout,
        udp_idle: config.dataplane.udp_idle_timeout,
        fin: config.dataplane.fin_timeout,
        embryonic: config.dataplane.embryonic_timeout,
        rst: config.dataplane.rst_timeout,
        embryonic_share: u32::from(config.dataplane.embryonic_port_share.get()),
    }
}

/// The groups' notify hooks, following the event log; the generic hook's
/// priority is the group's tracked one.
pub(super) fn start_notifier(config: &Config, state: &Arc<AgentState>) -> anyhow::Result<Notifier> {
    let tracking = Arc::clone(state);
    let (notifier, collectors) = Notifier::start(config, &state.events, move |group| {
        read(&tracking.tracking)
            .effective(group)
            .map(|e| e.priority)
    })
    .context("registering the notify metrics")?;
    for collector in collectors {
        state
            .metrics
            .register(collector)
            .context("registering the notify metrics")?;
    }
    Ok(notifier)
}

/// Starts the tracked items of every group; their changes come back on
/// `changes`.
pub(super) fn start_tracker(
    config: &Config,
    state: &AgentState,
    changes: mpsc::UnboundedSender<TrackChange>,
) -> Tracker {
    let service_down = lock(&state.health).service_down();
    let tracker = Tracker::start(
        config,
        Arc::clone(&state.events),
        service_down,
        move |group, effective| {
            let _ = changes.send((group.to_owned(), effective));
        },
    );
    for (_, group) in config.groups_with_ids() {
        if let Some(effective) = tracker.tracking.effective(&group.name) {
            state
                .metrics
                .set_group_priority(&group.name, effective.priority, effective.fault);
        }
    }
    *write(&state.tracking) = Arc::clone(&tracker.tracking);
    tracker
}
