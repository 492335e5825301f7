//! The XDP counter maps as Prometheus families, read at scrape time (so a
//! scrape always sees the kernel's current figures, summed over CPUs).

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};
use tracing::warn;
use vipx_common::Counter;

use super::{counters::CounterMaps, lease::GroupStates};
use crate::metrics::family::{Kind, descs, family};

/// `(name, help, labels)` of the families, in `collect` order.
pub const FAMILIES: [(&str, &str, &[&str]); 5] = [
    (
        "vipx_xdp_packets_total",
        "Packets seen by the XDP program, by the action it returned.",
        &["action"],
    ),
    (
        "vipx_xdp_bytes_total",
        "Bytes seen by the XDP program, by the action it returned.",
        &["action"],
    ),
    (
        "vipx_xdp_decisions_total",
        "Decisions of the XDP program (one per packet), by reason; the same packets as vipx_xdp_packets_total, counted another way.",
        &["reason"],
    ),
    (
        "vipx_xdp_decision_bytes_total",
        "Bytes of the packets of the XDP program's decisions, by reason.",
        &["reason"],
    ),
    (
        "vipx_xdp_peer_events_lost_total",
        "Peer events (new source, priority or state change) the XDP program's ring buffer had no room for; the records still hold them, the heartbeat thread only woke later.",
        &[],
    ),
];

/// Reads the XDP counter maps at scrape time.
pub struct XdpCollector {
    counters: CounterMaps,
    descs: Vec<Desc>,
}

impl XdpCollector {
    pub fn new(counters: CounterMaps) -> prometheus::Result<Self> {
        Ok(Self {
            counters,
            descs: descs(&FAMILIES)?,
        })
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
        let rows = [
            rows(&actions, |c| c.packets),
            rows(&actions, |c| c.bytes),
            rows(&reasons, |c| c.packets),
            rows(&reasons, |c| c.bytes),
            vec![(Vec::new(), snapshot.events_lost.packets as f64)],
        ];
        FAMILIES
            .iter()
            .zip(rows)
            .map(|((name, help, labels), rows)| family(name, help, Kind::Counter, labels, &rows))
            .collect()
    }
}

/// One row per named slot.
fn rows(named: &[(&'static str, Counter)], get: fn(&Counter) -> u64) -> Vec<(Vec<String>, f64)> {
    named
        .iter()
        .map(|(name, c)| (vec![(*name).to_owned()], get(c) as f64))
        .collect()
}

/// `(name, help, labels)` of the lease families.
pub const LEASE_FAMILIES: [(&str, &str, &[&str]); 2] = [
    (
        "vipx_lease_refresh_age_seconds",
        "Time since the lease refresher last pushed the data plane's lease forward; past vipx_lease_duration_seconds a MASTER's XDP stops serving its VIPs.",
        &[],
    ),
    (
        "vipx_lease_duration_seconds",
        "How long one refresh keeps the data plane serving ([dataplane] lease_timeout).",
        &[],
    ),
];

/// Reads the lease refresher's progress at scrape time.
pub struct LeaseCollector {
    groups: std::sync::Arc<GroupStates>,
    descs: Vec<Desc>,
}

impl LeaseCollector {
    pub fn new(groups: std::sync::Arc<GroupStates>) -> prometheus::Result<Self> {
        Ok(Self {
            groups,
            descs: descs(&LEASE_FAMILIES)?,
        })
    }
}

impl Collector for LeaseCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let [(age, age_help, _), (lease, lease_help, _)] = LEASE_FAMILIES;
        let mut out = Vec::new();
        if let Some(since) = self.groups.since_refresh() {
            out.push(family(
                age,
                age_help,
                Kind::Gauge,
                &[],
                &[(Vec::new(), since.as_secs_f64())],
            ));
        }
        out.push(family(
            lease,
            lease_help,
            Kind::Gauge,
            &[],
            &[(Vec::new(), self.groups.lease().as_secs_f64())],
        ));
        out
    }
}
