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

    /// State changes since `since` (a master announcing its VIPs again is
    /// not one).
    fn transitions_since(&self, since: Time) -> Vec<(Time, usize, Action)> {
        self.log
            .iter()
            .copied()
            .filter(|(t, _, a)| *t >= since && *a != Action::Announce)
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
    // The highest priority has the shortest Master_Down_Interval:
    // 3 s + 56 * 1 000 000 / 256 us = 3.21875 s, against 3.414062 s for 150
    // and 3.609375 s for 100.
    let down_200 = us(3_000_000 + 218_750);
    assert_eq!(
        sim.nodes[2].instance.master_down_interval(),
        down_200,
        "Master_Down_Interval of priority 200"
    );
    sim.run_until(ms(3300), |_| {});
    assert_eq!(sim.masters(), [2], "priority 200 elected");
    let converged = sim.now;
    sim.run_until(converged + ms(10_000), one_master_is(2));
    assert!(
        sim.transitions_since(converged).is_empty(),
        "stable for 10 s"
    );

    // The master stops: priority 0, and priority 150 takes over after its
    // Skew_Time ((256 - 150) * 1 000 000 / 256 = 414 062.5 -> 414 062 us)
    // plus the wire latency.
    let stop = sim.now;
    sim.shutdown(2);
    let skew = sim.nodes[1].instance.skew_time();
    assert_eq!(skew, us(414_062), "skew of priority 150");
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
    sim.run_until(back + down_200 + 2 * LATENCY, |_| {});
    assert_eq!(sim.masters(), [2], "priority 200 preempted");
    let log = sim.transitions_since(back);
    assert!(
        log.contains(&(
            back + down_200,
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
    // All three time out together at 3 s + 156 * 1 000 000 / 256 us, become
    // master, and the adverts they exchange leave the highest primary address.
    sim.run_until(us(3_000_000 + 609_375) + 2 * LATENCY, |_| {});
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

/// Starts nodes of `priorities` with 10 ms adverts, lets the last (the
/// highest priority) win and hold for 10 s, then shuts it down. Returns the
/// sim and the instant of the shutdown.
fn stop_the_master_at_ten_milliseconds(priorities: &[u8]) -> (Sim, Time) {
    let mut sim = Sim::new(priorities, ms(10));
    let master = priorities.len() - 1;
    for node in 0..priorities.len() {
        sim.startup(node);
    }
    sim.run_until(ms(100), |_| {});
    sim.run_until(ms(10_100), one_master_is(master));
    let stop = sim.now;
    sim.shutdown(master);
    (sim, stop)
}

fn takeovers_since(sim: &Sim, since: Time) -> Vec<(Time, usize)> {
    sim.transitions_since(since)
        .into_iter()
        .filter(|(_, _, a)| matches!(a, Action::BecomeMaster { .. }))
        .map(|(t, n, _)| (t, n))
        .collect()
}

/// At the 10 ms floor `Skew_Time` in microseconds still orders the backups:
/// the higher priority times out first, at startup and after the master
/// stops, and its advert reaches the lower one before that one's skew runs
/// out, so the lower backup never claims.
#[test]
fn at_ten_milliseconds_skew_orders_backups_by_priority() {
    let (mut sim, stop) = stop_the_master_at_ten_milliseconds(&[100, 150, 200]);
    // Master_Down_Interval = 30 ms + (256 - priority) * 10 000 / 256 us.
    let down = |n: usize| sim.nodes[n].instance.master_down_interval();
    assert_eq!(
        [down(0), down(1), down(2)],
        [us(30_000 + 6_093), us(30_000 + 4_140), us(30_000 + 2_187)],
        "156, 106 and 56 * 10 000 / 256 us, truncated"
    );
    assert_eq!(
        takeovers_since(&sim, Time::ZERO),
        [(us(32_187), 2)],
        "only priority 200 took over at startup, after its shorter interval"
    );

    let skew_150 = sim.nodes[1].instance.skew_time();
    let skew_100 = sim.nodes[0].instance.skew_time();
    assert_eq!(
        (skew_150, skew_100),
        (us(4_140), us(6_093)),
        "106 * 10 000 / 256 = 4 140.625 and 156 * 10 000 / 256 = 6 093.75 us, truncated"
    );
    assert!(
        skew_150 + LATENCY < skew_100,
        "priority 150's advert arrives before priority 100's skew runs out"
    );
    sim.run_until(stop + ms(10_000), |sim: &Sim| {
        assert!(
            sim.masters().iter().all(|&n| n == 1),
            "only priority 150 may be master at {:?}: {:?}",
            sim.now,
            sim.masters()
        );
    });
    assert_eq!(
        takeovers_since(&sim, stop),
        [(stop + LATENCY + skew_150, 1)],
        "priority 150 took over after its Skew_Time, priority 100 never"
    );
    assert_eq!(sim.masters(), [1], "priority 150 holds it");
}

/// Equal priorities have equal skews even in microseconds: after the master
/// stops both backups take over at the same instant, and the adverts they
/// exchange settle it one latency later in favour of the higher address.
#[test]
fn at_ten_milliseconds_equal_priority_backups_tie_and_settle_by_address() {
    let (mut sim, stop) = stop_the_master_at_ten_milliseconds(&[150, 150, 200]);
    let skew = sim.nodes[0].instance.skew_time();
    assert_eq!(
        (skew, sim.nodes[1].instance.skew_time()),
        (us(4_140), us(4_140)),
        "both (256 - 150) * 10 000 / 256 = 4 140.625 -> 4 140 us"
    );
    let tie = stop + LATENCY + skew;
    sim.run_until(tie, |_| {});
    assert_eq!(sim.masters(), [0, 1], "both backups take over together");
    assert_eq!(
        takeovers_since(&sim, stop),
        [(tie, 0), (tie, 1)],
        "after the same Skew_Time"
    );
    sim.run_until(tie + LATENCY, |_| {});
    assert_eq!(sim.masters(), [1], "the higher address keeps it");
    assert!(
        sim.transitions_since(tie).contains(&(
            tie + LATENCY,
            0,
            Action::BecomeBackup {
                reason: Reason::HigherAddress {
                    src: sim.nodes[1].addr,
                    priority: 150
                }
            }
        )),
        "10.0.0.1 yields to 10.0.0.2: {:?}",
        sim.transitions_since(tie)
    );
    sim.run_until(stop + ms(10_000), one_master_is(1));
}
