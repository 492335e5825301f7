//! Health check families, by service and backend: the current health, the
//! checks' duration, their failures and the transitions.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec};

use super::{Keep, Registrar, Retain};

/// Buckets of the health checks' duration, in seconds.
const CHECK_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// One health check's result, as the metrics see it.
#[derive(Clone, Copy, Debug)]
pub struct CheckResult<'a> {
    pub service: &'a str,
    pub backend: &'a str,
    pub took: Duration,
    /// The check itself failed (whatever the health after it).
    pub failed: bool,
    /// The backend's health after the check, among `states`.
    pub state: &'a str,
    /// Every health state: one series each, 1 for the current one.
    pub states: &'a [&'a str],
    /// The check changed the backend's health.
    pub changed: bool,
}

/// Health check families.
pub(super) struct HealthFamilies {
    backend_state: IntGaugeVec,
    check_seconds: HistogramVec,
    failures: IntCounterVec,
    transitions: IntCounterVec,
}

impl HealthFamilies {
    pub(super) fn new(r: &Registrar<'_>) -> prometheus::Result<Self> {
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
            failures: r.counters(
                "vipx_health_check_failures_total",
                "Health checks that failed (the backend counts as down for them; rise/fall decide its health).",
                &["service", "backend"],
            )?,
            transitions: r.counters(
                "vipx_health_transitions_total",
                "Health transitions of backends, by the state entered (to: up, degraded, down).",
                &["service", "backend", "to"],
            )?,
        })
    }

    /// Removes the series of backends no longer configured.
    pub(super) fn retain(&self, keep: &Keep) {
        let by_backend: [&dyn Retain; 4] = [
            &self.backend_state,
            &self.check_seconds,
            &self.failures,
            &self.transitions,
        ];
        for family in by_backend {
            family.retain(keep);
        }
    }
}

impl super::Metrics {
    /// Records one health check.
    pub fn observe_check(&self, check: &CheckResult<'_>) {
        let h = &self.health;
        h.check_seconds
            .with_label_values(&[check.service, check.backend])
            .observe(check.took.as_secs_f64());
        if check.failed {
            h.failures
                .with_label_values(&[check.service, check.backend])
                .inc();
        }
        self.set_health(check.service, check.backend, check.state, check.states);
        if check.changed {
            h.transitions
                .with_label_values(&[check.service, check.backend, check.state])
                .inc();
        }
    }

    /// Makes a checked backend's series exist before its first check: its
    /// health `state` (among `states`), no failure, no transition.
    pub fn init_backend(&self, service: &str, backend: &str, state: &str, states: &[&str]) {
        let h = &self.health;
        h.failures.with_label_values(&[service, backend]);
        for to in states {
            h.transitions.with_label_values(&[service, backend, to]);
        }
        self.set_health(service, backend, state, states);
    }

    fn set_health(&self, service: &str, backend: &str, state: &str, states: &[&str]) {
        for s in states {
            self.health
                .backend_state
                .with_label_values(&[service, backend, s])
                .set(i64::from(*s == state));
        }
    }
}
