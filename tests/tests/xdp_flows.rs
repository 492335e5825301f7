//! Flow lifetimes: FIN both ways, idle timeouts and a RST followed by
//! silence end flows and free their NAT ports, through the agent's own
//! flow collector on the real maps; a RST the session outlives ends
//! nothing.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use vipx_agent::dataplane::{FlowCollector, FlowPolicy};
use vipx_common::action;
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, backend_mac},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));

/// Flows idle `tcp_idle` (any state but closed) or closed `fin` are
/// forgotten; no limit on embryonic flows.
fn timeouts(tcp_idle: Duration, fin: Duration) -> FlowPolicy {
    FlowPolicy {
        fin,
        ..rig::flow_policy(tcp_idle)
    }
}

/// Opens a nat flow and returns the SYN and the backend's reply template.
fn open(rig: &mut Rig, sport: u16) -> (FrameSpec, FrameSpec) {
    let syn = FrameSpec::tcp(CLIENT, sport, VIP, 5432, tcp::SYN).macs(CLIENT_MAC, NODE_MAC);
    let (act, _) = rig.run(&syn.build()).expect("run SYN");
    assert_eq!(act, action::TX, "SYN forwarded");
    let flow = rig.flow(&syn).expect("flow recorded");
    let backend = rig::maglev_backend(&rig::nat_spec(VIP, BACKEND, 251), &syn).expect("Maglev");
    let reply = FrameSpec::tcp(backend.addr, backend.port, VIP, flow.nat_port, tcp::ACK)
        .macs(backend_mac(backend.addr), NODE_MAC);
    (syn, reply)
}

#[test]
fn fin_both_ways_ends_the_flow_after_fin_timeout() {
    let mut rig = Rig::master(&[rig::nat_spec(VIP, BACKEND, 251)]).expect("rig");
    let (syn, reply) = open(&mut rig, 47000);
    let (_, other_reply) = open(&mut rig, 47001);
    let maps = rig.dataplane.maps();
    let mut collector = FlowCollector::new(
        maps.clone(),
        timeouts(Duration::from_secs(3600), Duration::ZERO),
    );

    // A FIN from the client only: the flow stays.
    let fin =
        FrameSpec::tcp(CLIENT, 47000, VIP, 5432, tcp::FIN | tcp::ACK).macs(CLIENT_MAC, NODE_MAC);
    assert_eq!(rig.run(&fin.build()).expect("run").0, action::TX);
    std::thread::sleep(Duration::from_millis(5));
    let stats = collector.collect();
    assert_eq!(stats.expired, 0, "a half-closed flow stays");
    assert!(rig.flow(&syn).is_some());

    // The backend's FIN too: gone at the next collection, NAT port freed.
    let back_fin = FrameSpec {
        transport: vipx_lab::frames::Transport::Tcp {
            flags: tcp::FIN | tcp::ACK,
            seq: 1,
        },
        ..reply
    };
    assert_eq!(rig.run(&back_fin.build()).expect("run").0, action::TX);
    std::thread::sleep(Duration::from_millis(5));
    let stats = collector.collect();
    assert_eq!(stats.expired, 1, "the closed flow is forgotten");
    assert!(rig.flow(&syn).is_none());
    assert_eq!(
        maps.nat_entries().len(),
        1,
        "only the other flow's NAT port stays"
    );
    assert_eq!(stats.flows.values().sum::<u64>(), 1, "one flow left");
    assert_eq!(
        stats.nat_ports.values().sum::<u64>(),
        1,
        "one NAT port in use"
    );
    // The other flow still answers.
    assert_eq!(rig.run(&other_reply.build()).expect("run").0, action::TX);
}

#[test]
fn idle_flows_expire_and_orphan_nat_entries_are_removed() {
    let mut rig = Rig::master(&[rig::nat_spec(VIP, BACKEND, 251)]).expect("rig");
    let (syn, reply) = open(&mut rig, 48000);
    let maps = rig.dataplane.maps();
    let mut patient = FlowCollector::new(
        maps.clone(),
        timeouts(Duration::from_secs(3600), Duration::from_secs(10)),
    );
    assert_eq!(patient.collect().expired, 0, "a fresh flow is kept");

    std::thread::sleep(Duration::from_millis(20));
    let mut strict = FlowCollector::new(
        maps.clone(),
        timeouts(Duration::from_millis(10), Duration::from_secs(10)),
    );
    let stats = strict.collect();
    assert_eq!(stats.expired, 1, "idle past its timeout");
    assert!(rig.flow(&syn).is_none());
    assert!(maps.nat_entries().is_empty(), "its NAT port is free");
    // With the NAT entry gone the reply, still to the VIP's NAT range,
    // matches nothing: dropped, not handed to the kernel (which would
    // answer RST).
    assert_eq!(rig.run(&reply.build()).expect("run").0, action::DROP);

    // A NAT entry whose flow vanished (LRU eviction) goes one run later.
    let (syn, _) = open(&mut rig, 48001);
    let key = rig::key_of(&syn);
    maps.remove_flow(&key)
        .expect("drop the flow as the LRU would");
    assert_eq!(strict.collect().orphans, 0, "first seen as an orphan: kept");
    assert_eq!(strict.collect().orphans, 1, "still an orphan: removed");
    assert!(maps.nat_entries().is_empty());
}

#[test]
fn on_down_reset_forgets_the_flows_of_one_backend_only() {
    let spec = rig::nat_spec(VIP, BACKEND, 251);
    let mut rig = Rig::master(std::slice::from_ref(&spec)).expect("rig");
    let mut per_backend: std::collections::HashMap<u32, Vec<FrameSpec>> = Default::default();
    for port in 49000..49030 {
        let (syn, _) = open(&mut rig, port);
        let flow = rig.flow(&syn).expect("flow");
        per_backend.entry(flow.backend).or_default().push(syn);
    }
    assert_eq!(per_backend.len(), 3, "30 flows reach all three backends");
    let (&victim, gone) = per_backend.iter().next().expect("a backend");
    let maps = rig.dataplane.maps();
    let nat_before = maps.nat_entries().len();
    assert_eq!(maps.remove_flows_to(victim), gone.len());
    for syn in gone {
        assert!(
            rig.flow(syn).is_none(),
            "flows of the reset backend are gone"
        );
    }
    for (backend, kept) in &per_backend {
        if *backend != victim {
            assert!(
                kept.iter().all(|syn| rig.flow(syn).is_some()),
                "other backends keep theirs"
            );
        }
    }
    assert_eq!(
        maps.nat_entries().len(),
        nat_before - gone.len(),
        "their NAT ports are free"
    );
}

#[test]
fn the_collector_reads_every_flow_of_a_large_table() {
    // More flows than one batch read holds (4096): every one is counted
    // once, and every one expires once.
    const COUNT: u32 = 10_000;
    let rig = Rig::master(&[rig::nat_spec(VIP, BACKEND, 251)]).expect("rig");
    let maps = rig.dataplane.maps();
    let flow = vipx_common::Flow {
        flags: vipx_common::flow::FLOW_F_REPLICA,
        ..vipx_common::Flow::default()
    };
    let mut keys = std::collections::HashSet::new();
    for i in 0..COUNT {
        let client = IpAddr::V4(Ipv4Addr::from(0xac10_0000 + i / 1000));
        let frame = FrameSpec::tcp(client, 1024 + (i % 1000) as u16, VIP, 5432, tcp::ACK);
        let key = rig::key_of(&frame);
        maps.insert_flow(&key, &flow, None).expect("write a flow");
        keys.insert(key);
    }
    let read: Vec<_> = maps.flows().into_iter().map(|(key, _)| key).collect();
    assert_eq!(read.len(), COUNT as usize, "each flow read once");
    assert!(
        read.iter().all(|key| keys.contains(key)),
        "only the flows written"
    );
    let mut keep = FlowCollector::new(
        maps.clone(),
        timeouts(
            Duration::from_secs(u64::MAX / 4_000_000_000),
            Duration::from_secs(10),
        ),
    );
    let stats = keep.collect();
    assert_eq!(stats.expired, 0, "nothing idle for that long");
    assert_eq!(stats.replicated, u64::from(COUNT), "every flow counted");
    let mut expire = FlowCollector::new(maps.clone(), timeouts(Duration::ZERO, Duration::ZERO));
    assert_eq!(
        expire.collect().expired,
        u64::from(COUNT),
        "every flow expired once"
    );
    assert!(maps.flows().is_empty(), "the table is empty");
}

/// A RST from the client on the flow of `syn`, with sequence number `seq`.
fn client_rst(syn: &FrameSpec, seq: u32) -> FrameSpec {
    FrameSpec {
        transport: vipx_lab::frames::Transport::Tcp {
            flags: tcp::RST,
            seq,
        },
        ..syn.clone()
    }
}

#[test]
fn a_rst_with_a_wrong_sequence_number_leaves_the_session_working() {
    // Issue 13: a forged RST with any sequence number deleted the flow at
    // once. The endpoint judges the RST (RFC 5961: out of window, it is
    // ignored), so the program forwards it and keeps the flow.
    let mut rig = Rig::master(&[rig::nat_spec(VIP, BACKEND, 251)]).expect("rig");
    let (syn, reply) = open(&mut rig, 50000);
    assert_eq!(rig.run(&reply.build()).expect("run").0, action::TX);
    let forged = client_rst(&syn, 0x5eed_0000);
    assert_eq!(
        rig.run(&forged.build()).expect("run").0,
        action::TX,
        "the RST goes on to the backend, which judges it"
    );
    assert!(rig.flow(&syn).is_some(), "the flow outlives a RST");
    // The backend ignored it and answers: its reply reaches the client.
    let (act, out) = rig.run(&reply.build()).expect("run");
    assert_eq!(act, action::TX, "the backend's reply still goes back");
    let to_client = reply
        .clone()
        .addrs(VIP, 5432, CLIENT, 50000)
        .macs(NODE_MAC, CLIENT_MAC)
        .build();
    assert_eq!(out, to_client, "translated back to the client");

    // The session goes on after the RST: the flow no longer ends by it,
    // even with no grace at all, and both halves still work.
    std::thread::sleep(Duration::from_millis(300));
    let data =
        FrameSpec::tcp(CLIENT, 50000, VIP, 5432, tcp::ACK | tcp::PSH).macs(CLIENT_MAC, NODE_MAC);
    assert_eq!(rig.run(&data.build()).expect("run").0, action::TX);
    assert_eq!(rig.run(&reply.build()).expect("run").0, action::TX);
    let hour = Duration::from_secs(3600);
    let mut collector = FlowCollector::new(
        rig.dataplane.maps(),
        FlowPolicy {
            rst: Duration::ZERO,
            ..timeouts(hour, hour)
        },
    );
    assert_eq!(collector.collect().expired, 0, "traffic went on");
    assert!(rig.flow(&syn).is_some());
    assert_eq!(rig.run(&reply.build()).expect("run").0, action::TX);
}

#[test]
fn a_rst_followed_by_silence_ends_the_flow_after_rst_timeout() {
    let mut rig = Rig::master(&[rig::nat_spec(VIP, BACKEND, 251)]).expect("rig");
    let (syn, reply) = open(&mut rig, 50100);
    let (other, _) = open(&mut rig, 50101);
    assert_eq!(rig.run(&reply.build()).expect("run").0, action::TX);
    // The backend resets the connection (a RST from either side counts).
    let rst = FrameSpec {
        transport: vipx_lab::frames::Transport::Tcp {
            flags: tcp::RST | tcp::ACK,
            seq: 1,
        },
        ..reply.clone()
    };
    assert_eq!(rig.run(&rst.build()).expect("run").0, action::TX);
    let maps = rig.dataplane.maps();
    let hour = Duration::from_secs(3600);
    let mut patient = FlowCollector::new(maps.clone(), timeouts(hour, hour));
    assert_eq!(patient.collect().expired, 0, "not at once");

    std::thread::sleep(Duration::from_millis(20));
    let mut collector = FlowCollector::new(
        maps.clone(),
        FlowPolicy {
            rst: Duration::from_millis(10),
            ..timeouts(hour, hour)
        },
    );
    assert_eq!(collector.collect().expired, 1, "quiet past rst_timeout");
    assert!(rig.flow(&syn).is_none(), "the reset flow is gone");
    assert!(rig.flow(&other).is_some(), "the other flow stays");
    assert_eq!(maps.nat_entries().len(), 1, "its NAT port is free");
}
