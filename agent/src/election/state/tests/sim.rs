//! Several instances on a simulated LAN: adverts go through [`build`] and
//! [`parse`] and arrive after a fixed latency. Event-driven and
//! deterministic: no clock, no threads.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use crate::election::packet::{VRRP_MULTICAST_V4, VRRP_TTL, build, parse};

const LATENCY: Duration = Duration::from_millis(1);
const MCAST: IpAddr = IpAddr::V4(VRRP_MULTICAST_V4);

/// A packet in flight.
struct InFlight {
    at: Time,
    from: usize,
    bytes: Vec<u8>,
}

struct Node {
    addr: IpAddr,
    instance: Instance,
    up: bool,
}

/// The LAN: nodes, packets in flight, and every transition seen.
struct Sim {
    now: Time,
    nodes: Vec<Node>,
    wire: Vec<InFlight>,
    /// `(time, node, action)` for every transition (adverts left out).
    log: Vec<(Time, usize, Action)>,
}

impl Sim {
    /// Nodes 10.0.0.1, .2, ... with these priorities and `interval`.
    fn new(priorities: &[u8], interval: Duration) -> Self {
        let nodes = priorities
            .iter()
            .zip(1..)
            .map(|(&priority, last)| {
                let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, last));
                let config = InstanceConfig {
                    vrid: 51,
                    priority,
                    advert_interval: interval,
                    preempt: true,
                    preempt_delay: Duration::ZERO,
                    primary_addr: addr,
                    accept_mode: false,
                };
                let instance = Instance::new(config).expect("valid sim config");
                Node {
                    addr,
                    instance,
                    up: false,
                }
            })
            .collect();
        Self {
            now: Time::ZERO,
            nodes,
            wire: Vec::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, node: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert { priority } => {
                    let n = &self.nodes[node];
                    let advert = n.instance.advert(priority, vec![ip_vip()]);
                    let bytes = build(n.addr, MCAST, &advert);
                    self.wire.push(InFlight {
                        at: self.now + LATENCY,
                        from: node,
                        bytes,
                    });
                }
                transition => self.log.push((self.now, node, transition)),
            }
        }
    }

    fn startup(&mut self, node: usize) {
        self.nodes[node].up = true;
        let actions = self.nodes[node].instance.startup(self.now);
        self.apply(node, actions);
    }

    fn shutdown(&mut self, node: usize) {
        let actions = self.nodes[node].instance.shutdown(self.now);
        self.apply(node, actions);
        self.nodes[node].up = false;
    }

    /// Runs every event up to and including `end`, checking `invariant`
    /// after each instant.
    fn run_until(&mut self, end: Time, mut invariant: impl FnMut(&Self)) {
        loop {
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.up)
                .filter_map(|n| n.instance.next_deadline())
                .min();
            let next_packet = self.wire.iter().map(|p| p.at).min();
            let Some(next) = next_timer.into_iter().chain(next_packet).min() else {
                break;
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let (due, later): (Vec<_>, Vec<_>) =
                self.wire.drain(..).partition(|p| p.at <= self.now);
            self.wire = later;
            for packet in due {
                for to in 0..self.nodes.len() {
                    if to == packet.from || !self.nodes[to].up {
                        continue;
                    }
                    let src = self.nodes[packet.from].addr;
                    let advert = parse(src, MCAST, VRRP_TTL, &packet.bytes)
                        .expect("adverts on the sim wire parse");
                    let actions = self.nodes[to]
                        .instance
                        .advert_received(self.now, src, &advert);
                    self.apply(to, actions);
                }
            }
            for node in 0..self.nodes.len() {
                if self.nodes[node].up {
                    let actions = self.nodes[node].instance.timer(self.now);
                    self.apply(node, actions);
                }
            }
            invariant(self);
        }
        self.now = end;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].instance.state() == State::Master)
            .collect()
    }

    fn transitions_since(&self, since: Time) -> Vec<(Time, usize, Action)> {
        self.log
            .iter()
            .copied()
            .filter(|(t, _, _)| *t >= since)
            .collect()
    }
}

fn ip_vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))
}

fn one_master_is(expected: usize) -> impl FnMut(&Sim) {
    move |sim: &Sim| {
        assert_eq!(
            sim.masters(),
            [expected],
            "exactly one master at {:?}",
            sim.now
        );
    }
}

#[test]
fn three_priorities_converge_fail_over_and_preempt_back() {
    let mut sim = Sim::new(&[100, 150, 200], ms(1000));
    for node in 0..3 {
        sim.startup(node);
        sim.run_until(sim.now + ms(3), |_| {});
    }
    // The highest priority has the shortest Master_Down_Interval (3.21 s).
    sim.run_until(ms(3300), |_| {});
    assert_eq!(sim.masters(), [2], "priority 200 elected");
    let converged = sim.now;
    sim.run_until(converged + ms(10_000), one_master_is(2));
    assert!(
        sim.transitions_since(converged).is_empty(),
        "stable for 10 s"
    );

    // The master stops: priority 0, and priority 150 takes over after its
    // Skew_Time ((256 - 150) * 100 / 256 = 41 cs) plus the wire latency.
    let stop = sim.now;
    sim.shutdown(2);
    let skew = sim.nodes[1].instance.skew_time();
    assert_eq!(skew, ms(410), "skew of priority 150");
    sim.run_until(stop + skew + 2 * LATENCY, |_| {});
    let takeovers: Vec<_> = sim
        .transitions_since(stop)
        .into_iter()
        .filter(|(_, _, a)| matches!(a, Action::BecomeMaster { .. }))
        .collect();
    assert_eq!(takeovers.len(), 1, "exactly one takeover: {takeovers:?}");
    let (at, node, action) = takeovers[0];
    assert_eq!(node, 1, "priority 150 took over");
    assert_eq!(
        at,
        stop + LATENCY + skew,
        "after Skew_Time from the priority 0 advert"
    );
    assert!(
        matches!(
            action,
            Action::BecomeMaster {
                reason: Reason::PriorityZeroReceived { .. }
            }
        ),
        "reason: {action}"
    );
    let after = sim.now;
    sim.run_until(after + ms(10_000), one_master_is(1));
    assert!(
        sim.transitions_since(after).is_empty(),
        "stable for 10 s after the failover"
    );

    // The preferred node comes back and preempts after its Master_Down_Interval.
    let back = sim.now;
    sim.startup(2);
    sim.run_until(back + ms(3210) + 2 * LATENCY, |_| {});
    assert_eq!(sim.masters(), [2], "priority 200 preempted");
    let log = sim.transitions_since(back);
    assert!(
        log.contains(&(
            back + ms(3210),
            2,
            Action::BecomeMaster {
                reason: Reason::Preempt {
                    src: sim.nodes[1].addr,
                    priority: 150
                }
            }
        )),
        "preempt at startup + Master_Down_Interval: {log:?}"
    );
    assert!(
        log.iter()
            .any(|(_, n, a)| *n == 1 && matches!(a, Action::BecomeBackup { .. })),
        "the old master stepped down: {log:?}"
    );
    sim.run_until(sim.now + ms(10_000), one_master_is(2));
}

#[test]
fn equal_priorities_started_together_elect_the_highest_address() {
    let mut sim = Sim::new(&[100, 100, 100], ms(1000));
    for node in 0..3 {
        sim.startup(node);
    }
    // All three time out together at 3.6 s, become master, and the adverts
    // they exchange leave the highest primary address.
    sim.run_until(ms(3600) + 2 * LATENCY, |_| {});
    assert_eq!(sim.masters(), [2], "10.0.0.3 wins the tie");
    let backups: Vec<_> = sim
        .log
        .iter()
        .filter(|(_, _, a)| {
            matches!(
                a,
                Action::BecomeBackup {
                    reason: Reason::HigherAddress { .. }
                }
            )
        })
        .map(|(_, n, _)| *n)
        .collect();
    assert_eq!(backups, [0, 1], "the two lower addresses stepped down");
    let converged = sim.now;
    sim.run_until(converged + ms(10_000), one_master_is(2));
    assert!(
        sim.transitions_since(converged).is_empty(),
        "stable for 10 s"
    );
}

/// At the 10 ms floor every `Skew_Time` truncates to 0 cs, so after the
/// master stops both backups take over at the same instant; the adverts
/// they exchange settle it one latency later in favour of the higher
/// priority.
#[test]
fn at_ten_milliseconds_skew_truncates_to_zero_and_the_tie_settles_at_once() {
    let mut sim = Sim::new(&[100, 150, 200], ms(10));
    for node in 0..3 {
        sim.startup(node);
    }
    sim.run_until(ms(100), |_| {});
    sim.run_until(ms(10_100), one_master_is(2));
    let stop = sim.now;
    sim.shutdown(2);
    sim.run_until(stop + LATENCY, |_| {});
    assert_eq!(
        sim.masters(),
        [0, 1],
        "both backups take over after a zero skew"
    );
    sim.run_until(stop + 3 * LATENCY, |_| {});
    assert_eq!(sim.masters(), [1], "the higher priority keeps it");
    sim.run_until(stop + ms(10_000), one_master_is(1));
}
