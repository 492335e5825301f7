//! Flow replication's families (`vipx_sync_*`), handed to the replication
//! tasks as handles.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

use super::Registrar;

/// Buckets of the replication lag and of the ack time, in seconds: 25 us
/// to 2 s in steps of 1.5x to 2.5x, so that a sub-millisecond p50 and p99
/// each get a bucket of their own.
const LAG_BUCKETS: [f64; 24] = [
    0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001,
    0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
];

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
    /// Connections refused: TLS failed (no certificate, one the cluster's
    /// CA did not sign, not TLS at all).
    pub refused_tls: IntCounter,
    /// Batches sent and not yet acknowledged, over every peer link.
    pub unacked: IntGauge,
    /// From a change of the flow table to the peer's acknowledgement.
    pub lag: Histogram,
    /// Changes of this node's flow table that reached the ack level.
    pub acked_changes: IntCounter,
    /// Changes published and not yet at the ack level.
    pub unacked_changes: IntGauge,
    /// From a change (a new flow: its creation by XDP) to the ack level.
    pub ack_seconds: Histogram,
    ack_level: IntGaugeVec,
    queue_depth: IntGaugeVec,
}

impl SyncMetrics {
    pub(super) fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| r.add(IntCounter::new(name, help)?);
        let histogram = |name: &str, help: &str| {
            r.add(Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LAG_BUCKETS.to_vec()),
            )?)
        };
        let refused = r.add(IntCounterVec::new(
            Opts::new(
                "vipx_sync_refused_total",
                "Replication connections refused, by reason: secret (the other side could not prove the cluster secret), tls (its certificate was missing or not the cluster CA's, or it did not speak TLS).",
            ),
            &["reason"],
        )?)?;
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
                "Whole flow tables sent to a peer (it held nothing of this run, its queue overflowed, or ack = none after a reconnection).",
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
            refused: refused.with_label_values(&["secret"]),
            refused_tls: refused.with_label_values(&["tls"]),
            unacked: r.add(IntGauge::new(
                "vipx_sync_unacked_batches",
                "Batches sent to peers and not yet acknowledged, over every peer.",
            )?)?,
            lag: histogram(
                "vipx_sync_lag_seconds",
                "Replication lag: from a change of the flow table (a new flow: its creation by XDP) to a peer's acknowledgement that it is installed.",
            )?,
            acked_changes: counter(
                "vipx_sync_acked_changes_total",
                "Changes of this node's flow table that reached the ack level (once: one peer installed them; quorum: floor(N/2) peers of N nodes; none: not counted).",
            )?,
            unacked_changes: r.add(IntGauge::new(
                "vipx_sync_unacked_changes",
                "Changes of this node's flow table published to the peers and not yet at the ack level.",
            )?)?,
            ack_seconds: histogram(
                "vipx_sync_ack_seconds",
                "From a change of the flow table (a new flow: its creation by XDP) to the ack level reached.",
            )?,
            ack_level: r.int_gauges(
                "vipx_sync_ack_level",
                "The configured ack level ([sync] ack): 1 for it.",
                &["level"],
            )?,
            queue_depth: r.int_gauges(
                "vipx_sync_queue_depth",
                "Changes queued for a peer and not yet sent, by peer address.",
                &["peer"],
            )?,
        })
    }

    /// Says the configured ack level.
    pub fn set_ack_level(&self, level: &str) {
        self.ack_level.reset();
        self.ack_level.with_label_values(&[level]).set(1);
    }

    /// The queue depth of one peer's link.
    pub fn queue_depth(&self, peer: &str) -> IntGauge {
        self.queue_depth.with_label_values(&[peer])
    }
}
