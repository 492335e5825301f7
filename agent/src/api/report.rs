//! The status report of `GET /api/v1/status`, read off the running agent.

use tracing::warn;

use super::wire::{
    BackendStatus, CounterKind, GroupStatus, NamedCounter, ServiceStatus, Status, XdpAttachment,
};
use crate::{
    dataplane::{CounterSnapshot, ServiceSpec},
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
    let config = read(&state.config);
    let tracking = read(&state.tracking);
    let held = lock(&state.operator).held.clone();
    let groups = config
        .groups_with_ids()
        .map(|(id, g)| {
            let effective = tracking.effective(&g.name);
            GroupStatus {
                name: g.name.clone(),
                vrid: g.vrid,
                master: state.groups.is_master(id),
                vips: g.vips.iter().map(ToString::to_string).collect(),
                priority: effective.map_or(g.priority, |e| e.priority),
                fault: effective.is_some_and(|e| e.fault),
                handed_over: held.get(&g.name).copied(),
            }
        })
        .collect();
    let table = lock(&state.table);
    let services = table
        .installed()
        .into_iter()
        .map(|(id, spec, _)| service_status(&spec, table.maps().service_counter(id).ok()))
        .collect();
    Status {
        node: state.node.clone(),
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
        services,
        counters,
    }
}

/// One service and its backends.
fn service_status(spec: &ServiceSpec, counter: Option<vipx_common::Counter>) -> ServiceStatus {
    ServiceStatus {
        name: spec.name.clone(),
        vip: std::net::SocketAddr::new(spec.vip, spec.port),
        mode: spec.mode,
        packets: counter.map_or(0, |c| c.packets),
        backends: spec
            .backends
            .iter()
            .map(|b| BackendStatus {
                address: std::net::SocketAddr::new(b.addr, b.port),
                weight: b.weight,
            })
            .collect(),
    }
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
