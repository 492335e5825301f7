//! VRRPv3 over IPv6 in the lab (RFC 5798 section 5.1.2): a group holding an
//! IPv6 VIP, elected with 10 ms adverts to ff02::12 from the nodes'
//! link-local addresses. The master holds the VIP and answers ping; a
//! killed master is replaced; the old master, back, preempts. A captured
//! advert has the bytes the RFC asks for. keepalived 2.2 shares the IPv6
//! VRID with vipx both ways. vipx's fast heartbeat runs over IPv6 too.

mod support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use vipx_agent::{
    election::{VRRP_MULTICAST_V6, VRRP_PROTOCOL, parse},
    events::GroupState,
};
use vipx_lab::{Cluster, ClusterOptions, Host, ProcSpec, Signal, agent_bin, keepalived};

const TAKEOVER: Duration = Duration::from_secs(10);

fn options(nodes: usize) -> ClusterOptions {
    ClusterOptions {
        ipv6_vip: true,
        advert_interval_ms: 10,
        ..ClusterOptions::new(nodes, agent_bin())
    }
}

/// Whether node `index` reports itself MASTER of the IPv6 group.
fn is_master6(cluster: &Cluster, index: usize) -> bool {
    let series = format!("vipx_group_master{{group=\"{}\"}}", Cluster::VIP6_GROUP);
    cluster.metric(index, &series) == Some(1.0)
}

fn wait_master6(cluster: &Cluster, index: usize) {
    support::wait_for(TAKEOVER, || is_master6(cluster, index).then_some(())).unwrap_or_else(|| {
        panic!(
            "{} did not become MASTER of {} within {TAKEOVER:?}; its log:\n{}",
            cluster.nodes[index].host.name(),
            Cluster::VIP6_GROUP,
            cluster.lab.log_tail(cluster.nodes[index].agent, 30)
        )
    });
}

/// `host`'s IPv6 addresses on `eth0`, as `ip -6 addr` shows them.
fn addrs6(host: &Host) -> String {
    host.run_stdout(&["ip", "-6", "addr", "show", "dev", "eth0"])
        .expect("ip -6 addr")
}

/// Whether `host` holds `vip` on `eth0`, usable (not tentative).
fn holds(host: &Host, vip: Ipv6Addr) -> bool {
    let shown = addrs6(host);
    shown
        .lines()
        .any(|l| l.contains(&format!("inet6 {vip}/64")) && !l.contains("tentative"))
}

/// The VIP answers `ping -6` from the client, and the answer came from
/// `owner`: the client's neighbour entry for the VIP carries its MAC
/// (retried for a few seconds while the client follows the unsolicited NA).
/// `Err` says what the client saw last.
fn answers_from(cluster: &Cluster, owner: &Host) -> Result<(), String> {
    let vip = cluster.vip6().to_string();
    let mut last = String::new();
    support::wait_for(Duration::from_secs(5), || {
        let ping = cluster
            .client
            .run_unchecked(&["ping", "-6", "-n", "-c", "1", "-W", "1", &vip])
            .ok()?;
        let neigh = cluster
            .client
            .run_stdout(&["ip", "-6", "neigh", "show", &vip, "dev", "eth0"])
            .ok()?;
        last = format!(
            "ping: {}\nneighbour: {neigh}",
            String::from_utf8_lossy(&ping.stdout).trim()
        );
        (ping.status.success() && neigh.contains(owner.mac())).then_some(())
    })
    .ok_or(last)
}

#[test]
fn an_ipv6_vip_fails_over_and_the_old_master_preempts_it_back() {
    let mut cluster = Cluster::up(&options(2)).expect("bring the cluster up");
    let vip = cluster.vip6();
    wait_master6(&cluster, 0);
    assert!(!is_master6(&cluster, 1), "one master only");
    let (n1, n2) = (cluster.nodes[0].host.clone(), cluster.nodes[1].host.clone());
    assert!(holds(&n1, vip), "the VIP is on n1:\n{}", addrs6(&n1));
    assert!(!holds(&n2, vip), "and not on n2:\n{}", addrs6(&n2));
    answers_from(&cluster, &n1)
        .unwrap_or_else(|e| panic!("ping -6 answers from n1 (n1 is {}): {e}", n1.mac()));
    // n2's election starts once its link-local address leaves DAD.
    let received = format!(
        "vipx_vrrp_adverts_received_total{{group=\"{}\"}}",
        Cluster::VIP6_GROUP
    );
    support::wait_for(TAKEOVER, || {
        cluster.metric(1, &received).filter(|n| *n > 0.0)
    })
    .expect("n2 hears n1's IPv6 adverts");
    assert!(!is_master6(&cluster, 1), "n2 stays BACKUP");
    assert_eq!(
        cluster.metric(
            1,
            &format!(
                "vipx_vrrp_adverts_invalid_total{{group=\"{}\"}}",
                Cluster::VIP6_GROUP
            )
        ),
        Some(0.0),
        "none of them is rejected (hop limit, checksum)"
    );

    // kill -9: n2 takes over after Master_Down_Interval.
    let killed = cluster.nodes[0].agent;
    cluster
        .lab
        .kill(killed, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    cluster
        .lab
        .wait_exit(killed, Duration::from_secs(5))
        .expect("the killed agent is reaped");
    wait_master6(&cluster, 1);
    assert!(holds(&n2, vip), "the VIP is on n2:\n{}", addrs6(&n2));
    answers_from(&cluster, &n2)
        .unwrap_or_else(|e| panic!("ping -6 answers from n2 (n2 is {}): {e}", n2.mac()));

    // n1 returns with the higher priority and preempts.
    cluster.restart_agent(0).expect("start n1's agent again");
    wait_master6(&cluster, 0);
    support::wait_for(TAKEOVER, || (!is_master6(&cluster, 1)).then_some(()))
        .expect("n2 steps down");
    support::wait_for(TAKEOVER, || (!holds(&n2, vip)).then_some(())).unwrap_or_else(|| {
        panic!("n2 released the VIP:\n{}", addrs6(&n2));
    });
    assert!(holds(&n1, vip), "the VIP is back on n1:\n{}", addrs6(&n1));
    answers_from(&cluster, &n1)
        .unwrap_or_else(|e| panic!("ping -6 answers from n1 again (n1 is {}): {e}", n1.mac()));
}

#[test]
fn the_heartbeat_over_ipv6_detects_a_killed_master() {
    // 1 s adverts: VRRP would need 3.6 s; heartbeats every 5 ms between
    // the nodes' global IPv6 addresses, lost after 3 missed (15 ms).
    let opts = ClusterOptions {
        advert_interval_ms: 1000,
        heartbeat: Some(Duration::from_millis(5)),
        ..options(2)
    };
    let cluster = Cluster::up(&opts).expect("bring the cluster up");
    wait_master6(&cluster, 0);
    let received = format!(
        "vipx_heartbeats_received_total{{group=\"{}\"}}",
        Cluster::VIP6_GROUP
    );
    support::wait_for(TAKEOVER, || {
        cluster.metric(1, &received).filter(|n| *n >= 100.0)
    })
    .unwrap_or_else(|| {
        panic!(
            "n2 records n1's IPv6 heartbeats; n2's log:\n{}",
            cluster.lab.log_tail(cluster.nodes[1].agent, 30)
        )
    });
    let master = cluster.nodes[0].host.clone();
    let master6 = addrs6(&master)
        .lines()
        .find_map(|l| {
            let addr = l.trim().strip_prefix("inet6 ")?.split('/').next()?;
            let addr: Ipv6Addr = addr.parse().ok()?;
            (!addr.is_unicast_link_local() && addr != cluster.vip6()).then_some(addr)
        })
        .expect("n1's global IPv6 address");
    cluster
        .lab
        .kill(cluster.nodes[0].agent, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    wait_master6(&cluster, 1);
    let timeline = cluster.events(1);
    assert!(
        timeline.became(
            GroupState::Master,
            &format!("heartbeats from master {master6} stopped")
        ),
        "the IPv6 group taken over on the heartbeat from {master6}, not on VRRP's timer: {timeline}"
    );
    let detection = cluster
        .metric(
            1,
            &format!(
                "vipx_group_last_detection_seconds{{group=\"{}\"}}",
                Cluster::VIP6_GROUP
            ),
        )
        .expect("the detection time of the IPv6 group");
    assert!(
        (0.015..1.0).contains(&detection),
        "detected after {detection} s: at least the detection time, far below Master_Down_Interval"
    );
}

/// The bytes of one IPv6 packet from `tcpdump -x` (hex from the IPv6
/// header on).
fn hex_packet(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .filter_map(|l| l.trim().split_once(":  "))
        .flat_map(|(_, hex)| hex.split_whitespace())
        .flat_map(|word| {
            (0..word.len())
                .step_by(2)
                .map(move |i| u8::from_str_radix(&word[i..i + 2], 16).expect("tcpdump hex"))
        })
        .collect()
}

/// The packets `tcpdump -x` printed: each header line followed by its hex
/// lines.
fn tcpdump_packets(out: &str) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in out.lines() {
        if line.starts_with(char::is_whitespace) {
            current.push(line);
        } else if !current.is_empty() {
            packets.push(hex_packet(&current));
            current.clear();
        }
    }
    if !current.is_empty() {
        packets.push(hex_packet(&current));
    }
    packets
}

#[test]
fn a_captured_ipv6_advert_is_what_rfc_5798_asks_for() {
    let cluster = Cluster::up(&options(1)).expect("bring the cluster up");
    wait_master6(&cluster, 0);
    let node = &cluster.nodes[0].host;
    let out = cluster
        .client
        .run_spec(
            &ProcSpec::new("timeout").args([
                "5",
                "tcpdump",
                "-n",
                "-i",
                "eth0",
                "-c",
                "3",
                "-x",
                "ip6 proto 112",
            ]),
            Duration::from_secs(10),
        )
        .expect("tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    let packets = tcpdump_packets(&text);
    assert_eq!(
        packets.len(),
        3,
        "three IPv6 VRRP packets within 5 s:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link_local = addrs6(node)
        .lines()
        .find_map(|l| {
            let addr = l.trim().strip_prefix("inet6 ")?.split('/').next()?;
            addr.parse::<Ipv6Addr>()
                .ok()
                .filter(Ipv6Addr::is_unicast_link_local)
        })
        .expect("the node's link-local address");
    for p in &packets {
        assert!(
            p.len() >= 40 + 8,
            "an IPv6 header and a VRRP header: {p:02x?}"
        );
        assert_eq!(p[0] >> 4, 6, "IPv6");
        assert_eq!(p[6], VRRP_PROTOCOL, "next header 112");
        assert_eq!(p[7], 255, "hop limit 255 (section 5.1.2.3)");
        let addr =
            |at: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&p[at..at + 16]).expect("16 bytes"));
        let (src, dst) = (addr(8), addr(24));
        assert_eq!(src, link_local, "source: the link-local address (5.1.2.1)");
        assert_eq!(dst, VRRP_MULTICAST_V6, "destination ff02::12 (5.1.2.2)");
        let payload_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
        let payload = &p[40..40 + payload_len];
        let advert = parse(IpAddr::V6(src), IpAddr::V6(dst), p[7], payload)
            .unwrap_or_else(|e| panic!("the advert parses, checksum included: {e}"));
        assert_eq!(advert.vrid, 52);
        assert_eq!(advert.priority, vipx_lab::node_priority(0));
        assert_eq!(advert.max_advert_int, 1, "10 ms = 1 centisecond");
        assert_eq!(advert.addrs, vec![IpAddr::V6(cluster.vip6())]);
    }
    println!(
        "captured advert from {link_local}: {:02x?}",
        packets.first().expect("a packet")
    );
}

#[test]
fn keepalived_and_vipx_hand_an_ipv6_vip_to_each_other() {
    let opts = ClusterOptions {
        advert_interval_ms: vipx_lab::ADVERT_INTERVAL_MS,
        ..options(1)
    };
    let mut cluster = Cluster::up(&opts).expect("bring the cluster up");
    wait_master6(&cluster, 0);
    let vip = cluster.vip6();
    let kad = cluster
        .lab
        .add_host("kad", &cluster.lab.v4(51))
        .expect("keepalived host");
    let spec = keepalived::KeepalivedSpec {
        vrid: 52,
        priority: 100,
        advert_ms: vipx_lab::ADVERT_INTERVAL_MS,
        vip,
        prefix_len: 64,
    };
    let keepalived = keepalived::start(&kad, &spec).expect("start keepalived");
    let keepalived_log = |cluster: &Cluster| cluster.lab.log_tail(keepalived, 30);

    // vipx (150) is MASTER: keepalived (100) hears it and stays BACKUP,
    // past its Master_Down_Interval many times over, once its link-local
    // address is usable (DAD, about 2 s after the host came up).
    std::thread::sleep(Duration::from_secs(3) + Duration::from_millis(15 * spec.advert_ms));
    assert!(
        !keepalived::holds(&kad, vip),
        "keepalived accepted vipx as MASTER:\n{}",
        keepalived_log(&cluster)
    );
    assert!(is_master6(&cluster, 0), "vipx stays MASTER");

    // vipx stops (priority 0): keepalived takes the VIP.
    cluster
        .lab
        .stop_process(cluster.nodes[0].agent)
        .expect("SIGTERM vipx");
    support::wait_for(TAKEOVER, || keepalived::holds(&kad, vip).then_some(())).unwrap_or_else(
        || {
            panic!(
                "keepalived did not take over:\n{}",
                keepalived_log(&cluster)
            )
        },
    );

    // vipx returns, hears keepalived's adverts and preempts it.
    cluster.restart_agent(0).expect("start vipx again");
    wait_master6(&cluster, 0);
    support::wait_for(TAKEOVER, || (!keepalived::holds(&kad, vip)).then_some(())).unwrap_or_else(
        || {
            panic!(
                "keepalived did not release the VIP:\n{}",
                keepalived_log(&cluster)
            )
        },
    );
    let series = |what: &str| {
        format!(
            "vipx_vrrp_adverts_{what}_total{{group=\"{}\"}}",
            Cluster::VIP6_GROUP
        )
    };
    assert!(
        cluster.metric(0, &series("received")).unwrap_or(0.0) > 0.0,
        "vipx parsed keepalived's IPv6 adverts"
    );
    assert_eq!(
        cluster.metric(0, &series("invalid")),
        Some(0.0),
        "no keepalived advert was rejected (hop limit, checksum)"
    );
    answers_from(&cluster, &cluster.nodes[0].host)
        .unwrap_or_else(|e| panic!("ping -6 answers from vipx: {e}"));
    cluster
        .lab
        .stop_process(keepalived)
        .expect("stop keepalived");
}
