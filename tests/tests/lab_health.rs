//! Health checks against real PgBouncers and PostgreSQL in the lab: a
//! killed PgBouncer leaves the data plane and comes back, a silent one is
//! down for `postgres` but up for `tcp`, a saturated pool is degraded, and
//! an operator drain takes a backend out of new flows.

mod support;

use std::{
    process::Child,
    time::{Duration, Instant},
};

use vipx_agent::{events::EventKind, health::Health};
use vipx_lab::{
    Cluster, ClusterOptions, PGBOUNCER_FIRST_PORT, PgBouncer, PgBouncerOptions, ProcSpec, Signal,
    VIP_PORT, agent_bin,
};

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 200;
const FALL: u64 = 2;
const RISE: u64 = 2;

fn health(check: &str, extra: &str) -> String {
    format!(
        "check = \"{check}\"\ninterval = \"{INTERVAL_MS}ms\"\ntimeout = \"{TIMEOUT_MS}ms\"\njitter = \"20ms\"\nrise = {RISE}\nfall = {FALL}\n{extra}"
    )
}

fn state_series(service: &str, backend: &str, state: &str) -> String {
    format!("vipx_backend_health{{backend=\"{backend}\",service=\"{service}\",state=\"{state}\"}}")
}

/// Waits until node 0 reports `state` for a backend; returns how long it took.
fn wait_state(
    cluster: &Cluster,
    service: &str,
    backend: &str,
    state: &str,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let series = state_series(service, backend, state);
    support::wait_for(limit, || {
        (cluster.metric(0, &series) == Some(1.0)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{service} {backend} not {state} within {limit:?}; metrics:\n{}",
            cluster.metrics(0).unwrap_or_default()
        )
    });
    start.elapsed()
}

/// `count` psql sessions through the VIP, one after the other; how many
/// answered.
fn sessions(cluster: &Cluster, count: u32) -> usize {
    let script = format!(
        "for i in $(seq {count}); do psql -X -A -t -h {} -p {VIP_PORT} -U postgres -d postgres -c 'SELECT 1'; done",
        cluster.vip()
    );
    let out = cluster
        .client
        .run_spec(
            &ProcSpec::new("bash")
                .args(["-c", &script])
                .env("PGCONNECT_TIMEOUT", "3"),
            Duration::from_secs(120),
        )
        .expect("psql sessions");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == "1")
        .count()
}

/// Clients connected to a PgBouncer's `postgres` database.
fn clients(bouncer: &PgBouncer) -> usize {
    bouncer
        .admin("SHOW CLIENTS")
        .map(|rows| {
            rows.lines()
                .filter(|l| l.split('|').nth(2) == Some("postgres"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_pgbouncer_leaves_the_data_plane_and_returns() {
    let opts = ClusterOptions {
        health: Some(health("postgres", "")),
        ..ClusterOptions::new(1, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    let victim = cluster.pgbouncers[2].clone();
    let backend = format!("{}:{}", cluster.backend.ipv4(), victim.port());
    let log = cluster.lab.log_tail(cluster.nodes[0].agent, 200);
    let ready = log
        .find("every backend checked once")
        .unwrap_or_else(|| panic!("the agent waits for its first health round:\n{log}"));
    let master = log
        .find("to=\"MASTER\"")
        .unwrap_or_else(|| panic!("the agent became MASTER:\n{log}"));
    assert!(
        ready < master,
        "the VIP is claimed only after the first health round:\n{log}"
    );
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );

    // Nine sessions that last six seconds, spread over the three PgBouncers.
    let script = format!(
        "psql -X -A -t -h {} -p {VIP_PORT} -U postgres -d postgres -c 'SELECT pg_sleep(6)' -c 'SELECT 42'",
        cluster.vip()
    );
    let held: Vec<Child> = (0..9)
        .map(|_| {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    cluster.client.netns_name(),
                    "bash",
                    "-c",
                    &script,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start a held session")
        })
        .collect();
    let spread = support::wait_for(Duration::from_secs(10), || {
        let spread: Vec<usize> = cluster.pgbouncers.iter().map(clients).collect();
        (spread.iter().sum::<usize>() == 9).then_some(spread)
    })
    .expect("the nine sessions did not all reach a PgBouncer");
    let on_victim = spread[2];
    eprintln!("held sessions per PgBouncer: {spread:?}");

    let killed = Instant::now();
    cluster
        .lab
        .kill(victim.pid(), Signal::SIGKILL)
        .expect("kill -9 the PgBouncer");
    let took = wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "down",
        Duration::from_secs(10),
    );
    let bound = Duration::from_millis(FALL * INTERVAL_MS + TIMEOUT_MS);
    eprintln!("down after {took:?} (fall x interval + timeout = {bound:?})");
    assert!(
        took <= bound + Duration::from_millis(1500),
        "the dead PgBouncer left the data plane only after {took:?}"
    );
    let weight = format!("vipx_backend_weight{{backend=\"{backend}\",service=\"pgbouncer\"}}");
    assert_eq!(
        cluster.metric(0, &weight),
        Some(0.0),
        "out of the Maglev table"
    );

    // New connections go only to the living.
    assert_eq!(sessions(&cluster, 20), 20, "every new session answers");
    // Sessions on the healthy PgBouncers finish their work.
    let finished = held
        .into_iter()
        .map(|child| child.wait_with_output().expect("held session"))
        .filter(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "42")
        })
        .count();
    assert_eq!(
        finished,
        9 - on_victim,
        "sessions on healthy backends survive ({spread:?})"
    );
    assert!(killed.elapsed() < Duration::from_secs(60));

    // Back on the same port: up after `rise` good checks.
    PgBouncer::start(
        &cluster.backend,
        "*",
        victim.port(),
        std::net::Ipv4Addr::LOCALHOST,
        vipx_lab::PG_PORT,
        &PgBouncerOptions::default(),
    )
    .expect("restart the PgBouncer");
    let back = wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );
    eprintln!("up again {back:?} after the restart (rise {RISE} x interval {INTERVAL_MS} ms)");
    assert_eq!(
        cluster.metric(0, &weight),
        Some(1.0),
        "back in the Maglev table"
    );
    assert_eq!(sessions(&cluster, 30), 30);
    let events = cluster.events(0);
    assert!(
        events.any(|e| e.is(EventKind::Health, Health::Down)),
        "the timeline shows the fall: {events}"
    );
    assert!(
        events.any(|e| e.is(EventKind::Health, Health::Up)),
        "and the return: {events}"
    );
}

#[test]
fn a_silent_pgbouncer_is_down_for_postgres_and_up_for_tcp() {
    let tcp_service = format!(
        "[[service]]\nname = \"tcp-only\"\nvip = \"10.77.0.100\"\nport = 5433\nbackends = [{{ address = \"10.77.0.31\", port = {} }}]\n[service.health]\n{}",
        PGBOUNCER_FIRST_PORT + 2,
        health("tcp", "")
    );
    let opts = ClusterOptions {
        health: Some(health("postgres", "")),
        extra_config: tcp_service,
        ..ClusterOptions::new(1, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    let victim = &cluster.pgbouncers[2];
    let backend = format!("{}:{}", cluster.backend.ipv4(), victim.port());
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );
    wait_state(
        &cluster,
        "tcp-only",
        &backend,
        "up",
        Duration::from_secs(10),
    );

    // Stopped, it still accepts TCP (the kernel completes handshakes) but
    // never answers the startup message.
    cluster
        .lab
        .kill(victim.pid(), Signal::SIGSTOP)
        .expect("SIGSTOP");
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "down",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(4 * INTERVAL_MS));
    assert_eq!(
        cluster.metric(0, &state_series("tcp-only", &backend, "up")),
        Some(1.0),
        "a tcp check is fooled by a silent server"
    );
    cluster
        .lab
        .kill(victim.pid(), Signal::SIGCONT)
        .expect("SIGCONT");
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );
}

#[test]
fn a_saturated_pool_is_degraded_and_gets_no_new_flows() {
    let opts = ClusterOptions {
        health: Some(health(
            "pgbouncer",
            "user = \"postgres\"\nmax_waiting_clients = 0\n",
        )),
        pool_size: Some(1),
        ..ClusterOptions::new(1, agent_bin())
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    let busy = &cluster.pgbouncers[0];
    let backend = format!("{}:{}", cluster.backend.ipv4(), busy.port());
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );

    // Its only server connection is busy; a second client waits for it.
    let hold = |sql: &str| {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                cluster.client.netns_name(),
                "psql",
                "-X",
                "-h",
            ])
            .arg(cluster.backend.ipv4().to_string())
            .args([
                "-p",
                &busy.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a client")
    };
    let mut first = hold("SELECT pg_sleep(4)");
    std::thread::sleep(Duration::from_millis(300));
    let mut second = hold("SELECT 1");
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "degraded",
        Duration::from_secs(5),
    );
    let weight = format!("vipx_backend_weight{{backend=\"{backend}\",service=\"pgbouncer\"}}");
    assert_eq!(
        cluster.metric(0, &weight),
        Some(0.0),
        "degraded: no new flows while others are up"
    );
    let _ = first.wait();
    let _ = second.wait();
    wait_state(
        &cluster,
        "pgbouncer",
        &backend,
        "up",
        Duration::from_secs(10),
    );
    assert_eq!(cluster.metric(0, &weight), Some(1.0));
}

#[test]
fn drain_keeps_sessions_and_sends_new_ones_elsewhere() {
    let cluster = Cluster::up(&ClusterOptions::new(1, agent_bin())).expect("bring the cluster up");
    let drained = &cluster.pgbouncers[1];
    let backend = format!("{}:{}", cluster.backend.ipv4(), drained.port());
    // From the node itself (without [api] secret_file, the API takes
    // changes from this node only).
    let out = cluster
        .cli(0, &["drain", &backend])
        .expect("vipx-agent drain");
    assert!(out.contains("\"drained\":true"), "{out}");
    let weight = format!("vipx_backend_weight{{backend=\"{backend}\",service=\"pgbouncer\"}}");
    assert_eq!(cluster.metric(0, &weight), Some(0.0));
    let before = drained.transactions().expect("stats");
    assert_eq!(sessions(&cluster, 30), 30);
    std::thread::sleep(Duration::from_millis(1500));
    let after = drained.transactions().expect("stats");
    assert_eq!(after, before, "a drained PgBouncer takes no new session");
    cluster
        .cli(0, &["drain", &backend, "--undo"])
        .expect("vipx-agent drain --undo");
    assert_eq!(cluster.metric(0, &weight), Some(1.0));
    assert!(
        cluster.cli(0, &["drain", "10.77.0.99:1"]).is_err(),
        "draining an unknown backend is an error"
    );
}
