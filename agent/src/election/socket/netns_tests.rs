//! [`VrrpSocket`] against a real kernel: two throwaway namespaces joined by
//! a veth pair (the VIP tests' lab), an advert sent from A, received in B
//! and captured on B's `eth0`. Needs root; skipped (with a note) otherwise.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::election::{
    Advert, VRRP_MULTICAST_V4, VRRP_MULTICAST_V6, VRRP_PROTOCOL, VRRP_TTL, build, parse,
};
use crate::vip::netns_tests::{Capture, Lab, in_netns, ip, join};

const PATIENCE: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime in the test namespace")
}

fn advert(addrs: Vec<IpAddr>) -> Advert {
    Advert {
        vrid: 52,
        priority: 150,
        max_advert_int: 1,
        addrs,
    }
}

/// Opens a socket in namespace `ns` for the VIPs' family, tells `addr_tx`
/// its source once usable, and returns the next `count` packets received.
fn receiver(
    ns: &str,
    ipv6: bool,
    count: usize,
    addr_tx: mpsc::Sender<IpAddr>,
) -> std::thread::JoinHandle<Vec<Received>> {
    in_netns(ns, move || {
        runtime().block_on(async move {
            let source = wait_source("test", "eth0", ipv6, &[], &[])
                .await
                .expect("B's source address");
            let socket = VrrpSocket::open("eth0", source).expect("B's VRRP socket");
            addr_tx.send(source).expect("telling A where B is");
            let mut got = Vec::new();
            for _ in 0..count {
                let r = tokio::time::timeout(PATIENCE, socket.recv())
                    .await
                    .expect("an advert reaches B in time")
                    .expect("receiving in B");
                got.push(r);
            }
            got
        })
    })
}

fn source_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => panic!("an IPv6 source, not {v4}"),
    }
}

/// The IPv6 VRRP frames among `frames`: (hop limit, source, destination).
fn vrrp6_frames(frames: &[Vec<u8>]) -> Vec<(u8, Ipv6Addr, Ipv6Addr)> {
    let addr = |f: &[u8], at: usize| {
        Ipv6Addr::from(<[u8; 16]>::try_from(&f[at..at + 16]).expect("16 bytes"))
    };
    frames
        .iter()
        .filter(|f| f.len() >= 62 && f[12..14] == [0x86, 0xdd] && f[20] == VRRP_PROTOCOL)
        .map(|f| (f[21], addr(f, 22), addr(f, 38)))
        .collect()
}

#[test]
fn ipv6_adverts_go_from_the_link_local_address_with_hop_limit_255() {
    let Some(lab) = Lab::new("vrrp6") else { return };
    // Global addresses too, for unicast peers configured by those.
    ip(&[
        "-n",
        &lab.a,
        "addr",
        "add",
        "fd00:9::1/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    ip(&[
        "-n",
        &lab.b,
        "addr",
        "add",
        "fd00:9::2/64",
        "dev",
        "eth0",
        "nodad",
    ]);
    let (a_global, b_global): (IpAddr, IpAddr) = (
        "fd00:9::1".parse().expect("A's address"),
        "fd00:9::2".parse().expect("B's address"),
    );
    let vip: IpAddr = "fd00:77::100".parse().expect("test VIP");
    let (b_tx, b_rx) = mpsc::channel();
    let capture = Capture::start(&lab.b);
    let b = receiver(&lab.b, true, 3, b_tx);
    let b_addr = b_rx
        .recv_timeout(PATIENCE * 2)
        .expect("B's socket is ready");
    let b_ll = source_v6(b_addr);
    assert!(
        b_ll.is_unicast_link_local(),
        "B's source is link-local: {b_ll}"
    );

    let a_addr = lab.in_a(move || async move {
        let source = wait_source("test", "eth0", true, &[vip], &[])
            .await
            .expect("A's source address");
        assert_eq!(
            source::dad_state("eth0", source_v6(source)),
            Dad::Done,
            "wait_source waits for DAD"
        );
        let socket = VrrpSocket::open("eth0", source).expect("A's VRRP socket");
        for dst in [IpAddr::V6(VRRP_MULTICAST_V6), b_addr] {
            let payload = build(source, dst, &advert(vec![vip]));
            socket.send(dst, &payload).await.expect("sending from A");
        }
        // To a peer configured by its global address: from ours.
        let global = wait_source("test", "eth0", true, &[vip], &[b_global])
            .await
            .expect("A's global source");
        assert_eq!(global, a_global, "the global address on the peer's prefix");
        let unicast = VrrpSocket::open("eth0", global).expect("A's unicast socket");
        let payload = build(global, b_global, &advert(vec![vip]));
        unicast
            .send(b_global, &payload)
            .await
            .expect("sending to B's global address");
        source
    });
    let received = join(b);
    let frames = capture.finish();

    assert_eq!(received.len(), 3);
    let sent = [
        (a_addr, IpAddr::V6(VRRP_MULTICAST_V6)),
        (a_addr, b_addr),
        (a_global, b_global),
    ];
    for (r, (src, dst)) in received.iter().zip(sent) {
        assert_eq!(r.src, src, "source from recvmsg");
        assert_eq!(r.dst, dst, "destination from IPV6_PKTINFO");
        assert_eq!(r.ttl, VRRP_TTL, "hop limit from IPV6_HOPLIMIT");
        let parsed = parse(r.src, r.dst, r.ttl, &r.payload).expect("B parses A's advert");
        assert_eq!(
            parsed,
            advert(vec![vip]),
            "checksum over the right pseudo-header"
        );
    }
    let a_ll = source_v6(a_addr);
    assert!(
        a_ll.is_unicast_link_local(),
        "A's source is link-local: {a_ll}"
    );
    let on_wire = vrrp6_frames(&frames);
    assert!(
        on_wire.contains(&(255, a_ll, VRRP_MULTICAST_V6)),
        "the multicast advert on the wire: {on_wire:?}"
    );
    assert!(
        on_wire.contains(&(255, a_ll, b_ll)),
        "the unicast advert on the wire: {on_wire:?}"
    );
}

#[test]
fn ipv4_adverts_go_from_the_primary_address_with_ttl_255() {
    let Some(lab) = Lab::new("vrrp4") else { return };
    ip(&["-n", &lab.a, "addr", "add", "10.9.0.1/24", "dev", "eth0"]);
    ip(&["-n", &lab.b, "addr", "add", "10.9.0.2/24", "dev", "eth0"]);
    let vip: IpAddr = "10.9.0.100".parse().expect("test VIP");
    let (b_tx, b_rx) = mpsc::channel();
    let b = receiver(&lab.b, false, 2, b_tx);
    let b_addr = b_rx.recv_timeout(PATIENCE).expect("B's socket is ready");
    assert_eq!(b_addr, "10.9.0.2".parse::<IpAddr>().expect("B"));

    lab.in_a(move || async move {
        let source = advert_source("eth0", false, &[vip], &[]).expect("A's source address");
        let socket = VrrpSocket::open("eth0", source).expect("A's VRRP socket");
        for dst in [IpAddr::V4(VRRP_MULTICAST_V4), b_addr] {
            let payload = build(source, dst, &advert(vec![vip]));
            socket.send(dst, &payload).await.expect("sending from A");
        }
        let wrong = socket
            .send("fd00::1".parse().expect("v6"), &[0; 8])
            .await
            .expect_err("an IPv4 socket sends no IPv6");
        assert_eq!(wrong.kind(), io::ErrorKind::InvalidInput, "{wrong}");
    });
    let received = join(b);
    for (r, dst) in received.iter().zip([IpAddr::V4(VRRP_MULTICAST_V4), b_addr]) {
        assert_eq!(r.src, "10.9.0.1".parse::<IpAddr>().expect("A"));
        assert_eq!(r.dst, dst);
        assert_eq!(r.ttl, VRRP_TTL);
        assert_eq!(
            parse(r.src, r.dst, r.ttl, &r.payload).expect("B parses A's advert"),
            advert(vec![vip])
        );
    }
}
