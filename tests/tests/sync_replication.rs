//! Flow replication between two real data planes on loopback: node A's
//! XDP program creates a flow; A's agent code streams it to B over the
//! authenticated replication channel; B installs it with its own ids and
//! its XDP program then serves the flow exactly as A did, both directions,
//! although B's Maglev would have picked another backend. A peer whose
//! agent restarted (it holds nothing of A's run) gets A's whole table
//! again. A peer without the cluster secret gets nothing. Needs root
//! (BPF).

mod replica;

use std::time::{Duration, Instant};

use replica::{
    BACKEND, CLIENT, Node, Relay, SECRET, VIP, connect, nothing_passed, synced, wait_until,
};
use vipx_agent::{
    config::PortRange,
    dataplane::{FlowCollector, FlowPolicy},
    sync::Replicator,
};
use vipx_common::{
    action,
    flow::{FLOW_F_ESTABLISHED, FLOW_F_RST},
    reason,
};
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{flow_policy, key_of, nat_spec},
};

/// The destination port of a TCP frame leaving XDP (IPv4, no options).
fn dport(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[36], frame[37]])
}

/// The source port of a TCP frame leaving XDP (IPv4, no options).
fn sport(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[34], frame[35]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_created_on_one_node_is_served_by_its_peer_as_it_was() {
    let spec_a = nat_spec(VIP, BACKEND, 65537);
    // B lists the same PgBouncers in the other order: its backend ids and
    // its Maglev differ from A's, so only replication can make B agree.
    let mut spec_b = spec_a.clone();
    spec_b.backends.reverse();
    let mut a = Node::new(&spec_a);
    let mut b = Node::new(&spec_b);

    // A connection reaches A first.
    let syn = FrameSpec::tcp(CLIENT, 51_000, VIP, 5432, tcp::SYN);
    let (act, out_a) = a.rig.run(&syn.build()).expect("run on A");
    assert_eq!(act, action::TX, "A forwards the SYN");
    let backend_port = dport(&out_a);
    let nat_port = sport(&out_a);
    assert!(
        (6432..=6434).contains(&backend_port),
        "to a PgBouncer: {backend_port}"
    );
    assert!(
        (40000..=40999).contains(&nat_port),
        "a NAT port: {nat_port}"
    );

    // B starts, then A, which streams its table to B.
    let rb = b.replicator("b", Vec::new(), SECRET).await;
    let _ra = a.replicator("a", vec![rb.listen], SECRET).await;
    let key = key_of(&syn);
    let maps_b = b.rig.dataplane.maps();
    wait_until("B holds A's flow", || maps_b.flow(&key).is_some()).await;
    let mut synced = rb.synced();
    tokio::time::timeout(
        Duration::from_secs(10),
        synced.wait_for(|s| s.contains(&"a".to_owned())),
    )
    .await
    .expect("A says B holds its whole table within 10 s")
    .expect("the receiver runs");

    // B, now the one the client reaches, sends the next packet where A did,
    // from the same NAT port.
    let ack = FrameSpec::tcp(CLIENT, 51_000, VIP, 5432, tcp::ACK);
    let (act, out_b) = b.rig.run(&ack.build()).expect("run on B");
    assert_eq!(act, action::TX, "B forwards the client's packet");
    assert_eq!(dport(&out_b), backend_port, "to A's backend");
    assert_eq!(sport(&out_b), nat_port, "from A's NAT port");
    let counters = b.rig.counters().expect("counters");
    assert_eq!(
        counters.reason(reason::FLOW_HIT).packets,
        1,
        "a flow hit on B"
    );

    // The backend's reply reaches B: translated back to the client.
    let reply = FrameSpec::tcp(BACKEND, backend_port, VIP, nat_port, tcp::ACK);
    let (act, out) = b.rig.run(&reply.build()).expect("reply on B");
    assert_eq!(act, action::TX, "B sends the reply on");
    assert_eq!(sport(&out), 5432, "from the VIP's port");
    assert_eq!(dport(&out), 51_000, "to the client's port");
    assert_eq!(&out[30..34], &[10, 77, 0, 50], "to the client");
    assert_eq!(
        b.rig
            .counters()
            .expect("counters")
            .reason(reason::NAT_REPLY)
            .packets,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_flows_and_resets_stream_from_the_program_as_they_happen() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let mut a = Node::new(&spec);
    let mut b = Node::new(&spec);
    let (_rb, _ra) = connect(&mut a, &mut b).await;

    // A flow created after the bulk travels as the program reports it.
    let syn = FrameSpec::tcp(CLIENT, 52_000, VIP, 5432, tcp::SYN);
    let (act, _) = a.rig.run(&syn.build()).expect("run on A");
    assert_eq!(act, action::TX);
    let key = key_of(&syn);
    let flow = a.rig.dataplane.maps().flow(&key).expect("A's flow");
    let maps_b = b.rig.dataplane.maps();
    wait_until("B holds the new flow", || maps_b.flow(&key).is_some()).await;
    assert_eq!(
        maps_b.flow(&key).expect("B's flow").nat_port,
        flow.nat_port,
        "the same NAT port"
    );
    assert_eq!(maps_b.nat_entries().len(), 1, "and its NAT entry");
    let sync_a = a.sync.clone().expect("A replicates");
    wait_until("A's lag is measured at B's acknowledgement", || {
        sync_a.lag.get_sample_count() >= 1
    })
    .await;
    let lag = sync_a.lag.get_sample_sum();
    println!("replication lag of the new flow: {:.0} us", lag * 1e6);
    assert!(
        lag > 0.0 && lag < 10.0,
        "from the flow's creation to B's acknowledgement: {lag} s"
    );

    // The backend answers on A: B's copy is established too (else B's
    // collector would forget it as embryonic).
    let backend = a
        .rig
        .dataplane
        .maps()
        .backend(flow.backend)
        .expect("its backend");
    let answer = FrameSpec::tcp(
        BACKEND,
        backend.port,
        VIP,
        flow.nat_port,
        tcp::SYN | tcp::ACK,
    );
    let (act, _) = a.rig.run(&answer.build()).expect("run on A");
    assert_eq!(act, action::TX, "A translates the answer");
    wait_until("B's copy is established", || {
        maps_b
            .flow(&key)
            .is_some_and(|f| f.flags & FLOW_F_ESTABLISHED != 0)
    })
    .await;

    // The client resets it on A: B's copy carries the RST too, so that
    // B's collector ends it as A's does once it stays quiet (here at once).
    let rst = FrameSpec::tcp(CLIENT, 52_000, VIP, 5432, tcp::RST);
    let (act, _) = a.rig.run(&rst.build()).expect("run on A");
    assert_eq!(act, action::TX, "A forwards the reset");
    wait_until("B's copy carries the RST", || {
        maps_b.flow(&key).is_some_and(|f| f.flags & FLOW_F_RST != 0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let policy = FlowPolicy {
        rst: Duration::ZERO,
        ..flow_policy(Duration::from_secs(3600))
    };
    for node in [&a, &b] {
        FlowCollector::new(node.rig.dataplane.maps(), policy).collect();
    }
    assert!(a.rig.dataplane.maps().flow(&key).is_none(), "A forgot it");
    assert!(maps_b.flow(&key).is_none(), "B forgot it");
    assert!(
        maps_b.nat_entries().is_empty(),
        "its NAT entry went with it: {:?}",
        maps_b.nat_entries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_secret_gets_nothing() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let mut a = Node::new(&spec);
    let mut b = Node::new(&spec);
    let syn = FrameSpec::tcp(CLIENT, 53_000, VIP, 5432, tcp::SYN);
    a.rig.run(&syn.build()).expect("run on A");
    let rb = b
        .replicator("b", Vec::new(), b"another secret, just as long...")
        .await;
    let _ra = a.replicator("a", vec![rb.listen], SECRET).await;
    let sync_a = a.metrics();
    wait_until("A refuses B's proof", || sync_a.refused.get() > 0).await;
    nothing_passed(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_flows_reach_the_peer_and_the_lag_is_reported() {
    const FLOWS: u16 = 10_000;
    let mut spec = nat_spec(VIP, BACKEND, 65537);
    // Room for 10,000 flows: the default range, 28,232 ports per backend.
    spec.nat_ports = PortRange::default();
    let mut a = Node::new(&spec);
    let mut b = Node::new(&spec);
    let (_rb, _ra) = connect(&mut a, &mut b).await;

    let started = Instant::now();
    for port in 0..FLOWS {
        let syn = FrameSpec::tcp(CLIENT, 20_000 + port, VIP, 5432, tcp::SYN);
        let (act, _) = a.rig.run(&syn.build()).expect("run on A");
        assert_eq!(act, action::TX, "A forwards SYN {port}");
    }
    let created = started.elapsed();
    let maps_b = b.rig.dataplane.maps();
    let deadline = Instant::now() + Duration::from_secs(60);
    while maps_b.flows().len() < usize::from(FLOWS) {
        assert!(
            Instant::now() < deadline,
            "B holds {} of {FLOWS} flows after 60 s",
            maps_b.flows().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = started.elapsed();
    assert_eq!(
        maps_b.nat_entries().len(),
        usize::from(FLOWS),
        "every NAT entry too"
    );
    let sync_a = a.sync.clone().expect("A replicates");
    assert_eq!(
        a.rig
            .counters()
            .expect("counters")
            .reason(reason::FLOW_NEW)
            .packets,
        u64::from(FLOWS)
    );
    println!(
        "{FLOWS} flows created on A in {created:?}, all held by B after {held:?}; \
         lag: {} batches acknowledged, mean {:.0} us",
        sync_a.lag.get_sample_count(),
        sync_a.lag.get_sample_sum() / sync_a.lag.get_sample_count().max(1) as f64 * 1e6
    );
}

/// A streams to B through a relay (a link that can be cut or silenced);
/// B holds A's (empty) table. Returns A, B, B's replicator, the relay and
/// A's replicator.
async fn relayed(
    spec: &vipx_agent::dataplane::ServiceSpec,
) -> (Node, Node, Replicator, Relay, Replicator) {
    let (mut a, mut b) = (Node::new(spec), Node::new(spec));
    let rb = b.replicator("b", Vec::new(), SECRET).await;
    let relay = Relay::to(rb.listen).await;
    let ra = a.replicator("a", vec![relay.addr], SECRET).await;
    synced(&rb, "a").await;
    (a, b, rb, relay, ra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_agent_restarted_gets_the_whole_table_again() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, b, rb, relay, _ra) = relayed(&spec).await;
    // A's batches to B are numbered past 1.
    let first = key_of(&a.open(57_000));
    let maps_b = b.rig.dataplane.maps();
    wait_until("B holds the first flow", || maps_b.flow(&first).is_some()).await;

    // B's agent restarts: a new run, which knows nothing of A's batches.
    let mut b2 = Node::new(&spec);
    let rb2 = b2.replicator("b", Vec::new(), SECRET).await;
    relay.point_to(rb2.listen);
    relay.cut();
    synced(&rb2, "a").await;
    let maps_b2 = b2.rig.dataplane.maps();
    wait_until("the restarted B holds A's flow", || {
        maps_b2.flow(&first).is_some()
    })
    .await;
    let second = key_of(&a.open(57_001));
    wait_until("and the flows that follow", || {
        maps_b2.flow(&second).is_some()
    })
    .await;
    drop(rb);
}

/// A partition (nothing passes, nothing closes) is noticed within the
/// replication's silence bound, not after TCP's retransmissions: the
/// receiver stops counting the sender's table as held (so its readiness
/// gate would hold a preemption), and once the link is back the flows
/// opened meanwhile arrive and the table counts as held again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_dropped_then_resumed_when_it_is_back() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, b, rb, relay, _ra) = relayed(&spec).await;

    relay.silence(true);
    let silenced = Instant::now();
    let mut held = rb.synced();
    tokio::time::timeout(
        Duration::from_secs(10),
        held.wait_for(|peers| !peers.iter().any(|p| p == "a")),
    )
    .await
    .expect("B no longer counts A's table as held while nothing passes")
    .expect("the receiver runs");
    let noticed = silenced.elapsed();
    let during = key_of(&a.open(58_000));

    relay.silence(false);
    let back = Instant::now();
    let maps_b = b.rig.dataplane.maps();
    wait_until("B holds the flow A opened during the partition", || {
        maps_b.flow(&during).is_some()
    })
    .await;
    synced(&rb, "a").await;
    println!(
        "silence noticed by B after {noticed:?}; the flow opened meanwhile installed and A's table held again {:?} after the link came back",
        back.elapsed()
    );
}
