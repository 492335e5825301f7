//! Header parsing: bounds-checked reads from the frame, and the walk from
//! Ethernet to the L4 ports, or to the address an ARP request or IPv6
//! neighbour solicitation asks for. A frame that is too short for what it
//! claims is reported, never read past its end.

use aya_ebpf::programs::XdpContext;
use vipx_common::reason;

/// Ethernet header length.
const ETH_HLEN: usize = 14;
/// 802.1Q / 802.1ad tag length.
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
/// The fixed part of ARP (RFC 826): hardware and protocol type, their
/// address lengths, operation.
const ARP_FIXED_HLEN: usize = 8;
/// ARP hardware type Ethernet (`ARPHRD_ETHER`).
const ARP_HTYPE_ETHER: u16 = 1;
/// ARP operation "request" (RFC 826, `ARPOP_REQUEST`).
const ARP_OP_REQUEST: u16 = 1;
/// Offset of the target protocol address in an ARP packet for Ethernet
/// and IPv4: after the fixed part, sender MAC and IPv4, target MAC.
const ARP_TPA_OFF: usize = ARP_FIXED_HLEN + 6 + 4 + 6;
/// Minimal IPv4 header (RFC 791, IHL = 5).
const IPV4_MIN_HLEN: usize = 20;
/// Fixed IPv6 header (RFC 8200 section 3).
const IPV6_HLEN: usize = 40;
/// IPv4 flags/fragment offset: MF bit and the 13-bit offset.
const IPV4_MF_OFFSET_MASK: u16 = 0x3fff;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// VRRP (RFC 5798 section 5.1.1.4).
const IPPROTO_VRRP: u8 = 112;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ESP: u8 = 50;
const IPPROTO_ICMPV6: u8 = 58;
/// ICMPv6 type Neighbor Solicitation (RFC 4861 section 4.3).
const ICMPV6_NEIGHBOR_SOLICIT: u8 = 135;
/// Offset of the target address in a neighbour solicitation: after type,
/// code, checksum and the reserved word (RFC 4861 section 4.3).
const NS_TARGET_OFF: usize = 8;
/// Length of the target address.
const NS_TARGET_LEN: usize = 16;
const TCP_MIN_HLEN: usize = 20;
/// UDP header length (RFC 768).
pub const UDP_HLEN: usize = 8;

/// The L3 header found.
#[derive(Clone, Copy)]
pub enum L3 {
    V4 { off: usize },
    V6 { off: usize },
}

/// The L4 header found.
#[derive(Clone, Copy)]
pub enum L4 {
    Tcp { off: usize, sport: u16, dport: u16 },
    Udp { off: usize, sport: u16, dport: u16 },
    Vrrp { off: usize },
}

/// A parsed IP packet: where its headers are.
#[derive(Clone, Copy)]
pub struct Packet {
    pub l3: L3,
    pub l4: L4,
}

/// What a frame the program looks into is.
#[derive(Clone, Copy)]
pub enum Frame {
    /// TCP, UDP or VRRP over IPv4 or IPv6.
    Ip(Packet),
    /// An ARP request for Ethernet and IPv4; the IPv4 address it asks for
    /// is at `target` (4 bytes, inside the frame).
    ArpRequest { target: usize },
    /// An IPv6 neighbour solicitation; the address it asks for is at
    /// `target` (16 bytes, inside the frame).
    NeighSolicit { target: usize },
}

/// A bounds-checked pointer to `N` bytes at `off` from the frame's start.
#[inline(always)]
pub fn bytes<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*const [u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + N > end {
        return None;
    }
    Some((start + off) as *const [u8; N])
}

/// A bounds-checked mutable pointer to `N` bytes at `off`.
#[inline(always)]
pub fn bytes_mut<const N: usize>(ctx: &XdpContext, off: usize) -> Option<*mut [u8; N]> {
    bytes::<N>(ctx, off).map(|p| p as *mut [u8; N])
}

#[inline(always)]
pub fn u8_at(ctx: &XdpContext, off: usize) -> Option<u8> {
    // SAFETY: `bytes` checked that the byte lies inside the frame.
    bytes::<1>(ctx, off).map(|p| unsafe { (*p)[0] })
}

#[inline(always)]
fn be16_at(ctx: &XdpContext, off: usize) -> Option<u16> {
    // SAFETY: `bytes` checked that both bytes lie inside the frame.
    bytes::<2>(ctx, off).map(|p| u16::from_be_bytes(unsafe { *p }))
}

/// Walks the frame to its L4 header (or its ARP request's target). `Err`
/// carries the reason slot of a frame the program does not own (it is then
/// passed untouched).
#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Frame, u32> {
    let mut ethertype = be16_at(ctx, 12).ok_or(reason::MALFORMED)?;
    let mut l3_off = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, ETH_HLEN + 2).ok_or(reason::MALFORMED)?;
        l3_off = ETH_HLEN + VLAN_HLEN;
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(ctx, l3_off).map(Frame::Ip),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_off),
        ETH_P_ARP => parse_arp(ctx, l3_off),
        _ => Err(reason::NOT_IP),
    }
}

/// An ARP request for Ethernet and IPv4 (RFC 826); any other ARP packet,
/// or one too short for its addresses, is not IP as before.
#[inline(always)]
fn parse_arp(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    let hdr = bytes::<ARP_FIXED_HLEN>(ctx, off).ok_or(reason::NOT_IP)?;
    // SAFETY: `bytes` checked the fixed part lies inside the frame.
    let hdr = unsafe { *hdr };
    let ethernet_ipv4 = u16::from_be_bytes([hdr[0], hdr[1]]) == ARP_HTYPE_ETHER
        && u16::from_be_bytes([hdr[2], hdr[3]]) == ETH_P_IP
        && hdr[4] == 6
        && hdr[5] == 4;
    if !ethernet_ipv4 || u16::from_be_bytes([hdr[6], hdr[7]]) != ARP_OP_REQUEST {
        return Err(reason::NOT_IP);
    }
    let target = off + ARP_TPA_OFF;
    if bytes::<4>(ctx, target).is_none() {
        return Err(reason::NOT_IP);
    }
    Ok(Frame::ArpRequest { target })
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, off: usize) -> Result<Packet, u32> {
    let hdr = bytes::<IPV4_MIN_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
    // SAFETY: `bytes` checked the whole minimal header.
    let hdr = unsafe { *hdr };
    if hdr[0] >> 4 != 4 {
        return Err(reason::BAD_IP_HEADER);
    }
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    if ihl < IPV4_MIN_HLEN {
        return Err(reason::BAD_IP_HEADER);
    }
    if u16::from_be_bytes([hdr[6], hdr[7]]) & IPV4_MF_OFFSET_MASK != 0 {
        return Err(reason::FRAGMENT);
    }
    // The options, if any, must be inside the frame too.
    if bytes::<1>(ctx, off + ihl - 1).is_none() {
        return Err(reason::MALFORMED);
    }
    let l4 = parse_l4(ctx, hdr[9], off + ihl)?;
    Ok(Packet {
        l3: L3::V4 { off },
        l4,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    let version = u8_at(ctx, off).ok_or(reason::MALFORMED)? >> 4;
    let next = u8_at(ctx, off + 6).ok_or(reason::MALFORMED)?;
    if bytes::<IPV6_HLEN>(ctx, off).is_none() {
        return Err(reason::MALFORMED);
    }
    if version != 6 {
        return Err(reason::BAD_IP_HEADER);
    }
    match next {
        IPPROTO_FRAGMENT => return Err(reason::FRAGMENT),
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_ESP => {
            return Err(reason::IPV6_EXT);
        }
        IPPROTO_ICMPV6 => return neigh_solicit(ctx, off + IPV6_HLEN),
        _ => {}
    }
    let l4 = parse_l4(ctx, next, off + IPV6_HLEN)?;
    Ok(Frame::Ip(Packet {
        l3: L3::V6 { off },
        l4,
    }))
}

/// An ICMPv6 message (at `off`) that is a neighbour solicitation with its
/// whole target address in the frame; any other ICMPv6 message is other
/// L4 traffic as before.
#[inline(always)]
fn neigh_solicit(ctx: &XdpContext, off: usize) -> Result<Frame, u32> {
    if u8_at(ctx, off) != Some(ICMPV6_NEIGHBOR_SOLICIT) {
        return Err(reason::OTHER_L4);
    }
    let target = off + NS_TARGET_OFF;
    if bytes::<NS_TARGET_LEN>(ctx, target).is_none() {
        return Err(reason::OTHER_L4);
    }
    Ok(Frame::NeighSolicit { target })
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, proto: u8, off: usize) -> Result<L4, u32> {
    match proto {
        IPPROTO_TCP => {
            let hdr = bytes::<TCP_MIN_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
            // SAFETY: `bytes` checked the whole minimal TCP header.
            let hdr = unsafe { *hdr };
            Ok(L4::Tcp {
                off,
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
            })
        }
        IPPROTO_UDP => {
            let hdr = bytes::<UDP_HLEN>(ctx, off).ok_or(reason::MALFORMED)?;
            // SAFETY: `bytes` checked the whole UDP header.
            let hdr = unsafe { *hdr };
            Ok(L4::Udp {
                off,
                sport: u16::from_be_bytes([hdr[0], hdr[1]]),
                dport: u16::from_be_bytes([hdr[2], hdr[3]]),
            })
        }
        IPPROTO_VRRP => Ok(L4::Vrrp { off }),
        _ => Err(reason::OTHER_L4),
    }
}
