//! Flows as the nodes replicate them. Service and backend ids are each
//! node's own (assigned as its configuration was installed), so a record
//! names the backend by address: [`record`] turns a flow of this node's
//! table into one, [`install`] turns a peer's record into this node's
//! entries (the flow, and its NAT reverse entry in nat mode).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use vipx_common::{
    Backend, Flow, FlowKey, NatEntry, ServiceKey,
    addr::{from_map, to_map},
    flow::{FLOW_F_REPLICA, nat_key},
};

use crate::dataplane::{DataplaneError, Maps, Mode, ServiceTable};

/// One flow, as any node can install it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Client -> VIP:port, as the client sent it.
    pub key: FlowKey,
    /// The backend the flow is pinned to.
    pub backend: SocketAddr,
    /// The NAT source port towards the backend (nat mode; 0 in dsr mode).
    pub nat_port: u16,
    /// Where the backend's replies go at L2 (nat mode): the client's MAC,
    /// or its router's, as the node that created the flow saw it.
    pub client_mac: [u8; 6],
    /// `FLOW_F_*`.
    pub flags: u8,
    /// How long the flow had been idle when the record was made, in ms.
    pub idle_ms: u32,
}

/// Why a peer's record cannot be installed here.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("no service {0:?} here")]
    NoService(ServiceKey),
    #[error("service {service}: no backend {backend} here")]
    NoBackend {
        service: String,
        backend: SocketAddr,
    },
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

/// The record of a flow of this node's table (`now_ns`: `CLOCK_MONOTONIC`);
/// `None` when its backend or its NAT entry is gone.
pub fn record(maps: &Maps, key: &FlowKey, flow: &Flow, now_ns: u64) -> Option<FlowRecord> {
    let backend = maps.backend(flow.backend)?;
    let client_mac = if flow.nat_port == 0 {
        [0; 6]
    } else {
        maps.nat_entry(&nat_key(key, backend.addr, backend.port, flow.nat_port))?
            .client_mac
    };
    record_with(key, flow, &backend, client_mac, now_ns)
}

/// The record of a flow whose backend entry and client MAC are known (a
/// flow event carries the MAC); `None` for a backend of no known family.
pub fn record_with(
    key: &FlowKey,
    flow: &Flow,
    backend: &Backend,
    client_mac: [u8; 6],
    now_ns: u64,
) -> Option<FlowRecord> {
    let addr = from_map(backend.family, &backend.addr)?;
    let idle_ms = now_ns.saturating_sub(flow.last_seen_ns) / 1_000_000;
    Some(FlowRecord {
        key: *key,
        backend: SocketAddr::new(addr, backend.port),
        nat_port: flow.nat_port,
        client_mac,
        flags: flow.flags,
        idle_ms: u32::try_from(idle_ms).unwrap_or(u32::MAX),
    })
}

/// The service key a flow's key is addressed to.
fn service_key(key: &FlowKey) -> ServiceKey {
    ServiceKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    }
}

/// The NAT reverse key of a record (nat mode).
fn reply_key(record: &FlowRecord) -> FlowKey {
    let (addr, _) = to_map(record.backend.ip());
    nat_key(&record.key, addr, record.backend.port(), record.nat_port)
}

/// Installs a peer's flow with this node's ids (`now_ns`:
/// `CLOCK_MONOTONIC`), replacing what the tables held for it.
pub fn install(table: &ServiceTable, record: &FlowRecord, now_ns: u64) -> Result<(), InstallError> {
    let key = service_key(&record.key);
    let service = table.service_id(&key).ok_or(InstallError::NoService(key))?;
    let spec = table.spec(service).ok_or(InstallError::NoService(key))?;
    let backend = table
        .backend_id(record.backend.ip(), record.backend.port())
        .ok_or_else(|| InstallError::NoBackend {
            service: spec.name.clone(),
            backend: record.backend,
        })?;
    let last_seen_ns = now_ns.saturating_sub(u64::from(record.idle_ms) * 1_000_000);
    let flow = Flow {
        backend,
        service,
        nat_port: record.nat_port,
        flags: record.flags | FLOW_F_REPLICA,
        _pad: 0,
        group: spec.group,
        created_ns: last_seen_ns,
        last_seen_ns,
    };
    let nat = (spec.mode == Mode::Nat && record.nat_port != 0).then(|| {
        (
            reply_key(record),
            NatEntry {
                client: record.key,
                client_mac: record.client_mac,
                _pad: [0; 2],
                group: spec.group,
                service,
            },
        )
    });
    table
        .maps()
        .insert_flow(&record.key, &flow, nat.as_ref().map(|(k, e)| (k, e)))?;
    Ok(())
}

/// Forgets a flow a peer reported ended (and its NAT entry), if the copy
/// here is that flow: the same backend and NAT port. A newer flow of the
/// same client port, whose news may have come first, stays.
pub fn forget(table: &ServiceTable, record: &FlowRecord) {
    let maps = table.maps();
    let Some(held) = maps.flow(&record.key) else {
        return;
    };
    let same_backend =
        table.backend_id(record.backend.ip(), record.backend.port()) == Some(held.backend);
    if !same_backend || held.nat_port != record.nat_port {
        return;
    }
    let nat = (record.nat_port != 0).then(|| reply_key(record));
    maps.forget_flow(&record.key, nat.as_ref());
}
