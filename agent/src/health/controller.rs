//! From health verdicts to the data plane: effective weights, the Maglev
//! flip, what happens to the flows of a backend that goes down, and what a
//! service does when every backend is down.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
};

use tracing::{error, warn};

use super::{monitor::Report, state::Health};
use crate::{
    balancer::SharedTable,
    config::{AllDown, OnDown},
    dataplane::{BackendSpec, ServiceSpec},
    events::{DrainState, EventKind, EventLog, ServiceState},
    locks::lock,
};

/// A service's policies for down backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub on_down: OnDown,
    pub all_down: AllDown,
}

/// The backend set as health and operators shape it.
pub struct Controller {
    table: SharedTable,
    events: Arc<EventLog>,
    base: Vec<ServiceSpec>,
    policies: HashMap<String, Policy>,
    health: HashMap<(String, SocketAddr), Health>,
    drained: HashSet<SocketAddr>,
    all_down: HashSet<String>,
}

impl Controller {
    pub fn new(table: SharedTable, events: Arc<EventLog>) -> Self {
        Self {
            table,
            events,
            base: Vec::new(),
            policies: HashMap::new(),
            health: HashMap::new(),
            drained: HashSet::new(),
            all_down: HashSet::new(),
        }
    }

    /// The services as configured (weights before health), with their
    /// policies; applied at once.
    pub fn set_base(&mut self, base: Vec<ServiceSpec>, policies: HashMap<String, Policy>) {
        self.base = base;
        self.policies = policies;
        let wanted: HashSet<(String, SocketAddr)> = self
            .base
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(|b| (s.name.clone(), SocketAddr::new(b.addr, b.port)))
            })
            .collect();
        self.health.retain(|key, _| wanted.contains(key));
        self.apply();
    }

    /// The health the controller holds for a backend (up when never
    /// reported).
    pub fn health(&self, service: &str, backend: SocketAddr) -> Health {
        self.health
            .get(&(service.to_owned(), backend))
            .copied()
            .unwrap_or(Health::Up)
    }

    /// Whether the service's backends are checked (it has a health policy).
    pub fn checked(&self, service: &str) -> bool {
        self.policies.contains_key(service)
    }

    /// Whether an operator drained the backend.
    pub fn is_drained(&self, backend: SocketAddr) -> bool {
        self.drained.contains(&backend)
    }

    /// Services whose backends are all down.
    pub fn all_down(&self) -> &HashSet<String> {
        &self.all_down
    }

    /// Drains (or undrains) a backend in every service: existing flows stay,
    /// new flows go elsewhere. Returns whether any service has it.
    pub fn set_drain(&mut self, backend: SocketAddr, drain: bool) -> bool {
        let known = self.base.iter().any(|s| {
            s.backends
                .iter()
                .any(|b| SocketAddr::new(b.addr, b.port) == backend)
        });
        if !known {
            return false;
        }
        let changed = if drain {
            self.drained.insert(backend)
        } else {
            self.drained.remove(&backend)
        };
        if changed {
            let (from, to) = if drain {
                (DrainState::Active, DrainState::Drained)
            } else {
                (DrainState::Drained, DrainState::Active)
            };
            self.events.record(
                EventKind::Drain,
                &backend.to_string(),
                Some(from),
                to,
                "operator",
            );
            self.apply();
        }
        true
    }

    /// Takes one check result; a change of health reshapes the backend set.
    pub fn on_report(&mut self, report: &Report) {
        let key = (report.target.service.clone(), report.target.backend);
        let previous = self.health.insert(key, report.health);
        if previous.unwrap_or(Health::Up) == report.health {
            return;
        }
        let reason = match &report.verdict {
            super::checks::Verdict::Up => "check passed".to_owned(),
            super::checks::Verdict::Degraded { reason }
            | super::checks::Verdict::Down { reason } => reason.clone(),
        };
        self.events.record(
            EventKind::Health,
            &format!("{} {}", report.target.service, report.target.backend),
            Some(previous.unwrap_or(Health::Up)),
            report.health,
            &reason,
        );
        self.apply();
        let policy = self
            .policies
            .get(&report.target.service)
            .copied()
            .unwrap_or_default();
        if report.health == Health::Down && policy.on_down == OnDown::Reset {
            let table = lock(&self.table);
            if let Some(id) =
                table.backend_id(report.target.backend.ip(), report.target.backend.port())
            {
                let reset = table.maps().remove_flows_to(id);
                warn!(backend = %report.target.backend, reset, "on_down = reset: flows of a down backend forgotten");
            }
        }
    }

    /// The services with the weights health and drains leave them.
    pub fn effective(&mut self) -> Vec<ServiceSpec> {
        let mut out = Vec::with_capacity(self.base.len());
        for spec in &self.base {
            let policy = self.policies.get(&spec.name).copied().unwrap_or_default();
            let (effective, all_down) = shape(spec, &self.health, &self.drained, policy);
            if all_down {
                if self.all_down.insert(spec.name.clone()) {
                    error!(
                        service = %spec.name,
                        policy = ?policy.all_down,
                        "EVERY BACKEND OF THE SERVICE IS DOWN: {}",
                        match policy.all_down {
                            AllDown::Keep => "new connections still go to all of them",
                            AllDown::Refuse => "new connections are refused",
                        }
                    );
                    self.events.record(
                        EventKind::Service,
                        &spec.name,
                        Some(ServiceState::Serving),
                        ServiceState::AllDown,
                        "health checks",
                    );
                }
            } else if self.all_down.remove(&spec.name) {
                self.events.record(
                    EventKind::Service,
                    &spec.name,
                    Some(ServiceState::AllDown),
                    ServiceState::Serving,
                    "a backend is up",
                );
            }
            out.push(effective);
        }
        out
    }

    fn apply(&mut self) {
        let specs = self.effective();
        if let Err(err) = lock(&self.table).apply(&specs) {
            error!("applying the backend set: {err}");
        }
    }
}

/// One service with the weights health and drains leave it, and whether
/// every usable backend is down. Down backends get weight 0 (unless all are
/// down and the policy keeps them); degraded ones rest while an up one can
/// take the load; drained ones take no new flow.
pub fn shape(
    spec: &ServiceSpec,
    health: &HashMap<(String, SocketAddr), Health>,
    drained: &HashSet<SocketAddr>,
    policy: Policy,
) -> (ServiceSpec, bool) {
    let addr = |b: &BackendSpec| SocketAddr::new(b.addr, b.port);
    let health_of = |b: &BackendSpec| {
        health
            .get(&(spec.name.clone(), addr(b)))
            .copied()
            .unwrap_or(Health::Up)
    };
    let usable = |b: &BackendSpec| b.weight > 0 && !drained.contains(&addr(b));
    let any_up = spec
        .backends
        .iter()
        .any(|b| usable(b) && health_of(b) == Health::Up);
    let all_down = spec.backends.iter().any(&usable)
        && spec
            .backends
            .iter()
            .filter(|b| usable(b))
            .all(|b| health_of(b) == Health::Down);
    let mut effective = spec.clone();
    for backend in &mut effective.backends {
        let keep = usable(backend)
            && match health_of(backend) {
                Health::Up => true,
                Health::Degraded => !any_up,
                Health::Down => all_down && policy.all_down == AllDown::Keep,
            };
        if !keep {
            backend.weight = 0;
        }
    }
    (effective, all_down)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::config::{Mode, PortRange};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            name: "pgb".into(),
            vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            port: 5432,
            protocol: 6,
            mode: Mode::Nat,
            group: 0,
            maglev_size: 251,
            nat_ports: PortRange::default(),
            backends: (0..3)
                .map(|i| BackendSpec {
                    addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 31)),
                    port: 6432 + i,
                    weight: 1 + u32::from(i),
                })
                .collect(),
        }
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 31)), port)
    }

    fn weights(spec: &ServiceSpec) -> Vec<u32> {
        spec.backends.iter().map(|b| b.weight).collect()
    }

    fn with(states: &[(u16, Health)]) -> HashMap<(String, SocketAddr), Health> {
        states
            .iter()
            .map(|(p, h)| (("pgb".to_owned(), at(*p)), *h))
            .collect()
    }

    #[test]
    fn down_backends_leave_and_up_ones_keep_their_weight() {
        let (s, all) = shape(
            &spec(),
            &with(&[(6433, Health::Down)]),
            &HashSet::new(),
            Policy::default(),
        );
        assert_eq!(weights(&s), [1, 0, 3]);
        assert!(!all);
    }

    #[test]
    fn degraded_backends_rest_while_another_is_up() {
        let h = with(&[(6432, Health::Degraded), (6433, Health::Down)]);
        let (s, _) = shape(&spec(), &h, &HashSet::new(), Policy::default());
        assert_eq!(weights(&s), [0, 0, 3]);
        let h = with(&[
            (6432, Health::Degraded),
            (6433, Health::Down),
            (6434, Health::Down),
        ]);
        let (s, all) = shape(&spec(), &h, &HashSet::new(), Policy::default());
        assert_eq!(weights(&s), [1, 0, 0], "a degraded backend beats none");
        assert!(!all);
    }

    #[test]
    fn drained_backends_take_no_new_flows() {
        let drained: HashSet<SocketAddr> = [at(6434)].into();
        let (s, _) = shape(&spec(), &HashMap::new(), &drained, Policy::default());
        assert_eq!(weights(&s), [1, 2, 0]);
    }

    #[test]
    fn all_down_follows_the_policy() {
        let h = with(&[
            (6432, Health::Down),
            (6433, Health::Down),
            (6434, Health::Down),
        ]);
        let keep = Policy::default();
        let (s, all) = shape(&spec(), &h, &HashSet::new(), keep);
        assert!(all);
        assert_eq!(weights(&s), [1, 2, 3], "keep: every backend stays");
        let refuse = Policy {
            all_down: AllDown::Refuse,
            ..Policy::default()
        };
        let (s, all) = shape(&spec(), &h, &HashSet::new(), refuse);
        assert!(all);
        assert_eq!(weights(&s), [0, 0, 0], "refuse: new flows are dropped");
    }

    #[test]
    fn configured_weight_zero_stays_drained_whatever_its_health() {
        let mut base = spec();
        base.backends[0].weight = 0;
        let h = with(&[(6433, Health::Down), (6434, Health::Down)]);
        let (s, all) = shape(&base, &h, &HashSet::new(), Policy::default());
        assert!(all, "the drained one does not count");
        assert_eq!(weights(&s), [0, 2, 3]);
    }
}
