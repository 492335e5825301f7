//! VRRPv3 election in the lab: a killed master is replaced, a stopped one
//! hands over at once, a returning one takes the VIP back or not as
//! preemption says, and keepalived 2.2 shares a VRID with vipx both ways.

mod support;

use std::time::Duration;

use std::net::Ipv4Addr;

use vipx_agent::events::GroupState;
use vipx_lab::{Cluster, ClusterOptions, Host, Signal, agent_bin, keepalived};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

const TAKEOVER: Duration = Duration::from_secs(10);

#[test]
fn a_killed_master_is_replaced_and_the_vip_answers() {
    let cluster = Cluster::up(&ClusterOptions::new(2, agent_bin())).expect("bring the cluster up");
    assert!(!cluster.is_master(1), "one master only");
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers before the failover"
    );
    cluster
        .lab
        .kill(cluster.nodes[0].agent, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("the backup takes over");
    let timeline = cluster.events(1);
    assert!(
        timeline.became(GroupState::Master, "no advert from a master"),
        "{timeline}"
    );
    let detection = cluster
        .metric(1, "vipx_group_last_detection_seconds{group=\"pg\"}")
        .expect("detection time in /metrics");
    // Master_Down_Interval at 100 ms adverts and priority 100 is 360 ms.
    assert!(
        detection >= 0.3,
        "detected after {detection} s: not before Master_Down_Interval"
    );
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers from the new master"
    );
}

#[test]
fn a_stopped_master_hands_over_at_once_and_preempts_on_return() {
    let mut cluster =
        Cluster::up(&ClusterOptions::new(2, agent_bin())).expect("bring the cluster up");
    let status = cluster
        .lab
        .stop_process(cluster.nodes[0].agent)
        .expect("SIGTERM the master");
    assert_eq!(status.code(), Some(0), "clean exit");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("the backup takes over");
    let timeline = cluster.events(1);
    assert!(
        timeline.became(GroupState::Master, "stopped (priority 0)"),
        "handover on priority 0: {timeline}"
    );
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers from the backup"
    );
    let vip_on_old = cluster.nodes[0]
        .host
        .run_stdout(&["ip", "-4", "addr", "show", "eth0"])
        .expect("ip addr");
    assert!(
        !vip_on_old.contains("10.77.0.100"),
        "the stopped master released the VIP:\n{vip_on_old}"
    );

    // The higher-priority node returns and preempts.
    cluster
        .restart_agent(0)
        .expect("start the old master again");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("the returning master preempts");
    support::wait_for(TAKEOVER, || (!cluster.is_master(1)).then_some(()))
        .expect("the backup steps down");
    let timeline = cluster.events(1);
    assert!(
        timeline.went(GroupState::Master, GroupState::Backup),
        "{timeline}"
    );
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers after the failback"
    );
}

#[test]
fn without_preemption_the_returning_master_stays_backup() {
    let opts = ClusterOptions {
        group_options: "preempt = false\n".into(),
        ..ClusterOptions::new(2, agent_bin())
    };
    let mut cluster = Cluster::up(&opts).expect("bring the cluster up");
    let first = cluster.wait_any_master(TAKEOVER).expect("a master");
    let other = 1 - first;
    cluster
        .lab
        .stop_process(cluster.nodes[first].agent)
        .expect("SIGTERM the master");
    cluster
        .wait_master(other, TAKEOVER)
        .expect("the backup takes over");
    cluster
        .restart_agent(first)
        .expect("start the old master again");
    // Give it several Master_Down_Intervals to (wrongly) take over.
    std::thread::sleep(Duration::from_millis(20 * vipx_lab::ADVERT_INTERVAL_MS));
    assert!(
        !cluster.is_master(first),
        "no preemption: the returning node stays BACKUP"
    );
    assert!(cluster.is_master(other), "the current master keeps the VIP");
    assert!(support::vip_answers(&cluster));
}

/// keepalived 2.2 (VRRPv3, the lab's advert interval) on `host` in vipx's
/// VRID, for the lab's VIP.
fn start_keepalived(host: &Host, priority: u8) -> vipx_lab::Pid {
    keepalived::start(
        host,
        &keepalived::KeepalivedSpec {
            vrid: 51,
            priority,
            advert_ms: vipx_lab::ADVERT_INTERVAL_MS,
            vip: VIP,
            prefix_len: 24,
        },
    )
    .expect("start keepalived")
}

fn holds_vip(host: &Host) -> bool {
    keepalived::holds(host, VIP)
}

#[test]
fn keepalived_and_vipx_hand_the_vip_to_each_other() {
    let cluster = Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    let keepalived_host = cluster
        .lab
        .add_host("kad", &cluster.lab.v4(51))
        .expect("keepalived host");

    // vipx (priority 150) is MASTER; keepalived (100) must stay BACKUP.
    let keepalived = start_keepalived(&keepalived_host, 100);
    std::thread::sleep(Duration::from_millis(15 * vipx_lab::ADVERT_INTERVAL_MS));
    assert!(
        !holds_vip(&keepalived_host),
        "keepalived accepted vipx as MASTER"
    );
    assert!(cluster.is_master(0));
    let adverts = cluster
        .metric(0, "vipx_vrrp_adverts_received_total{group=\"pg\"}")
        .unwrap_or(0.0);
    assert!(
        adverts == 0.0,
        "a BACKUP keepalived sends no adverts ({adverts})"
    );

    // vipx stops (priority 0): keepalived takes the VIP.
    cluster
        .lab
        .stop_process(cluster.nodes[0].agent)
        .expect("SIGTERM vipx");
    support::wait_for(TAKEOVER, || holds_vip(&keepalived_host).then_some(())).unwrap_or_else(
        || {
            panic!(
                "keepalived did not take over:\n{}",
                cluster.lab.log_tail(keepalived, 30)
            )
        },
    );
    cluster
        .lab
        .stop_process(keepalived)
        .expect("stop keepalived");
    support::wait_for(TAKEOVER, || (!holds_vip(&keepalived_host)).then_some(()))
        .expect("keepalived released the VIP");
}

#[test]
fn vipx_follows_a_keepalived_master_and_takes_over_when_it_stops() {
    let cluster = Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    let keepalived_host = cluster
        .lab
        .add_host("kad", &cluster.lab.v4(51))
        .expect("keepalived host");
    // keepalived with priority 200 preempts vipx (150).
    let keepalived = start_keepalived(&keepalived_host, 200);
    support::wait_for(TAKEOVER, || holds_vip(&keepalived_host).then_some(())).unwrap_or_else(
        || {
            panic!(
                "keepalived did not preempt:\n{}",
                cluster.lab.log_tail(keepalived, 30)
            )
        },
    );
    support::wait_for(TAKEOVER, || (!cluster.is_master(0)).then_some(()))
        .expect("vipx stepped down for the higher-priority keepalived");
    let received = cluster
        .metric(0, "vipx_vrrp_adverts_received_total{group=\"pg\"}")
        .unwrap_or(0.0);
    assert!(received > 0.0, "vipx parsed keepalived's adverts");
    assert_eq!(
        cluster.metric(0, "vipx_vrrp_adverts_invalid_total{group=\"pg\"}"),
        Some(0.0),
        "no keepalived advert was rejected"
    );
    // keepalived stops (priority 0): vipx takes over.
    cluster
        .lab
        .stop_process(keepalived)
        .expect("stop keepalived");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("vipx takes the VIP back");
    assert!(support::vip_answers(&cluster), "the VIP answers from vipx");
}

#[test]
fn a_master_refreshes_its_gratuitous_arp() {
    let opts = ClusterOptions {
        group_options: "garp_refresh = \"200ms\"\ngarp_repeat = 1\n".into(),
        ..ClusterOptions::new(1, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    // The first announcement is long gone; refreshes keep coming.
    std::thread::sleep(Duration::from_millis(500));
    let out = cluster
        .client
        .run_spec(
            &vipx_lab::ProcSpec::new("timeout").args([
                "3",
                "tcpdump",
                "-n",
                "-i",
                "eth0",
                "-c",
                "3",
                "arp and src host 10.77.0.100",
            ]),
            Duration::from_secs(10),
        )
        .expect("tcpdump");
    let seen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        seen.lines()
            .filter(|l| l.contains("tell 10.77.0.100"))
            .count(),
        3,
        "three refreshed gratuitous ARPs within 3 s:\n{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_node_that_cannot_reach_its_pool_gives_up_master() {
    let opts = ClusterOptions {
        health: Some(
            "check = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\njitter = \"10ms\"\nrise = 2\nfall = 2\n"
                .into(),
        ),
        // Weight 0 (the default): every backend down = FAULT.
        group_options: "[[group.track_service]]\nname = \"pgbouncer\"\n".into(),
        ..ClusterOptions::new(2, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster.wait_master(0, TAKEOVER).expect("node 0 is master");
    // Node 0 alone loses its way to the backends; node 1 still reaches them.
    let backend = format!("{}/32", cluster.backend.ipv4());
    cluster.nodes[0]
        .host
        .run(&["ip", "route", "add", "blackhole", &backend])
        .expect("cut node 0 off the backends");
    cluster
        .wait_master(1, TAKEOVER)
        .expect("node 1, which reaches the pool, takes over");
    let timeline = cluster.events(0);
    assert!(
        timeline.any(|e| e.subject.contains("service pgbouncer"))
            && timeline.any(|e| e.to.contains("FAULT")),
        "node 0 went to FAULT on its pool: {timeline}"
    );
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers from node 1"
    );
    cluster.nodes[0]
        .host
        .run(&["ip", "route", "del", "blackhole", &backend])
        .expect("give node 0 its backends back");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("node 0 recovers and preempts");
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers after the return"
    );
}
