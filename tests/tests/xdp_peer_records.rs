//! The records of the groups' peers cannot be evicted (issue 11): before,
//! every advert of every VRID and source went into one 1,024-entry LRU, so
//! a flood of adverts from made-up sources (in a VRID no group uses, or in
//! an open one) pushed the real peers' records out. Now the groups' VRIDs
//! keep theirs in a map that never evicts, and a new source that finds it
//! full is refused (`peer_records_full`) instead.

use std::net::{IpAddr, Ipv4Addr};

use vipx_agent::{dataplane::PeerMaps, election::Advert};
use vipx_common::{
    PeerSeen, action,
    peer::{KIND_VRRP, PEER_RECORDS_ENTRIES, PEER_SEEN_ENTRIES},
    reason,
};
use vipx_lab::{frames, rig};

const PEER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 12));
const PEER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 13));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 79, 0, 100));
/// More made-up sources than either map holds.
const FLOOD: u32 = 2 * PEER_SEEN_ENTRIES;

fn advert(src: IpAddr, vrid: u8) -> Vec<u8> {
    frames::vrrp_advert(
        src,
        &Advert {
            vrid,
            priority: 100,
            max_advert_int: 100,
            addrs: vec![VIP],
        },
    )
}

/// The `i`-th made-up source (172.16.0.0/12).
fn stranger(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xac10_0000 + i))
}

struct Rig {
    rig: rig::Rig,
    peers: std::sync::Arc<PeerMaps>,
}

impl Rig {
    fn new() -> Self {
        let rig = rig::Rig::master(&[]).expect("load the XDP program");
        let peers = rig.dataplane.peer_maps();
        Self { rig, peers }
    }

    fn run(&mut self, frame: &[u8]) -> u32 {
        self.rig.run(frame).expect("BPF_PROG_TEST_RUN").0
    }

    fn seen(&self, vrid: u8, src: IpAddr) -> Option<PeerSeen> {
        self.peers
            .seen(vrid, KIND_VRRP, src)
            .expect("read a record")
    }

    fn reason(&self, slot: u32) -> u64 {
        self.rig.counters().expect("counters").reason(slot).packets
    }

    fn flood(&mut self, vrid: u8) {
        for i in 0..FLOOD {
            assert_eq!(self.run(&advert(stranger(i), vrid)), action::PASS);
        }
    }
}

#[test]
fn a_flood_in_a_vrid_no_group_uses_evicts_no_groups_peer() {
    let mut rig = Rig::new();
    rig.peers
        .set_peers(51, &[PEER_A])
        .expect("group 51's peers");
    assert_eq!(rig.run(&advert(PEER_A, 51)), action::PASS);
    assert!(rig.seen(51, PEER_A).is_some(), "peer A recorded");

    rig.flood(99);
    assert!(
        rig.seen(51, PEER_A).is_some(),
        "{FLOOD} adverts from made-up sources in VRID 99 left peer A's record in place"
    );
    // The flood itself is recorded, in the LRU, which evicted its own kind.
    assert!(
        rig.seen(99, stranger(FLOOD - 1)).is_some(),
        "the latest recorded"
    );
    assert!(
        rig.seen(99, stranger(0)).is_none(),
        "the first evicted by the LRU"
    );
}

#[test]
fn a_flood_in_an_open_group_is_refused_once_full_and_evicts_nobody() {
    let mut rig = Rig::new();
    // A group without unicast peers (multicast): every source is a peer.
    rig.peers.set_peers(52, &[]).expect("group 52 open");
    assert_eq!(rig.run(&advert(PEER_B, 52)), action::PASS);
    let full_before = rig.reason(reason::PEER_RECORDS_FULL);

    rig.flood(52);
    assert!(
        rig.seen(52, PEER_B).is_some(),
        "{FLOOD} adverts from made-up sources in VRID 52 left peer B's record in place"
    );
    let refused = rig.reason(reason::PEER_RECORDS_FULL) - full_before;
    // B and the first strangers fill the map; the rest are refused (a
    // hash map may refuse a little before it is full).
    let room = u64::from(PEER_RECORDS_ENTRIES) - 1;
    assert!(
        refused >= u64::from(FLOOD) - room,
        "at least {} of the flood refused, not {refused}",
        u64::from(FLOOD) - room
    );

    // The group goes: its records are freed, and its VRID's adverts go to
    // the LRU like any other unused VRID's.
    rig.peers.release(52).expect("release group 52");
    assert!(
        rig.seen(52, PEER_B).is_none(),
        "B's record freed with its group"
    );
    assert_eq!(rig.run(&advert(PEER_B, 52)), action::PASS);
    assert!(rig.seen(52, PEER_B).is_some(), "recorded in the LRU now");
}
