//! Katran-style fixtures: input frame, expected action, expected output
//! frame, run through `BPF_PROG_TEST_RUN` on the real XDP program, with the
//! maps filled by the agent's own data-plane code.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use vipx_agent::{
    config::{Mode, PortRange},
    dataplane::{
        BackendSpec, CounterSnapshot, Dataplane, FlowCollector, FlowPolicy, GroupStates,
        ServiceSpec, ServiceTable, VipTable,
    },
};
use vipx_common::{action, reason};
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, backend_mac},
};

const XDP_PASS: u32 = action::PASS;
const XDP_TX: u32 = action::TX;
const XDP_DROP: u32 = action::DROP;

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100));
const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21));
/// A small prime table keeps the fixtures fast; Maglev itself is tested
/// with M = 65537 in the agent's unit tests.
const M: u32 = 251;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 77, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, last))
}

fn nat_spec(vip: IpAddr, backend: IpAddr) -> ServiceSpec {
    rig::nat_spec(vip, backend, M)
}

/// Three backend hosts holding the VIP on `lo` (dsr keeps the port).
fn dsr_spec() -> ServiceSpec {
    ServiceSpec {
        mode: Mode::Dsr,
        backends: [31, 32, 33]
            .map(|last| BackendSpec {
                addr: v4(last),
                port: 5432,
                weight: 1,
            })
            .to_vec(),
        ..nat_spec(VIP, v4(31))
    }
}

/// The real program, maps written by the agent's own code (see
/// `vipx_lab::rig`), with panicking shorthands for the tests.
struct Rig(rig::Rig);

impl Rig {
    fn master(specs: &[ServiceSpec]) -> Self {
        Self(rig::Rig::master(specs).expect("load the XDP program and fill its maps"))
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.0.run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn counters(&self) -> CounterSnapshot {
        self.0.counters().expect("read counters")
    }

    fn flow(&self, frame: &FrameSpec) -> Option<vipx_common::Flow> {
        self.0.flow(frame)
    }
}

fn maglev_backend(spec: &ServiceSpec, frame: &FrameSpec) -> BackendSpec {
    rig::maglev_backend(spec, frame).expect("Maglev table")
}

/// What a nat-mode packet must look like towards `backend`.
fn to_backend(input: &FrameSpec, backend: &BackendSpec, nat_port: u16) -> Vec<u8> {
    let mut out = input
        .clone()
        .addrs(input.dst, nat_port, backend.addr, backend.port);
    out.src_mac = input.dst_mac;
    out.dst_mac = backend_mac(backend.addr);
    out.build()
}

fn reason_moved(before: &CounterSnapshot, after: &CounterSnapshot, slot: u32) -> u64 {
    after.reason(slot).packets - before.reason(slot).packets
}

#[test]
fn nat_fixture_table() {
    let spec = nat_spec(VIP, v4(31));
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    let syn = FrameSpec::tcp(CLIENT, 40000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);

    // 1. New flow: Maglev picks the backend, full NAT, exact output frame.
    let (act, out) = rig.run(&syn.build());
    assert_eq!(act, XDP_TX, "new flow to the VIP is sent on");
    let flow = rig.flow(&syn).expect("the new flow is in the flow table");
    let backend = maglev_backend(&spec, &syn);
    assert!(
        (40000..=40999).contains(&flow.nat_port),
        "NAT port {} outside the configured range",
        flow.nat_port
    );
    assert_eq!(
        out,
        to_backend(&syn, &backend, flow.nat_port),
        "SYN rewritten to {}:{} from VIP:{}",
        backend.addr,
        backend.port,
        flow.nat_port
    );

    // 2. Flow-table hit: the next packet takes the same backend and port.
    let data = FrameSpec::tcp(CLIENT, 40000, VIP, 5432, tcp::ACK | tcp::PSH)
        .macs(CLIENT_MAC, NODE_MAC)
        .payload(b"SELECT 1;");
    let before = rig.counters();
    let (act, out) = rig.run(&data.build());
    assert_eq!(act, XDP_TX);
    assert_eq!(out, to_backend(&data, &backend, flow.nat_port), "flow hit");
    assert_eq!(reason_moved(&before, &rig.counters(), reason::FLOW_HIT), 1);

    // 3. The backend's reply is translated back to the client.
    let reply = FrameSpec::tcp(
        backend.addr,
        backend.port,
        VIP,
        flow.nat_port,
        tcp::SYN | tcp::ACK,
    )
    .macs(backend_mac(backend.addr), NODE_MAC)
    .payload(b"reply");
    let (act, out) = rig.run(&reply.build());
    assert_eq!(act, XDP_TX, "reply to a NAT flow is sent back");
    let expected = reply
        .clone()
        .addrs(VIP, 5432, CLIENT, 40000)
        .macs(NODE_MAC, CLIENT_MAC)
        .build();
    assert_eq!(out, expected, "reply reverse-translated to the client");

    // 4. UDP to the VIP's TCP port is no service: passed untouched.
    let rows: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "UDP to the VIP (no such service)",
            FrameSpec::udp(CLIENT, 40000, VIP, 5432)
                .macs(CLIENT_MAC, NODE_MAC)
                .build(),
            reason::NO_SERVICE,
        ),
        (
            "TCP to another address",
            FrameSpec::tcp(CLIENT, 40000, v4(12), 22, tcp::SYN)
                .macs(CLIENT_MAC, NODE_MAC)
                .build(),
            reason::NO_SERVICE,
        ),
        (
            "TCP to the VIP on another port",
            FrameSpec::tcp(CLIENT, 40000, VIP, 22, tcp::SYN)
                .macs(CLIENT_MAC, NODE_MAC)
                .build(),
            reason::NO_SERVICE,
        ),
        (
            "IPv4 first fragment to the VIP",
            FrameSpec {
                more_fragments: true,
                ..syn.clone()
            }
            .build(),
            reason::FRAGMENT,
        ),
    ];
    for (name, frame, why) in rows {
        let before = rig.counters();
        let (act, out) = rig.run(&frame);
        assert_eq!(act, XDP_PASS, "{name}: passed");
        assert_eq!(out, frame, "{name}: untouched");
        assert_eq!(
            reason_moved(&before, &rig.counters(), why),
            1,
            "{name}: counted as {}",
            reason::NAMES[why as usize]
        );
    }
}

#[test]
fn truncated_and_malformed_frames_pass_untouched() {
    let spec = nat_spec(VIP, v4(31));
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    let good = FrameSpec::tcp(CLIENT, 40001, VIP, 5432, tcp::SYN)
        .macs(CLIENT_MAC, NODE_MAC)
        .build();
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let mut short_ihl = good.clone();
    short_ihl[14] = 0x44;
    let mut long_ihl = good[..14 + 20 + 8].to_vec();
    long_ihl[14] = 0x4f; // options claimed beyond the end of the frame
    let rows: Vec<(&str, Vec<u8>, u32)> = vec![
        (
            "Ethernet header only",
            good[..14].to_vec(),
            reason::MALFORMED,
        ),
        (
            "IPv4 header cut",
            good[..14 + 12].to_vec(),
            reason::MALFORMED,
        ),
        (
            "TCP header cut",
            good[..14 + 20 + 10].to_vec(),
            reason::MALFORMED,
        ),
        ("IP version 5", bad_version, reason::BAD_IP_HEADER),
        ("IHL below 5", short_ihl, reason::BAD_IP_HEADER),
        ("IHL beyond the frame", long_ihl, reason::MALFORMED),
        (
            "ARP",
            {
                let mut arp = good[..42].to_vec();
                arp[12..14].copy_from_slice(&[0x08, 0x06]);
                arp
            },
            reason::NOT_IP,
        ),
    ];
    for (name, frame, why) in rows {
        let before = rig.counters();
        let (act, out) = rig.run(&frame);
        assert_eq!(act, XDP_PASS, "{name}: passed");
        assert_eq!(out, frame, "{name}: untouched");
        assert_eq!(
            reason_moved(&before, &rig.counters(), why),
            1,
            "{name}: counted as {}",
            reason::NAMES[why as usize]
        );
    }
    assert!(
        rig.0.dataplane.maps().flows().is_empty(),
        "no flow from malformed frames"
    );
}

#[test]
fn ipv4_options_and_vlan_tags_are_translated() {
    let spec = nat_spec(VIP, v4(31));
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    let with_options = FrameSpec {
        // NOP, NOP, NOP, End of options list: 4 bytes, IHL 6.
        ipv4_options: vec![1, 1, 1, 0],
        ..FrameSpec::tcp(CLIENT, 40002, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC)
    };
    let (act, out) = rig.run(&with_options.build());
    assert_eq!(act, XDP_TX);
    let flow = rig.flow(&with_options).expect("flow");
    let backend = maglev_backend(&spec, &with_options);
    assert_eq!(
        out,
        to_backend(&with_options, &backend, flow.nat_port),
        "options kept, checksums right"
    );

    let tagged = FrameSpec {
        vlan: Some(77),
        ..FrameSpec::tcp(CLIENT, 40003, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC)
    };
    let (act, out) = rig.run(&tagged.build());
    assert_eq!(act, XDP_TX);
    let flow = rig.flow(&tagged).expect("flow");
    let backend = maglev_backend(&spec, &tagged);
    assert_eq!(
        out,
        to_backend(&tagged, &backend, flow.nat_port),
        "VLAN tag kept"
    );
}

#[test]
fn udp_and_ipv6_flows_are_translated_both_ways() {
    let udp_spec = ServiceSpec {
        name: "udp".into(),
        protocol: 17,
        port: 5353,
        ..nat_spec(VIP, v4(31))
    };
    let v6_spec = nat_spec(VIP6, v6(0x31));
    let mut rig = Rig::master(&[udp_spec.clone(), v6_spec.clone()]);
    for (spec, input) in [
        (
            &udp_spec,
            FrameSpec::udp(CLIENT, 41000, VIP, 5353).payload(b"query"),
        ),
        (
            &v6_spec,
            FrameSpec::tcp(CLIENT6, 41001, VIP6, 5432, tcp::SYN),
        ),
    ] {
        let input = input.macs(CLIENT_MAC, NODE_MAC);
        let (act, out) = rig.run(&input.build());
        assert_eq!(act, XDP_TX, "{}: new flow", spec.name);
        let flow = rig.flow(&input).expect("flow recorded");
        let backend = maglev_backend(spec, &input);
        assert_eq!(
            out,
            to_backend(&input, &backend, flow.nat_port),
            "{}: to backend",
            spec.name
        );
        let reply = input
            .clone()
            .addrs(backend.addr, backend.port, spec.vip, flow.nat_port)
            .macs(backend_mac(backend.addr), NODE_MAC);
        let (act, out) = rig.run(&reply.build());
        assert_eq!(act, XDP_TX, "{}: reply", spec.name);
        let expected = reply
            .clone()
            .addrs(spec.vip, spec.port, input.src, input.sport)
            .macs(NODE_MAC, CLIENT_MAC)
            .build();
        assert_eq!(out, expected, "{}: reply to the client", spec.name);
    }
}

#[test]
fn dsr_rewrites_only_the_destination_mac() {
    let spec = dsr_spec();
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    let syn = FrameSpec::tcp(CLIENT, 42000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
    let (act, out) = rig.run(&syn.build());
    assert_eq!(act, XDP_TX);
    let backend = maglev_backend(&spec, &syn);
    let expected = syn
        .clone()
        .macs(NODE_MAC, backend_mac(backend.addr))
        .build();
    assert_eq!(out, expected, "dsr: same frame, new destination MAC");
    let flow = rig.flow(&syn).expect("dsr flows are recorded too");
    assert_eq!(flow.nat_port, 0, "no NAT port in dsr mode");
    assert!(
        rig.0.dataplane.maps().nat_entries().is_empty(),
        "no NAT entry in dsr mode"
    );
}

#[test]
fn maglev_flip_keeps_established_flows_on_their_backend() {
    let spec = nat_spec(VIP, v4(31));
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    let syn = FrameSpec::tcp(CLIENT, 44000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
    assert_eq!(rig.run(&syn.build()).0, XDP_TX);
    let first = rig.flow(&syn).expect("flow");
    let backend = maglev_backend(&spec, &syn);

    // The flow's backend leaves the table: new flows can no longer reach it.
    let without = ServiceSpec {
        backends: spec
            .backends
            .iter()
            .map(|b| BackendSpec {
                weight: if *b == backend { 0 } else { b.weight },
                ..b.clone()
            })
            .collect(),
        ..spec.clone()
    };
    rig.0
        .table
        .apply(std::slice::from_ref(&without))
        .expect("flip the Maglev table");

    let ack = FrameSpec::tcp(CLIENT, 44000, VIP, 5432, tcp::ACK).macs(CLIENT_MAC, NODE_MAC);
    let (act, out) = rig.run(&ack.build());
    assert_eq!(act, XDP_TX);
    assert_eq!(
        out,
        to_backend(&ack, &backend, first.nat_port),
        "established flow stays on its backend"
    );

    // A new flow that Maglev used to send there now goes elsewhere.
    let moved = (45000..46000)
        .map(|port| FrameSpec::tcp(CLIENT, port, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC))
        .find(|f| maglev_backend(&spec, f) == backend)
        .expect("some source port hashed to that backend");
    assert_eq!(rig.run(&moved.build()).0, XDP_TX);
    let placed = rig.flow(&moved).expect("flow");
    assert_ne!(
        rig.0.table.backend_id(backend.addr, backend.port),
        Some(placed.backend),
        "a drained backend gets no new flow"
    );
}

#[test]
fn nat_ports_never_collide_and_rst_frees_the_flow() {
    let spec = ServiceSpec {
        backends: vec![BackendSpec {
            addr: v4(31),
            port: 6432,
            weight: 1,
        }],
        nat_ports: PortRange {
            first: 50000,
            last: 50299,
        },
        ..nat_spec(VIP, v4(31))
    };
    let mut rig = Rig::master(std::slice::from_ref(&spec));
    // 200 clients, all from source port 5000, to the one backend.
    let mut ports = std::collections::HashSet::new();
    for i in 0..200u32 {
        let client = IpAddr::V4(Ipv4Addr::from(0x0a4d_0000 + 1000 + i));
        let syn = FrameSpec::tcp(client, 5000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
        let (act, _) = rig.run(&syn.build());
        if act == XDP_DROP {
            continue; // NAT_EXHAUSTED is allowed when every try collides
        }
        assert_eq!(act, XDP_TX);
        let flow = rig.flow(&syn).expect("flow");
        assert!(
            ports.insert(flow.nat_port),
            "NAT port {} given twice",
            flow.nat_port
        );
    }
    assert!(
        ports.len() >= 190,
        "only {} of 200 flows got a NAT port",
        ports.len()
    );
    assert_eq!(rig.0.dataplane.maps().nat_entries().len(), ports.len());

    // RST ends a flow once it stayed quiet for rst_timeout (here none),
    // and frees its port.
    let client = IpAddr::V4(Ipv4Addr::from(0x0a4d_0000 + 1000));
    let rst = FrameSpec::tcp(client, 5000, VIP, 5432, tcp::RST).macs(CLIENT_MAC, NODE_MAC);
    assert_eq!(
        rig.run(&rst.build()).0,
        XDP_TX,
        "the RST itself is forwarded"
    );
    std::thread::sleep(Duration::from_millis(5));
    let policy = FlowPolicy {
        rst: Duration::ZERO,
        ..rig::flow_policy(Duration::from_secs(3600))
    };
    FlowCollector::new(rig.0.dataplane.maps(), policy).collect();
    assert!(rig.flow(&rst).is_none(), "RST removed the flow");
    assert_eq!(
        rig.0.dataplane.maps().nat_entries().len(),
        ports.len() - 1,
        "and its NAT entry"
    );
}

#[test]
fn no_backend_and_unknown_mac_drop_and_count() {
    let mut spec = nat_spec(VIP, v4(31));
    for backend in &mut spec.backends {
        backend.weight = 0;
    }
    let dataplane = Dataplane::load_with(4096).expect("load");
    let mut table = ServiceTable::new(dataplane.maps(), false);
    table.apply(std::slice::from_ref(&spec)).expect("install");
    let groups = GroupStates::new(dataplane.maps(), Duration::from_secs(600), false);
    groups.set_master(0, true).expect("master");
    let vips = VipTable::new(dataplane.maps(), false);
    vips.apply(&rig::vip_specs(std::slice::from_ref(&spec)))
        .expect("write the VIP");
    let mut rig = Rig(rig::Rig {
        dataplane,
        table,
        vips,
        groups,
    });
    let syn = FrameSpec::tcp(CLIENT, 46000, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
    let before = rig.counters();
    assert_eq!(rig.run(&syn.build()).0, XDP_DROP, "no backend: refused");
    assert_eq!(
        reason_moved(&before, &rig.counters(), reason::NO_BACKEND),
        1
    );

    // Backends back, but their MAC is not known yet.
    spec.backends.iter_mut().for_each(|b| b.weight = 1);
    rig.0
        .table
        .apply(std::slice::from_ref(&spec))
        .expect("install");
    let before = rig.counters();
    assert_eq!(
        rig.run(&syn.build()).0,
        XDP_DROP,
        "unknown MAC: dropped until resolved"
    );
    assert_eq!(reason_moved(&before, &rig.counters(), reason::NO_NEIGH), 1);
    rig.0
        .table
        .set_mac(v4(31), backend_mac(v4(31)))
        .expect("MAC");
    assert_eq!(
        rig.run(&syn.build()).0,
        XDP_TX,
        "served once the MAC is known"
    );
}
