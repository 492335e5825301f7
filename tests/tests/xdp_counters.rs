//! The real XDP program on a veth in a lab namespace counts real packets,
//! read back through the agent's own data-plane code.

mod support;

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use vipx_agent::{
    config::XdpModeConfig,
    dataplane::{CounterSnapshot, Dataplane},
};
use vipx_common::{action, reason};
use vipx_lab::{Lab, LabOptions};

const PACKETS: u64 = 1000;
const PAYLOAD: usize = 64;
/// Ethernet + IPv4 + UDP headers.
const HEADERS: u64 = 14 + 20 + 8;

#[test]
fn xdp_counts_every_packet_sent_from_another_namespace() {
    // IPv4 only and static neighbours: nothing but our datagrams reaches
    // the node's eth0, so the counters must move by exactly PACKETS.
    let lab = Lab::new(LabOptions::ipv4_only()).expect("create lab");
    let node = lab.add_host("node", &lab.v4(11)).expect("add node host");
    let client = lab
        .add_host("client", &lab.v4(21))
        .expect("add client host");
    client
        .add_neigh(node.ipv4(), node.mac())
        .expect("static neighbour on client");
    node.add_neigh(client.ipv4(), client.mac())
        .expect("static neighbour on node");

    let mut dataplane = Dataplane::load().expect("load the XDP object (cargo xtask build-ebpf)");
    let mode = node
        .enter(|| dataplane.attach("eth0", XdpModeConfig::Auto))
        .expect("enter node namespace")
        .expect("attach XDP to the node's eth0");
    eprintln!("XDP attached in {mode} mode");
    let counters = dataplane.counters();
    let before = counters.snapshot().expect("read counters");

    let target = SocketAddr::from((node.ipv4(), 9));
    client
        .enter(|| {
            let socket = UdpSocket::bind("0.0.0.0:0").expect("bind UDP socket");
            for seq in 0..PACKETS {
                let mut payload = [0u8; PAYLOAD];
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                socket.send_to(&payload, target).expect("send datagram");
            }
        })
        .expect("enter client namespace");

    let passed =
        |s: &CounterSnapshot| s.action(action::PASS).packets - before.action(action::PASS).packets;
    support::wait_for(Duration::from_secs(10), || {
        let now = counters.snapshot().expect("read counters");
        (passed(&now) >= PACKETS).then_some(())
    })
    .unwrap_or_else(|| {
        let now = counters.snapshot().expect("read counters");
        panic!(
            "only {} of {PACKETS} packets counted within 10 s",
            passed(&now)
        )
    });
    // Let any stray frame arrive before the exact comparison.
    std::thread::sleep(Duration::from_millis(300));
    let after = counters.snapshot().expect("read counters");

    let delta = |slot_of: fn(&CounterSnapshot, u32) -> vipx_common::Counter, slot: u32| {
        let (a, b) = (slot_of(&after, slot), slot_of(&before, slot));
        (a.packets - b.packets, a.bytes - b.bytes)
    };
    let frame = HEADERS + PAYLOAD as u64;
    assert_eq!(
        delta(CounterSnapshot::action, action::PASS),
        (PACKETS, PACKETS * frame),
        "pass counter (packets, bytes) must move by exactly what was sent"
    );
    assert_eq!(
        delta(CounterSnapshot::reason, reason::NO_SERVICE),
        (PACKETS, PACKETS * frame),
        "UDP to a port no service owns is counted as no_service"
    );
    for slot in [action::ABORTED, action::DROP, action::TX, action::REDIRECT] {
        assert_eq!(
            delta(CounterSnapshot::action, slot),
            (0, 0),
            "action {} must not move",
            action::NAMES[slot as usize]
        );
    }

    node.enter(|| dataplane.detach("eth0"))
        .expect("enter node namespace")
        .expect("detach XDP");
}
