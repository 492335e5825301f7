//! A killed agent's XDP stays, and the agent started again adopts it. Two
//! nodes; n1 (priority 150) is MASTER. `kill -9` of n1's agent leaves its
//! XDP program attached to eth0 and its link and maps pinned, while n2
//! takes the VIP over (n1's lease goes stale, so its XDP no longer serves
//! it). n1's agent started again on the same configuration says it adopted
//! the pinned link and maps, eth0 runs the new program without having been
//! left bare, n1 takes the VIP back (preemption) and the VIP answers. A
//! clean stop then detaches XDP and removes the pins.

mod support;

use std::time::Duration;

use vipx_lab::{Cluster, ClusterOptions, Signal, agent_bin, pins_under};

const TAKEOVER: Duration = Duration::from_secs(10);

/// The file names of the pins under `dir`.
fn pin_names(dir: &std::path::Path) -> Vec<String> {
    pins_under(dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_killed_masters_xdp_stays_and_its_restarted_agent_adopts_it() {
    let mut cluster =
        Cluster::up(&ClusterOptions::new(2, agent_bin())).expect("bring the cluster up");
    assert!(support::vip_answers(&cluster), "the VIP answers from n1");
    let n1 = cluster.nodes[0].host.clone();
    let pins = cluster.nodes[0].pin_path.clone();
    let before = n1.xdp_prog_id().expect("XDP on n1's eth0");
    let pinned = pin_names(&pins);
    assert!(
        pinned.iter().any(|p| p.starts_with("link_eth0_"))
            && pinned.iter().any(|p| p == "VIPX_FLOWS"),
        "n1's link and maps are pinned in {}: {pinned:?}",
        pins.display()
    );

    let killed = cluster.nodes[0].agent;
    cluster
        .lab
        .kill(killed, Signal::SIGKILL)
        .expect("kill -9 n1's agent");
    cluster
        .lab
        .wait_exit(killed, Duration::from_secs(5))
        .expect("wait")
        .expect("n1's agent is gone");
    cluster.wait_master(1, TAKEOVER).expect("n2 takes over");
    assert_eq!(
        n1.xdp_prog_id(),
        Some(before),
        "the killed agent's program stays attached to n1's eth0"
    );
    assert_eq!(pin_names(&pins), pinned, "its pins stay");
    assert!(support::vip_answers(&cluster), "the VIP answers from n2");

    let restarted = cluster.restart_agent(0).expect("start n1's agent again");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("n1 takes the VIP back");
    let log = std::fs::read_to_string(n1.log_path("vipx-agent")).expect("n1's agent log");
    // The agent's first line names its version (the workspace's).
    let start = format!("vipx-agent {} starting", env!("CARGO_PKG_VERSION"));
    let since_restart = log.rsplit(start.as_str()).next().unwrap_or_default();
    assert_eq!(log.matches(start.as_str()).count(), 2, "two starts:\n{log}");
    assert!(
        since_restart.contains("XDP link of eth0 adopted"),
        "the restarted agent adopted the link:\n{since_restart}"
    );
    assert!(
        since_restart.contains("maps adopted from"),
        "the restarted agent adopted the maps:\n{since_restart}"
    );
    let after = n1.xdp_prog_id().expect("XDP on n1's eth0");
    assert_ne!(after, before, "eth0 runs the restarted agent's program");
    assert!(
        support::vip_answers(&cluster),
        "the VIP answers from n1 again"
    );

    let status = cluster
        .lab
        .stop_process(restarted)
        .expect("SIGTERM n1's agent");
    assert_eq!(status.code(), Some(0), "clean exit");
    assert_eq!(n1.xdp_prog_id(), None, "a clean stop detaches XDP");
    assert!(
        pin_names(&pins).is_empty(),
        "a clean stop removes the pins: {:?}",
        pin_names(&pins)
    );
}
