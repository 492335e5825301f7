//! The partition row (3 nodes): the MASTER cut off from the other two
//! nodes while the client still reaches every node. For vipx with its
//! cluster quorum: from the cut to the isolated MASTER no longer answering
//! for the VIP, and to the majority's new MASTER answering; for
//! keepalived and HAProxy in the same lab: keepalived has no quorum, so
//! the isolated MASTER never drops the VIP and both answer until the
//! partition heals.
//!
//! Watched from the client: an ARP observer asks "who has the VIP?" every
//! 2 ms; the answering MACs give each node's first and last answer.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use vipx_lab::{
    Cluster, ClusterOptions, Host, Membership,
    arp::{ArpLog, ArpObserver, Mac, ObserveOptions},
    walltime::WallTime,
};

use super::{HEARTBEAT, heartbeat_group_options, report::ms};
use crate::bench_lab::{
    keepalived::{KA_VIP, Keepalived},
    wait_for,
};

/// How long the partition lasts each round, after the new MASTER answers.
const HOLD: Duration = Duration::from_secs(2);
/// Time for a takeover or a return.
const MOVE: Duration = Duration::from_secs(15);
const ARP_INTERVAL: Duration = Duration::from_millis(2);

/// One round as the client saw it, in ms from the cut.
struct Round {
    /// The isolated MASTER's last ARP answer (none after the cut: 0).
    dropped_ms: Option<f64>,
    /// The new MASTER's first ARP answer.
    serving_ms: Option<f64>,
    /// From the new MASTER's first answer to the old one's last, when
    /// they overlap: both answered for the VIP.
    both_ms: f64,
}

/// What one round measures from the ARP log.
fn analyse(log: &ArpLog, cut: WallTime, old: Mac, new: Mac, end: WallTime) -> Round {
    let since = |at: WallTime| at.micros_since(cut) as f64 / 1000.0;
    let answers: Vec<_> = log.answers().filter(|a| a.at >= cut).collect();
    let last_old = answers.iter().filter(|a| a.mac == old).map(|a| a.at).max();
    let first_new = answers.iter().filter(|a| a.mac == new).map(|a| a.at).min();
    let dropped_ms = match last_old {
        // Still answering at the end of the hold: it never dropped.
        Some(at) if end.micros_since(at) < 50_000 => None,
        Some(at) => Some(since(at)),
        None => Some(0.0),
    };
    let both_ms = match (first_new, last_old) {
        (Some(new), Some(old)) if old > new => old.micros_since(new) as f64 / 1000.0,
        _ => 0.0,
    };
    Round {
        dropped_ms,
        serving_ms: first_new.map(since),
        both_ms,
    }
}

/// Cuts `hosts[0]` off from the others while watching `vip` from
/// `client`; waits for `moved`, holds, heals, and waits for `back`.
fn round(
    client: &Host,
    vip: Ipv4Addr,
    hosts: &[Host],
    moved: &dyn Fn() -> bool,
    back: &dyn Fn() -> bool,
) -> anyhow::Result<Round> {
    let macs: Vec<Mac> = hosts[..2]
        .iter()
        .map(|h| h.mac().parse::<Mac>())
        .collect::<Result<_, _>>()?;
    let observer = ArpObserver::start(
        client,
        vip,
        ObserveOptions {
            interval: ARP_INTERVAL,
            limit: MOVE * 2,
        },
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let cut = WallTime::now();
    let others: Vec<&Host> = hosts[1..].iter().collect();
    Cluster::partition(&[&hosts[0]], &others)?;
    let moved = wait_for("the majority's new MASTER", MOVE, moved);
    std::thread::sleep(HOLD);
    let end = WallTime::now();
    let log = observer.finish();
    let all: Vec<&Host> = hosts.iter().collect();
    Cluster::heal(&all)?;
    moved?;
    let log = log?;
    wait_for(
        "node 0 the only MASTER after the partition healed",
        MOVE,
        back,
    )?;
    Ok(analyse(&log, cut, macs[0], macs[1], end))
}

/// One line of the table from `rounds`.
fn line(system: &str, rounds: &[Round], errors: &[String]) -> String {
    let median = |mut v: Vec<f64>| -> String {
        if v.is_empty() {
            return "-".into();
        }
        v.sort_by(f64::total_cmp);
        let mid = v[v.len() / 2];
        format!(
            "{} ({}-{})",
            ms(Duration::from_secs_f64(mid / 1000.0)),
            ms(Duration::from_secs_f64(v[0] / 1000.0)),
            ms(Duration::from_secs_f64(v[v.len() - 1] / 1000.0))
        )
    };
    let never = rounds.iter().filter(|r| r.dropped_ms.is_none()).count();
    let dropped = if never > 0 {
        format!(
            "never ({never} of {} rounds: still answering {} s after the new MASTER)",
            rounds.len(),
            HOLD.as_secs()
        )
    } else {
        median(rounds.iter().filter_map(|r| r.dropped_ms).collect())
    };
    let serving = median(rounds.iter().filter_map(|r| r.serving_ms).collect());
    let both = median(rounds.iter().map(|r| r.both_ms).collect());
    let failed = if errors.is_empty() {
        String::new()
    } else {
        format!(" (failed in {} rounds: {})", errors.len(), errors[0])
    };
    format!("| {system}{failed} | {dropped} | {serving} | {both} |")
}

/// The table of the partition row: vipx with its quorum (the default
/// timeouts and the lab's short ones) and keepalived + HAProxy.
pub fn run(agent: &Path, rounds: u32) -> String {
    let mut lines = vec![
        format!(
            "Partition, 3 nodes: the MASTER cut off from the other two (the client reaches all); ms from the cut, median (min-max) of {rounds} rounds, seen by ARP from the client"
        ),
        "| system | isolated MASTER stops answering | new MASTER answers | both answered |".into(),
        "|---|---:|---:|---:|".into(),
    ];
    for (ping, quorum) in [(50, 300), (20, 150)] {
        let system =
            format!("vipx (heartbeat 1 ms x 10; quorum: ping {ping} ms, timeout {quorum} ms)");
        let opts = ClusterOptions {
            advert_interval_ms: 10,
            heartbeat: Some(HEARTBEAT),
            group_options: heartbeat_group_options(Some(HEARTBEAT)),
            membership: Some(Membership {
                ping_interval: Duration::from_millis(ping),
                quorum_timeout: Duration::from_millis(quorum),
                ..Membership::default()
            }),
            ..ClusterOptions::new(3, agent.to_owned())
        };
        lines.push(match Cluster::up(&opts) {
            Ok(cluster) => {
                let hosts: Vec<Host> = cluster.nodes.iter().map(|n| n.host.clone()).collect();
                let (done, errors) = measure(rounds, || {
                    round(
                        &cluster.client,
                        cluster.vip(),
                        &hosts,
                        &|| cluster.is_master(1),
                        &|| cluster.is_only_master(0),
                    )
                });
                line(&system, &done, &errors)
            }
            Err(e) => format!("| {system} (not run: {e:#}) | - | - | - |"),
        });
    }
    let system = "keepalived 2.2 + HAProxy 2.6 (10 ms adverts)";
    // keepalived's hosts in a lab of their own (its one vipx node holds
    // another VIP).
    lines.push(
        match Cluster::up(&ClusterOptions::new(1, agent.to_owned())) {
            Ok(cluster) => match Keepalived::up(&cluster, 3, 10, MOVE) {
                Ok(ka) => keepalived_line(system, &cluster, &ka, rounds),
                Err(e) => format!("| {system} (not run: {e:#}) | - | - | - |"),
            },
            Err(e) => format!("| {system} (not run: {e:#}) | - | - | - |"),
        },
    );
    lines.join("\n")
}

fn keepalived_line(system: &str, cluster: &Cluster, ka: &Keepalived<'_>, rounds: u32) -> String {
    let hosts: Vec<Host> = (0..3).map(|i| ka.host(i).clone()).collect();
    let (done, errors) = measure(rounds, || {
        round(&cluster.client, KA_VIP, &hosts, &|| ka.holds(1), &|| {
            ka.only_holder(0)
        })
    });
    line(system, &done, &errors)
}

/// Runs `rounds` rounds; those measured and why the others failed.
fn measure(
    rounds: u32,
    mut one: impl FnMut() -> anyhow::Result<Round>,
) -> (Vec<Round>, Vec<String>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for i in 0..rounds {
        match one() {
            Ok(r) => {
                eprintln!(
                    "partition round {}: dropped {:?} ms, serving {:?} ms, both {:.1} ms",
                    i + 1,
                    r.dropped_ms,
                    r.serving_ms,
                    r.both_ms
                );
                done.push(r);
            }
            Err(e) => {
                eprintln!("partition round {}: {e:#}", i + 1);
                errors.push(format!("{e:#}"));
            }
        }
    }
    (done, errors)
}
