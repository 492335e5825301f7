//! PostgreSQL sessions survive every failover of a replicating cluster
//! (`[sync]`): 8 long psql sessions (`SELECT 1` every 100 ms) and pgbench
//! with 4 persistent clients run through the VIP while the MASTER (node 0
//! of two) fails in each way of [`Failure`], 4 s in. Every session and
//! every client must survive; each test prints what it counted.
//!
//! Luck is ruled out: once node 1 holds the flows, the first PgBouncer is
//! drained on node 1 only, so node 1, left to itself, would send that
//! PgBouncer's sessions elsewhere (and they would be reset); only the flows
//! node 0 replicated keep them where they are. In nat
//! mode, and for one event each in dsr mode and over IPv6 (nat).

mod support;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use vipx_lab::{
    Cluster, ClusterOptions, Failure, PG_PORT, agent_bin, pgbench_init,
    sessions::{CLIENTS, Load, SESSIONS},
};

/// When the failure happens, after the load started.
const EVENT_AT: Duration = Duration::from_secs(4);
/// How long the load goes on after the failure's last move.
const TAIL: Duration = Duration::from_secs(4);

fn options() -> ClusterOptions {
    ClusterOptions {
        heartbeat: Some(Duration::from_millis(2)),
        sync: true,
        ..ClusterOptions::new(2, agent_bin())
    }
}

/// Runs the scenario and asserts that everything survived.
fn sessions_survive(opts: &ClusterOptions, failure: Failure) {
    let mut cluster = Cluster::up(opts).expect("bring the cluster up");
    cluster
        .wait_master(0, Duration::from_secs(10))
        .expect("node 0 is MASTER");
    pgbench_init(&cluster.client, cluster.backend.ipv4(), PG_PORT, 1).expect("pgbench -i");
    let target: IpAddr = if opts.ipv6_vip {
        cluster.vip6().into()
    } else {
        cluster.vip().into()
    };
    let started = Instant::now();
    let load = Load::start(
        &cluster.client,
        target,
        Duration::from_secs(failure.load_seconds(EVENT_AT)),
    )
    .expect("start the load");
    let flows = (SESSIONS + CLIENTS) as f64;
    let installed = support::wait_for(Duration::from_secs(10), || {
        let n = cluster.metric(1, "vipx_sync_flows_installed_total")?;
        (n >= flows).then_some(n)
    })
    .unwrap_or_else(|| panic!("node 1 did not install the load's {flows} flows"));
    // Each node tells its own flows from its peers' (counted every second).
    let held = |node: usize, origin: &str| {
        cluster.metric(node, &format!("vipx_flows_held{{origin=\"{origin}\"}}"))
    };
    support::wait_for(Duration::from_secs(5), || {
        (held(0, "own")? >= flows && held(1, "replicated")? >= flows).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "flows held: node 0 own {:?} (replicated {:?}), node 1 replicated {:?} (own {:?}); {flows} expected",
            held(0, "own"),
            held(0, "replicated"),
            held(1, "replicated"),
            held(1, "own")
        )
    });
    let drained = if opts.ipv6_service {
        cluster.backend_addr6(0)
    } else {
        cluster.backend_addr(0)
    };
    cluster
        .drain(1, drained)
        .unwrap_or_else(|err| panic!("{err:#}"));
    println!("node 1 installed {installed} flows; {drained} drained on node 1");
    std::thread::sleep(EVENT_AT.saturating_sub(started.elapsed()));
    cluster
        .fail_master(failure)
        .unwrap_or_else(|err| panic!("{}: {err:#}", failure.name()));
    let outcome = load
        .finish(Instant::now() + TAIL)
        .expect("the load's outcome");
    println!("{} ({target}): {outcome}", failure.name());
    assert!(
        outcome.all_survived(),
        "{}: {outcome}\n{}\nnode 0:\n{}\nnode 1:\n{}",
        failure.name(),
        client_logs(&cluster),
        cluster.lab.log_tail(cluster.nodes[0].agent, 25),
        cluster.lab.log_tail(cluster.nodes[1].agent, 25),
    );
}

/// The ends of the client's logs (sessions, pgbench), to explain a loss.
fn client_logs(cluster: &Cluster) -> String {
    (0..SESSIONS)
        .map(|i| format!("session{i}"))
        .chain(["pgbench".to_owned()])
        .map(|name| {
            let log = std::fs::read_to_string(cluster.client.log_path(&name)).unwrap_or_default();
            format!("{name}:\n{}", vipx_lab::tail(&log, 4))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sessions_survive_the_masters_link_cut() {
    sessions_survive(&options(), Failure::LinkCut);
}

#[test]
fn sessions_survive_the_kill_of_the_masters_agent() {
    sessions_survive(&options(), Failure::Kill);
}

#[test]
fn sessions_survive_a_5s_stall_of_the_masters_agent() {
    sessions_survive(&options(), Failure::Stall);
}

#[test]
fn sessions_survive_the_planned_handover() {
    sessions_survive(&options(), Failure::Stop);
}

#[test]
fn sessions_survive_the_old_masters_return() {
    sessions_survive(&options(), Failure::Return);
}

#[test]
fn sessions_survive_a_restart_of_the_masters_agent() {
    sessions_survive(&options(), Failure::Restart);
}

#[test]
fn dsr_sessions_survive_the_kill_of_the_masters_agent() {
    let opts = ClusterOptions {
        dsr: true,
        ..options()
    };
    sessions_survive(&opts, Failure::Kill);
}

#[test]
fn ipv6_sessions_survive_the_masters_link_cut() {
    let opts = ClusterOptions {
        ipv6_vip: true,
        ipv6_service: true,
        ..options()
    };
    sessions_survive(&opts, Failure::LinkCut);
}
