//! The flow table's upkeep: forgetting idle and closed flows (which frees
//! their NAT ports) and counting what is in use.

use crate::locks::lock;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use vipx_common::{
    FlowKey,
    flow::{FLOW_F_FIN_BACKEND, FLOW_F_FIN_CLIENT, FLOW_F_REPLICA, nat_key},
};

use super::{lease::monotonic_ns, maps::Maps};

/// When flows are forgotten.
#[derive(Clone, Copy, Debug)]
pub struct FlowTimeouts {
    pub tcp_idle: Duration,
    pub udp_idle: Duration,
    /// After a FIN was seen both ways.
    pub fin: Duration,
}

/// What one collection found, per service id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Flows per service id.
    pub flows: HashMap<u32, u64>,
    /// Flows per backend id.
    pub backend_flows: HashMap<u32, u64>,
    /// Of all flows, those installed from a peer's replication (the rest
    /// this node's XDP program created).
    pub replicated: u64,
    /// NAT ports in use per service id.
    pub nat_ports: HashMap<u32, u64>,
    /// Flows forgotten by this collection.
    pub expired: u64,
    /// NAT entries without a flow, removed.
    pub orphans: u64,
}

/// Forgets expired flows; keeps what it needs between runs.
pub struct FlowCollector {
    maps: Arc<Maps>,
    timeouts: FlowTimeouts,
    /// NAT entries without a flow at the previous run. The XDP program
    /// inserts the NAT entry just before the flow, so an entry is removed
    /// only when it is still an orphan one run later.
    orphans: HashSet<FlowKey>,
}

impl FlowCollector {
    pub fn new(maps: Arc<Maps>, timeouts: FlowTimeouts) -> Self {
        Self {
            maps,
            timeouts,
            orphans: HashSet::new(),
        }
    }

    /// A reload changed the idle timeouts: the next run uses these.
    pub fn set_timeouts(&mut self, timeouts: FlowTimeouts) {
        self.timeouts = timeouts;
    }

    /// Removes expired flows and their NAT entries, then NAT entries whose
    /// flow is gone (evicted by the LRU), and counts what stays.
    pub fn collect(&mut self) -> FlowStats {
        let (stats, orphans) = collect(&self.maps, self.timeouts, &self.orphans);
        self.orphans = orphans;
        stats
    }
}

fn collect(
    maps: &Arc<Maps>,
    timeouts: FlowTimeouts,
    seen_orphans: &HashSet<FlowKey>,
) -> (FlowStats, HashSet<FlowKey>) {
    let now = monotonic_ns();
    let mut orphans = HashSet::new();
    let mut stats = FlowStats::default();
    // The NAT port of each flow kept: most NAT entries are checked against
    // it, without a lookup each.
    let mut kept: HashMap<FlowKey, u16> = HashMap::new();
    for (key, flow) in maps.flows() {
        let idle = Duration::from_nanos(now.saturating_sub(flow.last_seen_ns));
        let closed = flow.flags & (FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND)
            == (FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND);
        let limit = if closed {
            timeouts.fin
        } else if key.proto == 6 {
            timeouts.tcp_idle
        } else {
            timeouts.udp_idle
        };
        if idle <= limit {
            kept.insert(key, flow.nat_port);
            *stats.flows.entry(flow.service).or_default() += 1;
            *stats.backend_flows.entry(flow.backend).or_default() += 1;
            stats.replicated += u64::from(flow.flags & FLOW_F_REPLICA != 0);
            continue;
        }
        let _ = lock(&maps.flows).remove(&key);
        stats.expired += 1;
        if flow.nat_port != 0
            && let Some(backend) = maps.backend(flow.backend)
        {
            let _ =
                lock(&maps.nat).remove(&nat_key(&key, backend.addr, backend.port, flow.nat_port));
        }
    }
    for (key, entry) in maps.nat_entries() {
        let nat_port = match kept.get(&entry.client) {
            Some(port) if *port == key.dport => Some(*port),
            // Not (or not so) when the table was read: as it is now.
            _ => maps.flow(&entry.client).map(|flow| flow.nat_port),
        };
        match nat_port {
            Some(port) if port == key.dport => {
                *stats.nat_ports.entry(entry.service).or_default() += 1;
            }
            _ if seen_orphans.contains(&key) => {
                let _ = lock(&maps.nat).remove(&key);
                stats.orphans += 1;
            }
            _ => {
                orphans.insert(key);
            }
        }
    }
    (stats, orphans)
}
