//! Prometheus metrics: the agent's registry and the families the domains
//! move. A leaf: the domains call it with plain values (names, numbers,
//! the words of a label), or take the handles of their own families
//! ([`HeartbeatMetrics`]); the collectors that read the data plane at
//! scrape time live beside what they read and are registered here
//! ([`Metrics::register`]), built with [`family`].
//!
//! Naming follows Prometheus' "Metric and label naming": one counter per
//! outcome where a sum over the outcomes means nothing, label names never
//! in metric names, `state` for a current state and `to` for the state a
//! transition entered, series present at 0 from the start and removed when
//! a reload removes their service or backend, capacities next to usage.

pub mod cluster;
pub mod family;
mod fence;
mod group;
mod health;
mod sync;

use std::{
    collections::{HashMap, HashSet},
    time::{SystemTime, UNIX_EPOCH},
};

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, core::Collector,
};
use tracing::warn;

pub use fence::FENCE_RESULTS;
pub use group::{AdvertOutcome, GROUP_STATES, HeartbeatMetrics};
pub use health::CheckResult;
pub use sync::SyncMetrics;

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    attached: IntGaugeVec,
    config: ConfigFamilies,
    services: ServiceFamilies,
    health: health::HealthFamilies,
    groups: group::GroupFamilies,
    sync: SyncMetrics,
    cluster: cluster::ClusterMetrics,
    fence: fence::FenceFamilies,
}

/// The configuration's reloads and the capacities it sets.
struct ConfigFamilies {
    reload_ok: IntGauge,
    reload_at: Gauge,
    flow_table: IntGauge,
}

/// Per-service families the agent moves.
struct ServiceFamilies {
    flows: IntGaugeVec,
    nat_ports: IntGaugeVec,
    held: IntGaugeVec,
    flows_expired: IntCounter,
    all_down: IntGaugeVec,
}

/// The services and backends a reload keeps: the series of the others go.
#[derive(Debug, Default)]
pub struct Keep {
    pub services: HashSet<String>,
    /// `(service, backend)`, the backend as `ADDRESS:PORT`.
    pub backends: HashSet<(String, String)>,
}

/// A labelled family whose series can be removed by service and backend.
trait Retain {
    fn retain(&self, keep: &Keep);
}

impl<T: prometheus::core::MetricVecBuilder> Retain for prometheus::core::MetricVec<T> {
    fn retain(&self, keep: &Keep) {
        for family in self.collect() {
            for metric in family.get_metric() {
                let labels: HashMap<&str, &str> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let Some(service) = labels.get("service") else {
                    continue;
                };
                let kept = match labels.get("backend") {
                    Some(backend) => keep
                        .backends
                        .contains(&((*service).to_owned(), (*backend).to_owned())),
                    None => keep.services.contains(*service),
                };
                if !kept {
                    let _ = self.remove(&labels);
                }
            }
        }
    }
}

/// Registers families in one registry.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<C: Collector + Clone + 'static>(&self, collector: C) -> prometheus::Result<C> {
        self.0.register(Box::new(collector.clone()))?;
        Ok(collector)
    }

    fn int_gauges(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn gauges(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        self.add(GaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn counters(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
}

impl ConfigFamilies {
    fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        let families = Self {
            reload_ok: r.add(IntGauge::new(
                "vipx_config_last_reload_successful",
                "1 if the last configuration load (start or SIGHUP) was applied, 0 if it was rejected (the running configuration stays).",
            )?)?,
            reload_at: r.add(Gauge::new(
                "vipx_config_last_reload_success_timestamp_seconds",
                "Unix time of the last configuration applied (start or SIGHUP).",
            )?)?,
            flow_table: r.add(IntGauge::new(
                "vipx_flow_table_capacity",
                "Flows the data plane's flow table holds at most ([dataplane] flow_table_size); compare with sum(vipx_service_flows).",
            )?)?,
        };
        Ok(families)
    }
}

impl ServiceFamilies {
    fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        Ok(Self {
            flows: r.int_gauges(
                "vipx_service_flows",
                "Flows in the flow table, by service.",
                &["service"],
            )?,
            nat_ports: r.int_gauges(
                "vipx_service_nat_ports",
                "NAT ports in use, by service (nat mode); the range's size is vipx_service_nat_ports_capacity.",
                &["service"],
            )?,
            held: r.int_gauges(
                "vipx_flows_held",
                "Flows in this node's table, by origin: own (created by its XDP program) or replicated (installed from a peer).",
                &["origin"],
            )?,
            flows_expired: r.add(IntCounter::new(
                "vipx_flows_expired_total",
                "Flows forgotten after their idle or FIN timeout.",
            )?)?,
            all_down: r.int_gauges(
                "vipx_service_all_backends_down",
                "1 while every backend of the service is down.",
                &["service"],
            )?,
        })
    }
}

impl Metrics {
    /// Registers the agent's own families; `node` labels the build info.
    pub fn new(node: &str) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let r = Registrar(&registry);
        let build = r.add(IntGauge::with_opts(
            Opts::new("vipx_build_info", "vipx-agent build and node; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION"))
                .const_label("node", node),
        )?)?;
        build.set(1);
        let attached = r.int_gauges(
            "vipx_xdp_attached",
            "1 for each interface the XDP program is attached to, by mode.",
            &["interface", "mode"],
        )?;
        let config = ConfigFamilies::new(&r)?;
        let services = ServiceFamilies::new(&r)?;
        let health = health::HealthFamilies::new(&r)?;
        let groups = group::GroupFamilies::new(&r)?;
        let sync = SyncMetrics::new(&r)?;
        let cluster = cluster::ClusterMetrics::new(&r)?;
        let fence = fence::FenceFamilies::new(&r)?;
        for origin in ["own", "replicated"] {
            services.held.with_label_values(&[origin]);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            attached,
            config,
            services,
            health,
            groups,
            sync,
            cluster,
            fence,
        })
    }

    /// The cluster's families.
    pub fn cluster(&self) -> cluster::ClusterMetrics {
        self.cluster.clone()
    }

    /// Flow replication's families.
    pub fn sync(&self) -> SyncMetrics {
        self.sync.clone()
    }

    /// Adds a collector read at each scrape (the data plane's figures).
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Records a configuration load: applied (now) or rejected.
    pub fn set_reload(&self, applied: bool) {
        self.config.reload_ok.set(i64::from(applied));
        if applied {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.config.reload_at.set(now);
        }
    }

    /// Records the flow table's size.
    pub fn set_flow_table_capacity(&self, flows: u32) {
        self.config.flow_table.set(i64::from(flows));
    }

    /// The configured services and backends: their series exist from now
    /// (at 0), those of services and backends no longer configured go.
    pub fn retain(&self, keep: &Keep) {
        for family in by_service_vecs(&self.services) {
            family.retain(keep);
        }
        self.health.retain(keep);
        for service in &keep.services {
            for family in by_service_vecs(&self.services) {
                family.with_label_values(&[service.as_str()]);
            }
        }
    }

    /// Records which services have every backend down.
    pub fn set_all_down(&self, services: &HashSet<String>) {
        let all_down = &self.services.all_down;
        for metric in all_down.collect().iter().flat_map(|f| f.get_metric()) {
            if let Some(label) = metric.get_label().first() {
                all_down.with_label_values(&[label.value()]).set(0);
            }
        }
        for service in services {
            all_down.with_label_values(&[service.as_str()]).set(1);
        }
    }

    /// Records a service's flows and the NAT ports they hold.
    pub fn set_flows(&self, service: &str, flows: u64, nat_ports: u64) {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.services
            .flows
            .with_label_values(&[service])
            .set(count(flows));
        self.services
            .nat_ports
            .with_label_values(&[service])
            .set(count(nat_ports));
    }

    /// Records the flows this node holds, its own and its peers'.
    pub fn set_flows_held(&self, own: u64, replicated: u64) {
        for (origin, n) in [("own", own), ("replicated", replicated)] {
            self.services
                .held
                .with_label_values(&[origin])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Counts flows forgotten after their timeout.
    pub fn count_expired(&self, flows: u64) {
        self.services.flows_expired.inc_by(flows);
    }

    /// Records where XDP is attached now, `(interface, mode)` (replaces the
    /// previous view).
    pub fn set_attachments(&self, attachments: &[(&str, &str)]) {
        self.attached.reset();
        for (iface, mode) in attachments {
            self.attached.with_label_values(&[iface, mode]).set(1);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!("encoding metrics: {err}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The per-service gauges a configured service has from the start.
fn by_service_vecs(s: &ServiceFamilies) -> [&IntGaugeVec; 3] {
    [&s.flows, &s.nat_ports, &s.all_down]
}

#[cfg(test)]
mod tests;
