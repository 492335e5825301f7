//! ICMP errors about a flow's packets, through the real XDP program
//! (`BPF_PROG_TEST_RUN`), issue 13: "fragmentation needed" and "packet too
//! big" for NATed flows used to reach the node's kernel, so path MTU
//! discovery failed through the VIP.
//!
//! The expectation is the specification's (RFC 5508 section 7): an error
//! about a packet the node sent reaches the end that sent the original,
//! quoting that end's own packet byte for byte. Every expected frame is
//! built from scratch by etherparse, checksums computed in full; the
//! quoted originals are the frames the test itself sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vipx_agent::{
    config::Mode,
    dataplane::{BackendSpec, CounterSnapshot, ServiceSpec},
};
use vipx_common::{action, reason};
use vipx_lab::{
    frames::{FrameSpec, icmp_too_big, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, backend_mac},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));
/// A router on the path (to the backends, or to the clients).
const ROUTER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1));
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x100));
const CLIENT6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x21));
const BACKEND6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 0x31));
const ROUTER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 1));
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MTU: u16 = 1400;
/// Ethernet header length: the IP packet of a frame starts there.
const ETH: usize = 14;

struct Rig(rig::Rig);

impl Rig {
    fn master(spec: &ServiceSpec) -> Self {
        Self(rig::Rig::master(std::slice::from_ref(spec)).expect("load the XDP program"))
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.0.run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn counters(&self) -> CounterSnapshot {
        self.0.counters().expect("read counters")
    }

    /// Runs `frame`, which must be sent on (`XDP_TX`).
    fn tx(&mut self, frame: &[u8], what: &str) -> Vec<u8> {
        let (act, out) = self.run(frame);
        assert_eq!(act, action::TX, "{what} must be sent on");
        out
    }
}

/// The IP packet of a frame (untagged).
fn ip(frame: &[u8]) -> &[u8] {
    &frame[ETH..]
}

/// Source and destination address and port of an untagged TCP frame.
fn tuple(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let (src, dst, l4): (IpAddr, IpAddr, usize) = if frame[ETH] >> 4 == 4 {
        let a = |o: usize| Ipv4Addr::new(frame[o], frame[o + 1], frame[o + 2], frame[o + 3]);
        let ihl = usize::from(frame[ETH] & 0x0f) * 4;
        (a(ETH + 12).into(), a(ETH + 16).into(), ETH + ihl)
    } else {
        let a = |o: usize| {
            let bytes: [u8; 16] = frame[o..o + 16].try_into().expect("16 bytes");
            Ipv6Addr::from(bytes)
        };
        (a(ETH + 8).into(), a(ETH + 24).into(), ETH + 40)
    };
    let port = |o: usize| u16::from_be_bytes([frame[o], frame[o + 1]]);
    (src, port(l4), dst, port(l4 + 2))
}

fn moved(before: &CounterSnapshot, after: &CounterSnapshot, slot: u32) -> u64 {
    after.reason(slot).packets - before.reason(slot).packets
}

/// One nat flow, then errors about each direction's packets: from a router
/// on the path (its address kept), from the other end itself (whose
/// address the receiving end does not know: the VIP's instead), and with a
/// quote that stops after the first 8 bytes of TCP (no TCP checksum).
fn nat_errors(vip: IpAddr, client: IpAddr, backend: IpAddr, router: IpAddr) {
    let spec = rig::nat_spec(vip, backend, 251);
    let mut rig = Rig::master(&spec);
    let syn = FrameSpec::tcp(client, 40000, vip, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
    let syn = syn.build();
    let sent = rig.tx(&syn, "the client's SYN");
    let (_, nat_port, to, backend_port) = tuple(&sent);
    assert_eq!(to, backend, "the SYN goes to the backend host");

    // 1. A router between node and backend: the packet sent to the backend
    //    is too big. The client gets the error, quoting its own SYN.
    let before = rig.counters();
    let error = icmp_too_big(ROUTER_MAC, NODE_MAC, router, vip, MTU, ip(&sent));
    let (act, out) = rig.run(&error);
    assert_eq!(act, action::TX, "an error about a nat flow is sent on");
    assert_eq!(
        out,
        icmp_too_big(NODE_MAC, CLIENT_MAC, router, client, MTU, ip(&syn)),
        "the client gets the error from the router, quoting its own SYN"
    );
    assert_eq!(moved(&before, &rig.counters(), reason::ICMP_TO_CLIENT), 1);

    // 2. The backend itself sends it: the client knows the VIP, not it.
    let error = icmp_too_big(backend_mac(backend), NODE_MAC, backend, vip, MTU, ip(&sent));
    assert_eq!(
        rig.tx(&error, "the backend's own error"),
        icmp_too_big(NODE_MAC, CLIENT_MAC, vip, client, MTU, ip(&syn)),
        "an error the backend sent reaches the client from the VIP"
    );

    // 3. A quote of the IP header and 8 bytes of TCP only.
    let short = ip(&sent).len() - 12;
    let error = icmp_too_big(ROUTER_MAC, NODE_MAC, router, vip, MTU, &ip(&sent)[..short]);
    assert_eq!(
        rig.tx(&error, "an error with a short quote"),
        icmp_too_big(
            NODE_MAC,
            CLIENT_MAC,
            router,
            client,
            MTU,
            &ip(&syn)[..short]
        ),
        "a quote without the TCP checksum is translated too"
    );

    // 4. The other way: the backend's SYN-ACK, sent on to the client, is
    //    too big for a router on the client's side. The backend gets the
    //    error, quoting its own SYN-ACK.
    let reply = FrameSpec::tcp(backend, backend_port, vip, nat_port, tcp::SYN | tcp::ACK)
        .macs(backend_mac(backend), NODE_MAC)
        .build();
    let delivered = rig.tx(&reply, "the backend's reply");
    assert_eq!(
        tuple(&delivered),
        (vip, 5432, client, 40000),
        "the reply reaches the client from the VIP"
    );
    let before = rig.counters();
    let error = icmp_too_big(ROUTER_MAC, NODE_MAC, router, vip, MTU, ip(&delivered));
    assert_eq!(
        rig.tx(&error, "an error about a reply"),
        icmp_too_big(
            NODE_MAC,
            backend_mac(backend),
            router,
            backend,
            MTU,
            ip(&reply)
        ),
        "the backend gets the error, quoting its own reply"
    );
    assert_eq!(moved(&before, &rig.counters(), reason::ICMP_TO_BACKEND), 1);

    // 5. The client itself sends it: the backend knows the VIP, not it.
    let error = icmp_too_big(CLIENT_MAC, NODE_MAC, client, vip, MTU, ip(&delivered));
    assert_eq!(
        rig.tx(&error, "the client's own error"),
        icmp_too_big(
            NODE_MAC,
            backend_mac(backend),
            vip,
            backend,
            MTU,
            ip(&reply)
        ),
        "an error the client sent reaches the backend from the VIP"
    );

    // 6. An error quoting no flow is the kernel's, untouched.
    let stray = FrameSpec::tcp(vip, 5432, router, 41000, tcp::ACK)
        .macs(NODE_MAC, ROUTER_MAC)
        .build();
    let error = icmp_too_big(ROUTER_MAC, NODE_MAC, router, vip, MTU, ip(&stray));
    assert_eq!(
        rig.run(&error),
        (action::PASS, error.clone()),
        "an error about no flow is passed as it came"
    );
}

#[test]
fn nat_errors_reach_the_other_end_translated_ipv4() {
    nat_errors(VIP, CLIENT, BACKEND, ROUTER);
}

#[test]
fn nat_errors_reach_the_other_end_translated_ipv6() {
    nat_errors(VIP6, CLIENT6, BACKEND6, ROUTER6);
}

/// dsr: the backends answer the clients themselves, so an error about a
/// reply (from the VIP to a client) belongs to the flow's backend, which
/// sent it: it goes there as it is, only the MACs change (Katran does the
/// same).
#[test]
fn dsr_errors_about_replies_reach_the_flows_backend() {
    let spec = ServiceSpec {
        mode: Mode::Dsr,
        backends: [31u8, 32, 33]
            .map(|last| BackendSpec {
                addr: IpAddr::V4(Ipv4Addr::new(10, 77, 0, last)),
                port: 5432,
                weight: 1,
            })
            .to_vec(),
        ..rig::nat_spec(VIP, BACKEND, 251)
    };
    let mut rig = Rig::master(&spec);
    let syn = FrameSpec::tcp(CLIENT, 40000, VIP, 5432, tcp::SYN)
        .macs(CLIENT_MAC, NODE_MAC)
        .build();
    let sent = rig.tx(&syn, "the client's SYN");
    let backend_mac_seen: [u8; 6] = sent[..6].try_into().expect("a MAC");
    assert!(
        spec.backends
            .iter()
            .any(|b| backend_mac(b.addr) == backend_mac_seen),
        "the SYN goes to one of the backends"
    );
    // The backend's SYN-ACK went straight to the client; a router on the
    // way sends the error to the VIP.
    let reply = FrameSpec::tcp(VIP, 5432, CLIENT, 40000, tcp::SYN | tcp::ACK)
        .macs(backend_mac_seen, ROUTER_MAC)
        .build();
    let error = icmp_too_big(ROUTER_MAC, NODE_MAC, ROUTER, VIP, MTU, ip(&reply));
    let mut expected = error.clone();
    expected[..6].copy_from_slice(&backend_mac_seen);
    expected[6..12].copy_from_slice(&NODE_MAC);
    assert_eq!(
        rig.tx(&error, "an error about a dsr reply"),
        expected,
        "the error goes to the flow's backend as it is"
    );
}
