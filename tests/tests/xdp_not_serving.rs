//! Katran-style fixtures of a node that does not serve a group (issue 10,
//! "Sessions survive every failover": never reset what you cannot serve).
//! Rows of input frame, expected action, reason and output frame, run
//! through `BPF_PROG_TEST_RUN` on the real XDP program, with the maps
//! written by the agent's own data-plane code.
//!
//! What the rows say, from the specification:
//! - a VIP's service port or NAT port range (of the service's protocol) on
//!   a node that is not MASTER, or whose lease is stale, is dropped and
//!   counted `not_master` / `lease_stale`, never passed: the node's kernel
//!   may hold the VIP and would answer RST (this used to be passed);
//! - a NAT reply with no entry on a serving node is dropped
//!   (`nat_reply_miss`);
//! - other ports of the VIP (ssh, the agent's API) still go to the kernel;
//! - with a stale lease (master flag set), ARP requests and neighbour
//!   solicitations for the group's VIPs are dropped (`vip_fenced`); other
//!   ARP and ICMPv6, and the same requests with a fresh lease or the master
//!   flag off, pass as before (`not_ip`, `other_l4`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use vipx_agent::dataplane::{CounterSnapshot, GroupStates, PortRange, ServiceSpec, VipSpec};
use vipx_common::{NatRange, Vip, VipKey, action, reason};
use vipx_lab::{
    frames::{ARP_REPLY, ARP_REQUEST, FrameSpec, arp, neighbour_solicitation, tcp, vlan_tagged},
    rig::{self, CLIENT_MAC, NODE_MAC, backend_mac},
};

const XDP_PASS: u32 = action::PASS;
const XDP_TX: u32 = action::TX;
const XDP_DROP: u32 = action::DROP;

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const VIP: IpAddr = IpAddr::V4(VIP4);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 21);
const CLIENT: IpAddr = IpAddr::V4(CLIENT4);
/// A VIP of group 0 with no service on it.
const BARE_VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 101);
/// A VIP of group 1, which this node never mastered.
const OTHER_GROUP_VIP4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 102);
/// A node's own address: no VIP.
const NODE4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
const VIP6_ADDR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100);
const VIP6: IpAddr = IpAddr::V6(VIP6_ADDR);
const CLIENT6_ADDR: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21);
const CLIENT6: IpAddr = IpAddr::V6(CLIENT6_ADDR);
const NODE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x12);
const BACKEND6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x31));
/// The NAT port range of the services (`rig::nat_spec`): 40000-40999.
const NAT_FIRST: u16 = 40000;
const NAT_LAST: u16 = 40999;
/// A PgBouncer port no service uses: no NAT entry has it as source.
const STRAY_PORT: u16 = 6435;
const VLAN: u16 = 77;

/// One fixture: the frame, what the program must return and count, and
/// the frame as it must leave.
struct Row {
    name: String,
    frame: Vec<u8>,
    action: u32,
    reason: u32,
    out: Vec<u8>,
}

/// A row whose frame must leave untouched (passed or dropped).
fn row(name: &str, frame: Vec<u8>, action: u32, reason: u32) -> Row {
    Row {
        name: name.to_owned(),
        out: frame.clone(),
        frame,
        action,
        reason,
    }
}

struct Rig(rig::Rig);

impl Rig {
    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.0.run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn counters(&self) -> CounterSnapshot {
        self.0.counters().expect("read counters")
    }

    /// Runs every row; `state` names the node's state in the messages.
    fn check(&mut self, state: &str, rows: Vec<Row>) {
        for row in rows {
            let name = format!("{state}: {}", row.name);
            let before = self.counters();
            let (act, out) = self.run(&row.frame);
            assert_eq!(
                act,
                row.action,
                "{name}: {} expected, got {}",
                action::NAMES[row.action as usize],
                action::NAMES[act as usize]
            );
            let after = self.counters();
            assert_eq!(
                after.reason(row.reason).packets - before.reason(row.reason).packets,
                1,
                "{name}: counted as {}",
                reason::NAMES[row.reason as usize]
            );
            assert_eq!(out, row.out, "{name}: output frame");
        }
    }

    /// Writes the group 0 state: MASTER with a lease of `lease` (1 ns is
    /// stale by the time a packet runs), or not MASTER.
    fn set_group(&self, master: bool, lease: Duration) {
        GroupStates::new(self.0.dataplane.maps(), lease, false)
            .set_master(0, master)
            .expect("write the group state");
    }
}

fn specs() -> Vec<ServiceSpec> {
    vec![
        rig::nat_spec(VIP, BACKEND, 251),
        rig::nat_spec(VIP6, BACKEND6, 251),
    ]
}

/// The rig with both services, their VIPs, a VIP of group 0 without
/// service and one of group 1.
fn rig() -> Rig {
    let specs = specs();
    let rig = rig::Rig::master(&specs).expect("load the XDP program and fill its maps");
    let mut vips = rig::vip_specs(&specs);
    vips.push(VipSpec::new(IpAddr::V4(BARE_VIP4), 0, &specs));
    vips.push(VipSpec::new(IpAddr::V4(OTHER_GROUP_VIP4), 1, &specs));
    rig.vips.apply(&vips).expect("write the VIPs");
    Rig(rig)
}

fn tcp4(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, flags: u8) -> FrameSpec {
    FrameSpec::tcp(src, sport, dst, dport, flags).macs(CLIENT_MAC, NODE_MAC)
}

/// A backend's segment to `vip`:`port` (a NAT port, or another).
fn from_backend(backend: IpAddr, sport: u16, vip: IpAddr, port: u16) -> Vec<u8> {
    FrameSpec::tcp(backend, sport, vip, port, tcp::ACK)
        .macs(backend_mac(backend), NODE_MAC)
        .payload(b"reply")
        .build()
}

/// An established flow: the client's SYN served while MASTER, and the
/// backend's reply to it, with the frame that reply becomes (to the
/// client).
struct Established {
    reply: Vec<u8>,
    to_client: Vec<u8>,
}

fn establish(rig: &mut Rig, client: IpAddr, sport: u16, vip: IpAddr) -> Established {
    let syn = tcp4(client, sport, vip, 5432, tcp::SYN);
    assert_eq!(rig.run(&syn.build()).0, XDP_TX, "the SYN is served");
    let flow = rig.0.flow(&syn).expect("the flow is recorded");
    let backend = rig
        .0
        .dataplane
        .maps()
        .backend(flow.backend)
        .expect("the flow's backend");
    let backend_addr = if vip.is_ipv4() {
        IpAddr::V4(Ipv4Addr::new(
            backend.addr[0],
            backend.addr[1],
            backend.addr[2],
            backend.addr[3],
        ))
    } else {
        IpAddr::V6(Ipv6Addr::from(backend.addr))
    };
    let reply = FrameSpec::tcp(backend_addr, backend.port, vip, flow.nat_port, tcp::ACK)
        .macs(backend_mac(backend_addr), NODE_MAC)
        .payload(b"reply");
    let to_client = reply
        .clone()
        .addrs(vip, 5432, client, sport)
        .macs(NODE_MAC, CLIENT_MAC)
        .build();
    Established {
        reply: reply.build(),
        to_client,
    }
}

/// Rows of the VIP's other ports: the kernel's, whatever the state.
fn other_ports() -> Vec<Row> {
    vec![
        row(
            "the agent's API (9469) through the VIP passes",
            tcp4(CLIENT, 47100, VIP, 9469, tcp::SYN).build(),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
        row(
            "ssh to the VIP passes",
            tcp4(CLIENT, 47101, VIP, 22, tcp::SYN).build(),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
        row(
            "one port below the NAT range passes",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_FIRST - 1),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
        row(
            "one port above the NAT range passes",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_LAST + 1),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
        row(
            "UDP to the NAT range (no UDP service) passes",
            FrameSpec::udp(BACKEND, STRAY_PORT, VIP, NAT_FIRST)
                .macs(backend_mac(BACKEND), NODE_MAC)
                .build(),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
        row(
            "the bare VIP's ports pass (it has no NAT range)",
            from_backend(BACKEND, STRAY_PORT, IpAddr::V4(BARE_VIP4), NAT_FIRST),
            XDP_PASS,
            reason::NO_SERVICE,
        ),
    ]
}

/// Rows of ARP and ICMPv6 that pass whatever the state.
fn other_neighbours() -> Vec<Row> {
    let mut cut_ns = neighbour_solicitation(CLIENT_MAC, CLIENT6_ADDR, VIP6_ADDR);
    // Ethernet 14 + IPv6 40 + ICMPv6 header 8 + 15 bytes of the target.
    cut_ns.truncate(14 + 40 + 8 + 15);
    let mut arp_not_ipv4 = arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, VIP4);
    arp_not_ipv4[16..18].copy_from_slice(&[0x86, 0xdd]);
    let echo = {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2(CLIENT_MAC, NODE_MAC)
            .ipv6(CLIENT6_ADDR.octets(), VIP6_ADDR.octets(), 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut out, b"ping")
            .expect("write an echo request");
        out
    };
    vec![
        row(
            "ARP request for a node address passes",
            arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, NODE4),
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "ARP reply about the VIP passes",
            arp(ARP_REPLY, CLIENT_MAC, CLIENT4, VIP4),
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "ARP request cut before its target address passes",
            arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, VIP4)[..14 + 25].to_vec(),
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "ARP request for another protocol than IPv4 passes",
            arp_not_ipv4,
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "ARP request for a VIP of another group passes",
            arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, OTHER_GROUP_VIP4),
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "neighbour solicitation for a node address passes",
            neighbour_solicitation(CLIENT_MAC, CLIENT6_ADDR, NODE6),
            XDP_PASS,
            reason::OTHER_L4,
        ),
        row(
            "neighbour solicitation cut inside its target passes",
            cut_ns,
            XDP_PASS,
            reason::OTHER_L4,
        ),
        row(
            "ICMPv6 echo request to the VIP passes",
            echo,
            XDP_PASS,
            reason::OTHER_L4,
        ),
    ]
}

/// Rows of what a node that does not serve the group (`why`) drops.
fn unserved(why: u32, flows: &[&Established]) -> Vec<Row> {
    let mut rows = vec![
        row(
            "SYN to the service is dropped",
            tcp4(CLIENT, 47200, VIP, 5432, tcp::SYN).build(),
            XDP_DROP,
            why,
        ),
        row(
            "VLAN-tagged SYN to the service is dropped",
            vlan_tagged(&tcp4(CLIENT, 47201, VIP, 5432, tcp::SYN).build(), VLAN),
            XDP_DROP,
            why,
        ),
        row(
            "IPv6 SYN to the service is dropped",
            tcp4(CLIENT6, 47202, VIP6, 5432, tcp::SYN).build(),
            XDP_DROP,
            why,
        ),
        row(
            "a reply without entry to the first NAT port is dropped",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_FIRST),
            XDP_DROP,
            why,
        ),
        row(
            "a reply without entry to the last NAT port is dropped",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_LAST),
            XDP_DROP,
            why,
        ),
    ];
    for (i, flow) in flows.iter().enumerate() {
        rows.push(row(
            &format!("the reply of established flow {i} is dropped"),
            flow.reply.clone(),
            XDP_DROP,
            why,
        ));
    }
    rows
}

#[test]
fn a_node_that_does_not_serve_drops_the_groups_traffic_and_passes_the_rest() {
    let mut rig = rig();
    let flow4 = establish(&mut rig, CLIENT, 47000, VIP);
    let flow6 = establish(&mut rig, CLIENT6, 47001, VIP6);
    let arp_vip = arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, VIP4);
    let ns_vip = neighbour_solicitation(CLIENT_MAC, CLIENT6_ADDR, VIP6_ADDR);

    // MASTER with a fresh lease: replies are served, misses dropped.
    let mut rows = vec![
        Row {
            name: "the reply of an established flow goes to the client".into(),
            frame: flow4.reply.clone(),
            action: XDP_TX,
            reason: reason::NAT_REPLY,
            out: flow4.to_client.clone(),
        },
        Row {
            name: "the IPv6 reply of an established flow goes to the client".into(),
            frame: flow6.reply.clone(),
            action: XDP_TX,
            reason: reason::NAT_REPLY,
            out: flow6.to_client.clone(),
        },
        row(
            "a reply without entry to the first NAT port is dropped",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_FIRST),
            XDP_DROP,
            reason::NAT_REPLY_MISS,
        ),
        row(
            "a reply without entry to the last NAT port is dropped",
            from_backend(BACKEND, STRAY_PORT, VIP, NAT_LAST),
            XDP_DROP,
            reason::NAT_REPLY_MISS,
        ),
        row(
            "a VLAN-tagged reply without entry is dropped",
            vlan_tagged(&from_backend(BACKEND, STRAY_PORT, VIP, NAT_FIRST), VLAN),
            XDP_DROP,
            reason::NAT_REPLY_MISS,
        ),
        row(
            "an IPv6 reply without entry is dropped",
            from_backend(BACKEND6, STRAY_PORT, VIP6, NAT_LAST),
            XDP_DROP,
            reason::NAT_REPLY_MISS,
        ),
        row(
            "ARP request for the VIP passes (fresh lease)",
            arp_vip.clone(),
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "neighbour solicitation for the VIP passes (fresh lease)",
            ns_vip.clone(),
            XDP_PASS,
            reason::OTHER_L4,
        ),
    ];
    rows.extend(other_ports());
    rows.extend(other_neighbours());
    rig.check("MASTER", rows);

    // The lease runs out with the master flag set: a hung agent.
    rig.set_group(true, Duration::from_nanos(1));
    let mut rows = unserved(reason::LEASE_STALE, &[&flow4, &flow6]);
    rows.extend([
        row(
            "ARP request for the VIP is dropped",
            arp_vip.clone(),
            XDP_DROP,
            reason::VIP_FENCED,
        ),
        row(
            "VLAN-tagged ARP request for the VIP is dropped",
            vlan_tagged(&arp_vip, VLAN),
            XDP_DROP,
            reason::VIP_FENCED,
        ),
        row(
            "ARP request for the VIP without service is dropped",
            arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, BARE_VIP4),
            XDP_DROP,
            reason::VIP_FENCED,
        ),
        row(
            "neighbour solicitation for the VIP is dropped",
            ns_vip.clone(),
            XDP_DROP,
            reason::VIP_FENCED,
        ),
        row(
            "VLAN-tagged neighbour solicitation for the VIP is dropped",
            vlan_tagged(&ns_vip, VLAN),
            XDP_DROP,
            reason::VIP_FENCED,
        ),
    ]);
    rows.extend(other_ports());
    rows.extend(other_neighbours());
    rig.check("stale lease", rows);

    // BACKUP: the master flag is off.
    rig.set_group(false, Duration::from_secs(600));
    let mut rows = unserved(reason::NOT_MASTER, &[&flow4, &flow6]);
    rows.extend([
        row(
            "ARP request for the VIP passes (master flag off)",
            arp_vip,
            XDP_PASS,
            reason::NOT_IP,
        ),
        row(
            "neighbour solicitation for the VIP passes (master flag off)",
            ns_vip,
            XDP_PASS,
            reason::OTHER_L4,
        ),
    ]);
    rows.extend(other_ports());
    rows.extend(other_neighbours());
    rig.check("BACKUP", rows);

    // MASTER again: the drops forgot nothing, the flows go on.
    rig.set_group(true, Duration::from_secs(600));
    rig.check(
        "MASTER again",
        vec![
            Row {
                name: "the reply of the established flow goes to the client".into(),
                frame: flow4.reply.clone(),
                action: XDP_TX,
                reason: reason::NAT_REPLY,
                out: flow4.to_client.clone(),
            },
            Row {
                name: "the IPv6 reply of the established flow goes to the client".into(),
                frame: flow6.reply.clone(),
                action: XDP_TX,
                reason: reason::NAT_REPLY,
                out: flow6.to_client.clone(),
            },
        ],
    );
}

fn nat(first: u16, last: u16) -> NatRange {
    NatRange {
        first,
        last,
        proto: 6,
        _pad: [0; 3],
    }
}

#[test]
fn the_vip_map_follows_the_configuration() {
    let mut rig = rig();
    let key = VipKey {
        addr: [10, 77, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        family: 4,
        _pad: [0; 3],
    };
    let mut expected = Vip {
        group: 0,
        nat_ranges: 1,
        ..Vip::default()
    };
    expected.nat[0] = nat(40000, 40999);
    let vips = rig.0.dataplane.maps().vips();
    assert_eq!(
        vips.len(),
        4,
        "two service VIPs, a bare one, another group's"
    );
    assert_eq!(
        vips.iter().find(|(k, _)| *k == key).map(|(_, v)| *v),
        Some(expected),
        "10.77.0.100: group 0, TCP 40000-40999"
    );

    // Reloaded: a second nat service on the VIP with its own range, the
    // IPv6 service and the other VIPs gone.
    let second = ServiceSpec {
        name: "second".into(),
        port: 5433,
        nat_ports: PortRange {
            first: 50000,
            last: 50009,
        },
        ..rig::nat_spec(VIP, BACKEND, 251)
    };
    let specs = [rig::nat_spec(VIP, BACKEND, 251), second];
    rig.0.table.apply(&specs).expect("install the services");
    rig.0
        .vips
        .apply(&rig::vip_specs(&specs))
        .expect("write the VIPs");
    expected.nat_ranges = 2;
    expected.nat[1] = nat(50000, 50009);
    assert_eq!(
        rig.0.dataplane.maps().vips(),
        vec![(key, expected)],
        "only 10.77.0.100 left, with both ranges"
    );
    rig.check(
        "reloaded",
        vec![
            row(
                "a reply without entry to the new range's last port is dropped",
                from_backend(BACKEND, STRAY_PORT, VIP, 50009),
                XDP_DROP,
                reason::NAT_REPLY_MISS,
            ),
            row(
                "the removed IPv6 VIP's NAT range passes as before",
                from_backend(BACKEND6, STRAY_PORT, VIP6, NAT_FIRST),
                XDP_PASS,
                reason::NO_SERVICE,
            ),
        ],
    );
    rig.set_group(true, Duration::from_nanos(1));
    rig.check(
        "reloaded, stale lease",
        vec![row(
            "ARP request for the removed bare VIP passes",
            arp(ARP_REQUEST, CLIENT_MAC, CLIENT4, BARE_VIP4),
            XDP_PASS,
            reason::NOT_IP,
        )],
    );
}
