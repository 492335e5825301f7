//! The data plane in the lab, with real PgBouncers in front of PostgreSQL:
//! connections through the VIP, the spread over weighted backends, DSR, and
//! a backend-set change under load.

mod support;

use std::time::Duration;

use vipx_lab::{
    Cluster, ClusterOptions, Lab, LabOptions, PgBouncer, PgBouncerOptions, Postgres, ProcSpec,
    VIP_PORT, agent_bin, pgbench, pgbench_init,
};

/// Runs `count` psql sessions through the VIP, one after the other, each a
/// `SELECT 1`; returns how many answered.
fn sessions_through_vip(cluster: &Cluster, count: u32) -> usize {
    let script = format!(
        "for i in $(seq {count}); do psql -X -A -t -h {vip} -p {VIP_PORT} -U postgres -d postgres -c 'SELECT 1'; done",
        vip = cluster.vip()
    );
    let out = cluster
        .client
        .run_spec(
            &ProcSpec::new("bash")
                .args(["-c", &script])
                .env("PGCONNECT_TIMEOUT", "5"),
            Duration::from_secs(300),
        )
        .expect("run psql sessions");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.trim() == "1")
        .count()
}

#[test]
fn nat_connections_reach_every_pgbouncer_by_weight() {
    let opts = ClusterOptions {
        weights: vec![1, 2, 3],
        ..ClusterOptions::new(1, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    let before = cluster.pgbouncer_xacts().expect("PgBouncer stats");

    let answered = sessions_through_vip(&cluster, 200);
    assert_eq!(answered, 200, "every session through the VIP must answer");

    // SHOW STATS totals are refreshed every second.
    let spread = support::wait_for(Duration::from_secs(10), || {
        let now = cluster.pgbouncer_xacts().ok()?;
        let spread: Vec<u64> = now.iter().zip(&before).map(|(n, b)| n - b).collect();
        (spread.iter().sum::<u64>() >= 200).then_some(spread)
    })
    .expect("PgBouncer stats did not account for the 200 sessions within 10 s");
    eprintln!("sessions per PgBouncer (weights 1, 2, 3): {spread:?}");
    let total: u64 = spread.iter().sum();
    for (i, (served, weight)) in spread.iter().zip([1u64, 2, 3]).enumerate() {
        let expected = total as f64 * weight as f64 / 6.0;
        assert!(
            (*served as f64 - expected).abs() <= expected * 0.5,
            "PgBouncer {i} (weight {weight}) served {served} of {total}, expected about {expected:.0}: {spread:?}"
        );
    }
    assert!(
        spread[2] > spread[0],
        "weight 3 must serve more than weight 1: {spread:?}"
    );
}

#[test]
fn backend_set_changes_lose_no_established_connection() {
    let cluster = Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    pgbench_init(
        &cluster.client,
        cluster.backend.ipv4(),
        vipx_lab::PG_PORT,
        1,
    )
    .expect("pgbench -i");
    let vip = cluster.vip();
    let client = cluster.client.clone();
    let bench = std::thread::spawn(move || {
        pgbench(
            &client,
            vip,
            VIP_PORT,
            &["-S", "-c", "8", "-j", "2", "-T", "8", "-n"],
            Duration::from_secs(60),
        )
    });
    // Drain the third PgBouncer, then drop it from the service, then bring
    // it back: established sessions stay on their backends throughout.
    std::thread::sleep(Duration::from_secs(2));
    cluster
        .reconfigure(0, &[(6432, 1), (6433, 1), (6434, 0)])
        .expect("drain a backend");
    std::thread::sleep(Duration::from_secs(2));
    cluster
        .reconfigure(0, &[(6432, 1), (6433, 1)])
        .expect("remove a backend");
    std::thread::sleep(Duration::from_secs(2));
    cluster
        .reconfigure(0, &[(6432, 1), (6433, 2), (6434, 1)])
        .expect("add it back with new weights");
    let report = bench
        .join()
        .expect("pgbench thread")
        .expect("pgbench through the VIP must finish without a failed client");
    eprintln!("{report}");
    assert!(
        report.contains("number of failed transactions: 0") || !report.contains("failed"),
        "pgbench reported failures:\n{report}"
    );
    assert!(report.contains("tps = "), "no pgbench report:\n{report}");
    let log = cluster.lab.log_tail(cluster.nodes[0].agent, 40);
    assert!(
        log.matches("service installed").count() >= 4,
        "the agent did not apply the three reloads:\n{log}"
    );
}

#[test]
fn dsr_backends_answer_clients_directly() {
    let lab = Lab::new(LabOptions::default()).expect("create lab");
    let vip = "10.77.0.100";
    let node = lab.add_host("n1", &lab.v4(11)).expect("node");
    let client = lab.add_host("client", &lab.v4(21)).expect("client");
    let db = lab.add_host("db", &lab.v4(30)).expect("db host");
    let postgres = Postgres::start(&db, 5432).expect("PostgreSQL");
    let mut bouncers = Vec::new();
    for last in [31, 32, 33] {
        let host = lab
            .add_host(&format!("b{last}"), &lab.v4(last))
            .expect("backend host");
        // The VIP on lo, never answered for on the wire (the LVS-DR recipe).
        host.sysctl("net.ipv4.conf.all.arp_ignore", "1")
            .expect("arp_ignore");
        host.sysctl("net.ipv4.conf.all.arp_announce", "2")
            .expect("arp_announce");
        host.add_addr_on("lo", &format!("{vip}/32"))
            .expect("VIP on lo");
        let bouncer = PgBouncer::start(
            &host,
            "*",
            5432,
            db.ipv4(),
            postgres.port(),
            &PgBouncerOptions {
                settings: vec![("stats_period".into(), "1".into())],
                ..PgBouncerOptions::default()
            },
        )
        .expect("PgBouncer on the backend");
        bouncers.push(bouncer);
    }
    let backends: String = [31, 32, 33]
        .map(|last| format!("{{ address = \"10.77.0.{last}\" }}"))
        .join(", ");
    let config = lab.tmp_dir().join("n1.toml");
    let state = lab.tmp_dir().join("n1.state.json");
    let state = state.display();
    std::fs::write(
        &config,
        format!(
            "[node]\nstate_file = \"{state}\"\n[dataplane]\ninterfaces = [\"eth0\"]\n[api]\nlisten = \"0.0.0.0:9469\"\n\
             [[group]]\nname = \"pg\"\nvrid = 51\ninterface = \"eth0\"\nvips = [\"{vip}/24\"]\nstate = \"master\"\n\
             [[service]]\nname = \"pg-dsr\"\nvip = \"{vip}\"\nport = 5432\nmode = \"dsr\"\nbackends = [{backends}]\n"
        ),
    )
    .expect("write config");
    let agent = node
        .spawn(
            "vipx-agent",
            ProcSpec::new(agent_bin()).arg("--config").arg(&config),
        )
        .expect("start the agent");
    let api = std::net::SocketAddr::from((node.ipv4(), 9469));
    support::wait_for(Duration::from_secs(20), || {
        let (code, page) = vipx_lab::http::get_from(&client, api, "/metrics").ok()?;
        (code == 200 && page.contains("vipx_group_master{group=\"pg\"} 1")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent did not become master:\n{}",
            lab.log_tail(agent, 30)
        )
    });

    let script = format!(
        "for i in $(seq 30); do psql -X -A -t -h {vip} -p 5432 -U postgres -d postgres -c 'SELECT 1'; done"
    );
    let out = client
        .run_spec(
            &ProcSpec::new("bash")
                .args(["-c", &script])
                .env("PGCONNECT_TIMEOUT", "5"),
            Duration::from_secs(120),
        )
        .expect("psql through the VIP");
    let answered = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "1")
        .count();
    assert_eq!(
        answered,
        30,
        "every DSR session must answer; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Replies went straight from the backends to the client: the node saw
    // only the client's side (no NAT replies).
    let (_, page) = vipx_lab::http::get_from(&client, api, "/metrics").expect("scrape");
    let nat_replies =
        vipx_lab::http::metric_value(&page, "vipx_xdp_decisions_total{reason=\"nat_reply\"}");
    assert_eq!(nat_replies, Some(0.0), "dsr must not see replies:\n{page}");
    let new_flows =
        vipx_lab::http::metric_value(&page, "vipx_xdp_decisions_total{reason=\"flow_new\"}")
            .expect("flow_new counter");
    assert!(new_flows >= 30.0, "30 sessions, {new_flows} new flows");
    let xacts = || -> Vec<u64> {
        bouncers
            .iter()
            .map(|b| b.transactions().expect("SHOW STATS"))
            .collect()
    };
    // Each PgBouncer also served the lab's readiness query.
    let served = support::wait_for(Duration::from_secs(10), || {
        let now = xacts();
        (now.iter().sum::<u64>() >= 33).then_some(now)
    })
    .expect("PgBouncer stats did not account for the 30 sessions");
    eprintln!("DSR sessions per backend (+1 readiness query each): {served:?}");
    assert!(
        served.iter().all(|n| *n >= 2),
        "every DSR backend should take some of 30 sessions: {served:?}"
    );
}
