//! Forged and replayed heartbeats in the lab (issue 11), with a cluster
//! secret: the client host sends heartbeats from the MASTER's own address
//! with TTL 255 (past GTSM and the peer list). Untagged, tagged under
//! another key, or authentic but old (a replay), they neither make the
//! backup take over (a forged farewell) nor keep it from taking over when
//! the MASTER really dies (a forged stream of "MASTER").

mod support;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use vipx_agent::{events::GroupState, heartbeat::derive_key};
use vipx_common::{
    Heartbeat, HeartbeatKey,
    peer::{DEFAULT_HEARTBEAT_PORT, STATE_MASTER},
};
use vipx_lab::{Cluster, ClusterOptions, Host, Signal, agent_bin};

const TAKEOVER: Duration = Duration::from_secs(10);
const SECRET: &str = "a cluster secret of the lab, 32 b";

/// 1 s adverts (VRRP alone would take 3.6 s), heartbeats every 2 ms,
/// detection after 5 missed, every node with the cluster secret.
fn options(secret: &std::path::Path) -> ClusterOptions {
    ClusterOptions {
        advert_interval_ms: 1000,
        heartbeat: Some(Duration::from_millis(2)),
        group_options: "heartbeat_multiplier = 5\n".into(),
        extra_config: format!("\n[cluster]\nsecret_file = \"{}\"\n", secret.display()),
        ..ClusterOptions::new(2, agent_bin())
    }
}

/// A UDP socket in `host`'s namespace that sends from `from` (not its own
/// address: `IP_TRANSPARENT`), with TTL 255 as if sent on the link.
fn spoofing_socket(host: &Host, from: IpAddr) -> UdpSocket {
    host.enter(move || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("a UDP socket");
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_IP,
                libc::IP_TRANSPARENT,
                (&raw const on).cast(),
                std::mem::size_of_val(&on) as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "IP_TRANSPARENT: {}", std::io::Error::last_os_error());
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .expect("bind to the master's address");
        let socket = UdpSocket::from(socket);
        socket.set_ttl(255).expect("TTL 255");
        socket
    })
    .expect("enter the client's namespace")
}

fn beat(priority: u8, epoch: u64, seq: u32) -> Heartbeat {
    Heartbeat {
        vrid: 51,
        priority,
        state: STATE_MASTER,
        epoch,
        seq,
        interval_us: 2000,
        detect_mult: 5,
        tag: 0,
    }
}

fn counter(cluster: &Cluster, index: usize, reason: &str) -> f64 {
    cluster
        .metric(
            index,
            &format!("vipx_xdp_decisions_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or(0.0)
}

#[test]
fn forged_and_replayed_heartbeats_neither_force_nor_block_a_takeover() {
    let dir = tempfile::tempdir().expect("a directory for the secret");
    let secret = dir.path().join("cluster.secret");
    std::fs::write(&secret, SECRET).expect("write the secret");
    let cluster = Cluster::up(&options(&secret)).expect("bring the cluster up");
    cluster
        .wait_master(0, TAKEOVER)
        .expect("node 0 becomes MASTER");
    support::wait_for(Duration::from_secs(5), || {
        cluster
            .metric(1, "vipx_heartbeats_received_total{group=\"pg\"}")
            .filter(|n| *n >= 100.0)
    })
    .expect("node 1 records node 0's authenticated heartbeats");

    let master = IpAddr::V4(cluster.nodes[0].host.ipv4());
    let target = SocketAddr::new(cluster.nodes[1].host.ipv4().into(), DEFAULT_HEARTBEAT_PORT);
    let socket = spoofing_socket(&cluster.client, master);
    let key = derive_key(SECRET.as_bytes());
    let wrong = HeartbeatKey { k0: 1, k1: 2 };
    let (bad_before, replay_before, ttl_before) = (
        counter(&cluster, 1, "heartbeat_bad_tag"),
        counter(&cluster, 1, "heartbeat_replay"),
        counter(&cluster, 1, "ttl_not_255"),
    );

    // 0. Farewells that are authentic but come from off the link (TTL 64,
    //    as a host routed to the segment sends them): GTSM drops them
    //    before their tag is even read. (Accepted, their epoch, newer than
    //    any, would also make every real heartbeat after them a replay.)
    let routed = spoofing_socket(&cluster.client, master);
    routed.set_ttl(64).expect("TTL 64");
    for seq in 0..100u32 {
        routed
            .send_to(&beat(0, u64::MAX, seq).encode(Some(&key)), target)
            .expect("send a routed farewell");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(routed);
    support::wait_for(Duration::from_secs(5), || {
        (counter(&cluster, 1, "ttl_not_255") - ttl_before >= 100.0).then_some(())
    })
    .expect("node 1's XDP drops the 100 farewells of TTL 64 (ttl_not_255)");

    // 1. Forged farewells (priority 0: "take over at once"): untagged,
    //    under another key, and authentic but from an old epoch (what a
    //    replay of a heartbeat recorded earlier looks like).
    for seq in 0..100u32 {
        for (payload, _) in [
            (beat(0, u64::MAX, seq).encode(None), "untagged"),
            (beat(0, u64::MAX, seq).encode(Some(&wrong)), "another key"),
            (beat(0, 1, seq).encode(Some(&key)), "replayed"),
        ] {
            socket.send_to(&payload, target).expect("send a forgery");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(cluster.is_master(0), "node 0 is still MASTER");
    assert!(
        !cluster.is_master(1) && !cluster.events(1).became(GroupState::Master, ""),
        "node 1 did not take over on a forgery: {}",
        cluster.events(1)
    );
    let counted = support::wait_for(Duration::from_secs(5), || {
        let bad = counter(&cluster, 1, "heartbeat_bad_tag") - bad_before;
        let replayed = counter(&cluster, 1, "heartbeat_replay") - replay_before;
        (bad >= 200.0 && replayed >= 100.0).then_some((bad, replayed))
    });
    assert!(
        counted.is_some(),
        "node 1's XDP drops the 200 forged and 100 replayed farewells: bad tag {}, replay {}",
        counter(&cluster, 1, "heartbeat_bad_tag") - bad_before,
        counter(&cluster, 1, "heartbeat_replay") - replay_before
    );

    // 2. A forged stream of "MASTER, alive" while the MASTER dies: the
    //    backup still detects the loss on the heartbeat (VRRP alone would
    //    take 3.6 s and the timeline would say so).
    let stop = Arc::new(AtomicBool::new(false));
    let forger = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let until = Instant::now() + TAKEOVER + Duration::from_secs(5);
            let mut seq = 0u32;
            while !stop.load(Ordering::Acquire) && Instant::now() < until {
                for payload in [
                    beat(150, u64::MAX, seq).encode(None),
                    beat(150, u64::MAX, seq).encode(Some(&wrong)),
                    beat(150, 1, seq).encode(Some(&key)),
                ] {
                    let _ = socket.send_to(&payload, target);
                }
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    cluster
        .lab
        .kill(cluster.nodes[0].agent, Signal::SIGKILL)
        .expect("kill -9 the master's agent");
    let taken = cluster.wait_master(1, TAKEOVER);
    stop.store(true, Ordering::Release);
    forger.join().expect("the forger thread");
    taken.expect("node 1 takes over although forged heartbeats say MASTER");
    let timeline = cluster.events(1);
    assert!(
        timeline.became(
            GroupState::Master,
            &format!("heartbeats from master {master} stopped")
        ),
        "taken over on the heartbeat's detection, not VRRP's timer: {timeline}"
    );
}
