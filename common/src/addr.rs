//! Addresses as the maps hold them: 16 bytes and a family. IPv4 sits in the
//! first 4 bytes (network order), the other 12 zero; IPv6 takes all 16.
//! Every map type with an address field (`ServiceKey`, `Backend`,
//! `FlowKey`, `PeerKey`, `PeerEvent`, `VipKey`) stores it this way.

/// `family` of an IPv4 address (stored in the first 4 bytes).
pub const FAMILY_V4: u8 = 4;
/// `family` of an IPv6 address.
pub const FAMILY_V6: u8 = 6;

#[cfg(feature = "user")]
pub use user::{from_map, to_map};

#[cfg(feature = "user")]
mod user {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::{FAMILY_V4, FAMILY_V6};

    /// The map bytes and family of `addr`.
    #[must_use]
    pub const fn to_map(addr: IpAddr) -> ([u8; 16], u8) {
        match addr {
            IpAddr::V4(v4) => {
                let [a, b, c, d] = v4.octets();
                ([a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], FAMILY_V4)
            }
            IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
        }
    }

    /// The address held in a map as `family` and `bytes`; `None` for an
    /// unknown family.
    #[must_use]
    pub fn from_map(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
        match family {
            FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            ))),
            FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn ipv4_takes_the_first_four_bytes() {
            let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
            let bytes = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            assert_eq!(to_map(addr), (bytes, 4));
            assert_eq!(from_map(4, &bytes), Some(addr));
        }

        #[test]
        fn ipv6_takes_all_sixteen_bytes() {
            let addr: IpAddr = "2001:db8::7:100".parse().expect("IPv6 literal");
            let bytes = [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x01, 0x00,
            ];
            assert_eq!(to_map(addr), (bytes, 6));
            assert_eq!(from_map(6, &bytes), Some(addr));
        }

        #[test]
        fn an_unknown_family_is_no_address() {
            let bytes = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            assert_eq!(from_map(0, &bytes), None);
            assert_eq!(from_map(5, &bytes), None);
            assert_eq!(from_map(9, &[0; 16]), None);
        }
    }
}
