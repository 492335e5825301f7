//! The VRRPv3 advertisement on the wire (RFC 5798 section 5): parser and
//! builder of the VRRP payload, the part after the IPv4/IPv6 header.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |(rsvd) |     Max Adver Int     |          Checksum             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      IPvX Address(es) ...                     |
//! ```
//!
//! The checksum (section 5.2.8) covers the VRRP message and a pseudo-header
//! for both families: the IPv4 one of RFC 768 or the IPv6 one of RFC 8200
//! section 8.1, with protocol / next header 112. keepalived 2.2 does the same
//! for VRRPv3 over IPv4 (unless configured with `v3_checksum_as_v2`, or when a
//! pre-1.3.6 unicast peer forces its old multicast-address pseudo-header);
//! for IPv6 it lets the kernel fill the checksum (`IPV6_CHECKSUM`), which uses
//! the standard pseudo-header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;
use vipx_common::csum;

/// IP protocol number of VRRP (RFC 5798 section 5.1.1.4).
pub const VRRP_PROTOCOL: u8 = 112;
/// IPv4 multicast destination of adverts (RFC 5798 section 5.1.1.2).
pub const VRRP_MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast destination of adverts (RFC 5798 section 5.1.2.2).
pub const VRRP_MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// IPv4 TTL (section 5.1.1.3) and IPv6 hop limit (section 5.1.2.3) of every
/// advert; anything else was routed and is discarded (section 7.1).
pub const VRRP_TTL: u8 = 255;
/// The version this implementation speaks (RFC 5798 section 5.2.1).
pub const VRRP_VERSION: u8 = 3;
/// The only VRRP packet type (RFC 5798 section 5.2.2).
pub const ADVERTISEMENT: u8 = 1;
/// Priority of the router that owns the virtual addresses (RFC 5798 section
/// 5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Default priority of a backup (RFC 5798 section 5.2.4).
pub const PRIORITY_DEFAULT: u8 = 100;
/// Priority a master sends when it stops, so a backup takes over without
/// waiting for `Master_Down_Interval` (RFC 5798 section 5.2.4).
pub const PRIORITY_STOP: u8 = 0;
/// Bits of the Max Adver Int field; the 4 bits above are reserved, sent as
/// zero and ignored on receipt (RFC 5798 sections 5.2.6 and 5.2.7).
pub const MAX_ADVER_INT_MASK: u16 = 0x0FFF;
/// Length of the fixed header before the addresses (RFC 5798 section 5.1).
pub const HEADER_LEN: usize = 8;
/// Most addresses one advert can list: Count IPvX Addr is 8 bits (RFC 5798
/// section 5.2.5).
pub const MAX_ADDRESSES: usize = 255;

/// One VRRPv3 advertisement, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    /// Virtual Router ID (section 5.2.3).
    pub vrid: u8,
    /// Sender's priority (section 5.2.4); [`PRIORITY_STOP`] when it stops.
    pub priority: u8,
    /// Advertisement interval in centiseconds, 12 bits (section 5.2.7).
    pub max_advert_int: u16,
    /// The virtual addresses (section 5.2.9), all of the sender's family.
    /// For IPv6 the first should be the link-local one.
    pub addrs: Vec<IpAddr>,
}

/// Why [`parse`] rejected a packet (RFC 5798 section 7.1).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AdvertError {
    /// The IPv4 TTL / IPv6 hop limit was not 255: the packet was routed.
    #[error("TTL/hop limit is {ttl}, expected {VRRP_TTL}: the advert crossed a router")]
    BadTtl {
        /// The value seen.
        ttl: u8,
    },
    /// The IP source and destination are not of the same family.
    #[error("source {src} and destination {dst} are not of the same address family")]
    FamilyMismatch {
        /// IP source address.
        src: IpAddr,
        /// IP destination address.
        dst: IpAddr,
    },
    /// Fewer bytes than the fixed header.
    #[error("VRRP payload is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// Not VRRP version 3 (a VRRPv2 peer, say).
    #[error("VRRP version {version}, expected {VRRP_VERSION}")]
    BadVersion {
        /// The version nibble seen.
        version: u8,
    },
    /// Not an ADVERTISEMENT.
    #[error("VRRP packet type {kind}, expected {ADVERTISEMENT} (ADVERTISEMENT)")]
    BadType {
        /// The type nibble seen.
        kind: u8,
    },
    /// The payload length disagrees with Count IPvX Addr for the family.
    #[error(
        "VRRP payload is {len} bytes, but {count} IPv{family} address(es) make {expected} bytes"
    )]
    BadLength {
        /// Bytes received.
        len: usize,
        /// Count IPvX Addr field.
        count: u8,
        /// 4 or 6.
        family: u8,
        /// `HEADER_LEN + count * address size`.
        expected: usize,
    },
    /// The checksum does not verify.
    #[error(
        "VRRP checksum is {found:#06x}, computed {computed:#06x} (pseudo-header {src} -> {dst})"
    )]
    BadChecksum {
        /// The checksum field.
        found: u16,
        /// What the sender should have put there.
        computed: u16,
        /// Pseudo-header source.
        src: IpAddr,
        /// Pseudo-header destination.
        dst: IpAddr,
    },
    /// A zero advertisement interval would declare the master down at once.
    #[error("advertisement interval is 0 centiseconds")]
    ZeroInterval,
}

/// Decodes and checks one advertisement (RFC 5798 section 7.1).
///
/// `src` and `dst` are the IP header's addresses (the checksum's
/// pseudo-header), `ttl_or_hop_limit` its TTL or hop limit, and `payload`
/// exactly the IP payload: the VRRP header and addresses, cut at the IPv4
/// total length / IPv6 payload length (no Ethernet padding).
///
/// Checked here: TTL/hop limit, families, version, type, length, checksum and
/// a non-zero interval. Left to the caller and the state machine: whether the
/// VRID is one of ours and whether we own the addresses.
pub fn parse(
    src: IpAddr,
    dst: IpAddr,
    ttl_or_hop_limit: u8,
    payload: &[u8],
) -> Result<Advert, AdvertError> {
    if ttl_or_hop_limit != VRRP_TTL {
        return Err(AdvertError::BadTtl {
            ttl: ttl_or_hop_limit,
        });
    }
    let (addr_len, family) = match (src, dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => (4, 4),
        (IpAddr::V6(_), IpAddr::V6(_)) => (16, 6),
        _ => return Err(AdvertError::FamilyMismatch { src, dst }),
    };
    let Some(header) = payload.first_chunk::<HEADER_LEN>() else {
        return Err(AdvertError::Truncated { len: payload.len() });
    };
    let version = header[0] >> 4;
    if version != VRRP_VERSION {
        return Err(AdvertError::BadVersion { version });
    }
    let kind = header[0] & 0x0F;
    if kind != ADVERTISEMENT {
        return Err(AdvertError::BadType { kind });
    }
    let count = header[3];
    let expected = HEADER_LEN + usize::from(count) * addr_len;
    if payload.len() != expected {
        return Err(AdvertError::BadLength {
            len: payload.len(),
            count,
            family,
            expected,
        });
    }
    if ones_complement_sum(src, dst, payload) != 0xFFFF {
        let found = u16::from_be_bytes([header[6], header[7]]);
        let mut zeroed = payload.to_vec();
        zeroed[6..8].fill(0);
        let computed = checksum(src, dst, &zeroed);
        return Err(AdvertError::BadChecksum {
            found,
            computed,
            src,
            dst,
        });
    }
    let max_advert_int = u16::from_be_bytes([header[4], header[5]]) & MAX_ADVER_INT_MASK;
    if max_advert_int == 0 {
        return Err(AdvertError::ZeroInterval);
    }
    let body = &payload[HEADER_LEN..];
    let addrs = if family == 4 {
        body.as_chunks::<4>()
            .0
            .iter()
            .copied()
            .map(IpAddr::from)
            .collect()
    } else {
        body.as_chunks::<16>()
            .0
            .iter()
            .copied()
            .map(IpAddr::from)
            .collect()
    };
    Ok(Advert {
        vrid: header[1],
        priority: header[2],
        max_advert_int,
        addrs,
    })
}

/// Encodes `advert` as the VRRP payload of an IP packet from `src` to `dst`,
/// with its checksum over the matching pseudo-header. The reserved bits are
/// zero (section 5.2.6).
///
/// # Panics
///
/// When `src`, `dst` and the addresses are not all of one family, when there
/// are more than [`MAX_ADDRESSES`] addresses, or when `max_advert_int` does
/// not fit in 12 bits: the caller builds adverts from a validated
/// configuration, so each of these is a bug.
pub fn build(src: IpAddr, dst: IpAddr, advert: &Advert) -> Vec<u8> {
    assert!(
        src.is_ipv4() == dst.is_ipv4(),
        "VRRP advert from {src} to {dst}: mixed address families"
    );
    assert!(
        advert.addrs.iter().all(|a| a.is_ipv4() == src.is_ipv4()),
        "VRRP advert from {src} lists addresses of the other family: {:?}",
        advert.addrs
    );
    let count = u8::try_from(advert.addrs.len()).unwrap_or_else(|_| {
        panic!(
            "VRRP advert lists {} addresses, at most {MAX_ADDRESSES} fit",
            advert.addrs.len()
        )
    });
    assert!(
        advert.max_advert_int <= MAX_ADVER_INT_MASK,
        "VRRP advert interval {} cs does not fit in 12 bits",
        advert.max_advert_int
    );
    let addr_len = if src.is_ipv4() { 4 } else { 16 };
    let mut out = Vec::with_capacity(HEADER_LEN + advert.addrs.len() * addr_len);
    out.push((VRRP_VERSION << 4) | ADVERTISEMENT);
    out.push(advert.vrid);
    out.push(advert.priority);
    out.push(count);
    out.extend_from_slice(&advert.max_advert_int.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for addr in &advert.addrs {
        match addr {
            IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
            IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
        }
    }
    let sum = checksum(src, dst, &out);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// The checksum to store in `vrrp` (whose checksum field must be zero): the
/// one's complement of the one's-complement sum of pseudo-header and message.
fn checksum(src: IpAddr, dst: IpAddr, vrrp: &[u8]) -> u16 {
    !ones_complement_sum(src, dst, vrrp)
}

/// The folded 16-bit one's-complement sum of the pseudo-header for `src`,
/// `dst` and protocol 112 followed by `vrrp` (RFC 1071). Over a message with
/// a correct checksum it is `0xFFFF`.
fn ones_complement_sum(src: IpAddr, dst: IpAddr, vrrp: &[u8]) -> u16 {
    // The message is at most 8 + 255 * 16 bytes, so its length fits both
    // pseudo-header length fields.
    let len = vrrp.len();
    let pseudo = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            csum::pseudo_v4(s.octets(), d.octets(), VRRP_PROTOCOL, len as u16)
        }
        // A mixed pair never reaches here from parse/build.
        _ => csum::pseudo_v6(
            &to_v6(src).octets(),
            &to_v6(dst).octets(),
            VRRP_PROTOCOL,
            len as u32,
        ),
    };
    csum::add(pseudo, vrrp)
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
