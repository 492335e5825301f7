//! vipx's fast heartbeat in the lab: with 1 s VRRP adverts (a dead master
//! takes VRRP about 3.6 s to notice), the heartbeat detects a killed master
//! and a stopping one long before VRRP could; with three nodes the
//! highest-priority backup takes over and the other stays backup; a
//! master that stalls and resumes makes the backup's takeover a false one,
//! and its detection time doubles (dampening); while it stalls, its lease
//! runs out and XDP fences the VIP: its kernel, which still holds the VIP,
//! no longer answers ARP for it; and heartbeats from outside the peer list
//! are dropped by XDP.

mod support;

use std::{net::UdpSocket, time::Duration};

use vipx_agent::events::{EventKind, GroupState};
use vipx_common::{Heartbeat, peer::STATE_MASTER};
use vipx_lab::{
    Cluster, ClusterOptions, Signal, agent_bin,
    arp::{ArpObserver, Mac, ObserveOptions},
    keepalived,
};

const TAKEOVER: Duration = Duration::from_secs(10);
/// The lab's lease (`lease_timeout`'s default, 100 ms), with room for a
/// busy machine.
const LEASE_RUN_OUT: Duration = Duration::from_millis(300);

/// 1 s adverts, heartbeats every 2 ms, detection after 5 missed (10 ms):
/// the suite runs many labs at once on a small machine, where packet
/// processing (softirq) can stall for several milliseconds.
fn options(nodes: usize) -> ClusterOptions {
    ClusterOptions {
        advert_interval_ms: 1000,
        heartbeat: Some(Duration::from_millis(2)),
        group_options: "heartbeat_multiplier = 5\n".into(),
        ..ClusterOptions::new(nodes, agent_bin())
    }
}

fn metric(cluster: &Cluster, index: usize, series: &str) -> f64 {
    cluster
        .metric(index, series)
        .unwrap_or_else(|| panic!("{series} on node {index}"))
}

/// Waits until node `index` has recorded 100 heartbeats of group `pg`.
fn wait_heartbeats(cluster: &Cluster, index: usize) {
    let series = "vipx_heartbeats_received_total{group=\"pg\"}";
    support::wait_for(Duration::from_secs(5), || {
        cluster.metric(index, series).filter(|n| *n >= 100.0)
    })
    .unwrap_or_else(|| panic!("node {index} records its peer's heartbeats"));
}

#[test]
fn the_heartbeat_detects_a_killed_master_long_before_vrrp() {
    let cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    // Both directions carry heartbeats, recorded by the receiver's XDP.
    wait_heartbeats(&cluster, 1);
    cluster
        .lab
        .kill(cluster.nodes[0].agent, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("the backup takes over");
    let timeline = cluster.events(1);
    assert!(
        timeline.became(
            GroupState::Master,
            "heartbeats from master 10.77.0.11 stopped"
        ),
        "taken over on the heartbeat, not on VRRP's timer: {timeline}"
    );
    let detection = metric(
        &cluster,
        1,
        "vipx_group_last_detection_seconds{group=\"pg\"}",
    );
    // Master_Down_Interval at 1 s adverts and priority 100 is 3.6 s; the
    // heartbeat's detection time is 10 ms. Generous bounds: the machine is
    // shared.
    assert!(
        (0.010..1.0).contains(&detection),
        "detected after {detection} s: at least the detection time, far below Master_Down_Interval"
    );
}

#[test]
fn a_stopping_master_says_farewell_and_the_backup_takes_over_at_once() {
    let cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    let started = std::time::Instant::now();
    cluster
        .lab
        .stop_process(cluster.nodes[0].agent)
        .expect("SIGTERM the master");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("the backup takes over");
    let timeline = cluster.events(1);
    assert!(
        timeline.became(
            GroupState::Master,
            "master 10.77.0.11 is stopping (heartbeat)"
        ) || timeline.became(GroupState::Master, "stopped (priority 0)"),
        "handover on the farewell: {timeline}"
    );
    // VRRP's Skew_Time at 1 s adverts and priority 100 is 609 ms; the
    // farewell needs no wait.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn with_three_nodes_the_highest_backup_takes_over_and_the_other_stays() {
    // A slower heartbeat (30 ms to detect): what is tested is who takes
    // over, and a stall of the loaded test machine must not look like a
    // second failure.
    let cluster = Cluster::up(&ClusterOptions {
        heartbeat: Some(Duration::from_millis(5)),
        group_options: "heartbeat_multiplier = 6\n".into(),
        ..options(3)
    })
    .expect("bring the cluster up");
    cluster
        .lab
        .kill(cluster.nodes[0].agent, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("node 1 (priority 100) takes over");
    // Watch node 2 (priority 50) for a while: it never claims.
    let claimed = support::wait_for(Duration::from_secs(2), || {
        cluster.is_master(2).then_some(())
    });
    assert!(
        claimed.is_none(),
        "node 2 stayed backup: node 1 {}\nnode 2 {}",
        cluster.events(1),
        cluster.events(2)
    );
    let timeline = cluster.events(2);
    assert!(
        !timeline.any(|e| e.is(EventKind::Group, GroupState::Master)),
        "node 2 never became master: {timeline}"
    );
}

#[test]
fn a_master_that_stalls_and_resumes_was_a_false_takeover_and_detection_is_damped() {
    let cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    let detection = "vipx_heartbeat_detection_seconds{group=\"pg\"}";
    wait_heartbeats(&cluster, 1);
    for node in [0, 1] {
        let configured = metric(&cluster, node, detection);
        assert!(
            (configured - 0.010).abs() < 1e-9,
            "node {node}: 5 x 2 ms in force at first, not {configured}"
        );
    }
    // The master's agent stalls (every thread, as a machine that stops
    // scheduling it) for far longer than the detection time, then goes on
    // as if nothing happened: still MASTER, priority 150.
    let master = cluster.nodes[0].agent;
    cluster
        .lab
        .kill(master, Signal::SIGSTOP)
        .expect("SIGSTOP the master's agent");
    let took_over = support::wait_for(TAKEOVER, || cluster.is_master(1).then_some(()));
    cluster
        .lab
        .kill(master, Signal::SIGCONT)
        .expect("SIGCONT the master's agent");
    took_over.expect("the backup takes over from the stalled master");
    support::wait_for(TAKEOVER, || {
        (cluster.is_master(0) && !cluster.is_master(1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the resumed master keeps the VIP and the backup steps down: node 0 {}\nnode 1 {}",
            cluster.events(0),
            cluster.events(1)
        )
    });
    // The backup saw the master it declared lost say MASTER again within a
    // second: a false takeover, so its detection time doubles.
    let damped = support::wait_for(Duration::from_secs(5), || {
        cluster
            .metric(1, detection)
            .filter(|d| (d - 0.020).abs() < 1e-9)
    });
    assert!(
        damped.is_some(),
        "detection time doubled after the false takeover, not {:?}: node 1 {}\n{}",
        cluster.metric(1, detection),
        cluster.events(1),
        cluster.lab.log_tail(cluster.nodes[1].agent, 20)
    );
}

#[test]
fn a_stalled_masters_node_stops_answering_arp_for_the_vip() {
    let cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    wait_heartbeats(&cluster, 1);
    let vip = cluster.vip();
    let macs = [0, 1].map(|i| {
        cluster.nodes[i]
            .host
            .mac()
            .parse::<Mac>()
            .expect("a node's MAC")
    });
    let fenced = "vipx_xdp_decisions_total{reason=\"vip_fenced\"}";
    let fenced_before = cluster.metric(0, fenced).unwrap_or(0.0);
    // The master's agent stalls; its XDP program stays attached, its kernel
    // keeps the VIP, and its lease runs out.
    let master = cluster.nodes[0].agent;
    cluster
        .lab
        .kill(master, Signal::SIGSTOP)
        .expect("SIGSTOP the master's agent");
    let took_over = support::wait_for(TAKEOVER, || cluster.is_master(1).then_some(()));
    std::thread::sleep(LEASE_RUN_OUT);
    let still_held = keepalived::holds(&cluster.nodes[0].host, vip);
    let observed = ArpObserver::start(
        &cluster.client,
        vip,
        ObserveOptions {
            interval: Duration::from_millis(5),
            limit: Duration::from_secs(5),
        },
    )
    .and_then(|observer| {
        std::thread::sleep(Duration::from_millis(300));
        observer.finish()
    });
    cluster
        .lab
        .kill(master, Signal::SIGCONT)
        .expect("SIGCONT the master's agent");
    took_over.expect("the backup takes over from the stalled master");
    assert!(still_held, "the stalled node's kernel still holds the VIP");
    let log = observed.expect("the ARP observer's log");
    let first = *log.requests.first().expect("the observer asked");
    let answered = log.answering_macs(first);
    assert!(
        answered.len() >= log.requests.len() / 2,
        "{} of {} requests answered",
        answered.len(),
        log.requests.len()
    );
    for (request, by) in &answered {
        assert_eq!(
            by,
            &vec![macs[1]],
            "request {request} answered by node 1 alone (node 0 is {}), not {by:?}",
            macs[0]
        );
    }
    // The stalled node's XDP counted the requests it kept from its kernel.
    let dropped = support::wait_for(TAKEOVER, || {
        let now = cluster.metric(0, fenced)?;
        (now - fenced_before >= answered.len() as f64).then_some(now)
    });
    assert!(
        dropped.is_some(),
        "node 0 fenced every request: {:?} after {fenced_before}",
        cluster.metric(0, fenced)
    );
}

#[test]
fn heartbeats_from_outside_the_peer_list_are_dropped() {
    let cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    let dropped_before = cluster
        .metric(1, "vipx_xdp_decisions_total{reason=\"peer_unknown\"}")
        .unwrap_or(0.0);
    // The client forges the master's claim that it is stopping; node 1 must
    // not take it.
    let forged = Heartbeat {
        vrid: 51,
        priority: 0,
        state: STATE_MASTER,
        seq: 1,
        interval_us: 2000,
        detect_mult: 3,
        ..Heartbeat::default()
    }
    .encode(None);
    let target = (
        cluster.nodes[1].host.ipv4(),
        vipx_common::peer::DEFAULT_HEARTBEAT_PORT,
    );
    cluster
        .client
        .enter(move || {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind in the client namespace");
            // TTL 255, as if sent on the link: past GTSM, the peer filter
            // must drop them.
            socket.set_ttl(255).expect("TTL 255");
            for _ in 0..50 {
                socket
                    .send_to(&forged, target)
                    .expect("send a forged heartbeat");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .expect("enter the client namespace");
    let dropped = support::wait_for(Duration::from_secs(5), || {
        let now = cluster.metric(1, "vipx_xdp_decisions_total{reason=\"peer_unknown\"}")?;
        (now - dropped_before >= 50.0).then_some(now - dropped_before)
    });
    assert!(dropped.is_some(), "50 forged heartbeats dropped by XDP");
    assert!(cluster.is_master(0), "node 0 still master");
    assert!(!cluster.is_master(1), "node 1 still backup");
}
