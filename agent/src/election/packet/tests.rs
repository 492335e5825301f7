//! Advert parser and builder against hand-made and captured byte vectors.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(text: &str) -> IpAddr {
    IpAddr::V6(text.parse::<Ipv6Addr>().expect("test IPv6 address"))
}

const MCAST4: IpAddr = IpAddr::V4(VRRP_MULTICAST_V4);
const MCAST6: IpAddr = IpAddr::V6(VRRP_MULTICAST_V6);

/// The RFC 1071 checksum written out plainly, independent of the module's:
/// the pseudo-header as explicit bytes, 16-bit words summed in a `u32`,
/// carries folded, complemented.
fn reference_checksum(src: IpAddr, dst: IpAddr, vrrp: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.push(0);
            bytes.push(112);
            bytes.extend_from_slice(&u16::try_from(vrrp.len()).expect("len").to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            bytes.extend_from_slice(&s.octets());
            bytes.extend_from_slice(&d.octets());
            bytes.extend_from_slice(&u32::try_from(vrrp.len()).expect("len").to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, 112]);
        }
        _ => panic!("mixed families in the test"),
    }
    let start = bytes.len();
    bytes.extend_from_slice(vrrp);
    bytes[start + 6..start + 8].fill(0);
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        sum += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

fn sample_v4() -> Advert {
    Advert {
        vrid: 51,
        priority: 100,
        max_advert_int: 100,
        addrs: vec![v4(192, 168, 1, 100)],
    }
}

/// Rewrites the checksum of `payload` so only the field under test is wrong.
fn fix_checksum(src: IpAddr, dst: IpAddr, payload: &mut [u8]) {
    let sum = reference_checksum(src, dst, payload);
    payload[6..8].copy_from_slice(&sum.to_be_bytes());
}

#[test]
fn round_trip_v4() {
    let src = v4(10, 0, 0, 1);
    let advert = Advert {
        vrid: 200,
        priority: 254,
        max_advert_int: MAX_ADVER_INT_MASK,
        addrs: vec![v4(10, 0, 0, 100), v4(10, 0, 0, 101), v4(172, 16, 0, 1)],
    };
    let bytes = build(src, MCAST4, &advert);
    assert_eq!(bytes.len(), 8 + 3 * 4, "header + 3 IPv4 addresses");
    let parsed = parse(src, MCAST4, VRRP_TTL, &bytes).expect("own v4 advert parses");
    assert_eq!(parsed, advert, "v4 round trip");
}

#[test]
fn round_trip_v6() {
    let src = v6("fe80::1");
    let advert = Advert {
        vrid: 1,
        priority: PRIORITY_STOP,
        max_advert_int: 1,
        addrs: vec![v6("fe80::254"), v6("2001:db8::1")],
    };
    let bytes = build(src, MCAST6, &advert);
    assert_eq!(bytes.len(), 8 + 2 * 16, "header + 2 IPv6 addresses");
    let parsed = parse(src, MCAST6, VRRP_TTL, &bytes).expect("own v6 advert parses");
    assert_eq!(parsed, advert, "v6 round trip");
}

#[test]
fn hand_checked_unicast_v4_vector() {
    let (src, dst) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
    let advert = Advert {
        vrid: 7,
        priority: 254,
        max_advert_int: 10,
        addrs: vec![v4(10, 0, 0, 100), v4(10, 0, 0, 101)],
    };
    #[rustfmt::skip]
    let mut expected = vec![
        0x31,       // version 3, type 1 (ADVERTISEMENT)
        7,          // VRID
        254,        // priority
        2,          // Count IPvX Addr
        0x00, 0x0a, // rsvd 0, Max Adver Int 10 cs
        0x00, 0x00, // checksum, filled below
        10, 0, 0, 100,
        10, 0, 0, 101,
    ];
    let sum = reference_checksum(src, dst, &expected);
    expected[6..8].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(
        build(src, dst, &advert),
        expected,
        "unicast v4 advert bytes"
    );
    assert_eq!(
        parse(src, dst, VRRP_TTL, &expected).expect("hand-made vector parses"),
        advert,
        "hand-made vector decodes"
    );
}

/// What keepalived 2.2's `vrrp_build_vrrp_v3` + `vrrp_build_ip4` put on the
/// wire for `vrrp_instance { virtual_router_id 51; priority 100; advert_int 1;
/// virtual_ipaddress { 192.168.1.100 } }` from 192.168.1.10, multicast:
/// `vers_type = (3 << 4) | 1`, `adver_int = htons(100 & 0xFFF)`, checksum
/// over `ipv4_phdr_t { src, dst, 0, 112, htons(12) }` then the 12 bytes.
///
/// The checksum by hand, in 16-bit words:
/// pseudo-header c0a8 + 010a + e000 + 0012 + 0070 + 000c,
/// message 3133 + 6401 + 0064 + 0000 + c0a8 + 0164 = 0x2f9e4;
/// folded 0xf9e4 + 0x2 = 0xf9e6; complement 0x0619.
#[test]
fn keepalived_2_2_advert_vrid_51() {
    let src = v4(192, 168, 1, 10);
    #[rustfmt::skip]
    let keepalived: [u8; 12] = [
        0x31, 51, 100, 1,
        0x00, 0x64, 0x06, 0x19,
        192, 168, 1, 100,
    ];
    assert_eq!(
        build(src, MCAST4, &sample_v4()),
        keepalived,
        "same bytes as keepalived"
    );
    assert_eq!(
        parse(src, MCAST4, VRRP_TTL, &keepalived).expect("keepalived advert parses"),
        sample_v4(),
        "keepalived advert decodes"
    );
}

/// Captured VRRPv3 packets (the IPv4 and IPv6 examples of PcapPlusPlus'
/// test suite), Ethernet and IP headers stripped: their checksums verify with
/// the pseudo-header, and rebuilding gives the same bytes.
#[test]
fn captured_packets_parse_and_rebuild_identically() {
    let v4_capture: [u8; 16] = [
        0x31, 0x01, 0x64, 0x02, 0x00, 0x01, 0x48, 0x4d, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00,
        0x02,
    ];
    let src = v4(192, 168, 0, 30);
    let advert = parse(src, MCAST4, VRRP_TTL, &v4_capture).expect("captured v4 advert parses");
    assert_eq!(
        advert,
        Advert {
            vrid: 1,
            priority: 100,
            max_advert_int: 1,
            addrs: vec![v4(192, 168, 0, 1), v4(192, 168, 0, 2)],
        },
        "captured v4 fields"
    );
    assert_eq!(build(src, MCAST4, &advert), v4_capture, "v4 rebuilt");

    let mut v6_capture = vec![0x31, 0x01, 0x64, 0x03, 0x00, 0x01, 0x10, 0x71];
    for addr in ["fe80::254", "2001:db8::1", "2001:db8::2"] {
        v6_capture.extend_from_slice(&addr.parse::<Ipv6Addr>().expect("addr").octets());
    }
    let src = v6("fe80::1");
    let advert = parse(src, MCAST6, VRRP_TTL, &v6_capture).expect("captured v6 advert parses");
    assert_eq!(advert.addrs.len(), 3, "three v6 addresses");
    assert_eq!(advert.addrs[0], v6("fe80::254"), "link-local first");
    assert_eq!(build(src, MCAST6, &advert), v6_capture, "v6 rebuilt");
}

#[test]
fn rejects_a_routed_packet() {
    let src = v4(192, 168, 1, 10);
    let bytes = build(src, MCAST4, &sample_v4());
    for ttl in [254, 64, 1, 0] {
        let err = parse(src, MCAST4, ttl, &bytes).expect_err("TTL below 255 rejected");
        assert_eq!(err, AdvertError::BadTtl { ttl }, "TTL {ttl}");
    }
    let message = parse(src, MCAST4, 64, &bytes)
        .expect_err("rejected")
        .to_string();
    assert!(
        message.contains("64") && message.contains("255"),
        "message: {message}"
    );
}

#[test]
fn rejects_mixed_families() {
    let bytes = build(v4(192, 168, 1, 10), MCAST4, &sample_v4());
    let err = parse(v6("fe80::1"), MCAST4, VRRP_TTL, &bytes).expect_err("v6 src, v4 dst");
    assert_eq!(
        err,
        AdvertError::FamilyMismatch {
            src: v6("fe80::1"),
            dst: MCAST4
        },
        "family mismatch"
    );
}

#[test]
fn rejects_a_truncated_header() {
    let src = v4(192, 168, 1, 10);
    let bytes = build(src, MCAST4, &sample_v4());
    for len in [0, 1, 7] {
        let err = parse(src, MCAST4, VRRP_TTL, &bytes[..len]).expect_err("short header");
        assert_eq!(err, AdvertError::Truncated { len }, "{len} bytes");
    }
}

#[test]
fn rejects_vrrp_v2() {
    let src = v4(192, 168, 1, 10);
    let mut bytes = build(src, MCAST4, &sample_v4());
    bytes[0] = 0x21;
    fix_checksum(src, MCAST4, &mut bytes);
    let err = parse(src, MCAST4, VRRP_TTL, &bytes).expect_err("version 2");
    assert_eq!(err, AdvertError::BadVersion { version: 2 }, "v2");
    assert!(err.to_string().contains("version 2"), "message: {err}");
}

#[test]
fn rejects_an_unknown_type() {
    let src = v4(192, 168, 1, 10);
    let mut bytes = build(src, MCAST4, &sample_v4());
    bytes[0] = 0x32;
    fix_checksum(src, MCAST4, &mut bytes);
    let err = parse(src, MCAST4, VRRP_TTL, &bytes).expect_err("type 2");
    assert_eq!(err, AdvertError::BadType { kind: 2 }, "type 2");
}

#[test]
fn rejects_a_length_that_disagrees_with_the_count() {
    let src = v4(192, 168, 1, 10);
    let bytes = build(src, MCAST4, &sample_v4());

    let mut long = bytes.clone();
    long.extend_from_slice(&[0, 0, 0, 0]);
    let err = parse(src, MCAST4, VRRP_TTL, &long).expect_err("trailing bytes");
    let want = AdvertError::BadLength {
        len: 16,
        count: 1,
        family: 4,
        expected: 12,
    };
    assert_eq!(err, want, "too long");

    let err = parse(src, MCAST4, VRRP_TTL, &bytes[..10]).expect_err("cut address");
    assert!(
        matches!(
            err,
            AdvertError::BadLength {
                len: 10,
                expected: 12,
                ..
            }
        ),
        "too short: {err}"
    );

    let mut count2 = bytes.clone();
    count2[3] = 2;
    fix_checksum(src, MCAST4, &mut count2);
    let err = parse(src, MCAST4, VRRP_TTL, &count2).expect_err("count says 2");
    assert!(
        matches!(
            err,
            AdvertError::BadLength {
                count: 2,
                expected: 16,
                ..
            }
        ),
        "count 2: {err}"
    );

    // A v4-sized body received over IPv6: one address needs 16 bytes there.
    let (s6, d6) = (v6("fe80::1"), MCAST6);
    let mut as_v6 = bytes.clone();
    fix_checksum(s6, d6, &mut as_v6);
    let err = parse(s6, d6, VRRP_TTL, &as_v6).expect_err("v4 body over v6");
    assert_eq!(
        err.to_string(),
        "VRRP payload is 12 bytes, but 1 IPv6 address(es) make 24 bytes",
        "message"
    );
}

#[test]
fn rejects_a_bad_checksum() {
    let src = v4(192, 168, 1, 10);
    let mut bytes = build(src, MCAST4, &sample_v4());
    bytes[2] = 101; // priority changed in flight
    let err = parse(src, MCAST4, VRRP_TTL, &bytes).expect_err("corrupted");
    let mut fixed = bytes.clone();
    fix_checksum(src, MCAST4, &mut fixed);
    assert_eq!(
        err,
        AdvertError::BadChecksum {
            found: 0x0619,
            computed: u16::from_be_bytes([fixed[6], fixed[7]]),
            src,
            dst: MCAST4,
        },
        "corrupted priority"
    );
    assert!(err.to_string().contains("0x0619"), "message: {err}");
}

#[test]
fn rejects_checksums_without_the_right_pseudo_header() {
    let src = v4(192, 168, 1, 10);
    let mut bytes = build(src, MCAST4, &sample_v4());
    // VRRPv2-style (keepalived `v3_checksum_as_v2`): the message alone.
    bytes[6..8].fill(0);
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|p| u32::from(p[0]) << 8 | u32::from(p[1]))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    bytes[6..8].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    assert!(
        matches!(
            parse(src, MCAST4, VRRP_TTL, &bytes),
            Err(AdvertError::BadChecksum { .. })
        ),
        "a checksum without pseudo-header is refused"
    );
    // Computed for the multicast group but sent unicast (keepalived <= 1.3.6).
    let unicast = v4(192, 168, 1, 11);
    let bytes = build(src, MCAST4, &sample_v4());
    assert!(
        matches!(
            parse(src, unicast, VRRP_TTL, &bytes),
            Err(AdvertError::BadChecksum { .. })
        ),
        "the pseudo-header uses the real destination"
    );
}

#[test]
fn rejects_a_zero_interval_but_ignores_the_reserved_bits() {
    let src = v4(192, 168, 1, 10);
    let mut bytes = build(src, MCAST4, &sample_v4());
    bytes[4..6].copy_from_slice(&0xF000_u16.to_be_bytes());
    fix_checksum(src, MCAST4, &mut bytes);
    let err = parse(src, MCAST4, VRRP_TTL, &bytes).expect_err("interval 0");
    assert_eq!(
        err,
        AdvertError::ZeroInterval,
        "zero interval under set rsvd bits"
    );

    bytes[4..6].copy_from_slice(&0xA064_u16.to_be_bytes());
    fix_checksum(src, MCAST4, &mut bytes);
    let advert = parse(src, MCAST4, VRRP_TTL, &bytes).expect("rsvd bits are ignored");
    assert_eq!(advert.max_advert_int, 100, "interval without the rsvd bits");
}

#[test]
fn accepts_an_advert_without_addresses() {
    // keepalived sends Count 0 when all its VIPs are `virtual_ipaddress_excluded`.
    let src = v4(192, 168, 1, 10);
    let advert = Advert {
        addrs: Vec::new(),
        ..sample_v4()
    };
    let bytes = build(src, MCAST4, &advert);
    assert_eq!(bytes.len(), HEADER_LEN, "header only");
    assert_eq!(
        parse(src, MCAST4, VRRP_TTL, &bytes).expect("count 0 parses"),
        advert,
        "empty address list"
    );
}

#[test]
#[should_panic(expected = "addresses of the other family")]
fn build_refuses_mixed_address_families() {
    let advert = Advert {
        addrs: vec![v6("2001:db8::1")],
        ..sample_v4()
    };
    build(v4(192, 168, 1, 10), MCAST4, &advert);
}

#[test]
#[should_panic(expected = "does not fit in 12 bits")]
fn build_refuses_an_interval_beyond_12_bits() {
    let advert = Advert {
        max_advert_int: 0x1000,
        ..sample_v4()
    };
    build(v4(192, 168, 1, 10), MCAST4, &advert);
}
