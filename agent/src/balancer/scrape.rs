//! Per-service and per-backend figures read at scrape time from the data
//! plane: packets and bytes (per-CPU counters, summed), and the service
//! table's view of backends and their flows. Only installed services and
//! backends have series: a reload that removes one removes them.

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tracing::warn;

use super::SharedTable;
use crate::{
    dataplane::Mode,
    locks::lock,
    metrics::family::{Kind, descs, family},
};

const SERVICE: &[&str] = &["service"];
const BACKEND: &[&str] = &["service", "backend"];

/// `(name, help, labels)` of the families, in `collect` order.
pub const FAMILIES: [(&str, &str, &[&str]); 8] = [
    (
        "vipx_service_packets_total",
        "Packets the data plane forwarded for a service (both directions).",
        SERVICE,
    ),
    (
        "vipx_service_bytes_total",
        "Bytes the data plane forwarded for a service (both directions).",
        SERVICE,
    ),
    (
        "vipx_backend_packets_total",
        "Packets the data plane forwarded to or from a backend.",
        BACKEND,
    ),
    (
        "vipx_backend_bytes_total",
        "Bytes the data plane forwarded to or from a backend.",
        BACKEND,
    ),
    (
        "vipx_backend_weight",
        "Effective weight of a backend in its service's Maglev table (0: no new flows).",
        BACKEND,
    ),
    (
        "vipx_backend_flows",
        "Flows to a backend in the flow table (at the flow collector's last run).",
        BACKEND,
    ),
    (
        "vipx_service_nat_ports_capacity",
        "NAT source ports of a nat-mode service's range ([[service]] nat_ports); usage is vipx_service_nat_ports.",
        SERVICE,
    ),
    (
        "vipx_service_backends",
        "Backends configured for a service.",
        SERVICE,
    ),
];

/// The families from this index on are gauges, those before counters.
const GAUGES_FROM: usize = 4;

/// Reads the service and backend counters at scrape time.
pub struct ServiceCollector {
    table: SharedTable,
    descs: Vec<Desc>,
}

impl ServiceCollector {
    pub fn new(table: SharedTable) -> prometheus::Result<Self> {
        Ok(Self {
            table,
            descs: descs(&FAMILIES)?,
        })
    }
}

type Rows = Vec<(Vec<String>, f64)>;

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = lock(&self.table);
        let maps = table.maps();
        let mut rows: [Rows; 8] = Default::default();
        for (id, spec, backend_ids) in table.installed() {
            let service = vec![spec.name.clone()];
            match maps.service_counter(id) {
                Ok(c) => {
                    rows[0].push((service.clone(), c.packets as f64));
                    rows[1].push((service.clone(), c.bytes as f64));
                }
                Err(err) => warn!("reading service counters: {err}"),
            }
            if spec.mode == Mode::Nat {
                let range = spec.nat_ports;
                let size = u32::from(range.last).saturating_sub(u32::from(range.first)) + 1;
                rows[6].push((service.clone(), f64::from(size)));
            }
            rows[7].push((service, spec.backends.len() as f64));
            for (backend, id) in spec.backends.iter().zip(backend_ids) {
                let labels = vec![
                    spec.name.clone(),
                    std::net::SocketAddr::new(backend.addr, backend.port).to_string(),
                ];
                match maps.backend_counter(id) {
                    Ok(c) => {
                        rows[2].push((labels.clone(), c.packets as f64));
                        rows[3].push((labels.clone(), c.bytes as f64));
                    }
                    Err(err) => warn!("reading backend counters: {err}"),
                }
                rows[4].push((labels.clone(), f64::from(backend.weight)));
                rows[5].push((labels, table.backend_flows(id) as f64));
            }
        }
        FAMILIES
            .iter()
            .zip(rows)
            .enumerate()
            .map(|(i, ((name, help, labels), rows))| {
                let kind = if i < GAUGES_FROM {
                    Kind::Counter
                } else {
                    Kind::Gauge
                };
                family(name, help, kind, labels, &rows)
            })
            .collect()
    }
}
