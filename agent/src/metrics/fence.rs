//! Fencing's families: the fence command's runs by peer and result, and
//! how long the last one took.

use std::time::Duration;

use prometheus::{GaugeVec, IntCounterVec};

use super::Registrar;

/// The results a fence run is counted under.
pub const FENCE_RESULTS: [&str; 3] = ["fenced", "failed", "skipped"];

/// Fencing's families.
pub(super) struct FenceFamilies {
    runs: IntCounterVec,
    last_seconds: GaugeVec,
    last_success: prometheus::IntGaugeVec,
}

impl FenceFamilies {
    pub(super) fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
        Ok(Self {
            runs: r.counters(
                "vipx_fence_runs_total",
                "Runs of the fence command against a peer declared dead, by peer and result: fenced (it exited 0, retries included), failed (every attempt failed or timed out), skipped (HA debug mode: logged, not run).",
                &["node", "result"],
            )?,
            last_seconds: r.gauges(
                "vipx_fence_last_duration_seconds",
                "How long the last fence run against the peer took, its attempts and back-offs included.",
                &["node"],
            )?,
            last_success: r.int_gauges(
                "vipx_fence_last_success",
                "1 if the last fence run against the peer fenced it, 0 if it failed (a skipped run leaves it).",
                &["node"],
            )?,
        })
    }
}

impl super::Metrics {
    /// Makes the fence series of a peer exist (at 0) before any run, so
    /// that `/metrics` shows the families and alerts see a change from 0.
    pub fn declare_fence_peer(&self, node: &str) {
        for result in FENCE_RESULTS {
            self.fence.runs.with_label_values(&[node, result]);
        }
    }

    /// Records a fence run against `node`: its result (one of
    /// [`FENCE_RESULTS`]) and how long it took.
    pub fn count_fence(&self, node: &str, result: &str, took: Duration) {
        self.declare_fence_peer(node);
        let f = &self.fence;
        f.runs.with_label_values(&[node, result]).inc();
        if result == "skipped" {
            return;
        }
        f.last_seconds
            .with_label_values(&[node])
            .set(took.as_secs_f64());
        f.last_success
            .with_label_values(&[node])
            .set(i64::from(result == "fenced"));
    }
}
