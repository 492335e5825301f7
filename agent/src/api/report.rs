//! The status report of `GET /api/v1/status`, read off the running agent:
//! the groups (state, since when, the peers XDP heard), the services and
//! each backend's health, drain, weight and flows, the XDP counters.

use std::net::SocketAddr;

use tracing::warn;
use vipx_common::peer::{KIND_HEARTBEAT, KIND_VRRP, STATE_BACKUP, STATE_MASTER, STATE_STOPPING};

use super::wire::{
    BackendStatus, CounterKind, GroupStatus, NamedCounter, PeerStatus, ServiceStatus, Status,
    XdpAttachment,
};
use crate::{
    dataplane::{CounterSnapshot, PeerMaps, key_addr, monotonic_ns},
    events::{EventKind, GroupState, now_unix_ms},
    locks::{lock, read},
    state::AgentState,
};

/// The agent's view of itself.
pub fn status(state: &AgentState) -> Status {
    let counters = match state.counters.snapshot() {
        Ok(snapshot) => named_counters(&snapshot),
        Err(err) => {
            warn!("reading XDP counters: {err}");
            Vec::new()
        }
    };
    let peers = read(&state.peers).clone();
    let held = lock(&state.operator).held.clone();
    let groups = {
        let config = read(&state.config);
        let tracking = read(&state.tracking);
        config
            .groups_with_ids()
            .map(|(id, g)| {
                let effective = tracking.effective(&g.name);
                let master = state.groups.is_master(id);
                let fault = effective.is_some_and(|e| e.fault);
                GroupStatus {
                    name: g.name.clone(),
                    vrid: g.vrid,
                    master,
                    vips: g.vips.iter().map(ToString::to_string).collect(),
                    priority: effective.map_or(g.priority, |e| e.priority),
                    fault,
                    handed_over: held.get(&g.name).copied(),
                    state: group_state(master, fault).to_string(),
                    since_unix_ms: state
                        .events
                        .last_time(|e| e.kind == EventKind::Group && e.subject == g.name),
                    peers: peers
                        .as_deref()
                        .map(|p| peer_status(p, g.vrid))
                        .unwrap_or_default(),
                }
            })
            .collect()
    };
    Status {
        node: state.node.clone(),
        now_unix_ms: now_unix_ms(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ha_debug: state.ha_debug,
        uptime_seconds: state.started.elapsed().as_secs(),
        config_path: state.config_path.display().to_string(),
        xdp: read(&state.attachments)
            .iter()
            .map(|a| XdpAttachment {
                interface: a.iface.clone(),
                mode: a.mode,
            })
            .collect(),
        groups,
        services: services(state),
        counters,
        cluster: read(&state.cluster).as_ref().map(|c| c.nodes()),
    }
}

fn group_state(master: bool, fault: bool) -> GroupState {
    match (master, fault) {
        (_, true) => GroupState::Fault,
        (true, false) => GroupState::Master,
        (false, false) => GroupState::Backup,
    }
}

/// The services and their backends, as installed in the data plane.
fn services(state: &AgentState) -> Vec<ServiceStatus> {
    let health = lock(&state.health);
    let table = lock(&state.table);
    let maps = table.maps();
    table
        .installed()
        .into_iter()
        .map(|(id, spec, backend_ids)| ServiceStatus {
            name: spec.name.clone(),
            vip: SocketAddr::new(spec.vip, spec.port),
            mode: spec.mode,
            packets: maps.service_counter(id).map_or(0, |c| c.packets),
            backends: spec
                .backends
                .iter()
                .zip(backend_ids)
                .map(|(b, id)| {
                    let address = SocketAddr::new(b.addr, b.port);
                    let (checked, drained) = health.backend_view(&spec.name, address);
                    let health_subject = format!("{} {address}", spec.name);
                    let drain_subject = address.to_string();
                    let last_change = state.events.last_time(|e| {
                        (e.kind == EventKind::Health && e.subject == health_subject)
                            || (e.kind == EventKind::Drain && e.subject == drain_subject)
                    });
                    BackendStatus {
                        address,
                        weight: b.weight,
                        health: checked.map(|h| h.name().to_owned()),
                        drained,
                        flows: table.backend_flows(id),
                        packets: maps.backend_counter(id).map_or(0, |c| c.packets),
                        last_change_unix_ms: last_change,
                    }
                })
                .collect(),
        })
        .collect()
}

/// The peers of VRID `vrid` XDP holds records of, newest first.
fn peer_status(peers: &PeerMaps, vrid: u8) -> Vec<PeerStatus> {
    let now = monotonic_ns();
    let mut out: Vec<PeerStatus> = peers
        .records()
        .into_iter()
        .filter(|(key, _)| key.vrid == vrid && matches!(key.kind, KIND_VRRP | KIND_HEARTBEAT))
        .filter_map(|(key, seen)| {
            let heartbeat = key.kind == KIND_HEARTBEAT;
            let state = match seen.state {
                STATE_MASTER => "MASTER",
                STATE_BACKUP => "BACKUP",
                STATE_STOPPING => "STOPPING",
                _ if heartbeat => "unknown",
                // Only a master sends VRRP adverts; priority 0 lets go.
                _ if seen.priority == 0 => "RELEASED",
                _ => "MASTER",
            };
            Some(PeerStatus {
                address: key_addr(&key)?,
                kind: if heartbeat { "heartbeat" } else { "vrrp" }.to_owned(),
                state: state.to_owned(),
                priority: seen.priority,
                last_heard_ms: now.saturating_sub(seen.last_ns) / 1_000_000,
                packets: seen.count,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.address, &a.kind).cmp(&(b.address, &b.kind)));
    out
}

/// Flattens a counter snapshot for the status report.
fn named_counters(snapshot: &CounterSnapshot) -> Vec<NamedCounter> {
    let entry = |kind, (name, c): (&str, vipx_common::Counter)| NamedCounter {
        kind,
        name: name.to_owned(),
        packets: c.packets,
        bytes: c.bytes,
    };
    snapshot
        .named_actions()
        .map(|pair| entry(CounterKind::Action, pair))
        .chain(
            snapshot
                .named_reasons()
                .map(|pair| entry(CounterKind::Reason, pair)),
        )
        .collect()
}
