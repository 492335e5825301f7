//! A flow's end and its life reach the peers, between two real data
//! planes on loopback: a connection closed both ways on A is closed in
//! B's copy too (B then ends it after `fin_timeout`, as A does, not after
//! `tcp_idle_timeout` holding its NAT port); a new connection from the
//! same client port replaces B's copy; what A's collector forgets, B
//! forgets at once; and a flow that carries traffic on A never ages out of
//! B, although no packet of it reaches B. Needs root (BPF).

mod replica;

use std::time::{Duration, Instant};

use replica::{BACKEND, CLIENT, Node, VIP, connect, wait_until};
use vipx_agent::dataplane::{FlowCollector, FlowPolicy};
use vipx_common::{
    FlowKey, action,
    flow::{FLOW_F_ESTABLISHED, FLOW_F_FIN_BACKEND, FLOW_F_FIN_CLIENT},
};
use vipx_lab::{
    frames::{FrameSpec, tcp},
    rig::{flow_policy, key_of, nat_spec},
};

/// Runs a frame through `node`'s program, which must send it on.
fn send(node: &mut Node, frame: &FrameSpec, what: &str) {
    let (act, _) = node.rig.run(&frame.build()).expect("BPF_PROG_TEST_RUN");
    assert_eq!(act, action::TX, "{what}: sent on");
}

/// The backend's segment to the NAT port of `key`'s flow on `node`.
fn from_backend(node: &Node, key: &FlowKey, flags: u8) -> FrameSpec {
    let maps = node.rig.dataplane.maps();
    let flow = maps.flow(key).expect("the flow");
    let backend = maps.backend(flow.backend).expect("its backend");
    FrameSpec::tcp(BACKEND, backend.port, VIP, flow.nat_port, flags)
}

/// A connection from `client_port` through A, answered by its backend,
/// and B's copy of it established: its SYN and flow key.
async fn answered(a: &mut Node, b: &Node, client_port: u16) -> (FrameSpec, FlowKey) {
    let syn = a.open(client_port);
    let key = key_of(&syn);
    let answer = from_backend(a, &key, tcp::SYN | tcp::ACK);
    send(a, &answer, "the backend's SYN-ACK");
    let maps_b = b.rig.dataplane.maps();
    wait_until("B's copy is established", || {
        maps_b
            .flow(&key)
            .is_some_and(|f| f.flags & FLOW_F_ESTABLISHED != 0)
    })
    .await;
    (syn, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_flow_ends_on_the_peer_and_a_new_connection_replaces_it() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let mut a = Node::new(&spec);
    let mut b = Node::new(&spec);
    let (_rb, ra) = connect(&mut a, &mut b).await;
    let maps_b = b.rig.dataplane.maps();

    let (syn, key) = answered(&mut a, &b, 54_000).await;

    // The client closes, then the backend: closed both ways on A.
    let fin = FrameSpec::tcp(CLIENT, 54_000, VIP, 5432, tcp::FIN | tcp::ACK);
    send(&mut a, &fin, "the client's FIN");
    let backend_fin = from_backend(&a, &key, tcp::FIN | tcp::ACK);
    send(&mut a, &backend_fin, "the backend's FIN");
    let fins = FLOW_F_FIN_CLIENT | FLOW_F_FIN_BACKEND;
    wait_until(
        "B's copy is closed both ways (else it lives an hour)",
        || maps_b.flow(&key).is_some_and(|f| f.flags & fins == fins),
    )
    .await;

    // The client's port comes round again: a new connection, on A and in
    // B's copy (neither closed nor established any more).
    send(&mut a, &syn, "a SYN from the same client port");
    wait_until("B's copy is the new connection", || {
        maps_b
            .flow(&key)
            .is_some_and(|f| f.flags & (fins | FLOW_F_ESTABLISHED) == 0)
    })
    .await;

    // A's collector forgets it (embryonic, its time zero here): B forgets
    // its copy and NAT entry at once, without a collection of its own.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let policy = FlowPolicy {
        embryonic: Duration::ZERO,
        ..flow_policy(Duration::from_secs(3600))
    };
    let stats = FlowCollector::new(a.rig.dataplane.maps(), policy)
        .with_news(ra.news_sink())
        .collect();
    assert_eq!(stats.expired, 1, "A forgot the flow");
    wait_until("B forgot its copy", || maps_b.flow(&key).is_none()).await;
    assert!(
        maps_b.nat_entries().is_empty(),
        "its NAT entry went with it: {:?}",
        maps_b.nat_entries()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_flow_never_ages_out_of_the_peer() {
    // Idle timeouts of 4 s: A tells B of its active flows every second.
    const IDLE: Duration = Duration::from_secs(4);
    let spec = nat_spec(VIP, BACKEND, 65537);
    let mut a = Node::new(&spec);
    let mut b = Node::new(&spec);
    let (_rb, ra) = connect(&mut a, &mut b).await;
    let policy = flow_policy(IDLE);
    let mut collect_a =
        FlowCollector::new(a.rig.dataplane.maps(), policy).with_news(ra.news_sink());
    let mut collect_b = FlowCollector::new(b.rig.dataplane.maps(), policy);
    let maps_b = b.rig.dataplane.maps();

    let (_, key) = answered(&mut a, &b, 55_000).await;

    // Twice the idle timeout of traffic on A, with both collectors
    // running as the agents' do.
    let data = FrameSpec::tcp(CLIENT, 55_000, VIP, 5432, tcp::ACK | tcp::PSH).payload(b"SELECT 1;");
    let started = Instant::now();
    for round in 0.. {
        assert!(round < 200, "bounded: 200 rounds of 50 ms");
        if started.elapsed() >= IDLE * 2 {
            break;
        }
        send(&mut a, &data, "the client's query");
        collect_a.collect();
        collect_b.collect();
        assert!(
            a.rig.dataplane.maps().flow(&key).is_some(),
            "A keeps its busy flow ({:?} in)",
            started.elapsed()
        );
        assert!(
            maps_b.flow(&key).is_some(),
            "B keeps its copy of A's busy flow ({:?} in, idle timeout {IDLE:?})",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
