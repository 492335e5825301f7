//! SIGHUP in the lab: a reload restarts only the groups it changed (the
//! others run on, no failover), applies the lease and flow timeouts, and
//! refuses, whole and with a reason, a file that changes what only a
//! restart can.

mod support;

use std::time::Duration;

use vipx_agent::events::{EventKind, GroupState};
use vipx_lab::{Cluster, ClusterOptions, Signal, agent_bin};

const WAIT: Duration = Duration::from_secs(10);

/// A second VRRP group beside the lab's `pg`.
const WEB: &str = "\n[[group]]\nname = \"web\"\nvrid = 52\ninterface = \"eth0\"\nvips = [\"10.77.0.101/24\"]\nadvert_interval = \"100ms\"\ngarp_repeat = 3\n";

/// Reloads node 0 with `edit` applied to its config file; waits for the
/// reload's event and returns it (its `to` and `reason`).
fn reload(cluster: &Cluster, edit: impl Fn(&str) -> String) -> (String, String) {
    let node = &cluster.nodes[0];
    let before = cluster
        .events(0)
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Reload)
        .count();
    let text = std::fs::read_to_string(&node.config).expect("node config");
    let edited = edit(&text);
    assert_ne!(edited, text, "the edit changes the file");
    std::fs::write(&node.config, edited).expect("write config");
    cluster
        .lab
        .kill(node.agent, Signal::SIGHUP)
        .expect("SIGHUP");
    support::wait_for(WAIT, || {
        cluster
            .events(0)
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Reload)
            .nth(before)
            .map(|e| (e.to.clone(), e.reason.clone()))
    })
    .expect("a reload event")
}

/// Node 0's group events of `group`.
fn group_events(cluster: &Cluster, group: &str) -> usize {
    cluster
        .events(0)
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Group && e.subject == group)
        .count()
}

#[test]
fn a_reload_restarts_only_the_groups_it_changed_and_refuses_what_needs_a_restart() {
    let mut opts = ClusterOptions::new(2, agent_bin());
    opts.extra_config = WEB.to_owned();
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster.wait_master(0, WAIT).expect("node 0 MASTER of pg");
    let pg_before = group_events(&cluster, "pg");
    let web_before = group_events(&cluster, "web");

    // Change the web group only, and the data plane's timeouts.
    let (outcome, _) = reload(&cluster, |text| {
        text.replace("garp_repeat = 3", "garp_repeat = 4").replace(
            "[dataplane]\n",
            "[dataplane]\nlease_timeout = \"150ms\"\ntcp_idle_timeout = \"30m\"\n",
        )
    });
    assert_eq!(outcome, "applied");
    assert!(
        support::wait_for(WAIT, || (group_events(&cluster, "web") > web_before)
            .then_some(()))
        .is_some(),
        "web restarted: {}",
        cluster.events(0)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        group_events(&cluster, "pg"),
        pg_before,
        "pg did not change and did not move: {}",
        cluster.events(0)
    );
    assert!(cluster.is_only_master(0), "no failover of pg");
    assert!(
        !cluster
            .events(0)
            .went(GroupState::Master, GroupState::Backup),
        "{}",
        cluster.events(0)
    );
    let log = cluster.lab.log_tail(cluster.nodes[0].agent, 200);
    assert!(
        log.contains("these groups changed and restarted") && log.contains("\"web\""),
        "the log says which groups restarted:\n{log}"
    );

    // A key only a restart applies: refused whole, with the key named; the
    // running configuration stays (the API still answers where it did).
    let (outcome, reason) = reload(&cluster, |text| {
        text.replace(":9469\"", ":9479\"")
            .replace("garp_repeat = 4", "garp_repeat = 5")
    });
    assert_eq!(outcome, "rejected");
    assert!(reason.contains("[api] changed"), "{reason}");
    assert!(
        !cluster.events(0).events.is_empty(),
        "the API still answers on its old port"
    );
    assert!(cluster.is_only_master(0));
}
