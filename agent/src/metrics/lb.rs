//! Per-service and per-backend figures read at scrape time from the data
//! plane: packets and bytes (per-CPU counters, summed), and the service
//! table's view of backends.

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tracing::warn;

use super::family;
use crate::lb::{SharedTable, lock};

/// Reads the service and backend counters at scrape time.
pub struct LbCollector {
    table: SharedTable,
    descs: Vec<Desc>,
}

/// `(name, help, labels)` of the families, in `descs` order.
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

impl LbCollector {
    pub fn new(table: SharedTable) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
        Ok(Self { table, descs })
    }
}

impl Collector for LbCollector {
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
            .map(|(i, ((name, help, labels), rows))| family(name, help, labels, &rows, i < 4))
            .collect()
    }
}
