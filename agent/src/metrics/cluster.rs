//! The cluster's families (`vipx_cluster_*`): the quorum as this node
//! counts it, each voter's reachability, and the claims the quorum held
//! back.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use super::Registrar;

/// The cluster's families, for the cluster tasks and the elections.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    quorum: IntGauge,
    seen: IntGauge,
    voters: IntGauge,
    voter_up: IntGaugeVec,
    claims: IntCounterVec,
}

impl ClusterMetrics {
    pub(super) fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        let this = Self {
            quorum: r.add(IntGauge::new(
                "vipx_cluster_quorum",
                "1 while this node sees a majority of the cluster's voters (members and witness; 1 without members: a lone node is its own majority); 0 without: it holds no VIP.",
            )?)?,
            seen: r.add(IntGauge::new(
                "vipx_cluster_voters_seen",
                "Voters this node counts (itself included; the witness only while its vote is this node's).",
            )?)?,
            voters: r.add(IntGauge::new(
                "vipx_cluster_voters",
                "Voters of the cluster (members and witness).",
            )?)?,
            voter_up: r.int_gauges(
                "vipx_cluster_voter_up",
                "1 while the voter was heard within the quorum timeout.",
                &["voter"],
            )?,
            claims: r.counters(
                "vipx_cluster_claims_total",
                "Claims of a group's VIPs checked against the cluster: allowed, waited (for a silent MASTER to fence itself first), deferred (to a live backup that outranks this node), refused (no quorum, or a MASTER still heard).",
                &["group", "outcome"],
            )?,
        };
        // Without `[cluster] members` a node is its own majority.
        this.set_quorum(true, 1, 1);
        Ok(this)
    }

    /// The quorum counted now.
    pub fn set_quorum(&self, held: bool, seen: usize, voters: usize) {
        self.quorum.set(i64::from(held));
        self.seen.set(i64::try_from(seen).unwrap_or(i64::MAX));
        self.voters.set(i64::try_from(voters).unwrap_or(i64::MAX));
    }

    pub fn set_voter_up(&self, voter: &str, up: bool) {
        self.voter_up.with_label_values(&[voter]).set(i64::from(up));
    }

    pub fn count_claim(&self, group: &str, outcome: &str) {
        self.claims.with_label_values(&[group, outcome]).inc();
    }
}
