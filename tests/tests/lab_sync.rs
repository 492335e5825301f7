//! Flow replication in the lab (`[sync]`): a PostgreSQL session through the
//! VIP survives the MASTER's link cut, and the kill -9 of its agent, even
//! though the new master, left to itself, would send it elsewhere: its
//! PgBouncer is drained on the new master only, so its Maglev no longer
//! picks it. Only the flow the old master replicated keeps the session on
//! its PgBouncer. (After a kill -9 the old master's XDP stays, pinned, and
//! stops serving and answering for the VIP once its lease is stale.)

use std::time::{Duration, Instant};

use vipx_lab::{Cluster, ClusterOptions, ProcSpec, Signal, VIP_PORT, agent_bin};

/// Round trips of the session (each a `SELECT 1` and a 100 ms sleep).
const ROUNDS: usize = 60;
const TAKEOVER: Duration = Duration::from_secs(5);

/// Waits (bounded) until `done` gives a value.
fn wait_for<T>(what: &str, limit: Duration, done: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What happens to the master.
#[derive(Clone, Copy, Debug)]
enum Failure {
    LinkCut,
    Kill,
}

#[test]
fn a_session_the_new_master_could_not_recompute_survives_a_link_cut() {
    session_survives(Failure::LinkCut);
}

#[test]
fn a_session_the_new_master_could_not_recompute_survives_the_masters_kill() {
    session_survives(Failure::Kill);
}

fn session_survives(failure: Failure) {
    let opts = ClusterOptions {
        heartbeat: Some(Duration::from_millis(2)),
        sync: true,
        ..ClusterOptions::new(2, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    cluster.wait_master(0, TAKEOVER).expect("node 0 is MASTER");
    let installed = "vipx_sync_flows_installed_total";

    // One long session: a query, a pause, again.
    let script = format!(
        "for i in $(seq {ROUNDS}); do echo 'SELECT 1;'; echo 'SELECT pg_sleep(0.1);'; done \
         | psql -X -A -t -v ON_ERROR_STOP=1 -h {vip} -p {VIP_PORT} -U postgres -d postgres",
        vip = cluster.vip()
    );
    let before = cluster.pgbouncer_xacts().expect("PgBouncer stats");
    let session = cluster
        .client
        .spawn(
            "session",
            ProcSpec::new("bash")
                .args(["-c", &script])
                .env("PGCONNECT_TIMEOUT", "5"),
        )
        .expect("start the session");

    // Its PgBouncer: the one whose transactions grow (stats every second).
    let serving = wait_for("the session's PgBouncer", Duration::from_secs(10), || {
        let now = cluster.pgbouncer_xacts().ok()?;
        let grown: Vec<usize> = (0..now.len()).filter(|&i| now[i] > before[i]).collect();
        (grown.len() == 1).then(|| grown[0])
    });
    let backend = cluster.backend_addr(serving);

    // The backup holds the flow, then drains that PgBouncer: new flows there
    // would go to another one.
    wait_for(
        "node 1 installed the session's flow",
        Duration::from_secs(10),
        || (cluster.metric(1, installed)? >= 1.0).then_some(()),
    );
    cluster
        .drain(1, backend)
        .unwrap_or_else(|err| panic!("drain on node 1: {err:#}"));

    // The master fails: node 1 takes over mid-session.
    match failure {
        Failure::LinkCut => cluster.nodes[0]
            .host
            .set_connected(false)
            .expect("cut node 0's link"),
        Failure::Kill => cluster
            .lab
            .kill(cluster.nodes[0].agent, Signal::SIGKILL)
            .expect("kill -9 node 0's agent"),
    }
    cluster.wait_master(1, TAKEOVER).expect("node 1 takes over");

    let status = cluster
        .lab
        .wait_exit(session, Duration::from_secs(60))
        .expect("the session's status")
        .expect("the session ends within 60 s");
    let output = std::fs::read_to_string(cluster.client.log_path("session")).unwrap_or_default();
    let answered = output.lines().filter(|line| line.trim() == "1").count();
    println!("session: {answered} of {ROUNDS} queries answered across the {failure:?}");
    assert!(
        status.success() && answered == ROUNDS,
        "the session survived the takeover ({answered} of {ROUNDS} answered, {status}):\n{}\nnode 1:\n{}",
        vipx_lab::tail(&output, 20),
        cluster.lab.log_tail(cluster.nodes[1].agent, 30)
    );
    let hits = cluster
        .metric(1, "vipx_xdp_decisions_total{reason=\"flow_hit\"}")
        .unwrap_or(0.0);
    assert!(hits > 0.0, "node 1 served the session from its flow table");
}
