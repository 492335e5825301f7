//! Services and backends in the data plane: ids, backend entries, Maglev
//! tables written to the inactive half and flipped atomically.

use crate::locks::lock;
use std::{collections::HashMap, net::IpAddr, sync::Arc};

use tracing::{debug, info, warn};
use vipx_common::{
    Backend, Service, ServiceKey, addr,
    service::{BACKEND_F_ACTIVE, MAX_BACKENDS, MAX_SERVICES, MODE_DSR, MODE_NAT, maglev_index},
};

use super::settings::{Mode, PortRange};
use super::{
    error::DataplaneError,
    maglev::{self, BackendKey, MaglevBackend},
    maps::Maps,
};

/// What one service should look like in the data plane.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    /// IP protocol number.
    pub protocol: u8,
    pub mode: Mode,
    /// Group id (index of the `[[group]]`).
    pub group: u32,
    pub maglev_size: u32,
    pub nat_ports: PortRange,
    pub backends: Vec<BackendSpec>,
}

/// One backend as the data plane should see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub addr: IpAddr,
    pub port: u16,
    /// Effective weight: 0 when drained or down (no new flows).
    pub weight: u32,
}

/// A service as installed.
struct Installed {
    spec: ServiceSpec,
    /// Active Maglev half.
    table: u32,
    /// Backend id of every slot of the active half (empty: no backend).
    slots: Vec<u32>,
}

/// Writes services, backends and Maglev tables.
pub struct ServiceTable {
    maps: Arc<Maps>,
    dry_run: bool,
    service_ids: HashMap<ServiceKey, u32>,
    backend_ids: HashMap<(IpAddr, u16), u32>,
    macs: HashMap<IpAddr, [u8; 6]>,
    installed: HashMap<u32, Installed>,
    /// The active Maglev half of each service found in adopted maps, until
    /// the service is installed again.
    adopted_halves: HashMap<u32, u32>,
    /// Flows per backend id at the flow collector's last run.
    backend_flows: HashMap<u32, u64>,
    /// Ids no installed service uses any more, with the number of flow
    /// collector runs since then that found no flow on them.
    retired: HashMap<u32, u8>,
}

/// Collector runs without a flow on a retired backend id before the id is
/// free again: the second run started after the id was retired, so no flow
/// it did not see can point at it (new flows no longer pick it).
const IDLE_RUNS_BEFORE_FREE: u8 = 2;

impl ServiceSpec {
    /// The backends as Maglev sees them (key and weight), in order.
    pub fn maglev_backends(&self) -> Vec<MaglevBackend> {
        self.backends
            .iter()
            .map(|b| MaglevBackend {
                key: BackendKey {
                    addr: b.addr,
                    port: b.port,
                },
                weight: b.weight,
            })
            .collect()
    }

    /// The key of this service in the services map.
    pub fn key(&self) -> ServiceKey {
        let (addr, family) = addr::to_map(self.vip);
        ServiceKey {
            addr,
            port: self.port,
            proto: self.protocol,
            family,
        }
    }
}

impl ServiceTable {
    /// `dry_run` (HA debug mode): log the flips instead of making them.
    ///
    /// Maps a previous agent left (adopted from their pins) keep their
    /// ids: flows name their backends by id, so a backend keeps its id and
    /// MAC, and a service's next Maglev table goes to the half not in use.
    /// Services no longer wanted go at the first [`ServiceTable::apply`].
    pub fn new(maps: Arc<Maps>, dry_run: bool) -> Self {
        let mut table = Self {
            maps,
            dry_run,
            service_ids: HashMap::new(),
            backend_ids: HashMap::new(),
            macs: HashMap::new(),
            installed: HashMap::new(),
            adopted_halves: HashMap::new(),
            backend_flows: HashMap::new(),
            retired: HashMap::new(),
        };
        table.adopt();
        table
    }

    /// Reads the ids the maps already hold (none in fresh maps).
    fn adopt(&mut self) {
        let services: Vec<(ServiceKey, Service)> = lock(&self.maps.services)
            .iter()
            .filter_map(Result::ok)
            .collect();
        for (key, service) in services {
            self.service_ids.insert(key, service.id);
            self.adopted_halves.insert(service.id, service.table);
        }
        let backends = lock(&self.maps.backends);
        for id in 0..MAX_BACKENDS {
            let Ok(backend) = backends.get(&id, 0) else {
                continue;
            };
            if let Some(addr) = addr::from_map(backend.family, &backend.addr) {
                self.backend_ids.insert((addr, backend.port), id);
                if backend.mac != [0; 6] {
                    self.macs.insert(addr, backend.mac);
                }
            }
        }
        if !self.service_ids.is_empty() {
            info!(
                services = self.service_ids.len(),
                backends = self.backend_ids.len(),
                "service and backend ids adopted from the pinned maps"
            );
        }
    }

    /// The maps this table writes.
    pub fn maps(&self) -> &Arc<Maps> {
        &self.maps
    }

    /// Id of an installed service.
    pub fn service_id(&self, key: &ServiceKey) -> Option<u32> {
        self.service_ids.get(key).copied()
    }

    /// The spec of an installed service.
    pub fn spec(&self, id: u32) -> Option<&ServiceSpec> {
        self.installed.get(&id).map(|inst| &inst.spec)
    }

    /// Id of a backend (ids are stable for the agent's lifetime).
    pub fn backend_id(&self, addr: IpAddr, port: u16) -> Option<u32> {
        self.backend_ids.get(&(addr, port)).copied()
    }

    /// Records the flows per backend id the flow collector counted, and
    /// frees the ids of backends no service uses once no flow points at
    /// them any more (their entry stays until then, so established flows
    /// of a removed backend keep reaching it). Without this, every reload
    /// that changed backends used up ids until a reload failed.
    pub fn set_backend_flows(&mut self, flows: HashMap<u32, u64>) {
        self.backend_flows = flows;
        let used: std::collections::HashSet<(IpAddr, u16)> = self
            .installed
            .values()
            .flat_map(|inst| inst.spec.backends.iter().map(|b| (b.addr, b.port)))
            .collect();
        for (key, id) in &self.backend_ids {
            if used.contains(key) {
                self.retired.remove(id);
            } else if self.backend_flows.get(id).copied().unwrap_or(0) > 0 {
                self.retired.insert(*id, 0);
            } else {
                *self.retired.entry(*id).or_insert(0) += 1;
            }
        }
        let free: Vec<u32> = self
            .retired
            .iter()
            .filter(|(_, runs)| **runs >= IDLE_RUNS_BEFORE_FREE)
            .map(|(id, _)| *id)
            .collect();
        for id in free {
            self.retired.remove(&id);
            self.backend_ids.retain(|_, used| *used != id);
            debug!(
                backend = id,
                "backend id free again: no service uses it and no flow points at it"
            );
        }
    }

    /// The flows of a backend id at the flow collector's last run.
    pub fn backend_flows(&self, id: u32) -> u64 {
        self.backend_flows.get(&id).copied().unwrap_or(0)
    }

    /// Names and ids of the installed services, with their backends' ids.
    pub fn installed(&self) -> Vec<(u32, ServiceSpec, Vec<u32>)> {
        let mut out: Vec<_> = self
            .installed
            .iter()
            .map(|(id, inst)| {
                let ids = inst
                    .spec
                    .backends
                    .iter()
                    .filter_map(|b| self.backend_id(b.addr, b.port))
                    .collect();
                (*id, inst.spec.clone(), ids)
            })
            .collect();
        out.sort_by_key(|(id, ..)| *id);
        out
    }

    /// Records a backend's next-hop MAC and rewrites its entries.
    pub fn set_mac(&mut self, addr: IpAddr, mac: [u8; 6]) -> Result<(), DataplaneError> {
        if self.macs.insert(addr, mac) == Some(mac) {
            return Ok(());
        }
        let ids: Vec<(u16, u32)> = self
            .backend_ids
            .iter()
            .filter(|((a, _), _)| *a == addr)
            .map(|((_, port), id)| (*port, *id))
            .collect();
        for (port, id) in ids {
            let active = self.is_active(addr, port);
            self.write_backend(id, addr, port, active)?;
        }
        Ok(())
    }

    /// Backend addresses whose MAC is not known yet.
    pub fn unresolved(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self
            .backend_ids
            .keys()
            .map(|(addr, _)| *addr)
            .filter(|addr| !self.macs.contains_key(addr))
            .collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    /// Every backend address in use.
    pub fn backend_addrs(&self) -> Vec<IpAddr> {
        let mut addrs: Vec<IpAddr> = self.backend_ids.keys().map(|(a, _)| *a).collect();
        addrs.sort();
        addrs.dedup();
        addrs
    }

    fn is_active(&self, addr: IpAddr, port: u16) -> bool {
        self.installed.values().any(|inst| {
            inst.spec
                .backends
                .iter()
                .any(|b| b.addr == addr && b.port == port && b.weight > 0)
        })
    }

    /// Makes the data plane match `specs`: new and changed services are
    /// written (Maglev to the inactive half, then one atomic flip), services
    /// no longer wanted are removed. Existing flows keep their backends.
    pub fn apply(&mut self, specs: &[ServiceSpec]) -> Result<(), DataplaneError> {
        let wanted: Vec<ServiceKey> = specs.iter().map(ServiceSpec::key).collect();
        let stale: Vec<(ServiceKey, u32)> = self
            .service_ids
            .iter()
            .filter(|(key, _)| !wanted.contains(key))
            .map(|(key, id)| (*key, *id))
            .collect();
        for (key, id) in stale {
            if self.dry_run {
                info!(service = id, "HA debug: would remove service {id}");
            } else {
                let _ = lock(&self.maps.services).remove(&key);
            }
            self.service_ids.remove(&key);
            self.installed.remove(&id);
            self.adopted_halves.remove(&id);
        }
        for spec in specs {
            self.apply_one(spec)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, spec: &ServiceSpec) -> Result<(), DataplaneError> {
        let key = spec.key();
        let id = match self.service_ids.get(&key) {
            Some(id) => *id,
            None => {
                let id = (0..MAX_SERVICES)
                    .find(|id| !self.service_ids.values().any(|used| used == id))
                    .ok_or(DataplaneError::Full("services"))?;
                self.service_ids.insert(key, id);
                id
            }
        };
        if self
            .installed
            .get(&id)
            .is_some_and(|inst| inst.spec == *spec)
        {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(spec.backends.len());
        for backend in &spec.backends {
            ids.push(self.backend_id_or_new(backend.addr, backend.port)?);
        }
        let previous = self.installed.remove(&id);
        let active = previous
            .as_ref()
            .map(|p| p.table)
            .or_else(|| self.adopted_halves.remove(&id));
        // Backend entries first: a table never points at an unwritten one.
        self.installed.insert(
            id,
            Installed {
                spec: spec.clone(),
                table: active.unwrap_or(1),
                slots: Vec::new(),
            },
        );
        for (backend, id) in spec.backends.iter().zip(&ids) {
            let active = self.is_active(backend.addr, backend.port);
            self.write_backend(*id, backend.addr, backend.port, active)?;
        }
        let slots = maglev_slots(spec, &ids)?;
        let old_slots = previous
            .as_ref()
            .map(|p| p.slots.as_slice())
            .unwrap_or_default();
        let moved = moved(old_slots, &slots);
        let table = active.map_or(0, |t| 1 - t);
        if self.dry_run {
            info!(service = %spec.name, "HA debug: would write Maglev half {table} and flip ({moved} slots move)");
        } else {
            self.write_table(id, table, &slots)?;
            self.write_service(spec, id, table, &slots)?;
            info!(
                service = %spec.name,
                id,
                backends = slots_backends(&slots),
                "service installed: Maglev half {table} active, {moved} of {} slots moved",
                slots.len()
            );
        }
        if let Some(inst) = self.installed.get_mut(&id) {
            inst.table = table;
            inst.slots = slots;
        }
        Ok(())
    }

    fn backend_id_or_new(&mut self, addr: IpAddr, port: u16) -> Result<u32, DataplaneError> {
        if let Some(id) = self.backend_ids.get(&(addr, port)) {
            return Ok(*id);
        }
        let id = (0..MAX_BACKENDS)
            .find(|id| !self.backend_ids.values().any(|used| used == id))
            .ok_or(DataplaneError::Full("backends"))?;
        self.backend_ids.insert((addr, port), id);
        Ok(id)
    }

    fn write_backend(
        &self,
        id: u32,
        addr: IpAddr,
        port: u16,
        active: bool,
    ) -> Result<(), DataplaneError> {
        let (bytes, family) = addr::to_map(addr);
        let entry = Backend {
            addr: bytes,
            port,
            family,
            flags: if active { BACKEND_F_ACTIVE } else { 0 },
            mac: self.macs.get(&addr).copied().unwrap_or_default(),
            _pad: [0; 2],
        };
        if self.dry_run {
            return Ok(());
        }
        lock(&self.maps.backends)
            .set(id, entry, 0)
            .map_err(|source| DataplaneError::Map {
                name: vipx_common::MAP_BACKENDS,
                source,
            })
    }

    fn write_table(&self, id: u32, table: u32, slots: &[u32]) -> Result<(), DataplaneError> {
        let mut maglev = lock(&self.maps.maglev);
        for (slot, backend) in (0u32..).zip(slots) {
            maglev
                .set(maglev_index(id, table, slot), backend, 0)
                .map_err(|source| DataplaneError::Map {
                    name: vipx_common::MAP_MAGLEV,
                    source,
                })?;
        }
        Ok(())
    }

    fn write_service(
        &self,
        spec: &ServiceSpec,
        id: u32,
        table: u32,
        slots: &[u32],
    ) -> Result<(), DataplaneError> {
        let value = Service {
            id,
            group: spec.group,
            table,
            table_size: u32::try_from(slots.len()).unwrap_or(0),
            mode: match spec.mode {
                Mode::Nat => MODE_NAT,
                Mode::Dsr => MODE_DSR,
            },
            _pad: [0; 3],
            nat_port_first: spec.nat_ports.first,
            nat_port_last: spec.nat_ports.last,
        };
        // One update of the whole value: packets see the old table or the
        // new one, never a mix.
        lock(&self.maps.services)
            .insert(spec.key(), value, 0)
            .map_err(|source| DataplaneError::Map {
                name: vipx_common::MAP_SERVICES,
                source,
            })
    }
}

/// The backend id of every Maglev slot; empty when no backend takes new
/// flows (the data plane then refuses them, loudly counted).
fn maglev_slots(spec: &ServiceSpec, ids: &[u32]) -> Result<Vec<u32>, DataplaneError> {
    match maglev::build(&spec.maglev_backends(), spec.maglev_size) {
        Ok(table) => Ok(table.into_iter().map(|index| ids[index as usize]).collect()),
        Err(maglev::MaglevError::NoBackends) => {
            warn!(service = %spec.name, "no backend takes new flows: new connections are refused");
            Ok(Vec::new())
        }
        Err(err) => Err(DataplaneError::Maglev(err)),
    }
}

fn moved(old: &[u32], new: &[u32]) -> usize {
    if old.len() != new.len() {
        return new.len();
    }
    old.iter().zip(new).filter(|(a, b)| a != b).count()
}

fn slots_backends(slots: &[u32]) -> usize {
    let mut ids: Vec<u32> = slots.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}
