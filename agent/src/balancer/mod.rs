//! The load balancer's running parts around the data plane: the services
//! the configuration asks for, backend MACs kept current, the flow
//! collector, and the services' figures at scrape time.

pub mod replica;
mod scrape;

use crate::locks::lock;
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tracing::{debug, info, warn};

pub use scrape::{FAMILIES as SERVICE_FAMILIES, ServiceCollector};

use crate::{
    config::Config,
    dataplane::{BackendSpec, FlowCollector, FlowStats, ServiceSpec, ServiceTable, VipSpec},
    metrics::Metrics,
    neigh::{self, Neighbours},
};

/// How often backend MACs are re-read from the neighbour table.
pub const NEIGH_REFRESH: Duration = Duration::from_secs(1);
/// How often the flow collector runs.
pub const GC_INTERVAL: Duration = Duration::from_secs(1);

/// The service table, shared by the daemon, the resolver and `/metrics`.
pub type SharedTable = Arc<Mutex<ServiceTable>>;

/// The data-plane services the configuration asks for, with their groups'
/// ids ([`Config::groups_with_ids`]).
pub fn specs(config: &Config) -> Vec<ServiceSpec> {
    config
        .services
        .iter()
        .map(|service| {
            let service = service.get_ref();
            let group = config
                .service_group(service)
                .expect("checked when the configuration was loaded");
            ServiceSpec {
                name: service.name.clone(),
                vip: service.vip,
                port: service.port,
                protocol: service.protocol.number(),
                mode: service.mode,
                group,
                maglev_size: service.maglev_size,
                nat_ports: service.nat_ports,
                backends: service
                    .backends
                    .iter()
                    .map(|b| BackendSpec {
                        addr: b.address,
                        port: service.backend_port(b),
                        weight: b.weight,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Every VIP of every group of `config`, with its group's id and the NAT
/// port ranges of the nat-mode services of `specs` on it.
pub fn vips(config: &Config, specs: &[ServiceSpec]) -> Vec<VipSpec> {
    config
        .groups_with_ids()
        .flat_map(|(id, group)| {
            group
                .vips
                .iter()
                .map(move |vip| VipSpec::new(vip.addr, id, specs))
        })
        .collect()
}

/// One backend port per address, to solicit its MAC with.
fn solicit_ports(specs: &[ServiceSpec]) -> HashMap<IpAddr, u16> {
    specs
        .iter()
        .flat_map(|s| s.backends.iter().map(|b| (b.addr, b.port)))
        .collect()
}

/// Reads the neighbour table into the data plane; asks the kernel to
/// resolve the backends it does not know yet. Returns how many backend
/// addresses still lack a MAC.
pub async fn resolve_macs(
    table: &SharedTable,
    neighbours: &Neighbours,
    specs: &[ServiceSpec],
) -> usize {
    let known = match neighbours.table().await {
        Ok(known) => known,
        Err(err) => {
            warn!("{err}");
            return lock(table).unresolved().len();
        }
    };
    let (addrs, missing) = {
        let table = lock(table);
        (table.backend_addrs(), table.unresolved())
    };
    // Each backend's next hop: itself on link, else its route's gateway.
    let mut hops = HashMap::with_capacity(addrs.len());
    for addr in addrs {
        let hop = match neighbours.next_hop(addr).await {
            Ok(hop) => hop,
            Err(err) => {
                debug!("{err}");
                addr
            }
        };
        hops.insert(addr, hop);
        if let Some(mac) = known.get(&hop)
            && let Err(err) = lock(table).set_mac(addr, *mac)
        {
            warn!(%addr, %hop, "writing the backend MAC: {err}");
        }
    }
    let ports = solicit_ports(specs);
    let still: Vec<IpAddr> = missing
        .into_iter()
        .filter(|a| !known.contains_key(hops.get(a).unwrap_or(a)))
        .collect();
    for addr in &still {
        debug!(%addr, "soliciting the MAC of a backend");
        neigh::solicit(*addr, ports.get(addr).copied().unwrap_or(9)).await;
    }
    still.len()
}

/// Resolves backend MACs until every backend has one or `limit` passes.
pub async fn resolve_all(
    table: &SharedTable,
    neighbours: &Neighbours,
    specs: &[ServiceSpec],
    limit: Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let missing = resolve_macs(table, neighbours, specs).await;
        if missing == 0 {
            info!("every backend MAC is known");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                "{missing} backend addresses have no MAC yet; new flows to them are dropped until they do"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps backend MACs current.
pub async fn run_resolver(
    table: SharedTable,
    neighbours: Neighbours,
    specs: Arc<Mutex<Vec<ServiceSpec>>>,
) {
    let mut tick = tokio::time::interval(NEIGH_REFRESH);
    loop {
        tick.tick().await;
        let specs = lock(&specs).clone();
        resolve_macs(&table, &neighbours, &specs).await;
    }
}

/// Runs the flow collector; its figures go to `metrics`.
pub async fn run_collector(
    mut collector: FlowCollector,
    table: SharedTable,
    metrics: Arc<Metrics>,
    mut policy: tokio::sync::watch::Receiver<crate::dataplane::FlowPolicy>,
) {
    let mut tick = tokio::time::interval(GC_INTERVAL);
    loop {
        tick.tick().await;
        if policy.has_changed().unwrap_or(false) {
            collector.set_policy(*policy.borrow_and_update());
        }
        let (collector_back, stats) = tokio::task::spawn_blocking(move || {
            let stats = collector.collect();
            (collector, stats)
        })
        .await
        .expect("the flow collector does not panic");
        collector = collector_back;
        if stats.expired > 0 || stats.orphans > 0 {
            debug!(
                expired = stats.expired,
                orphans = stats.orphans,
                "flows collected"
            );
        }
        report(&stats, &table, &metrics);
    }
}

/// Exports a flow collection's figures per installed service.
fn report(stats: &FlowStats, table: &SharedTable, metrics: &Metrics) {
    let count = |m: &HashMap<u32, u64>, id: u32| m.get(&id).copied().unwrap_or(0);
    let mut table = lock(table);
    table.set_backend_flows(stats.backend_flows.clone());
    for (id, spec, _) in table.installed() {
        metrics.set_flows(
            &spec.name,
            count(&stats.flows, id),
            count(&stats.nat_ports, id),
        );
    }
    let total: u64 = stats.flows.values().sum();
    metrics.set_flows_held(total.saturating_sub(stats.replicated), stats.replicated);
    metrics.count_expired(stats.expired);
}
