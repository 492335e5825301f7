//! Prometheus metrics: the agent's own registry, plus a collector that reads
//! the XDP counter maps at scrape time (so a scrape always sees the kernel's
//! current figures, summed over CPUs).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
    core::{Collector, Desc},
    proto::{self, LabelPair, MetricFamily, MetricType},
};
use tracing::warn;

mod lb;

pub use lb::LbCollector;

use vipx_common::Counter;

use crate::{
    dataplane::{Attachment, CounterMaps, FlowStats},
    health::Health,
    lb::SharedTable,
};

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    attached: IntGaugeVec,
    flows: IntGaugeVec,
    nat_ports: IntGaugeVec,
    group_master: IntGaugeVec,
    flows_expired: IntCounter,
    backend_state: IntGaugeVec,
    check_seconds: HistogramVec,
    transitions: IntCounterVec,
    all_down: IntGaugeVec,
    group_priority: IntGaugeVec,
    group_fault: IntGaugeVec,
    adverts: IntCounterVec,
    heartbeats: IntCounterVec,
    heartbeat_detection: prometheus::GaugeVec,
    detection: prometheus::GaugeVec,
}

impl Metrics {
    /// Registers the agent's metrics; `counters` are read at each scrape.
    pub fn new(
        node: &str,
        counters: Option<CounterMaps>,
        lb: Option<SharedTable>,
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let build = IntGauge::with_opts(
            Opts::new("vipx_build_info", "vipx-agent build and node; always 1.")
                .const_label("version", env!("CARGO_PKG_VERSION"))
                .const_label("node", node),
        )?;
        build.set(1);
        registry.register(Box::new(build))?;
        let attached = IntGaugeVec::new(
            Opts::new(
                "vipx_xdp_attached",
                "1 for each interface the XDP program is attached to, by mode.",
            ),
            &["interface", "mode"],
        )?;
        registry.register(Box::new(attached.clone()))?;
        if let Some(counters) = counters {
            registry.register(Box::new(XdpCollector::new(counters)?))?;
        }
        if let Some(table) = lb {
            registry.register(Box::new(LbCollector::new(table)?))?;
        }
        let gauge = |name: &str, help: &str, label: &str| -> prometheus::Result<IntGaugeVec> {
            let vec = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let flows = gauge(
            "vipx_service_flows",
            "Flows in the flow table, by service.",
            "service",
        )?;
        let nat_ports = gauge(
            "vipx_service_nat_ports",
            "NAT ports in use, by service (nat mode).",
            "service",
        )?;
        let group_master = gauge(
            "vipx_group_master",
            "1 while this node is MASTER of the group (serves its VIPs).",
            "group",
        )?;
        let flows_expired = IntCounter::new(
            "vipx_flows_expired_total",
            "Flows forgotten after their idle or FIN timeout.",
        )?;
        registry.register(Box::new(flows_expired.clone()))?;
        let backend_state = IntGaugeVec::new(
            Opts::new(
                "vipx_backend_health",
                "1 for the backend's current health (up, degraded, down), by service.",
            ),
            &["service", "backend", "state"],
        )?;
        registry.register(Box::new(backend_state.clone()))?;
        let check_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vipx_health_check_duration_seconds",
                "Duration of health checks.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["service", "backend"],
        )?;
        registry.register(Box::new(check_seconds.clone()))?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "vipx_health_transitions_total",
                "Health transitions of backends, by new state.",
            ),
            &["service", "backend", "to"],
        )?;
        registry.register(Box::new(transitions.clone()))?;
        let adverts = IntCounterVec::new(
            Opts::new(
                "vipx_vrrp_adverts_total",
                "VRRP adverts by group: sent, received, invalid, foreign (not a peer).",
            ),
            &["group", "what"],
        )?;
        registry.register(Box::new(adverts.clone()))?;
        let heartbeats = IntCounterVec::new(
            Opts::new(
                "vipx_heartbeats_total",
                "Fast heartbeats by group: sent, send_failed, received (recorded by XDP from the group's peers). Heartbeats and adverts from outside the peer list are dropped by XDP: vipx_xdp_reason_packets_total{reason=\"peer_unknown\"}.",
            ),
            &["group", "what"],
        )?;
        registry.register(Box::new(heartbeats.clone()))?;
        let heartbeat_detection = prometheus::GaugeVec::new(
            Opts::new(
                "vipx_heartbeat_detection_seconds",
                "The fast heartbeat's detection time in force, by group: heartbeat_interval x heartbeat_multiplier, doubled after each false takeover (heartbeat_dampening).",
            ),
            &["group"],
        )?;
        registry.register(Box::new(heartbeat_detection.clone()))?;
        let detection = prometheus::GaugeVec::new(
            Opts::new(
                "vipx_group_last_detection_seconds",
                "At this node's last takeover: the time since the previous master's last advert.",
            ),
            &["group"],
        )?;
        registry.register(Box::new(detection.clone()))?;
        let group_priority = gauge(
            "vipx_group_priority",
            "The group's election priority after its tracked items.",
            "group",
        )?;
        let group_fault = gauge(
            "vipx_group_fault",
            "1 while a tracked weight-0 item of the group fails (FAULT).",
            "group",
        )?;
        let all_down = gauge(
            "vipx_service_all_backends_down",
            "1 while every backend of the service is down.",
            "service",
        )?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            attached,
            flows,
            nat_ports,
            group_master,
            flows_expired,
            backend_state,
            check_seconds,
            transitions,
            all_down,
            group_priority,
            group_fault,
            adverts,
            heartbeats,
            heartbeat_detection,
            detection,
        })
    }

    /// Records one health check.
    pub fn observe_check(&self, report: &crate::health::Report) {
        let service = report.target.service.as_str();
        let backend = report.target.backend.to_string();
        self.check_seconds
            .with_label_values(&[service, &backend])
            .observe(report.took.as_secs_f64());
        for state in [Health::Up, Health::Degraded, Health::Down] {
            self.backend_state
                .with_label_values(&[service, &backend, state.name()])
                .set(i64::from(state == report.health));
        }
        if report.changed_from.is_some() {
            self.transitions
                .with_label_values(&[service, &backend, report.health.name()])
                .inc();
        }
    }

    /// Records which services have every backend down.
    pub fn set_all_down(&self, services: &std::collections::HashSet<String>) {
        for metric in self.all_down.collect().iter().flat_map(|f| f.get_metric()) {
            if let Some(label) = metric.get_label().first() {
                self.all_down.with_label_values(&[label.value()]).set(0);
            }
        }
        for service in services {
            self.all_down.with_label_values(&[service.as_str()]).set(1);
        }
    }

    /// Records what a flow collection found (`names`: service id -> name).
    pub fn set_flow_stats(&self, stats: &FlowStats, names: &[(u32, String)]) {
        for (id, name) in names {
            let count = |m: &std::collections::HashMap<u32, u64>| {
                i64::try_from(m.get(id).copied().unwrap_or(0)).unwrap_or(i64::MAX)
            };
            self.flows
                .with_label_values(&[name.as_str()])
                .set(count(&stats.flows));
            self.nat_ports
                .with_label_values(&[name.as_str()])
                .set(count(&stats.nat_ports));
        }
        self.flows_expired.inc_by(stats.expired);
    }

    /// Records a group's priority after its tracked items, and FAULT.
    pub fn set_group_priority(&self, group: &str, priority: u8, fault: bool) {
        self.group_priority
            .with_label_values(&[group])
            .set(i64::from(priority));
        self.group_fault
            .with_label_values(&[group])
            .set(i64::from(fault));
    }

    /// Records the detection time of this node's last takeover.
    pub fn set_detection(&self, group: &str, silence: std::time::Duration) {
        self.detection
            .with_label_values(&[group])
            .set(silence.as_secs_f64());
    }

    /// Counts a VRRP advert.
    pub fn count_advert(&self, group: &str, what: &str) {
        self.adverts.with_label_values(&[group, what]).inc();
    }

    /// The heartbeat counters of a group, for the heartbeat thread.
    pub fn heartbeat_counters(&self, group: &str) -> crate::pulse::PulseCounters {
        let counter = |what: &str| self.heartbeats.with_label_values(&[group, what]);
        crate::pulse::PulseCounters {
            sent: counter("sent"),
            received: counter("received"),
            send_failed: counter("send_failed"),
            detection: self.heartbeat_detection.with_label_values(&[group]),
        }
    }

    /// Records whether this node is MASTER of a group.
    pub fn set_group_master(&self, group: &str, master: bool) {
        self.group_master
            .with_label_values(&[group])
            .set(i64::from(master));
    }

    /// Records where XDP is attached now (replaces the previous view).
    pub fn set_attachments(&self, attachments: &[Attachment]) {
        self.attached.reset();
        for attachment in attachments {
            self.attached
                .with_label_values(&[attachment.iface.as_str(), &attachment.mode.to_string()])
                .set(1);
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

/// Reads the XDP counter maps at scrape time.
struct XdpCollector {
    counters: CounterMaps,
    descs: Vec<Desc>,
}

/// `(name, help, label)` of the four counter families, in `descs` order.
const FAMILIES: [(&str, &str, &str); 4] = [
    (
        "vipx_xdp_packets_total",
        "Packets seen by the XDP program, by the action it returned.",
        "action",
    ),
    (
        "vipx_xdp_bytes_total",
        "Bytes seen by the XDP program, by the action it returned.",
        "action",
    ),
    (
        "vipx_xdp_reason_packets_total",
        "Packets seen by the XDP program, by the reason of its decision.",
        "reason",
    ),
    (
        "vipx_xdp_reason_bytes_total",
        "Bytes seen by the XDP program, by the reason of its decision.",
        "reason",
    ),
];

/// `(name, help)` of the count of peer events lost.
const EVENTS_LOST: (&str, &str) = (
    "vipx_xdp_peer_events_lost_total",
    "Peer events (new source, priority or state change) the XDP program's ring buffer had no room for; the records still hold them, the heartbeat thread only woke later.",
);

impl XdpCollector {
    fn new(counters: CounterMaps) -> prometheus::Result<Self> {
        let mut descs = FAMILIES
            .iter()
            .map(|(name, help, label)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    vec![(*label).to_owned()],
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<Vec<_>>>()?;
        descs.push(Desc::new(
            EVENTS_LOST.0.to_owned(),
            EVENTS_LOST.1.to_owned(),
            Vec::new(),
            Default::default(),
        )?);
        Ok(Self { counters, descs })
    }
}

impl Collector for XdpCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = match self.counters.snapshot() {
            Ok(snapshot) => snapshot,
            Err(err) => {
                warn!("reading XDP counters: {err}");
                return Vec::new();
            }
        };
        let actions: Vec<_> = snapshot.named_actions().collect();
        let reasons: Vec<_> = snapshot.named_reasons().collect();
        let values = [
            field(&actions, |c| c.packets),
            field(&actions, |c| c.bytes),
            field(&reasons, |c| c.packets),
            field(&reasons, |c| c.bytes),
        ];
        let mut families: Vec<MetricFamily> = FAMILIES
            .iter()
            .zip(values)
            .map(|((name, help, label), values)| counter_family(name, help, label, &values))
            .collect();
        families.push(family(
            EVENTS_LOST.0,
            EVENTS_LOST.1,
            &[],
            &[(Vec::new(), snapshot.events_lost.packets as f64)],
            true,
        ));
        families
    }
}

fn field(named: &[(&'static str, Counter)], get: fn(&Counter) -> u64) -> Vec<(&'static str, u64)> {
    named.iter().map(|(name, c)| (*name, get(c))).collect()
}

fn counter_family(name: &str, help: &str, label: &str, values: &[(&str, u64)]) -> MetricFamily {
    let rows: Vec<(Vec<String>, f64)> = values
        .iter()
        .map(|(value_label, value)| (vec![(*value_label).to_owned()], *value as f64))
        .collect();
    family(name, help, &[label], &rows, true)
}

/// A metric family of counters (or gauges) with the given label names, one
/// sample per row.
pub(crate) fn family(
    name: &str,
    help: &str,
    labels: &[&str],
    rows: &[(Vec<String>, f64)],
    counter: bool,
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(if counter {
        MetricType::COUNTER
    } else {
        MetricType::GAUGE
    });
    for (values, value) in rows {
        let mut pairs: Vec<LabelPair> = labels
            .iter()
            .zip(values)
            .map(|(label, value)| {
                let mut pair = LabelPair::default();
                pair.set_name((*label).to_owned());
                pair.set_value(value.clone());
                pair
            })
            .collect();
        // Sorted by name, as the prometheus crate's own vectors are.
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let mut metric = proto::Metric::from_label(pairs);
        if counter {
            let mut c = proto::Counter::default();
            c.set_value(*value);
            metric.set_counter(c);
        } else {
            let mut g = proto::Gauge::default();
            g.set_value(*value);
            metric.set_gauge(g);
        }
        family.mut_metric().push(metric);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_family_renders_in_text_format() {
        let family = counter_family(
            "vipx_xdp_packets_total",
            "help",
            "action",
            &[("pass", 7), ("drop", 0)],
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&[family], &mut out)
            .expect("encode");
        let text = String::from_utf8(out).expect("utf8");
        assert!(
            text.contains("# TYPE vipx_xdp_packets_total counter"),
            "{text}"
        );
        assert!(
            text.contains("vipx_xdp_packets_total{action=\"pass\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("vipx_xdp_packets_total{action=\"drop\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn agent_metrics_render_without_a_dataplane() {
        let metrics = Metrics::new("node-a", None, None).expect("metrics");
        metrics.set_attachments(&[Attachment {
            iface: "eth0".into(),
            mode: crate::dataplane::AttachedMode::Generic,
        }]);
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
}
