//! Who outranks whom among nodes of equal priority: RFC 5798 section 6.4.3's
//! tie-break ("the primary IP address ... greater than the local primary IP
//! address"). The election applies it to adverts, the heartbeat's detector
//! to the peers that may take over before us.

use std::net::IpAddr;

/// Whether `a` is greater than `b` as an unsigned integer; addresses of
/// different families are never compared.
pub fn address_greater(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.to_bits() > b.to_bits(),
        (IpAddr::V6(a), IpAddr::V6(b)) => a.to_bits() > b.to_bits(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_greater_address_wins_within_a_family_only() {
        let a: IpAddr = "10.0.0.2".parse().expect("v4");
        let b: IpAddr = "10.0.0.10".parse().expect("v4");
        assert!(address_greater(b, a), "10.0.0.10 > 10.0.0.2 as integers");
        assert!(!address_greater(a, b), "and not the other way");
        assert!(!address_greater(a, a), "an address does not outrank itself");
        let v6: IpAddr = "fe80::1".parse().expect("v6");
        assert!(
            !address_greater(v6, a) && !address_greater(a, v6),
            "families are not compared"
        );
    }
}
