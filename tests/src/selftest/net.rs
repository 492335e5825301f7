//! Hosts reach each other over the segment; an IPv4-only segment is silent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::{Lab, LabOptions, netns, xdp};

#[test]
fn two_hosts_ping_and_connect() {
    let lab = Lab::new(LabOptions::default()).expect("create lab");
    let n1 = lab.add_host("n1", &lab.v4(11)).expect("add n1");
    let n2 = lab.add_host("n2", &lab.v4(12)).expect("add n2");
    n1.add_addr(&lab.v6(11)).expect("add IPv6 to n1");
    n2.add_addr(&lab.v6(12)).expect("add IPv6 to n2");
    assert_eq!(n1.ipv4().to_string(), "10.77.0.11");
    assert_eq!(n1.mac(), "02:76:0a:4d:00:0b");
    assert!(
        n1.netns_name()
            .starts_with(&format!("vipx-{}-", std::process::id()))
    );

    n1.run(&["ping", "-c1", "-W2", &n2.ipv4().to_string()])
        .expect("ping n2 from n1");
    n1.run(&["ping", "-6", "-c1", "-W2", "fd00:77::c"])
        .expect("ping6 n2 from n1");

    // A listener in n2, a client in n1, both through `enter`.
    let listener = n2
        .enter(|| TcpListener::bind("0.0.0.0:7000"))
        .expect("enter n2")
        .expect("bind in n2");
    let server = std::thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        conn.write_all(b"hello").expect("write");
        peer
    });
    let target = SocketAddr::from((n2.ipv4(), 7000));
    let mut reply = String::new();
    let local = n1
        .enter(|| {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
                .expect("connect from n1");
            s.read_to_string(&mut reply).expect("read");
            s.local_addr().expect("local addr")
        })
        .expect("enter n1");
    assert_eq!(reply, "hello");
    assert_eq!(server.join().expect("server thread"), local);

    // Static neighbours and a cut cable.
    n1.add_neigh("10.77.0.99", "02:00:00:00:00:99")
        .expect("add neighbour");
    let neigh = n1
        .run_stdout(&["ip", "neigh", "show", "10.77.0.99"])
        .expect("ip neigh");
    assert!(
        neigh.contains("02:00:00:00:00:99") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    n2.set_connected(false).expect("unplug n2");
    let out = n1
        .run_unchecked(&["ping", "-c1", "-W1", &n2.ipv4().to_string()])
        .expect("run ping");
    assert!(!out.status.success(), "ping through a cut cable succeeded");
    n2.set_connected(true).expect("plug n2");
    n1.run(&["ping", "-c1", "-W2", &n2.ipv4().to_string()])
        .expect("ping n2 after replug");

    // `run` reports failures with the command line and stderr.
    let err = n1
        .run(&["ls", "/nonexistent-vipx"])
        .expect_err("ls must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("[n1] ls /nonexistent-vipx") && msg.contains("No such file"),
        "{msg}"
    );
}

#[test]
fn ipv4_only_segment_is_silent() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    // Host `a`: `ip link set a ...` would read "a" as the keyword `address`.
    let a = lab.add_host("a", &lab.v4(21)).expect("add a");
    let b = lab.add_host("b", &lab.v4(22)).expect("add b");
    for h in [&a, &b] {
        let addrs = h.run_stdout(&["ip", "addr"]).expect("ip addr");
        assert!(
            !addrs.contains("inet6"),
            "IPv6 address on {}: {addrs}",
            h.name()
        );
    }
    assert_eq!(
        a.read_sysctl("net.ipv6.conf.eth0.disable_ipv6")
            .expect("sysctl"),
        "1"
    );
    for dev in ["br0", "a", "b"] {
        let key = format!("net.ipv6.conf.{dev}.disable_ipv6");
        let v = netns::read_sysctl(lab.hub_netns(), &key).expect("hub sysctl");
        assert_eq!(v, "1", "IPv6 on {dev} in the hub");
    }
    // A switch runs no netfilter on what it forwards (with br_netfilter
    // loaded; without it the keys do not exist).
    for proto in ["iptables", "ip6tables", "arptables"] {
        let key = format!("net.bridge.bridge-nf-call-{proto}");
        if let Ok(v) = netns::read_sysctl(lab.hub_netns(), &key) {
            assert_eq!(v, "0", "{key} in the hub");
        }
    }
    let port = lab
        .hub_run(&["ip", "link", "show", "dev", "a"])
        .expect("ip link");
    let port = String::from_utf8_lossy(&port.stdout);
    assert!(
        port.contains("xdp"),
        "no pass-through XDP on the bridge port: {port}"
    );

    // Nobody sends: nothing moves, neither on eth0 nor on its bridge port.
    std::thread::sleep(Duration::from_secs(1));
    let before = a.link_stats("eth0").expect("stats before");
    let port_before = a.peer_link_stats().expect("port stats before");
    std::thread::sleep(Duration::from_secs(1));
    let after = a.link_stats("eth0").expect("stats after");
    let port_after = a.peer_link_stats().expect("port stats after");
    assert_eq!(before, after, "packets moved on a's eth0");
    assert_eq!(port_before, port_after, "packets moved on a's bridge port");
    // The counters do count: a ping is an ARP exchange plus echo and reply.
    b.run(&["ping", "-c1", "-W2", &a.ipv4().to_string()])
        .expect("ping a from b");
    let pinged = a.link_stats("eth0").expect("stats after ping");
    assert!(
        pinged.rx_packets >= after.rx_packets + 2,
        "{after:?} -> {pinged:?}"
    );
}

#[test]
fn enter_resumes_panics() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let h = lab.add_host("e1", &lab.v4(61)).expect("add e1");
    let devs = h
        .enter(|| std::fs::read_to_string("/proc/thread-self/net/dev"))
        .expect("enter")
        .expect("read net/dev");
    assert!(devs.contains("eth0:"), "{devs}");
    let caught = std::panic::catch_unwind(|| {
        h.enter(|| panic!("inside (expected by the test)"))
            .expect("enter")
    });
    let payload = caught.expect_err("the panic must reach the caller");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"inside (expected by the test)")
    );
}

#[test]
fn xdp_tx_from_a_host_reaches_the_segment() {
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let r = lab.add_host("r", &lab.v4(71)).expect("add r");
    let s = lab.add_host("s", &lab.v4(72)).expect("add s");
    // r reflects every frame it receives straight back out of eth0.
    let _link = xdp::attach_return_program(r.netns_name(), "eth0", xdp::XDP_TX)
        .expect("attach XDP_TX to r");
    let before = s.link_stats("eth0").expect("stats before");
    // s's ARP requests for r come back to s (broadcast, flooded by the bridge).
    let out = s
        .run_unchecked(&["ping", "-c2", "-i0.2", "-W1", &r.ipv4().to_string()])
        .expect("run ping");
    assert!(
        !out.status.success(),
        "r answered although XDP reflects everything"
    );
    let after = s.link_stats("eth0").expect("stats after");
    assert!(
        after.rx_packets >= before.rx_packets + 2,
        "reflected frames lost: {before:?} -> {after:?}"
    );
    let port = r.peer_link_stats().expect("port stats");
    assert!(port.rx_packets >= 2 && port.rx_dropped == 0, "{port:?}");
}
