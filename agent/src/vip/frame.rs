//! The frames that announce a VIP on its link, built as plain bytes: a
//! gratuitous ARP request for IPv4 and an unsolicited neighbour advertisement
//! for IPv6, both exactly as keepalived sends them on becoming MASTER.

use std::net::{Ipv4Addr, Ipv6Addr};

use vipx_common::csum;

/// Length of an Ethernet II header: destination, source, EtherType.
pub const ETH_HLEN: usize = 14;
/// The Ethernet broadcast address.
pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];
/// EtherType of IPv4 (RFC 894), also ARP's protocol type for IPv4 (RFC 826).
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of ARP (RFC 826).
pub const ETH_P_ARP: u16 = 0x0806;
/// EtherType of IPv6 (RFC 2464 section 3).
pub const ETH_P_IPV6: u16 = 0x86dd;

/// ARP hardware type of Ethernet (RFC 826; IANA ARP "Hardware Types" 1).
pub const ARPHRD_ETHER: u16 = 1;
/// ARP opcode of a request (RFC 826).
pub const ARPOP_REQUEST: u16 = 1;
/// ARP opcode of a reply (RFC 826).
pub const ARPOP_REPLY: u16 = 2;
/// Length of an ARP packet for Ethernet and IPv4 (RFC 826): the 8-byte fixed
/// part, then sender and target hardware (6) and protocol (4) addresses.
pub const ARP_LEN: usize = 28;
/// Length of a gratuitous ARP frame (unpadded; the driver pads it to 60).
pub const GARP_FRAME_LEN: usize = ETH_HLEN + ARP_LEN;

/// Length of the fixed IPv6 header (RFC 8200 section 3).
pub const IPV6_HLEN: usize = 40;
/// IPv6 next-header number of ICMPv6 (RFC 4443 section 1).
pub const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 section 4.4).
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// NA "Router" flag, in the first octet after the checksum (RFC 4861 section 4.4).
pub const ND_NA_FLAG_ROUTER: u8 = 0x80;
/// NA "Solicited" flag (RFC 4861 section 4.4); never set in an unsolicited NA.
pub const ND_NA_FLAG_SOLICITED: u8 = 0x40;
/// NA "Override" flag (RFC 4861 section 4.4): receivers replace a cached
/// link-layer address with the one in the advertisement.
pub const ND_NA_FLAG_OVERRIDE: u8 = 0x20;
/// ND option "Target Link-Layer Address" (RFC 4861 section 4.6.1).
pub const ND_OPT_TARGET_LINKADDR: u8 = 2;
/// Hop limit of every ND message; receivers drop any other (RFC 4861 section 7.1.2).
pub const ND_HOP_LIMIT: u8 = 255;
/// The link-local all-nodes multicast group (RFC 4291 section 2.7.1), where
/// unsolicited advertisements go (RFC 4861 section 7.2.6).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// Length of a Neighbor Advertisement without options: type, code, checksum,
/// flags + reserved (4), target address (16).
pub const ND_NA_LEN: usize = 24;
/// Length of a target link-layer address option for Ethernet: type, length
/// (1, in units of 8 octets), MAC.
pub const ND_OPT_TLLA_LEN: usize = 8;
/// Length of a whole unsolicited-NA frame: Ethernet, IPv6, NA, option.
pub const NA_FRAME_LEN: usize = ETH_HLEN + IPV6_HLEN + ND_NA_LEN + ND_OPT_TLLA_LEN;

/// A gratuitous ARP for `ip` owned by `mac`, as keepalived sends it: an ARP
/// *request* (RFC 5227 section 3 "ARP Announcement", RFC 5944 section 4.6)
/// broadcast on the link, with sender and target protocol address both `ip`,
/// sender hardware address `mac` and target hardware address broadcast.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_FRAME_LEN] {
    let mut f = [0u8; GARP_FRAME_LEN];
    f[0..6].copy_from_slice(&ETH_BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let arp = &mut f[ETH_HLEN..];
    arp[0..2].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    arp[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    arp[4] = 6; // hardware address length
    arp[5] = 4; // protocol address length
    arp[6..8].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    arp[8..14].copy_from_slice(&mac); // sender hardware address
    arp[14..18].copy_from_slice(&ip.octets()); // sender protocol address
    arp[18..24].copy_from_slice(&ETH_BROADCAST); // target hardware address
    arp[24..28].copy_from_slice(&ip.octets()); // target protocol address
    f
}

/// An unsolicited Neighbor Advertisement for `ip` owned by `mac` (RFC 4861
/// section 7.2.6), as a whole Ethernet frame: from `ip` to all-nodes
/// (`ff02::1`, MAC `33:33:00:00:00:01`), hop limit 255, Override set,
/// Solicited and Router clear, target `ip`, and a target link-layer address
/// option carrying `mac`; the ICMPv6 checksum is filled in.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let payload_len = ND_NA_LEN + ND_OPT_TLLA_LEN;
    let mut f = vec![0u8; NA_FRAME_LEN];
    f[0..6].copy_from_slice(&ipv6_multicast_mac(ALL_NODES));
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());

    let ip6 = &mut f[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
    ip6[0] = 0x60; // version 6, traffic class 0, flow label 0
    ip6[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    ip6[6] = IPPROTO_ICMPV6;
    ip6[7] = ND_HOP_LIMIT;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());

    let na = &mut f[ETH_HLEN + IPV6_HLEN..];
    na[0] = ND_NEIGHBOR_ADVERT;
    na[1] = 0; // code
    na[4] = ND_NA_FLAG_OVERRIDE;
    na[8..24].copy_from_slice(&ip.octets());
    na[24] = ND_OPT_TARGET_LINKADDR;
    na[25] = (ND_OPT_TLLA_LEN / 8) as u8;
    na[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, na);
    na[2..4].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The Ethernet address an IPv6 multicast group maps to: `33:33` and the
/// group's last four octets (RFC 2464 section 7).
pub fn ipv6_multicast_mac(group: Ipv6Addr) -> [u8; 6] {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The ICMPv6 checksum (RFC 4443 section 2.3) of `message` (whose checksum
/// field is zero) sent from `src` to `dst`: the one's complement of the one's
/// complement sum over the IPv6 pseudo-header (RFC 8200 section 8.1) and the
/// message.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let len = u32::try_from(message.len()).expect("an ICMPv6 message fits in 4 GiB");
    let pseudo = csum::pseudo_v6(&src.octets(), &dst.octets(), IPPROTO_ICMPV6, len);
    !csum::add(pseudo, message)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    /// Checks an ICMPv6 checksum the receiver's way, independently of
    /// [`icmpv6_checksum`]: the plain 16-bit sum of the pseudo-header and the
    /// message *including* its checksum, with carries folded, must be 0xffff.
    pub(crate) fn icmpv6_checksum_ok(frame: &[u8]) -> bool {
        let ip6 = &frame[ETH_HLEN..ETH_HLEN + IPV6_HLEN];
        let payload = &frame[ETH_HLEN + IPV6_HLEN..];
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&ip6[8..40]); // source, destination
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, ip6[6]]);
        bytes.extend_from_slice(payload);
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        let mut total: u64 = 0;
        for i in (0..bytes.len()).step_by(2) {
            total += (u64::from(bytes[i]) << 8) | u64::from(bytes[i + 1]);
        }
        while total >> 16 != 0 {
            total = (total & 0xffff) + (total >> 16);
        }
        total == 0xffff
    }

    #[test]
    fn garp_is_a_broadcast_arp_request_for_the_vip() {
        let ip = Ipv4Addr::new(10, 0, 0, 100);
        let f = garp_frame(MAC, ip);
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            // Ethernet: broadcast destination, our source, EtherType ARP.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x08, 0x06,
            // ARP: hardware Ethernet, protocol IPv4, lengths 6 and 4, request.
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            // Sender: our MAC, the VIP.
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 0, 0, 100,
            // Target: broadcast MAC (as keepalived), the VIP again.
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 10, 0, 0, 100,
        ];
        assert_eq!(f, expected, "GARP frame bytes");
        assert_eq!(f.len(), GARP_FRAME_LEN);
    }

    #[test]
    fn unsolicited_na_fields_and_checksum() {
        let ip: Ipv6Addr = "2001:db8::100".parse().expect("test address");
        let f = unsolicited_na_frame(MAC, ip);
        assert_eq!(f.len(), 86, "frame length");
        // Ethernet: all-nodes multicast MAC, our MAC, EtherType IPv6.
        assert_eq!(f[0..6], [0x33, 0x33, 0, 0, 0, 1], "destination MAC");
        assert_eq!(f[6..12], MAC, "source MAC");
        assert_eq!(f[12..14], [0x86, 0xdd], "EtherType");
        // IPv6 header.
        let ip6 = &f[14..54];
        assert_eq!(ip6[0..4], [0x60, 0, 0, 0], "version, class, flow label");
        assert_eq!(u16::from_be_bytes([ip6[4], ip6[5]]), 32, "payload length");
        assert_eq!(ip6[6], 58, "next header ICMPv6");
        assert_eq!(ip6[7], 255, "hop limit");
        assert_eq!(ip6[8..24], ip.octets(), "source is the VIP");
        let ff02_1: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(ip6[24..40], ff02_1, "destination all-nodes");
        // ICMPv6 Neighbor Advertisement.
        let na = &f[54..];
        assert_eq!(na[0], 136, "type NA");
        assert_eq!(na[1], 0, "code");
        assert_eq!(
            na[4], 0x20,
            "flags: Override only (not Router, not Solicited)"
        );
        assert_eq!(na[5..8], [0, 0, 0], "reserved");
        assert_eq!(na[8..24], ip.octets(), "target is the VIP");
        assert_eq!(
            na[24..26],
            [2, 1],
            "option: target link-layer address, 8 bytes"
        );
        assert_eq!(na[26..32], MAC, "option carries our MAC");
        assert!(icmpv6_checksum_ok(&f), "ICMPv6 checksum verifies");
        assert_ne!(na[2..4], [0, 0], "checksum filled in");

        // Any change to a covered byte breaks the checksum.
        let mut bad = f.clone();
        bad[54 + 8 + 15] ^= 1;
        assert!(
            !icmpv6_checksum_ok(&bad),
            "corrupted target fails the checksum"
        );
    }

    #[test]
    fn checksum_matches_a_known_value() {
        // Worked out by hand for the NA of fe80::1 from 00:00:00:00:00:01.
        // Non-zero 16-bit words: pseudo-header fe80 0001 (source) ff02 0001
        // (destination) 0020 (length) 003a (next header); message 8800 (type,
        // code) 2000 (flags) fe80 0001 (target) 0201 0001 (option). They sum
        // to 0x3_a661, folded 0xa664, whose complement is 0x599b.
        let ip: Ipv6Addr = "fe80::1".parse().expect("test address");
        let f = unsolicited_na_frame([0, 0, 0, 0, 0, 1], ip);
        assert_eq!(f[56..58], [0x59, 0x9b], "checksum");
    }

    #[test]
    fn multicast_mac_mapping() {
        let group: Ipv6Addr = "ff02::1:ff00:100".parse().expect("test group");
        assert_eq!(
            ipv6_multicast_mac(group),
            [0x33, 0x33, 0xff, 0x00, 0x01, 0x00]
        );
    }
}
