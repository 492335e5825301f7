//! What an operator does by hand, in the lab: a manual handover (FortiGate's
//! `exec ha failover set 1`) that holds across a restart until undone, a
//! drain that survives a restart, and keepalived's notify hooks run on each
//! change.

mod support;

use std::{path::Path, time::Duration};

use vipx_agent::{api::wire::Status, events::GroupState};
use vipx_lab::{Cluster, ClusterOptions, agent_bin};

const TAKEOVER: Duration = Duration::from_secs(10);

/// Longer than anything a preempting node waits (Master_Down_Interval at
/// the lab's 100 ms adverts is 360 ms; the replication gate is off).
const NO_PREEMPT: Duration = Duration::from_secs(3);

/// A hook that appends "ARGS STATE" to `notify-<agent pid>.log` in `dir`.
fn hook(dir: &Path, word: &str) -> String {
    format!(
        r#"["/bin/sh", "-c", "echo {word} $VIPX_GROUP $VIPX_STATE \"$@\" >> {}/notify-$PPID.log", "hook"]"#,
        dir.display()
    )
}

/// SIGTERM node 0's agent, check that it exits cleanly, and start it again
/// (`why` says what for).
fn restart_cleanly(cluster: &mut Cluster, why: &str) {
    let stopped = cluster
        .lab
        .stop_process(cluster.nodes[0].agent)
        .expect("SIGTERM node 0's agent");
    assert_eq!(stopped.code(), Some(0), "clean exit");
    cluster
        .restart_agent(0)
        .unwrap_or_else(|err| panic!("{why}: {err:#}"));
}

fn status(cluster: &Cluster, index: usize) -> Status {
    let body = cluster
        .cli(index, &["status", "--json"])
        .expect("vipx-agent status --json");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("status JSON: {err}: {body}"))
}

#[test]
fn a_manual_handover_moves_the_vip_holds_across_a_restart_and_is_undone() {
    let mut opts = ClusterOptions::new(2, agent_bin());
    opts.heartbeat = Some(Duration::from_millis(5));
    // The lab's temp dir is only known once it exists: the hooks write to
    // a directory of their own under /tmp, removed on drop.
    let hooks = tempfile::Builder::new()
        .prefix("vipx-hooks-")
        .tempdir()
        .expect("hooks dir");
    opts.group_options = format!(
        "notify_master = {}\nnotify_backup = {}\nnotify = {}\n",
        hook(hooks.path(), "master"),
        hook(hooks.path(), "backup"),
        hook(hooks.path(), "generic"),
    );
    let mut cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster.wait_master(0, TAKEOVER).expect("node 0 is MASTER");
    let log = |cluster: &Cluster, index: usize| {
        std::fs::read_to_string(
            hooks
                .path()
                .join(format!("notify-{}.log", cluster.nodes[index].agent)),
        )
        .unwrap_or_default()
    };
    // Hooks run in the background: wait (bounded) for each line.
    let ran = |cluster: &Cluster, index: usize, line: &str| {
        support::wait_for(TAKEOVER, || {
            log(cluster, index).contains(line).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "node {index} ran no hook saying {line:?}: {:?}",
                log(cluster, index)
            )
        });
    };
    ran(&cluster, 0, "master pg MASTER");
    // keepalived's arguments: INSTANCE, the name, the state, the priority.
    ran(&cluster, 0, "generic pg MASTER INSTANCE pg MASTER 150");
    ran(&cluster, 1, "backup pg BACKUP");

    // The handover: node 1 takes the VIP, node 0 stays BACKUP although its
    // priority is higher and preempt is on.
    let said = cluster.cli(0, &["handover"]).expect("vipx-agent handover");
    assert!(said.contains("pg: handed to the best backup"), "{said}");
    cluster.wait_master(1, TAKEOVER).expect("node 1 takes over");
    support::wait_for(TAKEOVER, || (!cluster.is_master(0)).then_some(()))
        .expect("node 0 gave the VIP up");
    assert!(
        cluster
            .events(0)
            .went(GroupState::Master, GroupState::Backup),
        "{}",
        cluster.events(0)
    );
    assert!(
        cluster
            .events(0)
            .any(|e| e.reason.contains("manual handover")),
        "the timeline says why: {}",
        cluster.events(0)
    );
    assert!(
        cluster
            .events(1)
            .became(GroupState::Master, "stopped (priority 0)")
            || cluster
                .events(1)
                .became(GroupState::Master, "is stopping (heartbeat)"),
        "node 1 took over on the ordered handover, not on a timeout: {}",
        cluster.events(1)
    );
    std::thread::sleep(NO_PREEMPT);
    assert!(
        cluster.is_only_master(1),
        "node 0 does not take the VIP back while handed over"
    );
    ran(&cluster, 1, "master pg MASTER");
    ran(&cluster, 0, "backup pg BACKUP");
    let group = &status(&cluster, 0).groups[0];
    assert!(
        group.handed_over.is_some_and(|h| h.until_unix_ms.is_none()),
        "status shows the handover, until undone: {group:?}"
    );

    // A restart keeps the handover.
    restart_cleanly(&mut cluster, "start node 0 again");
    std::thread::sleep(NO_PREEMPT);
    assert!(
        cluster.is_only_master(1),
        "the restarted node 0 stays BACKUP: the handover is in its state file"
    );

    // Undone: node 0's priority (150) applies again and it preempts.
    let said = cluster
        .cli(0, &["handover", "--undo"])
        .expect("vipx-agent handover --undo");
    assert!(said.contains("pg: handover undone"), "{said}");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("node 0 takes the VIP back");
    support::wait_for(TAKEOVER, || (!cluster.is_master(1)).then_some(()))
        .expect("node 1 steps down");
    assert!(support::vip_answers(&cluster), "the VIP answers");
}

#[test]
fn a_handover_that_cannot_be_done_says_why() {
    let cluster = Cluster::up(&ClusterOptions::new(2, agent_bin())).expect("bring the cluster up");
    let err = cluster
        .cli(1, &["handover"])
        .expect_err("node 1 is MASTER of nothing");
    assert!(err.to_string().contains("MASTER of no group"), "{err}");
    let err = cluster
        .cli(0, &["handover", "web"])
        .expect_err("no such group");
    assert!(err.to_string().contains("no group web"), "{err}");
    let err = cluster
        .cli(0, &["handover", "--undo"])
        .expect_err("nothing handed over");
    assert!(err.to_string().contains("nothing to undo"), "{err}");
    assert!(cluster.is_only_master(0), "nothing changed");
}

#[test]
fn a_drain_survives_a_restart_of_the_agent() {
    let mut cluster =
        Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    let backend = cluster.backend_addr(2);
    let weight = |cluster: &Cluster| {
        status(cluster, 0).services[0]
            .backends
            .iter()
            .find(|b| b.address == backend)
            .map(|b| b.weight)
    };
    assert_eq!(weight(&cluster), Some(1), "configured weight");
    cluster.drain(0, backend).expect("drain");
    assert_eq!(weight(&cluster), Some(0), "drained: no new flows");
    restart_cleanly(&mut cluster, "start it again");
    assert_eq!(
        weight(&cluster),
        Some(0),
        "still drained after the restart (state file)"
    );
    cluster
        .cli(0, &["drain", "--undo", &backend.to_string()])
        .expect("undrain");
    assert_eq!(weight(&cluster), Some(1), "back in");
}

/// POSTs `body` to `url` with curl from `host`; the HTTP status.
fn post(host: &vipx_lab::Host, url: &str, body: &str, bearer: Option<&str>) -> u16 {
    vipx_lab::http::curl(host, "POST", url, Some(body), bearer)
        .expect("run curl")
        .0
}

#[test]
fn changing_state_takes_this_node_or_the_secret() {
    let mut cluster =
        Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    let backend = cluster.backend_addr(1);
    let drain = format!(r#"{{"backend":"{backend}","drain":true}}"#);
    let weight = |cluster: &Cluster| {
        status(cluster, 0).services[0]
            .backends
            .iter()
            .find(|b| b.address == backend)
            .map(|b| b.weight)
    };
    // Without [api] secret_file: the client reaches the node's API through
    // the VIP itself, and may read but not change anything.
    let through_vip = format!("http://{}:{}", cluster.vip(), cluster.nodes[0].api.port());
    let (code, _) = vipx_lab::http::get_from(
        &cluster.client,
        format!("{}:{}", cluster.vip(), cluster.nodes[0].api.port())
            .parse()
            .expect("addr"),
        "/api/v1/status",
    )
    .expect("GET status through the VIP");
    assert_eq!(code, 200, "reading stays open");
    let client = cluster.client.clone();
    assert_eq!(
        post(
            &client,
            &format!("{through_vip}/api/v1/drain"),
            &drain,
            None
        ),
        401
    );
    assert_eq!(
        post(
            &client,
            &format!("{through_vip}/api/v1/handover"),
            "{}",
            None
        ),
        401
    );
    assert_eq!(weight(&cluster), Some(1), "nothing drained");
    assert!(cluster.is_master(0), "nothing handed over");

    // With a secret: only the secret opens, also from the node itself.
    let secret = "a secret of the lab, long enough";
    let secret_file = cluster.lab.tmp_dir().join("api.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("write the secret");
    let config_path = cluster.nodes[0].config.clone();
    let config = std::fs::read_to_string(&config_path).expect("node config");
    let config = config.replacen(
        "[api]\n",
        &format!("[api]\nsecret_file = \"{}\"\n", secret_file.display()),
        1,
    );
    std::fs::write(&config_path, config).expect("rewrite the config");
    restart_cleanly(&mut cluster, "start it with the secret");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("MASTER again after the restart");
    let url = format!("{through_vip}/api/v1/drain");
    assert_eq!(
        post(
            &client,
            &url,
            &drain,
            Some("a secret of the lab, long enougH")
        ),
        401
    );
    assert_eq!(post(&client, &url, &drain, None), 401);
    let local = format!(
        "http://127.0.0.1:{}/api/v1/drain",
        cluster.nodes[0].api.port()
    );
    assert_eq!(
        post(&cluster.nodes[0].host, &local, &drain, None),
        401,
        "with a secret, the node itself needs it too"
    );
    assert_eq!(weight(&cluster), Some(1), "still nothing drained");
    assert_eq!(
        post(&client, &url, &drain, Some(secret)),
        200,
        "the secret opens"
    );
    assert_eq!(weight(&cluster), Some(0), "drained");
    // The command line reads the secret from the node's config.
    cluster
        .cli(0, &["drain", "--undo", &backend.to_string()])
        .expect("vipx-agent drain --undo with the config's secret");
    assert_eq!(weight(&cluster), Some(1), "undrained");
    let log = cluster.lab.log_tail(cluster.nodes[0].agent, 400);
    assert!(log.contains("API: refused"), "refusals are logged:\n{log}");
    assert!(!log.contains(secret), "the secret is never logged");
    assert!(
        log.contains("POST /api/v1/drain") && log.contains(" 401 "),
        "an access log line per request:\n{log}"
    );
}
