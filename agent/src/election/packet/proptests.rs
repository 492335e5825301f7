//! Properties of the advert codec over generated adverts and bytes: every
//! advert the format can carry round-trips; any bytes are an error or an
//! advert, never a panic; a valid advert with a bit flipped, cut short or
//! with bytes added is an error (RFC 5798 section 7.1).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn addr(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

/// Source, destination and an advert of one family.
fn sent() -> impl Strategy<Value = (IpAddr, IpAddr, Advert)> {
    any::<bool>().prop_flat_map(|v6| {
        let group = if v6 {
            IpAddr::V6(VRRP_MULTICAST_V6)
        } else {
            IpAddr::V4(VRRP_MULTICAST_V4)
        };
        (
            addr(v6),
            prop_oneof![Just(group), addr(v6)],
            any::<u8>(),
            any::<u8>(),
            1..=MAX_ADVER_INT_MASK,
            proptest::collection::vec(addr(v6), 0..=20),
        )
            .prop_map(|(src, dst, vrid, priority, max_advert_int, addrs)| {
                let advert = Advert {
                    vrid,
                    priority,
                    max_advert_int,
                    addrs,
                };
                (src, dst, advert)
            })
    })
}

/// `payload` (at least a header) with the checksum its bytes need.
fn with_checksum(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out[6..8].fill(0);
    let sum = checksum(src, dst, &out);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    out
}

proptest! {
    #[test]
    fn every_advert_round_trips((src, dst, advert) in sent()) {
        let bytes = build(src, dst, &advert);
        prop_assert_eq!(parse(src, dst, VRRP_TTL, &bytes), Ok(advert));
    }

    /// Any bytes: an error or an advert, never a panic; an advert is what
    /// its header says, and built again gives the same bytes (but the
    /// reserved bits, sent as zero and ignored).
    #[test]
    fn any_bytes_parse_to_an_error_or_their_advert(
        v6 in any::<bool>(),
        seed in any::<[u8; 32]>(),
        ttl in prop_oneof![Just(VRRP_TTL), any::<u8>()],
        payload in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let pick = |at: usize| -> IpAddr {
            if v6 {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&seed[at..at + 16]).expect("16")))
            } else {
                IpAddr::V4(Ipv4Addr::new(seed[at], seed[at + 1], seed[at + 2], seed[at + 3]))
            }
        };
        let (src, dst) = (pick(0), pick(16));
        if let Ok(advert) = parse(src, dst, ttl, &payload) {
            prop_assert_eq!(usize::from(payload[3]), advert.addrs.len());
            prop_assert_eq!((payload[1], payload[2]), (advert.vrid, advert.priority));
            if payload[4] & 0xf0 == 0 {
                prop_assert_eq!(build(src, dst, &advert), payload);
            }
        }
    }

    /// Every single-bit error is caught (by the checksum, if nothing
    /// before it).
    #[test]
    fn a_flipped_bit_is_an_error((src, dst, advert) in sent(), bit in any::<prop::sample::Index>()) {
        let mut bytes = build(src, dst, &advert);
        let bit = bit.index(bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(parse(src, dst, VRRP_TTL, &bytes).is_err());
    }

    /// Cut short or with bytes added, its checksum made right again (so
    /// that only the length can tell).
    #[test]
    fn a_cut_or_padded_advert_is_an_error(
        (src, dst, advert) in sent(),
        cut in any::<prop::sample::Index>(),
        extra in proptest::collection::vec(any::<u8>(), 1..20),
    ) {
        let bytes = build(src, dst, &advert);
        let no_header = &bytes[..cut.index(HEADER_LEN)];
        prop_assert!(parse(src, dst, VRRP_TTL, no_header).is_err(), "cut to {} bytes", no_header.len());
        let short = with_checksum(src, dst, &bytes[..HEADER_LEN.max(cut.index(bytes.len()))]);
        if short.len() < bytes.len() {
            prop_assert!(parse(src, dst, VRRP_TTL, &short).is_err(), "cut to {} bytes", short.len());
        }
        let long = with_checksum(src, dst, &[bytes.as_slice(), &extra].concat());
        prop_assert!(parse(src, dst, VRRP_TTL, &long).is_err(), "{} bytes added", extra.len());
    }

    #[test]
    fn a_routed_advert_is_an_error((src, dst, advert) in sent(), ttl in 0..VRRP_TTL) {
        let bytes = build(src, dst, &advert);
        prop_assert_eq!(parse(src, dst, ttl, &bytes), Err(AdvertError::BadTtl { ttl }));
    }
}
