//! A full flow table (issue 13, half of a NAT pair evicted): the flow and
//! NAT tables evict nothing. Once `flow_table_size` flows are held, a new
//! flow is dropped and counted as `flow_table_full`, and every flow held
//! keeps both halves: its client's packets go to the same backend and NAT
//! port, its backend's replies still reach the client. A flow forgotten by
//! the collector makes room again.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use vipx_agent::dataplane::{Dataplane, FlowCollector, FlowPolicy};
use vipx_common::{action, reason};
use vipx_lab::{
    frames::{FrameSpec, Transport, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, backend_mac},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
/// `flow_table_size` here.
const SIZE: u32 = 64;

/// A segment from client host `n` (source port 5000) with `flags`.
fn from_client(n: u32, flags: u8) -> FrameSpec {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a4d_2000 + n));
    FrameSpec::tcp(client, 5000, VIP, 5432, flags).macs(CLIENT_MAC, NODE_MAC)
}

/// The (source port, destination port) of a TCP frame leaving XDP (IPv4,
/// no options).
fn ports(frame: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([frame[34], frame[35]]),
        u16::from_be_bytes([frame[36], frame[37]]),
    )
}

#[test]
fn a_full_flow_table_refuses_new_flows_and_keeps_both_halves_of_every_flow() {
    let spec = rig::nat_spec(VIP, BACKEND, 251);
    let dataplane = Dataplane::load_with(SIZE).expect("load the XDP object");
    let mut rig = Rig::with_dataplane(
        dataplane,
        std::slice::from_ref(&spec),
        Duration::from_secs(3600),
    )
    .expect("rig");
    // Fill the table; remember where each flow's packets go.
    let mut held = Vec::new();
    for n in 0..SIZE {
        let syn = from_client(n, tcp::SYN);
        let (act, out) = rig.run(&syn.build()).expect("run");
        assert_eq!(act, action::TX, "flow {n} of {SIZE} fits");
        held.push((n, ports(&out)));
    }
    assert_eq!(rig.dataplane.maps().flows().len(), SIZE as usize);

    let before = rig.counters().expect("counters");
    for n in SIZE..SIZE + 5 {
        let (act, _) = rig.run(&from_client(n, tcp::SYN).build()).expect("run");
        assert_eq!(act, action::DROP, "flow {n}: the table is full");
        assert!(rig.flow(&from_client(n, tcp::SYN)).is_none());
    }
    let after = rig.counters().expect("counters");
    assert_eq!(
        after.reason(reason::FLOW_TABLE_FULL).packets
            - before.reason(reason::FLOW_TABLE_FULL).packets,
        5,
        "each refusal counted as flow_table_full"
    );
    assert_eq!(
        rig.dataplane.maps().nat_entries().len(),
        SIZE as usize,
        "no NAT entry left by a refused flow"
    );

    // Every flow held works both ways, on its backend and NAT port.
    for (n, (nat_port, backend_port)) in &held {
        let data = from_client(*n, tcp::ACK | tcp::PSH).payload(b"SELECT 1;");
        let (act, out) = rig.run(&data.build()).expect("run");
        assert_eq!(act, action::TX, "flow {n}: client -> backend");
        assert_eq!(
            ports(&out),
            (*nat_port, *backend_port),
            "flow {n}: same port"
        );
        let reply = FrameSpec::tcp(BACKEND, *backend_port, VIP, *nat_port, tcp::ACK)
            .macs(backend_mac(BACKEND), NODE_MAC);
        let (act, out) = rig.run(&reply.build()).expect("run");
        assert_eq!(act, action::TX, "flow {n}: backend -> client");
        assert_eq!(ports(&out), (5432, 5000), "flow {n}: back to the client");
    }

    // The collector forgets one closed flow: one new flow fits again.
    let (n, (nat_port, backend_port)) = held[0];
    let fin = from_client(n, tcp::FIN | tcp::ACK);
    assert_eq!(rig.run(&fin.build()).expect("run").0, action::TX);
    let back_fin = FrameSpec {
        transport: Transport::Tcp {
            flags: tcp::FIN | tcp::ACK,
            seq: 1,
        },
        ..FrameSpec::tcp(BACKEND, backend_port, VIP, nat_port, 0)
            .macs(backend_mac(BACKEND), NODE_MAC)
    };
    assert_eq!(rig.run(&back_fin.build()).expect("run").0, action::TX);
    std::thread::sleep(Duration::from_millis(5));
    let mut collector = FlowCollector::new(
        rig.dataplane.maps(),
        FlowPolicy {
            fin: Duration::ZERO,
            ..rig::flow_policy(Duration::from_secs(3600))
        },
    );
    assert_eq!(collector.collect().expired, 1, "the closed flow");
    let newcomer = from_client(SIZE + 10, tcp::SYN);
    assert_eq!(rig.run(&newcomer.build()).expect("run").0, action::TX);
    assert_eq!(
        rig.run(&from_client(SIZE + 11, tcp::SYN).build())
            .expect("run")
            .0,
        action::DROP,
        "full again"
    );
}
