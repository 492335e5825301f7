//! Flow lifetimes: FIN both ways and idle timeouts end flows and free their
//! NAT ports, through the agent's own flow collector on the real maps.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use vipx_agent::dataplane::{FlowCollector, FlowTimeouts};
use vipx_common::action;
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{self, CLIENT_MAC, NODE_MAC, Rig, backend_mac},
};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 100));
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 21));
const BACKEND: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 31));

fn timeouts(tcp_idle: Duration, fin: Duration) -> FlowTimeouts {
    FlowTimeouts {
        tcp_idle,
        udp_idle: tcp_idle,
        fin,
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
