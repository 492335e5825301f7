//! Manual handovers (`vipx-agent handover [GROUP]`, FortiGate's `exec ha
//! failover set 1`) and the operator's state file: what a restart keeps.

use std::{collections::BTreeMap, time::Duration};

use tracing::{info, warn};

use crate::{
    config::Config,
    events::{EventKind, now_unix_ms},
    group_runner::GroupRunner,
    locks::{lock, read},
    operator::{HandoverError, HandoverGroup, HandoverRequest, Hold, OperatorState},
    state::AgentState,
};

/// The operator's state as `[node] state_file` kept it (empty, with a
/// warning, when it cannot be read).
pub(super) fn load(config: &Config) -> OperatorState {
    let path = &config.node.state_file;
    match OperatorState::load(path) {
        Ok(state) => {
            if state != OperatorState::default() {
                info!(path = %path.display(), drained = state.drained.len(), handed_over = state.held.len(), "restoring what an operator set by hand");
            }
            state
        }
        Err(err) => {
            warn!("drains and handovers not restored: {err}");
            OperatorState::default()
        }
    }
}

/// At start, once the services run: the drains again, and the holds that
/// have not ended (for the groups to start with). Backends and groups no
/// longer configured are dropped from the file.
pub(super) fn restore(state: &AgentState) -> BTreeMap<String, Hold> {
    let config = read(&state.config).clone();
    let mut operator = lock(&state.operator);
    let before = operator.clone();
    let health = lock(&state.health);
    operator.drained.retain(|&backend| {
        let kept = health.drain(backend, true);
        if !kept {
            warn!(%backend, "drained before the restart, no longer configured: forgotten");
        }
        kept
    });
    drop(health);
    for group in operator.expire(now_unix_ms()) {
        info!(group, "the handover ended while the agent was down");
    }
    operator.held.retain(|group, _| {
        let known = config.groups_with_ids().any(|(_, g)| &g.name == group);
        if !known {
            warn!(
                group,
                "handed over before the restart, no longer configured: forgotten"
            );
        }
        known
    });
    if *operator != before {
        state.save_operator(&operator);
    }
    operator.held.clone()
}

/// A handover asked through the API: checked whole first, then carried
/// out and kept in the state file.
pub(super) fn handle(
    state: &AgentState,
    groups: &GroupRunner,
    request: HandoverRequest,
) -> Result<Vec<HandoverGroup>, HandoverError> {
    let config = read(&state.config).clone();
    let mut operator = lock(&state.operator);
    let names = match (&request.group, request.undo) {
        (Some(group), _) => vec![group.clone()],
        (None, false) => {
            let masters = groups.masters(&config);
            if masters.is_empty() {
                return Err(HandoverError::NotMaster);
            }
            masters
        }
        (None, true) => {
            let held: Vec<String> = operator.held.keys().cloned().collect();
            if held.is_empty() {
                return Err(HandoverError::NotHeld);
            }
            held
        }
    };
    let was_master = names
        .iter()
        .map(|name| groups.check_hold(&config, name))
        .collect::<Result<Vec<bool>, _>>()?;
    let now = now_unix_ms();
    let hold = request
        .hold_ms
        .map(Duration::from_millis)
        .or(config.node.handover_hold);
    let mut done = Vec::new();
    for (name, was_master) in names.into_iter().zip(was_master) {
        groups.hold(&name, !request.undo);
        let (to, why) = if request.undo {
            operator.held.remove(&name);
            ("released", "vipx-agent handover --undo".to_owned())
        } else {
            operator.hold(&name, now, hold);
            let why = match hold {
                Some(hold) => format!(
                    "vipx-agent handover, for {}",
                    humantime::format_duration(hold)
                ),
                None => "vipx-agent handover, until --undo".to_owned(),
            };
            ("held", why)
        };
        state
            .events
            .record(EventKind::Handover, &name, None, to, &why);
        done.push(HandoverGroup {
            until_unix_ms: operator.held.get(&name).and_then(|h| h.until_unix_ms),
            held: !request.undo,
            was_master,
            group: name,
        });
    }
    state.save_operator(&operator);
    Ok(done)
}

/// When the next hold ends by itself, as an instant of the runtime.
pub(super) fn next_expiry(state: &AgentState) -> Option<tokio::time::Instant> {
    let until = lock(&state.operator).next_expiry()?;
    let left = until.saturating_sub(now_unix_ms());
    Some(tokio::time::Instant::now() + Duration::from_millis(left))
}

/// Sleeps until `at` (forever without one).
pub(super) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The holds whose time ran out end: the groups' priorities apply again.
pub(super) fn expire(state: &AgentState, groups: &GroupRunner) {
    let mut operator = lock(&state.operator);
    let ended = operator.expire(now_unix_ms());
    for group in &ended {
        groups.hold(group, false);
        state.events.record(
            EventKind::Handover,
            group,
            None,
            "released",
            "the handover's time ran out",
        );
    }
    if !ended.is_empty() {
        state.save_operator(&operator);
    }
}
