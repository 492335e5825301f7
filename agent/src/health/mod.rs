//! Health checks: checkers that understand PostgreSQL and PgBouncer, one
//! task per backend with rise/fall hysteresis, and a controller that turns
//! verdicts into the data plane's backend set.

pub mod checks;
pub mod controller;
pub mod monitor;
pub mod state;
pub mod track;

use crate::locks::lock;
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

pub use controller::{Controller, Policy};
pub use monitor::{Prober, Report, Schedule, Target};
pub use state::{Health, Hysteresis};

use crate::{
    balancer::SharedTable,
    config::Config,
    dataplane::ServiceSpec,
    events::EventLog,
    metrics::{CheckResult, Keep, Metrics},
};

/// Reports in flight between the checks and the controller.
const REPORT_QUEUE: usize = 1024;

/// The running health checks of every service that has a `[service.health]`.
pub struct HealthRunner {
    controller: Arc<Mutex<Controller>>,
    monitors: Vec<JoinHandle<()>>,
    reports: mpsc::Sender<Report>,
    receiver: JoinHandle<()>,
    /// Backends not checked even once yet; `ready` turns true when empty.
    unchecked: Arc<Mutex<HashSet<Target>>>,
    ready: watch::Receiver<bool>,
    ready_tx: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    /// The backends checked now: a report still queued for one a reload
    /// removed does not bring its series back.
    targets: Arc<Mutex<HashSet<Target>>>,
}

/// Exports one check's result.
fn observe(metrics: &Metrics, report: &Report) {
    let backend = report.target.backend.to_string();
    metrics.observe_check(&CheckResult {
        service: &report.target.service,
        backend: &backend,
        took: report.took,
        failed: matches!(report.verdict, checks::Verdict::Down { .. }),
        state: report.health.name(),
        states: &Health::ALL.map(Health::name),
        changed: report.changed_from.is_some(),
    });
}

impl HealthRunner {
    /// Applies `specs` (the configured services) and starts their checks.
    pub fn start(
        config: &Config,
        specs: Vec<ServiceSpec>,
        table: SharedTable,
        events: Arc<EventLog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let controller = Arc::new(Mutex::new(Controller::new(table, events)));
        let (reports, mut rx) = mpsc::channel::<Report>(REPORT_QUEUE);
        let unchecked: Arc<Mutex<HashSet<Target>>> = Arc::default();
        let targets: Arc<Mutex<HashSet<Target>>> = Arc::default();
        let (ready_tx, ready) = watch::channel(false);
        let receiver = {
            let metrics = Arc::clone(&metrics);
            let targets = Arc::clone(&targets);
            let controller = Arc::clone(&controller);
            let unchecked = Arc::clone(&unchecked);
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                while let Some(report) = rx.recv().await {
                    {
                        let mut unchecked = lock(&unchecked);
                        if unchecked.remove(&report.target) && unchecked.is_empty() {
                            let _ = ready_tx.send(true);
                        }
                    }
                    if lock(&targets).contains(&report.target) {
                        observe(&metrics, &report);
                    }
                    // A change of health rewrites Maglev tables (tens of
                    // thousands of map writes under the table's lock): off
                    // the async workers, so that the elections' adverts and
                    // timers are not held up behind it.
                    let controller = Arc::clone(&controller);
                    let metrics = Arc::clone(&metrics);
                    let applied = tokio::task::spawn_blocking(move || {
                        let mut controller = lock(&controller);
                        controller.on_report(&report);
                        metrics.set_all_down(controller.all_down());
                    })
                    .await;
                    if let Err(err) = applied {
                        tracing::error!("applying a health report: {err}");
                    }
                }
            })
        };
        let mut runner = Self {
            controller,
            monitors: Vec::new(),
            reports,
            receiver,
            unchecked,
            ready,
            ready_tx,
            metrics,
            targets,
        };
        runner.reload(config, specs);
        runner
    }

    /// A new configuration: the base backend set is applied, checks are
    /// restarted from the health the controller already knows.
    pub fn reload(&mut self, config: &Config, specs: Vec<ServiceSpec>) {
        for monitor in self.monitors.drain(..) {
            monitor.abort();
        }
        lock(&self.targets).clear();
        self.metrics.retain(&keep(&specs));
        let mut policies = HashMap::new();
        for service in &config.services {
            let service = service.get_ref();
            let Some(health) = &service.health else {
                continue;
            };
            policies.insert(
                service.name.clone(),
                Policy {
                    on_down: health.on_down,
                    all_down: health.all_down,
                },
            );
            let schedule = Schedule {
                interval: health.interval,
                timeout: health.timeout,
                jitter: health.jitter,
                rise: health.rise,
                fall: health.fall,
            };
            let prober: Arc<dyn Prober> = Arc::new(checks::Check::from_config(health));
            for backend in &service.backends {
                let addr = SocketAddr::new(backend.address, service.backend_port(backend));
                let target = Target {
                    service: service.name.clone(),
                    backend: addr,
                    check_addr: SocketAddr::new(
                        backend.address,
                        health.port.unwrap_or(addr.port()),
                    ),
                };
                let initial = lock(&self.controller).health(&service.name, addr);
                self.metrics.init_backend(
                    &service.name,
                    &addr.to_string(),
                    initial.name(),
                    &Health::ALL.map(Health::name),
                );
                lock(&self.targets).insert(target.clone());
                if !*self.ready.borrow() {
                    lock(&self.unchecked).insert(target.clone());
                }
                self.monitors.push(tokio::spawn(monitor::run(
                    target,
                    Arc::clone(&prober),
                    schedule,
                    initial,
                    self.reports.clone(),
                )));
            }
        }
        lock(&self.controller).set_base(specs, policies);
        if lock(&self.unchecked).is_empty() {
            let _ = self.ready_tx.send(true);
        }
    }

    /// A future that ends once every backend has been checked once (the
    /// backend view is current). A node claims its VIPs only after this (or
    /// a time limit), so a failback does not send clients to a backend it
    /// has not looked at yet.
    pub fn ready_waiter(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut ready = self.ready.clone();
        async move {
            let _ = ready.wait_for(|ready| *ready).await;
        }
    }

    /// Whether every backend of a service is down, for `track_service`.
    pub fn service_down(&self) -> track::ServiceDown {
        let controller = Arc::clone(&self.controller);
        Arc::new(move |service: &str| lock(&controller).all_down().contains(service))
    }

    /// Drains or undrains a backend; false if no service has it.
    pub fn drain(&self, backend: SocketAddr, drain: bool) -> bool {
        lock(&self.controller).set_drain(backend, drain)
    }

    /// A backend's health (`None`: not checked) and whether it is drained.
    pub fn backend_view(&self, service: &str, backend: SocketAddr) -> (Option<Health>, bool) {
        let controller = lock(&self.controller);
        (
            controller
                .checked(service)
                .then(|| controller.health(service, backend)),
            controller.is_drained(backend),
        )
    }
}

/// The services and backends of `specs`, whose series the metrics keep.
fn keep(specs: &[ServiceSpec]) -> Keep {
    Keep {
        services: specs.iter().map(|s| s.name.clone()).collect(),
        backends: specs
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(|b| (s.name.clone(), SocketAddr::new(b.addr, b.port).to_string()))
            })
            .collect(),
    }
}

impl Drop for HealthRunner {
    fn drop(&mut self) {
        for monitor in self.monitors.drain(..) {
            monitor.abort();
        }
        self.receiver.abort();
    }
}
