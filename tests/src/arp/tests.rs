//! The observer's frames and its log's analysis, without a network.

use super::*;

const ME: Me = Me {
    mac: Mac([2, 0x76, 10, 77, 0, 21]),
    ip: Ipv4Addr::new(10, 77, 0, 21),
};
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const NODE: Mac = Mac([2, 0x76, 10, 77, 0, 11]);

/// An ARP frame from `sha`/`spa` to `tpa`.
fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut frame = request_frame(Me { mac: sha, ip: spa }, tpa);
    frame[20..22].copy_from_slice(&op.to_be_bytes());
    frame
}

#[test]
fn the_request_asks_for_the_target_in_the_hosts_name() {
    let frame = request_frame(ME, VIP);
    assert_eq!(frame.len(), 60);
    assert_eq!(&frame[..6], &[0xff; 6]);
    assert_eq!(&frame[6..12], &ME.mac.0);
    assert_eq!(&frame[12..14], &[0x08, 0x06]);
    assert_eq!(&frame[14..22], &[0, 1, 8, 0, 6, 4, 0, 1]);
    assert_eq!(&frame[22..28], &ME.mac.0);
    assert_eq!(&frame[28..32], &[10, 77, 0, 21]);
    assert_eq!(&frame[32..38], &[0; 6]);
    assert_eq!(&frame[38..42], &[10, 77, 0, 100]);
}

#[test]
fn answers_and_announcements_are_told_apart() {
    let answer = arp(ARPOP_REPLY, NODE, VIP, ME.ip);
    assert_eq!(classify(&answer, ME, VIP), Some((ArpKind::Answer, NODE)));
    let garp = arp(ARPOP_REQUEST, NODE, VIP, VIP);
    assert_eq!(classify(&garp, ME, VIP), Some((ArpKind::Gratuitous, NODE)));
    // Our own request, another address's reply, a truncated frame.
    assert_eq!(classify(&request_frame(ME, VIP), ME, VIP), None);
    let other = arp(ARPOP_REPLY, NODE, Ipv4Addr::new(10, 77, 0, 11), ME.ip);
    assert_eq!(classify(&other, ME, VIP), None);
    assert_eq!(classify(&answer[..41], ME, VIP), None);
}

#[test]
fn answers_go_to_the_latest_request_before_them() {
    let t = |ms: u64| WallTime::from_parts(100, 0).plus(Duration::from_millis(ms));
    let other = Mac([2, 0x76, 10, 77, 0, 12]);
    let answer = |ms, mac| ArpSeen {
        at: t(ms),
        kind: ArpKind::Answer,
        mac,
    };
    let log = ArpLog {
        target: VIP,
        requests: vec![t(0), t(2), t(4), t(6)],
        seen: vec![
            answer(1, other),
            answer(3, other),
            answer(3, NODE),
            answer(3, other),
            answer(5, NODE),
            answer(7, NODE),
        ],
        ignored: 0,
    };
    assert_eq!(log.request_before(t(0)), Some(0));
    assert_eq!(log.request_before(WallTime::from_parts(99, 0)), None);
    assert_eq!(
        log.answering_macs(t(2)),
        vec![(1, vec![other, NODE]), (2, vec![NODE]), (3, vec![NODE])]
    );
    let runs: Vec<(Mac, usize)> = log
        .answer_runs(t(0))
        .iter()
        .map(|r| (r.mac, r.count))
        .collect();
    assert_eq!(runs, vec![(other, 2), (NODE, 1), (other, 1), (NODE, 2)]);
}

#[test]
fn macs_parse_and_print() {
    let mac: Mac = "02:76:0a:4d:00:0b".parse().expect("a MAC");
    assert_eq!(mac, NODE);
    assert_eq!(mac.to_string(), "02:76:0a:4d:00:0b");
    assert!("02:76:0a:4d:00".parse::<Mac>().is_err());
    assert!("02:76:0a:4d:00:0b:01".parse::<Mac>().is_err());
    assert!("02:76:0a:4d:00:zz".parse::<Mac>().is_err());
}
