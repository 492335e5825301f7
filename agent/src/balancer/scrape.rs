//! Per-service and per-backend figures read at scrape time from the data
//! plane: packets and bytes (per-CPU counters, summed), and the service
//! table's view of backends.

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tracing::warn;

use super::SharedTable;
use crate::{
    locks::lock,
    metrics::family::{Kind, descs, family},
};

/// `(name, help, labels)` of the families, in `collect` order.
const FAMILIES: [(&str, &str, &[&str]); 5] = [
    (
        "vipx_service_packets_total",
        "Packets the data plane forwarded for a service (both directions).",
        &["service"],
    ),
    (
        "vipx_service_bytes_total",
        "Bytes the data plane forwarded for a service (both directions).",
        &["service"],
    ),
    (
        "vipx_backend_packets_total",
        "Packets the data plane forwarded to or from a backend.",
        &["service", "backend"],
    ),
    (
        "vipx_backend_bytes_total",
        "Bytes the data plane forwarded to or from a backend.",
        &["service", "backend"],
    ),
    (
        "vipx_backend_weight",
        "Effective weight of a backend in its service's Maglev table (0: no new flows).",
        &["service", "backend"],
    ),
];

/// The last family is a gauge, the others counters.
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

impl Collector for ServiceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let table = lock(&self.table);
        let maps = table.maps();
        let mut rows: [Vec<(Vec<String>, f64)>; 5] = Default::default();
        for (id, spec, backend_ids) in table.installed() {
            match maps.service_counter(id) {
                Ok(c) => {
                    rows[0].push((vec![spec.name.clone()], c.packets as f64));
                    rows[1].push((vec![spec.name.clone()], c.bytes as f64));
                }
                Err(err) => warn!("reading service counters: {err}"),
            }
            for (backend, id) in spec.backends.iter().zip(backend_ids) {
                let labels = vec![
                    spec.name.clone(),
                    format!("{}", std::net::SocketAddr::new(backend.addr, backend.port)),
                ];
                match maps.backend_counter(id) {
                    Ok(c) => {
                        rows[2].push((labels.clone(), c.packets as f64));
                        rows[3].push((labels.clone(), c.bytes as f64));
                    }
                    Err(err) => warn!("reading backend counters: {err}"),
                }
                rows[4].push((labels, f64::from(backend.weight)));
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
