use super::*;

const PING: Duration = Duration::from_millis(50);
const TIMEOUT: Duration = Duration::from_millis(300);

fn member(name: &str, last: u8) -> Member {
    Member {
        name: name.into(),
        address: SocketAddr::from(([10, 0, 0, last], 9469)),
    }
}

fn config(members: &[&str], witness: bool) -> ClusterConfig {
    ClusterConfig {
        secret_file: Some("/s".into()),
        members: members
            .iter()
            .enumerate()
            .map(|(i, n)| member(n, u8::try_from(i + 1).expect("few members")))
            .collect(),
        witness: witness.then(|| member("w", 100)),
        ping_interval: PING,
        quorum_timeout: TIMEOUT,
        ..ClusterConfig::default()
    }
}

fn master(group: &str) -> Vec<GroupReport> {
    vec![GroupReport {
        name: group.into(),
        state: "MASTER".into(),
        priority: 100,
    }]
}

#[test]
fn three_members_need_two() {
    let t0 = Instant::now();
    let mut view = View::new("n1", &config(&["n1", "n2", "n3"], false));
    let alone = view.quorum(t0);
    assert!(!alone.held, "1 of 3 is no majority");
    assert_eq!((alone.seen, alone.voters), (1, 3));
    view.heard("n2", t0, Vec::new(), Vec::new());
    assert!(view.quorum(t0 + TIMEOUT / 2).held, "2 of 3");
    assert!(
        !view.quorum(t0 + TIMEOUT).held,
        "a voter not heard for the quorum timeout no longer counts"
    );
}

#[test]
fn the_witness_counts_only_while_its_vote_is_ours() {
    let t0 = Instant::now();
    let mut view = View::new("n1", &config(&["n1", "n2"], true));
    view.witness_answered(Some("n2"), t0);
    assert!(!view.quorum(t0).held, "the witness voted for n2");
    assert!(view.wants_vote(t0, false), "alone among the members: asks");
    view.witness_answered(Some("n1"), t0);
    let q = view.quorum(t0 + Duration::from_millis(10));
    assert!(q.held && q.witness_vote, "self and the witness: 2 of 3");
    assert!(
        !view.quorum(t0 + TIMEOUT).held,
        "a grant is good for the quorum timeout from the ping that got it"
    );
    // Both members see each other: the witness is not needed, and a
    // BACKUP gives its vote back.
    view.heard("n2", t0, Vec::new(), Vec::new());
    assert!(view.quorum(t0 + TIMEOUT / 2).held);
    assert!(!view.wants_vote(t0, false));
    assert!(view.wants_vote(t0, true), "a MASTER keeps the vote");
}

#[test]
fn a_master_reported_directly_or_by_a_member_blocks_a_claim_until_its_window_ends() {
    let t0 = Instant::now();
    let mut view = View::new("n2", &config(&["n1", "n2", "n3"], false));
    view.heard("n1", t0, master("pg"), Vec::new());
    assert_eq!(view.other_masters("pg", t0), vec!["n1".to_owned()]);
    assert!(view.other_masters("web", t0).is_empty());
    assert!(
        view.other_masters("pg", t0 + TIMEOUT + PING).is_empty(),
        "after the quorum timeout and a ping, a silent MASTER has fenced itself"
    );
    // n3 still sees n1 as MASTER (a partial partition): that blocks too.
    let later = t0 + TIMEOUT * 2;
    view.heard(
        "n3",
        later,
        Vec::new(),
        vec![MasterSeen {
            group: "pg".into(),
            node: "n1".into(),
        }],
    );
    assert_eq!(view.other_masters("pg", later), vec!["n1".to_owned()]);
    assert_eq!(
        view.masters_seen(t0),
        vec![MasterSeen {
            group: "pg".into(),
            node: "n1".into()
        }]
    );
}

#[test]
fn only_listed_voters_from_their_address_are_known() {
    let view = View::new("n1", &config(&["n1", "n2"], true));
    assert!(view.knows("n2", "10.0.0.2".parse().unwrap()));
    assert!(
        !view.knows("n2", "10.0.0.9".parse().unwrap()),
        "wrong address"
    );
    assert!(!view.knows("n1", "10.0.0.1".parse().unwrap()), "ourselves");
    assert!(view.knows("w", "10.0.0.100".parse().unwrap()));
    assert!(!view.knows("n7", "10.0.0.7".parse().unwrap()));
}
