//! Embryonic flows (issue 13, NAT port exhaustion): a TCP flow whose
//! backend has not answered yet is forgotten after `embryonic_timeout`,
//! its NAT port freed, and such flows cannot hold more than
//! `embryonic_port_share` percent of a backend's NAT ports: new flows past
//! that are dropped and counted as `embryonic_limit`, visible in
//! `/metrics`. An answered flow is established and keeps the TCP idle
//! timeout. Through the agent's own flow collector on the real maps.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use prometheus::{Encoder as _, Registry, TextEncoder};
use vipx_agent::{
    config::PortRange,
    dataplane::{BackendSpec, FlowCollector, FlowPolicy, ServiceSpec, XdpCollector},
};
use vipx_common::{action, flow::FLOW_F_ESTABLISHED, reason};
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, backend_mac},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
/// The embryonic timeout of these tests.
const EMBRYONIC: Duration = Duration::from_millis(50);

fn policy(embryonic_share: u32) -> FlowPolicy {
    FlowPolicy {
        embryonic: EMBRYONIC,
        embryonic_share,
        ..rig::flow_policy(Duration::from_secs(3600))
    }
}

/// One PgBouncer, NAT ports 50000-50099: 100 ports.
fn one_backend() -> ServiceSpec {
    ServiceSpec {
        backends: vec![BackendSpec {
            addr: BACKEND,
            port: 6432,
            weight: 1,
        }],
        nat_ports: PortRange {
            first: 50000,
            last: 50099,
        },
        ..rig::nat_spec(VIP, BACKEND, 251)
    }
}

/// A SYN from client host `n` (each its own address, source port 5000).
fn syn(n: u32) -> FrameSpec {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a4d_1000 + n));
    FrameSpec::tcp(client, 5000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC)
}

/// The backend's SYN-ACK to the flow of `frame`, at NAT port `nat_port`.
fn syn_ack(nat_port: u16) -> FrameSpec {
    FrameSpec::tcp(BACKEND, 6432, VIP, nat_port, tcp::SYN | tcp::ACK)
        .macs(backend_mac(BACKEND), NODE_MAC)
}

fn moved(rig: &Rig, before: u64, slot: u32) -> u64 {
    rig.counters().expect("counters").reason(slot).packets - before
}

#[test]
fn an_unanswered_flow_is_forgotten_after_the_embryonic_timeout_and_frees_its_port() {
    let mut rig = Rig::master(&[one_backend()]).expect("rig");
    let maps = rig.dataplane.maps();
    let mut collector = FlowCollector::new(maps.clone(), policy(100));
    let (lost, answered) = (syn(1), syn(2));
    for frame in [&lost, &answered] {
        assert_eq!(rig.run(&frame.build()).expect("run").0, action::TX);
    }
    let lost_port = rig.flow(&lost).expect("flow").nat_port;
    let answered_port = rig.flow(&answered).expect("flow").nat_port;
    // The backend answers one; the other client insists without an answer
    // (a segment without SYN proves nothing in nat mode).
    assert_eq!(
        rig.run(&syn_ack(answered_port).build()).expect("run").0,
        action::TX
    );
    let ack = FrameSpec {
        transport: vipx_lab::frames::Transport::Tcp {
            flags: tcp::ACK,
            seq: 1001,
        },
        ..lost.clone()
    };
    assert_eq!(rig.run(&ack.build()).expect("run").0, action::TX);
    assert_eq!(
        rig.flow(&lost).expect("flow").flags & FLOW_F_ESTABLISHED,
        0,
        "no answer: embryonic"
    );
    assert_ne!(
        rig.flow(&answered).expect("flow").flags & FLOW_F_ESTABLISHED,
        0,
        "answered: established"
    );

    std::thread::sleep(2 * EMBRYONIC);
    let stats = collector.collect();
    assert_eq!(stats.expired, 1, "only the unanswered flow is forgotten");
    assert!(rig.flow(&lost).is_none(), "gone after embryonic_timeout");
    assert!(rig.flow(&answered).is_some(), "the answered flow stays");
    assert_eq!(
        maps.nat_entries()
            .into_iter()
            .map(|(key, _)| key.dport)
            .collect::<Vec<_>>(),
        [answered_port],
        "the unanswered flow's NAT port {lost_port} is free"
    );
    // A late answer to the forgotten flow finds nothing (dropped, not
    // handed to the kernel); the answered flow still works.
    assert_eq!(
        rig.run(&syn_ack(lost_port).build()).expect("run").0,
        action::DROP
    );
    assert_eq!(
        rig.run(&syn_ack(answered_port).build()).expect("run").0,
        action::TX
    );
}

#[test]
fn embryonic_flows_hold_at_most_their_share_of_a_backends_nat_ports() {
    let mut rig = Rig::master(&[one_backend()]).expect("rig");
    let maps = rig.dataplane.maps();
    // 10% of 100 ports: 10 embryonic flows.
    let mut collector = FlowCollector::new(maps.clone(), policy(10));
    collector.collect();
    let before = rig.counters().expect("counters");
    let mut taken = Vec::new();
    for n in 0..30 {
        let (act, _) = rig.run(&syn(n).build()).expect("run");
        if act == action::TX {
            taken.push(n);
        } else {
            assert_eq!(act, action::DROP, "SYN {n}: forwarded or dropped");
            assert!(rig.flow(&syn(n)).is_none(), "a refused SYN has no flow");
        }
    }
    assert_eq!(taken, (0..10).collect::<Vec<_>>(), "the first 10 flows");
    let refused = before.reason(reason::EMBRYONIC_LIMIT).packets;
    assert_eq!(moved(&rig, refused, reason::EMBRYONIC_LIMIT), 20);
    assert_eq!(maps.nat_entries().len(), 10, "10 NAT ports taken");

    // Refusals are in /metrics by their reason.
    let registry = Registry::new();
    registry
        .register(Box::new(
            XdpCollector::new(rig.dataplane.counters()).expect("collector"),
        ))
        .expect("register");
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut text)
        .expect("encode");
    let text = String::from_utf8(text).expect("utf-8");
    assert!(
        text.lines()
            .any(|l| l == "vipx_xdp_decisions_total{reason=\"embryonic_limit\"} 20"),
        "{text}"
    );

    // An answer makes room for one more.
    let port = rig.flow(&syn(0)).expect("flow").nat_port;
    assert_eq!(rig.run(&syn_ack(port).build()).expect("run").0, action::TX);
    assert_eq!(rig.run(&syn(30).build()).expect("run").0, action::TX);
    assert_eq!(rig.run(&syn(31).build()).expect("run").0, action::DROP);

    // Once the embryonic flows are forgotten, new flows come in again.
    std::thread::sleep(2 * EMBRYONIC);
    let stats = collector.collect();
    assert_eq!(stats.expired, 10, "every unanswered flow");
    assert_eq!(maps.embryonic(rig_backend(&rig)), Some(0), "none left");
    for n in 40..50 {
        assert_eq!(rig.run(&syn(n).build()).expect("run").0, action::TX);
    }
    assert_eq!(rig.run(&syn(50).build()).expect("run").0, action::DROP);
}

/// The backend's id in the data plane.
fn rig_backend(rig: &Rig) -> u32 {
    rig.table.backend_id(BACKEND, 6432).expect("backend id")
}
