//! Typed handles on every map of the XDP object. All writes go through
//! here; each map sits behind its own lock so the lease refresher, the flow
//! collector and the service writer never wait on each other for long.

use crate::locks::lock;
use std::sync::Mutex;

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
};
use vipx_common::{
    Backend, Counter, Flow, FlowKey, FlowSettings, Group, MAP_BACKEND_STATS, MAP_BACKENDS,
    MAP_EMBRYONIC, MAP_FLOW_SETTINGS, MAP_FLOWS, MAP_GROUPS, MAP_MAGLEV, MAP_NAT,
    MAP_SERVICE_STATS, MAP_SERVICES, MAP_VIPS, NatEntry, Service, ServiceKey, Vip, VipKey,
};

use super::error::DataplaneError;

/// The load-balancing maps.
pub struct Maps {
    pub(super) services: Mutex<HashMap<MapData, ServiceKey, Service>>,
    pub(super) backends: Mutex<Array<MapData, Backend>>,
    pub(super) maglev: Mutex<Array<MapData, u32>>,
    pub(super) groups: Mutex<Array<MapData, Group>>,
    pub(super) vips: Mutex<HashMap<MapData, VipKey, Vip>>,
    pub(super) flows: Mutex<HashMap<MapData, FlowKey, Flow>>,
    pub(super) nat: Mutex<HashMap<MapData, FlowKey, NatEntry>>,
    pub(super) embryonic: Mutex<Array<MapData, u32>>,
    pub(super) flow_settings: Mutex<Array<MapData, FlowSettings>>,
    pub(super) service_stats: PerCpuArray<MapData, Counter>,
    pub(super) backend_stats: PerCpuArray<MapData, Counter>,
}

pub(super) fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or(DataplaneError::Missing { kind: "map", name })?;
    T::try_from(map).map_err(|source| DataplaneError::Map { name, source })
}

impl Maps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        Ok(Self {
            services: Mutex::new(take(ebpf, MAP_SERVICES)?),
            backends: Mutex::new(take(ebpf, MAP_BACKENDS)?),
            maglev: Mutex::new(take(ebpf, MAP_MAGLEV)?),
            groups: Mutex::new(take(ebpf, MAP_GROUPS)?),
            vips: Mutex::new(take(ebpf, MAP_VIPS)?),
            flows: Mutex::new(take(ebpf, MAP_FLOWS)?),
            nat: Mutex::new(take(ebpf, MAP_NAT)?),
            embryonic: Mutex::new(take(ebpf, MAP_EMBRYONIC)?),
            flow_settings: Mutex::new(take(ebpf, MAP_FLOW_SETTINGS)?),
            service_stats: take(ebpf, MAP_SERVICE_STATS)?,
            backend_stats: take(ebpf, MAP_BACKEND_STATS)?,
        })
    }

    /// Packets and bytes of one service (summed over CPUs).
    pub fn service_counter(&self, id: u32) -> Result<Counter, DataplaneError> {
        sum(&self.service_stats, MAP_SERVICE_STATS, id)
    }

    /// Packets and bytes of one backend (summed over CPUs).
    pub fn backend_counter(&self, id: u32) -> Result<Counter, DataplaneError> {
        sum(&self.backend_stats, MAP_BACKEND_STATS, id)
    }

    /// One flow, if the table has it.
    pub fn flow(&self, key: &FlowKey) -> Option<Flow> {
        lock(&self.flows).get(key, 0).ok()
    }

    /// Every flow in the table (read in batches where the kernel can).
    pub fn flows(&self) -> Vec<(FlowKey, Flow)> {
        let flows = lock(&self.flows);
        super::batch::entries(&flows)
            .unwrap_or_else(|| flows.iter().filter_map(Result::ok).collect())
    }

    /// Every VIP the data plane knows, with its group and NAT ranges.
    pub fn vips(&self) -> Vec<(VipKey, Vip)> {
        lock(&self.vips).iter().filter_map(Result::ok).collect()
    }

    /// Every NAT entry in the table (read in batches where the kernel can).
    pub fn nat_entries(&self) -> Vec<(FlowKey, NatEntry)> {
        let nat = lock(&self.nat);
        super::batch::entries(&nat).unwrap_or_else(|| nat.iter().filter_map(Result::ok).collect())
    }

    /// The program's count of embryonic nat flows to backend `id`.
    pub fn embryonic(&self, id: u32) -> Option<u32> {
        lock(&self.embryonic).get(&id, 0).ok()
    }

    /// Sets the count of embryonic nat flows to backend `id` (the flow
    /// collector's true count).
    pub fn set_embryonic(&self, id: u32, count: u32) -> Result<(), DataplaneError> {
        lock(&self.embryonic)
            .set(id, count, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_EMBRYONIC,
                source,
            })
    }

    /// Sets the percent of a nat service's NAT port range that embryonic
    /// flows may hold per backend (0 or 100: no limit).
    pub fn set_embryonic_share(&self, percent: u32) -> Result<(), DataplaneError> {
        let settings = FlowSettings {
            embryonic_share: percent,
        };
        lock(&self.flow_settings)
            .set(0, settings, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_FLOW_SETTINGS,
                source,
            })
    }

    /// Removes a flow (not its NAT entry).
    pub fn remove_flow(&self, key: &FlowKey) -> Result<(), DataplaneError> {
        lock(&self.flows)
            .remove(key)
            .map_err(|source| DataplaneError::Map {
                name: MAP_FLOWS,
                source,
            })
    }

    /// Forgets every flow pinned to backend `id` (and its NAT entry): their
    /// next packets become new flows to live backends. Returns how many.
    pub fn remove_flows_to(&self, id: u32) -> usize {
        let backend = self.backend(id);
        let doomed: Vec<(FlowKey, Flow)> = self
            .flows()
            .into_iter()
            .filter(|(_, flow)| flow.backend == id)
            .collect();
        for (key, flow) in &doomed {
            let _ = lock(&self.flows).remove(key);
            if let Some(backend) = &backend
                && flow.nat_port != 0
            {
                let nat =
                    vipx_common::flow::nat_key(key, backend.addr, backend.port, flow.nat_port);
                let _ = lock(&self.nat).remove(&nat);
            }
        }
        doomed.len()
    }

    /// Whether this node serves `group` in the data plane now (MASTER).
    pub fn serves(&self, group: u32) -> bool {
        lock(&self.groups)
            .get(&group, 0)
            .is_ok_and(|state| state.master != 0)
    }

    /// The backend entry of an id.
    pub fn backend(&self, id: u32) -> Option<Backend> {
        lock(&self.backends).get(&id, 0).ok()
    }

    /// One NAT entry, if the table has it.
    pub fn nat_entry(&self, key: &FlowKey) -> Option<NatEntry> {
        lock(&self.nat).get(key, 0).ok()
    }

    /// Writes a flow (created or replaced), and its NAT entry when it has
    /// one: a flow replicated from a peer. The NAT entry goes first, so a
    /// reply never finds the flow without its way back.
    pub fn insert_flow(
        &self,
        key: &FlowKey,
        flow: &Flow,
        nat: Option<(&FlowKey, &NatEntry)>,
    ) -> Result<(), DataplaneError> {
        if let Some((nat_key, entry)) = nat {
            lock(&self.nat)
                .insert(nat_key, entry, 0)
                .map_err(|source| DataplaneError::Map {
                    name: MAP_NAT,
                    source,
                })?;
        }
        lock(&self.flows)
            .insert(key, flow, 0)
            .map_err(|source| DataplaneError::Map {
                name: MAP_FLOWS,
                source,
            })
    }

    /// Removes a flow and its NAT entry (`nat_key`, when it has one);
    /// entries already gone are no error.
    pub fn forget_flow(&self, key: &FlowKey, nat_key: Option<&FlowKey>) {
        let _ = lock(&self.flows).remove(key);
        if let Some(nat_key) = nat_key {
            let _ = lock(&self.nat).remove(nat_key);
        }
    }
}

fn sum(
    map: &PerCpuArray<MapData, Counter>,
    name: &'static str,
    slot: u32,
) -> Result<Counter, DataplaneError> {
    let values = map
        .get(&slot, 0)
        .map_err(|source| DataplaneError::Map { name, source })?;
    Ok(values.iter().fold(Counter::default(), |acc, c| acc.add(*c)))
}
