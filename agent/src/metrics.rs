//! Prometheus metrics: the agent's own registry, plus a collector that reads
//! the XDP counter maps at scrape time (so a scrape always sees the kernel's
//! current figures, summed over CPUs).

use prometheus::{
    Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
    core::{Collector, Desc},
    proto::{self, LabelPair, MetricFamily, MetricType},
};
use tracing::warn;

use vipx_common::Counter;

use crate::dataplane::{Attachment, CounterMaps};

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    attached: IntGaugeVec,
}

impl Metrics {
    /// Registers the agent's metrics; `counters` are read at each scrape.
    pub fn new(node: &str, counters: Option<CounterMaps>) -> prometheus::Result<Self> {
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
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self { registry, attached })
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

impl XdpCollector {
    fn new(counters: CounterMaps) -> prometheus::Result<Self> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, label)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    vec![(*label).to_owned()],
                    Default::default(),
                )
            })
            .collect::<prometheus::Result<_>>()?;
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
        FAMILIES
            .iter()
            .zip(values)
            .map(|((name, help, label), values)| counter_family(name, help, label, &values))
            .collect()
    }
}

fn field(named: &[(&'static str, Counter)], get: fn(&Counter) -> u64) -> Vec<(&'static str, u64)> {
    named.iter().map(|(name, c)| (*name, get(c))).collect()
}

fn counter_family(name: &str, help: &str, label: &str, values: &[(&str, u64)]) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::COUNTER);
    for (value_label, value) in values {
        let mut pair = LabelPair::default();
        pair.set_name(label.to_owned());
        pair.set_value((*value_label).to_owned());
        let mut counter = proto::Counter::default();
        #[expect(
            clippy::cast_precision_loss,
            reason = "Prometheus counters are f64; exact up to 2^53"
        )]
        counter.set_value(*value as f64);
        let mut metric = proto::Metric::from_label(vec![pair]);
        metric.set_counter(counter);
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
        let metrics = Metrics::new("node-a", None).expect("metrics");
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
