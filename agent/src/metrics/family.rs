//! Metric families built at scrape time, for the collectors that read the
//! data plane's maps (the XDP counters, the services and backends).

use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

/// Counter or gauge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A metric family with the given label names, one sample per row
/// (label values in `labels` order, value).
pub fn family(
    name: &str,
    help: &str,
    kind: Kind,
    labels: &[&str],
    rows: &[(Vec<String>, f64)],
) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(match kind {
        Kind::Counter => MetricType::COUNTER,
        Kind::Gauge => MetricType::GAUGE,
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
        match kind {
            Kind::Counter => {
                let mut c = proto::Counter::default();
                c.set_value(*value);
                metric.set_counter(c);
            }
            Kind::Gauge => {
                let mut g = proto::Gauge::default();
                g.set_value(*value);
                metric.set_gauge(g);
            }
        }
        family.mut_metric().push(metric);
    }
    family
}

/// The descriptions of families `(name, help, labels)`, for a collector's
/// `desc()`.
pub fn descs(
    families: &[(&str, &str, &[&str])],
) -> prometheus::Result<Vec<prometheus::core::Desc>> {
    families
        .iter()
        .map(|(name, help, labels)| {
            prometheus::core::Desc::new(
                (*name).to_owned(),
                (*help).to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                Default::default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder as _, TextEncoder};

    use super::*;

    #[test]
    fn a_counter_family_renders_in_text_format() {
        let family = family(
            "vipx_xdp_packets_total",
            "help",
            Kind::Counter,
            &["action"],
            &[(vec!["pass".into()], 7.0), (vec!["drop".into()], 0.0)],
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
}
