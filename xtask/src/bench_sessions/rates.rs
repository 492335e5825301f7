//! The replication lag at a steady rate of new flows: on a 2-node cluster
//! with `[sync]`, the client opens new flows through the VIP
//! ([`super::flows`]) and the master's histogram is read before and
//! after. The rate achieved is what the master's XDP counted
//! (`flow_new`), so a rate the machine could not reach shows as such.

use std::{fmt::Write as _, net::SocketAddr, path::Path, time::Duration};

use vipx_lab::{Cluster, VIP_PORT, http::metric_value};

use super::{
    flows,
    lag::{Histogram, LAG},
    vipx_options,
};

/// How long each rate is held.
const LENGTH: Duration = Duration::from_secs(6);
/// After the last flow, for the last acknowledgements.
const SETTLE: Duration = Duration::from_secs(1);

const FLOW_NEW: &str = "vipx_xdp_decisions_total{reason=\"flow_new\"}";
const INSTALLED: &str = "vipx_sync_flows_installed_total";
const BULKS: &str = "vipx_sync_bulk_transfers_total";

/// The table's heading.
pub fn heading() -> String {
    format!(
        "Replication lag at a rate of new flows, 2 nodes with [sync]: the client opens new flows \
         through the VIP for {} s (a SYN from a fresh port each, closed at once; the backend's \
         SYN-ACK is answered with a RST, which ends the flow); the lag is the master's \
         vipx_sync_lag_seconds, one sample per batch acknowledged by the peer, quantiles as the \
         upper bounds of their buckets\n\n\
         | rate asked (flows/s) | new flows/s on the master (XDP flow_new) | installed/s on the peer \
         | samples (batches) | p50 | p99 | max | notes |\n|---:|---:|---:|---:|---|---|---|---|",
        LENGTH.as_secs()
    )
}

/// Brings a cluster up and measures each rate on it; one row each (a
/// failure is a row saying so).
pub fn rows(agent: &Path, rates: &[u32]) -> Vec<String> {
    let cluster = match Cluster::up(&vipx_options(agent, true)) {
        Ok(cluster) => cluster,
        Err(e) => {
            return rates
                .iter()
                .map(|rate| format!("| {rate} | - | - | - | - | - | - | not run: {e:#} |"))
                .collect();
        }
    };
    rates
        .iter()
        .map(|&rate| {
            eprintln!("lag: {rate} new flows/s");
            let row = one(&cluster, rate)
                .unwrap_or_else(|e| format!("| {rate} | - | - | - | - | - | - | {e:#} |"));
            eprintln!("  {row}");
            row
        })
        .collect()
}

/// One rate.
fn one(cluster: &Cluster, rate: u32) -> anyhow::Result<String> {
    let (master0, peer0) = (cluster.metrics(0)?, cluster.metrics(1)?);
    let target = SocketAddr::from((cluster.vip(), VIP_PORT));
    let sent = flows::open(&cluster.client, target, rate, LENGTH)?;
    std::thread::sleep(SETTLE);
    let (master1, peer1) = (cluster.metrics(0)?, cluster.metrics(1)?);
    let delta = |before: &str, after: &str, series: &str| {
        Some(metric_value(after, series)? - metric_value(before, series).unwrap_or(0.0))
    };
    let per_second = |n: Option<f64>| {
        n.map_or("-".to_owned(), |n| {
            format!("{:.0}", n / sent.took.as_secs_f64())
        })
    };
    let lag = Histogram::parse(&master1, LAG)
        .map(|h| h.since(Histogram::parse(&master0, LAG).as_ref()))
        .ok_or_else(|| anyhow::anyhow!("no {LAG} on the master's /metrics"))?;
    let [p50, p99, max] = lag.summary();
    let mut notes = format!(
        "{} SYNs sent in {:.1} s",
        sent.syns,
        sent.took.as_secs_f64()
    );
    if sent.errors > 0 {
        let _ = write!(notes, ", {} connects failed", sent.errors);
    }
    if let Some(bulks) = delta(&master0, &master1, BULKS).filter(|b| *b > 0.0) {
        let _ = write!(notes, ", {bulks:.0} whole-table transfers (events lost)");
    }
    Ok(format!(
        "| {rate} | {} | {} | {} | {p50} | {p99} | {max} | {notes} |",
        per_second(delta(&master0, &master1, FLOW_NEW)),
        per_second(delta(&peer0, &peer1, INSTALLED)),
        lag.count(),
    ))
}
