//! Prometheus metrics: the agent's registry and the families the domains
//! move. A leaf: the domains call it with plain values (names, numbers,
//! the words of a label), or take the handles of their own families
//! ([`HeartbeatMetrics`]); the collectors that read the data plane at
//! scrape time live beside what they read and are registered here
//! ([`Metrics::register`]), built with [`family`].

pub mod family;

use std::{collections::HashSet, time::Duration};

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};
use tracing::warn;

/// Buckets of the health checks' duration, in seconds.
const CHECK_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Buckets of the replication lag, in seconds: 25 us to 2 s, steps of
/// 1.5x to 2.5x, so that a sub-millisecond p99 has a bucket of its own.
const LAG_BUCKETS: [f64; 24] = [
    0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001,
    0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

/// What became of a VRRP advert (`vipx_vrrp_adverts_total{what}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvertOutcome {
    Sent,
    Received,
    /// Not a valid VRRPv3 advert.
    Invalid,
    /// From outside the group's `unicast_peers`.
    Foreign,
}

impl AdvertOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Received => "received",
            Self::Invalid => "invalid",
            Self::Foreign => "foreign",
        }
    }
}

/// One health check's result, as the metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct CheckResult<'a> {
    pub service: &'a str,
    pub backend: &'a str,
    pub took: Duration,
    /// The backend's health after the check, among `states`.
    pub state: &'a str,
    /// Every health state: one series each, 1 for the current one.
    pub states: &'a [&'a str],
    /// The check changed the backend's health.
    pub changed: bool,
}

/// The heartbeat's families of one group, for the heartbeat thread.
#[derive(Clone, Debug)]
pub struct HeartbeatMetrics {
    pub sent: IntCounter,
    pub received: IntCounter,
    pub send_failed: IntCounter,
    /// The detection time in force (the configured one, or more after a
    /// false takeover).
    pub detection: Gauge,
}

/// Flow replication's families, for the replication tasks.
#[derive(Clone, Debug)]
pub struct SyncMetrics {
    /// Batches sent to peers (first sends).
    pub batches: IntCounter,
    /// Batches sent again after a reconnection.
    pub resent: IntCounter,
    /// Bytes of the frames sent.
    pub bytes: IntCounter,
    /// Whole-table transfers sent.
    pub bulks: IntCounter,
    /// Peers' flows installed in this node's maps.
    pub installed: IntCounter,
    /// Peers' flows this node has no service or backend for.
    pub not_installed: IntCounter,
    /// Peers' flow ends applied.
    pub ended: IntCounter,
    /// Connections refused: the peer could not prove the cluster secret.
    pub refused: IntCounter,
    /// Batches sent and not yet acknowledged, over every peer link.
    pub unacked: IntGauge,
    /// From a change of the flow table to the peer's acknowledgement.
    pub lag: prometheus::Histogram,
}

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    attached: IntGaugeVec,
    services: ServiceFamilies,
    health: HealthFamilies,
    groups: GroupFamilies,
    sync: SyncMetrics,
}

/// Per-service families the agent moves.
struct ServiceFamilies {
    flows: IntGaugeVec,
    nat_ports: IntGaugeVec,
    flows_expired: IntCounter,
    all_down: IntGaugeVec,
}

/// Health check families.
struct HealthFamilies {
    backend_state: IntGaugeVec,
    check_seconds: HistogramVec,
    transitions: IntCounterVec,
}

/// Per-group families: election, tracking, heartbeat.
struct GroupFamilies {
    master: IntGaugeVec,
    priority: IntGaugeVec,
    fault: IntGaugeVec,
    adverts: IntCounterVec,
    heartbeats: IntCounterVec,
    heartbeat_detection: GaugeVec,
    detection: GaugeVec,
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
                "NAT ports in use, by service (nat mode).",
                &["service"],
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

impl HealthFamilies {
    fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        Ok(Self {
            backend_state: r.int_gauges(
                "vipx_backend_health",
                "1 for the backend's current health (up, degraded, down), by service.",
                &["service", "backend", "state"],
            )?,
            check_seconds: r.add(HistogramVec::new(
                HistogramOpts::new(
                    "vipx_health_check_duration_seconds",
                    "Duration of health checks.",
                )
                .buckets(CHECK_BUCKETS.to_vec()),
                &["service", "backend"],
            )?)?,
            transitions: r.counters(
                "vipx_health_transitions_total",
                "Health transitions of backends, by new state.",
                &["service", "backend", "to"],
            )?,
        })
    }
}

impl GroupFamilies {
    fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        Ok(Self {
            master: r.int_gauges(
                "vipx_group_master",
                "1 while this node is MASTER of the group (serves its VIPs).",
                &["group"],
            )?,
            adverts: r.counters(
                "vipx_vrrp_adverts_total",
                "VRRP adverts by group: sent, received, invalid, foreign (not a peer).",
                &["group", "what"],
            )?,
            heartbeats: r.counters(
                "vipx_heartbeats_total",
                "Fast heartbeats by group: sent, send_failed, received (recorded by XDP from the group's peers). Heartbeats and adverts from outside the peer list are dropped by XDP: vipx_xdp_reason_packets_total{reason=\"peer_unknown\"}.",
                &["group", "what"],
            )?,
            heartbeat_detection: r.gauges(
                "vipx_heartbeat_detection_seconds",
                "The fast heartbeat's detection time in force, by group: heartbeat_interval x heartbeat_multiplier, doubled after each false takeover (heartbeat_dampening).",
                &["group"],
            )?,
            detection: r.gauges(
                "vipx_group_last_detection_seconds",
                "At this node's last takeover: the time since the previous master's last advert.",
                &["group"],
            )?,
            priority: r.int_gauges(
                "vipx_group_priority",
                "The group's election priority after its tracked items.",
                &["group"],
            )?,
            fault: r.int_gauges(
                "vipx_group_fault",
                "1 while a tracked weight-0 item of the group fails (FAULT).",
                &["group"],
            )?,
        })
    }
}

impl SyncMetrics {
    fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| r.add(IntCounter::new(name, help)?);
        Ok(Self {
            batches: counter(
                "vipx_sync_batches_total",
                "Batches of flow changes sent to peers (first sends).",
            )?,
            resent: counter(
                "vipx_sync_resent_batches_total",
                "Batches sent again to a peer after a reconnection.",
            )?,
            bytes: counter(
                "vipx_sync_sent_bytes_total",
                "Bytes of replication frames sent to peers.",
            )?,
            bulks: counter(
                "vipx_sync_bulk_transfers_total",
                "Whole flow tables sent to a peer (it held nothing of this run, or its queue overflowed).",
            )?,
            installed: counter(
                "vipx_sync_flows_installed_total",
                "Flows received from peers and installed in this node's maps.",
            )?,
            not_installed: counter(
                "vipx_sync_flows_not_installed_total",
                "Flows received from peers for a service or backend this node does not have.",
            )?,
            ended: counter(
                "vipx_sync_flow_ends_total",
                "Flow ends received from peers and applied.",
            )?,
            refused: counter(
                "vipx_sync_refused_total",
                "Replication connections refused: the other side could not prove the cluster secret.",
            )?,
            unacked: r.add(IntGauge::new(
                "vipx_sync_unacked_batches",
                "Batches sent to a peer and not yet acknowledged.",
            )?)?,
            lag: r.add(prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "vipx_sync_lag_seconds",
                    "Replication lag: from a change of the flow table (a new flow: its creation by XDP) to the peer's acknowledgement that it is installed.",
                )
                .buckets(LAG_BUCKETS.to_vec()),
            )?)?,
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
        let services = ServiceFamilies::new(&r)?;
        let health = HealthFamilies::new(&r)?;
        let groups = GroupFamilies::new(&r)?;
        let sync = SyncMetrics::new(&r)?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            attached,
            services,
            health,
            groups,
            sync,
        })
    }

    /// Flow replication's families.
    pub fn sync(&self) -> SyncMetrics {
        self.sync.clone()
    }

    /// Adds a collector read at each scrape (the data plane's figures).
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Records one health check.
    pub fn observe_check(&self, check: &CheckResult<'_>) {
        let h = &self.health;
        h.check_seconds
            .with_label_values(&[check.service, check.backend])
            .observe(check.took.as_secs_f64());
        for state in check.states {
            h.backend_state
                .with_label_values(&[check.service, check.backend, state])
                .set(i64::from(*state == check.state));
        }
        if check.changed {
            h.transitions
                .with_label_values(&[check.service, check.backend, check.state])
                .inc();
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

    /// Counts flows forgotten after their timeout.
    pub fn count_expired(&self, flows: u64) {
        self.services.flows_expired.inc_by(flows);
    }

    /// Records a group's priority after its tracked items, and FAULT.
    pub fn set_group_priority(&self, group: &str, priority: u8, fault: bool) {
        self.groups
            .priority
            .with_label_values(&[group])
            .set(i64::from(priority));
        self.groups
            .fault
            .with_label_values(&[group])
            .set(i64::from(fault));
    }

    /// Records the detection time of this node's last takeover.
    pub fn set_detection(&self, group: &str, silence: Duration) {
        self.groups
            .detection
            .with_label_values(&[group])
            .set(silence.as_secs_f64());
    }

    /// Counts a VRRP advert.
    pub fn count_advert(&self, group: &str, outcome: AdvertOutcome) {
        self.groups
            .adverts
            .with_label_values(&[group, outcome.label()])
            .inc();
    }

    /// The heartbeat families of a group, for the heartbeat thread.
    pub fn heartbeat(&self, group: &str) -> HeartbeatMetrics {
        let counter = |what: &str| self.groups.heartbeats.with_label_values(&[group, what]);
        HeartbeatMetrics {
            sent: counter("sent"),
            received: counter("received"),
            send_failed: counter("send_failed"),
            detection: self.groups.heartbeat_detection.with_label_values(&[group]),
        }
    }

    /// Records whether this node is MASTER of a group.
    pub fn set_group_master(&self, group: &str, master: bool) {
        self.groups
            .master
            .with_label_values(&[group])
            .set(i64::from(master));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_metrics_render_without_a_dataplane() {
        let metrics = Metrics::new("node-a").expect("metrics");
        metrics.set_attachments(&[("eth0", "generic")]);
        let text = metrics.render();
        assert!(
            text.contains("vipx_build_info{node=\"node-a\""),
            "build info missing: {text}"
        );
        assert!(
            text.contains("vipx_xdp_attached{interface=\"eth0\",mode=\"generic\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn a_check_sets_one_health_series_and_counts_the_change() {
        let metrics = Metrics::new("node-a").expect("metrics");
        metrics.observe_check(&CheckResult {
            service: "pg",
            backend: "10.0.0.1:6432",
            took: Duration::from_millis(3),
            state: "down",
            states: &["up", "degraded", "down"],
            changed: true,
        });
        metrics.count_advert("db", AdvertOutcome::Foreign);
        let text = metrics.render();
        for (state, value) in [("up", 0), ("degraded", 0), ("down", 1)] {
            let line = format!(
                "vipx_backend_health{{backend=\"10.0.0.1:6432\",service=\"pg\",state=\"{state}\"}} {value}"
            );
            assert!(text.contains(&line), "{line} missing: {text}");
        }
        assert!(
            text.contains(
                "vipx_health_transitions_total{backend=\"10.0.0.1:6432\",service=\"pg\",to=\"down\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("vipx_vrrp_adverts_total{group=\"db\",what=\"foreign\"} 1"),
            "{text}"
        );
    }
}
