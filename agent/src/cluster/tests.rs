use super::*;
use crate::config::Member;

fn member(name: &str, last: u8) -> Member {
    Member {
        name: name.into(),
        address: std::net::SocketAddr::from(([10, 0, 0, last], 9469)),
    }
}

fn config() -> ClusterConfig {
    ClusterConfig {
        secret_file: Some("/s".into()),
        members: vec![member("n1", 1), member("n2", 2)],
        witness: Some(member("w", 3)),
        ping_interval: Duration::from_millis(20),
        quorum_timeout: Duration::from_millis(120),
        ..ClusterConfig::default()
    }
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

/// n1's ping, answered by `to`, fed back to n1 as its pinger would.
fn exchange(from: &Cluster, to: &Cluster, from_ip: IpAddr, witness: bool) -> Pong {
    let sent = Instant::now();
    let pong = to
        .on_ping(from_ip, from.ping())
        .expect("a listed voter is answered");
    {
        let mut view = lock(&from.view);
        if witness {
            view.witness_answered(pong.vote.as_deref(), sent);
        }
        view.heard(&pong.node, sent, pong.groups.clone(), pong.masters.clone());
    }
    from.evaluate();
    pong
}

#[test]
fn the_witness_gives_its_vote_to_the_master_and_the_cut_off_backup_has_no_quorum() {
    let n1 = Cluster::new("n1", &config(), Role::Node, None);
    let n2 = Cluster::new("n2", &config(), Role::Node, None);
    let w = Cluster::new("w", &config(), Role::Witness, None);
    n1.set_group_state("pg", "MASTER");
    n2.set_group_state("pg", "BACKUP");
    let pong = exchange(&n1, &w, ip(1), true);
    assert_eq!(pong.role, "witness");
    assert_eq!(
        pong.vote.as_deref(),
        Some("n1"),
        "the MASTER asks and gets the vote"
    );
    assert!(n1.has_quorum(), "n1 + the witness: 2 of 3");
    // n2 is cut off from n1 and asks too: the vote stays n1's.
    let pong = exchange(&n2, &w, ip(2), true);
    assert_eq!(pong.vote.as_deref(), Some("n1"));
    assert!(!n2.has_quorum(), "n2 alone: no quorum");
    assert_eq!(w.nodes().quorum.vote_holder.as_deref(), Some("n1"));
}

#[test]
fn a_voter_from_a_wrong_address_is_refused() {
    let n1 = Cluster::new("n1", &config(), Role::Node, None);
    let w = Cluster::new("w", &config(), Role::Witness, None);
    assert_eq!(
        w.on_ping(ip(9), n1.ping()),
        Err(Refusal::Unknown {
            node: "n1".into(),
            from: ip(9)
        })
    );
    assert!(
        w.on_register(
            ip(9),
            &Register {
                node: "n1".into(),
                epoch: 1
            }
        )
        .is_err()
    );
}

#[tokio::test]
async fn a_claim_waits_for_a_silent_master_to_fence_itself() {
    let n1 = Cluster::new("n1", &config(), Role::Node, None);
    let n2 = Cluster::new("n2", &config(), Role::Node, None);
    n1.set_group_state("pg", "MASTER");
    exchange(&n2, &n1, ip(2), false);
    exchange(&n1, &n2, ip(1), false);
    assert!(n2.has_quorum(), "n1 and n2 see each other");
    // A preemption does not wait for the MASTER it preempts.
    assert_eq!(n2.claim("pg", false).await, Ok(()));
    // n1 falls silent: n2 keeps the quorum only through the witness.
    let w = Cluster::new("w", &config(), Role::Witness, None);
    let started = Instant::now();
    let claim = async {
        let keep_vote = async {
            loop {
                exchange(&n2, &w, ip(2), true);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            claimed = n2.claim("pg", true) => claimed,
            () = keep_vote => unreachable!(),
        }
    };
    let claimed = tokio::time::timeout(Duration::from_secs(5), claim)
        .await
        .expect("a claim is bounded");
    // The witness gives its vote once n1's lease ran out (n1 never asked
    // it here), and the MASTER's report ends after the quorum timeout and a ping.
    assert_eq!(claimed, Ok(()), "allowed once n1 cannot still be serving");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "not before n1's report of MASTER aged out ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_claim_without_quorum_is_refused() {
    let n1 = Cluster::new("n1", &config(), Role::Node, None);
    assert!(matches!(
        n1.claim("pg", false).await,
        Err(ClaimRefused::NoQuorum(_))
    ));
}
