//! Flow replication over mutual TLS (`[sync.tls]`), between two real data
//! planes on loopback. Every node holds a certificate of the cluster's CA
//! naming its sync address (127.0.0.1): A's flow reaches B over TLS 1.3.
//! A node whose certificate another CA signed is refused, whichever side
//! it is on, and so is a node that speaks plain TCP to a TLS listener:
//! the refusal is counted (`vipx_sync_refused_total{reason="tls"}`) and
//! nothing is installed. Needs root (BPF).

mod replica;

use replica::{BACKEND, Node, Options, Pki, VIP, nothing_passed, synced, wait_until};
use vipx_lab::rig::{key_of, nat_spec};

/// A node replicating with `tls`.
fn over(tls: std::sync::Arc<vipx_agent::sync::tls::Tls>) -> Options {
    Options {
        tls: Some(tls),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_replicate_over_mutual_tls() {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, mut b) = (Node::new(&spec), Node::new(&spec));
    let pki = Pki::new();
    let rb = b
        .replicator_with("b", Vec::new(), over(pki.node("b", None)))
        .await;
    let _ra = a
        .replicator_with("a", vec![rb.listen], over(pki.node("a", None)))
        .await;
    synced(&rb, "a").await;

    let syn = a.open(54_000);
    let key = key_of(&syn);
    let flow = a.rig.dataplane.maps().flow(&key).expect("A's flow");
    let maps_b = b.rig.dataplane.maps();
    wait_until("B holds A's flow", || maps_b.flow(&key).is_some()).await;
    assert_eq!(
        maps_b.flow(&key).expect("B's flow").nat_port,
        flow.nat_port,
        "the same NAT port"
    );
    let (sync_a, sync_b) = (a.metrics(), b.metrics());
    wait_until("A's batch acknowledged", || sync_a.acked_changes.get() >= 1).await;
    assert_eq!(sync_a.refused_tls.get() + sync_b.refused_tls.get(), 0);
}

/// Which node refuses the other.
#[derive(Clone, Copy, Debug)]
enum Refuser {
    A,
    B,
}

/// A, holding a flow, streams to B; `by` refuses the connection, counted
/// as a TLS refusal, and nothing passes.
async fn refused(a_options: Options, b_options: Options, by: Refuser) {
    let spec = nat_spec(VIP, BACKEND, 65537);
    let (mut a, mut b) = (Node::new(&spec), Node::new(&spec));
    a.open(54_100);
    let rb = b.replicator_with("b", Vec::new(), b_options).await;
    let _ra = a.replicator_with("a", vec![rb.listen], a_options).await;
    let refuser = match by {
        Refuser::A => a.metrics(),
        Refuser::B => b.metrics(),
    };
    wait_until("the TLS refusal", || refuser.refused_tls.get() > 0).await;
    nothing_passed(&a, &b).await;
    assert!(rb.synced().borrow().is_empty(), "B took no table of A's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_whose_certificate_another_ca_signed_is_refused() {
    let (cluster, other) = (Pki::new(), Pki::new());
    // A trusts the cluster's CA (it would accept B) but its own
    // certificate is the other CA's: B must refuse it.
    let a = over(other.node("a", Some(&cluster)));
    refused(a, over(cluster.node("b", None)), Refuser::B).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_certificate_another_ca_signed_gets_nothing() {
    let (cluster, other) = (Pki::new(), Pki::new());
    // B trusts the cluster's CA, but A checks B's certificate.
    let b = over(other.node("b", Some(&cluster)));
    refused(over(cluster.node("a", None)), b, Refuser::A).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_peer_is_refused_by_a_tls_listener() {
    let pki = Pki::new();
    refused(Options::default(), over(pki.node("b", None)), Refuser::B).await;
}
