//! Quorum against split brain (`[cluster] members`, a witness):
//! - 3 nodes, the MASTER cut off from the other two (the client still
//!   reaches every node): the majority elects a new MASTER, the isolated
//!   node drops the VIP, and at no instant do two nodes answer for it
//!   (ARP from the client, and the VIP traffic each node's port receives);
//! - 2 nodes and a witness: the side that keeps the witness wins, the
//!   other drops the VIP; the nodes cut from each other but both seeing
//!   the witness: nothing changes; the witness lost while both nodes see
//!   each other: nothing changes;
//! - `--ha-debug`: a partition fences nothing, and logs what it would do.
//!
//! Partitions are nftables rules in the hosts' namespaces (both ways), so
//! the client and the backends keep reaching both sides, as in a real
//! split brain.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use vipx_lab::arp::{ArpObserver, ObserveOptions};
use vipx_lab::capture::{CaptureLog, PortCapture};
use vipx_lab::probe::{Prober, ProberOptions};
use vipx_lab::walltime::WallTime;
use vipx_lab::{Cluster, ClusterOptions, Membership, Signal, VIP_PORT, agent_bin, keepalived};

/// Time for a takeover or a step-down.
const MOVE: Duration = Duration::from_secs(10);
/// How long "nothing changes" is watched.
const STEADY: Duration = Duration::from_secs(2);
/// Observers stop by themselves after this long.
const OBSERVE_LIMIT: Duration = Duration::from_secs(60);
/// VIP frames may reach the old MASTER's port this long after the new
/// MASTER's first (frames already on their way when the client followed
/// the gratuitous ARP; see `lab_single_owner`).
const IN_FLIGHT: Duration = Duration::from_millis(5);

fn options(nodes: usize, witness: bool) -> ClusterOptions {
    // The fast heartbeat, as in production: the majority detects the lost
    // MASTER in 20 ms, well before the quorum timeout; the gate makes it
    // wait for the isolated MASTER to fence itself.
    ClusterOptions {
        advert_interval_ms: 10,
        heartbeat: Some(Duration::from_millis(2)),
        group_options: "heartbeat_multiplier = 10\n".into(),
        membership: Some(Membership {
            witness,
            ..Membership::default()
        }),
        ..ClusterOptions::new(nodes, agent_bin())
    }
}

fn quorum(cluster: &Cluster, index: usize) -> Option<f64> {
    cluster.metric(index, "vipx_cluster_quorum")
}

fn wait_quorum_everywhere(cluster: &Cluster) {
    for i in 0..cluster.nodes.len() {
        support::wait_for(MOVE, || (quorum(cluster, i) == Some(1.0)).then_some(()))
            .unwrap_or_else(|| panic!("node {i} holds the quorum once every voter is up"));
    }
}

fn log(cluster: &Cluster, index: usize) -> String {
    std::fs::read_to_string(cluster.nodes[index].host.log_path("vipx-agent")).unwrap_or_default()
}

/// Watches who answers for the VIP while `scenario` runs.
struct Watch {
    arp: ArpObserver,
    prober: Prober,
    captures: Vec<PortCapture>,
}

impl Watch {
    fn start(cluster: &Cluster) -> Self {
        let vip = cluster.vip();
        let filter = format!("dst host {vip} and tcp");
        Self {
            arp: ArpObserver::start(
                &cluster.client,
                vip,
                ObserveOptions {
                    interval: Duration::from_millis(2),
                    limit: OBSERVE_LIMIT,
                },
            )
            .expect("start the ARP observer"),
            prober: Prober::start(
                &cluster.client,
                SocketAddr::from((vip, VIP_PORT)),
                ProberOptions {
                    interval: Duration::from_millis(3),
                    timeout: Duration::from_millis(50),
                    limit: OBSERVE_LIMIT,
                },
            ),
            captures: cluster
                .nodes
                .iter()
                .map(|n| PortCapture::start(&n.host, "vip", &filter).expect("tcpdump on a port"))
                .collect(),
        }
    }

    /// Asserts one owner at a time from `from` on: no ARP request answered
    /// by two MACs, and once `new` received VIP traffic, no other node
    /// does (but for frames in flight).
    fn one_owner(self, from: WallTime, new: usize) {
        let _ = self.prober.finish().expect("the client's connections");
        let arp = self.arp.finish().expect("the ARP observer's log");
        let traffic: Vec<CaptureLog> = self
            .captures
            .into_iter()
            .map(|c| c.finish().expect("tcpdump's capture"))
            .collect();
        let doubly: Vec<_> = arp
            .answering_macs(from)
            .into_iter()
            .filter(|(_, macs)| {
                let mut macs = macs.clone();
                macs.sort_by_key(|m| m.0);
                macs.dedup();
                macs.len() > 1
            })
            .collect();
        assert!(
            doubly.is_empty(),
            "{} ARP requests answered by two nodes after the cut, the first: {:?}",
            doubly.len(),
            doubly.iter().take(3).collect::<Vec<_>>()
        );
        let first_new = traffic[new]
            .packets
            .iter()
            .map(|p| p.at)
            .filter(|at| *at >= from)
            .min()
            .expect("the new MASTER received VIP traffic");
        for (i, log) in traffic.iter().enumerate() {
            if i == new {
                continue;
            }
            let late: Vec<_> = log
                .packets
                .iter()
                .filter(|p| p.at.micros_since(first_new) > IN_FLIGHT.as_micros() as i64)
                .collect();
            assert!(
                late.is_empty(),
                "node {i} still received {} VIP frames after node {new} had its first (first late: {:?})",
                late.len(),
                late.first().map(|p| p.at.micros_since(first_new))
            );
        }
    }
}

/// `[cluster] fence`: a command that appends "NODE ADDRESS" to `file`.
fn fence_into(file: &std::path::Path) -> String {
    format!(
        "fence = [\"/bin/sh\", \"-c\", \"echo {{node}} {{address}} >> {}\"]\n",
        file.display()
    )
}

#[test]
fn three_nodes_the_cut_off_master_fences_itself_and_the_majority_takes_over() {
    let dir = tempfile::tempdir().expect("a directory for the fence log");
    let fenced = dir.path().join("fenced");
    let mut opts = options(3, false);
    if let Some(m) = opts.membership.as_mut() {
        m.extra = fence_into(&fenced);
    }
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    wait_quorum_everywhere(&cluster);
    let watch = Watch::start(&cluster);
    std::thread::sleep(Duration::from_millis(300));
    let cut = WallTime::now();
    Cluster::partition(
        &[&cluster.nodes[0].host],
        &[&cluster.nodes[1].host, &cluster.nodes[2].host],
    )
    .expect("cut node 0 off from nodes 1 and 2");
    cluster
        .wait_master(1, MOVE)
        .expect("the majority's best node takes over");
    support::wait_for(MOVE, || (!cluster.is_master(0)).then_some(()))
        .expect("the isolated MASTER gives the VIP up");
    std::thread::sleep(Duration::from_secs(1));
    watch.one_owner(cut, 1);
    assert_eq!(quorum(&cluster, 0), Some(0.0), "node 0 sees 1 of 3 voters");
    assert!(
        !keepalived::holds(&cluster.nodes[0].host, cluster.vip()),
        "the isolated node removed the VIP from its interface"
    );
    assert!(
        log(&cluster, 0).contains("lost the cluster's quorum"),
        "node 0 logged its self-fencing"
    );
    assert!(
        cluster.is_only_master(1),
        "node 1 alone is MASTER during the partition"
    );
    // Node 1 fenced the MASTER it took over from, in the background.
    let n0 = format!("{}-n1 {}", cluster.lab.id(), cluster.nodes[0].host.ipv4());
    support::wait_for(MOVE, || {
        std::fs::read_to_string(&fenced)
            .ok()
            .filter(|text| text.lines().any(|l| l == n0))
    })
    .expect("node 1 ran the fence command against node 0");
    let series = format!(
        "vipx_fence_runs_total{{node=\"{}-n1\",result=\"fenced\"}}",
        cluster.lab.id()
    );
    assert_eq!(cluster.metric(1, &series), Some(1.0), "{series}");
    // Healed: node 0 has the quorum back and, first in priority, preempts.
    Cluster::heal(&[
        &cluster.nodes[0].host,
        &cluster.nodes[1].host,
        &cluster.nodes[2].host,
    ])
    .expect("heal the partition");
    cluster
        .wait_master(0, MOVE)
        .expect("node 0 returns and preempts");
    support::wait_for(MOVE, || cluster.is_only_master(0).then_some(()))
        .expect("node 0 alone is MASTER after the partition healed");
}

#[test]
fn two_nodes_and_a_witness_the_side_with_the_witness_wins() {
    let cluster = Cluster::up(&options(2, true)).expect("bring the cluster up");
    wait_quorum_everywhere(&cluster);
    let witness = cluster.witness.as_ref().expect("a witness").host.clone();
    let [n0, n1] = [0, 1].map(|i| cluster.nodes[i].host.clone());

    // The nodes cut from each other, both seeing the witness: the MASTER
    // keeps the witness's vote, the backup has no quorum and claims
    // nothing.
    Cluster::partition(&[&n0], &[&n1]).expect("cut node 0 from node 1");
    std::thread::sleep(STEADY);
    assert!(
        cluster.is_only_master(0),
        "node 0 holds the VIP alone while it keeps the witness"
    );
    assert_eq!(quorum(&cluster, 1), Some(0.0), "node 1 has no quorum");
    assert!(
        log(&cluster, 1).contains("claim refused"),
        "node 1 wanted to take over and the cluster refused it"
    );
    Cluster::heal(&[&n0, &n1]).expect("heal");
    wait_quorum_everywhere(&cluster);

    // The MASTER cut off from both its peer and the witness: it drops
    // the VIP, and node 1, with the witness, takes over.
    let watch = Watch::start(&cluster);
    std::thread::sleep(Duration::from_millis(300));
    let cut = WallTime::now();
    Cluster::partition(&[&n0], &[&n1, &witness]).expect("cut node 0 off");
    cluster
        .wait_master(1, MOVE)
        .expect("node 1 takes over with the witness");
    support::wait_for(MOVE, || (!cluster.is_master(0)).then_some(()))
        .expect("node 0 gives the VIP up");
    std::thread::sleep(Duration::from_secs(1));
    watch.one_owner(cut, 1);
    assert!(
        !keepalived::holds(&n0, cluster.vip()),
        "node 0 removed the VIP"
    );
    Cluster::heal(&[&n0, &n1, &witness]).expect("heal");
    cluster
        .wait_master(0, MOVE)
        .expect("node 0 returns and preempts");
    wait_quorum_everywhere(&cluster);

    // The witness lost while both nodes see each other: nothing changes.
    let pid = cluster.witness.as_ref().expect("a witness").pid;
    cluster
        .lab
        .kill(pid, Signal::SIGKILL)
        .expect("kill the witness");
    std::thread::sleep(STEADY);
    assert!(cluster.is_only_master(0), "node 0 stays the only MASTER");
    assert_eq!(quorum(&cluster, 0), Some(1.0), "2 of 3 voters: quorum");
    assert_eq!(quorum(&cluster, 1), Some(1.0), "2 of 3 voters: quorum");
}

#[test]
fn ha_debug_a_partition_fences_nothing_and_logs_what_it_would_do() {
    let dir = tempfile::tempdir().expect("a directory for the fence log");
    let fenced = dir.path().join("fenced");
    let mut opts = ClusterOptions {
        agent_args: vec!["--ha-debug".into()],
        ..options(3, false)
    };
    if let Some(m) = opts.membership.as_mut() {
        m.extra = fence_into(&fenced);
    }
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    wait_quorum_everywhere(&cluster);
    Cluster::partition(
        &[&cluster.nodes[0].host],
        &[&cluster.nodes[1].host, &cluster.nodes[2].host],
    )
    .expect("cut node 0 off");
    support::wait_for(MOVE, || (quorum(&cluster, 0) == Some(0.0)).then_some(()))
        .expect("node 0 loses the quorum");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        cluster.is_master(0),
        "in HA debug mode node 0 does not fence itself: still MASTER"
    );
    let text = log(&cluster, 0);
    assert!(
        text.contains("HA debug: lost the cluster's quorum") && text.contains("would fence itself"),
        "node 0 logged the self-fencing it would do:\n{}",
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(
        !text.contains("fencing itself"),
        "node 0 did not fence itself"
    );
    assert!(
        !cluster.events(0).events.iter().any(|e| e.to == "FAULT"),
        "no group of node 0 went FAULT"
    );
    // The majority took over, and logged the fencing it would do.
    let n0 = format!("{}-n1", cluster.lab.id());
    support::wait_for(MOVE, || {
        log(&cluster, 1)
            .contains(&format!("HA debug: would run the fence command for {n0}"))
            .then_some(())
    })
    .expect("node 1 logs the fence command it would run");
    assert!(!fenced.exists(), "no fence command ran");
}

#[test]
fn the_cluster_endpoints_take_the_secret_and_a_listed_voter() {
    let cluster = Cluster::up(&ClusterOptions {
        membership: Some(Membership::default()),
        ..ClusterOptions::new(3, agent_bin())
    })
    .expect("bring the cluster up");
    wait_quorum_everywhere(&cluster);
    let secret = std::fs::read_to_string(cluster.lab.tmp_dir().join("cluster.secret"))
        .expect("the lab's cluster secret");
    let base = format!("http://{}/api/v1/ha", cluster.nodes[0].api);
    let ping = r#"{"node":"x","epoch":1}"#;
    let curl = |method: &str, path: &str, body: Option<&str>, bearer: Option<&str>| {
        vipx_lab::http::curl(
            &cluster.client,
            method,
            &format!("{base}/{path}"),
            body,
            bearer,
        )
        .expect("curl from the client")
    };
    for (method, path, body) in [
        ("POST", "register", Some(ping)),
        ("POST", "ping", Some(ping)),
        ("GET", "nodes", None),
    ] {
        assert_eq!(
            curl(method, path, body, None).0,
            401,
            "{path} without the secret"
        );
        assert_eq!(
            curl(
                method,
                path,
                body,
                Some("not the cluster's secret, though long")
            )
            .0,
            401,
            "{path} with a wrong secret"
        );
    }
    // The secret alone is not enough: the client is no voter.
    let own_name = format!("{}-n2", cluster.lab.id());
    let as_n2 = format!(r#"{{"node":"{own_name}","epoch":1}}"#);
    assert_eq!(
        curl("POST", "ping", Some(&as_n2), Some(secret.trim())).0,
        403,
        "a voter's name from another address"
    );
    let (code, nodes) = curl("GET", "nodes", None, Some(secret.trim()));
    assert_eq!(code, 200, "{nodes}");
    let nodes: serde_json::Value = serde_json::from_str(&nodes).expect("JSON");
    assert_eq!(nodes["quorum"]["held"], true, "{nodes}");
    assert_eq!(nodes["quorum"]["voters"], 3, "{nodes}");
    let voters = nodes["voters"].as_array().expect("voters");
    assert_eq!(voters.len(), 3, "{nodes}");
    assert!(
        voters.iter().all(|v| v["up"] == true),
        "every voter up: {nodes}"
    );
    // State changes take the cluster secret too (no [api] secret_file
    // here): through the VIP, and from the node itself.
    let backend = cluster.backend_addr(0);
    let drain = format!(r#"{{"backend":"{backend}","drain":true}}"#);
    let through_vip = format!(
        "http://{}:{}/api/v1/drain",
        cluster.vip(),
        cluster.nodes[0].api.port()
    );
    let post = |host: &vipx_lab::Host, url: &str, bearer: Option<&str>| {
        vipx_lab::http::curl(host, "POST", url, Some(&drain), bearer)
            .expect("curl")
            .0
    };
    assert_eq!(
        post(&cluster.client, &through_vip, None),
        401,
        "a drain through the VIP"
    );
    let local = format!(
        "http://127.0.0.1:{}/api/v1/drain",
        cluster.nodes[0].api.port()
    );
    assert_eq!(
        post(&cluster.nodes[0].host, &local, None),
        401,
        "from the node, without the secret"
    );
    assert_eq!(
        post(&cluster.nodes[0].host, &local, Some(secret.trim())),
        200,
        "the cluster secret opens"
    );
    // The command line shows the same, with the config file's secret.
    let table = cluster.cli(0, &["nodes"]).expect("vipx-agent nodes");
    assert!(
        table.contains("quorum held, 3 of 3 voters"),
        "vipx-agent nodes:\n{table}"
    );
    let text = log(&cluster, 0);
    for peer in ["n2", "n3"] {
        let name = format!("{}-{peer}", cluster.lab.id());
        assert!(
            text.contains(&format!("registered a new node: {name}"))
                && text.contains(&format!("joined the candidate: {name}")),
            "node 0 logged {name}'s registration"
        );
    }
    assert!(text.contains("API: refused"), "the refusals are logged");
    assert!(!text.contains(secret.trim()), "the secret is never logged");
}
