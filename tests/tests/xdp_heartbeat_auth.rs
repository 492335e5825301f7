//! Authenticated heartbeats through the real XDP program (issue 11): with
//! the cluster key set, a heartbeat counts only with the SipHash-2-4 tag
//! of its first 24 bytes under the key (computed here by the `siphasher`
//! crate, not by vipx) and an (epoch, sequence) above the last recorded
//! from its source. A forged one (priority 0 to force a takeover, or
//! MASTER to hold one off) and a replayed one are dropped unrecorded.

use std::{
    hash::Hasher as _,
    net::{IpAddr, Ipv4Addr},
};

use vipx_common::{
    Heartbeat, HeartbeatKey, PeerKey, action,
    peer::{KIND_HEARTBEAT, STATE_MASTER},
    reason,
};
use vipx_lab::{
    frames::FrameSpec,
    rig::{self, CLIENT_MAC, NODE_MAC},
};

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 12));
const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 11));
const PORT: u16 = 7374;
const KEY: HeartbeatKey = HeartbeatKey {
    k0: 0x0123_4567_89ab_cdef,
    k1: 0x0fed_cba9_8765_4321,
};

/// A heartbeat frame with the payload given byte for byte.
fn frame(payload: &[u8]) -> Vec<u8> {
    FrameSpec::udp(PEER, PORT, NODE, PORT)
        .payload(payload)
        .ttl(255)
        .macs(CLIENT_MAC, NODE_MAC)
        .build()
}

/// The payload of a heartbeat (the layout of `vipx_common::peer`), tagged
/// with SipHash-2-4 under `key` by the reference crate.
fn payload(priority: u8, epoch: u64, seq: u32, key: &HeartbeatKey) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(b"vpHB");
    p.extend_from_slice(&[2, 51, priority, STATE_MASTER]);
    p.extend_from_slice(&epoch.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0x03, 0xe8, 10]);
    let mut mac = siphasher::sip::SipHasher24::new_with_keys(key.k0, key.k1);
    mac.write(&p);
    p.extend_from_slice(&mac.finish().to_le_bytes());
    p
}

struct Rig {
    rig: rig::Rig,
    peers: std::sync::Arc<vipx_agent::dataplane::PeerMaps>,
}

impl Rig {
    fn new(key: Option<HeartbeatKey>) -> Self {
        let rig = rig::Rig::master(&[]).expect("load the XDP program");
        let peers = rig.dataplane.peer_maps();
        peers.set_heartbeat(PORT, key).expect("heartbeat settings");
        peers.set_peers(51, &[PEER]).expect("peer list");
        Self { rig, peers }
    }

    /// Runs `frame`: it must be dropped for `why`.
    fn dropped(&mut self, what: &str, frame: &[u8], why: u32) {
        let before = self.rig.counters().expect("counters");
        let (act, _) = self.rig.run(frame).expect("BPF_PROG_TEST_RUN");
        let after = self.rig.counters().expect("counters");
        assert_eq!(act, action::DROP, "{what}: dropped");
        assert_eq!(
            after.reason(why).packets - before.reason(why).packets,
            1,
            "{what}: counted as {}",
            reason::NAMES[why as usize]
        );
    }

    /// The record of the peer: (priority, epoch, seq, count).
    fn record(&self) -> Option<(u8, u64, u32, u64)> {
        let key = {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&[10, 78, 0, 12]);
            PeerKey {
                addr,
                vrid: 51,
                family: vipx_common::FAMILY_V4,
                kind: KIND_HEARTBEAT,
                _pad: 0,
            }
        };
        self.peers
            .records()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| (s.priority, s.epoch, s.seq, s.count))
    }
}

#[test]
fn only_authentic_and_newer_heartbeats_are_recorded() {
    let mut rig = Rig::new(Some(KEY));
    let first = payload(150, 1000, 7, &KEY);
    rig.dropped("an authentic heartbeat", &frame(&first), reason::HEARTBEAT);
    assert_eq!(rig.record(), Some((150, 1000, 7, 1)), "recorded");

    // Forged: the master's address, priority 0, a tag under another key.
    let other = HeartbeatKey { k0: 1, k1: 2 };
    let forged = payload(0, 1000, 8, &other);
    rig.dropped(
        "a forged farewell",
        &frame(&forged),
        reason::HEARTBEAT_BAD_TAG,
    );
    // A genuine payload with its priority changed in flight.
    let mut altered = payload(150, 1000, 9, &KEY);
    altered[6] = 0;
    rig.dropped(
        "an altered heartbeat",
        &frame(&altered),
        reason::HEARTBEAT_BAD_TAG,
    );
    // No tag at all, as a vipx without a secret sends.
    let mut untagged = payload(150, 1000, 10, &KEY);
    untagged[24..].fill(0);
    rig.dropped(
        "an untagged heartbeat",
        &frame(&untagged),
        reason::HEARTBEAT_BAD_TAG,
    );
    assert_eq!(
        rig.record(),
        Some((150, 1000, 7, 1)),
        "none of them recorded"
    );

    // Replayed: the same authentic packet again, and an older one.
    rig.dropped(
        "the same heartbeat again",
        &frame(&first),
        reason::HEARTBEAT_REPLAY,
    );
    let older = payload(0, 1000, 6, &KEY);
    rig.dropped(
        "an older heartbeat",
        &frame(&older),
        reason::HEARTBEAT_REPLAY,
    );
    let earlier_epoch = payload(0, 999, 500, &KEY);
    rig.dropped(
        "a heartbeat of an earlier epoch",
        &frame(&earlier_epoch),
        reason::HEARTBEAT_REPLAY,
    );
    assert_eq!(
        rig.record(),
        Some((150, 1000, 7, 1)),
        "none of them recorded"
    );

    // The next one, and a restarted agent's (a later epoch, seq from 0).
    rig.dropped(
        "the next heartbeat",
        &frame(&payload(150, 1000, 8, &KEY)),
        reason::HEARTBEAT,
    );
    rig.dropped(
        "a restarted agent's heartbeat",
        &frame(&payload(140, 2000, 0, &KEY)),
        reason::HEARTBEAT,
    );
    assert_eq!(rig.record(), Some((140, 2000, 0, 3)), "both recorded");
}

#[test]
fn without_a_key_tags_are_not_checked() {
    let mut rig = Rig::new(None);
    let mut untagged = payload(150, 1000, 7, &KEY);
    untagged[24..].fill(0);
    rig.dropped(
        "an untagged heartbeat",
        &frame(&untagged),
        reason::HEARTBEAT,
    );
    // Nor is the order: without a key, a reordered packet is still news.
    rig.dropped(
        "an older one",
        &frame(&payload(150, 1000, 6, &KEY)),
        reason::HEARTBEAT,
    );
    assert_eq!(rig.record(), Some((150, 1000, 6, 2)));
}

#[test]
fn the_agents_encoding_is_the_reference_tag() {
    let beat = Heartbeat {
        vrid: 51,
        priority: 150,
        state: STATE_MASTER,
        epoch: 1000,
        seq: 7,
        interval_us: 1000,
        detect_mult: 10,
        tag: 0,
    };
    assert_eq!(
        beat.encode(Some(&KEY)).to_vec(),
        payload(150, 1000, 7, &KEY),
        "vipx's encoder writes the layout and the tag the reference gives"
    );
}
