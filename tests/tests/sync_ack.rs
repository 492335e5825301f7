//! Ack levels (`[sync] ack`) between real data planes on loopback. With
//! `quorum`, a change counts as acknowledged once floor(N/2) peers of the
//! N nodes hold it: of 3 nodes with one peer down, the other peer is
//! enough; of 4 nodes with two peers down, one peer is not, and the
//! changes stay unacknowledged (`vipx_sync_unacked_changes`), which a
//! stopping MASTER's wait reports. With `none`, a peer whose connection
//! broke gets the whole table again, nothing resent; with `once`, it gets
//! what it lacks and no whole table. Needs root (BPF).

mod replica;

use std::{sync::Arc, time::Duration};

use replica::{BACKEND, Node, Options, Relay, VIP, down_peer, synced, wait_until};
use vipx_agent::{
    config::AckLevel,
    sync::{Replicator, SyncMetrics},
};
use vipx_lab::rig::{key_of, nat_spec};

/// Flows A opens in each test.
const FLOWS: u64 = 3;

fn acking(ack: AckLevel) -> Options {
    Options {
        ack,
        ..Options::default()
    }
}

/// A and B replicating, B receiving.
struct Pair {
    a: Node,
    ra: Replicator,
    _b: Node,
    _rb: Replicator,
}

/// A streams to B and to `down` peers that never answer; A opens
/// [`FLOWS`] flows, and B holds them.
async fn with_peers_down(ack: AckLevel, down: usize) -> Pair {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, mut b) = (Node::new(&spec), Node::new(&spec));
    let rb = b.replicator_with("b", Vec::new(), acking(ack)).await;
    let mut peers = vec![rb.listen];
    for _ in 0..down {
        peers.push(down_peer().await);
    }
    let ra = a.replicator_with("a", peers, acking(ack)).await;
    synced(&rb, "a").await;
    let maps_b = b.rig.dataplane.maps();
    for port in 0..FLOWS as u16 {
        let key = key_of(&a.open(55_000 + port));
        wait_until("B holds A's flow", || maps_b.flow(&key).is_some()).await;
    }
    Pair {
        a,
        ra,
        _b: b,
        _rb: rb,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_of_three_nodes_is_reached_with_one_peer_down() {
    let Pair { a, ra, .. } = with_peers_down(AckLevel::Quorum, 1).await;
    let sync_a = a.metrics();
    wait_until("A's changes reach the quorum", || {
        sync_a.acked_changes.get() == FLOWS
    })
    .await;
    assert_eq!(sync_a.unacked_changes.get(), 0, "none short of it");
    assert_eq!(
        sync_a.ack_seconds.get_sample_count(),
        FLOWS,
        "an ack time for each"
    );
    let waited = ra.drained(Duration::from_secs(1)).await;
    assert!(
        waited.is_ok(),
        "a stopping MASTER would not wait: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_of_four_nodes_is_not_reached_with_two_peers_down() {
    let Pair { a, ra, .. } = with_peers_down(AckLevel::Quorum, 2).await;
    let sync_a = a.metrics();
    // B installed and acknowledged them (it holds them): one peer of the
    // two needed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sync_a.acked_changes.get(), 0, "no change at the quorum");
    assert_eq!(
        sync_a.unacked_changes.get(),
        FLOWS as i64,
        "all short of it"
    );
    assert_eq!(
        ra.drained(Duration::from_millis(200)).await,
        Err(FLOWS as usize),
        "a stopping MASTER's bounded wait ends with them unacknowledged"
    );
}

/// What a test of a reconnection keeps running while it looks: A's
/// metrics, and the nodes, their replicators and the relay between them.
struct Reconnected {
    sync_a: Arc<SyncMetrics>,
    _running: (Node, Node, Replicator, Replicator, Relay),
}

/// A streams to B through a relay; once B holds a first flow, the relay
/// cuts the connection and A opens a second flow; A reconnects by itself.
/// Returns once B holds the second flow.
async fn reconnected(ack: AckLevel) -> Reconnected {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, mut b) = (Node::new(&spec), Node::new(&spec));
    let rb = b.replicator_with("b", Vec::new(), acking(ack)).await;
    let relay = Relay::to(rb.listen).await;
    let ra = a.replicator_with("a", vec![relay.addr], acking(ack)).await;
    synced(&rb, "a").await;
    let maps_b = b.rig.dataplane.maps();
    let first = key_of(&a.open(56_000));
    wait_until("B holds the first flow", || maps_b.flow(&first).is_some()).await;
    let sync_a = a.metrics();
    assert_eq!(
        sync_a.bulks.get(),
        1,
        "one whole table, at the first connection"
    );

    relay.cut();
    let second = key_of(&a.open(56_001));
    wait_until("B holds the flow opened while the link was cut", || {
        maps_b.flow(&second).is_some()
    })
    .await;
    Reconnected {
        sync_a,
        _running: (a, b, ra, rb, relay),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_none_a_reconnected_peer_gets_the_whole_table_not_a_resend() {
    let Reconnected { sync_a, _running } = reconnected(AckLevel::None).await;
    wait_until("A counts its second whole table", || {
        sync_a.bulks.get() >= 2
    })
    .await;
    assert_eq!(sync_a.bulks.get(), 2, "a whole table again after the cut");
    assert_eq!(sync_a.resent.get(), 0, "nothing kept, nothing resent");
    assert_eq!(sync_a.unacked.get(), 0, "no batch kept");
    assert_eq!(
        (sync_a.acked_changes.get(), sync_a.unacked_changes.get()),
        (0, 0),
        "none tracks nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_once_a_reconnected_peer_resumes_without_a_whole_table() {
    let Reconnected { sync_a, _running } = reconnected(AckLevel::Once).await;
    wait_until("both flows acknowledged", || {
        sync_a.acked_changes.get() == 2
    })
    .await;
    assert_eq!(sync_a.unacked_changes.get(), 0);
    assert_eq!(sync_a.bulks.get(), 1, "no whole table after the cut");
}
