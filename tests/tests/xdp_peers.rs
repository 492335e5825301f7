//! The advert and heartbeat recorder of the XDP program, with its peer
//! filter: fixture frames run through `BPF_PROG_TEST_RUN` on the real
//! program, its maps written and read by the agent's own `PeerMaps` and
//! `PeerEvents`.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    sync::Arc,
};

use vipx_agent::{
    dataplane::{CounterSnapshot, PeerEvents, PeerMaps, event_addr, monotonic_ns},
    election::Advert,
};
use vipx_common::{
    Heartbeat, PeerEvent, PeerSeen, action,
    peer::{
        DEFAULT_HEARTBEAT_PORT, EVENT_NEW_SOURCE, EVENT_PRIORITY, EVENT_PRIORITY_ZERO, EVENT_STATE,
        KIND_HEARTBEAT, KIND_VRRP, PEER_EVENTS_BYTES, STATE_BACKUP, STATE_MASTER, STATE_STOPPING,
        STATE_UNKNOWN,
    },
    reason,
};
use vipx_lab::{
    frames::{self, FrameSpec},
    rig::{self, CLIENT_MAC, NODE_MAC},
};

const XDP_PASS: u32 = action::PASS;
const XDP_DROP: u32 = action::DROP;
const PORT: u16 = DEFAULT_HEARTBEAT_PORT;

const NODE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1));
const PEER_A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 2));
const PEER_B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 3));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 66));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 78, 0, 100));
const NODE6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 1));
const PEER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2));
const STRANGER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x66));
const VIP6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 0x100));

/// The real program with no service, its peer maps and event ring.
struct Rig {
    rig: rig::Rig,
    peers: Arc<PeerMaps>,
    events: PeerEvents,
}

impl Rig {
    fn new() -> Self {
        let mut rig = rig::Rig::master(&[]).expect("load the XDP program");
        let peers = rig.dataplane.peer_maps();
        let events = rig
            .dataplane
            .take_peer_events()
            .expect("the first take gets the ring buffer");
        assert!(
            rig.dataplane.take_peer_events().is_none(),
            "the ring buffer has one consumer"
        );
        peers
            .set_heartbeat(PORT, None)
            .expect("set the heartbeat port");
        Self { rig, peers, events }
    }

    fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.rig.run(frame).expect("BPF_PROG_TEST_RUN")
    }

    fn counters(&self) -> CounterSnapshot {
        self.rig.counters().expect("read counters")
    }

    /// Runs `frame`, checks the action, the reason counted, and that a
    /// passed frame leaves untouched.
    fn expect(&mut self, name: &str, frame: &[u8], act: u32, why: u32) {
        let before = self.counters();
        let (got, out) = self.run(frame);
        assert_eq!(
            got,
            act,
            "{name}: action {} expected",
            action::NAMES[act as usize]
        );
        let after = self.counters();
        assert_eq!(
            after.reason(why).packets - before.reason(why).packets,
            1,
            "{name}: counted as {}",
            reason::NAMES[why as usize]
        );
        if act == XDP_PASS {
            assert_eq!(out, frame, "{name}: passed untouched");
        }
    }

    fn seen(&self, vrid: u8, kind: u8, addr: IpAddr) -> Option<PeerSeen> {
        self.peers.seen(vrid, kind, addr).expect("read a record")
    }

    fn set_peers(&self, vrid: u8, peers: &[IpAddr]) {
        self.peers
            .set_peers(vrid, peers)
            .expect("write the allow-list");
    }

    /// Every event waiting (bounded: the ring holds fewer than this).
    fn events(&mut self) -> Vec<PeerEvent> {
        let most = PEER_EVENTS_BYTES as usize / size_of::<PeerEvent>();
        std::iter::from_fn(|| self.events.next())
            .take(most)
            .collect()
    }
}

fn advert(src: IpAddr, vrid: u8, priority: u8) -> Vec<u8> {
    let vip = if src.is_ipv4() { VIP } else { VIP6 };
    frames::vrrp_advert(
        src,
        &Advert {
            vrid,
            priority,
            max_advert_int: 100,
            addrs: vec![vip],
        },
    )
}

fn hb(vrid: u8, priority: u8, state: u8, seq: u32) -> Heartbeat {
    Heartbeat {
        vrid,
        priority,
        state,
        seq,
        interval_us: 2000,
        detect_mult: 3,
        ..Heartbeat::default()
    }
}

fn heartbeat(src: IpAddr, port: u16, beat: &Heartbeat) -> Vec<u8> {
    let dst = if src.is_ipv4() { NODE } else { NODE6 };
    frames::heartbeat(src, dst, port, beat, None)
        .macs(CLIENT_MAC, NODE_MAC)
        .build()
}

/// Offset of the VRRP header in an untagged IPv4 frame without options.
const VRRP_OFF_V4: usize = 14 + 20;

#[test]
fn adverts_are_recorded_and_unknown_sources_dropped() {
    let mut rig = Rig::new();
    rig.set_peers(51, &[PEER_A, PEER_B]);
    assert_eq!(rig.peers.peers(51), vec![PEER_A, PEER_B]);

    let first = monotonic_ns();
    rig.expect(
        "advert from a peer",
        &advert(PEER_A, 51, 150),
        XDP_PASS,
        reason::VRRP,
    );
    let last = monotonic_ns();
    let seen = rig
        .seen(51, KIND_VRRP, PEER_A)
        .expect("the advert is recorded");
    assert_eq!(
        (seen.priority, seen.count, seen.state, seen.seq),
        (150, 1, STATE_UNKNOWN, 0)
    );
    assert!(
        (first..=last).contains(&seen.last_ns),
        "recorded at {} on CLOCK_MONOTONIC, between {first} and {last}",
        seen.last_ns
    );
    rig.expect(
        "the same advert again",
        &advert(PEER_A, 51, 150),
        XDP_PASS,
        reason::VRRP,
    );
    let again = rig.seen(51, KIND_VRRP, PEER_A).expect("record");
    assert_eq!(again.count, 2, "counted in place");
    assert!(again.last_ns >= seen.last_ns, "time moved forward");
    assert_eq!(rig.seen(51, KIND_HEARTBEAT, PEER_A), None, "kinds apart");

    rig.expect(
        "advert from an unknown source",
        &advert(STRANGER, 51, 200),
        XDP_DROP,
        reason::PEER_UNKNOWN,
    );
    assert_eq!(rig.seen(51, KIND_VRRP, STRANGER), None, "not recorded");

    rig.expect(
        "advert for a VRID without peer list",
        &advert(STRANGER, 52, 200),
        XDP_PASS,
        reason::VRRP,
    );
    assert_eq!(
        rig.seen(52, KIND_VRRP, STRANGER).map(|s| s.priority),
        Some(200)
    );

    let mut v2 = advert(STRANGER, 51, 200);
    v2[VRRP_OFF_V4] = 0x21;
    rig.expect("VRRPv2 advert", &v2, XDP_PASS, reason::VRRP);
    let vrid0 = advert(PEER_A, 0, 100);
    rig.expect("VRID 0", &vrid0, XDP_PASS, reason::VRRP);
    let short = frames::vrrp_frame(CLIENT_MAC, NODE_MAC, PEER_A, NODE, &[0x31, 51, 100, 0]);
    rig.expect("VRRP header cut", &short, XDP_PASS, reason::MALFORMED);
    assert_eq!(rig.seen(51, KIND_VRRP, STRANGER), None, "v2 not recorded");
    assert_eq!(rig.seen(0, KIND_VRRP, PEER_A), None, "VRID 0 not recorded");
    assert_eq!(
        rig.seen(51, KIND_VRRP, PEER_A).map(|s| s.count),
        Some(2),
        "a cut header is not recorded"
    );

    // A new list replaces the old one.
    rig.set_peers(51, &[PEER_B]);
    assert_eq!(rig.peers.peers(51), vec![PEER_B]);
    rig.expect(
        "advert from a removed peer",
        &advert(PEER_A, 51, 150),
        XDP_DROP,
        reason::PEER_UNKNOWN,
    );
    // No list: the filter is off.
    rig.set_peers(51, &[]);
    assert!(rig.peers.peers(51).is_empty());
    rig.expect(
        "advert with the filter off",
        &advert(STRANGER, 51, 200),
        XDP_PASS,
        reason::VRRP,
    );
    assert!(rig.seen(51, KIND_VRRP, STRANGER).is_some(), "recorded");
    let records = rig.peers.records();
    assert_eq!(
        records.len(),
        3,
        "A, the stranger in 51 and in 52: {records:?}"
    );
}

#[test]
fn heartbeats_are_recorded_and_consumed() {
    let mut rig = Rig::new();
    rig.set_peers(51, &[PEER_A]);
    let beat = hb(51, 150, STATE_MASTER, 7);
    rig.expect(
        "heartbeat from a peer",
        &heartbeat(PEER_A, PORT, &beat),
        XDP_DROP,
        reason::HEARTBEAT,
    );
    let seen = rig.seen(51, KIND_HEARTBEAT, PEER_A).expect("recorded");
    assert_eq!(
        (
            seen.seq,
            seen.state,
            seen.priority,
            seen.detect_mult,
            seen.count
        ),
        (7, STATE_MASTER, 150, 3, 1)
    );
    assert_eq!(rig.seen(51, KIND_VRRP, PEER_A), None, "kinds apart");

    // Padded to the Ethernet minimum: the UDP length says where it ends.
    let mut padded = heartbeat(PEER_A, PORT, &hb(51, 150, STATE_MASTER, 8));
    padded.extend_from_slice(&[0; 4]);
    rig.expect("padded heartbeat", &padded, XDP_DROP, reason::HEARTBEAT);
    let seen = rig.seen(51, KIND_HEARTBEAT, PEER_A).expect("record");
    assert_eq!((seen.seq, seen.count), (8, 2), "updated in place");

    rig.expect(
        "heartbeat from an unknown source",
        &heartbeat(STRANGER, PORT, &beat),
        XDP_DROP,
        reason::PEER_UNKNOWN,
    );
    assert_eq!(rig.seen(51, KIND_HEARTBEAT, STRANGER), None);
    rig.expect(
        "heartbeat for a VRID without peer list",
        &heartbeat(STRANGER, PORT, &hb(52, 90, STATE_BACKUP, 1)),
        XDP_DROP,
        reason::HEARTBEAT,
    );
    assert_eq!(
        rig.seen(52, KIND_HEARTBEAT, STRANGER).map(|s| s.state),
        Some(STATE_BACKUP)
    );

    rig.expect(
        "heartbeat to another port",
        &heartbeat(PEER_A, PORT + 1, &beat),
        XDP_PASS,
        reason::NO_SERVICE,
    );
    let mut bad_magic = beat.encode(None);
    bad_magic[0] ^= 0xff;
    let bad_magic = FrameSpec::udp(PEER_A, PORT, NODE, PORT)
        .macs(CLIENT_MAC, NODE_MAC)
        .payload(&bad_magic)
        .build();
    rig.expect("bad magic", &bad_magic, XDP_PASS, reason::MALFORMED);
    // 8 bytes of payload, padded so that 16 are in the frame.
    let mut short = FrameSpec::udp(PEER_A, PORT, NODE, PORT)
        .macs(CLIENT_MAC, NODE_MAC)
        .payload(&beat.encode(None)[..8])
        .build();
    short.extend_from_slice(&beat.encode(None)[8..]);
    rig.expect("heartbeat cut short", &short, XDP_PASS, reason::MALFORMED);
    let cut = heartbeat(PEER_A, PORT, &beat);
    let cut = &cut[..cut.len() - 1];
    rig.expect("frame cut", cut, XDP_PASS, reason::MALFORMED);
    assert_eq!(
        rig.seen(51, KIND_HEARTBEAT, PEER_A).map(|s| s.count),
        Some(2),
        "malformed heartbeats are not recorded"
    );

    // Port 0: heartbeats off, such datagrams are ordinary UDP.
    rig.peers.set_heartbeat(0, None).expect("heartbeats off");
    rig.expect(
        "heartbeat with heartbeats off",
        &heartbeat(PEER_A, PORT, &beat),
        XDP_PASS,
        reason::NO_SERVICE,
    );
}

#[test]
fn ipv6_adverts_and_heartbeats() {
    let mut rig = Rig::new();
    rig.set_peers(61, &[PEER6, PEER_A]);
    assert_eq!(rig.peers.peers(61), vec![PEER_A, PEER6], "both families");
    rig.expect(
        "IPv6 advert from a peer",
        &advert(PEER6, 61, 110),
        XDP_PASS,
        reason::VRRP,
    );
    assert_eq!(
        rig.seen(61, KIND_VRRP, PEER6).map(|s| s.priority),
        Some(110)
    );
    rig.expect(
        "IPv6 advert from an unknown source",
        &advert(STRANGER6, 61, 110),
        XDP_DROP,
        reason::PEER_UNKNOWN,
    );
    rig.expect(
        "IPv6 heartbeat from a peer",
        &heartbeat(PEER6, PORT, &hb(61, 110, STATE_BACKUP, 42)),
        XDP_DROP,
        reason::HEARTBEAT,
    );
    let seen = rig.seen(61, KIND_HEARTBEAT, PEER6).expect("recorded");
    assert_eq!((seen.seq, seen.state), (42, STATE_BACKUP));
    rig.expect(
        "IPv6 heartbeat from an unknown source",
        &heartbeat(STRANGER6, PORT, &hb(61, 110, STATE_BACKUP, 1)),
        XDP_DROP,
        reason::PEER_UNKNOWN,
    );
    assert_eq!(rig.seen(61, KIND_HEARTBEAT, STRANGER6), None);
}

/// What a row expects of an event (the source is always `PEER_A`, VRID
/// 51).
#[derive(Debug, PartialEq, Eq)]
struct Signal {
    flags: u8,
    kind: u8,
    priority: u8,
    old_priority: u8,
    state: u8,
    old_state: u8,
}

impl Signal {
    fn of(event: &PeerEvent) -> Self {
        assert_eq!(event_addr(event), Some(PEER_A), "the source");
        assert_eq!(event.vrid, 51, "the VRID");
        Self {
            flags: event.flags,
            kind: event.kind,
            priority: event.priority,
            old_priority: event.old_priority,
            state: event.state,
            old_state: event.old_state,
        }
    }

    /// A VRRP event: adverts carry no state.
    fn vrrp(flags: u8, priority: u8, old_priority: u8) -> Self {
        Self {
            flags,
            kind: KIND_VRRP,
            priority,
            old_priority,
            state: STATE_UNKNOWN,
            old_state: STATE_UNKNOWN,
        }
    }
}

#[test]
fn ring_buffer_signals_new_sources_and_changes() {
    let mut rig = Rig::new();
    rig.set_peers(51, &[PEER_A]);
    let fd = rig.events.as_raw_fd();
    let readable = || {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    };
    let vrrp = |priority| advert(PEER_A, 51, priority);
    let beat = |state, seq| heartbeat(PEER_A, PORT, &hb(51, 150, state, seq));
    let rows: Vec<(&str, Vec<u8>, Option<Signal>)> = vec![
        (
            "first advert",
            vrrp(100),
            Some(Signal::vrrp(EVENT_NEW_SOURCE, 100, 0)),
        ),
        ("same advert", vrrp(100), None),
        (
            "priority change",
            vrrp(120),
            Some(Signal::vrrp(EVENT_PRIORITY, 120, 100)),
        ),
        (
            "priority 0",
            vrrp(0),
            Some(Signal::vrrp(EVENT_PRIORITY | EVENT_PRIORITY_ZERO, 0, 120)),
        ),
        (
            "priority 0 again",
            vrrp(0),
            Some(Signal::vrrp(EVENT_PRIORITY_ZERO, 0, 0)),
        ),
        (
            "first heartbeat",
            beat(STATE_BACKUP, 1),
            Some(Signal {
                flags: EVENT_NEW_SOURCE,
                kind: KIND_HEARTBEAT,
                priority: 150,
                old_priority: 0,
                state: STATE_BACKUP,
                old_state: STATE_UNKNOWN,
            }),
        ),
        ("next heartbeat", beat(STATE_BACKUP, 2), None),
        (
            "state change",
            beat(STATE_MASTER, 3),
            Some(Signal {
                flags: EVENT_STATE,
                kind: KIND_HEARTBEAT,
                priority: 150,
                old_priority: 150,
                state: STATE_MASTER,
                old_state: STATE_BACKUP,
            }),
        ),
        (
            "unknown source (dropped)",
            heartbeat(STRANGER, PORT, &hb(51, 150, STATE_STOPPING, 1)),
            None,
        ),
    ];
    for (name, frame, expected) in rows {
        rig.run(&frame);
        assert_eq!(readable(), expected.is_some(), "{name}: poll readiness");
        let events = rig.events();
        let got: Vec<Signal> = events.iter().map(Signal::of).collect();
        assert_eq!(got, Vec::from_iter(expected), "{name}: events");
        for event in &events {
            let seen = rig
                .seen(51, event.kind, PEER_A)
                .expect("a signalled record");
            assert_eq!(event.ktime_ns, seen.last_ns, "{name}: the packet's time");
        }
        assert!(!readable(), "{name}: drained");
    }
}

#[test]
fn full_ring_buffer_keeps_the_records() {
    let mut rig = Rig::new();
    // Every packet changes the priority, so every packet is signalled;
    // nothing is drained until the end.
    let capacity = PEER_EVENTS_BYTES as usize / size_of::<PeerEvent>();
    let sent = u32::try_from(capacity + 200).expect("a small count");
    for i in 0..sent {
        let priority = if i % 2 == 0 { 100 } else { 101 };
        let (act, _) = rig.run(&advert(PEER_A, 51, priority));
        assert_eq!(act, XDP_PASS, "advert {i} passed");
    }
    let seen = rig.seen(51, KIND_VRRP, PEER_A).expect("recorded");
    assert_eq!(seen.count, u64::from(sent), "every packet recorded");
    assert_eq!(seen.priority, 101, "the last priority");
    let events = rig.events();
    assert!(
        !events.is_empty() && events.len() < sent as usize,
        "{} of {sent} events fit in the ring",
        events.len()
    );
    assert_eq!(
        events[0].flags, EVENT_NEW_SOURCE,
        "the oldest events are the ones kept"
    );
    let lost = rig.counters().events_lost.packets;
    assert_eq!(
        lost,
        u64::from(sent) - events.len() as u64,
        "every event without room is counted"
    );
    // Room again: the next change is signalled.
    rig.run(&advert(PEER_A, 51, 102));
    let next: Vec<u8> = rig.events().iter().map(|e| e.priority).collect();
    assert_eq!(next, vec![102], "signalled once drained");
}

#[test]
fn adverts_and_heartbeats_from_beyond_the_link_are_dropped_unrecorded() {
    // GTSM (RFC 5082), as RFC 5798 5.1.1.3 asks of VRRP: a packet sent on
    // the link arrives with TTL 255; one routed here has less. A forged
    // heartbeat from the MASTER's address, sent from another subnet, must
    // neither record nor count as the master's.
    let mut rig = Rig::new();
    rig.set_peers(51, &[PEER_A]);
    for (name, frame, kind) in [
        (
            "heartbeat, TTL 64",
            heartbeat(PEER_A, PORT, &hb(51, 0, STATE_MASTER, 9)),
            KIND_HEARTBEAT,
        ),
        ("advert, TTL 64", advert(PEER_A, 51, 0), KIND_VRRP),
    ] {
        rig.expect(
            name,
            &frames::with_ttl(frame.clone(), 64),
            XDP_DROP,
            reason::TTL_NOT_255,
        );
        rig.expect(
            &format!("{name} (254)"),
            &frames::with_ttl(frame, 254),
            XDP_DROP,
            reason::TTL_NOT_255,
        );
        assert_eq!(rig.seen(51, kind, PEER_A), None, "{name}: not recorded");
    }
    // The same with 255: recorded.
    rig.expect(
        "heartbeat, TTL 255",
        &heartbeat(PEER_A, PORT, &hb(51, 150, STATE_MASTER, 10)),
        XDP_DROP,
        reason::HEARTBEAT,
    );
    assert!(rig.seen(51, KIND_HEARTBEAT, PEER_A).is_some());
    rig.expect(
        "advert, TTL 255",
        &advert(PEER_A, 51, 150),
        XDP_PASS,
        reason::VRRP,
    );
    // IPv6: the hop limit.
    rig.set_peers(61, &[PEER6]);
    let forged = frames::with_ttl(heartbeat(PEER6, PORT, &hb(61, 0, STATE_MASTER, 1)), 64);
    rig.expect(
        "IPv6 heartbeat, hop limit 64",
        &forged,
        XDP_DROP,
        reason::TTL_NOT_255,
    );
    assert_eq!(rig.seen(61, KIND_HEARTBEAT, PEER6), None);
}
